//! What the functions stand on: the store adapters behind the domain's ports, the HTTP edge the API
//! functions share, catalogue loading, configuration and logging.

pub mod catalog_file;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
pub mod http;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod supplier;
pub mod telemetry;
