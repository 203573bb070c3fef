//! The transaction status read model in Redis (design §5): what `GET /v1/transactions/{id}`
//! reports while a transaction is recent.
//!
//! One hash per transaction (`<prefix>txn:<transaction_id>`), holding its states, its fields
//! and a capped set of attempts (`attempt:<request_id>`, counted in `attempts`). Every state
//! field is written with `HSETNX`, so states only move forward, a re-emitted event never
//! rewrites a timestamp, and writers in different services never need to coordinate. The hash
//! expires after the retention; each write extends it.

use crate::settings::ensure;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Lifecycle states (design §5), in the order they can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// Durably in `txn.requests`.
    Received,
    /// The processor accepted it.
    Accepted,
    /// The processor rejected it (a rule failed).
    Rejected,
    /// A retry of an earlier request with the same key and body: no new effect.
    Duplicate,
    /// Posted to the ledger.
    Posted,
    /// Declined by the ledger (e.g. insufficient funds).
    Declined,
    /// Dead-lettered after bounded retries.
    Failed,
}

/// The transaction's own fields, as the merchant sent them (normalised).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionFields {
    /// The request that owns the idempotency key.
    pub request_id: String,
    /// Account credited or debited.
    pub account_id: String,
    /// Decimal string at the currency's full scale.
    pub amount: String,
    /// ISO-4217 code.
    pub currency: String,
    /// `credit` or `debit`.
    #[serde(rename = "type")]
    pub txn_type: String,
    /// Free text, if given.
    pub description: Option<String>,
    /// Merchant metadata.
    pub metadata: std::collections::BTreeMap<String, String>,
    /// Correlation id of the owning request.
    pub correlation_id: String,
}

impl TransactionFields {
    /// The fields of a requested transaction, normalised for display.
    pub fn from_requested(event: &ledgerline_contracts::events::TransactionRequested) -> Self {
        Self {
            request_id: event.request_id.to_string(),
            account_id: event.account_id.to_string(),
            amount: ledgerline_contracts::money::format_minor(event.amount_minor, event.currency),
            currency: event.currency.code().to_string(),
            txn_type: event.txn_type.as_str().to_string(),
            description: event.description.clone(),
            metadata: event.metadata.clone(),
            correlation_id: event.correlation_id.clone(),
        }
    }
}

/// One write to the read model.
#[derive(Debug, Clone)]
pub enum StatusUpdate {
    /// Ingress: the request is durably in Kafka. Provisional fields; the processor's decision
    /// overwrites them with the owning request's.
    Received {
        transaction_id: String,
        merchant_id: String,
        fields: TransactionFields,
        at: String,
    },
    /// Processor: the owning request was accepted or rejected.
    Decided {
        transaction_id: String,
        merchant_id: String,
        fields: TransactionFields,
        state: State,
        reason_code: Option<String>,
        at: String,
    },
    /// Processor: a decision about one attempt (every request, including duplicates and
    /// conflicts, which never change the transaction's own state).
    Attempt {
        transaction_id: String,
        attempt: Attempt,
    },
    /// Ledger: posted or declined.
    Settled {
        transaction_id: String,
        state: State,
        reason_code: Option<String>,
        balance_after: Option<String>,
        at: String,
    },
    /// Any stage: dead-lettered.
    Failed {
        transaction_id: String,
        reason_code: String,
        at: String,
    },
}

/// One HTTP attempt at a transaction and what the processor made of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// The attempt's request id.
    pub request_id: String,
    /// `ACCEPTED`, `REJECTED` or `DUPLICATE`.
    pub decision: State,
    /// Why, where there is a reason.
    pub reason_code: Option<String>,
    /// When it was decided.
    pub at: String,
}

/// A reached state with its timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateEntry {
    /// The state.
    pub state: State,
    /// When it was reached (RFC 3339).
    pub at: String,
    /// Machine-readable reason, where the state has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
}

/// What a status read returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionStatus {
    /// The transaction.
    pub transaction_id: String,
    /// Its merchant (reads are scoped to it).
    pub merchant_id: String,
    /// The furthest state reached.
    pub state: State,
    /// Reason of the current state, if any.
    pub reason_code: Option<String>,
    /// Every reached state, in lifecycle order.
    pub history: Vec<StateEntry>,
    /// Balance after posting (decimal string), once posted.
    pub balance_after: Option<String>,
    /// The transaction's fields.
    pub fields: TransactionFields,
    /// Every attempt and its decision, oldest first.
    pub attempts: Vec<Attempt>,
}

/// Read-model settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusSettings {
    /// How long a transaction's status stays in Redis after its last change.
    pub retention_hours: u64,
    /// Most attempts kept per transaction (oldest dropped first).
    pub attempts_max: u32,
}

impl Default for StatusSettings {
    fn default() -> Self {
        Self {
            retention_hours: 72,
            attempts_max: 32,
        }
    }
}

impl StatusSettings {
    /// Most hours a status may be kept: the read model holds recent state, and PostgreSQL is
    /// the durable record of everything that settled.
    pub const RETENTION_HOURS_MAX: u64 = 8_760;
    /// Most attempts per transaction: each is a field of the transaction's hash and part of
    /// every status answer.
    pub const ATTEMPTS_MAX_MAX: u32 = 1_000;

    /// Checks the ranges. A retention of 0 would expire a status as it is written, so a client
    /// polling right after its 202 would get a 404.
    pub fn validate(&self) -> Result<(), String> {
        ensure(
            (1..=Self::RETENTION_HOURS_MAX).contains(&self.retention_hours),
            "status.retention_hours",
            &format!("must be in 1..={}", Self::RETENTION_HOURS_MAX),
        )?;
        ensure(
            (1..=Self::ATTEMPTS_MAX_MAX).contains(&self.attempts_max),
            "status.attempts_max",
            &format!("must be in 1..={}", Self::ATTEMPTS_MAX_MAX),
        )
    }
}

/// The Redis-backed read model.
#[derive(Clone)]
pub struct StatusStore {
    conn: ConnectionManager,
    prefix: String,
    retention_secs: i64,
    attempts_max: u32,
    /// Sent by hash (EVALSHA): its body would otherwise travel and be hashed once per call.
    attempts_script: redis::Script,
}

impl std::fmt::Debug for StatusStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

const F_MERCHANT: &str = "merchant_id";
/// Adds each attempt to its transaction's hash unless it is known or the cap is reached, in one
/// call for many attempts (KEYS: the transaction hashes; ARGV: cap, then field and entry per
/// key). Attempts of one transaction in one call are taken in order, as separate calls would.
/// The pipeline expires the hashes after the call.
const ATTEMPTS_SCRIPT: &str = r"
local cap = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local count = tonumber(redis.call('HGET', key, 'attempts') or '0')
  if count < cap and redis.call('HSETNX', key, ARGV[2 * i], ARGV[2 * i + 1]) == 1 then
    redis.call('HINCRBY', key, 'attempts', 1)
  end
end
return #KEYS";
/// Most attempts per script call. A call runs alone on the Redis server, so a bounded call
/// keeps other clients' commands from waiting long behind a large batch.
const ATTEMPTS_PER_CALL_MAX: usize = 250;
/// Prefix of an attempt's field (`attempt:<request_id>`) in its transaction's hash.
const F_ATTEMPT_PREFIX: &str = "attempt:";
const F_FIELDS: &str = "fields";
const F_OWNER_FIELDS: &str = "owner_fields";

fn state_fields(state: State) -> (&'static str, &'static str) {
    match state {
        State::Received => ("received_at", "received_reason"),
        State::Accepted | State::Rejected | State::Duplicate => ("decided_at", "decided_reason"),
        State::Posted | State::Declined => ("settled_at", "settled_reason"),
        State::Failed => ("failed_at", "failed_reason"),
    }
}

impl StatusStore {
    /// Wraps a connection.
    pub fn new(conn: ConnectionManager, key_prefix: &str, settings: &StatusSettings) -> Self {
        Self {
            conn,
            prefix: key_prefix.to_string(),
            retention_secs: i64::try_from(settings.retention_hours.saturating_mul(3600))
                .unwrap_or(i64::MAX),
            // In 1..=ATTEMPTS_MAX_MAX: the services validate their settings at start-up.
            attempts_max: settings.attempts_max,
            attempts_script: redis::Script::new(ATTEMPTS_SCRIPT),
        }
    }

    fn key(&self, transaction_id: &str) -> String {
        format!("{}txn:{}", self.prefix, transaction_id)
    }

    /// Where attempts were kept before they moved into the transaction's hash. Read, never
    /// written, so a status written before the move keeps its attempts for its retention.
    fn legacy_attempts_key(&self, transaction_id: &str) -> String {
        format!("{}txn:{}:attempts", self.prefix, transaction_id)
    }

    /// Applies a batch of updates in one pipelined round trip.
    pub async fn apply(&self, updates: &[StatusUpdate]) -> redis::RedisResult<()> {
        if updates.is_empty() {
            return Ok(());
        }
        let pipe = self.pipeline(updates);
        let mut conn = self.conn.clone();
        match pipe.query_async::<()>(&mut conn).await {
            // A restarted or flushed Redis has forgotten the script: load it and send the
            // pipeline again, which is safe because every update in it is idempotent.
            Err(error) if error.kind() == redis::ErrorKind::NoScriptError => {
                self.attempts_script.load_async(&mut conn).await?;
                pipe.query_async::<()>(&mut conn).await
            }
            result => result,
        }
    }

    /// The commands `apply` sends for `updates`: each update's `HSETNX`es in order, the
    /// attempts in script calls of at most [`ATTEMPTS_PER_CALL_MAX`], then one `EXPIRE` per
    /// transaction hash the batch touched. Public so a benchmark can send exactly these writes.
    ///
    /// Why not a command or a script call per update: Redis's own CPU is the cost here (it
    /// shares the cores with the broker), and each script call pays a setup larger than a few
    /// commands, while a repeated `EXPIRE` of the same hash is pure overhead.
    pub fn pipeline(&self, updates: &[StatusUpdate]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        // Every hash the batch writes, expired once at the end (order does not matter).
        let mut touched = std::collections::HashSet::with_capacity(updates.len());
        let mut attempts: Vec<(String, &Attempt)> = Vec::new();
        for update in updates {
            touched.insert(self.add_update(&mut pipe, &mut attempts, update));
        }
        for chunk in attempts.chunks(ATTEMPTS_PER_CALL_MAX) {
            let call = pipe
                .cmd("EVALSHA")
                .arg(self.attempts_script.get_hash())
                .arg(chunk.len());
            for (key, _) in chunk {
                call.arg(key);
            }
            call.arg(self.attempts_max);
            for (_, attempt) in chunk {
                call.arg(format!("{F_ATTEMPT_PREFIX}{}", attempt.request_id))
                    .arg(serde_json::to_string(attempt).unwrap_or_default());
            }
            call.ignore();
        }
        for key in touched {
            pipe.expire(key, self.retention_secs).ignore();
        }
        pipe
    }

    /// Adds an update's `HSETNX`es, or gathers its attempt for the script calls; returns the
    /// transaction hash it touches.
    fn add_update<'a>(
        &self,
        pipe: &mut redis::Pipeline,
        attempts: &mut Vec<(String, &'a Attempt)>,
        update: &'a StatusUpdate,
    ) -> String {
        let json = |v: &TransactionFields| serde_json::to_string(v).unwrap_or_default();
        match update {
            StatusUpdate::Received {
                transaction_id,
                merchant_id,
                fields,
                at,
            } => {
                let key = self.key(transaction_id);
                pipe.hset_nx(&key, F_MERCHANT, merchant_id).ignore();
                pipe.hset_nx(&key, F_FIELDS, json(fields)).ignore();
                pipe.hset_nx(&key, "received_at", at).ignore();
                key
            }
            StatusUpdate::Decided {
                transaction_id,
                merchant_id,
                fields,
                state,
                reason_code,
                at,
            } => {
                let key = self.key(transaction_id);
                let (at_field, reason_field) = state_fields(*state);
                pipe.hset_nx(&key, F_MERCHANT, merchant_id).ignore();
                // The owner's fields replace ingress's provisional ones exactly once.
                pipe.hset_nx(&key, F_OWNER_FIELDS, json(fields)).ignore();
                pipe.hset_nx(&key, "decision", state_name(*state)).ignore();
                pipe.hset_nx(&key, at_field, at).ignore();
                if let Some(reason) = reason_code {
                    pipe.hset_nx(&key, reason_field, reason).ignore();
                }
                key
            }
            StatusUpdate::Attempt {
                transaction_id,
                attempt,
            } => {
                // A field per request id in the transaction's own hash (one key and one expiry
                // per transaction, not two): a redelivered batch rewrites nothing, and the
                // script caps the number of attempts kept (first ones win).
                let key = self.key(transaction_id);
                attempts.push((key.clone(), attempt));
                key
            }
            StatusUpdate::Settled {
                transaction_id,
                state,
                reason_code,
                balance_after,
                at,
            } => {
                let key = self.key(transaction_id);
                let (at_field, reason_field) = state_fields(*state);
                pipe.hset_nx(&key, "settlement", state_name(*state))
                    .ignore();
                pipe.hset_nx(&key, at_field, at).ignore();
                if let Some(reason) = reason_code {
                    pipe.hset_nx(&key, reason_field, reason).ignore();
                }
                if let Some(balance) = balance_after {
                    pipe.hset_nx(&key, "balance_after", balance).ignore();
                }
                key
            }
            StatusUpdate::Failed {
                transaction_id,
                reason_code,
                at,
            } => {
                let key = self.key(transaction_id);
                pipe.hset_nx(&key, "failed_at", at).ignore();
                pipe.hset_nx(&key, "failed_reason", reason_code).ignore();
                key
            }
        }
    }

    /// Reads one transaction's status; `None` when unknown or expired.
    pub async fn get(&self, transaction_id: &str) -> redis::RedisResult<Option<TransactionStatus>> {
        let mut conn = self.conn.clone();
        let (hash, legacy): (HashMap<String, String>, HashMap<String, String>) = redis::pipe()
            .hgetall(self.key(transaction_id))
            .hgetall(self.legacy_attempts_key(transaction_id))
            .query_async(&mut conn)
            .await?;
        let attempts: Vec<&String> = hash
            .iter()
            .filter(|(field, _)| field.starts_with(F_ATTEMPT_PREFIX))
            .map(|(_, entry)| entry)
            .chain(legacy.values())
            .collect();
        Ok(assemble(
            transaction_id,
            &hash,
            &attempts,
            self.attempts_max as usize,
        ))
    }
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Received => "RECEIVED",
        State::Accepted => "ACCEPTED",
        State::Rejected => "REJECTED",
        State::Duplicate => "DUPLICATE",
        State::Posted => "POSTED",
        State::Declined => "DECLINED",
        State::Failed => "FAILED",
    }
}

fn parse_state(name: &str) -> Option<State> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

/// Builds the status from the stored hash: pure, so the lifecycle rules are unit-tested.
fn assemble(
    transaction_id: &str,
    hash: &HashMap<String, String>,
    attempts: &[&String],
    attempts_max: usize,
) -> Option<TransactionStatus> {
    let merchant_id = hash.get(F_MERCHANT)?.clone();
    let fields_json = hash.get(F_OWNER_FIELDS).or_else(|| hash.get(F_FIELDS))?;
    let fields: TransactionFields = serde_json::from_str(fields_json).ok()?;
    let mut history = Vec::new();
    let mut push = |state: State, at_field: &str, reason_field: &str| {
        if let Some(at) = hash.get(at_field) {
            history.push(StateEntry {
                state,
                at: at.clone(),
                reason_code: hash.get(reason_field).cloned(),
            });
        }
    };
    push(State::Received, "received_at", "received_reason");
    if let Some(decision) = hash.get("decision").and_then(|d| parse_state(d)) {
        push(decision, "decided_at", "decided_reason");
    }
    if let Some(settlement) = hash.get("settlement").and_then(|d| parse_state(d)) {
        push(settlement, "settled_at", "settled_reason");
    }
    push(State::Failed, "failed_at", "failed_reason");
    // A later stage may be recorded before an earlier one's write lands (different services);
    // the current state is the furthest reached, never the last written.
    let current = history.iter().max_by_key(|e| e.state)?.clone();
    Some(TransactionStatus {
        transaction_id: transaction_id.to_string(),
        merchant_id,
        state: current.state,
        reason_code: current.reason_code,
        history,
        balance_after: hash.get("balance_after").cloned(),
        fields,
        attempts: {
            let mut list: Vec<Attempt> = attempts
                .iter()
                .filter_map(|a| serde_json::from_str(a).ok())
                .collect();
            list.sort_by(|a, b| (&a.at, &a.request_id).cmp(&(&b.at, &b.request_id)));
            // A status written across the layout change may hold an attempt in both places,
            // and the two caps together may exceed one: the first ones win, once each.
            let mut seen = std::collections::HashSet::new();
            list.retain(|a| seen.insert(a.request_id.clone()));
            list.truncate(attempts_max);
            list
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> TransactionFields {
        TransactionFields {
            request_id: "r1".into(),
            account_id: "acc-1".into(),
            amount: "10.00".into(),
            currency: "EUR".into(),
            txn_type: "credit".into(),
            description: None,
            metadata: Default::default(),
            correlation_id: "c1".into(),
        }
    }

    fn hash(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn status_settings_refuse_a_zero_retention_and_a_zero_or_huge_attempt_cap() {
        assert!(StatusSettings::default().validate().is_ok());
        let zero_retention = StatusSettings {
            retention_hours: 0,
            ..Default::default()
        };
        assert!(zero_retention
            .validate()
            .unwrap_err()
            .starts_with("status.retention_hours"));
        for attempts_max in [0, StatusSettings::ATTEMPTS_MAX_MAX + 1] {
            let s = StatusSettings {
                attempts_max,
                ..Default::default()
            };
            assert!(s.validate().unwrap_err().starts_with("status.attempts_max"));
        }
        let longest = StatusSettings {
            retention_hours: StatusSettings::RETENTION_HOURS_MAX,
            attempts_max: StatusSettings::ATTEMPTS_MAX_MAX,
        };
        assert!(longest.validate().is_ok());
    }

    #[test]
    fn the_current_state_is_the_furthest_reached_even_if_written_out_of_order() {
        let f = serde_json::to_string(&fields()).unwrap();
        let h = hash(&[
            ("merchant_id", "m1"),
            ("fields", &f),
            ("settlement", "POSTED"),
            ("settled_at", "2026-01-01T00:00:02Z"),
        ]);
        let status = assemble("t1", &h, &[], 32).unwrap();
        assert_eq!(status.state, State::Posted);
        assert_eq!(status.history.len(), 1);
    }

    #[test]
    fn the_owners_fields_win_over_the_provisional_ones() {
        let provisional = TransactionFields {
            amount: "99.00".into(),
            ..fields()
        };
        let h = hash(&[
            ("merchant_id", "m1"),
            ("fields", &serde_json::to_string(&provisional).unwrap()),
            ("owner_fields", &serde_json::to_string(&fields()).unwrap()),
            ("received_at", "2026-01-01T00:00:00Z"),
            ("decision", "REJECTED"),
            ("decided_at", "2026-01-01T00:00:01Z"),
            ("decided_reason", "AMOUNT_OVER_LIMIT"),
        ]);
        let status = assemble("t1", &h, &[], 32).unwrap();
        assert_eq!(status.fields.amount, "10.00");
        assert_eq!(status.state, State::Rejected);
        assert_eq!(status.reason_code.as_deref(), Some("AMOUNT_OVER_LIMIT"));
        assert_eq!(status.history.len(), 2);
    }

    fn attempt_json(request_id: &str, at: &str) -> String {
        serde_json::to_string(&Attempt {
            request_id: request_id.into(),
            decision: State::Duplicate,
            reason_code: None,
            at: at.into(),
        })
        .unwrap()
    }

    #[test]
    fn attempts_from_both_layouts_are_listed_once_each_oldest_first_up_to_the_cap() {
        let f = serde_json::to_string(&fields()).unwrap();
        let h = hash(&[
            ("merchant_id", "m1"),
            ("fields", &f),
            ("received_at", "2026-01-01T00:00:00Z"),
        ]);
        // r2 is in both layouts, decided again later in the new one (a redelivery).
        let (r1, r2, r2_again, r3) = (
            attempt_json("r1", "2026-01-01T00:00:01Z"),
            attempt_json("r2", "2026-01-01T00:00:02Z"),
            attempt_json("r2", "2026-01-01T00:00:09Z"),
            attempt_json("r3", "2026-01-01T00:00:03Z"),
        );
        let status = assemble("t1", &h, &[&r2_again, &r3, &r1, &r2], 2).unwrap();
        let listed: Vec<(&str, &str)> = status
            .attempts
            .iter()
            .map(|a| (a.request_id.as_str(), a.at.as_str()))
            .collect();
        assert_eq!(
            listed,
            [
                ("r1", "2026-01-01T00:00:01Z"),
                ("r2", "2026-01-01T00:00:02Z")
            ]
        );
    }

    #[test]
    fn an_unknown_transaction_has_no_status() {
        assert!(assemble("t1", &HashMap::new(), &[], 32).is_none());
    }
}
