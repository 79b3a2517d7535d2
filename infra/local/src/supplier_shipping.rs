//! The local server's stand-in for the supplier learning of orders: after a placement succeeds, the fake
//! supplier's figure for each supplier-held product in it goes down by the quantity ordered.

use std::sync::Arc;

use async_trait::async_trait;
use domain::idempotency::{IdempotencyKey, IdempotencyRecord};
use domain::ports::{OrderStore, OrderWithPayments, PlaceError, Placement, StoreError};
use domain::{OrderId, StockSource, UserId};
use infra::fake_supplier::FakeSupplier;

/// Places through `inner`, then takes supplier-held quantities off the fake supplier.
pub struct Shipping {
    /// The real store.
    pub inner: Arc<dyn OrderStore>,
    /// The fake supplier.
    pub fake: FakeSupplier,
}

#[async_trait]
impl OrderStore for Shipping {
    async fn place(&self, placement: &Placement) -> Result<(), PlaceError> {
        self.inner.place(placement).await?;
        for line in &placement.orders {
            if line.order.stock_source == StockSource::Supplier {
                self.fake
                    .take(line.order.product_id.as_str(), line.order.quantity.get());
            }
        }
        Ok(())
    }

    async fn order_with_payments(&self, id: &OrderId) -> Result<Option<OrderWithPayments>, StoreError> {
        self.inner.order_with_payments(id).await
    }

    async fn idempotency_record(
        &self,
        user: &UserId,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.inner.idempotency_record(user, key).await
    }
}
