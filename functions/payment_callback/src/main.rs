//! Lambda entry point: wiring only.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    infra::telemetry::init();
    let receiver = payment_callback::Receiver::from_env().await?;
    infra::lambda::run_http(receiver, |rx, req| Box::pin(payment_callback::handle_any(rx, req))).await
}
