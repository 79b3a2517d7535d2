//! Timestamps: UTC, millisecond precision, written in one fixed-width form so that strings sort as times do
//! (the DynamoDB expiry index compares them as strings).

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC instant truncated to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// Truncates to the millisecond so that a stored and re-read value compares equal.
    pub fn from_datetime(at: DateTime<Utc>) -> Self {
        let millis = at.timestamp_millis();
        Timestamp(Utc.timestamp_millis_opt(millis).single().unwrap_or(at))
    }

    /// The current time.
    pub fn now() -> Self {
        Self::from_datetime(Utc::now())
    }

    /// This instant plus a number of minutes.
    pub fn plus_minutes(self, minutes: u32) -> Self {
        Timestamp(self.0 + chrono::Duration::minutes(i64::from(minutes)))
    }

    /// The instant `seconds` after the Unix epoch (clamped to the epoch if out of range).
    pub fn from_unix_seconds(seconds: i64) -> Self {
        Self::from_datetime(Utc.timestamp_opt(seconds, 0).single().unwrap_or_default())
    }

    /// Whole seconds since the Unix epoch.
    pub fn unix_seconds(self) -> i64 {
        self.0.timestamp()
    }

    /// This instant plus a number of seconds (negative to go back).
    pub fn plus_seconds(self, seconds: i64) -> Self {
        Timestamp(self.0 + chrono::Duration::seconds(seconds))
    }

    /// This instant in China Standard Time (UTC+8, no daylight saving), the zone both payment providers
    /// read and write times in.
    pub fn in_china(self) -> DateTime<chrono::FixedOffset> {
        let offset = chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset");
        self.0.with_timezone(&offset)
    }

    /// `2026-11-25T07:00:00.000Z`: fixed width, so lexical order is time order.
    pub fn to_rfc3339(self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Parses any RFC 3339 instant.
    pub fn parse(text: &str) -> Result<Self, chrono::ParseError> {
        DateTime::parse_from_rfc3339(text).map(|t| Self::from_datetime(t.with_timezone(&Utc)))
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_width_and_round_trips() {
        let t = Timestamp::parse("2026-11-25T07:00:00Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-25T07:00:00.000Z");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert!(t.plus_minutes(30).to_rfc3339() > t.to_rfc3339());
    }
}
