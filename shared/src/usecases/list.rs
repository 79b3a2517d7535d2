//! list_orders: the caller's orders, newest first, one page at a time, behind an opaque cursor that only
//! this service can issue and only to that caller.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::ServiceError;
use crate::ids::UserId;
use crate::ports::{ListPosition, ListedOrder, OrderList};

/// Orders per page when the caller does not say.
pub const DEFAULT_LIMIT: usize = 20;
/// The most orders one page may hold.
pub const MAX_LIMIT: usize = 100;

/// The key list cursors are signed with (HMAC-SHA256); never shown in `Debug` output.
#[derive(Clone)]
pub struct CursorKey(Vec<u8>);

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(..)")
    }
}

impl CursorKey {
    /// A key from configured secret text; blank text is refused.
    pub fn new(secret: &str) -> Option<Self> {
        let secret = secret.trim();
        (!secret.is_empty()).then(|| CursorKey(secret.as_bytes().to_vec()))
    }

    fn mac(&self, purpose: &str, user: &UserId, payload: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(user.as_str().as_bytes());
        mac.update(b"\0");
        mac.update(payload.as_bytes());
        mac
    }

    /// A cursor carrying `token` (a store's opaque position), bound to `user` and to `purpose` (so a
    /// cursor of one list never opens another): `<payload>.<tag>`, both base64url.
    pub fn issue_token(&self, user: &UserId, purpose: &str, token: &str) -> String {
        let payload = URL_SAFE_NO_PAD.encode(token.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(self.mac(purpose, user, &payload).finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    /// The token inside a cursor this key issued to `user` for `purpose`; anything else (forged,
    /// altered, another user's or list's, garbled) is a validation error on `cursor`.
    pub fn open_token(&self, user: &UserId, purpose: &str, cursor: &str) -> Result<String, ServiceError> {
        let refused = || ServiceError::field("cursor", "is not a cursor this service issued to you");
        let (payload, tag) = cursor.split_once('.').ok_or_else(refused)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| refused())?;
        self.mac(purpose, user, payload)
            .verify_slice(&tag)
            .map_err(|_| refused())?;
        let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| refused())?;
        String::from_utf8(bytes).map_err(|_| refused())
    }

    /// The list cursor for `position`, bound to `user`.
    pub fn issue(&self, user: &UserId, position: &ListPosition) -> String {
        let json = serde_json::to_string(position).expect("a position serializes");
        self.issue_token(user, LIST_CURSOR, &json)
    }

    /// The position inside a list cursor this key issued to `user`.
    pub fn open(&self, user: &UserId, cursor: &str) -> Result<ListPosition, ServiceError> {
        let json = self.open_token(user, LIST_CURSOR, cursor)?;
        serde_json::from_str(&json)
            .map_err(|_| ServiceError::field("cursor", "is not a cursor this service issued to you"))
    }
}

/// What list cursors are bound to, besides their user.
const LIST_CURSOR: &str = "list-cursor";

/// One page of the caller's orders.
#[derive(Debug, Clone)]
pub struct OrderPage {
    /// Newest first, each with its open payment.
    pub orders: Vec<ListedOrder>,
    /// Present while more orders remain.
    pub next_cursor: Option<String>,
}

/// `limit` as the query string gives it: 1..=100, default 20.
pub fn parse_limit(text: Option<&str>) -> Result<usize, ServiceError> {
    match text {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n) && text.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| ServiceError::field("limit", "must be an integer from 1 to 100")),
    }
}

/// The page of `user`'s orders after `cursor`.
pub async fn list_orders(
    list: &dyn OrderList,
    key: &CursorKey,
    user: &UserId,
    limit: usize,
    cursor: Option<&str>,
) -> Result<OrderPage, ServiceError> {
    let after = cursor.map(|c| key.open(user, c)).transpose()?;
    let (orders, next) = list.orders_of(user, limit, after.as_ref()).await?;
    Ok(OrderPage {
        orders,
        next_cursor: next.map(|position| key.issue(user, &position)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{OrderId, Timestamp};

    fn position() -> ListPosition {
        ListPosition {
            created_at: Timestamp::parse("2026-11-25T07:00:00Z").unwrap(),
            order_id: OrderId::parse("ord_1").unwrap(),
        }
    }

    #[test]
    fn a_cursor_opens_only_for_its_user_and_key_and_unaltered() {
        let key = CursorKey::new("k1").unwrap();
        let (alice, bob) = (UserId::parse("alice").unwrap(), UserId::parse("bob").unwrap());
        let cursor = key.issue(&alice, &position());
        assert_eq!(key.open(&alice, &cursor).unwrap(), position());
        assert!(key.open(&bob, &cursor).is_err());
        assert!(CursorKey::new("k2").unwrap().open(&alice, &cursor).is_err());
        let (payload, tag) = cursor.split_once('.').unwrap();
        let mut forged = position();
        forged.order_id = OrderId::parse("ord_2").unwrap();
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        for bad in [
            format!("{forged_payload}.{tag}"),
            format!("{payload}.{}", &tag[1..]),
            payload.to_owned(),
            "garbage".into(),
            String::new(),
        ] {
            assert!(key.open(&alice, &bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits() {
        assert_eq!(parse_limit(None).unwrap(), 20);
        assert_eq!(parse_limit(Some("100")).unwrap(), 100);
        for bad in ["0", "101", "-1", "+5", "abc", "", "1.5"] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
    }
}
