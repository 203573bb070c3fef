//! One reconciliation run over a time window.
//!
//! ```text
//! ranges   ← each topic's offsets at the window's start and end (offsets_for_times)
//! anchors  ← the audit's chain hash before each partition's range
//! in parallel:
//!   log    ← one pass over the window (scan.rs): expected ledger and audit digests
//!   ledger ← digests computed by PostgreSQL          (GROUP BY bucket)
//!   audit  ← digests computed by MongoDB             ($group by bucket)
//! drill    ← for each bucket whose digests differ: re-read its offsets from the log, read
//!            its rows / documents, compare record by record (drill.rs); neighbouring
//!            differing buckets of a partition are read in one pass (a span)
//! checks   ← double entry and balances of the accounts the window touched; requests
//!            without a decision; dead letters not redriven
//! record   ← the run and every discrepancy, in PostgreSQL
//! ```
//! A clean run costs one pass over the window's messages plus one aggregate per partition in
//! each store; a drill-down costs one bucket's records per differing bucket, and one seek
//! per span of neighbouring ones.

use crate::app::Context;
use crate::audit_side;
use crate::dead_letters::{self, DlqPosition};
use crate::digest::{differing, spans, Bucket, Digests, Span};
use crate::discrepancy::{count_by_kind, Discrepancy, Kind};
use crate::drill::{compare_audit, compare_ledger, source_offset, Clock, DecisionView};
use crate::ledger_side;
use crate::metrics;
use crate::record;
use crate::scan::{scan, LogView, ScanError, ScanRanges};
use ledgerline_contracts::events::TransactionDecided;
use ledgerline_runtime::backoff::Interrupted;
use ledgerline_runtime::kafka::decode_message;
use ledgerline_runtime::ranges::{self, OffsetRange, Position, RangeReader};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A time window `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    /// Start (inclusive).
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    /// End (exclusive).
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
}

/// What a run found.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Its id in `reconciliation_runs`.
    pub run_id: i64,
    /// The window.
    pub window: Window,
    /// `clean` or `drift`.
    pub status: &'static str,
    /// Messages, rows, documents and buckets compared.
    pub counts: serde_json::Value,
    /// Discrepancies by kind.
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Every discrepancy.
    pub discrepancies: Vec<Discrepancy>,
    /// How long it took.
    pub duration_ms: i64,
}

/// Why a run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Kafka metadata, offsets or reads failed.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// PostgreSQL failed.
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// MongoDB failed.
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// Shutdown arrived first.
    #[error("interrupted by shutdown")]
    Interrupted,
    /// Another run holds the run lock.
    #[error("another reconciliation run or repair is in progress")]
    Busy,
}

impl From<ScanError> for RunError {
    fn from(e: ScanError) -> Self {
        match e {
            ScanError::Kafka(k) => RunError::Kafka(k),
            ScanError::Interrupted => RunError::Interrupted,
        }
    }
}

impl From<Interrupted> for RunError {
    fn from(_: Interrupted) -> Self {
        RunError::Interrupted
    }
}

/// Runs one reconciliation over `window` and records it. The caller holds the run lock.
pub async fn reconcile(
    ctx: &Context,
    window: Window,
    trigger: &str,
    shutdown: &CancellationToken,
) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let run_id = record::start_run(&ctx.pool, window.from, window.to, trigger).await?;
    match compare(ctx, window, shutdown).await {
        Ok((found, counts)) => {
            let by_kind = count_by_kind(&found);
            let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
            record::finish_run(
                &ctx.pool,
                run_id,
                &counts,
                &by_kind,
                &found,
                ctx.settings.reconcile.discrepancies_recorded_max,
                duration_ms,
            )
            .await?;
            let status = if found.is_empty() { "clean" } else { "drift" };
            metrics::run_finished(status, &by_kind, started.elapsed(), window.to);
            Ok(RunReport {
                run_id,
                window,
                status,
                counts,
                by_kind,
                discrepancies: found,
                duration_ms,
            })
        }
        Err(error) => {
            let _ = record::fail_run(&ctx.pool, run_id, &error.to_string()).await;
            metrics::run_failed();
            Err(error)
        }
    }
}

/// The ranges a run reads: every topic's window, with outcomes and postings read on for the
/// settle time so that late decisions and results are seen.
fn scan_ranges(ctx: &Context, window: Window) -> Result<ScanRanges, KafkaError> {
    let settle = time::Duration::seconds(
        i64::try_from(ctx.settings.reconcile.settle_secs).unwrap_or(i64::MAX),
    );
    let (from, to) = (Position::Time(window.from), Position::Time(window.to));
    let mut out = ScanRanges::default();
    for topic in ctx.topics.all() {
        let w = ranges::between(&ctx.reader, &topic, None, from, to)?;
        let extended = topic == ctx.topics.outcomes || topic == ctx.topics.postings;
        let read = if extended {
            ranges::between(
                &ctx.reader,
                &topic,
                None,
                from,
                Position::Time(window.to + settle),
            )?
        } else {
            w.clone()
        };
        out.window.extend(w);
        out.read.extend(read);
    }
    Ok(out)
}

async fn compare(
    ctx: &Context,
    window: Window,
    shutdown: &CancellationToken,
) -> Result<(Vec<Discrepancy>, serde_json::Value), RunError> {
    let settings = &ctx.settings.reconcile;
    let size = settings.bucket_offsets;
    let ranges = scan_ranges(ctx, window)?;
    // One indexed read per partition (none for a partition read from its first offset).
    let mut anchors = HashMap::new();
    for r in ranges.window.iter().filter(|r| !r.is_empty()) {
        let hash = audit_side::anchor(&ctx.audit, &r.topic, r.partition, r.from).await?;
        anchors.insert((r.topic.clone(), r.partition), hash);
    }
    let ledger_ranges: Vec<OffsetRange> = ranges
        .window
        .iter()
        .filter(|r| r.topic == ctx.topics.outcomes)
        .cloned()
        .collect();
    // The three sides run concurrently; each is timed so a report says which one dominates.
    let (view, in_ledger, in_audit) = tokio::join!(
        timed(scan(
            &ctx.reader,
            &ctx.topics,
            &ranges,
            &anchors,
            size,
            &settings.read_batch,
            shutdown
        )),
        timed(ledger_side::digests(
            &ctx.pool,
            &ctx.topics.outcomes,
            &ledger_ranges,
            size
        )),
        timed(audit_side::digests(&ctx.audit, &ranges.window, size)),
    );
    let timings = [
        ("log_scan", view.1),
        ("ledger_digests", in_ledger.1),
        ("audit_digests", in_audit.1),
    ];
    let (view, in_ledger, in_audit) = (view.0, in_ledger.0, in_audit.0);
    let (view, in_ledger, in_audit) = (view?, in_ledger?, in_audit?);
    let ledger_differing = differing(&view.ledger, &in_ledger);
    let audit_differing: Vec<Bucket> = if settings.deep_audit {
        let all: BTreeSet<Bucket> = view.audit.keys().chain(in_audit.keys()).cloned().collect();
        all.into_iter().collect()
    } else {
        differing(&view.audit, &in_audit)
    };
    let clock = Clock {
        now: ledgerline_runtime::time::now(),
        settle: Duration::from_secs(settings.settle_secs),
        stuck: Duration::from_secs(settings.stuck_after_secs),
    };

    let drill_started = Instant::now();
    let mut found = Vec::new();
    let span_max = settings.drill_span_buckets_max;
    for span in spans(clipped(&ranges, &ledger_differing, size), span_max) {
        found.extend(drill_ledger(ctx, &view, &span, clock, shutdown).await?);
    }
    for span in spans(clipped(&ranges, &audit_differing, size), span_max) {
        found.extend(drill_audit(ctx, &view, &span, shutdown).await?);
    }
    let drill_ms = drill_started.elapsed().as_millis();
    let checks_started = Instant::now();
    found.extend(invariants(ctx, &ledger_ranges).await?);
    found.extend(stuck_requests(ctx, &view, clock));
    found.extend(dead_letter_findings(ctx, &view).await?);

    let counts = json!({
        "log_messages": view.messages,
        "ledger_rows": total(&in_ledger),
        "audit_documents": total(&in_audit),
        "ledger_buckets": view.ledger.len().max(in_ledger.len()),
        "ledger_buckets_differing": ledger_differing.len(),
        "audit_buckets": view.audit.len().max(in_audit.len()),
        "audit_buckets_drilled": audit_differing.len(),
        "timings_ms": {
            timings[0].0: timings[0].1,
            timings[1].0: timings[1].1,
            timings[2].0: timings[2].1,
            "drill_down": drill_ms,
            "checks": checks_started.elapsed().as_millis(),
        },
    });
    Ok((found, counts))
}

async fn timed<T>(work: impl std::future::Future<Output = T>) -> (T, u128) {
    let started = Instant::now();
    let out = work.await;
    (out, started.elapsed().as_millis())
}

fn total(digests: &Digests) -> i64 {
    digests.values().map(|d| d.count).sum()
}

/// Each bucket's offsets within the window's range of its partition (buckets outside it
/// dropped).
fn clipped(ranges: &ScanRanges, buckets: &[Bucket], size: i64) -> Vec<(Bucket, i64, i64)> {
    buckets
        .iter()
        .filter_map(|bucket| {
            let w = ranges.window_of(&bucket.topic, bucket.partition)?;
            let (from, to) = bucket.offsets(size);
            let (from, to) = (from.max(w.from), to.min(w.to));
            (from < to).then(|| (bucket.clone(), from, to))
        })
        .collect()
}

/// The part of `items` (sorted by offset) whose offsets are in `[from, to)`.
fn within<T>(items: &[T], offset: impl Fn(&T) -> i64, from: i64, to: i64) -> &[T] {
    let start = items.partition_point(|x| offset(x) < from);
    let end = items.partition_point(|x| offset(x) < to);
    &items[start..end.max(start)]
}

/// Re-reads `[from, to)` of one partition from the log.
pub(crate) async fn read_range(
    ctx: &Context,
    topic: &str,
    partition: i32,
    from: i64,
    to: i64,
    shutdown: &CancellationToken,
) -> Result<Vec<OwnedMessage>, RunError> {
    let range = OffsetRange {
        topic: topic.to_string(),
        partition,
        from,
        to,
    };
    let mut out = Vec::new();
    let mut reader = RangeReader::start(&ctx.reader, std::slice::from_ref(&range))?;
    while let Some(batch) = reader
        .next(&ctx.settings.reconcile.read_batch, shutdown)
        .await?
    {
        out.extend(batch);
    }
    Ok(out)
}

async fn drill_ledger(
    ctx: &Context,
    view: &LogView,
    span: &Span,
    clock: Clock,
    shutdown: &CancellationToken,
) -> Result<Vec<Discrepancy>, RunError> {
    let (from, to) = span.offsets();
    let messages = read_range(ctx, &span.topic, span.partition, from, to, shutdown).await?;
    let rows = ledger_side::rows_in(&ctx.pool, &span.topic, span.partition, from, to).await?;
    // Per bucket, as if each had been read alone: a transaction counts once per bucket.
    let buckets: Vec<(Vec<DecisionView>, &[ledger_side::LedgerRow])> = span
        .buckets
        .iter()
        .map(|(_, from, to)| {
            let mut seen = HashSet::new();
            let decisions = within(&messages, |m| m.offset(), *from, *to)
                .iter()
                .filter_map(|m| {
                    let d = decode_message::<TransactionDecided, _>(m).ok()?;
                    DecisionView::of(m.offset(), &d)
                })
                .filter(|d| seen.insert(d.transaction_id))
                .collect();
            (decisions, within(&rows, |r| r.source_offset, *from, *to))
        })
        .collect();
    let at_offsets: HashSet<i64> = rows.iter().map(|r| r.source_offset).collect();
    let unmatched: Vec<Uuid> = buckets
        .iter()
        .flat_map(|(decisions, _)| decisions)
        .filter(|d| !at_offsets.contains(&d.offset))
        .map(|d| d.transaction_id)
        .collect();
    let elsewhere = if unmatched.is_empty() {
        Vec::new()
    } else {
        ledger_side::rows_of(&ctx.pool, &unmatched).await?
    };
    Ok(buckets
        .iter()
        .flat_map(|(decisions, rows)| {
            compare_ledger(
                &span.topic,
                span.partition,
                decisions,
                rows,
                &elsewhere,
                &view.announced,
                clock,
            )
        })
        .collect())
}

async fn drill_audit(
    ctx: &Context,
    view: &LogView,
    span: &Span,
    shutdown: &CancellationToken,
) -> Result<Vec<Discrepancy>, RunError> {
    let (from, to) = span.offsets();
    let messages = read_range(ctx, &span.topic, span.partition, from, to, shutdown).await?;
    // The server returns them unsorted (see `documents_in`); sorted here, each bucket's are
    // a slice, like its messages.
    let mut documents =
        audit_side::documents_in(&ctx.audit, &span.topic, span.partition, from, to).await?;
    documents.sort_by_cached_key(source_offset);
    let mut out = Vec::new();
    for (bucket, from, to) in &span.buckets {
        let before = match view.chain_before.get(bucket) {
            Some(h) => h.clone(),
            None => audit_side::anchor(&ctx.audit, &span.topic, span.partition, *from).await?,
        };
        out.extend(compare_audit(
            &span.topic,
            span.partition,
            within(&messages, |m| m.offset(), *from, *to),
            &before,
            within(&documents, source_offset, *from, *to),
        ));
    }
    Ok(out)
}

async fn invariants(
    ctx: &Context,
    ledger_ranges: &[OffsetRange],
) -> Result<Vec<Discrepancy>, RunError> {
    let topic = &ctx.topics.outcomes;
    let mut out = Vec::new();
    for u in ledger_side::unbalanced(&ctx.pool, topic, ledger_ranges).await? {
        out.push(Discrepancy {
            kind: Kind::UnbalancedTransaction,
            transaction_id: Some(u.transaction_id),
            topic: topic.clone(),
            partition: u.source_partition,
            offset: u.source_offset,
            expected: Some(json!({
                "legs": if u.result == "POSTED" { 2 } else { 0 },
                "sum_minor": 0,
                "transaction_id": u.transaction_id,
            })),
            found: Some(json!({
                "legs": u.legs, "sum_minor": u.sum_minor, "transaction_id": u.transaction_id,
            })),
            detail: format!(
                "{} transaction has {} posting(s) summing to {}",
                u.result, u.legs, u.sum_minor
            ),
        });
    }
    for b in ledger_side::balance_drift(&ctx.pool, topic, ledger_ranges).await? {
        out.push(Discrepancy {
            kind: Kind::BalanceMismatch,
            transaction_id: None,
            topic: topic.clone(),
            partition: -1,
            offset: -1,
            expected: Some(json!({
                "merchant_id": b.merchant_id, "account_id": b.account_id,
                "currency": b.currency, "balance_minor": b.postings_sum_minor,
            })),
            found: Some(json!({
                "merchant_id": b.merchant_id, "account_id": b.account_id,
                "currency": b.currency, "balance_minor": b.balance_minor,
            })),
            detail: if b.account_id.starts_with("~clearing/") {
                format!(
                    "{} {}: the merchant's balances sum to {:?}, not zero (clearing side)",
                    b.merchant_id, b.currency, b.balance_minor
                )
            } else {
                format!(
                    "{}/{} {}: balance {:?} but its postings sum to {}",
                    b.merchant_id, b.account_id, b.currency, b.balance_minor, b.postings_sum_minor
                )
            },
        });
    }
    Ok(out)
}

fn stuck_requests(ctx: &Context, view: &LogView, clock: Clock) -> Vec<Discrepancy> {
    let mut out: Vec<Discrepancy> = view
        .requests
        .iter()
        .filter(|(id, r)| !view.decided.contains(*id) && (clock.now - r.received_at) > clock.stuck)
        .map(|(id, r)| Discrepancy {
            kind: Kind::StuckInFlight,
            transaction_id: Some(r.transaction_id),
            topic: ctx.topics.requests.clone(),
            partition: r.partition,
            offset: r.offset,
            expected: Some(json!({ "decision_for_request": id })),
            found: None,
            detail: "request never decided (processor)".to_string(),
        })
        .collect();
    out.sort_by_key(|d| (d.partition, d.offset));
    out
}

async fn dead_letter_findings(ctx: &Context, view: &LogView) -> Result<Vec<Discrepancy>, RunError> {
    if view.dead_letters.is_empty() {
        return Ok(Vec::new());
    }
    let redriven: HashSet<DlqPosition> = record::redriven(&ctx.pool).await?.into_iter().collect();
    Ok(dead_letters::findings(&view.dead_letters, &redriven))
}
