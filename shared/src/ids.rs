//! Identifiers and the small value types a request is parsed into.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Accepts 1..=64 characters of `[A-Za-z0-9._:-]`, the characters safe inside a store key.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                if is_valid_id(text) {
                    Ok(Self(text.to_owned()))
                } else {
                    Err(IdError)
                }
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

/// Why text is not an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to 64 characters of letters, digits, '.', '_', ':' or '-'")]
pub struct IdError;

fn is_valid_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

id_type!(
    /// A catalogue product.
    ProductId
);
id_type!(
    /// A shopper's delivery address.
    AddressId
);
id_type!(
    /// The authenticated shopper (the JWT `sub`).
    UserId
);
id_type!(
    /// An order.
    OrderId
);
id_type!(
    /// A payment attempt for an order.
    PaymentId
);

impl OrderId {
    /// A new, time-ordered order id.
    pub fn generate() -> Self {
        Self(format!("ord_{}", uuid::Uuid::now_v7().simple()))
    }
}

impl PaymentId {
    /// A new, time-ordered payment id that both providers accept as `out_trade_no` (WeChat Pay: 6..=32
    /// characters of `[0-9A-Za-z_|*-]`): `pay_` and the first 28 hex digits of a UUIDv7 (its 48-bit
    /// millisecond time, then 64 random bits). Ids made before this rule (36 characters) still parse.
    pub fn generate() -> Self {
        let uuid = uuid::Uuid::now_v7().simple().to_string();
        Self(format!("pay_{}", &uuid[..28]))
    }

    /// Whether this id is a valid WeChat Pay `out_trade_no` (and so an Alipay one).
    pub fn is_provider_safe(&self) -> bool {
        (6..=32).contains(&self.0.len())
            && self
                .0
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'|' | b'*' | b'-'))
    }
}

/// How many units of a product a line asks for: 1..=999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Quantity(u32);

impl Quantity {
    /// The largest quantity one order may hold.
    pub const MAX: u32 = 999;

    /// Accepts 1..=999.
    pub fn new(value: u32) -> Result<Self, QuantityError> {
        if (1..=Self::MAX).contains(&value) {
            Ok(Quantity(value))
        } else {
            Err(QuantityError)
        }
    }

    /// The quantity as a number.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// Why a number is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be an integer from 1 to 999")]
pub struct QuantityError;

impl TryFrom<u32> for Quantity {
    type Error = QuantityError;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Quantity::new(value)
    }
}

impl From<Quantity> for u32 {
    fn from(q: Quantity) -> u32 {
        q.0
    }
}

/// How long a payment may stay open, in minutes: 1..=1440, default 30.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct TtlMinutes(u32);

impl TtlMinutes {
    /// The seed's default payment lifetime.
    pub const DEFAULT: TtlMinutes = TtlMinutes(30);
    /// One day, the longest a payment may stay open.
    pub const MAX: u32 = 1440;

    /// Accepts 1..=1440.
    pub fn new(value: u32) -> Result<Self, TtlError> {
        if (1..=Self::MAX).contains(&value) {
            Ok(TtlMinutes(value))
        } else {
            Err(TtlError)
        }
    }

    /// The lifetime in minutes.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// Why a number is not a payment lifetime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be an integer from 1 to 1440")]
pub struct TtlError;

impl TryFrom<u32> for TtlMinutes {
    type Error = TtlError;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        TtlMinutes::new(value)
    }
}

impl From<TtlMinutes> for u32 {
    fn from(t: TtlMinutes) -> u32 {
        t.0
    }
}

/// How the shopper pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PaymentMethod {
    /// WeChat Pay, the seed's default.
    #[default]
    Wechat,
    /// Alipay.
    Alipay,
    /// Bank transfer.
    Bank,
}

impl PaymentMethod {
    /// Accepts `wechat`, `alipay` or `bank`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "wechat" => Some(Self::Wechat),
            "alipay" => Some(Self::Alipay),
            "bank" => Some(Self::Bank),
            _ => None,
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wechat => "wechat",
            Self::Alipay => "alipay",
            Self::Bank => "bank",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_key_separators_and_blanks() {
        assert!(ProductId::parse("p-1_a.b:c").is_ok());
        for bad in ["", "a#b", "a b", "é", &"x".repeat(65)] {
            assert!(ProductId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn older_payment_ids_still_parse() {
        let old = PaymentId::parse("pay_01a211b2da0e75378c02ac50635712ca").unwrap();
        assert!(!old.is_provider_safe());
    }

    proptest::proptest! {
        /// Every new payment id is a valid `out_trade_no` for WeChat Pay and Alipay, and ids made one
        /// after another are distinct and in order.
        #[test]
        fn new_payment_ids_are_valid_out_trade_nos(count in 1usize..50) {
            let ids: Vec<PaymentId> = (0..count).map(|_| PaymentId::generate()).collect();
            for id in &ids {
                proptest::prop_assert!(id.is_provider_safe(), "{}", id);
                proptest::prop_assert_eq!(&PaymentId::parse(id.as_str()).unwrap(), id);
            }
            for pair in ids.windows(2) {
                proptest::prop_assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
            }
        }
    }

    #[test]
    fn quantity_and_ttl_bounds() {
        assert!(Quantity::new(0).is_err());
        assert!(Quantity::new(1).is_ok());
        assert!(Quantity::new(999).is_ok());
        assert!(Quantity::new(1000).is_err());
        assert!(TtlMinutes::new(0).is_err());
        assert!(TtlMinutes::new(1440).is_ok());
        assert!(TtlMinutes::new(1441).is_err());
    }
}
