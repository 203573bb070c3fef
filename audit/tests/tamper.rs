//! Tampering with the stored trail is found by `verify`, at the offset where it happened.

mod support;

use audit::chain::{canonical_content, link_hash, BreakKind};
use audit::document::{message_of, Record};
use audit::verify::{Scope, VerifyReport};
use audit::Settings;
use ledgerline_contracts::events;
use ledgerline_contracts::topics;
use ledgerline_testkit::TestEnv;
use mongodb::bson::{doc, Bson, Document};
use rdkafka::message::OwnedMessage;
use std::process::Stdio;
use support::*;

/// One account's requests, recorded: (settings, topic, partition, documents in offset order).
async fn recorded_chain(env: &TestEnv, n: usize) -> (Settings, String, i32, Vec<Document>) {
    let s = settings(env);
    let txns: Vec<Txn> = (0..n)
        .map(|i| txn(&format!("t{i}"), "acc-7", 100 + i as i64))
        .collect();
    let p = producer(env);
    let mut partition = 0;
    for t in &txns {
        partition = publish(env, &p, topics::REQUESTS, &t.requested).await.0;
    }
    let running = start(s.clone()).await;
    wait_for_documents(&s, doc! {}, n as u64).await;
    running.stop().await;
    let topic = env.topic(topics::REQUESTS);
    let documents = all_documents(&s).await;
    assert_eq!(documents.len(), n);
    assert!(verify(&s, Scope::All).await.intact);
    (s, topic, partition, documents)
}

fn offset_of(d: &Document) -> i64 {
    d.get_document("source").unwrap().get_i64("offset").unwrap()
}

fn first_break(report: &VerifyReport, topic: &str, partition: i32) -> (i64, BreakKind) {
    assert!(!report.intact, "{report:#?}");
    let b = report
        .partition(topic, partition)
        .and_then(|p| p.broken.clone())
        .unwrap_or_else(|| panic!("a break in {topic}/{partition}: {report:#?}"));
    (b.offset, b.kind)
}

async fn replace(s: &Settings, d: &Document) {
    events(s)
        .await
        .replace_one(doc! { "_id": d.get("_id").unwrap() }, d.clone())
        .await
        .unwrap();
}

/// The stored message with another amount in its payload, and a document re-derived from it
/// (consistent in every derived field) linked with `hash`.
fn forged(original: &Document, hash: Option<&str>) -> Document {
    let message = message_of(original).unwrap();
    let mut event: events::TransactionRequested =
        events::decode(rdkafka::Message::payload(&message).unwrap()).unwrap();
    event.amount_minor = 1;
    let forged: OwnedMessage = message.set_payload(Some(events::encode(&event)));
    let prev = original.get_str("prev_hash").unwrap();
    let hash = hash.map_or_else(
        || link_hash(prev, &canonical_content(&forged)),
        str::to_string,
    );
    Record::from_message(&forged).document(
        prev,
        &hash,
        *original.get_datetime("recorded_at").unwrap(),
    )
}

#[tokio::test]
async fn an_edited_document_is_detected_at_its_offset() {
    let env = TestEnv::new().await.unwrap();
    let (s, topic, partition, documents) = recorded_chain(&env, 8).await;
    let target = &documents[3];
    let k = offset_of(target);
    let scope = || Scope::Partition {
        topic: topic.clone(),
        partition,
    };

    // A derived field edited (the amount in the event body): the raw message disagrees.
    let mut edited = target.clone();
    edited
        .get_document_mut("event")
        .unwrap()
        .insert("amount_minor", Bson::Int64(1));
    replace(&s, &edited).await;
    let report = verify(&s, scope()).await;
    assert_eq!(
        first_break(&report, &topic, partition),
        (k, BreakKind::ContentMismatch)
    );

    // The raw payload edited too, consistently, but not re-hashed: the hash disagrees.
    replace(&s, &forged(target, Some(target.get_str("hash").unwrap()))).await;
    let report = verify(&s, scope()).await;
    assert_eq!(
        first_break(&report, &topic, partition),
        (k, BreakKind::HashMismatch)
    );

    // Re-hashed as well: the document is self-consistent, so the next link no longer is.
    replace(&s, &forged(target, None)).await;
    let report = verify(&s, scope()).await;
    assert_eq!(
        first_break(&report, &topic, partition),
        (k + 1, BreakKind::PrevMismatch)
    );
    assert_eq!(
        report
            .partition(&topic, partition)
            .unwrap()
            .chain
            .head_offset,
        Some(k)
    );

    // Put back exactly: intact again.
    replace(&s, target).await;
    assert!(verify(&s, scope()).await.intact);
}

#[tokio::test]
async fn a_deleted_document_is_detected_at_its_offset() {
    let env = TestEnv::new().await.unwrap();
    let (s, topic, partition, documents) = recorded_chain(&env, 8).await;
    let target = &documents[5];
    events(&s)
        .await
        .delete_one(doc! { "_id": target.get("_id").unwrap() })
        .await
        .unwrap();
    let report = verify(&s, Scope::All).await;
    assert_eq!(
        first_break(&report, &topic, partition),
        (offset_of(target), BreakKind::Missing)
    );

    // Deleting the first link is found too: the chain no longer starts at genesis.
    events(&s)
        .await
        .delete_one(doc! { "_id": documents[0].get("_id").unwrap() })
        .await
        .unwrap();
    let report = verify(&s, Scope::Topic(topic.clone())).await;
    assert_eq!(
        first_break(&report, &topic, partition),
        (0, BreakKind::Missing)
    );
}

#[tokio::test]
async fn an_inserted_document_is_refused_or_detected_at_its_offset() {
    let env = TestEnv::new().await.unwrap();
    let (s, topic, partition, documents) = recorded_chain(&env, 6).await;
    let collection = events(&s).await;

    // Into the middle: every position is taken, and the source index is unique.
    let mut copy = documents[2].clone();
    copy.insert("_id", "forged-1");
    let refused = collection.insert_one(copy.clone()).await.unwrap_err();
    assert!(refused.to_string().contains("11000"), "{refused}");

    // After the head: a copied document moved to the next offset does not link.
    let head = offset_of(documents.last().unwrap());
    copy.get_document_mut("source")
        .unwrap()
        .insert("offset", head + 1);
    collection.insert_one(copy).await.unwrap();
    let report = verify(&s, Scope::All).await;
    assert_eq!(
        first_break(&report, &topic, partition),
        (head + 1, BreakKind::PrevMismatch)
    );
}

#[tokio::test]
async fn audit_verify_prints_a_json_report_and_exits_non_zero_on_a_break() {
    let env = TestEnv::new().await.unwrap();
    let (s, topic, partition, documents) = recorded_chain(&env, 4).await;
    let run = |args: Vec<String>| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_audit"));
        command
            .arg("verify")
            .args(args)
            .envs(env.service_env(&s.group_id))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        command.output()
    };
    let args = vec![
        "--topic".to_string(),
        topics::REQUESTS.to_string(),
        "--partition".to_string(),
        partition.to_string(),
    ];
    let intact = run(args.clone()).await.unwrap();
    assert_eq!(intact.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&intact.stdout).unwrap();
    assert_eq!(report["intact"], true);
    assert_eq!(report["partitions"][0]["topic"], topic.as_str());
    assert_eq!(report["partitions"][0]["links"], 4);
    assert_eq!(
        report["partitions"][0]["head_hash"],
        documents[3].get_str("hash").unwrap()
    );

    events(&s)
        .await
        .delete_one(doc! { "_id": documents[1].get("_id").unwrap() })
        .await
        .unwrap();
    let broken = run(Vec::new()).await.unwrap();
    assert_eq!(broken.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&broken.stdout).unwrap();
    assert_eq!(report["intact"], false);
    let partition_report = report["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["topic"] == topic.as_str())
        .unwrap();
    assert_eq!(partition_report["broken"]["kind"], "missing");
    assert_eq!(
        partition_report["broken"]["offset"],
        offset_of(&documents[1])
    );
}
