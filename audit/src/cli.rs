//! The command line: `audit` runs the service; `audit verify` checks the stored chains and
//! exits.

use crate::document::Role;
use crate::verify::Scope;
use clap::{Parser, Subcommand};
use ledgerline_runtime::kafka::KafkaSettings;

/// Records every pipeline event in a hash-chained audit trail.
#[derive(Debug, Parser)]
#[command(name = "audit", version)]
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
    /// Walk the stored chains in offset order, print a JSON report, and exit 0 when every
    /// chain is intact, 1 when one is broken, 2 when the check could not run.
    Verify {
        /// Only this topic: a pipeline topic's name (`txn.requests`, `txn.requests.dlq`, …,
        /// given this deployment's `kafka.topic_prefix`) or the full name as stored.
        #[arg(long)]
        topic: Option<String>,
        /// Only this partition of `--topic`.
        #[arg(long, requires = "topic")]
        partition: Option<i32>,
    },
}

impl Command {
    /// The chains a `verify` covers.
    pub fn scope(&self, kafka: &KafkaSettings) -> Scope {
        match self {
            Command::Verify { topic: None, .. } => Scope::All,
            Command::Verify {
                topic: Some(topic),
                partition,
            } => {
                let topic = full_topic_name(kafka, topic);
                match partition {
                    Some(partition) => Scope::Partition {
                        topic,
                        partition: *partition,
                    },
                    None => Scope::Topic(topic),
                }
            }
        }
    }
}

/// A pipeline topic's base name gets the deployment's prefix; anything else is taken as is.
fn full_topic_name(kafka: &KafkaSettings, topic: &str) -> String {
    if Role::of(topic) == Role::Unknown || topic.starts_with(&kafka.topic_prefix) {
        topic.to_string()
    } else {
        kafka.topic(topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(args: &[&str], prefix: &str) -> Scope {
        let kafka = KafkaSettings {
            topic_prefix: prefix.into(),
            ..KafkaSettings::default()
        };
        Cli::try_parse_from(args)
            .unwrap()
            .command
            .unwrap()
            .scope(&kafka)
    }

    #[test]
    fn verify_covers_everything_a_topic_or_a_partition() {
        assert_eq!(scope(&["audit", "verify"], ""), Scope::All);
        assert_eq!(
            scope(&["audit", "verify", "--topic", "txn.requests"], "t1."),
            Scope::Topic("t1.txn.requests".into())
        );
        assert_eq!(
            scope(
                &[
                    "audit",
                    "verify",
                    "--topic",
                    "t1.txn.outcomes.dlq",
                    "--partition",
                    "2"
                ],
                "t1."
            ),
            Scope::Partition {
                topic: "t1.txn.outcomes.dlq".into(),
                partition: 2
            }
        );
    }

    #[test]
    fn a_partition_needs_a_topic() {
        assert!(Cli::try_parse_from(["audit", "verify", "--partition", "1"]).is_err());
    }
}
