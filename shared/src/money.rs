//! Money: yuan with exactly two places (fen), carried as `Decimal`, written in JSON as a string.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Every amount is below this (a trillion yuan); keeps every product of price and quantity far from
/// `Decimal`'s limits.
const MAX_YUAN: i64 = 1_000_000_000_000;

/// The highest unit price a catalogue may set: 999 units of it (the most one order holds) still total
/// less than [`MAX_YUAN`], so no order of a catalogued product can have a total the type refuses to read.
pub const MAX_UNIT_PRICE: Money = Money(Decimal::from_parts(1_001_001_001, 0, 0, false, 0));

/// The seed's rounding tolerance: amounts this close to the expected one are the same amount.
pub const AMOUNT_TOLERANCE: Money = Money(Decimal::from_parts(1, 0, 0, false, 2));

/// A non-negative amount of money with exactly two decimal places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Money(Decimal);

/// Why a string is not an amount of money.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a finite, non-negative amount with at most two decimal places")]
pub struct AmountFormatError;

/// Why a product or sum of amounts is not an amount: it reaches a trillion yuan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the amount would reach 1000000000000.00, the largest the shop deals in")]
pub struct AmountOutOfRange;

impl Money {
    /// Parses `"199"`, `"199.0"` or `"199.00"`; refuses signs, exponents, more than two places and absurd sizes.
    pub fn parse(text: &str) -> Result<Self, AmountFormatError> {
        let text = text.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return Err(AmountFormatError);
        }
        let value = Decimal::from_str(text).map_err(|_| AmountFormatError)?;
        Self::from_decimal(value)
    }

    /// An amount written in JSON: a string such as `"199.00"` that `parse` accepts. A JSON number is a
    /// format error, whatever it looks like: the parser has already read it as a binary float
    /// (`3299.0000000000001` and `3299` would be the same), so its exact literal is gone.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, AmountFormatError> {
        match value {
            serde_json::Value::String(text) => Self::parse(text),
            _ => Err(AmountFormatError),
        }
    }

    /// An amount given in fen (WeChat Pay's integer amounts): `12345` is `123.45`.
    pub fn from_fen(fen: u64) -> Result<Self, AmountFormatError> {
        let fen = i64::try_from(fen).map_err(|_| AmountFormatError)?;
        Self::from_decimal(Decimal::new(fen, 2))
    }

    /// The amount in fen.
    pub fn to_fen(self) -> u64 {
        let fen = self.0 * Decimal::from(100);
        u64::try_from(fen).unwrap_or(0)
    }

    /// Accepts a decimal that already has at most two places and is within range.
    pub fn from_decimal(value: Decimal) -> Result<Self, AmountFormatError> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(AmountFormatError);
        }
        if value.normalize().scale() > 2 || value >= Decimal::from(MAX_YUAN) {
            return Err(AmountFormatError);
        }
        let mut value = value.abs();
        value.rescale(2);
        Ok(Money(value))
    }

    /// The amount as a `Decimal` (scale 2).
    pub fn as_decimal(self) -> Decimal {
        self.0
    }

    /// This amount times a count, still exact to the fen; refused when it would leave the range.
    pub fn times(self, count: u32) -> Result<Money, AmountOutOfRange> {
        let value = self.0.checked_mul(Decimal::from(count)).ok_or(AmountOutOfRange)?;
        Self::in_range(value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero))
    }

    /// Sum of two amounts; refused when it would leave the range.
    pub fn plus(self, other: Money) -> Result<Money, AmountOutOfRange> {
        Self::in_range(self.0.checked_add(other.0).ok_or(AmountOutOfRange)?)
    }

    fn in_range(mut value: Decimal) -> Result<Money, AmountOutOfRange> {
        if value >= Decimal::from(MAX_YUAN) {
            return Err(AmountOutOfRange);
        }
        value.rescale(2);
        Ok(Money(value))
    }

    /// True when the two amounts differ by at most the seed's 0.01 tolerance.
    pub fn matches(self, other: Money) -> bool {
        (self.0 - other.0).abs() <= AMOUNT_TOLERANCE.0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Money::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_two_places() {
        assert_eq!(Money::parse("199").unwrap().to_string(), "199.00");
        assert_eq!(Money::parse("199.5").unwrap().to_string(), "199.50");
        assert_eq!(Money::parse("0.01").unwrap().to_string(), "0.01");
        assert_eq!(Money::parse("12.340").unwrap().to_string(), "12.34");
    }

    #[test]
    fn refuses_malformed_amounts() {
        for bad in [
            "",
            "-1",
            "+1",
            "1e3",
            "1.001",
            "abc",
            "1,00",
            "NaN",
            "inf",
            "1.2.3",
            "1000000000000",
        ] {
            assert_eq!(Money::parse(bad), Err(AmountFormatError), "{bad:?}");
        }
    }

    #[test]
    fn multiplies_exactly_and_compares_with_tolerance() {
        let price = Money::parse("0.10").unwrap();
        assert_eq!(price.times(3).unwrap().to_string(), "0.30");
        assert!(Money::parse("100.00").unwrap().matches(Money::parse("100.01").unwrap()));
        assert!(!Money::parse("100.00").unwrap().matches(Money::parse("100.02").unwrap()));
    }

    #[test]
    fn products_and_sums_stay_readable() {
        // The reproductions: each total would have been accepted, then refused on every read.
        let top = Money::parse("999999999999.99").unwrap();
        assert_eq!(top.times(2), Err(AmountOutOfRange));
        assert_eq!(Money::parse("1001001002.00").unwrap().times(999), Err(AmountOutOfRange));
        assert_eq!(top.plus(Money::parse("0.01").unwrap()), Err(AmountOutOfRange));
        // The highest catalogue price times the largest quantity is still an amount, and reads back.
        let most = MAX_UNIT_PRICE.times(999).unwrap();
        assert_eq!(most.to_string(), "999999999999.00");
        assert_eq!(Money::parse(&most.to_string()), Ok(most));
        let over = MAX_UNIT_PRICE.plus(Money::parse("0.01").unwrap()).unwrap();
        assert_eq!(over.times(999), Err(AmountOutOfRange));
    }

    #[test]
    fn json_amounts_are_strings_only() {
        assert_eq!(
            Money::from_json(&serde_json::json!("3299.00")),
            Ok(Money::parse("3299").unwrap())
        );
        for number in ["3299", "3299.0", "3299.0000000000001", "3.299e3", "329900e-2", "1e3"] {
            let value: serde_json::Value = serde_json::from_str(number).unwrap();
            assert_eq!(Money::from_json(&value), Err(AmountFormatError), "{number}");
        }
        for other in [
            serde_json::json!(null),
            serde_json::json!(true),
            serde_json::json!(["1"]),
        ] {
            assert_eq!(Money::from_json(&other), Err(AmountFormatError));
        }
    }

    #[test]
    fn json_is_a_string() {
        let m = Money::parse("5").unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"5.00\"");
        assert_eq!(serde_json::from_str::<Money>("\"5.00\"").unwrap(), m);
        assert!(serde_json::from_str::<Money>("5.0").is_err());
    }

    proptest::proptest! {
        /// Any amount in fen prints with two places, parses back to itself, and multiplies exactly.
        #[test]
        fn fen_round_trip_and_exact_products(fen in 0i64..100_000_000_000, count in 1u32..=999) {
            let money = Money::from_decimal(Decimal::new(fen, 2)).unwrap();
            let text = money.to_string();
            proptest::prop_assert_eq!(text.split('.').nth(1).map(str::len), Some(2));
            proptest::prop_assert_eq!(Money::parse(&text), Ok(money));
            let expected = Decimal::new(fen * i64::from(count), 2);
            match money.times(count) {
                Ok(product) => proptest::prop_assert_eq!(product.as_decimal(), expected),
                Err(AmountOutOfRange) => proptest::prop_assert!(expected >= Decimal::from(MAX_YUAN)),
            }
            proptest::prop_assert!(money.matches(money.plus(Money::parse("0.01").unwrap()).unwrap()));
            proptest::prop_assert!(!money.matches(money.plus(Money::parse("0.02").unwrap()).unwrap()));
        }
    }
}
