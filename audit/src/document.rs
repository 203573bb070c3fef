//! One audit document per Kafka message, derived from the message alone.
//!
//! [`Record::from_message`] is a pure function of the message (topic, partition, offset, key,
//! payload, headers): the writer uses it to build documents, and [`check_document`] uses it
//! again on the raw message a document keeps, so an edit to any derived field (the event body,
//! an id, the kind) is found even when the hash chain is intact. Only `recorded_at`, `prev_hash`
//! and `hash` are added when the document is linked and written.

use crate::chain::{self, BreakKind, Link};
use ledgerline_contracts::events::{
    Event, TransactionDecided, TransactionPosted, TransactionRequested,
};
use ledgerline_contracts::topics::{self, headers};
use ledgerline_runtime::kafka::{decode_message, header_str};
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{doc, Binary, Bson, DateTime, Document};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage, Timestamp};
use time::OffsetDateTime;

/// The audit collection.
pub const COLLECTION: &str = "events";

/// Payloads larger than this are kept raw only, without the `event` body, so a document stays
/// far below MongoDB's 16 MiB limit (the raw payload is stored either way).
pub const BODY_PAYLOAD_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Deepest JSON nesting kept in the `event` body: MongoDB refuses documents nested deeper than
/// 100 levels, and no pipeline event is nested more than 2.
pub const BODY_DEPTH_MAX: usize = 32;

/// The fields a document has besides those [`Record::fields`] derives from the message.
const LINK_FIELDS: [&str; 6] = ["_id", "kind", "recorded_at", "prev_hash", "hash", "hash_fp"];

/// What a document records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A pipeline event, first seen (`_id` = its `event_id`).
    Event,
    /// A pipeline event whose `event_id` was already recorded from an earlier offset (a
    /// producer's retry): kept so the partition's chain has every offset.
    Duplicate,
    /// An undecodable message on a pipeline topic; it was also sent to the topic's DLQ.
    Poison,
    /// A message read from a dead-letter topic, decodable or not.
    DeadLetter,
}

impl Kind {
    /// The stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Duplicate => "duplicate",
            Kind::Poison => "poison",
            Kind::DeadLetter => "dead_letter",
        }
    }

    /// Parses a stored name.
    pub fn parse(value: &str) -> Option<Kind> {
        [Kind::Event, Kind::Duplicate, Kind::Poison, Kind::DeadLetter]
            .into_iter()
            .find(|k| k.as_str() == value)
    }
}

/// The event type a pipeline topic carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `txn.requests`.
    Requested,
    /// `txn.outcomes`.
    Decided,
    /// `txn.postings`.
    Posted,
}

impl EventKind {
    const ALL: [EventKind; 3] = [EventKind::Requested, EventKind::Decided, EventKind::Posted];

    fn base_topic(self) -> &'static str {
        match self {
            EventKind::Requested => topics::REQUESTS,
            EventKind::Decided => topics::OUTCOMES,
            EventKind::Posted => topics::POSTINGS,
        }
    }
}

/// What a topic is to the audit, from its name alone (any deployment prefix allowed), so a
/// document's derivation never depends on settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A pipeline topic.
    Pipeline(EventKind),
    /// A pipeline topic's dead-letter topic.
    DeadLetter(EventKind),
    /// Anything else (never subscribed; recorded raw if it ever appears).
    Unknown,
}

impl Role {
    /// The role of `topic`, e.g. `t1.txn.requests.dlq` → `DeadLetter(Requested)`.
    pub fn of(topic: &str) -> Role {
        let (base, dead_letter) = match topic.strip_suffix(topics::DLQ_SUFFIX) {
            Some(base) => (base, true),
            None => (topic, false),
        };
        match EventKind::ALL
            .into_iter()
            .find(|k| base.ends_with(k.base_topic()))
        {
            Some(kind) if dead_letter => Role::DeadLetter(kind),
            Some(kind) => Role::Pipeline(kind),
            None => Role::Unknown,
        }
    }
}

/// The identity fields of a decoded event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    event_type: &'static str,
    event_id: String,
    transaction_id: String,
    merchant_id: String,
    account_id: String,
    correlation_id: String,
    /// The event's own time: `received_at`, `decided_at` or `posted_at`.
    occurred_at: OffsetDateTime,
}

macro_rules! identity {
    ($event:expr, $type:ty, $at:ident) => {{
        let e: $type = $event;
        Identity {
            event_type: <$type as Event>::EVENT_TYPE,
            event_id: e.event_id.to_string(),
            transaction_id: e.transaction_id.to_string(),
            merchant_id: e.merchant_id.as_str().to_string(),
            account_id: e.account_id.as_str().to_string(),
            correlation_id: e.correlation_id,
            occurred_at: e.$at,
        }
    }};
}

/// Decodes `message` as the event `kind` names, or gives the DLQ reason code.
fn decode<M: Message>(kind: EventKind, message: &M) -> Result<Identity, &'static str> {
    Ok(match kind {
        EventKind::Requested => {
            identity!(decode_message(message)?, TransactionRequested, received_at)
        }
        EventKind::Decided => identity!(decode_message(message)?, TransactionDecided, decided_at),
        EventKind::Posted => identity!(decode_message(message)?, TransactionPosted, posted_at),
    })
}

/// One message, ready to be linked into its partition's chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// What it records.
    pub kind: Kind,
    /// The document `_id`.
    pub id: String,
    /// The decoded `event_id`, if the payload decoded.
    pub event_id: Option<String>,
    /// For poison on a pipeline topic: where to dead-letter it and why.
    pub dead_letter: Option<(String, &'static str)>,
    /// The canonical content ([`chain::canonical_content`]).
    pub content: Vec<u8>,
    /// The fields derived from the message (everything but [`LINK_FIELDS`]).
    fields: Document,
}

/// The `_id` of a document that cannot be keyed by an `event_id`.
fn positional_id(prefix: &str, topic: &str, partition: i32, offset: i64) -> String {
    format!("{prefix}:{topic}:{partition}:{offset}")
}

/// The `_id` of a [`Kind::Duplicate`]: `dup:<topic>:<partition>:<offset>`.
pub fn duplicate_id(topic: &str, partition: i32, offset: i64) -> String {
    positional_id("dup", topic, partition, offset)
}

impl Record {
    /// Everything the audit derives from one Kafka message.
    pub fn from_message<M: Message>(message: &M) -> Record {
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        let role = Role::of(topic);
        let decoded = match role {
            Role::Pipeline(kind) | Role::DeadLetter(kind) => decode(kind, message),
            Role::Unknown => Err("UNKNOWN_TOPIC"),
        };
        let (kind, id, dead_letter) = match (role, &decoded) {
            (Role::Pipeline(_), Ok(identity)) => (Kind::Event, identity.event_id.clone(), None),
            (Role::Pipeline(_), Err(reason)) => (
                Kind::Poison,
                positional_id("poison", topic, partition, offset),
                Some((topics::dlq_of(topic), *reason)),
            ),
            (Role::DeadLetter(_), _) => (
                Kind::DeadLetter,
                positional_id("dlq", topic, partition, offset),
                None,
            ),
            // Never subscribed; recorded raw, and never dead-lettered to a topic that does
            // not exist.
            (Role::Unknown, _) => (
                Kind::Poison,
                positional_id("poison", topic, partition, offset),
                None,
            ),
        };
        let identity = decoded.as_ref().ok();
        let text = |f: fn(&Identity) -> &str| Bson::from(identity.map(|i| f(i).to_string()));
        let mut fields = doc! {
            "event_type": Bson::from(identity.map(|i| i.event_type)),
            "event_id": text(|i| &i.event_id),
            "transaction_id": text(|i| &i.transaction_id),
            "merchant_id": text(|i| &i.merchant_id),
            "account_id": text(|i| &i.account_id),
            "correlation_id": text(|i| &i.correlation_id),
            "occurred_at": Bson::from(identity.map(|i| datetime(i.occurred_at))),
            "event": Bson::from(body(message.payload())),
        };
        fields.insert(
            "poison",
            match (kind, &decoded) {
                (Kind::Poison, Err(reason)) => Bson::Document(doc! {
                    "reason": *reason,
                    "dead_letter_topic": Bson::from(dead_letter.as_ref().map(|(t, _)| t.as_str())),
                }),
                _ => Bson::Null,
            },
        );
        fields.insert(
            "dead_letter",
            if kind == Kind::DeadLetter {
                Bson::Document(dead_letter_headers(message))
            } else {
                Bson::Null
            },
        );
        fields.insert(
            "source",
            doc! { "topic": topic, "partition": partition, "offset": offset },
        );
        fields.insert("message", raw_message(message));
        Record {
            topic: topic.to_string(),
            partition,
            offset,
            kind,
            id,
            event_id: identity.map(|i| i.event_id.clone()),
            dead_letter,
            content: chain::canonical_content(message),
            fields,
        }
    }

    /// Re-keys an event whose `event_id` is already recorded from another offset.
    pub fn mark_duplicate(&mut self) {
        debug_assert!(
            self.kind == Kind::Event,
            "only events are deduplicated by event_id"
        );
        self.kind = Kind::Duplicate;
        self.id = self.duplicate_id();
    }

    fn duplicate_id(&self) -> String {
        duplicate_id(&self.topic, self.partition, self.offset)
    }

    /// The event body's `amount_minor` when it is an integer (what a store sums per bucket:
    /// `$sum` skips anything else, and so does this).
    pub fn amount_minor(&self) -> Option<i64> {
        self.fields
            .get_document("event")
            .ok()?
            .get_i64("amount_minor")
            .ok()
    }

    /// The document to store, linked into its chain.
    pub fn document(&self, prev_hash: &str, hash: &str, recorded_at: DateTime) -> Document {
        let mut d = doc! { "_id": &self.id, "kind": self.kind.as_str() };
        d.extend(self.fields.clone());
        d.insert("recorded_at", recorded_at);
        d.insert("prev_hash", prev_hash);
        d.insert("hash", hash);
        d.insert("hash_fp", chain::hash_fingerprint(hash).unwrap_or(-1));
        d
    }
}

/// A BSON DateTime (milliseconds; the exact value stays in the event body).
fn datetime(at: OffsetDateTime) -> DateTime {
    let millis = at.unix_timestamp_nanos() / 1_000_000;
    // Every RFC 3339 time (years 0000–9999) fits in i64 milliseconds.
    DateTime::from_millis(i64::try_from(millis).unwrap_or(i64::MAX))
}

/// Bytes as a string when they are UTF-8 (readable), else as binary; `null` when absent.
fn text_or_binary(bytes: Option<&[u8]>) -> Bson {
    match bytes {
        None => Bson::Null,
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => Bson::String(s.to_string()),
            Err(_) => binary(b),
        },
    }
}

fn binary(bytes: &[u8]) -> Bson {
    Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes: bytes.to_vec(),
    })
}

/// The raw message, kept exactly: the chain is verified against it.
fn raw_message<M: Message>(message: &M) -> Bson {
    let headers: Vec<Bson> = message
        .headers()
        .map(|hs| {
            hs.iter()
                .map(|h| Bson::Document(doc! { "name": h.key, "value": text_or_binary(h.value) }))
                .collect()
        })
        .unwrap_or_default();
    Bson::Document(doc! {
        "key": text_or_binary(message.key()),
        "payload": message.payload().map_or(Bson::Null, binary),
        "headers": headers,
    })
}

/// The `dlq-*` headers of a dead-lettered message, parsed where they are numbers.
fn dead_letter_headers<M: Message>(message: &M) -> Document {
    let get = |name| header_str(message, name);
    doc! {
        "reason": get(headers::DLQ_REASON),
        "source_topic": get(headers::DLQ_SOURCE_TOPIC),
        "source_partition": get(headers::DLQ_SOURCE_PARTITION).and_then(|v| v.parse::<i32>().ok()),
        "source_offset": get(headers::DLQ_SOURCE_OFFSET).and_then(|v| v.parse::<i64>().ok()),
        "failed_at": get(headers::DLQ_FAILED_AT),
    }
}

/// The payload as a BSON document, when it is a JSON object MongoDB can store as is.
///
/// Integers become Int64 (never Int32, never a double), so amounts in minor units keep their
/// exact type; a number that is not an i64 (a fraction, or above i64::MAX) is kept as its JSON
/// text. Field names MongoDB treats specially (empty, `$…`, containing `.` or NUL) or nesting
/// deeper than [`BODY_DEPTH_MAX`] leave the body out: the raw payload is still stored.
fn body(payload: Option<&[u8]>) -> Option<Document> {
    let payload = payload.filter(|p| p.len() <= BODY_PAYLOAD_BYTES_MAX)?;
    match serde_json::from_slice(payload).ok()? {
        serde_json::Value::Object(map) => object(map, 1),
        _ => None,
    }
}

fn object(map: serde_json::Map<String, serde_json::Value>, depth: usize) -> Option<Document> {
    if depth > BODY_DEPTH_MAX {
        return None;
    }
    let mut d = Document::new();
    for (key, value) in map {
        let safe = !key.is_empty() && !key.starts_with('$') && !key.contains(['.', '\0']);
        if !safe {
            return None;
        }
        d.insert(key, json_to_bson(value, depth)?);
    }
    Some(d)
}

fn json_to_bson(value: serde_json::Value, depth: usize) -> Option<Bson> {
    use serde_json::Value;
    Some(match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Bson::Int64(i),
            None => Bson::String(n.to_string()),
        },
        Value::String(s) => Bson::String(s),
        Value::Array(items) => {
            if depth >= BODY_DEPTH_MAX {
                return None;
            }
            Bson::Array(
                items
                    .into_iter()
                    .map(|v| json_to_bson(v, depth + 1))
                    .collect::<Option<_>>()?,
            )
        }
        Value::Object(map) => Bson::Document(object(map, depth + 1)?),
    })
}

/// The raw Kafka message a stored document keeps, rebuilt for verification.
pub fn message_of(document: &Document) -> Result<OwnedMessage, String> {
    let source = document
        .get_document("source")
        .map_err(|e| format!("source: {e}"))?;
    let topic = source
        .get_str("topic")
        .map_err(|e| format!("source.topic: {e}"))?;
    let partition = source
        .get_i32("partition")
        .map_err(|e| format!("source.partition: {e}"))?;
    let offset = source
        .get_i64("offset")
        .map_err(|e| format!("source.offset: {e}"))?;
    let raw = document
        .get_document("message")
        .map_err(|e| format!("message: {e}"))?;
    let key = bytes_of(raw.get("key")).map_err(|e| format!("message.key: {e}"))?;
    let payload = match raw.get("payload") {
        Some(Bson::Binary(b)) => Some(b.bytes.clone()),
        Some(Bson::Null) => None,
        _ => return Err("message.payload: not binary or null".into()),
    };
    let mut headers = OwnedHeaders::new();
    let list = raw
        .get_array("headers")
        .map_err(|e| format!("message.headers: {e}"))?;
    for (i, header) in list.iter().enumerate() {
        let Bson::Document(h) = header else {
            return Err(format!("message.headers[{i}]: not a document"));
        };
        let name = h
            .get_str("name")
            .map_err(|e| format!("message.headers[{i}].name: {e}"))?;
        let value =
            bytes_of(h.get("value")).map_err(|e| format!("message.headers[{i}].value: {e}"))?;
        headers = headers.insert(Header {
            key: name,
            value: value.as_deref(),
        });
    }
    Ok(OwnedMessage::new(
        payload,
        key,
        topic.to_string(),
        Timestamp::NotAvailable,
        partition,
        offset,
        Some(headers),
    ))
}

fn bytes_of(value: Option<&Bson>) -> Result<Option<Vec<u8>>, &'static str> {
    match value {
        Some(Bson::Null) => Ok(None),
        Some(Bson::String(s)) => Ok(Some(s.as_bytes().to_vec())),
        Some(Bson::Binary(b)) if b.subtype == BinarySubtype::Generic => Ok(Some(b.bytes.clone())),
        Some(_) => Err("not a string, binary or null"),
        None => Err("absent"),
    }
}

/// A stored document read back for verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Its link, with the content recomputed from the raw message it keeps.
    pub link: Link,
    /// Whether its derived fields agree with that raw message (the detail when not).
    pub derived: Result<(), String>,
}

/// Reads a stored document as a chain link and re-derives its fields from its raw message.
/// `Err` when it cannot be read at all: (its source offset if readable, kind, detail).
pub fn check_document(document: &Document) -> Result<Checked, (Option<i64>, BreakKind, String)> {
    let offset = document
        .get_document("source")
        .and_then(|s| s.get_i64("offset"))
        .ok();
    let malformed = |detail: String| (offset, BreakKind::Malformed, detail);
    let message = message_of(document).map_err(malformed)?;
    let prev_hash = document
        .get_str("prev_hash")
        .map_err(|e| malformed(format!("prev_hash: {e}")))?;
    let hash = document
        .get_str("hash")
        .map_err(|e| malformed(format!("hash: {e}")))?;
    let record = Record::from_message(&message);
    let derived = compare(document, &record);
    Ok(Checked {
        link: Link {
            offset: record.offset,
            prev_hash: prev_hash.to_string(),
            hash: hash.to_string(),
            content: record.content,
        },
        derived,
    })
}

/// Whether `stored` says what `record` (re-derived from its raw message) says.
fn compare(stored: &Document, record: &Record) -> Result<(), String> {
    let kind = stored.get_str("kind").ok().and_then(Kind::parse);
    let id = stored.get_str("_id").ok();
    let identity_ok = match kind {
        Some(k) if k == record.kind => id == Some(record.id.as_str()),
        Some(Kind::Duplicate) if record.kind == Kind::Event => {
            id == Some(record.duplicate_id().as_str())
        }
        _ => false,
    };
    if !identity_ok {
        return Err(format!(
            "_id {:?} / kind {:?} do not match the raw message ({} {})",
            stored.get("_id"),
            stored.get("kind"),
            record.kind.as_str(),
            record.id
        ));
    }
    for (name, expected) in &record.fields {
        if stored.get(name) != Some(expected) {
            return Err(format!("field `{name}` differs from the raw message"));
        }
    }
    if let Some(extra) = stored
        .keys()
        .find(|k| !LINK_FIELDS.contains(&k.as_str()) && !record.fields.contains_key(k.as_str()))
    {
        return Err(format!("unexpected field `{extra}`"));
    }
    let hash_fp = stored
        .get_str("hash")
        .ok()
        .and_then(chain::hash_fingerprint);
    if hash_fp.is_none() || stored.get("hash_fp") != hash_fp.map(Bson::Int64).as_ref() {
        return Err("hash_fp is not the fingerprint of hash".into());
    }
    match stored.get("recorded_at") {
        Some(Bson::DateTime(_)) => Ok(()),
        _ => Err("recorded_at is not a date".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{link_hash, GENESIS};
    use crate::testing::{event_message, message, posted};
    use ledgerline_contracts::events::{self, Decision, TxnType};
    use ledgerline_contracts::ids::{
        AccountId, EventId, IdempotencyKey, MerchantId, RequestId, TransactionId, DEFAULT_NAMESPACE,
    };
    use ledgerline_contracts::Currency;
    use ledgerline_runtime::kafka::event_headers;

    fn stored(record: &Record) -> Document {
        let hash = link_hash(GENESIS, &record.content);
        record.document(GENESIS, &hash, DateTime::from_millis(5))
    }

    fn no_doubles(value: &Bson) -> bool {
        match value {
            Bson::Double(_) => false,
            Bson::Document(d) => d.values().all(no_doubles),
            Bson::Array(a) => a.iter().all(no_doubles),
            _ => true,
        }
    }

    #[test]
    fn topics_are_recognised_by_name_with_any_prefix() {
        assert_eq!(
            Role::of("txn.requests"),
            Role::Pipeline(EventKind::Requested)
        );
        assert_eq!(
            Role::of("t9.txn.outcomes"),
            Role::Pipeline(EventKind::Decided)
        );
        assert_eq!(
            Role::of("t9.txn.postings.dlq"),
            Role::DeadLetter(EventKind::Posted)
        );
        assert_eq!(Role::of("other"), Role::Unknown);
    }

    #[test]
    fn an_event_is_keyed_by_its_event_id_with_int64_amounts_and_no_doubles() {
        let e = posted(1_500, Some(-7));
        let record = Record::from_message(&event_message(&e, 4));
        assert_eq!(record.kind, Kind::Event);
        assert_eq!(record.id, e.event_id.to_string());
        assert_eq!(record.dead_letter, None);
        let d = stored(&record);
        assert_eq!(d.get_str("event_type").unwrap(), "TransactionPosted");
        assert_eq!(
            d.get_str("transaction_id").unwrap(),
            e.transaction_id.to_string()
        );
        assert_eq!(d.get_str("merchant_id").unwrap(), "m1");
        assert_eq!(d.get_str("account_id").unwrap(), "acc-1");
        assert_eq!(d.get_str("correlation_id").unwrap(), "corr-1");
        assert_eq!(
            d.get_datetime("occurred_at").unwrap().timestamp_millis(),
            1_767_225_600_000
        );
        let body = d.get_document("event").unwrap();
        assert_eq!(body.get("amount_minor"), Some(&Bson::Int64(1_500)));
        assert_eq!(body.get("balance_after_minor"), Some(&Bson::Int64(-7)));
        assert_eq!(body.get("schema_version"), Some(&Bson::Int64(1)));
        assert_eq!(body.get_str("result").unwrap(), "DECLINED");
        let source = d.get_document("source").unwrap();
        assert_eq!(source.get("partition"), Some(&Bson::Int32(1)));
        assert_eq!(source.get("offset"), Some(&Bson::Int64(4)));
        assert!(no_doubles(&Bson::Document(d)));
    }

    #[test]
    fn numbers_that_are_not_i64_are_kept_as_text_never_as_doubles() {
        let body = body(Some(
            br#"{"a":1.5,"b":18446744073709551615,"c":[1,{"d":2}]}"#,
        ))
        .unwrap();
        assert_eq!(body.get_str("a").unwrap(), "1.5");
        assert_eq!(body.get_str("b").unwrap(), "18446744073709551615");
        assert_eq!(
            body.get("c"),
            Some(&Bson::Array(vec![
                Bson::Int64(1),
                Bson::Document(doc! { "d": Bson::Int64(2) })
            ]))
        );
    }

    #[test]
    fn field_names_mongodb_treats_specially_leave_the_body_out() {
        assert_eq!(body(Some(br#"{"$where":1}"#)), None);
        assert_eq!(body(Some(br#"{"a":{"b.c":1}}"#)), None);
        assert_eq!(body(Some(b"{\"a\\u0000\":1}")), None);
        assert_eq!(body(Some(b"[1,2]")), None);
        assert_eq!(body(Some(b"not json")), None);
        let deep = format!(
            "{}1{}",
            "[".repeat(BODY_DEPTH_MAX + 1),
            "]".repeat(BODY_DEPTH_MAX + 1)
        );
        assert_eq!(body(Some(format!(r#"{{"a":{deep}}}"#).as_bytes())), None);
    }

    #[test]
    fn poison_on_a_pipeline_topic_is_kept_raw_and_marked_for_its_dlq() {
        let m = message("p.txn.requests", 9, b"\xffnot json", OwnedHeaders::new());
        let record = Record::from_message(&m);
        assert_eq!(record.kind, Kind::Poison);
        assert_eq!(record.id, "poison:p.txn.requests:1:9");
        assert_eq!(
            record.dead_letter,
            Some(("p.txn.requests.dlq".to_string(), "MALFORMED_EVENT"))
        );
        let d = stored(&record);
        assert_eq!(d.get("event"), Some(&Bson::Null));
        assert_eq!(d.get("transaction_id"), Some(&Bson::Null));
        assert_eq!(
            d.get_document("poison").unwrap().get_str("reason").unwrap(),
            "MALFORMED_EVENT"
        );
        let raw = d.get_document("message").unwrap();
        assert_eq!(raw.get_binary_generic("payload").unwrap(), b"\xffnot json");
        assert_eq!(raw.get_str("key").unwrap(), "acc-1");
    }

    #[test]
    fn a_dead_lettered_message_keeps_its_dlq_headers_and_is_never_dead_lettered_again() {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "dlq-reason",
                value: Some("MALFORMED_EVENT"),
            })
            .insert(Header {
                key: "dlq-source-topic",
                value: Some("p.txn.outcomes"),
            })
            .insert(Header {
                key: "dlq-source-partition",
                value: Some("1"),
            })
            .insert(Header {
                key: "dlq-source-offset",
                value: Some("33"),
            })
            .insert(Header {
                key: "dlq-failed-at",
                value: Some("2026-01-01T00:00:00Z"),
            })
            .insert(Header::<&[u8]> {
                key: "binary",
                value: Some(&[0xff, 0x00]),
            });
        let record = Record::from_message(&message("p.txn.outcomes.dlq", 2, b"{", headers));
        assert_eq!(record.kind, Kind::DeadLetter);
        assert_eq!(record.id, "dlq:p.txn.outcomes.dlq:1:2");
        assert_eq!(record.dead_letter, None);
        let d = stored(&record);
        let dl = d.get_document("dead_letter").unwrap();
        assert_eq!(dl.get_str("reason").unwrap(), "MALFORMED_EVENT");
        assert_eq!(dl.get_str("source_topic").unwrap(), "p.txn.outcomes");
        assert_eq!(dl.get("source_partition"), Some(&Bson::Int32(1)));
        assert_eq!(dl.get("source_offset"), Some(&Bson::Int64(33)));
        let headers = d
            .get_document("message")
            .unwrap()
            .get_array("headers")
            .unwrap();
        assert_eq!(headers.len(), 6);
        assert_eq!(
            headers[5].as_document().unwrap().get("value"),
            Some(&binary(&[0xff, 0]))
        );
    }

    #[test]
    fn a_decodable_dead_letter_still_carries_the_event_identity() {
        let e = posted(10, None);
        let m = event_message(&e, 0).set_topic("p.txn.postings.dlq".into());
        let d = stored(&Record::from_message(&m));
        assert_eq!(d.get_str("kind").unwrap(), "dead_letter");
        assert_eq!(d.get_str("event_id").unwrap(), e.event_id.to_string());
        assert_eq!(d.get("balance_after_minor"), None);
        assert_eq!(
            d.get_document("event").unwrap().get("balance_after_minor"),
            Some(&Bson::Null)
        );
    }

    #[test]
    fn a_stored_document_round_trips_to_its_message_and_checks_clean() {
        let e = posted(42, Some(0));
        let record = Record::from_message(&event_message(&e, 3));
        let d = stored(&record);
        let rebuilt = message_of(&d).unwrap();
        assert_eq!(Record::from_message(&rebuilt), record);
        let checked = check_document(&d).unwrap();
        assert_eq!(checked.derived, Ok(()));
        assert_eq!(checked.link.offset, 3);
        assert_eq!(checked.link.content, record.content);
    }

    #[test]
    fn a_duplicate_is_keyed_by_position_and_checks_clean() {
        let mut record = Record::from_message(&event_message(&posted(1, None), 8));
        record.mark_duplicate();
        assert_eq!(record.id, "dup:p.txn.postings:1:8");
        assert_eq!(check_document(&stored(&record)).unwrap().derived, Ok(()));
    }

    #[test]
    fn an_edited_derived_field_is_a_content_mismatch() {
        let record = Record::from_message(&event_message(&posted(100, None), 0));
        let mut d = stored(&record);
        d.get_document_mut("event")
            .unwrap()
            .insert("amount_minor", Bson::Int64(1));
        let detail = check_document(&d).unwrap().derived.unwrap_err();
        assert!(detail.contains("event"), "{detail}");

        let mut d = stored(&record);
        d.insert("note", "added");
        assert!(check_document(&d).unwrap().derived.is_err());

        let mut d = stored(&record);
        d.insert("kind", "dead_letter");
        assert!(check_document(&d).unwrap().derived.is_err());
    }

    #[test]
    fn an_unreadable_document_is_malformed() {
        let mut d = stored(&Record::from_message(&event_message(&posted(1, None), 0)));
        d.get_document_mut("message")
            .unwrap()
            .insert("payload", 5_i64);
        let (offset, kind, _) = check_document(&d).unwrap_err();
        assert_eq!((offset, kind), (Some(0), BreakKind::Malformed));
    }

    #[test]
    fn a_rejected_decision_decodes_like_any_other() {
        // Every decision is audited, not only the accepted ones.
        let merchant_id = MerchantId::parse("m1").unwrap();
        let key = IdempotencyKey::parse("k2").unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap();
        let decided = TransactionDecided {
            schema_version: events::SCHEMA_VERSION,
            event_id: EventId::new_v7(),
            request_id: RequestId::new_v7(),
            transaction_id: TransactionId::derive(DEFAULT_NAMESPACE, &merchant_id, &key),
            merchant_id,
            account_id: AccountId::parse("acc-2").unwrap(),
            idempotency_key: key,
            txn_type: TxnType::Credit,
            amount_minor: 5,
            currency: Currency::EUR,
            decision: Decision::Rejected,
            reason_code: Some("AMOUNT_ABOVE_LIMIT".into()),
            original_request_id: None,
            request_fingerprint: "fp".into(),
            correlation_id: "c".into(),
            received_at: now,
            decided_at: now,
        };
        let m = message(
            "txn.outcomes",
            0,
            &events::encode(&decided),
            event_headers(TransactionDecided::EVENT_TYPE, "c"),
        );
        let record = Record::from_message(&m);
        assert_eq!(record.kind, Kind::Event);
        assert_eq!(
            stored(&record).get_str("event_type").unwrap(),
            "TransactionDecided"
        );
    }
}
