//! Wall-clock helpers in one place (UTC, RFC 3339).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Now, UTC.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Now as RFC 3339.
pub fn now_rfc3339() -> String {
    now().format(&Rfc3339).unwrap_or_default()
}

/// Now as unix seconds.
pub fn now_unix() -> i64 {
    now().unix_timestamp()
}
