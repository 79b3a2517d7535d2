//! Lambda entry point: wiring only. Configuration and the DynamoDB client are built once per cold start.

use std::convert::Infallible;

use lambda_http::{run, service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    infra::telemetry::init();
    let services = infra::dynamodb::services_from_env().await?;
    let services = &services;
    run(service_fn(move |req: Request| async move {
        Ok::<_, Infallible>(create_batch_orders::handle(services, req).await)
    }))
    .await
}
