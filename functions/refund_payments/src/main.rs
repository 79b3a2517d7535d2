//! Lambda entry point: wiring only.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    infra::telemetry::init();
    let services = infra::lambda::services_with_providers(&infra::lambda::Config::from_env()?).await?;
    infra::lambda::run_scheduled(services, |svc, event, deadline| {
        Box::pin(refund_payments::handle(svc, event, deadline))
    })
    .await
}
