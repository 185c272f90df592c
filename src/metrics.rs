//! The Prometheus registry and every metric the operator exports (prefix `changejob_`).
//!
//! The reconcile loop, the admission server and the leader elector update these; the metrics
//! server renders the registry.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// All metrics, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles finished, by result (`ok` or `error`).
    pub reconciles: IntCounterVec,
    /// Reconcile errors, by reason (a condition reason or error class).
    pub reconcile_errors: IntCounterVec,
    /// Reconcile duration.
    pub reconcile_duration: Histogram,
    /// Triggers, by reason (`change` or `manual`).
    pub triggers: IntCounterVec,
    /// Triggers deferred by a cooldown.
    pub deferred_triggers: IntCounter,
    /// Jobs created.
    pub jobs_created: IntCounter,
    /// Jobs deleted by history pruning.
    pub jobs_deleted: IntCounter,
    /// Watched objects across all ChangeTriggeredJobs.
    pub watched_objects: IntGauge,
    /// Metadata watches open, by scope (`namespace`: one namespace; `cluster`: all of them).
    pub metadata_watches: IntGaugeVec,
    /// Time from first seeing a change to creating its Job (includes cooldown deferral).
    pub change_to_job_latency: Histogram,
    /// Admission requests, by webhook (`mutate`/`validate`) and result (`allowed`, `denied`,
    /// `error`).
    pub webhook_requests: IntCounterVec,
    /// Admission request duration, by webhook.
    pub webhook_duration: HistogramVec,
    /// 1 while this replica holds the Lease.
    pub leader: IntGauge,
    /// ChangeTriggeredJobs by condition type and status, as the last reconcile of each wrote
    /// them (only the leader reconciles, so followers export nothing here).
    pub ctj_conditions: CtjConditions,
}

/// (condition type, status).
type Pair = (String, String);

/// The conditions of each ChangeTriggeredJob, by (namespace, name), and how many CTJs have
/// each pair.
#[derive(Default)]
struct ConditionsByCtj {
    by_ctj: HashMap<(String, String), Vec<Pair>>,
    totals: BTreeMap<Pair, i64>,
}

impl ConditionsByCtj {
    /// Counts `pairs` in (`delta` 1) or out (`delta` -1) of the totals; returns the pairs
    /// touched.
    fn count(&mut self, pairs: &[Pair], delta: i64, touched: &mut Vec<Pair>) {
        for pair in pairs {
            *self.totals.entry(pair.clone()).or_insert(0) += delta;
            touched.push(pair.clone());
        }
    }
}

/// The `changejob_changetriggeredjobs{condition, status}` gauge and the conditions of each
/// ChangeTriggeredJob behind it. A CTJ's name is never a label (that would be a series per
/// object); the gauge counts CTJs. Recording one CTJ costs in proportion to its own
/// conditions, not to the number of CTJs.
#[derive(Clone)]
pub struct CtjConditions {
    gauge: IntGaugeVec,
    state: Arc<Mutex<ConditionsByCtj>>,
}

impl CtjConditions {
    fn new() -> Result<CtjConditions, prometheus::Error> {
        Ok(CtjConditions {
            gauge: IntGaugeVec::new(
                Opts::new(
                    "changejob_changetriggeredjobs",
                    "ChangeTriggeredJobs by condition type and status",
                ),
                &["condition", "status"],
            )?,
            state: Arc::default(),
        })
    }

    /// Records the conditions of one ChangeTriggeredJob (replacing what it had).
    pub fn record<'a>(
        &self,
        namespace: &str,
        name: &str,
        conditions: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        let pairs: Vec<Pair> = conditions
            .into_iter()
            .map(|(t, s)| (t.to_owned(), s.to_owned()))
            .collect();
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let key = (namespace.to_owned(), name.to_owned());
        if state.by_ctj.get(&key) == Some(&pairs) {
            return;
        }
        let mut touched = Vec::new();
        if let Some(old) = state.by_ctj.remove(&key) {
            state.count(&old, -1, &mut touched);
        }
        state.count(&pairs, 1, &mut touched);
        state.by_ctj.insert(key, pairs);
        self.export(&mut state, touched);
    }

    /// Keeps only the ChangeTriggeredJobs for which `keep(namespace, name)` holds (the others
    /// were deleted).
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let gone: Vec<(String, String)> = state
            .by_ctj
            .keys()
            .filter(|(ns, name)| !keep(ns, name))
            .cloned()
            .collect();
        let mut touched = Vec::new();
        for key in gone {
            if let Some(old) = state.by_ctj.remove(&key) {
                state.count(&old, -1, &mut touched);
            }
        }
        self.export(&mut state, touched);
    }

    /// Forgets every ChangeTriggeredJob (leadership lost: another replica reports them now).
    pub fn clear(&self) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.by_ctj.clear();
        let touched: Vec<Pair> = state.totals.keys().cloned().collect();
        for n in state.totals.values_mut() {
            *n = 0;
        }
        self.export(&mut state, touched);
    }

    /// Sets the gauge of every touched pair; pairs no CTJ has any more are removed rather
    /// than left at zero.
    fn export(&self, state: &mut ConditionsByCtj, touched: Vec<Pair>) {
        for pair in touched {
            let n = state.totals.get(&pair).copied().unwrap_or(0);
            let (condition, status) = (&pair.0, &pair.1);
            if n > 0 {
                self.gauge.with_label_values(&[condition, status]).set(n);
            } else {
                state.totals.remove(&pair);
                // Absent label values are no error worth reporting.
                let _ = self.gauge.remove_label_values(&[condition, status]);
            }
        }
    }
}

/// Registering a metric failed (a programming error: duplicate name).
#[derive(Debug, thiserror::Error)]
#[error("registering metrics: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    /// Creates and registers every metric, plus process metrics where the platform has them.
    pub fn new() -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let latency_buckets = vec![
            0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0,
        ];
        let metrics = Metrics {
            reconciles: IntCounterVec::new(
                Opts::new(
                    "changejob_reconciles_total",
                    "Reconciles finished, by result",
                ),
                &["result"],
            )?,
            reconcile_errors: IntCounterVec::new(
                Opts::new(
                    "changejob_reconcile_errors_total",
                    "Reconcile errors, by reason",
                ),
                &["reason"],
            )?,
            reconcile_duration: Histogram::with_opts(
                HistogramOpts::new("changejob_reconcile_duration_seconds", "Reconcile duration")
                    .buckets(vec![
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    ]),
            )?,
            triggers: IntCounterVec::new(
                Opts::new(
                    "changejob_triggers_total",
                    "Triggers, by reason (change or manual)",
                ),
                &["reason"],
            )?,
            deferred_triggers: IntCounter::new(
                "changejob_deferred_triggers_total",
                "Triggers deferred until a cooldown ends",
            )?,
            jobs_created: IntCounter::new("changejob_jobs_created_total", "Jobs created")?,
            jobs_deleted: IntCounter::new(
                "changejob_jobs_deleted_total",
                "Jobs deleted by history pruning",
            )?,
            watched_objects: IntGauge::new(
                "changejob_watched_objects",
                "Objects watched across all ChangeTriggeredJobs",
            )?,
            metadata_watches: IntGaugeVec::new(
                Opts::new(
                    "changejob_metadata_watches",
                    "Metadata watches of watched objects open, by scope (namespace or cluster)",
                ),
                &["scope"],
            )?,
            change_to_job_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "changejob_change_to_job_latency_seconds",
                    "Time from first seeing a change to creating its Job (includes cooldown)",
                )
                .buckets(latency_buckets),
            )?,
            webhook_requests: IntCounterVec::new(
                Opts::new(
                    "changejob_webhook_requests_total",
                    "Admission requests, by webhook and result",
                ),
                &["webhook", "result"],
            )?,
            webhook_duration: HistogramVec::new(
                HistogramOpts::new(
                    "changejob_webhook_duration_seconds",
                    "Admission request duration",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["webhook"],
            )?,
            leader: IntGauge::new("changejob_leader", "1 while this replica holds the Lease")?,
            ctj_conditions: CtjConditions::new()?,
            registry,
        };
        metrics.register_all()?;
        Ok(metrics)
    }

    fn register_all(&self) -> Result<(), prometheus::Error> {
        let r = &self.registry;
        r.register(Box::new(self.reconciles.clone()))?;
        r.register(Box::new(self.reconcile_errors.clone()))?;
        r.register(Box::new(self.reconcile_duration.clone()))?;
        r.register(Box::new(self.triggers.clone()))?;
        r.register(Box::new(self.deferred_triggers.clone()))?;
        r.register(Box::new(self.jobs_created.clone()))?;
        r.register(Box::new(self.jobs_deleted.clone()))?;
        r.register(Box::new(self.watched_objects.clone()))?;
        r.register(Box::new(self.metadata_watches.clone()))?;
        r.register(Box::new(self.change_to_job_latency.clone()))?;
        r.register(Box::new(self.webhook_requests.clone()))?;
        r.register(Box::new(self.webhook_duration.clone()))?;
        r.register(Box::new(self.leader.clone()))?;
        r.register(Box::new(self.ctj_conditions.gauge.clone()))?;
        #[cfg(target_os = "linux")]
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(())
    }

    /// Every metric family the operator exports, in text exposition format, with one series of
    /// each labelled family so that none is left out (`kube-changejob metrics`; the chart's
    /// dashboard and alerts are checked against it).
    pub fn catalogue() -> Result<String, MetricsError> {
        let m = Metrics::new()?;
        m.reconciles.with_label_values(&["ok"]);
        m.reconcile_errors.with_label_values(&["Forbidden"]);
        m.triggers.with_label_values(&["change"]);
        m.webhook_requests
            .with_label_values(&["validate", "allowed"]);
        m.webhook_duration.with_label_values(&["validate"]);
        m.ctj_conditions.record("", "", [("Ready", "True")]);
        Ok(m.render())
    }

    /// The registry, in Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec only fails on invalid metric families, which we never build.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exported_with_the_changejob_prefix() {
        let m = Metrics::new().unwrap_or_else(|e| panic!("{e}"));
        m.reconciles.with_label_values(&["ok"]).inc();
        m.reconcile_errors.with_label_values(&["Forbidden"]).inc();
        m.triggers.with_label_values(&["change"]).inc();
        m.webhook_requests
            .with_label_values(&["validate", "allowed"])
            .inc();
        m.webhook_duration
            .with_label_values(&["validate"])
            .observe(0.01);
        m.leader.set(1);
        let text = m.render();
        for name in [
            "changejob_reconciles_total{result=\"ok\"} 1",
            "changejob_reconcile_errors_total{reason=\"Forbidden\"} 1",
            "changejob_reconcile_duration_seconds_bucket",
            "changejob_triggers_total{reason=\"change\"} 1",
            "changejob_deferred_triggers_total 0",
            "changejob_jobs_created_total 0",
            "changejob_jobs_deleted_total 0",
            "changejob_watched_objects 0",
            "changejob_change_to_job_latency_seconds_bucket",
            "changejob_webhook_requests_total{result=\"allowed\",webhook=\"validate\"} 1",
            "changejob_webhook_duration_seconds_bucket",
            "changejob_leader 1",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }

    fn ctj_gauge(m: &Metrics) -> Vec<String> {
        m.render()
            .lines()
            .filter(|l| l.starts_with("changejob_changetriggeredjobs{"))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn ctj_condition_gauge_counts_ctjs_per_condition_and_status() {
        let m = Metrics::new().unwrap_or_else(|e| panic!("{e}"));
        let c = &m.ctj_conditions;
        c.record("a", "one", [("Ready", "True"), ("Degraded", "False")]);
        c.record("a", "two", [("Ready", "False"), ("Degraded", "True")]);
        c.record("b", "one", [("Ready", "True"), ("Degraded", "False")]);
        assert_eq!(
            ctj_gauge(&m),
            [
                "changejob_changetriggeredjobs{condition=\"Degraded\",status=\"False\"} 2",
                "changejob_changetriggeredjobs{condition=\"Degraded\",status=\"True\"} 1",
                "changejob_changetriggeredjobs{condition=\"Ready\",status=\"False\"} 1",
                "changejob_changetriggeredjobs{condition=\"Ready\",status=\"True\"} 2",
            ]
        );
        // A CTJ recovers: its old pair is replaced, and a pair nobody has is removed.
        c.record("a", "two", [("Ready", "True"), ("Degraded", "False")]);
        assert_eq!(
            ctj_gauge(&m),
            [
                "changejob_changetriggeredjobs{condition=\"Degraded\",status=\"False\"} 3",
                "changejob_changetriggeredjobs{condition=\"Ready\",status=\"True\"} 3",
            ]
        );
    }

    #[test]
    fn deleted_ctjs_and_lost_leadership_leave_the_gauge() {
        let m = Metrics::new().unwrap_or_else(|e| panic!("{e}"));
        let c = &m.ctj_conditions;
        c.record("a", "one", [("Ready", "True")]);
        c.record("a", "gone", [("Ready", "False")]);
        c.retain(|_, name| name != "gone");
        assert_eq!(
            ctj_gauge(&m),
            ["changejob_changetriggeredjobs{condition=\"Ready\",status=\"True\"} 1"]
        );
        c.clear();
        assert!(ctj_gauge(&m).is_empty());
    }

    proptest::proptest! {
        /// However records, deletions and leadership losses interleave, the gauge equals a
        /// count from scratch over each CTJ's last recorded conditions.
        #[test]
        fn ctj_condition_gauge_matches_a_recount(
            ops in proptest::collection::vec((0u8..4, 0u8..6, 0u8..3, proptest::bool::ANY), 0..60)
        ) {
            let m = Metrics::new().unwrap_or_else(|e| panic!("{e}"));
            let c = &m.ctj_conditions;
            let mut model: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
            for (op, ctj, variant, degraded) in ops {
                let name = format!("ctj-{ctj}");
                match op {
                    0 | 1 => {
                        let ready = ["True", "False", "Unknown"][usize::from(variant)];
                        let degraded = if degraded { "True" } else { "False" };
                        c.record("ns", &name, [("Ready", ready), ("Degraded", degraded)]);
                        model.insert(name, vec![
                            ("Ready".into(), ready.into()),
                            ("Degraded".into(), degraded.into()),
                        ]);
                    }
                    2 => {
                        c.retain(|_, n| n != name);
                        model.remove(&name);
                    }
                    _ if variant == 0 => {
                        c.clear();
                        model.clear();
                    }
                    _ => {}
                }
            }
            let mut expected: BTreeMap<(String, String), i64> = BTreeMap::new();
            for pairs in model.values() {
                for pair in pairs {
                    *expected.entry(pair.clone()).or_insert(0) += 1;
                }
            }
            let expected: Vec<String> = expected
                .iter()
                .map(|((t, s), n)| {
                    format!("changejob_changetriggeredjobs{{condition=\"{t}\",status=\"{s}\"}} {n}")
                })
                .collect();
            proptest::prop_assert_eq!(ctj_gauge(&m), expected);
        }
    }

    #[test]
    fn catalogue_names_every_family_with_its_type() {
        let text = Metrics::catalogue().unwrap_or_else(|e| panic!("{e}"));
        for family in [
            "# TYPE changejob_reconciles_total counter",
            "# TYPE changejob_reconcile_errors_total counter",
            "# TYPE changejob_reconcile_duration_seconds histogram",
            "# TYPE changejob_triggers_total counter",
            "# TYPE changejob_webhook_requests_total counter",
            "# TYPE changejob_webhook_duration_seconds histogram",
            "# TYPE changejob_change_to_job_latency_seconds histogram",
            "# TYPE changejob_changetriggeredjobs gauge",
            "# TYPE changejob_leader gauge",
        ] {
            assert!(text.contains(family), "missing {family} in\n{text}");
        }
    }

    #[test]
    fn process_metrics_are_exported_on_linux() {
        let m = Metrics::new().unwrap_or_else(|e| panic!("{e}"));
        if cfg!(target_os = "linux") {
            assert!(m.render().contains("process_resident_memory_bytes"));
        }
    }
}
