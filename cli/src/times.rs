//! Times: entries carry milliseconds since the Unix epoch (UTC); people read and write
//! RFC 3339.

use cophr_protocol::Timestamp;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, Time};

use crate::error::{CliError, Result};

/// Which end of a day a bare date means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayEnd {
    /// 00:00:00.000 UTC.
    Start,
    /// 23:59:59.999 UTC.
    End,
}

/// Parses RFC 3339 (`2026-11-22T10:15:00Z`) or a date (`2026-11-22`, UTC, the given end of
/// the day) into milliseconds since the epoch.
pub fn parse(s: &str, day: DayEnd) -> Result<Timestamp> {
    let s = s.trim();
    let dt = if let Ok(dt) = OffsetDateTime::parse(s, &Rfc3339) {
        dt
    } else if let Ok(d) = Date::parse(s, format_description!("[year]-[month]-[day]")) {
        let t = match day {
            DayEnd::Start => Time::MIDNIGHT,
            DayEnd::End => Time::from_hms_milli(23, 59, 59, 999).unwrap_or(Time::MIDNIGHT),
        };
        d.with_time(t).assume_utc()
    } else {
        return Err(CliError::invalid(format!(
            "`{s}` is not a time: write RFC 3339 (e.g. 2026-11-22T10:15:00Z) or a date (2026-11-22)"
        )));
    };
    let ms = dt.unix_timestamp_nanos() / 1_000_000;
    Timestamp::try_from(ms)
        .map_err(|_| CliError::invalid(format!("`{s}` is before 1970, which cophr cannot record")))
}

/// Formats milliseconds since the epoch as RFC 3339 UTC (`2026-11-22T10:15:00Z`).
pub fn format(t: Timestamp) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t) * 1_000_000)
        .ok()
        .and_then(|dt| dt.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{t} ms"))
}

/// The system clock, in milliseconds since the epoch.
pub fn system_now() -> Timestamp {
    let now = OffsetDateTime::now_utc();
    Timestamp::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_dates() {
        let t = parse("2026-11-22T10:15:00Z", DayEnd::Start).unwrap();
        assert_eq!(format(t), "2026-11-22T10:15:00Z");
        assert_eq!(
            parse("2026-11-22", DayEnd::Start).unwrap(),
            parse("2026-11-22T00:00:00Z", DayEnd::Start).unwrap()
        );
        assert_eq!(
            parse("2026-11-22", DayEnd::End).unwrap(),
            parse("2026-11-22T23:59:59.999Z", DayEnd::Start).unwrap()
        );
        assert!(parse("yesterday", DayEnd::Start).is_err());
        assert!(parse("1960-01-01", DayEnd::Start).is_err());
    }
}
