//! The hash chain: one chain per source partition (topic + partition), in offset order.
//!
//! ```text
//! content(m) = "LLA1"
//!            ‖ str(topic) ‖ be_i32(partition) ‖ be_i64(offset)
//!            ‖ opt(key) ‖ opt(payload)
//!            ‖ be_u32(header count) ‖ for each header, in log order: str(name) ‖ opt(value)
//! str(s)     = be_u32(len(s)) ‖ utf8(s)
//! opt(None)  = 0x00            opt(Some(b)) = 0x01 ‖ be_u32(len(b)) ‖ b
//! hash       = lower_hex(SHA-256(ascii(prev_hash) ‖ content(m)))
//! prev_hash  = the hash of the link before it in the same partition; GENESIS for the first
//! ```
//!
//! `content` is a pure function of the Kafka message (never of when it was recorded), so a
//! rebuild from the log into an empty database reproduces every hash bit for bit. Every field
//! is length-prefixed, so no two different messages share an encoding. Nothing here does I/O:
//! [`PartitionVerifier`] checks links however they were read (from MongoDB in
//! [`crate::verify`], from memory in tests).

use rdkafka::message::{Headers, Message};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The `prev_hash` of a partition's first link: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Leads every canonical content: names the encoding, so a future encoding cannot be confused
/// with this one.
const CONTENT_MAGIC: &[u8; 4] = b"LLA1";

/// Length of a hash in hex characters (SHA-256).
pub const HASH_HEX_LEN: usize = 64;

/// The canonical bytes of a Kafka message (see the module docs for the layout).
pub fn canonical_content<M: Message>(message: &M) -> Vec<u8> {
    let payload_len = message.payload().map_or(0, <[u8]>::len);
    let mut out = Vec::with_capacity(64 + payload_len);
    out.extend_from_slice(CONTENT_MAGIC);
    put_bytes(&mut out, message.topic().as_bytes());
    out.extend_from_slice(&message.partition().to_be_bytes());
    out.extend_from_slice(&message.offset().to_be_bytes());
    put_opt(&mut out, message.key());
    put_opt(&mut out, message.payload());
    match message.headers() {
        None => out.extend_from_slice(&0u32.to_be_bytes()),
        Some(headers) => {
            out.extend_from_slice(&len_u32(headers.count()).to_be_bytes());
            for header in headers.iter() {
                put_bytes(&mut out, header.key.as_bytes());
                put_opt(&mut out, header.value);
            }
        }
    }
    out
}

fn len_u32(len: usize) -> u32 {
    // Kafka caps a message far below 4 GiB, so a length that does not fit is a broken invariant,
    // not an input to handle.
    u32::try_from(len).expect("a Kafka message field is shorter than 4 GiB")
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&len_u32(bytes.len()).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_opt(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            put_bytes(out, b);
        }
    }
}

/// `lower_hex(SHA-256(ascii(prev_hash) ‖ content))`.
pub fn link_hash(prev_hash: &str, content: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash.as_bytes());
    hasher.update(content);
    hex::encode(hasher.finalize())
}

/// The first 32 bits of a link hash (its first 8 hex characters) as a number. Stored beside
/// the hash (`hash_fp`) so that a store can sum the hashes of a range of links: the
/// reconciler compares such sums with the chain it computes from the log, without reading
/// every document. `None` when `hash` does not start with 8 hex characters.
pub fn hash_fingerprint(hash: &str) -> Option<i64> {
    let head = hash.get(..8)?;
    u32::from_str_radix(head, 16).ok().map(i64::from)
}

/// How a chain is broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakKind {
    /// The stored `hash` is not the hash of the stored `prev_hash` and raw message: the raw
    /// message (source, key, payload, headers) or the hash was edited.
    HashMismatch,
    /// The raw message is intact but a field derived from it (the event body, an id, the kind)
    /// was edited, added or removed.
    ContentMismatch,
    /// The offsets are consecutive but `prev_hash` is not the previous link's hash: a link was
    /// replaced or re-hashed.
    PrevMismatch,
    /// Offsets are missing and `prev_hash` does not match the last link before them (or a
    /// partition's first stored link does not start at genesis): documents were deleted.
    Missing,
    /// Offsets are missing but the next link's `prev_hash` matches the link before them: the
    /// writer never received those offsets (log retention or compaction), nothing was deleted.
    Gap,
    /// The document cannot be read as an audit record (a field has the wrong type or is absent).
    Malformed,
}

impl BreakKind {
    /// The snake_case name used in reports and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            BreakKind::HashMismatch => "hash_mismatch",
            BreakKind::ContentMismatch => "content_mismatch",
            BreakKind::PrevMismatch => "prev_mismatch",
            BreakKind::Missing => "missing",
            BreakKind::Gap => "gap",
            BreakKind::Malformed => "malformed",
        }
    }
}

/// The first broken link of a partition's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    /// Where the chain first fails: the edited link, the first missing offset, or (for a
    /// chain whose first stored link does not start at genesis) the offset just before it.
    pub offset: i64,
    /// What is wrong.
    pub kind: BreakKind,
    /// A sentence for the operator.
    pub detail: String,
}

/// One stored link, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Its source offset.
    pub offset: i64,
    /// The stored `prev_hash`.
    pub prev_hash: String,
    /// The stored `hash`.
    pub hash: String,
    /// The canonical content recomputed from the stored raw message.
    pub content: Vec<u8>,
}

/// What a partition's chain looked like up to its end or its first break.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChainSummary {
    /// Links read (up to and including a broken one).
    pub links: u64,
    /// Offset of the first link.
    pub first_offset: Option<i64>,
    /// Offset of the last intact link.
    pub head_offset: Option<i64>,
    /// Hash of the last intact link: publish it to anchor the chain (see `docs/audit.md`).
    pub head_hash: Option<String>,
}

/// Checks one partition's links in offset order and remembers the first break. Holds only the
/// previous link, so a chain of any length is verified in constant memory.
#[derive(Debug, Default)]
pub struct PartitionVerifier {
    summary: ChainSummary,
    broken: Option<Break>,
}

impl PartitionVerifier {
    /// A verifier for an empty chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// The first break seen, if any.
    pub fn broken(&self) -> Option<&Break> {
        self.broken.as_ref()
    }

    /// What was verified so far, and the first break.
    pub fn finish(self) -> (ChainSummary, Option<Break>) {
        (self.summary, self.broken)
    }

    /// Checks the next link (offsets must grow). After a break, further links are ignored:
    /// what follows a break cannot be trusted to say anything new.
    pub fn push(&mut self, link: &Link) {
        self.push_checked(link, Ok(()));
    }

    /// [`push`](Self::push) for a stored document whose fields derived from its raw message
    /// were also checked: `derived` is `Err(detail)` when they disagree, a
    /// [`BreakKind::ContentMismatch`] unless the chain itself broke first.
    pub fn push_checked(&mut self, link: &Link, derived: Result<(), String>) {
        if self.broken.is_some() {
            return;
        }
        self.summary.links += 1;
        let broken = self.check(link).or_else(|| {
            derived.err().map(|detail| Break {
                offset: link.offset,
                kind: BreakKind::ContentMismatch,
                detail,
            })
        });
        if let Some(b) = broken {
            self.broken = Some(b);
            return;
        }
        self.summary.first_offset.get_or_insert(link.offset);
        self.summary.head_offset = Some(link.offset);
        self.summary.head_hash = Some(link.hash.clone());
    }

    /// Records a link that failed a check outside the chain itself (content derived from the
    /// raw message, or a document that cannot be read), unless an earlier break was seen.
    pub fn push_failure(&mut self, offset: i64, kind: BreakKind, detail: String) {
        if self.broken.is_none() {
            self.summary.links += 1;
            self.broken = Some(Break {
                offset,
                kind,
                detail,
            });
        }
    }

    fn check(&self, link: &Link) -> Option<Break> {
        let at = |offset: i64, kind: BreakKind, detail: String| {
            Some(Break {
                offset,
                kind,
                detail,
            })
        };
        match (self.summary.head_offset, self.summary.head_hash.as_deref()) {
            (Some(previous), Some(previous_hash)) => {
                if link.offset <= previous {
                    // Links arrive sorted by offset and the store's source index is unique, so
                    // this means the index was dropped and a position stored twice.
                    return at(
                        link.offset,
                        BreakKind::Malformed,
                        format!("offset {} follows offset {previous}", link.offset),
                    );
                }
                let expected = previous + 1;
                let linked = link.prev_hash == previous_hash;
                if link.offset > expected && linked {
                    return at(
                        expected,
                        BreakKind::Gap,
                        format!(
                            "offsets {expected}..={} were never recorded; the link at {} \
                             continues from {previous}",
                            link.offset - 1,
                            link.offset
                        ),
                    );
                }
                if link.offset > expected {
                    return at(
                        expected,
                        BreakKind::Missing,
                        format!(
                            "offsets {expected}..={} are missing and the link at {} does not \
                             continue from {previous}",
                            link.offset - 1,
                            link.offset
                        ),
                    );
                }
                if !linked {
                    return at(
                        link.offset,
                        BreakKind::PrevMismatch,
                        format!(
                            "prev_hash {} is not the hash of offset {previous} ({previous_hash})",
                            link.prev_hash
                        ),
                    );
                }
            }
            _ if link.prev_hash != GENESIS => {
                return at(
                    link.offset - 1,
                    BreakKind::Missing,
                    format!(
                        "the first stored link (offset {}) does not start at genesis: its \
                         predecessor(s) are missing",
                        link.offset
                    ),
                );
            }
            _ => {}
        }
        let computed = link_hash(&link.prev_hash, &link.content);
        if computed != link.hash {
            return at(
                link.offset,
                BreakKind::HashMismatch,
                format!(
                    "stored hash {} but the content hashes to {computed}",
                    link.hash
                ),
            );
        }
        None
    }
}

/// Verifies an in-memory chain (links in offset order).
pub fn verify_links<'a>(
    links: impl IntoIterator<Item = &'a Link>,
) -> (ChainSummary, Option<Break>) {
    let mut verifier = PartitionVerifier::new();
    for link in links {
        verifier.push(link);
    }
    verifier.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_fingerprint_is_its_first_32_bits() {
        assert_eq!(hash_fingerprint(GENESIS), Some(0));
        assert_eq!(hash_fingerprint("ffffffff00"), Some(4_294_967_295));
        assert_eq!(hash_fingerprint("0000000a"), Some(10));
        assert_eq!(hash_fingerprint("xyz"), None);
        assert_eq!(hash_fingerprint("zzzzzzzz"), None);
    }
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

    fn message(offset: i64, payload: &[u8], headers: &[(&str, Option<&str>)]) -> OwnedMessage {
        let mut h = OwnedHeaders::new();
        for (key, value) in headers {
            h = h.insert(Header { key, value: *value });
        }
        OwnedMessage::new(
            Some(payload.to_vec()),
            Some(b"acc-1".to_vec()),
            "txn.requests".into(),
            Timestamp::NotAvailable,
            2,
            offset,
            Some(h),
        )
    }

    /// A well-formed chain of `n` links starting at `first`.
    fn chain(first: i64, n: i64) -> Vec<Link> {
        let mut prev = GENESIS.to_string();
        (first..first + n)
            .map(|offset| {
                let content =
                    canonical_content(&message(offset, format!("p{offset}").as_bytes(), &[]));
                let hash = link_hash(&prev, &content);
                Link {
                    offset,
                    prev_hash: std::mem::replace(&mut prev, hash.clone()),
                    hash,
                    content,
                }
            })
            .collect()
    }

    #[test]
    fn the_canonical_content_has_the_documented_layout() {
        let m = message(7, b"{}", &[("event-type", Some("X")), ("empty", None)]);
        let mut expected = b"LLA1".to_vec();
        expected.extend_from_slice(&12u32.to_be_bytes());
        expected.extend_from_slice(b"txn.requests");
        expected.extend_from_slice(&2i32.to_be_bytes());
        expected.extend_from_slice(&7i64.to_be_bytes());
        expected.extend_from_slice(&[1, 0, 0, 0, 5]);
        expected.extend_from_slice(b"acc-1");
        expected.extend_from_slice(&[1, 0, 0, 0, 2]);
        expected.extend_from_slice(b"{}");
        expected.extend_from_slice(&2u32.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 10]);
        expected.extend_from_slice(b"event-type");
        expected.extend_from_slice(&[1, 0, 0, 0, 1, b'X']);
        expected.extend_from_slice(&[0, 0, 0, 5]);
        expected.extend_from_slice(b"empty");
        expected.push(0);
        assert_eq!(canonical_content(&m), expected);
    }

    #[test]
    fn the_link_hash_is_sha256_of_the_previous_hash_text_and_the_content() {
        // Independently: printf '%s' "$GENESIS" | cat - content | sha256sum
        let content = b"abc";
        let mut input = GENESIS.as_bytes().to_vec();
        input.extend_from_slice(content);
        assert_eq!(
            link_hash(GENESIS, content),
            hex::encode(Sha256::digest(&input))
        );
        assert_eq!(link_hash(GENESIS, content).len(), HASH_HEX_LEN);
        assert_ne!(
            link_hash(GENESIS, content),
            link_hash(&"1".repeat(64), content)
        );
    }

    #[test]
    fn a_null_key_and_an_empty_key_encode_differently() {
        let null_key = message(1, b"x", &[]).set_key(None);
        let empty_key = message(1, b"x", &[]).set_key(Some(Vec::new()));
        assert_ne!(canonical_content(&null_key), canonical_content(&empty_key));
    }

    #[test]
    fn no_header_list_and_an_empty_header_list_are_the_same_message() {
        // librdkafka may present a message without headers either way.
        let none = message(1, b"x", &[]).replace_headers(None);
        assert_eq!(
            canonical_content(&none),
            canonical_content(&message(1, b"x", &[]))
        );
    }

    #[test]
    fn the_content_does_not_depend_on_the_message_timestamp() {
        let m = message(3, b"x", &[]);
        let stamped = m
            .clone()
            .set_timestamp(Timestamp::CreateTime(1_700_000_000_000));
        assert_eq!(canonical_content(&m), canonical_content(&stamped));
    }

    #[test]
    fn an_intact_chain_verifies_and_reports_its_head() {
        let links = chain(0, 5);
        let (summary, broken) = verify_links(&links);
        assert_eq!(broken, None);
        assert_eq!(summary.links, 5);
        assert_eq!(summary.first_offset, Some(0));
        assert_eq!(summary.head_offset, Some(4));
        assert_eq!(summary.head_hash.as_deref(), Some(links[4].hash.as_str()));
    }

    #[test]
    fn an_empty_chain_verifies() {
        assert_eq!(verify_links(&[]), (ChainSummary::default(), None));
    }

    #[test]
    fn an_edited_content_is_a_hash_mismatch_at_its_offset() {
        let mut links = chain(0, 5);
        links[2].content.push(b'!');
        let broken = verify_links(&links).1.unwrap();
        assert_eq!((broken.offset, broken.kind), (2, BreakKind::HashMismatch));
    }

    #[test]
    fn a_rehashed_edit_is_a_prev_mismatch_at_the_next_offset() {
        let mut links = chain(0, 5);
        links[2].content.push(b'!');
        links[2].hash = link_hash(&links[2].prev_hash, &links[2].content);
        let broken = verify_links(&links).1.unwrap();
        assert_eq!((broken.offset, broken.kind), (3, BreakKind::PrevMismatch));
    }

    #[test]
    fn a_deleted_link_is_missing_at_its_offset() {
        let mut links = chain(0, 6);
        links.remove(3);
        links.remove(3);
        let broken = verify_links(&links).1.unwrap();
        assert_eq!((broken.offset, broken.kind), (3, BreakKind::Missing));
        assert!(broken.detail.contains("3..=4"), "{}", broken.detail);
    }

    #[test]
    fn a_deleted_first_link_is_missing_before_the_first_stored_link() {
        let links = chain(0, 4);
        let broken = verify_links(&links[1..]).1.unwrap();
        assert_eq!((broken.offset, broken.kind), (0, BreakKind::Missing));
    }

    #[test]
    fn a_chain_may_start_at_any_offset_from_genesis() {
        // Log retention may have removed the start before the audit first read the partition.
        assert_eq!(verify_links(&chain(40, 3)).1, None);
    }

    #[test]
    fn offsets_linked_over_by_the_writer_are_a_gap_not_a_deletion() {
        let mut links = chain(0, 3);
        let content = canonical_content(&message(9, b"p9", &[]));
        let prev = links[2].hash.clone();
        links.push(Link {
            offset: 9,
            hash: link_hash(&prev, &content),
            prev_hash: prev,
            content,
        });
        let broken = verify_links(&links).1.unwrap();
        assert_eq!((broken.offset, broken.kind), (3, BreakKind::Gap));
    }

    #[test]
    fn an_appended_link_with_a_wrong_prev_hash_is_a_prev_mismatch() {
        let mut links = chain(0, 3);
        let content = canonical_content(&message(3, b"forged", &[]));
        links.push(Link {
            offset: 3,
            prev_hash: "f".repeat(64),
            hash: link_hash(&"f".repeat(64), &content),
            content,
        });
        let broken = verify_links(&links).1.unwrap();
        assert_eq!((broken.offset, broken.kind), (3, BreakKind::PrevMismatch));
    }

    #[test]
    fn only_the_first_break_is_reported() {
        let mut links = chain(0, 6);
        links[1].hash = "0".repeat(64);
        links[4].content.clear();
        let mut verifier = PartitionVerifier::new();
        for link in &links {
            verifier.push(link);
        }
        verifier.push_failure(9, BreakKind::Malformed, "later".into());
        let (summary, broken) = verifier.finish();
        assert_eq!(broken.unwrap().offset, 1);
        assert_eq!(summary.head_offset, Some(0));
        assert_eq!(summary.links, 2);
    }

    #[test]
    fn a_rebuilt_chain_is_identical() {
        assert_eq!(chain(0, 20), chain(0, 20));
    }
}
