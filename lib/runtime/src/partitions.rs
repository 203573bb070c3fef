//! Where keyed messages land, so a batch can be handed to the producer one request at a time
//! per partition.
//!
//! Why: librdkafka's idempotent producer keeps one produce request in flight per partition
//! (and at most `max.in.flight.requests.per.connection`, 5, per broker connection). Messages it
//! holds past `linger.ms` that it may not send yet make its broker thread wake with a zero
//! timeout on every pass until an acknowledgement frees the partition: it spins. The pipeline
//! makes this the common case, not the exception: a stage reads one partition's backlog per
//! batch, and its output is keyed by the same account, so a batch of 2,000 outcomes is one
//! partition's and more than one request (`batch.size`). Measured on the ledger-writer's relay
//! (2026-12-05, docs/benchmarks.md), that thread took 45–60 % of a core on a two-core box whose
//! broker was already the bottleneck. Handing the producer one request's worth per partition,
//! and the next when it is acknowledged, sends the same requests without the spin.
//!
//! The grouping is a pacing hint, never a routing decision: records are still produced by key
//! and placed by librdkafka's own `murmur2_random` partitioner. If the partition count read here
//! is stale (a topic grew), a group may span two partitions; every key still lands in one
//! group, in order, so per-account order holds either way.

use rdkafka::producer::{FutureProducer, Producer};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The idempotent producer's cap on produce requests in flight per broker connection
/// (`max.in.flight.requests.per.connection`, at most 5 with idempotence).
pub const REQUESTS_IN_FLIGHT_PER_BROKER: usize = 5;

/// Kafka's murmur2 seed (`org.apache.kafka.common.utils.Utils.murmur2`).
const KAFKA_MURMUR2_SEED: u32 = 0x9747_b28c;

/// The producer's request size bound (`batch.size`, librdkafka's default, set explicitly).
pub const REQUEST_BYTES_MAX: usize = 1_000_000;

/// What a run handed to the producer may hold: a tenth under [`REQUEST_BYTES_MAX`], because
/// the overhead per message is an estimate.
pub const RUN_BYTES_MAX: usize = REQUEST_BYTES_MAX / 10 * 9;

/// What one message adds to a request beyond its key, value and header values: record framing
/// and header names, rounded up.
const MESSAGE_OVERHEAD_BYTES: usize = 96;

/// How long a topic's layout is trusted before it is read again.
const LAYOUT_TTL: Duration = Duration::from_secs(60);

/// Most time a metadata read may take; past it the batch is sent as one group.
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

/// The partition a keyed message lands in: `(murmur2(key) & 0x7fffffff) % partitions`, what the
/// Java client and librdkafka's `murmur2_random` partitioner compute.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    let positive = murmur2::murmur2(key, KAFKA_MURMUR2_SEED) & 0x7fff_ffff;
    // `partitions` is at least 1 (from metadata), and the result is below it.
    (positive % partitions.max(1) as u32) as i32
}

/// A topic's partition count and how many requests may be in flight for it (5 per distinct
/// leader).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Partitions of the topic.
    pub partitions: i32,
    /// Produce requests that may be in flight at once across the topic's leaders.
    pub in_flight_max: usize,
}

/// Indexes of `keys` grouped by the partition each lands in, groups in order of first
/// appearance and each group in input order.
pub fn group_by_partition<'a>(
    keys: impl IntoIterator<Item = &'a [u8]>,
    partitions: i32,
) -> Vec<Vec<usize>> {
    let mut slot: HashMap<i32, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (index, key) in keys.into_iter().enumerate() {
        let partition = partition_for_key(key, partitions);
        let at = *slot.entry(partition).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[at].push(index);
    }
    groups
}

/// Splits one partition's messages (indexes, in order) into runs that each fit one produce
/// request: at most `bytes_max` by `size_of` (with per-message overhead). A message larger than
/// the bound is a run of its own.
pub fn split_into_requests(
    group: &[usize],
    size_of: impl Fn(usize) -> usize,
    bytes_max: usize,
) -> Vec<&[usize]> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (at, &index) in group.iter().enumerate() {
        let size = size_of(index) + MESSAGE_OVERHEAD_BYTES;
        if at > start && bytes + size > bytes_max {
            runs.push(&group[start..at]);
            start = at;
            bytes = 0;
        }
        bytes += size;
    }
    if start < group.len() {
        runs.push(&group[start..]);
    }
    runs
}

/// The idempotent producer with the layouts of the topics it writes, read from the cluster's
/// metadata through it and cached for a minute: what [`crate::kafka::produce_all`] sends with.
#[derive(Clone)]
pub struct PacedProducer {
    producer: FutureProducer,
    known: Arc<Mutex<HashMap<String, (Layout, Instant)>>>,
}

impl std::fmt::Debug for PacedProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacedProducer").finish_non_exhaustive()
    }
}

impl PacedProducer {
    /// Paces `producer` (from [`crate::kafka::KafkaSettings::producer`]).
    pub fn new(producer: FutureProducer) -> Self {
        Self {
            producer,
            known: Arc::default(),
        }
    }

    /// The producer itself.
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// The layout of `topic`, or `None` when it was never read and cannot be read now (the
    /// caller then sends its batch as one group, as without pacing). A layout that cannot be
    /// refreshed is kept, and the next read is tried a minute later, so an outage does not
    /// add a metadata timeout to every retry.
    pub async fn layout(&self, topic: &str) -> Option<Layout> {
        let cached = self.lock().get(topic).copied();
        if let Some((layout, read_at)) = cached {
            if read_at.elapsed() < LAYOUT_TTL {
                return Some(layout);
            }
        }
        let producer = self.producer.clone();
        let name = topic.to_string();
        // `fetch_metadata` blocks on a broker round trip: keep it off the runtime's threads.
        let read = tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(Some(&name), METADATA_TIMEOUT)
                .ok()?;
            let topic = metadata.topics().iter().find(|t| t.name() == name)?;
            let partitions = i32::try_from(topic.partitions().len()).ok()?;
            let mut leaders: Vec<i32> = topic.partitions().iter().map(|p| p.leader()).collect();
            leaders.sort_unstable();
            leaders.dedup();
            (partitions > 0).then_some(Layout {
                partitions,
                in_flight_max: REQUESTS_IN_FLIGHT_PER_BROKER * leaders.len().max(1),
            })
        })
        .await
        .ok()
        .flatten();
        let layout = read.or_else(|| {
            tracing::warn!(
                topic,
                "topic metadata unavailable; pacing by the last layout read"
            );
            cached.map(|(layout, _)| layout)
        })?;
        self.lock()
            .insert(topic.to_string(), (layout, Instant::now()));
        Some(layout)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Layout, Instant)>> {
        // A panic while holding this lock leaves a plain cache behind; it is still usable.
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_land_where_the_java_client_puts_them() {
        // `Utils.murmur2` vectors from Apache Kafka's own tests, as signed Java ints.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, java) in cases {
            assert_eq!(
                murmur2::murmur2(key, KAFKA_MURMUR2_SEED) as i32,
                java,
                "{key:?}"
            );
            let expected = ((java as u32 & 0x7fff_ffff) % 12) as i32;
            assert_eq!(partition_for_key(key, 12), expected);
        }
    }

    #[test]
    fn groups_keep_first_appearance_order_and_input_order_within() {
        let keys: Vec<&[u8]> = vec![b"acc-1", b"acc-2", b"acc-1", b"acc-3", b"acc-2"];
        let groups = group_by_partition(keys.iter().copied(), 1);
        assert_eq!(groups, vec![vec![0, 1, 2, 3, 4]]);
        let groups = group_by_partition(keys.iter().copied(), 64);
        let flat: usize = groups.iter().map(Vec::len).sum();
        assert_eq!(flat, keys.len());
        for group in &groups {
            assert!(group.windows(2).all(|w| w[0] < w[1]), "{groups:?}");
            let p = partition_for_key(keys[group[0]], 64);
            assert!(group.iter().all(|&i| partition_for_key(keys[i], 64) == p));
        }
        let firsts: Vec<usize> = groups.iter().map(|g| g[0]).collect();
        assert!(firsts.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn a_partition_is_split_into_runs_that_each_fit_a_request() {
        let group: Vec<usize> = (0..10).collect();
        // 10 messages of 404 bytes with overhead: 2 per 1,000-byte request.
        let runs = split_into_requests(&group, |_| 404 - MESSAGE_OVERHEAD_BYTES, 1_000);
        assert_eq!(runs, vec![&[0, 1][..], &[2, 3], &[4, 5], &[6, 7], &[8, 9]]);
        let all = split_into_requests(&group, |_| 1, 1_000_000);
        assert_eq!(all, vec![&group[..]]);
        // An oversized message goes alone; nothing is dropped or reordered.
        let runs = split_into_requests(&group, |i| if i == 3 { 5_000 } else { 1 }, 1_000);
        assert_eq!(runs, vec![&[0, 1, 2][..], &[3], &[4, 5, 6, 7, 8, 9]]);
        assert!(split_into_requests(&[], |_| 1, 1_000).is_empty());
    }
}
