//! Reconciliation against the real stores: a clean pipeline reconciles clean; every kind of
//! drift injected by hand is found with its kind and offset, repaired by `repair --apply`
//! through the writers' own paths, and the re-check is clean; a dry run changes nothing.

mod support;

use ledger_writer::replay::ReplayFrom;
use ledgerline_contracts::events::TxnType;
use ledgerline_contracts::topics::{self, headers};
use ledgerline_testkit::TestEnv;
use mongodb::bson::doc;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use reconciler::discrepancy::Kind;
use reconciler::ledger_side;
use reconciler::record::{self, RunLock};
use reconciler::repair;
use reconciler::run::reconcile;
use std::collections::BTreeSet;
use std::time::Duration;
use support::*;
use tokio_util::sync::CancellationToken;

fn dlq_headers(source: &str, offset: i64) -> OwnedHeaders {
    let offset = offset.to_string();
    OwnedHeaders::new()
        .insert(Header {
            key: headers::DLQ_REASON,
            value: Some("SCHEMA_INVALID"),
        })
        .insert(Header {
            key: headers::DLQ_SOURCE_TOPIC,
            value: Some(source),
        })
        .insert(Header {
            key: headers::DLQ_SOURCE_PARTITION,
            value: Some("0"),
        })
        .insert(Header {
            key: headers::DLQ_SOURCE_OFFSET,
            value: Some(&offset),
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_pipeline_reconciles_clean_and_a_dry_run_changes_nothing() {
    let env = TestEnv::new().await.unwrap();
    let started = ledgerline_runtime::time::now();
    let ledger = start_ledger(&env).await;
    let audit = start_audit(&env).await;
    let p = producer(&env);
    for i in 0..30 {
        let d = decided(
            &format!("k{i}"),
            &format!("acc-{}", i % 4),
            TxnType::Credit,
            100 + i,
        );
        publish(&env, &p, &d).await;
    }
    wait_for_ledger(&env, 30).await;
    wait_for_documents(&env, 60).await;
    ledger.stop().await;
    audit.stop().await;

    let ctx = context(&env).await;
    let report = reconcile(&ctx, window(started), "test", &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(report.status, "clean", "{:#?}", report.discrepancies);
    assert_eq!(report.counts["ledger_rows"], 30);
    assert_eq!(report.counts["audit_documents"], 60);
    assert_eq!(report.counts["ledger_buckets_differing"], 0);
    let recorded = record::run(&ctx.pool, report.run_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recorded.status, "clean");

    let plan = repair::plan_for_run(&ctx, report.run_id).await.unwrap();
    assert!(plan.is_empty(), "{plan:?}");

    // Only one run or repair at a time, across processes.
    let held = RunLock::try_acquire(&ctx.pool).await.unwrap().unwrap();
    assert!(RunLock::try_acquire(&ctx.pool).await.unwrap().is_none());
    held.release().await;
    assert!(RunLock::try_acquire(&ctx.pool).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_injected_drift_is_found_at_its_offset_and_repaired_and_the_recheck_is_clean() {
    let env = TestEnv::new().await.unwrap();
    let started = ledgerline_runtime::time::now();
    let ledger = start_ledger(&env).await;
    let audit = start_audit(&env).await;
    let p = producer(&env);
    let mut sent = Vec::new();
    for i in 0..30 {
        let d = decided(
            &format!("k{i}"),
            &format!("acc-{}", i % 4),
            TxnType::Credit,
            100 + i,
        );
        let at = publish(&env, &p, &d).await;
        sent.push((d, at));
    }
    wait_for_ledger(&env, 30).await;
    // A poison message dead-lettered from txn.outcomes.
    let dlq_topic = env.kafka.dlq(topics::OUTCOMES);
    let dlq_at = send(
        &p,
        &dlq_topic,
        "acc-0",
        b"not an event",
        dlq_headers(&env.topic(topics::OUTCOMES), 99),
    )
    .await;
    wait_for_documents(&env, 61).await;
    // An outcome the ledger never posts: the writer is down when it arrives.
    ledger.stop().await;
    let late = decided("late", "acc-0", TxnType::Credit, 555);
    let late_at = publish(&env, &p, &late).await;
    wait_for_documents(&env, 62).await;
    audit.stop().await;

    let txn = |i: usize| sent[i].0.transaction_id.as_uuid().to_string();
    let at = |i: usize| sent[i].1;
    // Delete a ledger transaction (the balance keeps its amount).
    tamper(
        &env,
        &format!("DELETE FROM postings WHERE transaction_id = '{}'", txn(3)),
    )
    .await;
    tamper(
        &env,
        &format!(
            "DELETE FROM ledger_transactions WHERE transaction_id = '{}'",
            txn(3)
        ),
    )
    .await;
    // Change an amount, both legs, so the entry still balances but contradicts the log.
    tamper(&env, &format!("UPDATE ledger_transactions SET amount_minor = amount_minor + 1000 WHERE transaction_id = '{}'", txn(5))).await;
    tamper(&env, &format!("UPDATE postings SET amount_minor = amount_minor + (CASE leg WHEN 'account' THEN 1000 ELSE -1000 END) WHERE transaction_id = '{}'", txn(5))).await;
    // Break a balance.
    sqlx::query("UPDATE balances SET balance_minor = balance_minor + 7 WHERE account_id = 'acc-2'")
        .execute(&env.pg)
        .await
        .unwrap();
    // Delete one audit document and edit another's amount.
    let docs = events(&env).await;
    let deleted_id = sent[7].0.event_id.to_string();
    let deleted = docs
        .find_one(doc! { "_id": &deleted_id })
        .await
        .unwrap()
        .unwrap();
    docs.delete_one(doc! { "_id": &deleted_id }).await.unwrap();
    let edited_id = sent[9].0.event_id.to_string();
    docs.update_one(
        doc! { "_id": &edited_id },
        doc! { "$set": { "event.amount_minor": 1_i64 } },
    )
    .await
    .unwrap();

    let ctx = context(&env).await;
    let shutdown = CancellationToken::new();
    let report = reconcile(&ctx, window(started), "test", &shutdown)
        .await
        .unwrap();
    assert_eq!(report.status, "drift");
    let outcomes = env.topic(topics::OUTCOMES);
    let found: BTreeSet<(Kind, String, i32, i64)> = report
        .discrepancies
        .iter()
        .filter(|d| d.kind != Kind::BalanceMismatch)
        .map(|d| (d.kind, d.topic.clone(), d.partition, d.offset))
        .collect();
    let expected: BTreeSet<(Kind, String, i32, i64)> = [
        (Kind::MissingInLedger, outcomes.clone(), at(3).0, at(3).1),
        (
            Kind::MissingInLedger,
            outcomes.clone(),
            late_at.0,
            late_at.1,
        ),
        (Kind::LedgerMismatch, outcomes.clone(), at(5).0, at(5).1),
        (Kind::MissingInAudit, outcomes.clone(), at(7).0, at(7).1),
        (Kind::ChainBreak, outcomes.clone(), at(9).0, at(9).1),
        (Kind::DeadLettered, dlq_topic.clone(), dlq_at.0, dlq_at.1),
    ]
    .into_iter()
    .collect();
    assert_eq!(found, expected, "{:#?}", report.discrepancies);
    let mismatch = report
        .discrepancies
        .iter()
        .find(|d| d.kind == Kind::LedgerMismatch)
        .unwrap();
    assert!(
        mismatch.detail.contains("amount_minor"),
        "{}",
        mismatch.detail
    );
    let drifted: BTreeSet<String> = report
        .discrepancies
        .iter()
        .filter(|d| d.kind == Kind::BalanceMismatch)
        .filter_map(|d| {
            d.found
                .as_ref()?
                .get("account_id")?
                .as_str()
                .map(String::from)
        })
        .collect();
    for account in ["acc-1", "acc-2", "acc-3"] {
        assert!(
            drifted.contains(account),
            "{account} not reported: {drifted:?}"
        );
    }

    // The dry run plans and changes nothing.
    let before = count(&env, "SELECT count(*) FROM ledger_transactions").await;
    let plan = repair::plan_for_run(&ctx, report.run_id).await.unwrap();
    assert!(!plan.is_empty());
    assert_eq!(plan.operator.len(), 1, "the dead letter is an operator's");
    assert_eq!(
        count(&env, "SELECT count(*) FROM ledger_transactions").await,
        before
    );
    assert_eq!(
        count(&env, "SELECT count(*) FROM ledger_quarantine").await,
        0
    );

    let outcome = repair::apply(&ctx, &plan, &shutdown).await.unwrap();
    assert_eq!(outcome.status, "repaired", "{outcome:#?}");
    let recheck = outcome.recheck.as_ref().unwrap();
    let left: Vec<Kind> = recheck.discrepancies.iter().map(|d| d.kind).collect();
    assert_eq!(
        left,
        vec![Kind::DeadLettered],
        "{:#?}",
        recheck.discrepancies
    );

    // The books: every transaction once, the edited one at its logged amount, balances equal
    // postings everywhere.
    assert_eq!(
        count(&env, "SELECT count(*) FROM ledger_transactions").await,
        31
    );
    let amount: i64 = sqlx::query_scalar(
        "SELECT amount_minor FROM ledger_transactions WHERE transaction_id = $1::uuid",
    )
    .bind(txn(5))
    .fetch_one(&env.pg)
    .await
    .unwrap();
    assert_eq!(amount, 105);
    let drifting = count(
        &env,
        "SELECT count(*) FROM balances b WHERE b.balance_minor <> \
         (SELECT coalesce(sum(amount_minor), 0) FROM postings p WHERE p.merchant_id = b.merchant_id \
          AND p.account_id = b.account_id AND p.currency = b.currency)",
    )
    .await;
    assert_eq!(drifting, 0);
    assert_eq!(
        count(&env, "SELECT count(*) FROM ledger_quarantine").await,
        1
    );
    // The audit: the deleted document is back with its very hash; the edited one was
    // quarantined and re-recorded from the log.
    let restored = docs
        .find_one(doc! { "_id": &deleted_id })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(restored.get_str("hash"), deleted.get_str("hash"));
    let re_recorded = docs
        .find_one(doc! { "_id": &edited_id })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        re_recorded
            .get_document("event")
            .unwrap()
            .get_i64("amount_minor"),
        Ok(109)
    );
    let quarantined = ctx
        .quarantine
        .count_documents(doc! { "document._id": &edited_id })
        .await
        .unwrap();
    assert_eq!(quarantined, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redriven_dead_letter_is_posted_and_no_longer_reported() {
    let env = TestEnv::new().await.unwrap();
    let started = ledgerline_runtime::time::now();
    let ledger = start_ledger(&env).await;
    let p = producer(&env);
    // A valid decision that was dead-lettered (say, during an outage that is now over).
    let d = decided("redrive-me", "acc-9", TxnType::Credit, 4_200);
    let dlq_topic = env.kafka.dlq(topics::OUTCOMES);
    let mut original = ledgerline_runtime::kafka::event_headers(
        <ledgerline_contracts::events::TransactionDecided as ledgerline_contracts::events::Event>::EVENT_TYPE,
        &d.correlation_id,
    );
    for h in dlq_headers(&env.topic(topics::OUTCOMES), 3).iter() {
        original = original.insert(Header {
            key: h.key,
            value: h.value,
        });
    }
    let at = send(
        &p,
        &dlq_topic,
        d.account_id.as_str(),
        &ledgerline_contracts::events::encode(&d),
        original,
    )
    .await;
    let ctx = context(&env).await;
    let shutdown = CancellationToken::new();
    let listed = reconciler::dlq::list(&ctx, std::slice::from_ref(&dlq_topic), &shutdown)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].redriven);
    assert_eq!(
        listed[0].dead_letter.reason.as_deref(),
        Some("SCHEMA_INVALID")
    );

    let sent = redrive(&ctx, &dlq_topic, one(at)).await;
    assert_eq!(sent.len(), 1);
    // Redriving again sends nothing: it is recorded.
    let again = redrive(&ctx, &dlq_topic, one(at)).await;
    assert!(again.is_empty());
    wait_for_ledger(&env, 1).await;
    ledger.stop().await;
    let listed = reconciler::dlq::list(&ctx, std::slice::from_ref(&dlq_topic), &shutdown)
        .await
        .unwrap();
    assert!(listed[0].redriven);

    let report = reconcile(&ctx, window(started), "test", &shutdown)
        .await
        .unwrap();
    assert!(
        report
            .discrepancies
            .iter()
            .all(|x| x.kind != Kind::DeadLettered && x.kind != Kind::MissingInLedger),
        "{:#?}",
        report.discrepancies
    );
}

/// The dead-lettered findings of a run over `started`, by DLQ position.
async fn dead_lettered(
    ctx: &reconciler::Context,
    started: time::OffsetDateTime,
) -> Vec<reconciler::discrepancy::Discrepancy> {
    reconcile(ctx, window(started), "test", &CancellationToken::new())
        .await
        .unwrap()
        .discrepancies
        .into_iter()
        .filter(|d| d.kind == Kind::DeadLettered)
        .collect()
}

fn positions(found: &[reconciler::discrepancy::Discrepancy]) -> Vec<(i32, i64)> {
    found.iter().map(|d| (d.partition, d.offset)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_of_one_dead_letter_are_one_finding_and_are_sent_back_once() {
    let env = TestEnv::new().await.unwrap();
    let started = ledgerline_runtime::time::now();
    let p = producer(&env);
    // Poison from txn.outcomes 0:41 and 0:43 dead-lettered twice each (a stage that crashed
    // after the DLQ took it, or an audit rebuilt from the start), and 0:42 once. All on one
    // key, so one DLQ partition holds them in this order.
    let dlq_topic = env.kafka.dlq(topics::OUTCOMES);
    let source = env.topic(topics::OUTCOMES);
    let mut at = std::collections::BTreeMap::<i64, Vec<(i32, i64)>>::new();
    for source_offset in [41, 41, 42, 43, 43] {
        let sent = send(
            &p,
            &dlq_topic,
            "acc-0",
            b"not an event",
            dlq_headers(&source, source_offset),
        )
        .await;
        at.entry(source_offset).or_default().push(sent);
    }
    let ctx = context(&env).await;

    let found = dead_lettered(&ctx, started).await;
    assert_eq!(
        positions(&found),
        [at[&41][0], at[&42][0], at[&43][0]],
        "{found:#?}"
    );
    let twice = &found[0];
    assert!(
        twice.detail.contains(&format!("{source}:0:41")),
        "{}",
        twice.detail
    );
    assert!(twice.detail.contains("2 copies"), "{}", twice.detail);
    let copies: Vec<(i32, i64)> = twice.found.as_ref().unwrap()["copies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["partition"].as_i64().unwrap() as i32,
                c["offset"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(copies, at[&41]);
    assert!(found[1].found.as_ref().unwrap().get("copies").is_none());
    // The listing shows every copy; each later one names the first.
    let listed = reconciler::dlq::list(
        &ctx,
        std::slice::from_ref(&dlq_topic),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    type At = (i32, i64);
    let first_copies: Vec<(At, Option<At>)> = listed
        .iter()
        .map(|e| {
            let at = (e.dead_letter.partition, e.dead_letter.offset);
            (at, e.first_copy.map(|f| (f.partition, f.offset)))
        })
        .collect();
    assert_eq!(
        first_copies,
        [
            (at[&41][0], None),
            (at[&41][1], Some(at[&41][0])),
            (at[&42][0], None),
            (at[&43][0], None),
            (at[&43][1], Some(at[&43][0])),
        ]
    );

    // Redriving the second copy of 0:41 puts that message back: runs stop reporting it.
    let second = at[&41][1];
    let sent = redrive(&ctx, &dlq_topic, one(second)).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(positions_of(&sent), [second]);
    assert_eq!(
        positions(&dead_lettered(&ctx, started).await),
        [at[&42][0], at[&43][0]]
    );

    // `--all` sends each remaining source message once: not 0:41's first copy (settled
    // above), and only the first copy of 0:43.
    let sent = redrive(&ctx, &dlq_topic, reconciler::dlq::Selection::All).await;
    assert_eq!(positions_of(&sent), [at[&42][0], at[&43][0]]);
    assert!(dead_lettered(&ctx, started).await.is_empty());
    let redriven_to: i64 = sqlx::query_scalar("SELECT count(*) FROM dlq_redrives")
        .fetch_one(&env.pg)
        .await
        .unwrap();
    assert_eq!(redriven_to, 3, "three source messages, each sent back once");
}

/// The one dead letter at `(partition, offset)`.
fn one((partition, offset): (i32, i64)) -> reconciler::dlq::Selection {
    reconciler::dlq::Selection::One { partition, offset }
}

async fn redrive(
    ctx: &reconciler::Context,
    dlq_topic: &str,
    selection: reconciler::dlq::Selection,
) -> Vec<reconciler::dlq::Entry> {
    reconciler::dlq::redrive(ctx, dlq_topic, selection, &CancellationToken::new())
        .await
        .unwrap()
}

fn positions_of(entries: &[reconciler::dlq::Entry]) -> Vec<(i32, i64)> {
    entries
        .iter()
        .map(|e| (e.dead_letter.partition, e.dead_letter.offset))
        .collect()
}

#[tokio::test]
async fn a_quarantine_waits_for_the_relay_and_takes_the_unsent_announcement_with_the_row() {
    let env = TestEnv::new().await.unwrap();
    let p = producer(&env);
    let sent: Vec<_> = (0..3)
        .map(|i| decided(&format!("o{i}"), "acc-o", TxnType::Credit, 100 + i))
        .collect();
    for d in &sent {
        publish(&env, &p, d).await;
    }
    // Posted, not yet announced: the relay is off.
    let mut quiet = ledger_settings(&env);
    quiet.faults.relay_disabled = true;
    let ledger = start_ledger_with(quiet).await;
    ledgerline_testkit::wait::until("ledger rows", Duration::from_secs(90), || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_transactions")
            .fetch_one(&env.pg)
            .await
            .ok()?;
        (n == 3).then_some(())
    })
    .await
    .unwrap();
    ledger.stop().await;
    let id = *sent[0].transaction_id.as_uuid();
    // The row now contradicts the log; its waiting announcement would repeat the contradiction.
    tamper(
        &env,
        &format!(
            "UPDATE ledger_transactions SET amount_minor = amount_minor + 1000 \
             WHERE transaction_id = '{id}'"
        ),
    )
    .await;
    let run_id: i64 = sqlx::query_scalar(
        "INSERT INTO reconciliation_runs (window_from, window_to, trigger) \
         VALUES (now() - interval '1 hour', now(), 'test') RETURNING run_id",
    )
    .fetch_one(&env.pg)
    .await
    .unwrap();

    // A relay round in progress holds its lock: the quarantine waits for it.
    let mut round = env.pg.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ledger_writer::relay::RELAY_LOCK_KEY)
        .execute(&mut *round)
        .await
        .unwrap();
    let pool = env.pg.clone();
    let quarantine =
        tokio::spawn(async move { ledger_side::quarantine(&pool, run_id, &[id]).await });
    ledgerline_testkit::wait::until("quarantine waiting", Duration::from_secs(30), || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(&env.pg)
        .await
        .ok()?;
        (waiting == 1).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(count(&env, "SELECT count(*) FROM outbox").await, 3);
    assert_eq!(
        count(&env, "SELECT count(*) FROM ledger_transactions").await,
        3
    );
    round.commit().await.unwrap();
    quarantine.await.unwrap().unwrap();

    let left: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT transaction_id FROM outbox ORDER BY id")
        .fetch_all(&env.pg)
        .await
        .unwrap();
    assert_eq!(
        left,
        vec![
            *sent[1].transaction_id.as_uuid(),
            *sent[2].transaction_id.as_uuid()
        ]
    );
    assert_eq!(
        count(&env, "SELECT count(*) FROM ledger_quarantine").await,
        1
    );

    // The replay re-posts it from the log and announces that, once.
    let report = ledger_writer::Application::build(ledger_settings(&env))
        .await
        .unwrap()
        .replay(ReplayFrom::Offset(0), None, CancellationToken::new())
        .await
        .unwrap();
    assert_eq!((report.posted, report.already_recorded), (1, 2));
    assert_eq!(count(&env, "SELECT count(*) FROM outbox").await, 0);
    let announced = ledgerline_testkit::kafka::read_topic(
        &env.kafka,
        &env.topic(topics::POSTINGS),
        4,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let of_it: Vec<serde_json::Value> = announced
        .iter()
        .map(|r| r.json())
        .filter(|e| e["transaction_id"] == id.to_string())
        .collect();
    assert_eq!(announced.len(), 3);
    assert_eq!(of_it.len(), 1);
    assert_eq!(of_it[0]["amount_minor"], 100, "the log's amount");
}
