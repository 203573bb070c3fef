//! The record file: one JSON line per `202 Accepted`, written by every load mode and read by
//! `loadtest verify`.
//!
//! ```json
//! {"transaction_id":"…","merchant_id":"lt","idempotency_key":"lt-…","role":"original",
//!  "account_id":"lt-acc-000042","amount_minor":1250,"type":"credit","currency":"EUR",
//!  "accepted_at_ms":1795000000123}
//! ```
//!
//! `role` says why the request was sent: the `original`, a `retry` with the same body, or a
//! `conflict` (same key, another body). `accepted_at_ms` is the generator's clock when the 202
//! arrived, for the 202 → POSTED latency.

use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::workload::TxnSpec;

/// Why a recorded request was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The first request under its key.
    Original,
    /// The same key and body again.
    Retry,
    /// The same key with another body (must have no effect).
    Conflict,
}

/// One accepted request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The `transaction_id` of the 202 body.
    pub transaction_id: String,
    /// The merchant that signed it.
    pub merchant_id: String,
    /// Its `Idempotency-Key`.
    pub idempotency_key: String,
    /// Original, retry or conflict.
    pub role: Role,
    /// What the body said.
    #[serde(flatten)]
    pub spec: TxnSpec,
    /// When the 202 arrived (unix milliseconds, generator clock).
    pub accepted_at_ms: i64,
}

/// Why the record file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Opening, writing or reading the file failed.
    #[error("record file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is not a record.
    #[error("record file {path}, line {line}: {detail}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        detail: String,
    },
}

/// Appends records to a file from many tasks. A line is written whole under the lock, so
/// concurrent writers never interleave; the buffer is flushed on [`Recorder::flush`] and drop.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    out: Mutex<BufWriter<File>>,
    written: AtomicU64,
    failed: AtomicU64,
}

impl Recorder {
    /// Creates (or appends to) `path`.
    pub fn open(path: &Path) -> Result<Recorder, RecordError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| RecordError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Recorder {
            path: path.to_path_buf(),
            out: Mutex::new(BufWriter::with_capacity(64 * 1024, file)),
            written: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        })
    }

    /// Appends one record. A failed write is counted (and logged once), never fatal to the
    /// load: `verify` then reports fewer records than 202s.
    pub fn record(&self, accepted: &Accepted) {
        let mut line = match serde_json::to_vec(accepted) {
            Ok(line) => line,
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        line.push(b'\n');
        let result = match self.out.lock() {
            Ok(mut out) => out.write_all(&line),
            Err(poisoned) => poisoned.into_inner().write_all(&line),
        };
        match result {
            Ok(()) => {
                self.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::error!(path = %self.path.display(), %error, "cannot write the record file");
                }
            }
        }
    }

    /// Writes buffered records to the file.
    pub fn flush(&self) -> Result<(), RecordError> {
        let mut out = match self.out.lock() {
            Ok(out) => out,
            Err(poisoned) => poisoned.into_inner(),
        };
        out.flush().map_err(|source| RecordError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Records that could not be written.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// Reads every record of `path`; blank lines are skipped.
pub fn read(path: &Path) -> Result<Vec<Accepted>, RecordError> {
    let io = |source| RecordError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let mut out = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|e| RecordError::Parse {
            path: path.to_path_buf(),
            line: index + 1,
            detail: e.to_string(),
        })?;
        out.push(record);
    }
    Ok(out)
}

/// Unix milliseconds now (generator clock).
pub fn now_ms() -> i64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledgerline_contracts::events::TxnType;

    fn sample(role: Role, n: i64) -> Accepted {
        Accepted {
            transaction_id: format!("00000000-0000-0000-0000-{n:012}"),
            merchant_id: "m1".into(),
            idempotency_key: format!("k-{n}"),
            role,
            spec: TxnSpec {
                account_id: "lt-acc-000001".into(),
                amount_minor: 125 + n,
                txn_type: TxnType::Debit,
                currency: "EUR".into(),
            },
            accepted_at_ms: 1_795_000_000_000 + n,
        }
    }

    #[test]
    fn records_written_by_several_threads_read_back_whole() {
        let dir = std::env::temp_dir().join(format!("lt-record-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("accepted.jsonl");
        let recorder = std::sync::Arc::new(Recorder::open(&path).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let r = recorder.clone();
                std::thread::spawn(move || {
                    for n in 0..250 {
                        r.record(&sample(Role::Original, t * 1_000 + n));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        recorder.flush().unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.len(), 1_000);
        assert_eq!(recorder.written(), 1_000);
        assert!(back.contains(&sample(Role::Original, 3_249)));
    }

    #[test]
    fn a_record_line_has_the_documented_flat_fields() {
        let line = serde_json::to_value(sample(Role::Conflict, 1)).unwrap();
        assert_eq!(line["role"], "conflict");
        assert_eq!(line["type"], "debit");
        assert_eq!(line["amount_minor"], 126);
        assert_eq!(line["account_id"], "lt-acc-000001");
    }

    #[test]
    fn a_broken_line_is_reported_with_its_number() {
        let path = std::env::temp_dir().join(format!("lt-record-{}.jsonl", uuid::Uuid::new_v4()));
        std::fs::write(&path, "\n{\"transaction_id\":1}\n").unwrap();
        match read(&path) {
            Err(RecordError::Parse { line, .. }) => assert_eq!(line, 2),
            other => panic!("{other:?}"),
        }
    }
}
