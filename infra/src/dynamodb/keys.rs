//! The single-table layout: every key and index attribute is spelled here and nowhere else.
//!
//! | item     | pk                | sk                  | index attributes                                   |
//! |----------|-------------------|---------------------|----------------------------------------------------|
//! | product  | `PRODUCT#<id>`    | `#PRODUCT`          |                                                    |
//! | stock shard 1..N-1 of a sharded product | `STOCK#<id>#<n>` | `#STOCK` |                                  |
//! | address  | `ADDRESS#<id>`    | `#ADDRESS`          |                                                    |
//! | order    | `ORDER#<id>`      | `#ORDER`            | `owner` + `created_at` (by_owner); `expiry_shard` + `expiry_at` while pending (by_expiry) |
//! | payment  | `ORDER#<order>`   | `PAYMENT#<id>`      | `payment_id` (by_payment); `expiry_shard` + `expiry_at` while open or `close_pending` (by_expiry); `work` + `work_at` while refunding or for an operator (by_work) |
//!
//! An order and its payments share a partition, so `get_order` is one strongly consistent query.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use domain::ids::{AddressId, OrderId, PaymentId, ProductId, UserId};
use domain::order::{Order, OrderStatus};
use domain::payment::Payment;
use domain::ports::{Due, ListPosition};

/// Partition key attribute.
pub const PK: &str = "pk";
/// Sort key attribute.
pub const SK: &str = "sk";
/// A condition that the item exists (it has a partition key).
pub const EXISTS: &str = "attribute_exists(pk)";
/// A condition that no item has the key yet.
pub const ABSENT: &str = "attribute_not_exists(pk)";
/// The prefix of a payment's sort key.
const PAYMENT_PREFIX: &str = "PAYMENT#";

/// Sort key of an order item; sorts before every `PAYMENT#` key.
pub const ORDER_SK: &str = "#ORDER";
/// The payment id attribute the `by_payment` index is keyed on.
pub const PAYMENT_ID: &str = "payment_id";
/// The index from a payment id to its order's partition.
pub const BY_PAYMENT: &str = "by_payment";
/// The sparse index of what may need expiring.
pub const BY_EXPIRY: &str = "by_expiry";
/// Its partition attribute: `order#<n>` or `payment#<n>`.
pub const EXPIRY_SHARD: &str = "expiry_shard";
/// Its sort attribute: the deadline, as fixed-width RFC 3339 text.
pub const EXPIRY_AT: &str = "expiry_at";
/// The sparse index of refunds to send and payments for an operator ([`Payment::work`]).
pub const BY_WORK: &str = "by_work";
/// Its partition attribute: `refund` or `attention`. Both hold only exceptions (a refund, a failure),
/// far below one partition's throughput, and one partition keeps the list oldest first.
pub const WORK: &str = "work";
/// Its sort attribute: since when, as fixed-width RFC 3339 text, then the payment id (unique).
pub const WORK_AT: &str = "work_at";
/// The index of a shopper's orders by creation time.
pub const BY_OWNER: &str = "by_owner";
/// Its partition attribute: the shopper.
pub const OWNER: &str = "owner";
/// Its sort attribute: the order's creation time.
pub const CREATED_AT: &str = "created_at";
/// The attribute DynamoDB's TTL deletes items by (epoch seconds).
pub const TTL: &str = "ttl";
/// The copy of an order's open payment kept on the order item, for the list.
pub const OPEN_PAYMENT: &str = "open_payment";
/// A supplier-held product's reservation ledger (`Product::reserved`): the one product attribute a
/// catalogue upsert leaves as the store has it.
pub const RESERVED: &str = "reserved";
/// Shards of the expiry index, so the sweeper's queries spread over several partitions.
pub const EXPIRY_SHARDS: u32 = 4;

/// The key of an item.
pub type Key = HashMap<String, AttributeValue>;

fn key(pk: String, sk: &str) -> Key {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(pk)),
        (SK.to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

/// The key a function reads during init to open its connection; no item ever has it.
pub fn warm_up() -> Key {
    key("WARMUP#".to_owned(), "#WARMUP")
}

/// Whether a sort key in an order's partition is a payment's.
pub fn is_payment(sk: &str) -> bool {
    sk.starts_with(PAYMENT_PREFIX)
}

/// A product's key.
pub fn product(id: &ProductId) -> Key {
    key(format!("PRODUCT#{id}"), "#PRODUCT")
}

/// The item holding shard `shard` of a product's stock (docs/api.md §19): the product item itself for
/// shard 0, else an item of its own, in its own partition, so a flash sale's writes spread over as many
/// items (and partitions) as the product has shards. It holds a copy of the product's description, so an
/// order's write checks price and availability on the one item it decrements.
pub fn stock_shard(id: &ProductId, shard: u16) -> Key {
    if shard == 0 {
        product(id)
    } else {
        key(format!("STOCK#{id}#{shard}"), "#STOCK")
    }
}

/// The attribute naming the shard a stock-shard item holds.
pub const SHARD: &str = "shard";

/// An address's key.
pub fn address(id: &AddressId) -> Key {
    key(format!("ADDRESS#{id}"), "#ADDRESS")
}

/// A shopper's idempotency key's record (user ids hold no `#`, so the key may hold anything).
pub fn idempotency(user: &UserId, key: &domain::idempotency::IdempotencyKey) -> Key {
    self::key(format!("IDEMPOTENCY#{user}#{}", key.as_str()), "#IDEMPOTENCY")
}

/// The partition holding an order and its payments.
pub fn order_partition(id: &OrderId) -> String {
    format!("ORDER#{id}")
}

/// The order whose partition this is.
pub fn order_of_partition(pk: &str) -> Option<OrderId> {
    pk.strip_prefix("ORDER#").and_then(|id| OrderId::parse(id).ok())
}

/// An order's key.
pub fn order(id: &OrderId) -> Key {
    key(order_partition(id), ORDER_SK)
}

/// A payment's key.
pub fn payment(order: &OrderId, id: &PaymentId) -> Key {
    key(order_partition(order), &format!("{PAYMENT_PREFIX}{id}"))
}

/// The index attributes of an order item: its owner always (by_owner); its deadline while it is
/// pending (by_expiry), so an order leaves the expiry index in the write that moves it out of pending.
pub fn order_index_attributes(order: &Order) -> Vec<(&'static str, String)> {
    let mut attributes = vec![(OWNER, order.user_id.to_string())];
    if order.status == OrderStatus::Pending {
        attributes.push((EXPIRY_SHARD, expiry_shard("order", order.id.as_str())));
        attributes.push((EXPIRY_AT, order.payment_deadline.to_rfc3339()));
    }
    attributes
}

/// The index attributes of a payment item: its id always (by_payment); its expiry while it is open or
/// still owes its trade a close (by_expiry, [`Payment::awaits_close`]).
pub fn payment_index_attributes(payment: &Payment) -> Vec<(&'static str, String)> {
    let mut attributes = vec![(PAYMENT_ID, payment.id.to_string())];
    if payment.awaits_close() {
        attributes.push((EXPIRY_SHARD, expiry_shard("payment", payment.id.as_str())));
        attributes.push((EXPIRY_AT, payment.expires_at.to_rfc3339()));
    }
    if let Some(work) = payment.work() {
        attributes.push((WORK, work.kind().as_str().to_owned()));
        attributes.push((WORK_AT, format!("{} {}", work.at().to_rfc3339(), payment.id)));
    }
    attributes
}

/// The work item a by_work index entry stands for.
pub fn work_of(item: &Key) -> Option<domain::ports::WorkItem> {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(s)) => Some(s.as_str()),
        _ => None,
    };
    let order_id = order_of_partition(text(PK)?)?;
    let payment_id = PaymentId::parse(text(SK)?.strip_prefix(PAYMENT_PREFIX)?).ok()?;
    let at = domain::Timestamp::parse(text(WORK_AT)?.split(' ').next()?).ok()?;
    Some(domain::ports::WorkItem {
        order_id,
        payment_id,
        at,
    })
}

/// The expiry-index partition for an item of `kind` (`order` or `payment`) with this id.
pub fn expiry_shard(kind: &str, id: &str) -> String {
    let shard = id
        .bytes()
        .fold(0u32, |acc, b| acc.wrapping_mul(31).wrapping_add(u32::from(b)))
        % EXPIRY_SHARDS;
    format!("{kind}#{shard}")
}

/// Every partition of the expiry index, orders first.
pub fn expiry_partitions() -> Vec<String> {
    ["order", "payment"]
        .iter()
        .flat_map(|kind| (0..EXPIRY_SHARDS).map(move |n| format!("{kind}#{n}")))
        .collect()
}

/// The due entry an expiry-index item stands for.
pub fn due_of(item: &Key) -> Option<Due> {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(s)) => Some(s.as_str()),
        _ => None,
    };
    let order = order_of_partition(text(PK)?)?;
    let sk = text(SK)?;
    if sk == ORDER_SK {
        return Some(Due::Order(order));
    }
    let payment = PaymentId::parse(sk.strip_prefix(PAYMENT_PREFIX)?).ok()?;
    Some(Due::Payment(order, payment))
}

/// The by_owner index key of the order at `position`, to continue a list after it.
pub fn owner_position(user: &UserId, position: &ListPosition) -> Key {
    let mut key = order(&position.order_id);
    key.insert(OWNER.to_owned(), AttributeValue::S(user.to_string()));
    key.insert(
        CREATED_AT.to_owned(),
        AttributeValue::S(position.created_at.to_rfc3339()),
    );
    key
}
