//! Lambda entry point: wiring only.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    infra::telemetry::init();
    let admin = admin_orders::Admin::from_env().await?;
    infra::lambda::run_http(admin, |admin, req| Box::pin(admin_orders::handle(admin, req))).await
}
