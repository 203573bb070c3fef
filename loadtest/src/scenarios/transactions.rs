//! The bodies of the goose transactions. Each user keeps its own seeded generator and key
//! minter in goose's session data, so users never contend and a seed repeats a run.

use goose::goose::{GooseMethod, GooseRequest, GooseUser, TransactionError};
use goose::metrics::GooseRequestMetric;
use std::sync::Arc;

use super::{bump, Context};
use crate::record::{self, Accepted, Role};
use crate::signer::{self, BadAuth, Signed, TRANSACTIONS_PATH};
use crate::workload::{Generator, KeyMinter, TxnSpec};

type TxResult = Result<(), Box<TransactionError>>;

/// Which transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Submit,
    RetryStorm,
    BadAuth,
    StatusPoll,
}

impl Op {
    pub(super) fn name(&self) -> &'static str {
        match self {
            Op::Submit => "submit",
            Op::RetryStorm => "retry-storm",
            Op::BadAuth => "bad-auth",
            Op::StatusPoll => "status-poll",
        }
    }
}

/// Goose request names: one line per kind of request in goose's tables, never per id.
const POST_NAME: &str = "/v1/transactions";
const RETRY_NAME: &str = "/v1/transactions (retry)";
const CONFLICT_NAME: &str = "/v1/transactions (conflict)";
const STATUS_NAME: &str = "/v1/transactions/{id}";

/// A user's own state.
#[derive(Debug, Clone)]
struct UserState {
    generator: Generator,
    keys: KeyMinter,
    bad_auth_next: usize,
}

fn state<'u>(ctx: &Context, user: &'u mut GooseUser) -> &'u mut UserState {
    if user.get_session_data::<UserState>().is_none() {
        let stream = user.weighted_users_index as u64;
        user.set_session_data(UserState {
            generator: Generator::new(Arc::clone(&ctx.settings.workload), stream),
            keys: KeyMinter::new(&ctx.run_id, stream),
            bad_auth_next: 0,
        });
    }
    user.get_session_data_mut::<UserState>()
        .expect("the session data was set just above")
}

/// One answered (or failed) request.
struct Exchange {
    metric: GooseRequestMetric,
    status: Option<u16>,
    body: String,
}

async fn send(
    user: &mut GooseUser,
    method: GooseMethod,
    path: &str,
    name: &str,
    signed: Signed,
    expect: Option<u16>,
) -> Result<Exchange, Box<TransactionError>> {
    let mut builder = user.get_request_builder(&method, path)?;
    for (header, value) in &signed.headers {
        builder = builder.header(*header, value.as_str());
    }
    if method == GooseMethod::Post {
        builder = builder.body(signed.body);
    }
    let mut request = GooseRequest::builder()
        .method(method)
        .path(path)
        .name(name)
        .set_request_builder(builder);
    if let Some(code) = expect {
        request = request.expect_status_code(code);
    }
    let goose = user.request(request.build()).await?;
    let (status, body) = match goose.response {
        Ok(response) => {
            let status = response.status().as_u16();
            (Some(status), response.text().await.unwrap_or_default())
        }
        Err(_) => (None, String::new()),
    };
    Ok(Exchange {
        metric: goose.request,
        status,
        body,
    })
}

pub(super) async fn run(ctx: &Context, op: Op, user: &mut GooseUser) -> TxResult {
    match op {
        Op::Submit => submit(ctx, user).await.map(|_| ()),
        Op::RetryStorm => retry_storm(ctx, user).await,
        Op::BadAuth => bad_auth(ctx, user).await,
        Op::StatusPoll => status_poll(ctx, user).await,
    }
}

/// A new transaction; its id when it was accepted.
async fn submit(
    ctx: &Context,
    user: &mut GooseUser,
) -> Result<Option<(String, String, TxnSpec)>, Box<TransactionError>> {
    let (key, spec) = {
        let s = state(ctx, user);
        (s.keys.next_key(), s.generator.next_spec())
    };
    let id = post(ctx, user, &key, &spec, Role::Original, POST_NAME).await?;
    Ok(id.map(|id| (id, key, spec)))
}

/// POSTs `spec` under `key`, expecting a 202; records and returns the transaction id.
async fn post(
    ctx: &Context,
    user: &mut GooseUser,
    key: &str,
    spec: &TxnSpec,
    role: Role,
    name: &str,
) -> Result<Option<String>, Box<TransactionError>> {
    let signed = signer::post(
        &ctx.settings.merchant,
        key,
        spec.body(),
        ledgerline_runtime::time::now_unix(),
    );
    let exchange = send(
        user,
        GooseMethod::Post,
        TRANSACTIONS_PATH,
        name,
        signed,
        Some(202),
    )
    .await?;
    let c = &ctx.counters;
    match exchange.status {
        Some(202) => {
            bump(&c.accepted);
            let Some(id) = crate::sweep::generator::transaction_id(exchange.body.as_bytes()) else {
                let mut metric = exchange.metric;
                user.set_failure("202 without a transaction_id", &mut metric, None, None)?;
                return Ok(None);
            };
            if let Some(recorder) = &ctx.recorder {
                recorder.record(&Accepted {
                    transaction_id: id.clone(),
                    merchant_id: ctx.settings.merchant.id.to_string(),
                    idempotency_key: key.to_string(),
                    role,
                    spec: spec.clone(),
                    accepted_at_ms: record::now_ms(),
                });
            }
            Ok(Some(id))
        }
        Some(429) => {
            bump(&c.rate_limited);
            Ok(None)
        }
        Some(503) => {
            bump(&c.unavailable);
            Ok(None)
        }
        Some(_) => {
            bump(&c.other_status);
            Ok(None)
        }
        None => {
            bump(&c.transport_errors);
            Ok(None)
        }
    }
}

async fn retry_storm(ctx: &Context, user: &mut GooseUser) -> TxResult {
    let Some((id, key, spec)) = submit(ctx, user).await? else {
        return Ok(());
    };
    let (roll, conflict) = {
        let s = state(ctx, user);
        let conflict = s.generator.conflicting(&spec);
        (s.generator.percent(), conflict)
    };
    let settings = &ctx.settings;
    let (role, body, name) = if roll < settings.retry_percent {
        (Role::Retry, spec, RETRY_NAME)
    } else if roll < settings.retry_percent + settings.conflict_percent {
        (Role::Conflict, conflict, CONFLICT_NAME)
    } else {
        return Ok(());
    };
    // Both answer 202 with the original's id (a retry is recognised by its key at the edge);
    // the processor then decides DUPLICATE or IDEMPOTENCY_CONFLICT, which `verify` checks.
    let Some(again) = post(ctx, user, &key, &body, role, name).await? else {
        return Ok(());
    };
    match role {
        Role::Retry => bump(&ctx.counters.retries_sent),
        _ => bump(&ctx.counters.conflicts_sent),
    }
    if again != id {
        bump(&ctx.counters.retry_other_transaction);
        return Err(Box::new(TransactionError::Custom(format!(
            "a {role:?} under key {key} answered transaction {again}, the original {id}"
        ))));
    }
    Ok(())
}

async fn bad_auth(ctx: &Context, user: &mut GooseUser) -> TxResult {
    let (variant, key, spec) = {
        let s = state(ctx, user);
        let variant = BadAuth::ALL[s.bad_auth_next % BadAuth::ALL.len()];
        s.bad_auth_next += 1;
        (variant, s.keys.next_key(), s.generator.next_spec())
    };
    let signed = variant.request(
        &ctx.settings.merchant,
        &key,
        spec.body(),
        ledgerline_runtime::time::now_unix(),
    );
    let name = format!("/v1/transactions (bad-auth: {})", variant.name());
    let mut exchange = send(
        user,
        GooseMethod::Post,
        TRANSACTIONS_PATH,
        &name,
        signed,
        None,
    )
    .await?;
    let c = &ctx.counters;
    match exchange.status {
        Some(400 | 401) => {
            bump(&c.bad_auth_refused);
            // goose counts any non-2xx as a failure; a refusal is what this scenario wants.
            user.set_success(&mut exchange.metric)
        }
        other => {
            bump(&c.bad_auth_not_refused);
            if other == Some(202) {
                bump(&c.bad_auth_accepted);
            }
            let tag = format!(
                "bad-auth {} answered {}",
                variant.name(),
                other.map_or("nothing".to_string(), |s| s.to_string())
            );
            user.set_failure(&tag, &mut exchange.metric, None, Some(&exchange.body))
        }
    }
}

async fn status_poll(ctx: &Context, user: &mut GooseUser) -> TxResult {
    let Some((id, _, _)) = submit(ctx, user).await? else {
        return Ok(());
    };
    let path = format!("/v1/transactions/{id}");
    let c = &ctx.counters;
    for _ in 0..ctx.settings.polls_max {
        tokio::time::sleep(ctx.settings.poll_interval).await;
        let signed = signer::get(
            &ctx.settings.merchant,
            &path,
            ledgerline_runtime::time::now_unix(),
        );
        let mut exchange = send(user, GooseMethod::Get, &path, STATUS_NAME, signed, None).await?;
        bump(&c.status_reads);
        match exchange.status {
            Some(200) => {
                let state = serde_json::from_str::<serde_json::Value>(&exchange.body)
                    .ok()
                    .and_then(|v| v.get("state").and_then(|s| s.as_str()).map(String::from))
                    .unwrap_or_default();
                let terminal = match state.as_str() {
                    "POSTED" => Some(&c.polled_posted),
                    "DECLINED" => Some(&c.polled_declined),
                    "REJECTED" | "FAILED" => Some(&c.polled_rejected),
                    _ => None,
                };
                if let Some(counter) = terminal {
                    bump(counter);
                    bump(&c.polled_terminal);
                    return Ok(());
                }
            }
            // Not visible yet (the RECEIVED write is best effort) or the read model is briefly
            // unavailable: both are "try again", not failures of the read.
            Some(404 | 503) => {
                user.set_success(&mut exchange.metric)?;
            }
            _ => {}
        }
    }
    bump(&c.polled_gave_up);
    Err(Box::new(TransactionError::Custom(format!(
        "transaction {id} not terminal after {} status reads",
        ctx.settings.polls_max
    ))))
}
