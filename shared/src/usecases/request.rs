//! Parsing create requests at the edge: raw JSON in, typed commands out, every bad field named.

use serde_json::{Map, Value};

use crate::error::{FieldError, ServiceError};
use crate::ids::{AddressId, PaymentMethod, ProductId, Quantity, TtlMinutes};

/// The largest request body any route accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// DynamoDB's limit on the actions of one `TransactWriteItems`.
pub const TRANSACTION_ACTION_LIMIT: usize = 100;
/// Actions a create request spends besides its products: the address ownership check and the
/// idempotency record.
const FIXED_ACTIONS: usize = 2;
/// Actions each distinct product spends: its stock (or existence) check, its order and its payment.
const ACTIONS_PER_PRODUCT: usize = 3;
/// The most distinct products one batch may hold so that its whole write fits one transaction.
/// The actions a placement of `lines` products leaves for a sharded line to take from more than one
/// shard (docs/api.md §19).
pub fn spare_actions(lines: usize) -> usize {
    TRANSACTION_ACTION_LIMIT.saturating_sub(FIXED_ACTIONS + lines * ACTIONS_PER_PRODUCT)
}

pub const MAX_BATCH_PRODUCTS: usize = (TRANSACTION_ACTION_LIMIT - FIXED_ACTIONS) / ACTIONS_PER_PRODUCT;
// The cap is the largest batch that fits: checked when compiling.
const _: () = assert!(FIXED_ACTIONS + MAX_BATCH_PRODUCTS * ACTIONS_PER_PRODUCT <= TRANSACTION_ACTION_LIMIT);
const _: () = assert!(FIXED_ACTIONS + (MAX_BATCH_PRODUCTS + 1) * ACTIONS_PER_PRODUCT > TRANSACTION_ACTION_LIMIT);

/// One distinct product and how many of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    /// The product.
    pub product_id: ProductId,
    /// Units, after merging repeated lines.
    pub quantity: Quantity,
}

/// A parsed create request: one or more distinct products, in order of first appearance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOrders {
    /// Distinct products.
    pub lines: Vec<OrderLine>,
    /// Where to deliver.
    pub address_id: AddressId,
    /// How the shopper pays.
    pub payment_method: PaymentMethod,
    /// Payment lifetime.
    pub ttl_minutes: TtlMinutes,
}

/// A parsed create_payment request. The amount stays raw: the seed checks its format only after the
/// order's status, so a malformed amount on a paid order is still `INVALID_ORDER_STATUS`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatePayment {
    /// How the shopper will pay.
    pub payment_method: PaymentMethod,
    /// The payment's lifetime (never past the order's deadline).
    pub ttl_minutes: TtlMinutes,
    /// The amount the shopper expects to pay, if given.
    pub amount: Option<Value>,
}

/// Collects field errors so one response names every bad field.
#[derive(Default)]
struct Fields(Vec<FieldError>);

impl Fields {
    fn bad(&mut self, field: &str, message: &str) {
        self.0.push(FieldError::new(field, message));
    }

    fn id<T>(
        &mut self,
        obj: &Map<String, Value>,
        key: &str,
        path: &str,
        parse: fn(&str) -> Result<T, crate::ids::IdError>,
    ) -> Option<T> {
        let text = match obj.get(key) {
            None | Some(Value::Null) => {
                self.bad(path, "is required");
                return None;
            }
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) if n.is_u64() => n.to_string(),
            Some(_) => {
                self.bad(path, "must be a string or a non-negative integer");
                return None;
            }
        };
        match parse(&text) {
            Ok(id) => Some(id),
            Err(e) => {
                self.bad(path, &e.to_string());
                None
            }
        }
    }

    fn integer(&mut self, obj: &Map<String, Value>, key: &str, path: &str, default: Option<u64>) -> Option<u64> {
        match obj.get(key) {
            None | Some(Value::Null) => {
                if default.is_none() {
                    self.bad(path, "is required");
                }
                default
            }
            Some(Value::Number(n)) => match (n.as_u64(), n.as_i64()) {
                (Some(v), _) => Some(v),
                (None, Some(_)) => {
                    self.bad(path, "must not be negative");
                    None
                }
                _ => {
                    self.bad(path, "must be an integer");
                    None
                }
            },
            Some(_) => {
                self.bad(path, "must be an integer");
                None
            }
        }
    }

    fn quantity(&mut self, obj: &Map<String, Value>, path: &str) -> Option<Quantity> {
        let value = self.integer(obj, "quantity", path, None)?;
        match u32::try_from(value).ok().and_then(|v| Quantity::new(v).ok()) {
            Some(q) => Some(q),
            None => {
                self.bad(path, "must be an integer from 1 to 999");
                None
            }
        }
    }

    fn method(&mut self, obj: &Map<String, Value>) -> Option<PaymentMethod> {
        match obj.get("payment_method") {
            None | Some(Value::Null) => Some(PaymentMethod::default()),
            Some(Value::String(s)) => PaymentMethod::parse(s).or_else(|| {
                self.bad("payment_method", "must be one of wechat, alipay, bank");
                None
            }),
            Some(_) => {
                self.bad("payment_method", "must be one of wechat, alipay, bank");
                None
            }
        }
    }

    fn ttl(&mut self, obj: &Map<String, Value>) -> Option<TtlMinutes> {
        let value = self.integer(
            obj,
            "ttl_minutes",
            "ttl_minutes",
            Some(u64::from(TtlMinutes::DEFAULT.get())),
        )?;
        match u32::try_from(value).ok().and_then(|v| TtlMinutes::new(v).ok()) {
            Some(t) => Some(t),
            None => {
                self.bad("ttl_minutes", "must be an integer from 1 to 1440");
                None
            }
        }
    }

    /// A text field: absent is `None` (an error if `required`); present, a string that is not blank and
    /// at most `max` characters, trimmed.
    fn text(&mut self, obj: &Map<String, Value>, key: &str, required: bool, max: usize) -> Option<String> {
        match obj.get(key) {
            None | Some(Value::Null) => {
                if required {
                    self.bad(key, "is required");
                }
                None
            }
            Some(Value::String(text)) if text.trim().is_empty() => {
                self.bad(key, "must not be blank");
                None
            }
            Some(Value::String(text)) if text.trim().chars().count() > max => {
                self.bad(key, &format!("must be at most {max} characters"));
                None
            }
            Some(Value::String(text)) => Some(text.trim().to_owned()),
            Some(_) => {
                self.bad(key, "must be a string");
                None
            }
        }
    }

    fn finish<T>(self, value: Option<T>) -> Result<T, ServiceError> {
        match value {
            Some(v) if self.0.is_empty() => Ok(v),
            _ => Err(ServiceError::Validation(self.0)),
        }
    }
}

/// A request body, parsed once: a JSON object, or `400` naming the body. The commands below read it, and
/// an idempotency key hashes the same value.
pub fn json_body(body: &[u8]) -> Result<Value, ServiceError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err(ServiceError::field("body", "must be a JSON object")),
        Err(_) => Err(ServiceError::field("body", "is not valid JSON")),
    }
}

fn json_object(body: &Value) -> Result<&Map<String, Value>, ServiceError> {
    body.as_object()
        .ok_or_else(|| ServiceError::field("body", "must be a JSON object"))
}

/// Parses `POST /api/orders/create_order/`.
pub fn parse_create_order(body: &Value) -> Result<CreateOrders, ServiceError> {
    let obj = json_object(body)?;
    let mut f = Fields::default();
    let product_id = f.id(obj, "product_id", "product_id", ProductId::parse);
    let quantity = f.quantity(obj, "quantity");
    let address_id = f.id(obj, "address_id", "address_id", AddressId::parse);
    let payment_method = f.method(obj);
    let ttl_minutes = f.ttl(obj);
    let parsed = (|| {
        Some(CreateOrders {
            lines: vec![OrderLine {
                product_id: product_id?,
                quantity: quantity?,
            }],
            address_id: address_id?,
            payment_method: payment_method?,
            ttl_minutes: ttl_minutes?,
        })
    })();
    f.finish(parsed)
}

/// Parses `POST /api/orders/{order_id}/payments/`: `{"payment_method", "ttl_minutes", "amount"?}`.
pub fn parse_create_payment(body: &Value) -> Result<CreatePayment, ServiceError> {
    let obj = json_object(body)?;
    let mut f = Fields::default();
    let payment_method = f.method(obj);
    let ttl_minutes = f.ttl(obj);
    let amount = obj.get("amount").filter(|v| !v.is_null()).cloned();
    let parsed = (|| {
        Some(CreatePayment {
            payment_method: payment_method?,
            ttl_minutes: ttl_minutes?,
            amount,
        })
    })();
    f.finish(parsed)
}

/// Parses `POST /api/orders/create_batch_orders/`: merges lines naming the same product (the merged
/// quantity must still be 1..=999) and enforces the transaction-derived product cap.
pub fn parse_create_batch(body: &Value) -> Result<CreateOrders, ServiceError> {
    let obj = json_object(body)?;
    let mut f = Fields::default();
    let mut lines: Vec<OrderLine> = Vec::new();
    let mut first_index: Vec<usize> = Vec::new();
    let mut all_lines_ok = true;
    match obj.get("items") {
        Some(Value::Array(items)) if !items.is_empty() => {
            for (i, item) in items.iter().enumerate() {
                let Value::Object(item) = item else {
                    f.bad(&format!("items[{i}]"), "must be an object");
                    all_lines_ok = false;
                    continue;
                };
                let product_id = f.id(item, "product_id", &format!("items[{i}].product_id"), ProductId::parse);
                let quantity = f.quantity(item, &format!("items[{i}].quantity"));
                let (Some(product_id), Some(quantity)) = (product_id, quantity) else {
                    all_lines_ok = false;
                    continue;
                };
                match lines.iter().position(|l| l.product_id == product_id) {
                    Some(at) => {
                        let merged = lines[at].quantity.get() + quantity.get();
                        match Quantity::new(merged) {
                            Ok(q) => lines[at].quantity = q,
                            Err(_) => {
                                f.bad(
                                    &format!("items[{}].quantity", first_index[at]),
                                    &format!("merged quantity {merged} for product {product_id} exceeds 999"),
                                );
                                all_lines_ok = false;
                            }
                        }
                    }
                    None => {
                        first_index.push(i);
                        lines.push(OrderLine { product_id, quantity });
                    }
                }
            }
        }
        Some(Value::Array(_)) => f.bad("items", "must not be empty"),
        None | Some(Value::Null) => f.bad("items", "is required"),
        Some(_) => f.bad("items", "must be an array"),
    }
    let address_id = f.id(obj, "address_id", "address_id", AddressId::parse);
    let payment_method = f.method(obj);
    let ttl_minutes = f.ttl(obj);
    if lines.len() > MAX_BATCH_PRODUCTS {
        return Err(ServiceError::BatchTooLarge {
            max: MAX_BATCH_PRODUCTS,
            given: lines.len(),
        });
    }
    let parsed = (|| {
        if !all_lines_ok || lines.is_empty() {
            return None;
        }
        Some(CreateOrders {
            lines,
            address_id: address_id?,
            payment_method: payment_method?,
            ttl_minutes: ttl_minutes?,
        })
    })();
    f.finish(parsed)
}

/// Parses `POST /api/orders/{order_id}/payments/{payment_id}/checkout/`: `{"scene"?, "payer_openid"?,
/// "return_url"?}`, each a string when given (which scenes a payment offers is judged with the payment).
pub fn parse_checkout(body: &Value) -> Result<crate::checkout::CheckoutAsk, ServiceError> {
    let obj = json_object(body)?;
    let mut f = Fields::default();
    let mut text = |key: &str, max: usize| match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control) => {
            Some(s.clone())
        }
        Some(_) => {
            f.bad(key, &format!("must be a string of 1 to {max} characters"));
            None
        }
    };
    let scene = text("scene", 16);
    let payer_openid = text("payer_openid", 128);
    let return_url = text("return_url", 1024);
    if let Some(url) = &return_url {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            f.bad("return_url", "must be an http(s) URL");
        }
    }
    let ask = crate::checkout::CheckoutAsk {
        scene,
        payer_openid,
        return_url,
    };
    f.finish(Some(ask))
}

/// The longest reason a refund or cancel may give (WeChat Pay shows the shopper at most 80 characters).
pub const MAX_REASON_CHARS: usize = 80;
/// The longest note an operator may leave.
pub const MAX_NOTE_CHARS: usize = 200;

/// Parses the body of an operator's action on an order, `kind` being the route's last segment:
/// `ship` `{"carrier", "tracking_no", "note"?}`, `complete` `{"note"?}`, `refund` `{"reason"}`, `cancel`
/// `{"reason"}`. Any other kind is no route.
pub fn parse_action(kind: &str, body: &Value) -> Result<crate::operator::Action, ServiceError> {
    use crate::operator::Action;
    let obj = json_object(body)?;
    let mut f = Fields::default();
    let action = match kind {
        "ship" => {
            let carrier = f.text(obj, "carrier", true, 64);
            let tracking_no = f.text(obj, "tracking_no", true, 64);
            let note = f.text(obj, "note", false, MAX_NOTE_CHARS);
            carrier.zip(tracking_no).map(|(carrier, tracking_no)| Action::Ship {
                carrier,
                tracking_no,
                note,
            })
        }
        "complete" => Some(Action::Complete {
            note: f.text(obj, "note", false, MAX_NOTE_CHARS),
        }),
        "refund" => f
            .text(obj, "reason", true, MAX_REASON_CHARS)
            .map(|reason| Action::Refund { reason }),
        "cancel" => f
            .text(obj, "reason", true, MAX_REASON_CHARS)
            .map(|reason| Action::Cancel { reason }),
        _ => return Err(ServiceError::NotFound),
    };
    f.finish(action)
}

/// Parses the body of an operator's resolution of a payment's attention items: `{"note"}`.
pub fn parse_resolve(body: &Value) -> Result<String, ServiceError> {
    let obj = json_object(body)?;
    let mut f = Fields::default();
    let note = f.text(obj, "note", true, MAX_NOTE_CHARS);
    f.finish(note)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(err: ServiceError) -> Vec<String> {
        match err {
            ServiceError::Validation(fields) => fields.into_iter().map(|f| f.field).collect(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    fn json(body: &[u8]) -> Value {
        json_body(body).unwrap()
    }

    #[test]
    fn sharded_lines_split_only_into_the_room_a_request_leaves() {
        assert_eq!(spare_actions(1), 95);
        assert_eq!(spare_actions(MAX_BATCH_PRODUCTS), 2);
        assert_eq!(spare_actions(40), 0);
    }

    #[test]
    fn the_cap_is_32_products() {
        assert_eq!(MAX_BATCH_PRODUCTS, 32);
    }

    #[test]
    fn integer_ids_are_taken_as_decimal_strings_and_defaults_apply() {
        let cmd = parse_create_order(&json(br#"{"product_id": 42, "address_id": "a1", "quantity": 2}"#)).unwrap();
        assert_eq!(cmd.lines[0].product_id.as_str(), "42");
        assert_eq!(cmd.payment_method, PaymentMethod::Wechat);
        assert_eq!(cmd.ttl_minutes, TtlMinutes::DEFAULT);
    }

    #[test]
    fn every_bad_field_is_named() {
        let err = parse_create_order(&json(
            br#"{"product_id": true, "quantity": "2", "payment_method": "cash", "ttl_minutes": 0}"#,
        ))
        .unwrap_err();
        assert_eq!(
            fields(err),
            ["product_id", "quantity", "address_id", "payment_method", "ttl_minutes"]
        );
    }

    #[test]
    fn batch_lines_merge_in_order_of_first_appearance() {
        let cmd = parse_create_batch(&json(br#"{"items": [{"product_id": "b", "quantity": 1}, {"product_id": "a", "quantity": 2}, {"product_id": "b", "quantity": 3}], "address_id": "a1"}"#))
        .unwrap();
        let got: Vec<_> = cmd
            .lines
            .iter()
            .map(|l| (l.product_id.as_str(), l.quantity.get()))
            .collect();
        assert_eq!(got, [("b", 4), ("a", 2)]);
    }

    #[test]
    fn a_merged_quantity_over_999_is_refused() {
        let err = parse_create_batch(&json(br#"{"items": [{"product_id": "b", "quantity": 500}, {"product_id": "b", "quantity": 500}], "address_id": "a1"}"#))
        .unwrap_err();
        assert_eq!(fields(err), ["items[0].quantity"]);
    }

    #[test]
    fn too_many_distinct_products_is_batch_too_large() {
        let items: Vec<_> = (0..=MAX_BATCH_PRODUCTS)
            .map(|i| serde_json::json!({"product_id": format!("p{i}"), "quantity": 1}))
            .collect();
        let body = serde_json::json!({"items": items, "address_id": "a1"}).to_string();
        assert!(matches!(
            parse_create_batch(&json(body.as_bytes())),
            Err(ServiceError::BatchTooLarge { max: 32, given: 33 })
        ));
    }

    proptest::proptest! {
        /// Merging keeps every product's total, lists each product once in order of first appearance,
        /// and refuses exactly the batches whose merged totals leave 1..=999.
        #[test]
        fn merging_preserves_totals_and_first_appearance(lines in proptest::collection::vec((0u8..6, 1u32..=999), 1..20)) {
            let items: Vec<_> = lines.iter().map(|(p, q)| serde_json::json!({"product_id": format!("p{p}"), "quantity": q})).collect();
            let body = serde_json::json!({"items": items, "address_id": "a1"}).to_string();
            let mut expected: Vec<(String, u32)> = Vec::new();
            for (p, q) in &lines {
                let id = format!("p{p}");
                match expected.iter_mut().find(|(e, _)| *e == id) {
                    Some((_, total)) => *total += q,
                    None => expected.push((id, *q)),
                }
            }
            let over = expected.iter().any(|(_, total)| *total > Quantity::MAX);
            match parse_create_batch(&json(body.as_bytes())) {
                Ok(cmd) => {
                    proptest::prop_assert!(!over);
                    let got: Vec<_> = cmd.lines.iter().map(|l| (l.product_id.to_string(), l.quantity.get())).collect();
                    proptest::prop_assert_eq!(got, expected);
                }
                Err(ServiceError::Validation(_)) => proptest::prop_assert!(over),
                Err(other) => proptest::prop_assert!(false, "unexpected {:?}", other),
            }
        }
    }
}
