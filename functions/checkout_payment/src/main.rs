//! Lambda entry point: wiring only (see `infra::lambda::run_provider_function`).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    infra::lambda::run_provider_function(|services, req| Box::pin(checkout_payment::handle(services, req))).await
}
