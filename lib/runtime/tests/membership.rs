//! Static group membership against the shared broker: a replica that comes back with its
//! `kafka.group_instance_id` replaces its old self in the group at once, where a new dynamic
//! member waits for the old one to rejoin or time out.

use ledgerline_runtime::kafka::KafkaSettings;
use ledgerline_testkit::env::shared_brokers;
use ledgerline_testkit::kafka::own_topic;
use rdkafka::consumer::{Consumer, StreamConsumer};
use std::time::Duration;

/// Far below what a dynamic member would wait here: a rebalance waits for every known member
/// to rejoin, up to `kafka.max_poll_interval_ms` (300 s) for one that stopped polling.
const WAIT: Duration = Duration::from_secs(60);

async fn assigned(consumer: &StreamConsumer) -> usize {
    ledgerline_testkit::wait::until("an assignment", WAIT, || async {
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
        let n = consumer.assignment().ok()?.count();
        (n > 0).then_some(n)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_replica_back_with_its_instance_id_takes_its_partitions_without_waiting_for_its_old_self()
{
    let (settings, topic) = own_topic(shared_brokers(), 3).await.unwrap();
    let settings = KafkaSettings {
        group_instance_id: Some("replica-0".into()),
        ..settings
    };
    let group = format!("{}group", settings.topic_prefix);

    // The old replica: a member with all three partitions, then hung (it heartbeats from
    // librdkafka's thread but never polls again, so it cannot take part in a rebalance).
    let old = settings.consumer("membership-test", &group).unwrap();
    old.subscribe(&[&topic]).unwrap();
    assert_eq!(assigned(&old).await, 3);

    // Its replacement, with the same instance id, gets the partitions without a rebalance.
    let new = settings.consumer("membership-test", &group).unwrap();
    new.subscribe(&[&topic]).unwrap();
    assert_eq!(assigned(&new).await, 3);
    drop(old);
}
