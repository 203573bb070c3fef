//! The command line: `ledger-writer` runs the service; `ledger-writer replay` re-posts a range
//! of `txn.outcomes` and exits.

use crate::replay::ReplayFrom;
use clap::{Parser, Subcommand};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Posts accepted transactions to the ledger.
#[derive(Debug, Parser)]
#[command(name = "ledger-writer", version)]
pub struct Cli {
    /// A TOML settings file (also `LEDGERLINE_CONFIG_FILE`).
    #[arg(long, global = true)]
    pub config: Option<std::path::PathBuf>,
    /// Print every setting with its environment variable and default, then exit.
    #[arg(long)]
    pub print_settings: bool,
    /// What to do (default: run the service).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Re-post `txn.outcomes` from an offset or a time up to its current end, through the
    /// normal write path (recorded transactions are skipped), then exit.
    Replay {
        /// Start at this offset in each selected partition.
        #[arg(
            long,
            conflicts_with = "from_time",
            required_unless_present = "from_time"
        )]
        from_offset: Option<i64>,
        /// Start at the first message at or after this RFC 3339 time.
        #[arg(long, value_parser = parse_time)]
        from_time: Option<OffsetDateTime>,
        /// Only these partitions (repeatable; default: all).
        #[arg(long = "partition")]
        partitions: Vec<i32>,
    },
}

fn parse_time(value: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(value, &Rfc3339).map_err(|e| format!("not an RFC 3339 time: {e}"))
}

impl Command {
    /// The replay's start, if this is a replay.
    pub fn replay_from(&self) -> (ReplayFrom, Option<Vec<i32>>) {
        match self {
            Command::Replay {
                from_offset,
                from_time,
                partitions,
            } => {
                let from = match (from_offset, from_time) {
                    (_, Some(t)) => ReplayFrom::Time(*t),
                    (Some(o), None) => ReplayFrom::Offset(*o),
                    (None, None) => ReplayFrom::Offset(0),
                };
                let partitions = (!partitions.is_empty()).then(|| partitions.clone());
                (from, partitions)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_needs_exactly_one_start() {
        assert!(Cli::try_parse_from(["ledger-writer", "replay"]).is_err());
        assert!(Cli::try_parse_from([
            "ledger-writer",
            "replay",
            "--from-offset",
            "1",
            "--from-time",
            "2026-01-01T00:00:00Z"
        ])
        .is_err());
        let cli = Cli::try_parse_from([
            "ledger-writer",
            "replay",
            "--from-time",
            "2026-01-01T00:00:00Z",
            "--partition",
            "2",
        ])
        .unwrap();
        let (from, partitions) = cli.command.unwrap().replay_from();
        assert!(matches!(from, ReplayFrom::Time(_)));
        assert_eq!(partitions, Some(vec![2]));
    }
}
