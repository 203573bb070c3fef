//! RFC 9457 problem details: every client error has a stable `type`; unexpected failures are an
//! opaque 500 whose cause is logged once where it happened.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::Full;
use ledgerline_contracts::request::RequestError;
use ledgerline_contracts::signing::SigningError;
use serde::Serialize;

/// Base of every problem `type`; the path segment is stable and documented in
/// `docs/openapi.yaml`.
pub const TYPE_BASE: &str = "https://ledgerline.dev/problems/";

/// A client-visible error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// 400: the body is not JSON or not an object.
    MalformedJson(String),
    /// 400: a required body field is absent.
    MissingField(&'static str),
    /// 400: a body field is not allowed.
    UnknownField(String),
    /// 400: a body field has the wrong type or format.
    InvalidField { field: &'static str, detail: String },
    /// 400: a required header is absent (non-authentication headers).
    MissingHeader(&'static str),
    /// 400: a header is present but malformed (non-authentication headers).
    InvalidHeader(&'static str),
    /// 401: an authentication header is missing.
    AuthenticationRequired(&'static str),
    /// 401: an authentication header is malformed.
    MalformedAuthentication(&'static str),
    /// 401: `X-Timestamp` is outside the accepted window.
    StaleTimestamp,
    /// 401: unknown merchant or key, or the signature does not match — deliberately one answer.
    InvalidSignature,
    /// 404: no such resource for this merchant.
    NotFound,
    /// 408: the body did not arrive within `http.request_timeout_ms`.
    RequestTimeout,
    /// 405: `allow` is what the path defines (the `Allow` header).
    MethodNotAllowed { allow: &'static str },
    /// 413.
    PayloadTooLarge { limit: usize },
    /// 415.
    UnsupportedMediaType,
    /// 422: well-formed but semantically invalid (amount, currency).
    Unprocessable {
        field: &'static str,
        reason_code: &'static str,
        detail: String,
    },
    /// 429.
    RateLimited { retry_after_secs: u32 },
    /// 503: Kafka (or another dependency) cannot take the request in time. Safe to retry with
    /// the same Idempotency-Key.
    Unavailable {
        retry_after_secs: u32,
        detail: &'static str,
    },
    /// 500: cause logged where it happened, never shown.
    Internal,
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<&'a str>,
}

impl Problem {
    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        use Problem::*;
        match self {
            MalformedJson(_)
            | MissingField(_)
            | UnknownField(_)
            | InvalidField { .. }
            | MissingHeader(_)
            | InvalidHeader(_) => StatusCode::BAD_REQUEST,
            AuthenticationRequired(_)
            | MalformedAuthentication(_)
            | StaleTimestamp
            | InvalidSignature => StatusCode::UNAUTHORIZED,
            NotFound => StatusCode::NOT_FOUND,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable slug of `type` (also the `reason` label of the rejection metric).
    pub fn slug(&self) -> &'static str {
        use Problem::*;
        match self {
            MalformedJson(_) => "malformed-json",
            MissingField(_) => "missing-field",
            UnknownField(_) => "unknown-field",
            InvalidField { .. } => "invalid-field",
            MissingHeader(_) => "missing-header",
            InvalidHeader(_) => "invalid-header",
            AuthenticationRequired(_) => "authentication-required",
            MalformedAuthentication(_) => "malformed-authentication",
            StaleTimestamp => "stale-timestamp",
            InvalidSignature => "invalid-signature",
            NotFound => "not-found",
            RequestTimeout => "request-timeout",
            MethodNotAllowed { .. } => "method-not-allowed",
            PayloadTooLarge { .. } => "payload-too-large",
            UnsupportedMediaType => "unsupported-media-type",
            Unprocessable { .. } => "unprocessable-amount-or-currency",
            RateLimited { .. } => "rate-limited",
            Unavailable { .. } => "service-unavailable",
            Internal => "internal-error",
        }
    }

    fn title(&self) -> &'static str {
        use Problem::*;
        match self {
            MalformedJson(_) => "Malformed JSON body",
            MissingField(_) => "Missing field",
            UnknownField(_) => "Unknown field",
            InvalidField { .. } => "Invalid field",
            MissingHeader(_) => "Missing header",
            InvalidHeader(_) => "Invalid header",
            AuthenticationRequired(_) => "Authentication required",
            MalformedAuthentication(_) => "Malformed authentication header",
            StaleTimestamp => "Timestamp outside the accepted window",
            InvalidSignature => "Invalid signature",
            NotFound => "Not found",
            RequestTimeout => "Request timeout",
            MethodNotAllowed { .. } => "Method not allowed",
            PayloadTooLarge { .. } => "Payload too large",
            UnsupportedMediaType => "Unsupported media type",
            Unprocessable { .. } => "Unprocessable transaction",
            RateLimited { .. } => "Rate limit exceeded",
            Unavailable { .. } => "Service temporarily unavailable",
            Internal => "Internal error",
        }
    }

    fn detail(&self) -> String {
        use Problem::*;
        match self {
            MalformedJson(why) => format!("the body is not a valid JSON object: {why}"),
            MissingField(f) => format!("field `{f}` is required"),
            UnknownField(f) => format!("field `{f}` is not allowed"),
            InvalidField { field, detail } => format!("field `{field}`: {detail}"),
            MissingHeader(h) => format!("header `{h}` is required"),
            InvalidHeader(h) => format!("header `{h}` is malformed"),
            AuthenticationRequired(h) => format!("header `{h}` is required"),
            MalformedAuthentication(h) => format!("header `{h}` is malformed"),
            StaleTimestamp => "X-Timestamp is too far from the server's clock".into(),
            InvalidSignature => "the request signature could not be verified".into(),
            NotFound => "no such resource".into(),
            RequestTimeout => "the request body did not arrive in time".into(),
            MethodNotAllowed { .. } => "method not allowed on this resource".into(),
            PayloadTooLarge { limit } => format!("the body exceeds {limit} bytes"),
            UnsupportedMediaType => "Content-Type must be application/json".into(),
            Unprocessable { field, detail, .. } => format!("field `{field}`: {detail}"),
            RateLimited { .. } => "too many requests for this merchant; retry later".into(),
            Unavailable { detail, .. } => format!(
                "{detail}; retry with the same Idempotency-Key (a retry never applies twice)"
            ),
            Internal => "an unexpected error occurred".into(),
        }
    }

    /// The problem as an HTTP response.
    pub fn to_response(&self, instance: Option<&str>) -> Response<Full<Bytes>> {
        let (field, reason_code) = match self {
            Problem::MissingField(f) | Problem::InvalidField { field: f, .. } => (Some(*f), None),
            Problem::Unprocessable {
                field, reason_code, ..
            } => (Some(*field), Some(*reason_code)),
            Problem::AuthenticationRequired(_) => (None, Some("SIGNATURE_HEADER_MISSING")),
            Problem::MalformedAuthentication(_) => (None, Some("SIGNATURE_HEADER_MALFORMED")),
            Problem::StaleTimestamp => (None, Some("SIGNATURE_TIMESTAMP_STALE")),
            Problem::InvalidSignature => (None, Some("SIGNATURE_INVALID")),
            _ => (None, None),
        };
        let body = Body {
            kind: format!("{TYPE_BASE}{}", self.slug()),
            title: self.title(),
            status: self.status().as_u16(),
            detail: self.detail(),
            field,
            reason_code,
            instance,
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut builder = Response::builder()
            .status(self.status())
            .header(header::CONTENT_TYPE, "application/problem+json")
            .header(header::CACHE_CONTROL, "no-store");
        match self {
            Problem::RateLimited { retry_after_secs }
            | Problem::Unavailable {
                retry_after_secs, ..
            } => {
                builder = builder.header(header::RETRY_AFTER, retry_after_secs.to_string());
            }
            Problem::MethodNotAllowed { allow } => builder = builder.header(header::ALLOW, *allow),
            _ => {}
        }
        builder
            .body(Full::new(Bytes::from(json)))
            .expect("static response parts are valid")
    }
}

impl From<SigningError> for Problem {
    fn from(e: SigningError) -> Self {
        match e {
            SigningError::MissingHeader(h) => Problem::AuthenticationRequired(h),
            SigningError::MalformedHeader(h) => Problem::MalformedAuthentication(h),
            SigningError::StaleTimestamp => Problem::StaleTimestamp,
            // One answer for both: telling them apart would let a caller probe which merchant
            // and key ids exist.
            SigningError::UnknownKey | SigningError::BadSignature => Problem::InvalidSignature,
        }
    }
}

impl From<RequestError> for Problem {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::MalformedJson(why) => Problem::MalformedJson(why),
            RequestError::MissingField(f) => Problem::MissingField(f),
            RequestError::UnknownField(f) => Problem::UnknownField(f),
            RequestError::InvalidField { field, detail } => Problem::InvalidField { field, detail },
            RequestError::Unprocessable { field, reason } => Problem::Unprocessable {
                field,
                reason_code: reason.reason_code(),
                detail: reason.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_bad_signatures_look_the_same_to_the_caller() {
        let a = Problem::from(SigningError::UnknownKey).to_response(None);
        let b = Problem::from(SigningError::BadSignature).to_response(None);
        assert_eq!(a.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(format!("{:?}", a.body()), format!("{:?}", b.body()));
    }

    #[test]
    fn authentication_problems_carry_the_documented_reason_codes() {
        let errors = [
            SigningError::MissingHeader("X-Signature"),
            SigningError::MalformedHeader("X-Timestamp"),
            SigningError::StaleTimestamp,
            SigningError::UnknownKey,
            SigningError::BadSignature,
        ];
        for error in errors {
            let code = error.reason_code();
            let response = Problem::from(error).to_response(None);
            let body = format!("{:?}", response.body());
            assert!(body.contains(code), "{code} missing from {body}");
        }
    }

    /// One of each variant. The `match` has no wildcard, so a new variant does not compile
    /// until it is listed here, and so until the test below has checked it.
    fn every_problem() -> Vec<Problem> {
        let all = vec![
            Problem::MalformedJson(String::new()),
            Problem::MissingField("account_id"),
            Problem::UnknownField(String::new()),
            Problem::InvalidField {
                field: "amount",
                detail: String::new(),
            },
            Problem::MissingHeader("Idempotency-Key"),
            Problem::InvalidHeader("Idempotency-Key"),
            Problem::AuthenticationRequired("X-Signature"),
            Problem::MalformedAuthentication("X-Signature"),
            Problem::StaleTimestamp,
            Problem::InvalidSignature,
            Problem::NotFound,
            Problem::RequestTimeout,
            Problem::MethodNotAllowed { allow: "GET" },
            Problem::PayloadTooLarge { limit: 1 },
            Problem::UnsupportedMediaType,
            Problem::Unprocessable {
                field: "amount",
                reason_code: "AMOUNT_ZERO",
                detail: String::new(),
            },
            Problem::RateLimited {
                retry_after_secs: 1,
            },
            Problem::Unavailable {
                retry_after_secs: 1,
                detail: "",
            },
            Problem::Internal,
        ];
        for problem in &all {
            match problem {
                Problem::MalformedJson(_)
                | Problem::MissingField(_)
                | Problem::UnknownField(_)
                | Problem::InvalidField { .. }
                | Problem::MissingHeader(_)
                | Problem::InvalidHeader(_)
                | Problem::AuthenticationRequired(_)
                | Problem::MalformedAuthentication(_)
                | Problem::StaleTimestamp
                | Problem::InvalidSignature
                | Problem::NotFound
                | Problem::RequestTimeout
                | Problem::MethodNotAllowed { .. }
                | Problem::PayloadTooLarge { .. }
                | Problem::UnsupportedMediaType
                | Problem::Unprocessable { .. }
                | Problem::RateLimited { .. }
                | Problem::Unavailable { .. }
                | Problem::Internal => {}
            }
        }
        all
    }

    /// Every `(status, type)` pair the spec declares: each problem response's schema is
    /// `allOf: [Problem, {properties: {status: {const}, type: {const | enum}}}]`.
    fn documented_problems(spec: &serde_json::Value) -> Vec<(u64, String)> {
        let mut found = Vec::new();
        let mut stack = vec![spec];
        while let Some(node) = stack.pop() {
            match node {
                serde_json::Value::Object(map) => {
                    let properties = map.get("properties");
                    let status = properties.and_then(|p| p["status"]["const"].as_u64());
                    if let (Some(status), Some(kind)) = (status, properties.map(|p| &p["type"])) {
                        let kinds = kind["const"].as_str().into_iter().chain(
                            kind["enum"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|k| k.as_str()),
                        );
                        found.extend(kinds.map(|k| (status, k.to_string())));
                    }
                    stack.extend(map.values());
                }
                serde_json::Value::Array(items) => stack.extend(items),
                _ => {}
            }
        }
        found
    }

    #[test]
    fn every_problem_type_is_documented_in_the_openapi_spec_with_its_status() {
        let spec: serde_json::Value =
            serde_norway::from_str(include_str!("../../docs/openapi.yaml")).unwrap();
        let documented = documented_problems(&spec);
        for problem in every_problem() {
            let pair = (
                u64::from(problem.status().as_u16()),
                format!("{TYPE_BASE}{}", problem.slug()),
            );
            assert!(
                documented.contains(&pair),
                "{pair:?} is not a documented problem in docs/openapi.yaml"
            );
        }
    }

    #[test]
    fn method_not_allowed_names_the_methods_the_path_defines() {
        let r = Problem::MethodNotAllowed { allow: "GET" }.to_response(None);
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET");
    }

    #[test]
    fn throttling_problems_say_when_to_retry() {
        let r = Problem::RateLimited {
            retry_after_secs: 2,
        }
        .to_response(None);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
}
