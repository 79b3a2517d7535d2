//! The supplier stock port until the supplier's HTTP client is wired in: with no supplier configured,
//! supplier-held products cannot be checked, so orders for them are refused with `503
//! SUPPLIER_UNAVAILABLE` and nothing is written. Locally stocked products are unaffected.

use async_trait::async_trait;
use domain::ids::ProductId;
use domain::ports::{SupplierStock, SupplierUnavailable};

/// Answers every stock question with "unavailable".
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSupplier;

#[async_trait]
impl SupplierStock for NoSupplier {
    async fn available(&self, product: &ProductId) -> Result<u32, SupplierUnavailable> {
        Err(SupplierUnavailable(
            format!("no supplier stock service is configured (product {product})").into(),
        ))
    }
}
