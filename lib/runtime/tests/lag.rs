//! The lag reporter's reading against a broker the test owns, killed and restarted: lags are
//! reported only when the broker answered for every assigned partition, so a lost broker
//! leaves the refresh timestamp behind instead of refreshing stale figures.

use ledgerline_runtime::consume::partition_lags;
use ledgerline_testkit::broker::OwnedBroker;
use ledgerline_testkit::kafka::{own_topic, produce};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

async fn lags(consumer: &Arc<StreamConsumer>) -> Option<Vec<((String, i32), i64)>> {
    let consumer = consumer.clone();
    tokio::task::spawn_blocking(move || partition_lags(&consumer))
        .await
        .unwrap()
}

#[tokio::test]
async fn lags_are_read_only_while_the_broker_answers_for_every_assigned_partition() {
    let mut broker = OwnedBroker::start().await.unwrap();
    let (settings, topic) = own_topic(broker.address(), 2).await.unwrap();
    let producer = settings.producer("lag-test").unwrap();
    let mut partitions = std::collections::BTreeSet::new();
    for i in 0..3 {
        let (partition, _) = produce(&producer, &topic, "k", format!("m{i}").as_bytes(), &[])
            .await
            .unwrap();
        partitions.insert(partition);
    }
    // One key, one partition: three messages on it, none on the other.
    let [busy] = partitions.into_iter().collect::<Vec<_>>()[..] else {
        panic!("one key went to several partitions");
    };
    // The busy partition read up to its first message; the other assigned, nothing consumed.
    let reader = Arc::new(settings.reader("lag-test").unwrap());
    let mut assignment = TopicPartitionList::new();
    for partition in 0..2 {
        assignment
            .add_partition_offset(&topic, partition, Offset::Beginning)
            .unwrap();
    }
    reader.assign(&assignment).unwrap();
    let first = tokio::time::timeout(WAIT, reader.recv())
        .await
        .expect("the first message arrives")
        .unwrap();
    assert_eq!((first.partition(), first.offset()), (busy, 0));
    let expected = vec![((topic.clone(), busy), 2)];
    assert_eq!(lags(&reader).await, Some(expected.clone()));

    broker.kill();
    assert_eq!(lags(&reader).await, None, "a lost broker refreshes nothing");

    broker.restart().await.unwrap();
    let back = ledgerline_testkit::wait::until("lags after the restart", WAIT, || async {
        lags(&reader).await
    })
    .await
    .unwrap();
    assert_eq!(back, expected);
}
