//! Poison and hostile input mixed into the load.
//!
//! - **Poison**: messages no stage can read, written straight to each pipeline topic. Each must
//!   end up in its topic's dead-letter queue (named by source partition and offset), and the
//!   partition must move on (the load's transactions behind it still post).
//! - **Hostile HTTP**: every way a request can be wrong — signatures, headers, timestamps,
//!   sizes, bodies, amounts, currencies — must get its documented status and change nothing.
//!   A replayed request (the same signed bytes again) must be accepted as the same transaction.

use ledgerline_contracts::events::TxnType;
use ledgerline_contracts::topics;
use ledgerline_contracts::topics::headers as header_names;
use ledgerline_runtime::kafka::KafkaSettings;
use loadtest::config::Merchant;
use loadtest::record::{self, Accepted, Recorder, Role};
use loadtest::signer::{self, BadAuth, Signed};
use loadtest::workload::TxnSpec;
use std::time::Duration;

use crate::error::FaultError;

/// One poison message written by the harness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poison {
    /// The topic it was written to.
    pub topic: String,
    /// Where it landed.
    pub partition: i32,
    /// Where it landed.
    pub offset: i64,
    /// What is wrong with it.
    pub what: &'static str,
}

/// The poison of one round: for each pipeline topic, bytes that are not JSON, JSON of the
/// wrong shape under a valid event-type header, and a message with no headers at all.
fn poison_payloads() -> [(&'static str, &'static [u8], bool); 3] {
    [
        ("not JSON", b"\xff\xfe not json {", true),
        ("wrong shape", br#"{"transaction_id":42,"amount":[]}"#, true),
        ("no headers", br#"{"hello":"world"}"#, false),
    ]
}

fn event_type(base: &str) -> &'static str {
    match base {
        topics::REQUESTS => "TransactionRequested",
        topics::OUTCOMES => "TransactionDecided",
        _ => "TransactionPosted",
    }
}

/// Writes one round of poison to every pipeline topic.
pub async fn inject_poison(kafka: &KafkaSettings) -> Result<Vec<Poison>, FaultError> {
    let producer = kafka
        .producer("faults-poison")
        .map_err(|e| FaultError::store("broker", e))?;
    let mut out = Vec::new();
    for base in topics::ALL {
        let topic = kafka.topic(base);
        for (what, payload, with_headers) in poison_payloads() {
            let headers: Vec<(&str, &str)> = if with_headers {
                vec![
                    (header_names::EVENT_TYPE, event_type(base)),
                    (header_names::SCHEMA_VERSION, "1"),
                    (header_names::CORRELATION_ID, "faults-poison"),
                ]
            } else {
                Vec::new()
            };
            let (partition, offset) = ledgerline_testkit::kafka::produce(
                &producer,
                &topic,
                "poison-account",
                payload,
                &headers,
            )
            .await
            .map_err(|e| FaultError::store("broker", e))?;
            out.push(Poison {
                topic: base.to_string(),
                partition,
                offset,
                what,
            });
        }
    }
    Ok(out)
}

/// The poison messages that no dead-letter queue names, after waiting up to `timeout`.
pub async fn undead_lettered(
    kafka: &KafkaSettings,
    poison: &[Poison],
    timeout: Duration,
) -> Result<Vec<Poison>, FaultError> {
    let mut missing = Vec::new();
    for base in topics::ALL {
        let mine: Vec<&Poison> = poison.iter().filter(|p| p.topic == base).collect();
        if mine.is_empty() {
            continue;
        }
        let dlq = kafka.dlq(base);
        // At least one dead letter per poison message; the audit and the stage that owns the
        // topic may each write one, so read until the deadline, not until a count.
        let records = ledgerline_testkit::kafka::read_topic(kafka, &dlq, usize::MAX, timeout)
            .await
            .map_err(|e| FaultError::store("broker", e))?;
        for p in mine {
            let named = records.iter().any(|r| {
                r.header(header_names::DLQ_SOURCE_PARTITION) == Some(&p.partition.to_string())
                    && r.header(header_names::DLQ_SOURCE_OFFSET) == Some(&p.offset.to_string())
            });
            if !named {
                missing.push(p.clone());
            }
        }
    }
    Ok(missing)
}

/// One hostile request and the statuses the API documents for it.
#[derive(Debug)]
struct Case {
    name: String,
    signed: Signed,
    expected: &'static [u16],
}

fn spec(amount_minor: i64) -> TxnSpec {
    TxnSpec {
        account_id: "hostile-001".into(),
        amount_minor,
        txn_type: TxnType::Credit,
        currency: "EUR".into(),
    }
}

fn cases(merchant: &Merchant, round: u32) -> Vec<Case> {
    let now = ledgerline_runtime::time::now_unix();
    // Idempotency keys are a token (no spaces): a case's name would make every case a 400.
    let key = |what: &str| format!("hostile-{round}-{}", what.replace(' ', "-"));
    let valid = spec(1_000).body();
    let mut out: Vec<Case> = BadAuth::ALL
        .iter()
        .map(|bad| Case {
            name: format!("bad auth: {}", bad.name()),
            signed: bad.request(merchant, &key(bad.name()), valid.clone(), now),
            expected: bad.expected_statuses(),
        })
        .collect();
    let signed_body = |what: &str, body: String| signer::post(merchant, &key(what), body, now);
    let bodies: [(&str, String, &'static [u16]); 8] = [
        ("malformed JSON", r#"{"account_id":"a","amount":"#.into(), &[400]),
        (
            "unknown field",
            r#"{"account_id":"a","amount":"1.00","currency":"EUR","type":"credit","x":1}"#.into(),
            &[400],
        ),
        (
            "missing amount",
            r#"{"account_id":"a","currency":"EUR","type":"credit"}"#.into(),
            &[400],
        ),
        (
            "zero amount",
            r#"{"account_id":"a","amount":"0.00","currency":"EUR","type":"credit"}"#.into(),
            &[422],
        ),
        (
            "negative amount",
            r#"{"account_id":"a","amount":"-5.00","currency":"EUR","type":"credit"}"#.into(),
            &[422],
        ),
        (
            "overflowing amount",
            r#"{"account_id":"a","amount":"99999999999999999999999.00","currency":"EUR","type":"credit"}"#
                .into(),
            &[422],
        ),
        (
            "unknown currency",
            r#"{"account_id":"a","amount":"1.00","currency":"ZZZ","type":"credit"}"#.into(),
            &[422],
        ),
        (
            "oversized body",
            format!(
                r#"{{"account_id":"a","amount":"1.00","currency":"EUR","type":"credit","description":"{}"}}"#,
                "x".repeat(20 * 1024)
            ),
            &[413],
        ),
    ];
    for (what, body, expected) in bodies {
        out.push(Case {
            name: what.to_string(),
            signed: signed_body(what, body),
            expected,
        });
    }
    let mut wrong_type = signed_body("wrong content type", valid);
    for (name, value) in &mut wrong_type.headers {
        if name.eq_ignore_ascii_case("content-type") {
            *value = "text/plain".into();
        }
    }
    out.push(Case {
        name: "wrong content type".into(),
        signed: wrong_type,
        expected: &[415],
    });
    out
}

/// What a hostile round found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostileRound {
    /// Requests sent.
    pub sent: u64,
    /// Cases answered with a status the API does not document for them.
    pub wrong: Vec<String>,
    /// Replays (the same signed bytes twice) that were both accepted as one transaction.
    pub replays_accepted: u64,
}

/// Sends every hostile case once, and one valid request twice byte for byte (a replay, which
/// is recorded: the first as an original, the second as a retry).
pub async fn hostile_round(
    http: &reqwest::Client,
    base_url: &str,
    merchant: &Merchant,
    recorder: &Recorder,
    round: u32,
) -> HostileRound {
    let url = format!("{base_url}{}", signer::TRANSACTIONS_PATH);
    let mut result = HostileRound::default();
    for case in cases(merchant, round) {
        result.sent += 1;
        let status = send(http, &url, &case.signed).await;
        if !status.is_some_and(|s| case.expected.contains(&s)) {
            result.wrong.push(format!(
                "{}: got {}, expected {:?}",
                case.name,
                status.map_or("no answer".to_string(), |s| s.to_string()),
                case.expected
            ));
        }
    }
    let key = format!("hostile-{round}-replayed");
    let replayed = spec(777);
    let signed = signer::post(
        merchant,
        &key,
        replayed.body(),
        ledgerline_runtime::time::now_unix(),
    );
    let mut ids = Vec::new();
    for role in [Role::Original, Role::Retry] {
        result.sent += 1;
        if let Some(id) = send_for_id(http, &url, &signed).await {
            recorder.record(&Accepted {
                transaction_id: id.clone(),
                merchant_id: merchant.id.to_string(),
                idempotency_key: key.clone(),
                role,
                spec: replayed.clone(),
                accepted_at_ms: record::now_ms(),
            });
            ids.push(id);
        }
    }
    if ids.len() == 2 && ids[0] == ids[1] {
        result.replays_accepted += 1;
    } else {
        result.wrong.push(format!(
            "a replayed request was not accepted as one transaction: {ids:?}"
        ));
    }
    result
}

fn request(http: &reqwest::Client, url: &str, signed: &Signed) -> reqwest::RequestBuilder {
    let mut request = http.post(url).body(signed.body.clone());
    for (name, value) in &signed.headers {
        request = request.header(*name, value.as_str());
    }
    request.timeout(Duration::from_secs(15))
}

async fn send(http: &reqwest::Client, url: &str, signed: &Signed) -> Option<u16> {
    request(http, url, signed)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

async fn send_for_id(http: &reqwest::Client, url: &str, signed: &Signed) -> Option<String> {
    let response = request(http, url, signed).send().await.ok()?;
    if response.status().as_u16() != 202 {
        return None;
    }
    let body = response.bytes().await.ok()?;
    loadtest::sweep::generator::transaction_id(&body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledgerline_contracts::ids::IdempotencyKey;
    use ledgerline_runtime::secret::Secret;

    #[test]
    fn every_body_case_carries_a_valid_idempotency_key_so_only_its_body_is_judged() {
        let merchant = Merchant::new("m", "k1", Secret::new("s".repeat(32))).unwrap();
        for case in cases(&merchant, 0) {
            if case.name.starts_with("bad auth") {
                continue;
            }
            let key = case
                .signed
                .headers
                .iter()
                .find(|(name, _)| {
                    name.eq_ignore_ascii_case(ledgerline_contracts::header_names::IDEMPOTENCY_KEY)
                })
                .map(|(_, value)| value.as_str())
                .unwrap_or_default();
            assert!(
                IdempotencyKey::parse(key).is_ok(),
                "{}: idempotency key {key:?} would be refused before the body",
                case.name
            );
        }
    }
}
