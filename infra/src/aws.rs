//! The AWS SDK configuration every client shares, including who retries what: the SDK retries a single
//! request that was throttled, timed out or could not connect (standard mode: 4 attempts, exponential
//! backoff with full jitter from 25 ms, capped at 1 s), each attempt bounded by 2 s and the whole call by
//! 5 s, well inside a function's 10 s; the DynamoDB adapter retries a transaction cancelled by conflicting
//! transactions; a failed condition is never retried blindly (the domain judges it).

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

/// The SDK's retry policy for every client.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(4)
        .with_initial_backoff(Duration::from_millis(25))
        .with_max_backoff(Duration::from_secs(1))
}

/// The SDK's timeouts for every client.
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
        .build()
}

/// The environment's AWS configuration, pointed at `endpoint` when given (DynamoDB Local, moto). A local
/// endpoint with no credentials or region in the environment gets dummy ones.
pub async fn config(endpoint: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(retry_config())
        .timeout_config(timeout_config());
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                "local", "local", None, None, "local",
            ));
        }
        if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
            loader = loader.region(aws_config::Region::new("us-east-1"));
        }
    }
    loader.load().await
}
