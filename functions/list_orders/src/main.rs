//! Lambda entry point: wiring only.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    infra::telemetry::init();
    let listing = list_orders::Listing::from_env().await?;
    infra::lambda::run_http(listing, |listing, req| Box::pin(list_orders::handle(listing, req))).await
}
