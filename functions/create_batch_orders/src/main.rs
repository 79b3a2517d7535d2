//! Lambda entry point: wiring only (see `infra::lambda::run_order_placing_function`).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    infra::lambda::run_order_placing_function(|services, req| Box::pin(create_batch_orders::handle(services, req)))
        .await
}
