//! Logging: `tracing` events to stderr, as text lines or one JSON object per line.

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter (`logLevel` or `RUST_LOG`) does not parse.
    #[error("log filter {filter:?}: {source}")]
    Filter {
        /// The filter text.
        filter: String,
        /// Why it does not parse.
        source: tracing_subscriber::filter::ParseError,
    },
    /// A global subscriber was already installed.
    #[error("installing the log subscriber: {0}")]
    Install(String),
}

/// Installs the global subscriber. `level` is an `EnvFilter` directive (`info`,
/// `kube_changejob=debug,warn`); a non-empty `RUST_LOG` replaces it.
pub fn init_tracing(level: &str, format: LogFormat) -> Result<(), TelemetryError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = filter(level, rust_log.as_deref())?;
    let ansi = format == LogFormat::Text && std::io::stderr().is_terminal();
    subscriber(filter, format, ansi, std::io::stderr)
        .try_init()
        .map_err(|e| TelemetryError::Install(e.to_string()))
}

fn filter(level: &str, rust_log: Option<&str>) -> Result<EnvFilter, TelemetryError> {
    let text = rust_log.filter(|s| !s.trim().is_empty()).unwrap_or(level);
    EnvFilter::try_new(text).map_err(|source| TelemetryError::Filter {
        filter: text.to_string(),
        source,
    })
}

fn subscriber<W>(
    filter: EnvFilter,
    format: LogFormat,
    ansi: bool,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(true)
                .finish(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut out) = self.0.lock() {
                out.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            self.0
                .lock()
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        }
    }

    fn capture(level: &str, format: LogFormat, log: impl FnOnce()) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let filter = filter(level, None).unwrap_or_else(|e| panic!("{e}"));
        let subscriber = subscriber(filter, format, false, move || writer.clone());
        tracing::subscriber::with_default(subscriber, log);
        out.text()
    }

    #[test]
    fn json_logs_are_one_object_per_line_with_span_fields() {
        let text = capture("info", LogFormat::Json, || {
            let span = tracing::info_span!("reconcile", ctj = "ns/demo");
            let _entered = span.enter();
            tracing::info!(job = "demo-1", "created Job");
            tracing::debug!("filtered out");
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let event: serde_json::Value =
            serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(event["message"], "created Job");
        assert_eq!(event["job"], "demo-1");
        assert_eq!(event["level"], "INFO");
        assert_eq!(event["span"]["ctj"], "ns/demo");
        assert_eq!(event["spans"][0]["name"], "reconcile");
    }

    #[test]
    fn text_logs_carry_the_message_and_fields() {
        let text = capture("kube_changejob=debug,warn", LogFormat::Text, || {
            tracing::debug!(target: "kube_changejob::leader", lease = "x", "renewed");
            tracing::info!(target: "hyper", "noise");
        });
        assert!(
            text.contains("renewed") && text.contains("lease=\"x\""),
            "{text}"
        );
        assert!(!text.contains("noise"), "{text}");
    }

    #[test]
    fn rust_log_overrides_the_configured_level() {
        let f = filter("info", Some("debug")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.to_string(), "debug");
        let f = filter("info", Some("  ")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.to_string(), "info");
    }

    #[test]
    fn a_malformed_filter_is_an_error() {
        assert!(matches!(
            filter("info,kube_changejob=loud", None),
            Err(TelemetryError::Filter { .. })
        ));
    }
}
