//! Request routing and the two API handlers.
//!
//! POST /v1/transactions: size and type checks → signature → body → rate limit → publish and
//! wait for the acknowledgement → RECEIVED in the read model → 202. Each step that fails
//! answers with its own problem and changes nothing else.

use crate::app::AppState;
use crate::metrics;
use crate::problem::Problem;
use crate::rate_limit::Admission;
use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use ledgerline_contracts::events::{self, Event, TransactionRequested, SCHEMA_VERSION};
use ledgerline_contracts::ids::{
    AccountId, EventId, IdempotencyKey, MerchantId, RequestId, TransactionId,
};
use ledgerline_contracts::request::{parse_create_transaction, CreateTransaction};
use ledgerline_contracts::signing::{
    header_names as h, verify_request, SignedRequest, SigningError,
};
use ledgerline_runtime::admin::admin_response;
use ledgerline_runtime::kafka::event_headers;
use ledgerline_runtime::status::{StatusUpdate, TransactionFields, TransactionStatus};
use std::sync::Arc;
use std::time::Instant;

const TRANSACTIONS: &str = "/v1/transactions";
const TRANSACTION_PREFIX: &str = "/v1/transactions/";
const ACCOUNT_PREFIX: &str = "/v1/accounts/";
const BALANCE_SUFFIX: &str = "/balance";

const EVENTS_SUFFIX: &str = "/events";

/// `/v1/transactions/{transaction_id}/events` → the raw transaction id.
fn events_path(path: &str) -> Option<&str> {
    path.strip_prefix(TRANSACTION_PREFIX)?
        .strip_suffix(EVENTS_SUFFIX)
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// `/v1/accounts/{account_id}/balance` → the raw account id.
fn balance_path(path: &str) -> Option<&str> {
    path.strip_prefix(ACCOUNT_PREFIX)?
        .strip_suffix(BALANCE_SUFFIX)
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// Entry point for every request on the public port.
pub async fn handle(state: Arc<AppState>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if let Some(response) = admin_response(&state.admin, &method, &path) {
        return response;
    }
    let correlation_id = correlation_id(req.headers());
    let (route, result) = match (&method, path.as_str()) {
        (&Method::POST, TRANSACTIONS) => (
            "post_transaction",
            post_transaction(&state, req, &correlation_id).await,
        ),
        (&Method::GET, p) if events_path(p).is_some() => (
            "get_events",
            get_events(&state, req, events_path(p).unwrap_or_default()).await,
        ),
        (&Method::GET, p) if p.starts_with(TRANSACTION_PREFIX) => (
            "get_transaction",
            get_transaction(&state, req, &p[TRANSACTION_PREFIX.len()..]).await,
        ),
        (&Method::GET, p) if balance_path(p).is_some() => (
            "get_balance",
            get_balance(&state, req, balance_path(p).unwrap_or_default()).await,
        ),
        (_, TRANSACTIONS) => ("other", Err(Problem::MethodNotAllowed { allow: "POST" })),
        (_, p) if p.starts_with(TRANSACTION_PREFIX) => {
            ("other", Err(Problem::MethodNotAllowed { allow: "GET" }))
        }
        _ => ("other", Err(Problem::NotFound)),
    };
    let mut response = result.unwrap_or_else(|problem| {
        metrics::rejected(problem.slug());
        problem.to_response(Some(&path))
    });
    if let Ok(value) = correlation_id.parse() {
        response.headers_mut().insert(h::X_CORRELATION_ID, value);
    }
    metrics::request_finished(route, response.status().as_u16(), started.elapsed());
    response
}

/// The caller's correlation id if it is sane (1–128 chars of `[A-Za-z0-9._:-]`), else a new one.
fn correlation_id(headers: &HeaderMap) -> String {
    headers
        .get(h::X_CORRELATION_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// An authentication header that must appear at most once and be visible ASCII.
///
/// A repeated header is refused rather than resolved: proxies and clients disagree on which
/// copy wins, and a signature must never depend on that choice.
fn auth_header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, Problem> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(SigningError::MalformedHeader(name).into());
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| SigningError::MalformedHeader(name).into())
}

/// How long a read from a store may take before the answer is a 503.
fn store_read_timeout(state: &AppState) -> std::time::Duration {
    std::time::Duration::from_millis(state.settings.http.store_read_timeout_ms)
}

/// Reads the body under the size limit; the declared length is checked before reading.
async fn read_body(
    state: &AppState,
    req: Request<Incoming>,
) -> Result<(http::request::Parts, Bytes), Problem> {
    let limit = state.settings.http.body_bytes_max;
    let declared =
        header(req.headers(), header::CONTENT_LENGTH.as_str()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Problem::PayloadTooLarge { limit });
    }
    let (parts, body) = req.into_parts();
    let timeout = std::time::Duration::from_millis(state.settings.http.request_timeout_ms);
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(Problem::RequestTimeout),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            Err(Problem::PayloadTooLarge { limit })
        }
        Ok(Err(_)) => Err(Problem::MalformedJson("the body could not be read".into())),
        Ok(Ok(collected)) => Ok((parts, collected.to_bytes())),
    }
}

fn verify(
    state: &AppState,
    parts: &http::request::Parts,
    idempotency_key: &str,
    body: &[u8],
) -> Result<MerchantId, Problem> {
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let signed = SignedRequest {
        method: parts.method.as_str(),
        path_and_query,
        merchant_id: auth_header(&parts.headers, h::X_MERCHANT_ID)?,
        timestamp: auth_header(&parts.headers, h::X_TIMESTAMP)?,
        signature: auth_header(&parts.headers, h::X_SIGNATURE)?,
        idempotency_key,
        body,
    };
    let now = ledgerline_runtime::time::now_unix();
    verify_request(
        &state.keys,
        &signed,
        now,
        state.settings.signing.max_skew_secs,
    )
    .map_err(Problem::from)
}

async fn post_transaction(
    state: &AppState,
    req: Request<Incoming>,
    correlation_id: &str,
) -> Result<Response<Full<Bytes>>, Problem> {
    let content_type = header(req.headers(), header::CONTENT_TYPE.as_str()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(Problem::UnsupportedMediaType);
    }
    let (parts, body) = read_body(state, req).await?;
    let raw_key = match auth_header(&parts.headers, h::IDEMPOTENCY_KEY) {
        Ok(Some(key)) => key,
        Ok(None) => return Err(Problem::MissingHeader(h::IDEMPOTENCY_KEY)),
        Err(_) => return Err(Problem::InvalidHeader(h::IDEMPOTENCY_KEY)),
    };
    let idempotency_key =
        IdempotencyKey::parse(raw_key).map_err(|_| Problem::InvalidHeader(h::IDEMPOTENCY_KEY))?;
    let merchant = verify(state, &parts, idempotency_key.as_str(), &body)?;
    let request = parse_create_transaction(&body)?;
    if let Admission::Limited { retry_after } =
        state.limiter.check(merchant.as_str(), Instant::now())
    {
        let secs = u32::try_from(retry_after.as_secs())
            .unwrap_or(u32::MAX)
            .max(1);
        return Err(Problem::RateLimited {
            retry_after_secs: secs,
        });
    }

    let transaction_id = TransactionId::derive(
        state.settings.signing.namespace,
        &merchant,
        &idempotency_key,
    );
    let request_id = RequestId::new_v7();
    let event = requested_event(
        &merchant,
        &idempotency_key,
        &request,
        transaction_id,
        request_id,
        correlation_id,
    );
    tracing::Span::current().record("transaction_id", tracing::field::display(transaction_id));
    let payload = events::encode(&event);
    let headers = event_headers(TransactionRequested::EVENT_TYPE, correlation_id);
    let retry_after_secs = state.settings.publish.retry_after_secs;
    state.publisher.publish(request.account_id.as_str(), &payload, headers).await.map_err(|error| {
        tracing::warn!(%error, %transaction_id, correlation_id, "request not acknowledged by Kafka; answered 503");
        Problem::Unavailable { retry_after_secs, detail: "the request could not be stored durably in time" }
    })?;

    // The request is durable; the read model is best effort here (the processor writes the
    // next state regardless), so a slow or absent Redis delays nothing beyond its timeout.
    record_received(state, &event).await;
    tracing::info!(%transaction_id, %request_id, correlation_id, merchant_id = %merchant, "accepted for processing");
    let body = serde_json::json!({
        "transaction_id": transaction_id.to_string(),
        "request_id": request_id.to_string(),
        "status": "RECEIVED",
        "correlation_id": correlation_id,
    });
    let location = format!("{TRANSACTION_PREFIX}{transaction_id}");
    Ok(json_response(StatusCode::ACCEPTED, &body, Some(&location)))
}

fn requested_event(
    merchant: &MerchantId,
    idempotency_key: &IdempotencyKey,
    request: &CreateTransaction,
    transaction_id: TransactionId,
    request_id: RequestId,
    correlation_id: &str,
) -> TransactionRequested {
    TransactionRequested {
        schema_version: SCHEMA_VERSION,
        event_id: EventId::new_v7(),
        request_id,
        transaction_id,
        merchant_id: merchant.clone(),
        account_id: request.account_id.clone(),
        idempotency_key: idempotency_key.clone(),
        txn_type: request.txn_type,
        amount_minor: request.money.minor(),
        currency: request.money.currency(),
        description: request.description.clone(),
        metadata: request.metadata.clone(),
        callback_url: request.callback_url.clone(),
        request_fingerprint: request.fingerprint(),
        correlation_id: correlation_id.to_string(),
        received_at: ledgerline_runtime::time::now(),
    }
}

async fn record_received(state: &AppState, event: &TransactionRequested) {
    let Some(store) = state.status.get() else {
        metrics::status_store_failed("write");
        return;
    };
    let update = StatusUpdate::Received {
        transaction_id: event.transaction_id.to_string(),
        merchant_id: event.merchant_id.to_string(),
        fields: TransactionFields::from_requested(event),
        at: rfc3339(event.received_at),
    };
    let timeout = std::time::Duration::from_millis(state.settings.publish.status_write_timeout_ms);
    match tokio::time::timeout(timeout, store.apply(&[update])).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            metrics::status_store_failed("write");
            tracing::warn!(%error, "status write failed; the processor will record the next state");
        }
        Err(_) => metrics::status_store_failed("write"),
    }
}

/// RFC 3339 with the crate-wide helper's format.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

async fn get_transaction(
    state: &AppState,
    req: Request<Incoming>,
    raw_id: &str,
) -> Result<Response<Full<Bytes>>, Problem> {
    let (parts, body) = read_body(state, req).await?;
    // GETs are signed with an empty Idempotency-Key line (design §4).
    let merchant = verify(state, &parts, "", &body)?;
    let transaction_id: TransactionId = raw_id.parse().map_err(|_| Problem::NotFound)?;
    let (status, source) = match live_status(state, &transaction_id).await {
        Ok(Some(status)) => (Some(status), "live"),
        // No longer (or never) in the read model: the ledger has the durable outcome of every
        // accepted transaction.
        Ok(None) => (
            ledger_status(state, &merchant, &transaction_id).await?,
            "ledger",
        ),
        // The read model is down: the ledger may still know; if not, the transaction may be
        // in flight, so the honest answer is 503, not 404.
        Err(live_problem) => match ledger_status(state, &merchant, &transaction_id).await {
            Ok(Some(found)) => (Some(found), "ledger"),
            _ => return Err(live_problem),
        },
    };
    // Another merchant's transaction is indistinguishable from a missing one.
    let status = status
        .filter(|s| s.merchant_id == merchant.as_str())
        .ok_or(Problem::NotFound)?;
    let mut body = serde_json::to_value(&status).map_err(|_| Problem::Internal)?;
    if let Some(object) = body.as_object_mut() {
        object.insert("source".into(), serde_json::Value::String(source.into()));
    }
    Ok(json_response(StatusCode::OK, &body, None))
}

/// The transaction from the Redis read model.
async fn live_status(
    state: &AppState,
    transaction_id: &TransactionId,
) -> Result<Option<TransactionStatus>, Problem> {
    let unavailable = |detail| Problem::Unavailable {
        retry_after_secs: 1,
        detail,
    };
    let Some(store) = state.status.get() else {
        metrics::status_store_failed("read");
        return Err(unavailable("the status store is unavailable"));
    };
    let timeout = store_read_timeout(state);
    match tokio::time::timeout(timeout, store.get(&transaction_id.to_string())).await {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(error)) => {
            metrics::status_store_failed("read");
            tracing::warn!(%error, "status read failed");
            Err(unavailable("the status store is unavailable"))
        }
        Err(_) => {
            metrics::status_store_failed("read");
            Err(unavailable("the status store timed out"))
        }
    }
}

/// The transaction from the PostgreSQL ledger.
async fn ledger_status(
    state: &AppState,
    merchant: &MerchantId,
    transaction_id: &TransactionId,
) -> Result<Option<TransactionStatus>, Problem> {
    let timeout = store_read_timeout(state);
    let read = state
        .ledger
        .transaction(merchant.as_str(), *transaction_id.as_uuid());
    match tokio::time::timeout(timeout, read).await {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(error)) => {
            metrics::ledger_read_failed();
            tracing::warn!(%error, "ledger read failed");
            Err(Problem::Unavailable {
                retry_after_secs: 1,
                detail: "the ledger is unavailable",
            })
        }
        Err(_) => {
            metrics::ledger_read_failed();
            Err(Problem::Unavailable {
                retry_after_secs: 1,
                detail: "the ledger timed out",
            })
        }
    }
}

async fn get_events(
    state: &AppState,
    req: Request<Incoming>,
    raw_id: &str,
) -> Result<Response<Full<Bytes>>, Problem> {
    let (parts, body) = read_body(state, req).await?;
    let merchant = verify(state, &parts, "", &body)?;
    let transaction_id: TransactionId = raw_id.parse().map_err(|_| Problem::NotFound)?;
    let unavailable = |detail| Problem::Unavailable {
        retry_after_secs: 1,
        detail,
    };
    let timeout = store_read_timeout(state);
    let id = transaction_id.to_string();
    let read = state.audit.events(merchant.as_str(), &id);
    let events = match tokio::time::timeout(timeout, read).await {
        Ok(Ok(events)) => events,
        Ok(Err(error)) => {
            metrics::audit_read_failed();
            tracing::warn!(%error, "audit read failed");
            return Err(unavailable("the audit trail is unavailable"));
        }
        Err(_) => {
            metrics::audit_read_failed();
            return Err(unavailable("the audit trail timed out"));
        }
    };
    // Unknown and another merchant's transaction look the same.
    if events.is_empty() {
        return Err(Problem::NotFound);
    }
    let body = serde_json::json!({
        "transaction_id": transaction_id.to_string(),
        "events": events,
    });
    Ok(json_response(StatusCode::OK, &body, None))
}

async fn get_balance(
    state: &AppState,
    req: Request<Incoming>,
    raw_account: &str,
) -> Result<Response<Full<Bytes>>, Problem> {
    let (parts, body) = read_body(state, req).await?;
    let merchant = verify(state, &parts, "", &body)?;
    let account = AccountId::parse(raw_account).map_err(|_| Problem::NotFound)?;
    let timeout = store_read_timeout(state);
    let balances = match tokio::time::timeout(
        timeout,
        state.ledger.balances(merchant.as_str(), account.as_str()),
    )
    .await
    {
        Ok(Ok(balances)) => balances,
        Ok(Err(error)) => {
            metrics::ledger_read_failed();
            tracing::warn!(%error, "balance read failed");
            return Err(Problem::Unavailable {
                retry_after_secs: 1,
                detail: "the ledger is unavailable",
            });
        }
        Err(_) => {
            metrics::ledger_read_failed();
            return Err(Problem::Unavailable {
                retry_after_secs: 1,
                detail: "the ledger timed out",
            });
        }
    };
    let body = serde_json::json!({
        "account_id": account.as_str(),
        "balances": balances,
    });
    Ok(json_response(StatusCode::OK, &body, None))
}

fn json_response(
    status: StatusCode,
    body: &serde_json::Value,
    location: Option<&str>,
) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store");
    if let Some(location) = location {
        builder = builder.header(header::LOCATION, location);
    }
    builder
        .body(Full::new(Bytes::from(
            serde_json::to_vec(body).unwrap_or_default(),
        )))
        .expect("static response parts are valid")
}
