//! The command line.

use clap::{Args, Parser, Subcommand};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Compares the Kafka log, the ledger and the audit trail, and repairs drift.
#[derive(Debug, Parser)]
#[command(name = "reconciler", version)]
pub struct Cli {
    /// A TOML settings file (also `LEDGERLINE_CONFIG_FILE`).
    #[arg(long, global = true)]
    pub config: Option<std::path::PathBuf>,
    /// Print every setting with its environment variable and default, then exit.
    #[arg(long)]
    pub print_settings: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compare the stores with the log over a window, record the run, print what was found.
    /// Exit status: 0 clean, 1 drift found, 2 the run could not complete.
    Run {
        /// The window.
        #[command(flatten)]
        window: WindowArgs,
        /// Also re-derive every audit document of the window (finds edits that left the
        /// hash alone; reads every document).
        #[arg(long)]
        deep: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print recorded runs: one run with its discrepancies, or the latest runs.
    Report {
        /// This run, with its discrepancies.
        #[arg(long)]
        run: Option<i64>,
        /// The latest N runs (default 10).
        #[arg(long, default_value_t = 10)]
        last: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Plan the repair of a run's discrepancies; with `--apply`, carry it out and re-check.
    Repair {
        /// The run to repair.
        #[arg(long)]
        run: i64,
        /// Act (without it: a dry run that prints the plan and changes nothing).
        #[arg(long)]
        apply: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Re-feed a topic into its store through the writer's path (a full rebuild from a
    /// point): `txn.outcomes` into the ledger, any topic into the audit trail.
    Replay {
        /// `txn.outcomes` (ledger and audit), or any audited topic (audit only), by base or
        /// full name.
        #[arg(long)]
        topic: String,
        /// Start at this offset in each selected partition.
        #[arg(long, conflicts_with = "from", required_unless_present = "from")]
        from_offset: Option<i64>,
        /// Start at the first message at or after this RFC 3339 time.
        #[arg(long, value_parser = parse_time)]
        from: Option<OffsetDateTime>,
        /// Only these partitions (repeatable; default: all).
        #[arg(long = "partition")]
        partitions: Vec<i32>,
        /// Which store(s): `ledger`, `audit` or `both` (default: both where they apply).
        #[arg(long, default_value = "both")]
        store: String,
    },
    /// Dead-letter queues.
    Dlq {
        /// What to do with them.
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Run on a schedule over a trailing window, serving `/metrics`, `/healthz`, `/readyz`.
    Daemon,
}

/// Dead-letter commands.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters (all three DLQs, or one). A later copy of a message dead-lettered
    /// more than once names its first copy, the one runs report and `--all` sends.
    List {
        /// `txn.requests.dlq`, `txn.outcomes.dlq` or `txn.postings.dlq` (or a full name).
        #[arg(long)]
        topic: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Send dead letters back to their source topic with their original headers.
    Redrive {
        /// The dead-letter topic.
        #[arg(long)]
        topic: String,
        /// The partition of the one message to redrive.
        #[arg(long, requires = "offset", conflicts_with = "all")]
        partition: Option<i32>,
        /// The offset of the one message to redrive.
        #[arg(long, requires = "partition", conflicts_with = "all")]
        offset: Option<i64>,
        /// Every dead letter of the topic not redriven yet, one copy per source message.
        #[arg(long, required_unless_present = "partition")]
        all: bool,
    },
}

/// A window: `--from T1 --to T2`, or `--last 15m`.
#[derive(Debug, Clone, Args)]
pub struct WindowArgs {
    /// Window start (RFC 3339).
    #[arg(long, value_parser = parse_time, requires = "to", conflicts_with = "last")]
    pub from: Option<OffsetDateTime>,
    /// Window end (RFC 3339, exclusive).
    #[arg(long, value_parser = parse_time, requires = "from")]
    pub to: Option<OffsetDateTime>,
    /// The trailing window ending now: e.g. `90s`, `15m`, `2h`, `1d`.
    #[arg(long, value_parser = parse_span, required_unless_present = "from")]
    pub last: Option<time::Duration>,
}

impl WindowArgs {
    /// The window, given the current time.
    pub fn window(&self, now: OffsetDateTime) -> Result<crate::run::Window, String> {
        let (from, to) = match (self.from, self.to, self.last) {
            (Some(from), Some(to), _) => (from, to),
            (_, _, Some(span)) => (now - span, now),
            _ => return Err("give --from and --to, or --last".into()),
        };
        if to <= from {
            return Err("the window's end must be after its start".into());
        }
        Ok(crate::run::Window { from, to })
    }
}

fn parse_time(value: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(value, &Rfc3339).map_err(|e| format!("not an RFC 3339 time: {e}"))
}

/// `90s`, `15m`, `2h`, `1d`.
pub fn parse_span(value: &str) -> Result<time::Duration, String> {
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("`{value}`: give a unit: s, m, h or d"))?;
    let (n, unit) = value.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("`{value}`: not a whole number"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("`{value}`: unit must be s, m, h or d")),
    };
    if n <= 0 {
        return Err(format!("`{value}`: must be positive"));
    }
    Ok(time::Duration::seconds(n * seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn spans_take_seconds_minutes_hours_and_days() {
        assert_eq!(parse_span("90s").unwrap(), time::Duration::seconds(90));
        assert_eq!(parse_span("15m").unwrap(), time::Duration::minutes(15));
        assert_eq!(parse_span("2h").unwrap(), time::Duration::hours(2));
        assert_eq!(parse_span("1d").unwrap(), time::Duration::days(1));
        assert!(parse_span("15").is_err());
        assert!(parse_span("0m").is_err());
        assert!(parse_span("5w").is_err());
    }

    #[test]
    fn a_run_needs_a_window_of_either_form_but_not_both() {
        assert!(Cli::try_parse_from(["reconciler", "run"]).is_err());
        assert!(Cli::try_parse_from(["reconciler", "run", "--last", "15m"]).is_ok());
        assert!(Cli::try_parse_from([
            "reconciler",
            "run",
            "--from",
            "2026-01-01T00:00:00Z",
            "--last",
            "15m"
        ])
        .is_err());
        let cli = Cli::try_parse_from([
            "reconciler",
            "run",
            "--from",
            "2026-01-01T00:00:00Z",
            "--to",
            "2026-01-01T01:00:00Z",
        ])
        .unwrap();
        let Some(Command::Run { window, .. }) = cli.command else {
            panic!("a run");
        };
        let w = window.window(datetime!(2026-02-01 00:00 UTC)).unwrap();
        assert_eq!(w.to - w.from, time::Duration::hours(1));
    }

    #[test]
    fn a_window_that_ends_before_it_starts_is_refused() {
        let args = WindowArgs {
            from: Some(datetime!(2026-01-02 00:00 UTC)),
            to: Some(datetime!(2026-01-01 00:00 UTC)),
            last: None,
        };
        assert!(args.window(datetime!(2026-02-01 00:00 UTC)).is_err());
    }

    #[test]
    fn a_redrive_names_one_message_or_all() {
        let base = [
            "reconciler",
            "dlq",
            "redrive",
            "--topic",
            "txn.outcomes.dlq",
        ];
        assert!(Cli::try_parse_from(base).is_err());
        assert!(Cli::try_parse_from([&base[..], &["--all"]].concat()).is_ok());
        assert!(
            Cli::try_parse_from([&base[..], &["--partition", "1", "--offset", "4"]].concat())
                .is_ok()
        );
        assert!(Cli::try_parse_from([&base[..], &["--partition", "1"]].concat()).is_err());
    }
}
