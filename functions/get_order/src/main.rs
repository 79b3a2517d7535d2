//! Lambda entry point: wiring only (see `infra::lambda::run_api_function`).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    infra::lambda::run_api_function(|services, req| Box::pin(get_order::handle(services, req))).await
}
