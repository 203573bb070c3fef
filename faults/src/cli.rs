//! The command line: `faults list` and `faults run`.
//!
//! `faults run` runs the chosen scenarios one after another (`--runs` each, seeds `--seed`,
//! `--seed + 1`, …), prints each verdict, a failure's seed, timeline and first violated
//! invariant, and the results table; it exits 0 only when every run passed.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::load::LoadSettings;
use crate::report;
use crate::run::{self, Outcome, RunSettings};
use crate::scenario::{Intensity, Scenario};
use crate::stack::Binaries;

/// Fault injection for Ledgerline.
#[derive(Debug, Parser)]
#[command(name = "faults", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print every scenario's name.
    List,
    /// Run scenarios and print the results table.
    Run(RunArgs),
}

/// Options of `faults run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// A scenario to run (repeatable); see `faults list`.
    #[arg(long = "scenario", value_enum)]
    pub scenarios: Vec<Scenario>,
    /// Run every scenario.
    #[arg(long, conflicts_with = "fast")]
    pub all: bool,
    /// Run the CI subset, at the CI intensity.
    #[arg(long)]
    pub fast: bool,
    /// Runs per scenario (seeds `seed`, `seed + 1`, …).
    #[arg(long, default_value_t = 1)]
    pub runs: u32,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where runs write their logs and record files.
    #[arg(long, default_value = ".local/faults")]
    pub out: PathBuf,
    /// Where the service binaries are (default: next to this binary, else target/*).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Concurrent load workers.
    #[arg(long, default_value_t = 8)]
    pub workers: u32,
    /// Pause after each transaction per worker, in milliseconds.
    #[arg(long, default_value_t = 40)]
    pub pause_ms: u64,
    /// Seconds of load before the first fault.
    #[arg(long, default_value_t = 3)]
    pub warmup_secs: u64,
    /// Seconds of load after the last fault.
    #[arg(long, default_value_t = 5)]
    pub settle_secs: u64,
    /// Most seconds the pipeline may take to finish afterwards.
    #[arg(long, default_value_t = 300)]
    pub drain_timeout_secs: u64,
    /// Give each consumer stage a `kafka.group_instance_id` (static group membership), so a
    /// restarted stage takes its partitions back without waiting for its session to expire.
    #[arg(long)]
    pub static_membership: bool,
    /// Write the results table (Markdown) here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write every outcome (JSON) here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl RunArgs {
    /// The scenarios chosen, in suite order.
    pub fn chosen(&self) -> Vec<Scenario> {
        if self.all {
            return Scenario::ALL.to_vec();
        }
        if self.fast && self.scenarios.is_empty() {
            return Scenario::FAST.to_vec();
        }
        let mut chosen = self.scenarios.clone();
        chosen.sort();
        chosen.dedup();
        chosen
    }

    /// The settings of one run.
    pub fn run_settings(&self, scenario: Scenario, seed: u64) -> RunSettings {
        RunSettings {
            scenario,
            seed,
            dir: self.out.join(format!("{}-{seed}", scenario.name())),
            binaries: Binaries::new(self.bin_dir.clone()),
            load: LoadSettings {
                workers: self.workers,
                pause_ms: self.pause_ms,
                ..LoadSettings::default()
            },
            intensity: if self.fast {
                Intensity::FAST
            } else {
                Intensity::FULL
            },
            warmup: Duration::from_secs(self.warmup_secs),
            settle: Duration::from_secs(self.settle_secs),
            drain_timeout: Duration::from_secs(self.drain_timeout_secs),
            static_membership: self.static_membership,
        }
    }
}

/// Runs every chosen scenario `runs` times; each outcome is handed to `each` as it ends.
pub async fn run_all(
    args: &RunArgs,
    mut each: impl FnMut(&Outcome),
) -> Result<Vec<Outcome>, crate::error::FaultError> {
    let mut outcomes = Vec::new();
    for scenario in args.chosen() {
        for i in 0..u64::from(args.runs) {
            let outcome = run::run(&args.run_settings(scenario, args.seed + i)).await?;
            each(&outcome);
            outcomes.push(outcome);
        }
    }
    Ok(outcomes)
}

/// The binary's entry point.
pub async fn main() -> ExitCode {
    ledgerline_runtime::telemetry::init_cli_logging(&Default::default());
    let cli = Cli::parse();
    let args = match cli.command {
        Command::List => {
            for s in Scenario::ALL {
                let fast = if Scenario::FAST.contains(&s) {
                    "  (fast subset)"
                } else {
                    ""
                };
                println!("{}{fast}", s.name());
            }
            return ExitCode::SUCCESS;
        }
        Command::Run(args) => args,
    };
    if args.chosen().is_empty() {
        eprintln!("error: name a --scenario, or use --all or --fast");
        return ExitCode::from(2);
    }
    let outcomes = run_all(&args, |o| {
        if o.passed() {
            println!(
                "PASS {} seed {}: {} faults, {} accepted, recovery {}, {:.0} s",
                o.scenario.name(),
                o.seed,
                o.faults,
                o.counts.accepted,
                o.recovery_secs
                    .map_or("–".to_string(), |s| format!("{s:.1} s")),
                o.duration_secs
            );
        } else {
            println!("{}", o.failure());
        }
    })
    .await;
    let outcomes = match outcomes {
        Ok(outcomes) => outcomes,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let table = report::markdown(&report::rows(&outcomes));
    println!("\n{table}");
    let written = [
        args.report.as_ref().map(|p| (p, table.clone())),
        args.json.as_ref().map(|p| {
            (
                p,
                serde_json::to_string_pretty(&outcomes).unwrap_or_default(),
            )
        }),
    ];
    for (path, contents) in written.into_iter().flatten() {
        if let Err(error) = std::fs::write(path, contents) {
            eprintln!("error: writing {}: {error}", path.display());
            return ExitCode::from(2);
        }
    }
    if outcomes.iter().all(Outcome::passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(argv: &[&str]) -> RunArgs {
        let mut full = vec!["faults", "run"];
        full.extend_from_slice(argv);
        match Cli::try_parse_from(full).unwrap().command {
            Command::Run(args) => args,
            Command::List => unreachable!("parsed a run"),
        }
    }

    #[test]
    fn fast_alone_chooses_the_ci_subset_at_ci_intensity() {
        let a = args(&["--fast"]);
        assert_eq!(a.chosen(), Scenario::FAST.to_vec());
        assert_eq!(
            a.run_settings(Scenario::Poison, 7).intensity,
            Intensity::FAST
        );
    }

    #[test]
    fn named_scenarios_run_once_each_in_suite_order_with_consecutive_seeds() {
        let a = args(&[
            "--scenario",
            "poison",
            "--scenario",
            "kill-audit",
            "--scenario",
            "poison",
        ]);
        assert_eq!(a.chosen(), vec![Scenario::KillAudit, Scenario::Poison]);
        let s = a.run_settings(Scenario::KillAudit, 3);
        assert_eq!(s.intensity, Intensity::FULL);
        assert!(s.dir.ends_with("kill-audit-3"));
    }

    #[test]
    fn all_and_fast_cannot_be_combined() {
        assert!(Cli::try_parse_from(["faults", "run", "--all", "--fast"]).is_err());
    }
}
