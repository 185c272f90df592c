//! The `kube-changejob` binary: argument parsing and wiring only.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use kube_changejob::config::Overrides;
use kube_changejob::detect::fingerprint::FingerprintKey;
use kube_changejob::{api, inspect, plugin};

#[derive(Parser)]
#[command(
    name = "kube-changejob",
    version,
    about = "Runs a Kubernetes Job whenever the objects it watches change"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator (admission webhook, metrics, and the reconcile loop while leading).
    Run(Box<Overrides>),
    /// Try it on your cluster: apply the CRD (server-side) and run the operator here against the
    /// current kube context, webhook off, metrics on http://127.0.0.1:8080. Takes `run`'s flags.
    Dev(Box<Overrides>),
    /// Print the ChangeTriggeredJob CustomResourceDefinition as YAML.
    Crd,
    /// Show what `fields` paths select in objects from a file, and their fingerprints.
    Fields(FieldsArgs),
    /// Print every metric family the operator exports (Prometheus text format), one series of
    /// each: the names that dashboards and alerts may use.
    Metrics,
    /// Print the version.
    Version,
}

#[derive(clap::Args)]
struct FieldsArgs {
    /// YAML or JSON file with one or more objects (`-` reads standard input).
    #[arg(short = 'f', long = "filename")]
    file: PathBuf,
    /// A field path as in spec.resources[].fields (repeatable; default "*").
    #[arg(long = "field")]
    fields: Vec<String>,
    /// A label selector as in spec.resources[].selector, in kubectl's syntax
    /// (`app=shop,tier in (web,api),!legacy`): shows which objects match and the fingerprint
    /// of the set.
    #[arg(long = "selector", short = 'l')]
    selector: Option<String>,
    /// File holding the installation's fingerprint key (from the operator's key Secret) so
    /// fingerprints match the cluster's; without it a public development key is used.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, default_value = "text")]
    output: OutputFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum OutputFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    // Installed (or symlinked) as kubectl-changejob, the binary is the kubectl plugin.
    if std::env::args_os()
        .next()
        .is_some_and(|argv0| plugin::called_as_plugin(&argv0))
    {
        return plugin::main(std::env::args_os());
    }
    let cli = Cli::parse();
    match cli.command {
        Command::Run(overrides) => kube_changejob::run::main(*overrides),
        Command::Dev(overrides) => kube_changejob::dev::main(*overrides),
        Command::Crd => match api::crd_yaml() {
            Ok(yaml) => emit(&yaml),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Fields(args) => fields(args),
        Command::Metrics => match kube_changejob::metrics::Metrics::catalogue() {
            Ok(text) => emit(&text),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Version => emit(&format!("kube-changejob {}\n", env!("CARGO_PKG_VERSION"))),
    }
}

/// Exit code for bad input.
const BAD_INPUT: u8 = 2;

fn fields(args: FieldsArgs) -> ExitCode {
    let name = args.file.display().to_string();
    let text = if name == "-" {
        let mut buf = String::new();
        std::io::stdin().read_to_string(&mut buf).map(|_| buf)
    } else {
        std::fs::read_to_string(&args.file)
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {name}: {e}");
            return ExitCode::from(BAD_INPUT);
        }
    };
    let key = match &args.key_file {
        Some(path) => match std::fs::read(path).map(|b| FingerprintKey::new(trim_key(b))) {
            Ok(Ok(key)) => key,
            Ok(Err(e)) => {
                eprintln!("error: {}: {e}", path.display());
                return ExitCode::from(BAD_INPUT);
            }
            Err(e) => {
                eprintln!("error: cannot read key file {}: {e}", path.display());
                return ExitCode::from(BAD_INPUT);
            }
        },
        None => {
            eprintln!(
                "notice: no --key-file given; fingerprints use a public development key and will not match the cluster's"
            );
            FingerprintKey::development()
        }
    };
    if let Some(selector) = &args.selector {
        let report = inspect::parse_selector(selector).and_then(|selector| {
            inspect::read_objects(&name, &text)
                .and_then(|objects| inspect::inspect_set(&objects, &selector, &args.fields, &key))
        });
        return match report {
            Ok(report) => emit(&match args.output {
                OutputFormat::Text => inspect::render_set_text(&report),
                OutputFormat::Json => {
                    serde_json::to_string_pretty(&inspect::render_set_json(&report))
                        .unwrap_or_default()
                        + "\n"
                }
            }),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(BAD_INPUT)
            }
        };
    }
    let reports = inspect::read_objects(&name, &text)
        .and_then(|objects| inspect::inspect(&objects, &args.fields, &key));
    match reports {
        Ok(reports) => emit(&match args.output {
            OutputFormat::Text => inspect::render_text(&reports),
            OutputFormat::Json => {
                serde_json::to_string_pretty(&inspect::render_json(&reports)).unwrap_or_default()
                    + "\n"
            }
        }),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(BAD_INPUT)
        }
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn emit(text: &str) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: writing output: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Key files are often written with a trailing newline; the key never ends in whitespace.
fn trim_key(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last().is_some_and(u8::is_ascii_whitespace) {
        bytes.pop();
    }
    bytes
}
