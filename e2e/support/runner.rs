//! Choosing and running scenarios: `E2E_SCENARIOS` and command-line filters select them,
//! `E2E_CONCURRENCY` bounds how many run at once, scenarios that stop or add operator
//! processes run alone afterwards, and each result is printed as soon as it is known.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::Semaphore;

use super::ctx::Ctx;
use super::env::Env;
use super::{Failure, Outcome, secs};

/// How a scenario ended when it did not fail.
pub enum Verdict {
    /// Everything it asserts held.
    Passed,
    /// It could not run here; the text says why.
    Skipped(String),
}

/// The body of a scenario.
pub type ScenarioFn = fn(Arc<Ctx>) -> BoxFuture<'static, Outcome<Verdict>>;

/// One numbered end-to-end scenario.
pub struct Scenario {
    /// Its number (stable; used by `E2E_SCENARIOS`).
    pub number: u8,
    /// Its name, stating the rule.
    pub name: &'static str,
    /// It kills, restarts or adds operator processes, so it must run alone.
    pub exclusive: bool,
    /// It needs operator processes started by the suite (not an installed operator).
    pub needs_local_operator: bool,
    /// The body.
    pub run: ScenarioFn,
}

/// Longest a single scenario may run before it is failed.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(300);

/// What was chosen to run.
pub struct Selection {
    /// Scenarios in number order.
    pub scenarios: Vec<&'static Scenario>,
    /// Only print the names (`--list`).
    pub list_only: bool,
    /// Why nothing was selected, when nothing was.
    pub empty_because: Option<String>,
}

/// Applies `E2E_SCENARIOS` (numbers or names, comma-separated) and libtest-style arguments
/// (`--list`, `--ignored`, `--skip <filter>`, positional name filters).
pub fn select(
    all: &'static [Scenario],
    env_selection: Option<String>,
    args: &[String],
) -> Result<Selection, String> {
    let mut chosen: Vec<&'static Scenario> = all.iter().collect();
    if let Some(list) = env_selection.filter(|s| !s.trim().is_empty()) {
        let mut wanted = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let found = all
                .iter()
                .find(|s| item.parse::<u8>().ok() == Some(s.number) || item == s.name);
            match found {
                Some(s) => wanted.push(s.number),
                None => {
                    return Err(format!(
                        "E2E_SCENARIOS names an unknown scenario {item:?}; known: {}",
                        all.iter()
                            .map(|s| format!("{} ({})", s.number, s.name))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
        chosen.retain(|s| wanted.contains(&s.number));
    }

    let mut list_only = false;
    let mut filters = Vec::new();
    let mut skips = Vec::new();
    let mut ignored_only = false;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--list" => list_only = true,
            "--ignored" => ignored_only = true,
            "--skip" => skips.extend(iter.next().cloned()),
            // Flags with a separate value that must not be read as a filter.
            "--test-threads" | "--format" | "--color" | "--logfile" | "-Z" => {
                iter.next();
            }
            a if a.starts_with('-') => {}
            a => filters.push(a.to_string()),
        }
    }
    if !filters.is_empty() {
        chosen.retain(|s| filters.iter().any(|f| s.name.contains(f.as_str())));
    }
    chosen.retain(|s| !skips.iter().any(|f| s.name.contains(f.as_str())));
    let empty_because = if ignored_only {
        chosen.clear();
        Some("only ignored tests were requested and the suite has none".to_string())
    } else if chosen.is_empty() {
        Some("no scenario matches the selection".to_string())
    } else {
        None
    };
    Ok(Selection {
        scenarios: chosen,
        list_only,
        empty_because,
    })
}

/// How one scenario ended.
pub enum Ending {
    /// Passed.
    Passed,
    /// Could not run here.
    Skipped(String),
    /// Failed; the text holds the message and the report.
    Failed(String),
}

/// The outcome of one scenario.
pub struct Report {
    /// Scenario number.
    pub number: u8,
    /// Scenario name.
    pub name: &'static str,
    /// How it ended.
    pub ending: Ending,
}

/// Runs the non-exclusive scenarios with at most `concurrency` at a time, then the exclusive
/// ones one by one.
pub async fn run_all(
    env: Arc<Env>,
    scenarios: &[&'static Scenario],
    concurrency: usize,
) -> Vec<Report> {
    let semaphore = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut handles = Vec::new();
    for &scenario in scenarios.iter().filter(|s| !s.exclusive) {
        let semaphore = semaphore.clone();
        let env = env.clone();
        handles.push((
            scenario,
            tokio::spawn(async move {
                let _permit = semaphore.acquire_owned().await;
                run_one(env, scenario).await
            }),
        ));
    }
    let mut reports = Vec::new();
    for (scenario, handle) in handles {
        reports.push(match handle.await {
            Ok(report) => report,
            Err(e) => Report {
                number: scenario.number,
                name: scenario.name,
                ending: Ending::Failed(format!("the scenario runner itself failed: {e}")),
            },
        });
    }
    for &scenario in scenarios.iter().filter(|s| s.exclusive) {
        reports.push(run_one(env.clone(), scenario).await);
        if let Err(e) = env.restore_operators().await {
            println!(
                "e2e: could not bring an operator back after scenario {}: {e}",
                scenario.number
            );
        }
    }
    reports.sort_by_key(|r| r.number);
    reports
}

async fn run_one(env: Arc<Env>, scenario: &'static Scenario) -> Report {
    let tag = format!("e2e: [{:2}] {}", scenario.number, scenario.name);
    let report = |ending| Report {
        number: scenario.number,
        name: scenario.name,
        ending,
    };
    if scenario.needs_local_operator && !env.operators.is_local() {
        let why = "it needs operator processes started by the suite, and E2E_USE_INSTALLED_OPERATOR=1 tests an installed operator instead".to_string();
        println!("{tag}: skipped — {why}");
        return report(Ending::Skipped(why));
    }
    println!("{tag}: started");
    let ctx = Arc::new(Ctx::new(env.clone(), scenario.number, scenario.name));
    let started = Instant::now();
    let mut task = tokio::spawn((scenario.run)(ctx.clone()));
    let outcome = match tokio::time::timeout(SCENARIO_TIMEOUT, &mut task).await {
        Err(_) => {
            task.abort();
            Err(Failure::new(format!(
                "did not finish within {}",
                secs(SCENARIO_TIMEOUT)
            )))
        }
        Ok(Err(join)) => Err(Failure::new(match join.try_into_panic() {
            Ok(panic) => format!("panicked: {}", panic_text(&panic)),
            Err(e) => format!("was cancelled: {e}"),
        })),
        Ok(Ok(outcome)) => outcome,
    };
    let elapsed = secs(started.elapsed());
    let notes = ctx.notes();
    let ending = match outcome {
        Ok(Verdict::Passed) => {
            println!("{tag}: ok in {elapsed}");
            Ending::Passed
        }
        Ok(Verdict::Skipped(why)) => {
            println!("{tag}: skipped — {why}");
            Ending::Skipped(why)
        }
        Err(failure) => {
            let operator = match env.operators.check_running().await {
                Ok(()) => String::new(),
                Err(e) => format!("\n  also: {e}"),
            };
            let text = format!(
                "{}\n  at step: {}{operator}\n{}",
                failure.message,
                ctx.current_step(),
                indent(&ctx.dump().await)
            );
            println!("{tag}: FAILED after {elapsed}: {text}");
            Ending::Failed(text)
        }
    };
    for note in notes {
        println!("{tag}: note: {note}");
    }
    report(ending)
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
