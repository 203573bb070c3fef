//! The three downstream stages (processor, ledger-writer, audit) in-process, on a test app's
//! resources, so a transaction travels the whole pipeline.

use super::TestApp;
use tokio_util::sync::CancellationToken;

pub struct Downstream {
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

pub async fn start_downstream(app: &TestApp) -> Downstream {
    let env = &app.env;
    let shutdown = CancellationToken::new();
    let mut kafka = env.kafka.clone();
    kafka.create_topics = false;
    let processor = processor::Application::build(processor::Settings {
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        kafka: kafka.clone(),
        redis: env.redis.clone(),
        group_id: format!("p-{}", env.id),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut ledger_settings = ledger_writer::Settings {
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        kafka: kafka.clone(),
        redis: env.redis.clone(),
        postgres: env.postgres.clone(),
        group_id: format!("l-{}", env.id),
        ..Default::default()
    };
    ledger_settings.relay.poll_interval_ms = 50;
    let writer = ledger_writer::Application::build(ledger_settings)
        .await
        .unwrap();
    let audit = audit::Application::build(audit::Settings {
        admin_addr: "127.0.0.1:0".parse().unwrap(),
        kafka,
        mongo: env.mongo.clone(),
        group_id: format!("a-{}", env.id),
        ..Default::default()
    })
    .await
    .unwrap();
    let (a, b, c) = (shutdown.clone(), shutdown.clone(), shutdown.clone());
    let tasks = vec![
        tokio::spawn(async move { processor.run_until_stopped(a).await.unwrap() }),
        tokio::spawn(async move { writer.run_until_stopped(b).await.unwrap() }),
        tokio::spawn(async move { audit.run_until_stopped(c).await.unwrap() }),
    ];
    Downstream { shutdown, tasks }
}

impl Downstream {
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            ledgerline_testkit::wait::stopped("a downstream stage", t).await;
        }
    }
}
