//! The servers a test (or a fault-injection run) owns: each keeps what it acknowledged across
//! a kill and a restart, is unreachable while down, and can be frozen and thawed.

use ledgerline_testkit::mongo_server::OwnedMongo;
use ledgerline_testkit::postgres_server::OwnedPostgres;
use ledgerline_testkit::redis_server::OwnedRedis;
use mongodb::bson::doc;
use nix::sys::signal::Signal;
use sqlx::{Connection, Executor, PgConnection};
use std::time::Duration;

#[tokio::test]
async fn an_owned_postgres_keeps_committed_rows_across_a_kill_and_refuses_connections_while_down() {
    let mut pg = OwnedPostgres::start().await.unwrap();
    let mut conn = PgConnection::connect(&pg.admin_url()).await.unwrap();
    conn.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
        .await
        .unwrap();
    conn.close().await.unwrap();

    pg.kill();
    assert!(PgConnection::connect(&pg.admin_url()).await.is_err());
    pg.restart().await.unwrap();
    let mut conn = PgConnection::connect(&pg.admin_url()).await.unwrap();
    let n: i32 = sqlx::query_scalar("SELECT n FROM kept")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 42);
    conn.close().await.unwrap();

    pg.stop().await;
    assert!(PgConnection::connect(&pg.admin_url()).await.is_err());
    pg.restart().await.unwrap();
    assert!(PgConnection::connect(&pg.admin_url()).await.is_ok());
}

#[tokio::test]
async fn an_owned_mongo_keeps_a_journaled_document_across_a_kill() {
    let mut mongo = OwnedMongo::start().await.unwrap();
    let client = mongodb::Client::with_uri_str(mongo.uri()).await.unwrap();
    let events = client
        .database("t")
        .collection::<mongodb::bson::Document>("e");
    // Journaled, as the audit writes: an unjournaled write may be lost to a kill.
    let journaled = mongodb::options::WriteConcern::builder()
        .journal(true)
        .build();
    events
        .insert_one(doc! { "_id": "kept" })
        .write_concern(journaled)
        .await
        .unwrap();

    mongo.kill();
    mongo.restart().await.unwrap();
    let client = mongodb::Client::with_uri_str(mongo.uri()).await.unwrap();
    let found = client
        .database("t")
        .collection::<mongodb::bson::Document>("e")
        .find_one(doc! { "_id": "kept" })
        .await
        .unwrap();
    assert!(found.is_some());
}

async fn ping(url: &str) -> Option<String> {
    let client = redis::Client::open(url).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    redis::cmd("PING").query_async(&mut conn).await.ok()
}

async fn get(url: &str, key: &str) -> Option<String> {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn an_owned_redis_restarted_keeps_its_keys_and_restarted_empty_loses_them() {
    let mut redis = OwnedRedis::start().await.unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();

    redis.kill();
    redis.restart().await.unwrap();
    assert_eq!(get(&redis.url(), "k").await.as_deref(), Some("v"));

    redis.restart_empty().await.unwrap();
    assert_eq!(get(&redis.url(), "k").await, None);
}

#[tokio::test]
async fn a_frozen_redis_does_not_answer_until_it_is_thawed() {
    let redis = OwnedRedis::start().await.unwrap();
    redis.signal(Signal::SIGSTOP).unwrap();
    let frozen = tokio::time::timeout(Duration::from_millis(500), ping(&redis.url())).await;
    assert!(frozen.is_err(), "no answer while stopped");
    redis.signal(Signal::SIGCONT).unwrap();
    assert_eq!(ping(&redis.url()).await.as_deref(), Some("PONG"));
}
