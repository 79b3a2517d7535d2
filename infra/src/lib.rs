//! What the functions stand on: the store adapters behind the domain's ports, the callback queue, the
//! HTTP edge the API functions share, the Lambda wiring, metrics, catalogue loading and logging.

#[cfg(feature = "dynamodb")]
pub mod aws;
pub mod breaker;
pub mod cache;
pub mod catalog_file;
pub mod checkout;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
pub mod fifo;
pub mod http;
#[cfg(feature = "dynamodb")]
pub mod lambda;
pub mod metrics;
pub mod providers;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(feature = "dynamodb")]
pub mod sqs;
pub mod supplier;
pub mod telemetry;
pub mod tls;
