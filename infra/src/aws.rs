//! The AWS SDK configuration every client shares, including who retries what: the SDK retries a single
//! request that was throttled, timed out or could not connect (standard mode: 4 attempts, exponential
//! backoff with full jitter from 25 ms, capped at 1 s), each attempt bounded by 2 s and the whole call by
//! 5 s, well inside a function's 10 s; the DynamoDB adapter retries a transaction cancelled by conflicting
//! transactions; a failed condition is never retried blindly (the domain judges it).

use std::time::Duration;

use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::Region;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;

/// The SDK's HTTP client: hyper over rustls with ring, the one crypto library of the functions.
pub fn http_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

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

/// What a local endpoint (DynamoDB Local, moto) gets when the environment lacks it: dummy credentials
/// without `AWS_ACCESS_KEY_ID`, `us-east-1` without `AWS_REGION` or `AWS_DEFAULT_REGION`. Nothing
/// without an endpoint: AWS itself needs the real ones.
fn local_stand_ins(endpoint: Option<&str>) -> (Option<Credentials>, Option<Region>) {
    let unset = |name: &str| !matches!(std::env::var(name), Ok(v) if !v.is_empty());
    if endpoint.is_none() {
        return (None, None);
    }
    let credentials = unset("AWS_ACCESS_KEY_ID").then(|| Credentials::new("local", "local", None, None, "local"));
    let region = (unset("AWS_REGION") && unset("AWS_DEFAULT_REGION")).then(|| Region::new("us-east-1"));
    (credentials, region)
}

/// The AWS configuration a function reads from its environment, pointed at `endpoint` when given
/// (DynamoDB Local, moto): the region from `AWS_REGION` (or `AWS_DEFAULT_REGION`) and the credentials
/// from `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`, which is where Lambda puts
/// the execution role's. Nothing else is consulted (no profile files, IMDS, container or SSO
/// credentials), which keeps those providers out of the function binaries (BENCHMARKS.md). A local
/// endpoint gets [`local_stand_ins`] for what the environment lacks.
pub fn config(endpoint: Option<&str>) -> aws_config::SdkConfig {
    let (stand_in_credentials, stand_in_region) = local_stand_ins(endpoint);
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let region = var("AWS_REGION")
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .map(Region::new)
        .or(stand_in_region);
    let credentials = match stand_in_credentials {
        Some(credentials) => SharedCredentialsProvider::new(credentials),
        None => SharedCredentialsProvider::new(EnvironmentVariableCredentialsProvider::new()),
    };
    let mut config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .http_client(http_client())
        .region(region)
        .credentials_provider(credentials)
        .retry_config(retry_config())
        .timeout_config(timeout_config());
    config.set_endpoint_url(endpoint.map(str::to_owned));
    config.build()
}

/// For the local server (which may run on a developer's machine against a real table, e.g.
/// `--load-only`): the SDK's whole default chain (environment, profile files, container and instance
/// credentials), pointed at `endpoint` when given, with [`local_stand_ins`] for a local endpoint.
#[cfg(feature = "local")]
pub async fn config_from_default_chain(endpoint: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http_client())
        .retry_config(retry_config())
        .timeout_config(timeout_config());
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let (credentials, region) = local_stand_ins(endpoint);
    if let Some(credentials) = credentials {
        loader = loader.credentials_provider(credentials);
    }
    if let Some(region) = region {
        loader = loader.region(region);
    }
    loader.load().await
}

/// How long a function's init waits for its warm-up request (see `DynamoStore::warm_up`).
pub const WARM_UP_LIMIT: Duration = Duration::from_secs(2);

/// Sends a client's warm-up `request` during init, waiting at most [`WARM_UP_LIMIT`], and logs how it
/// went: at debug level when it worked, as a warning when it did not (the function still starts; its
/// first request connects).
pub async fn warm_up<T, E: std::error::Error + 'static>(
    service: &str,
    request: impl std::future::Future<Output = Result<T, E>>,
) {
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(WARM_UP_LIMIT, request).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(Ok(_)) => tracing::debug!(service, elapsed_ms, "connection opened during init"),
        Ok(Err(err)) => tracing::warn!(
            service,
            elapsed_ms,
            error = %aws_sdk_dynamodb::error::DisplayErrorContext(&err),
            "could not open the connection during init; the first request will"
        ),
        Err(_) => tracing::warn!(
            service,
            elapsed_ms,
            "no answer to the warm-up request in time; the first request will connect"
        ),
    }
}
