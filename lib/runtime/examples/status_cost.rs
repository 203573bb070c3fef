//! What the status read model costs Redis: its own CPU time (`INFO cpu`) per transaction for
//! a whole lifecycle (RECEIVED from ingress, the decision and the attempt from the processor,
//! POSTED from the ledger-writer), written in batches through `StatusStore::apply` as the
//! services write it. Redis's clock, not the wall clock, so the figure does not depend on
//! what else the cores are doing; run it built at two commits to compare layouts.
//!
//! A report, not a test; it writes under its own key prefix and removes its keys.
//!
//! ```sh
//! cargo run --release -p ledgerline-runtime --example status_cost -- [transactions] [batch]
//! ```

use ledgerline_runtime::redis_client::{server_cpu_secs, RedisSettings};
use ledgerline_runtime::status::{
    Attempt, State, StatusSettings, StatusStore, StatusUpdate, TransactionFields,
};
use redis::aio::ConnectionManager;
use std::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let transactions: usize = args.next().map_or(Ok(100_000), |a| a.parse())?;
    let batch: usize = args.next().map_or(Ok(1_000), |a| a.parse())?;
    let settings = RedisSettings {
        url: ledgerline_runtime::secret::Secret::new(
            std::env::var("LEDGERLINE_TEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into()),
        ),
        ..RedisSettings::default()
    };
    let mut conn = settings.connect().await?;
    let prefix = format!("status_cost:{}:", std::process::id());
    let store = StatusStore::new(conn.clone(), &prefix, &StatusSettings::default());
    println!("{transactions} transactions, {batch} updates per round trip\n");

    let (cpu, wall) = measure(conn.clone(), async {
        for stage in stages(transactions) {
            for chunk in stage.chunks(batch) {
                store.apply(chunk).await?;
            }
        }
        anyhow::Ok(())
    })
    .await?;
    report("pipelined HSETNX (the read model)", transactions, cpu, wall);
    unlink(&mut conn, &prefix).await?;

    Ok(())
}

/// The updates of each service, in the order the pipeline makes them.
fn stages(transactions: usize) -> [Vec<StatusUpdate>; 3] {
    let at = "2026-12-04T21:30:00.123456Z".to_string();
    let fields = |i: usize| TransactionFields {
        request_id: format!("0192a0f0-aaaa-7bbb-8ccc-{i:012}"),
        account_id: format!("acc-{:06}", i % 10_000),
        amount: "10.00".into(),
        currency: "EUR".into(),
        txn_type: "credit".into(),
        description: None,
        metadata: Default::default(),
        correlation_id: format!("corr-{i}"),
    };
    let id = |i: usize| format!("txn-{i:012}");
    let received = (0..transactions)
        .map(|i| StatusUpdate::Received {
            transaction_id: id(i),
            merchant_id: "m-1".into(),
            fields: fields(i),
            at: at.clone(),
        })
        .collect();
    let decided = (0..transactions)
        .flat_map(|i| {
            [
                StatusUpdate::Decided {
                    transaction_id: id(i),
                    merchant_id: "m-1".into(),
                    fields: fields(i),
                    state: State::Accepted,
                    reason_code: None,
                    at: at.clone(),
                },
                StatusUpdate::Attempt {
                    transaction_id: id(i),
                    attempt: Attempt {
                        request_id: fields(i).request_id,
                        decision: State::Accepted,
                        reason_code: None,
                        at: at.clone(),
                    },
                },
            ]
        })
        .collect();
    let settled = (0..transactions)
        .map(|i| StatusUpdate::Settled {
            transaction_id: id(i),
            state: State::Posted,
            reason_code: None,
            balance_after: Some("10.00".into()),
            at: at.clone(),
        })
        .collect();
    [received, decided, settled]
}

/// Redis's own CPU seconds (user + system) and the wall time spent on `work`.
async fn measure(
    mut conn: ConnectionManager,
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<(f64, f64)> {
    let before = server_cpu_secs(&mut conn).await?;
    let started = Instant::now();
    work.await?;
    let wall = started.elapsed().as_secs_f64();
    Ok((server_cpu_secs(&mut conn).await? - before, wall))
}

fn report(what: &str, transactions: usize, cpu: f64, wall: f64) {
    println!(
        "{what:<36} Redis CPU {cpu:>6.2} s = {:>5.1} µs per transaction; wall {wall:>6.2} s",
        cpu * 1e6 / transactions as f64
    );
}

async fn unlink(conn: &mut ConnectionManager, prefix: &str) -> anyhow::Result<()> {
    let keys: Vec<String> = {
        let mut iter = redis::cmd("SCAN")
            .cursor_arg(0)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(10_000)
            .clone()
            .iter_async::<String>(conn)
            .await?;
        let mut keys = Vec::new();
        while let Some(key) = iter.next_item().await {
            keys.push(key);
        }
        keys
    };
    for chunk in keys.chunks(1_000) {
        redis::cmd("UNLINK")
            .arg(chunk)
            .query_async::<()>(&mut conn.clone())
            .await?;
    }
    Ok(())
}
