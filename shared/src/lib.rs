//! The order and payment domain: money, ids, orders and payments with their state machines, the error
//! catalogue, the ports the use cases need, and the use cases themselves. No AWS, HTTP or SQL here.

pub mod callback;
pub mod catalog;
pub mod change;
pub mod checkout;
pub mod closing;
pub mod error;
pub mod field;
pub mod idempotency;
pub mod ids;
pub mod money;
pub mod operator;
pub mod order;
pub mod payment;
pub mod placement;
pub mod ports;
pub mod refund;
pub mod stock;
pub mod time;
pub mod usecases;

pub use callback::{EventId, EventSource, PaymentEvent, ReportedStatus, SignatureVerifier};
pub use catalog::{Address, AddressSnapshot, Product, StockSource};
pub use error::{ErrorCode, FieldError, ServiceError, Shortage};
pub use ids::{AddressId, OrderId, PaymentId, PaymentMethod, ProductId, Quantity, TtlMinutes, UserId};
pub use money::Money;
pub use order::{allowed_transitions, can_transition, HistoryEntry, Order, OrderStatus};
pub use payment::{Payment, PaymentLog, PaymentStatus};
pub use time::Timestamp;
