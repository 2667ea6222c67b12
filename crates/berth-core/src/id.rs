//! Identifiers and timestamps in the shapes Docker uses.

use rand::RngCore;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A random 64-hex-character ID, as Docker uses for containers, networks and execs.
pub fn random_id() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The current time as RFC 3339 with nanoseconds, UTC ("2024-05-01T10:00:00.123456789Z").
pub fn now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

/// Formats a time as RFC 3339 in UTC.
pub fn format_rfc3339(t: OffsetDateTime) -> String {
    t.to_offset(time::UtcOffset::UTC).format(&Rfc3339).unwrap_or_else(|_| "0001-01-01T00:00:00Z".into())
}

/// Parses RFC 3339; `None` when it is not.
pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_64_hex_and_differ() {
        let a = random_id();
        let b = random_id();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn rfc3339_round_trips() {
        let s = "2024-05-01T10:00:00.123456789Z";
        let t = parse_rfc3339(s).expect("parse");
        assert_eq!(format_rfc3339(t), s);
        assert!(parse_rfc3339("yesterday").is_none());
    }
}
