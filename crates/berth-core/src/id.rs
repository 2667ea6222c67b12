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

/// Parses a filter's `until` (or `since`) time as dockerd does: a Unix
/// timestamp (with an optional fraction), RFC 3339, or a Go duration (`10m`,
/// `24h`, `1h30m`, `1.5h`) counted back from `now`. Anything else, or a time
/// outside what can be represented, is an invalid filter, never a panic.
pub fn parse_until(value: &str, now: OffsetDateTime) -> crate::Result<OffsetDateTime> {
    let bad = || crate::Error::invalid(format!("invalid filter 'until={value}'"));
    if let Some(t) = parse_rfc3339(value) {
        return Ok(t);
    }
    // `SECONDS[.FRACTION]`, exact to the nanosecond (as `docker events --since` sends it).
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    if !secs.is_empty() && secs.bytes().all(|b| b.is_ascii_digit()) && frac.bytes().all(|b| b.is_ascii_digit()) {
        let mut nanos = frac.to_string();
        nanos.truncate(9);
        let nanos = format!("{nanos:0<9}");
        let total = secs
            .parse::<i128>()
            .ok()
            .and_then(|s| s.checked_mul(1_000_000_000))
            .and_then(|s| s.checked_add(nanos.parse::<i128>().ok()?))
            .ok_or_else(bad)?;
        return OffsetDateTime::from_unix_timestamp_nanos(total).map_err(|_| bad());
    }
    if let Ok(secs) = value.parse::<f64>() {
        if !secs.is_finite() {
            return Err(bad());
        }
        return OffsetDateTime::from_unix_timestamp_nanos((secs * 1e9) as i128).map_err(|_| bad());
    }
    let back = parse_duration(value).ok_or_else(bad)?;
    now.checked_sub(back).ok_or_else(bad)
}

/// A Go duration (`1h30m`, `1.5s`, `300ms`, `10us`, `5ns`): units `h`, `m`,
/// `s`, `ms`, `us` (or `µs`), `ns`; `None` for anything else.
pub fn parse_duration(value: &str) -> Option<time::Duration> {
    let mut total = 0f64;
    let mut rest = value;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit..];
        total += n * scale;
    }
    time::Duration::checked_seconds_f64(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let d = |s: &str| parse_duration(s).map(|d| d.whole_milliseconds());
        assert_eq!(d("1h30m"), Some(5_400_000));
        assert_eq!(d("1.5s"), Some(1500));
        assert_eq!(d("300ms"), Some(300));
        assert_eq!(d("5"), None, "a unit is required");
        assert_eq!(d("5x"), None);
        assert_eq!(d(""), None);
    }

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

    #[test]
    fn until_forms_and_no_panics() {
        let now = OffsetDateTime::from_unix_timestamp(10_000).expect("t");
        assert_eq!(parse_until("1h30m", now).ok(), Some(now - time::Duration::seconds(5400)));
        assert_eq!(parse_until("1.5h", now).ok(), Some(now - time::Duration::seconds(5400)));
        assert_eq!(parse_until("500", now).ok().map(|t| t.unix_timestamp()), Some(500));
        assert_eq!(parse_until("500.5", now).ok().map(|t| t.unix_timestamp_nanos()), Some(500_500_000_000));
        assert_eq!(parse_until("1970-01-01T00:01:00Z", now).ok().map(|t| t.unix_timestamp()), Some(60));
        for bad in ["soon", "", "h", "99999999999999999999h", "1e400", "inf", "NaN", "1e30", "5d"] {
            assert!(parse_until(bad, now).is_err(), "{bad:?}");
        }
    }
}
