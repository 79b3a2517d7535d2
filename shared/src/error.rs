//! The error catalogue (docs/api.md §6): one enum of everything a use case can answer with, and for each
//! its stable code, HTTP status and the seed's message. The HTTP shell only renders what this says.

use serde::Serialize;
use serde_json::{json, Value};

use crate::ids::ProductId;
use crate::order::OrderStatus;

pub use crate::catalog::Shortage;
pub use crate::field::BoxError;

/// A stable, machine-readable error code with its HTTP status and message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// Malformed JSON, missing or out-of-range field.
    ValidationError,
    /// Unknown or inactive product.
    ProductNotFound,
    /// Unknown address or another user's.
    AddressInvalid,
    /// Payment asked for an order not in `pending`.
    InvalidOrderStatus,
    /// Payment asked for an order past its deadline.
    OrderExpired,
    /// Amount differs from the order total by more than 0.01.
    AmountMismatch,
    /// Amount is not a finite, non-negative decimal with at most two places.
    InvalidAmountFormat,
    /// Too many distinct products for one transaction.
    BatchTooLarge,
    /// No identity.
    Unauthenticated,
    /// Callback signature or timestamp wrong.
    InvalidSignature,
    /// Unknown order, or another user's.
    OrderNotFound,
    /// Cancel asked for an order not in `pending`.
    OrderNotCancellable,
    /// Checkout of a payment that is not open, or of another scene than the one it was checked out in.
    PaymentNotPayable,
    /// An operator route without the operator scope.
    Forbidden,
    /// An operator action the order's state machine refuses.
    OrderTransitionNotAllowed,
    /// Not enough stock.
    InsufficientStock,
    /// Body over the limit.
    PayloadTooLarge,
    /// No such route.
    NotFound,
    /// The route exists, the method does not.
    MethodNotAllowed,
    /// The request took too long to arrive.
    RequestTimeout,
    /// The request target is too long.
    UriTooLong,
    /// Too many or too large headers.
    HeadersTooLarge,
    /// Same idempotency key, different request.
    IdempotencyKeyReused,
    /// Supplier stock API down or slow.
    SupplierUnavailable,
    /// WeChat Pay or Alipay down, slow or refusing for load.
    ProviderUnavailable,
    /// Store throttling or conflicts that outlasted retries.
    ServiceBusy,
    /// Anything else.
    InternalError,
}

impl ErrorCode {
    /// The code as written in responses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ValidationError => "VALIDATION_ERROR",
            Self::ProductNotFound => "PRODUCT_NOT_FOUND",
            Self::AddressInvalid => "ADDRESS_INVALID",
            Self::InvalidOrderStatus => "INVALID_ORDER_STATUS",
            Self::OrderExpired => "ORDER_EXPIRED",
            Self::AmountMismatch => "AMOUNT_MISMATCH",
            Self::InvalidAmountFormat => "INVALID_AMOUNT_FORMAT",
            Self::BatchTooLarge => "BATCH_TOO_LARGE",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::InvalidSignature => "INVALID_SIGNATURE",
            Self::OrderNotFound => "ORDER_NOT_FOUND",
            Self::OrderNotCancellable => "ORDER_NOT_CANCELLABLE",
            Self::PaymentNotPayable => "PAYMENT_NOT_PAYABLE",
            Self::Forbidden => "FORBIDDEN",
            Self::OrderTransitionNotAllowed => "ORDER_TRANSITION_NOT_ALLOWED",
            Self::InsufficientStock => "INSUFFICIENT_STOCK",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::NotFound => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::RequestTimeout => "REQUEST_TIMEOUT",
            Self::UriTooLong => "URI_TOO_LONG",
            Self::HeadersTooLarge => "HEADERS_TOO_LARGE",
            Self::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            Self::SupplierUnavailable => "SUPPLIER_UNAVAILABLE",
            Self::ProviderUnavailable => "PROVIDER_UNAVAILABLE",
            Self::ServiceBusy => "SERVICE_BUSY",
            Self::InternalError => "INTERNAL_ERROR",
        }
    }

    /// The HTTP status that carries it.
    pub fn http_status(self) -> u16 {
        match self {
            Self::ValidationError
            | Self::ProductNotFound
            | Self::AddressInvalid
            | Self::InvalidOrderStatus
            | Self::OrderExpired
            | Self::AmountMismatch
            | Self::InvalidAmountFormat
            | Self::BatchTooLarge => 400,
            Self::Unauthenticated | Self::InvalidSignature => 401,
            Self::Forbidden => 403,
            Self::OrderNotFound | Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::RequestTimeout => 408,
            Self::UriTooLong => 414,
            Self::HeadersTooLarge => 431,
            Self::InsufficientStock
            | Self::OrderNotCancellable
            | Self::PaymentNotPayable
            | Self::OrderTransitionNotAllowed => 409,
            Self::PayloadTooLarge => 413,
            Self::IdempotencyKeyReused => 422,
            Self::SupplierUnavailable | Self::ProviderUnavailable | Self::ServiceBusy => 503,
            Self::InternalError => 500,
        }
    }

    /// The seed's message for people.
    pub fn message(self) -> &'static str {
        match self {
            Self::ValidationError => "请求参数无效",
            Self::ProductNotFound => "商品不存在",
            Self::AddressInvalid => "地址无效",
            Self::InvalidOrderStatus => "订单状态不允许支付",
            Self::OrderExpired => "订单已过期",
            Self::AmountMismatch => "支付金额与订单金额不一致",
            Self::InvalidAmountFormat => "无效的支付金额格式",
            Self::BatchTooLarge => "批量订单商品过多",
            Self::Unauthenticated => "未认证",
            Self::InvalidSignature => "签名无效",
            Self::OrderNotFound => "订单不存在",
            Self::OrderNotCancellable => "订单状态不允许取消",
            Self::PaymentNotPayable => "支付单不可支付",
            Self::Forbidden => "无权限",
            Self::OrderTransitionNotAllowed => "订单状态不允许此操作",
            Self::InsufficientStock => "库存不足",
            Self::PayloadTooLarge => "请求体过大",
            Self::NotFound => "资源不存在",
            Self::MethodNotAllowed => "请求方法不允许",
            Self::RequestTimeout => "请求超时",
            Self::UriTooLong => "请求地址过长",
            Self::HeadersTooLarge => "请求头过大",
            Self::IdempotencyKeyReused => "幂等键已用于不同的请求",
            Self::SupplierUnavailable => "供应商库存服务不可用",
            Self::ProviderUnavailable => "支付服务暂不可用",
            Self::ServiceBusy => "服务繁忙",
            Self::InternalError => "系统异常",
        }
    }

    /// Seconds a client should wait before retrying, for the errors that are worth retrying.
    pub fn retry_after_seconds(self) -> Option<u32> {
        match self {
            Self::SupplierUnavailable | Self::ProviderUnavailable => Some(5),
            Self::ServiceBusy => Some(1),
            _ => None,
        }
    }
}

pub use crate::field::FieldError;

/// Everything a use case can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed; each field error names a field.
    #[error("invalid request: {} field error(s)", .0.len())]
    Validation(Vec<FieldError>),
    /// Unknown or inactive product.
    #[error("product {0} not found or inactive")]
    ProductNotFound(ProductId),
    /// Unknown address or another user's.
    #[error("address unknown or not the caller's")]
    AddressInvalid,
    /// The order's status does not allow paying it.
    #[error("order status {0} does not allow payment")]
    InvalidOrderStatus(OrderStatus),
    /// The order's payment deadline has passed.
    #[error("order payment deadline has passed")]
    OrderExpired,
    /// A given amount differs from the order total.
    #[error("amount differs from the order total")]
    AmountMismatch,
    /// A given amount is malformed.
    #[error("amount is malformed")]
    InvalidAmountFormat,
    /// Too many distinct products for one atomic write.
    #[error("batch has {given} distinct products; at most {max}")]
    BatchTooLarge {
        /// The cap.
        max: usize,
        /// What the request had.
        given: usize,
    },
    /// No identity in the request.
    #[error("no authenticated user")]
    Unauthenticated,
    /// A callback's signature or timestamp is wrong.
    #[error("callback signature invalid")]
    InvalidSignature,
    /// Unknown order, or another user's.
    #[error("order not found")]
    OrderNotFound,
    /// The order's status does not allow cancelling it.
    #[error("order status {0} does not allow cancelling")]
    OrderNotCancellable(OrderStatus),
    /// The payment cannot be checked out: not open, past its expiry, its order not pending, or already
    /// checked out in another scene; why, in the payment's status as the caller sees it.
    #[error("payment not payable ({0})")]
    PaymentNotPayable(String),
    /// The caller lacks the operator scope.
    #[error("the operator scope is required")]
    Forbidden,
    /// The order's state machine does not allow the operator's action from where the order is.
    #[error("order status {from} does not allow moving to {to}")]
    OrderTransitionNotAllowed {
        /// Where the order is.
        from: OrderStatus,
        /// Where the action would take it.
        to: OrderStatus,
        /// Where it may go from there.
        allowed: Vec<OrderStatus>,
    },
    /// Not enough stock for one or more products.
    #[error("insufficient stock for {} product(s)", .0.len())]
    InsufficientStock(Vec<Shortage>),
    /// Body over the limit.
    #[error("request body over {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Same idempotency key used for another request.
    #[error("idempotency key reused for a different request")]
    IdempotencyKeyReused,
    /// No such route.
    #[error("no such route")]
    NotFound,
    /// The route does not take this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request did not arrive in time.
    #[error("request timed out")]
    RequestTimeout,
    /// The request target is over the limit.
    #[error("request target over {limit} bytes")]
    UriTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// The headers are over the limits.
    #[error("headers over the limits")]
    HeadersTooLarge {
        /// The most headers accepted.
        max_headers: usize,
        /// The most bytes of headers accepted.
        max_bytes: usize,
    },
    /// The supplier's stock API is down or slow.
    #[error("supplier stock service unavailable")]
    SupplierUnavailable(#[source] BoxError),
    /// WeChat Pay or Alipay is down, slow, rate-limiting or answering a system error.
    #[error("payment provider unavailable")]
    ProviderUnavailable(#[source] BoxError),
    /// The store throttled or conflicted past our retries.
    #[error("store busy")]
    ServiceBusy(#[source] BoxError),
    /// Anything else: logged in full, answered opaquely.
    #[error("internal error")]
    Internal(#[source] BoxError),
}

impl ServiceError {
    /// Wraps any error as an internal one.
    pub fn internal(err: impl Into<BoxError>) -> Self {
        ServiceError::Internal(err.into())
    }

    /// A validation error on one field.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError::Validation(vec![FieldError::new(field, message)])
    }

    /// The catalogue entry this error answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Validation(_) => ErrorCode::ValidationError,
            Self::ProductNotFound(_) => ErrorCode::ProductNotFound,
            Self::AddressInvalid => ErrorCode::AddressInvalid,
            Self::InvalidOrderStatus(_) => ErrorCode::InvalidOrderStatus,
            Self::OrderExpired => ErrorCode::OrderExpired,
            Self::AmountMismatch => ErrorCode::AmountMismatch,
            Self::InvalidAmountFormat => ErrorCode::InvalidAmountFormat,
            Self::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
            Self::Unauthenticated => ErrorCode::Unauthenticated,
            Self::InvalidSignature => ErrorCode::InvalidSignature,
            Self::OrderNotFound => ErrorCode::OrderNotFound,
            Self::OrderNotCancellable(_) => ErrorCode::OrderNotCancellable,
            Self::PaymentNotPayable(_) => ErrorCode::PaymentNotPayable,
            Self::Forbidden => ErrorCode::Forbidden,
            Self::OrderTransitionNotAllowed { .. } => ErrorCode::OrderTransitionNotAllowed,
            Self::InsufficientStock(_) => ErrorCode::InsufficientStock,
            Self::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            Self::IdempotencyKeyReused => ErrorCode::IdempotencyKeyReused,
            Self::NotFound => ErrorCode::NotFound,
            Self::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Self::RequestTimeout => ErrorCode::RequestTimeout,
            Self::UriTooLong { .. } => ErrorCode::UriTooLong,
            Self::HeadersTooLarge { .. } => ErrorCode::HeadersTooLarge,
            Self::SupplierUnavailable(_) => ErrorCode::SupplierUnavailable,
            Self::ProviderUnavailable(_) => ErrorCode::ProviderUnavailable,
            Self::ServiceBusy(_) => ErrorCode::ServiceBusy,
            Self::Internal(_) => ErrorCode::InternalError,
        }
    }

    /// Structured detail safe to show the caller (never a source error's text).
    pub fn details(&self) -> Option<Value> {
        match self {
            Self::Validation(fields) => Some(json!({ "fields": fields })),
            Self::ProductNotFound(id) => Some(json!({ "product_id": id })),
            Self::InvalidOrderStatus(status) | Self::OrderNotCancellable(status) => Some(json!({ "status": status })),
            Self::PaymentNotPayable(status) => Some(json!({ "status": status })),
            Self::OrderTransitionNotAllowed { from, to, allowed } => {
                Some(json!({ "from": from, "to": to, "allowed": allowed }))
            }
            Self::BatchTooLarge { max, given } => Some(json!({ "max_distinct_products": max, "given": given })),
            Self::InsufficientStock(shortages) => Some(json!(shortages)),
            Self::PayloadTooLarge { limit } | Self::UriTooLong { limit } => Some(json!({ "max_bytes": limit })),
            Self::HeadersTooLarge { max_headers, max_bytes } => {
                Some(json!({ "max_headers": max_headers, "max_bytes": max_bytes }))
            }
            _ => None,
        }
    }

    /// The response body: `{"error": {"code", "message", "details"}, "request_id"}`.
    pub fn to_body(&self, request_id: &str) -> Value {
        let code = self.code();
        json!({
            "error": { "code": code.as_str(), "message": code.message(), "details": self.details() },
            "request_id": request_id,
        })
    }

    /// Logs the error at the seed's level: stock shortages and system faults at error, a refused order
    /// status at warning, plain bad input at info. Internal errors carry their whole `source()` chain.
    pub fn log(&self, request_id: &str) {
        let code = self.code().as_str();
        match self {
            Self::InsufficientStock(shortages) => {
                tracing::error!(request_id, code, shortages = %json!(shortages), "insufficient stock")
            }
            Self::InvalidOrderStatus(status) => {
                tracing::warn!(request_id, code, %status, "order status does not allow payment")
            }
            Self::OrderNotCancellable(status) => {
                tracing::warn!(request_id, code, %status, "order status does not allow cancelling")
            }
            Self::OrderTransitionNotAllowed { from, to, .. } => {
                tracing::warn!(request_id, code, %from, %to, "order status does not allow the operator's action")
            }
            Self::SupplierUnavailable(source)
            | Self::ProviderUnavailable(source)
            | Self::ServiceBusy(source)
            | Self::Internal(source) => {
                tracing::error!(request_id, code, error = %error_chain(source.as_ref()), "request failed")
            }
            _ => tracing::info!(request_id, code, "request refused"),
        }
    }
}

impl From<crate::idempotency::KeyError> for ServiceError {
    fn from(err: crate::idempotency::KeyError) -> Self {
        ServiceError::field("Idempotency-Key", err.0)
    }
}

impl From<crate::callback::InvalidSignature> for ServiceError {
    fn from(_: crate::callback::InvalidSignature) -> Self {
        ServiceError::InvalidSignature
    }
}

impl From<crate::callback::GenericBodyError> for ServiceError {
    fn from(err: crate::callback::GenericBodyError) -> Self {
        match err {
            crate::callback::GenericBodyError::Amount => ServiceError::InvalidAmountFormat,
            crate::callback::GenericBodyError::Fields(fields) => ServiceError::Validation(fields),
        }
    }
}

impl From<crate::ports::StoreError> for ServiceError {
    fn from(err: crate::ports::StoreError) -> Self {
        match err {
            crate::ports::StoreError::Busy(source) => ServiceError::ServiceBusy(source),
            crate::ports::StoreError::Backend(source) => ServiceError::Internal(source),
        }
    }
}

/// `outer: inner: innermost`, for logs.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_catalogue_shape() {
        let err = ServiceError::InsufficientStock(vec![Shortage {
            product_id: ProductId::parse("p1").unwrap(),
            requested: 3,
            available: 1,
        }]);
        assert_eq!(err.code().http_status(), 409);
        assert_eq!(
            err.to_body("req-1"),
            json!({
                "error": {
                    "code": "INSUFFICIENT_STOCK",
                    "message": "库存不足",
                    "details": [{"product_id": "p1", "requested": 3, "available": 1}],
                },
                "request_id": "req-1",
            })
        );
    }

    #[test]
    fn internal_errors_never_show_their_source() {
        let err = ServiceError::internal("table orders-prod: AccessDenied");
        let body = err.to_body("r").to_string();
        assert!(!body.contains("AccessDenied"), "{body}");
        assert_eq!(err.code().http_status(), 500);
    }
}
