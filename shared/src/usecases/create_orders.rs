//! create_order and create_batch_orders: one order and one payment per distinct product, with the
//! stock taken, all in one atomic write.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use crate::catalog::{AddressSnapshot, Product, StockSource};
use crate::error::{ServiceError, Shortage};
use crate::idempotency::{IdempotencyRecord, IdempotentRequest, KeyUse, StoredResponse};
use crate::ids::{ProductId, UserId};
use crate::order::{Order, OrderDraft};
use crate::payment::Payment;
use crate::placement::{NewOrder, Placement};
use crate::ports::PlaceError;
use crate::ports::{Catalog, Clock, Metric, Metrics, OrderStore, StockKind, SupplierStock};
use crate::stock;
use crate::usecases::idempotent::{at_most_once, Answered, Attempt};
use crate::usecases::request::CreateOrders;

/// The ports placing orders needs: the catalogue, the store that places, the supplier's stock API and
/// the time.
#[derive(Clone, Copy)]
pub struct Placing<'a> {
    /// Products and addresses.
    pub catalog: &'a dyn Catalog,
    /// Where the placement is written, and idempotency records read.
    pub orders: &'a dyn OrderStore,
    /// Supplier-held stock.
    pub supplier: &'a dyn SupplierStock,
    /// The time.
    pub clock: &'a dyn Clock,
    /// Stock checks and their failures are counted here.
    pub metrics: &'a dyn Metrics,
}

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

/// A create request's idempotency key, and how its answer is rendered (the rendering is stored with
/// the orders, in the same write, and replayed byte for byte).
pub struct Idempotency<'a> {
    /// The key, route and body hash.
    pub request: &'a IdempotentRequest,
    /// The `201` body for what was created.
    pub render: &'a (dyn Fn(&Created) -> Result<Value, ServiceError> + Send + Sync),
}

/// Creates the orders and payments for `cmd` on behalf of `user`, at most once per idempotency key.
///
/// Checks run in the seed's order (products, then address, then stock). Nothing is written unless
/// everything passes; the store's conditions re-check products, address and stock inside the write,
/// and the key's record is written in that same write, so concurrent retries cannot both create.
pub async fn create_orders(
    ports: &Placing<'_>,
    user: &UserId,
    cmd: &CreateOrders,
    idempotency: Option<Idempotency<'_>>,
) -> Result<Answered<Created>, ServiceError> {
    let attempt = place(ports, user, cmd, idempotency.as_ref()).await;
    let request = idempotency.as_ref().map(|i| i.request);
    at_most_once(ports.orders, ports.clock, user, request, attempt).await
}

async fn place(
    ports: &Placing<'_>,
    user: &UserId,
    cmd: &CreateOrders,
    idempotency: Option<&Idempotency<'_>>,
) -> Result<Attempt<Created>, ServiceError> {
    let ids: Vec<ProductId> = cmd.lines.iter().map(|l| l.product_id.clone()).collect();
    let mut attempt = 0;
    // Sharded lines (docs/api.md §19): the first try takes each from the shard its order id picks, without
    // reading any figure; after a short shard, the figures are read and the lines planned from them.
    let mut shard_figures: HashMap<ProductId, Vec<u32>> = HashMap::new();
    let mut plans = 0;
    loop {
        let (found, address) = ports.catalog.read(&ids, &cmd.address_id).await?;
        let products = found
            .into_iter()
            .zip(&ids)
            .map(|(product, id)| {
                product
                    .filter(|p| p.active)
                    .ok_or_else(|| ServiceError::ProductNotFound(id.clone()))
            })
            .collect::<Result<Vec<Product>, _>>()?;
        let address = match address {
            Some(a) if &a.user_id == user => a,
            _ => return Err(ServiceError::AddressInvalid),
        };
        let supplier_figures = check_supplier_stock(ports, cmd, &products).await?;

        let now = ports.clock.now();
        let snapshot = AddressSnapshot::from(&address);
        // Room in the one transaction for sharded lines to take from more than one shard.
        let mut spare = crate::usecases::request::spare_actions(cmd.lines.len());
        let new_orders: Vec<NewOrder> = cmd
            .lines
            .iter()
            .zip(&products)
            .zip(supplier_figures)
            .map(|((line, product), supplier_available)| {
                let draft = OrderDraft {
                    user_id: user,
                    product,
                    quantity: line.quantity,
                    address: snapshot.clone(),
                    ttl_minutes: cmd.ttl_minutes,
                };
                // Only a price beyond the catalogue's limit (docs/api.md §3) can get here.
                let mut order = Order::new_pending(draft, now)
                    .map_err(|too_large| ServiceError::field("quantity", format!("{}: {too_large}", product.id)))?;
                if product.is_sharded() {
                    order.stock_shards = match shard_figures.get(&product.id) {
                        None => stock::first_take(&order.id, product.shards, line.quantity.get()),
                        Some(figures) => {
                            let planned = stock::plan(figures, &order.id, plans, line.quantity.get(), 1 + spare);
                            planned.map_err(|unplanned| match unplanned {
                                stock::Unplanned::Short { available } => {
                                    ServiceError::InsufficientStock(vec![Shortage {
                                        product_id: product.id.clone(),
                                        requested: line.quantity.get(),
                                        available,
                                    }])
                                }
                                stock::Unplanned::TooThin => ServiceError::ServiceBusy(
                                    format!(
                                        "the stock of {} is spread over too many shards for one write",
                                        product.id
                                    )
                                    .into(),
                                ),
                            })?
                        }
                    };
                    spare -= order.stock_shards.len() - 1;
                }
                let payment = Payment::create_for_order(&order, cmd.payment_method, cmd.ttl_minutes, now);
                Ok(NewOrder {
                    order,
                    payment,
                    supplier_available,
                })
            })
            .collect::<Result<_, ServiceError>>()?;
        let (orders, payments) = new_orders.iter().map(|n| (n.order.clone(), n.payment.clone())).unzip();
        let created = Created { orders, payments };
        let record = match idempotency {
            Some(idempotency) => {
                let body = (idempotency.render)(&created)?.to_string();
                let response = StoredResponse { status: 201, body };
                Some(IdempotencyRecord::new(user, idempotency.request, response, now))
            }
            None => None,
        };
        let placement = Placement {
            user_id: user.clone(),
            address_id: cmd.address_id.clone(),
            orders: new_orders,
            idempotency: record,
        };

        let local_lines = products.iter().filter(|p| p.stock_source == StockSource::Local).count() as u64;
        ports.metrics.add(Metric::StockCheck(StockKind::Local), local_lines);
        let placed = ports.orders.place(&placement).await;
        if matches!(placed, Err(PlaceError::Store(_))) {
            ports
                .metrics
                .add(Metric::StockCheckFailed(StockKind::Local), local_lines);
        }
        match placed {
            Ok(()) => {
                let ids: Vec<&str> = created.orders.iter().map(|o| o.id.as_str()).collect();
                tracing::info!(user_id = %user, order_ids = %ids.join(","), "orders created");
                return Ok(Attempt::Made(created));
            }
            Err(PlaceError::Replay(response)) => return Ok(Attempt::KeyAnswered(KeyUse::Replay(response))),
            Err(PlaceError::KeyReused) => return Ok(Attempt::KeyAnswered(KeyUse::Reused)),
            // What was read (perhaps from a warm cache) no longer holds: forget it, read afresh, try once more.
            Err(
                stale
                @ (PlaceError::ProductChanged(_) | PlaceError::ProductUnavailable(_) | PlaceError::AddressInvalid),
            ) if attempt < STALE_READ_RETRIES => {
                tracing::info!(refusal = %stale, "catalogue changed between read and write; reading again");
                ports.catalog.forget(&ids, Some(&cmd.address_id));
                attempt += 1;
            }
            // A shard was short: read the figures of those products' shards and plan them again.
            Err(PlaceError::ShardsShort(short)) if plans < stock::SHARD_PLANS => {
                plans += 1;
                for id in short {
                    let Some(product) = products.iter().find(|p| p.id == id) else {
                        continue;
                    };
                    let figures = ports.catalog.shard_stock(&id, product.shards).await?;
                    shard_figures.insert(id, figures);
                }
            }
            // A shard was busy with another order's write: try other shards at once (new order ids pick
            // anew), without reading anything.
            Err(PlaceError::ShardsContended(_)) if plans < stock::SHARD_PLANS => plans += 1,
            Err(PlaceError::ShardsContended(busy)) => {
                return Err(ServiceError::ServiceBusy(
                    format!("the stock shards of {busy:?} stayed busy").into(),
                ))
            }
            Err(PlaceError::ShardsShort(short)) => {
                return Err(ServiceError::ServiceBusy(
                    format!("the stock shards of {short:?} kept running short").into(),
                ))
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

/// Asks the supplier about every supplier-held product: its figure for each line (`None` for local
/// products), which the write then holds the product's reservation ledger to. If a figure cannot cover
/// its line even before reservations, the 409 also lists the local products that are short now (read
/// afresh: a cached description carries no stock), so one answer names every short product.
async fn check_supplier_stock(
    ports: &Placing<'_>,
    cmd: &CreateOrders,
    products: &[Product],
) -> Result<Vec<Option<u32>>, ServiceError> {
    let mut shortages = Vec::new();
    let mut figures = Vec::with_capacity(products.len());
    for (line, product) in cmd.lines.iter().zip(products) {
        if product.stock_source != StockSource::Supplier {
            figures.push(None);
            continue;
        }
        ports.metrics.count(Metric::StockCheck(StockKind::Supplier));
        let available = ports.supplier.available(&product.id).await.map_err(|e| {
            ports.metrics.count(Metric::StockCheckFailed(StockKind::Supplier));
            ServiceError::SupplierUnavailable(Box::new(e))
        })?;
        if available < line.quantity.get() {
            shortages.push(Shortage {
                product_id: product.id.clone(),
                requested: line.quantity.get(),
                available,
            });
        }
        figures.push(Some(available));
    }
    if shortages.is_empty() {
        return Ok(figures);
    }
    for (line, product) in cmd.lines.iter().zip(products) {
        if product.stock_source != StockSource::Local {
            continue;
        }
        let stock = ports.catalog.product(&product.id).await?.map_or(0, |p| p.stock);
        if stock < line.quantity.get() {
            shortages.push(Shortage {
                product_id: product.id.clone(),
                requested: line.quantity.get(),
                available: stock,
            });
        }
    }
    shortages.sort_by_key(|s| cmd.lines.iter().position(|l| l.product_id == s.product_id));
    Err(ServiceError::InsufficientStock(shortages))
}
