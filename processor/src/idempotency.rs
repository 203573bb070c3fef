//! Idempotency (design §3): one Redis record per (merchant, idempotency key), claimed for a
//! whole batch in one script call, and the pure decision that follows from it.
//!
//! The record is written *with the decision* in the same atomic step as the claim. So a
//! processor that dies after claiming and before producing finds, on redelivery, its own
//! `request_id` in the record and re-emits the same decision — it never mistakes its own
//! request for a duplicate (the seed system's bug), and never loses it.

use ledgerline_contracts::events::{Decision, TransactionRequested};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};

/// What Redis remembers about the request that owns a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// The owning request.
    pub request_id: String,
    /// Its transaction.
    pub transaction_id: String,
    /// Its body fingerprint.
    pub fingerprint: String,
    /// The decision taken for it.
    pub decision: Decision,
    /// The reason, for a rejection.
    pub reason_code: Option<String>,
    /// When it was decided (RFC 3339): re-emissions reuse it, so they are identical events.
    pub decided_at: String,
}

/// The outcome for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// ACCEPTED / REJECTED / DUPLICATE.
    pub decision: Decision,
    /// Why, where there is a reason.
    pub reason_code: Option<String>,
    /// Whether this request owns the key (its decision is the transaction's decision).
    pub owner: bool,
    /// For duplicates and conflicts: the request that owns the key.
    pub original_request_id: Option<String>,
    /// The decision time to put in the event.
    pub decided_at: String,
    /// Whether this is a redelivery of the owning request.
    pub redelivery: bool,
}

/// Decides one request given the record found (or `None` if this request just claimed the
/// key with `proposed`).
pub fn decide(
    request: &TransactionRequested,
    found: Option<&IdempotencyRecord>,
    proposed: &IdempotencyRecord,
) -> Verdict {
    match found {
        None => Verdict {
            decision: proposed.decision,
            reason_code: proposed.reason_code.clone(),
            owner: true,
            original_request_id: None,
            decided_at: proposed.decided_at.clone(),
            redelivery: false,
        },
        Some(record) if record.request_id == request.request_id.to_string() => Verdict {
            decision: record.decision,
            reason_code: record.reason_code.clone(),
            owner: true,
            original_request_id: None,
            decided_at: record.decided_at.clone(),
            redelivery: true,
        },
        Some(record) if record.fingerprint == request.request_fingerprint => Verdict {
            decision: Decision::Duplicate,
            reason_code: None,
            owner: false,
            original_request_id: Some(record.request_id.clone()),
            decided_at: proposed.decided_at.clone(),
            redelivery: false,
        },
        Some(record) => Verdict {
            decision: Decision::Rejected,
            reason_code: Some(crate::rules::reason::IDEMPOTENCY_CONFLICT.to_string()),
            owner: false,
            original_request_id: Some(record.request_id.clone()),
            decided_at: proposed.decided_at.clone(),
            redelivery: false,
        },
    }
}

/// For each key in order: if a record exists return it, else store the proposed one (with the
/// TTL) and return an empty string. One round trip per batch; keys repeated within the batch
/// see the records stored by earlier ones, exactly as if processed one by one.
///
/// All keys go to one node, so this needs a single Redis (or a primary with replicas); on
/// Redis Cluster the keys would need a hash tag per partition.
const CLAIM_SCRIPT: &str = r"
local ttl = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local existing = redis.call('GET', key)
  if existing then
    out[i] = existing
  else
    redis.call('SET', key, ARGV[i + 1], 'EX', ttl)
    out[i] = ''
  end
end
return out";

/// The Redis side of idempotency.
#[derive(Clone)]
pub struct IdempotencyStore {
    conn: ConnectionManager,
    prefix: String,
    ttl_secs: u64,
    script: redis::Script,
}

impl std::fmt::Debug for IdempotencyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl IdempotencyStore {
    /// Wraps a connection.
    pub fn new(conn: ConnectionManager, key_prefix: &str, retention_hours: u64) -> Self {
        Self {
            conn,
            prefix: key_prefix.to_string(),
            ttl_secs: retention_hours.saturating_mul(3600),
            script: redis::Script::new(CLAIM_SCRIPT),
        }
    }

    /// The record key of a request.
    pub fn key(&self, request: &TransactionRequested) -> String {
        // The merchant id cannot contain ':' (see MerchantId), so the pair is unambiguous.
        format!(
            "{}idem:{}:{}",
            self.prefix, request.merchant_id, request.idempotency_key
        )
    }

    /// Claims every key of the batch (see [`CLAIM_SCRIPT`]); returns, per request, the record
    /// that already existed (`None` = this request now owns the key).
    pub async fn claim(
        &self,
        requests: &[(&TransactionRequested, IdempotencyRecord)],
    ) -> redis::RedisResult<Vec<Option<IdempotencyRecord>>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.script.prepare_invoke();
        invocation.arg(self.ttl_secs);
        for (request, proposed) in requests {
            invocation.key(self.key(request));
            invocation.arg(serde_json::to_string(proposed).unwrap_or_default());
        }
        let mut conn = self.conn.clone();
        let raw: Vec<String> = invocation.invoke_async(&mut conn).await?;
        debug_assert_eq!(raw.len(), requests.len());
        Ok(raw
            .into_iter()
            .map(|v| {
                if v.is_empty() {
                    None
                } else {
                    serde_json::from_str(&v).ok()
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(request_id: &str, fingerprint: &str) -> TransactionRequested {
        let mut r: TransactionRequested = serde_json::from_str(include_str!(
            "../../lib/contracts/tests/fixtures/transaction_requested.json"
        ))
        .unwrap();
        r.request_id = request_id.parse().unwrap();
        r.request_fingerprint = fingerprint.into();
        r
    }

    fn record(request_id: &str, fingerprint: &str, decision: Decision) -> IdempotencyRecord {
        IdempotencyRecord {
            request_id: request_id.into(),
            transaction_id: "t".into(),
            fingerprint: fingerprint.into(),
            decision,
            reason_code: None,
            decided_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    const R1: &str = "018f0000-0000-7000-8000-000000000001";
    const R2: &str = "018f0000-0000-7000-8000-000000000002";

    #[test]
    fn the_first_request_of_a_key_owns_it_with_its_proposed_decision() {
        let v = decide(
            &request(R1, "f"),
            None,
            &record(R1, "f", Decision::Accepted),
        );
        assert!(v.owner && !v.redelivery);
        assert_eq!(v.decision, Decision::Accepted);
    }

    #[test]
    fn a_redelivered_request_finishes_its_original_decision_instead_of_becoming_a_duplicate() {
        let stored = IdempotencyRecord {
            decided_at: "2025-12-31T00:00:00Z".into(),
            ..record(R1, "f", Decision::Accepted)
        };
        let v = decide(
            &request(R1, "f"),
            Some(&stored),
            &record(R1, "f", Decision::Accepted),
        );
        assert!(v.owner && v.redelivery);
        assert_eq!(v.decision, Decision::Accepted);
        assert_eq!(v.decided_at, "2025-12-31T00:00:00Z");
    }

    #[test]
    fn a_retry_with_the_same_body_is_a_duplicate_pointing_at_the_original() {
        let v = decide(
            &request(R2, "f"),
            Some(&record(R1, "f", Decision::Accepted)),
            &record(R2, "f", Decision::Accepted),
        );
        assert_eq!(v.decision, Decision::Duplicate);
        assert!(!v.owner);
        assert_eq!(v.original_request_id.as_deref(), Some(R1));
    }

    #[test]
    fn a_retry_with_a_different_body_is_rejected_as_a_conflict() {
        let v = decide(
            &request(R2, "g"),
            Some(&record(R1, "f", Decision::Accepted)),
            &record(R2, "g", Decision::Accepted),
        );
        assert_eq!(v.decision, Decision::Rejected);
        assert_eq!(v.reason_code.as_deref(), Some("IDEMPOTENCY_CONFLICT"));
        assert!(!v.owner);
    }
}
