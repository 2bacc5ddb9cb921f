//! RFC 3339 times, as ephemeral tokens carry them (`expireTime`, `newSessionExpireTime`).

use std::time::SystemTime;

/// Formats a time as RFC 3339 in UTC (`2025-05-01T00:30:00Z`, fractional seconds when non-zero).
pub fn format_rfc3339(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// Parses an RFC 3339 time with any offset (`2025-05-01T00:30:00+00:00`, `...Z`, fractions).
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let t = time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339).ok()?;
    Some(SystemTime::from(t))
}
