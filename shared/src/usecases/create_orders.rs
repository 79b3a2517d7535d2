//! create_order and create_batch_orders: one order and one payment per distinct product, with the
//! stock taken, all in one atomic write.

use serde::Serialize;

use crate::catalog::{AddressSnapshot, Product, StockSource};
use crate::error::{ServiceError, Shortage};
use crate::ids::UserId;
use crate::order::{Order, OrderDraft};
use crate::payment::Payment;
use crate::ports::{NewOrder, PlaceError, Placement};
use crate::usecases::request::CreateOrders;
use crate::usecases::Services;

/// What a successful create returns, orders and payments in request order.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    /// One per distinct product.
    pub orders: Vec<Order>,
    /// One per order, same order.
    pub payments: Vec<Payment>,
}

/// How many times a write refused because a product's price moved under us is tried again.
const STALE_READ_RETRIES: usize = 1;

/// Creates the orders and payments for `cmd` on behalf of `user`.
///
/// Checks run in the seed's order (products, then address, then stock). Nothing is written unless
/// everything passes; the store's conditions re-check products, address and stock inside the write.
pub async fn create_orders(svc: &Services, user: &UserId, cmd: &CreateOrders) -> Result<Created, ServiceError> {
    let mut attempt = 0;
    loop {
        let products = load_products(svc, cmd).await?;
        let address = match svc.catalog.address(&cmd.address_id).await? {
            Some(a) if &a.user_id == user => a,
            _ => return Err(ServiceError::AddressInvalid),
        };
        check_supplier_stock(svc, cmd, &products).await?;

        let now = svc.clock.now();
        let snapshot = AddressSnapshot::from(&address);
        let new_orders: Vec<NewOrder> = cmd
            .lines
            .iter()
            .zip(&products)
            .map(|(line, product)| {
                let draft = OrderDraft {
                    user_id: user,
                    product,
                    quantity: line.quantity,
                    address: snapshot.clone(),
                    ttl_minutes: cmd.ttl_minutes,
                };
                let order = Order::new_pending(draft, now);
                let payment = Payment::create_for_order(&order, cmd.payment_method, cmd.ttl_minutes, now);
                NewOrder { order, payment }
            })
            .collect();
        let placement = Placement {
            user_id: user.clone(),
            address_id: cmd.address_id.clone(),
            orders: new_orders,
        };

        match svc.orders.place(&placement).await {
            Ok(()) => {
                let (orders, payments) = placement.orders.into_iter().map(|n| (n.order, n.payment)).unzip();
                return Ok(Created { orders, payments });
            }
            Err(PlaceError::ProductChanged(id)) if attempt < STALE_READ_RETRIES => {
                tracing::info!(product_id = %id, "product changed between read and write; retrying");
                attempt += 1;
            }
            Err(PlaceError::ProductChanged(id)) => {
                return Err(ServiceError::ServiceBusy(format!("product {id} kept changing").into()))
            }
            Err(PlaceError::ProductUnavailable(id)) => return Err(ServiceError::ProductNotFound(id)),
            Err(PlaceError::AddressInvalid) => return Err(ServiceError::AddressInvalid),
            Err(PlaceError::InsufficientStock(shortages)) => return Err(ServiceError::InsufficientStock(shortages)),
            Err(PlaceError::Store(err)) => return Err(err.into()),
        }
    }
}

/// Reads every product of the request; the first unknown or inactive one is the error.
async fn load_products(svc: &Services, cmd: &CreateOrders) -> Result<Vec<Product>, ServiceError> {
    let mut products = Vec::with_capacity(cmd.lines.len());
    for line in &cmd.lines {
        match svc.catalog.product(&line.product_id).await? {
            Some(p) if p.active => products.push(p),
            _ => return Err(ServiceError::ProductNotFound(line.product_id.clone())),
        }
    }
    Ok(products)
}

/// Asks the supplier about every supplier-held product. If any is short, the 409 also lists the
/// local products that the last read shows short, so one answer names every short product.
async fn check_supplier_stock(svc: &Services, cmd: &CreateOrders, products: &[Product]) -> Result<(), ServiceError> {
    let mut shortages = Vec::new();
    for (line, product) in cmd.lines.iter().zip(products) {
        if product.stock_source == StockSource::Supplier {
            let available = svc
                .supplier
                .available(&product.id)
                .await
                .map_err(|e| ServiceError::SupplierUnavailable(Box::new(e)))?;
            if available < line.quantity.get() {
                shortages.push(Shortage {
                    product_id: product.id.clone(),
                    requested: line.quantity.get(),
                    available,
                });
            }
        }
    }
    if shortages.is_empty() {
        return Ok(());
    }
    for (line, product) in cmd.lines.iter().zip(products) {
        if product.stock_source == StockSource::Local && product.stock < line.quantity.get() {
            shortages.push(Shortage {
                product_id: product.id.clone(),
                requested: line.quantity.get(),
                available: product.stock,
            });
        }
    }
    shortages.sort_by_key(|s| cmd.lines.iter().position(|l| l.product_id == s.product_id));
    Err(ServiceError::InsufficientStock(shortages))
}
