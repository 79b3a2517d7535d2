//! The `OrderStore::place` port itself: both adapters judge refused writes the same way.

use domain::order::OrderDraft;
use domain::placement::{NewOrder, Placement};
use domain::ports::PlaceError;
use domain::{
    AddressId, AddressSnapshot, Money, Order, Payment, PaymentMethod, Product, ProductId, Quantity, StockSource,
    Timestamp, TtlMinutes, UserId,
};
use e2e::TestEnv;

fn line(product: &str, quantity: u32, price: &str) -> NewOrder {
    let now = Timestamp::now();
    let product = Product {
        id: ProductId::parse(product).unwrap(),
        name: product.into(),
        price: Money::parse(price).unwrap(),
        stock: 0,
        stock_source: StockSource::Local,
        active: true,
        reserved: 0,
        shards: 1,
    };
    let draft = OrderDraft {
        user_id: &UserId::parse("alice").unwrap(),
        product: &product,
        quantity: Quantity::new(quantity).unwrap(),
        address: AddressSnapshot::default(),
        ttl_minutes: TtlMinutes::DEFAULT,
    };
    let order = Order::new_pending(draft, now).unwrap();
    let payment = Payment::create_for_order(&order, PaymentMethod::Wechat, TtlMinutes::DEFAULT, now);
    NewOrder {
        order,
        payment,
        supplier_available: None,
    }
}

fn placement(address: &str, orders: Vec<NewOrder>) -> Placement {
    Placement {
        user_id: UserId::parse("alice").unwrap(),
        address_id: AddressId::parse(address).unwrap(),
        orders,
        idempotency: None,
    }
}

pub async fn a_stale_price_is_refused_as_changed(env: TestEnv) {
    env.product("fridge", "2.00", 5).await;
    env.address("alice-home", "alice").await;
    let before = env.snapshot().await;

    let result = env
        .svc
        .orders
        .place(&placement("alice-home", vec![line("fridge", 1, "1.00")]))
        .await;

    assert!(
        matches!(&result, Err(PlaceError::ProductChanged(id)) if id.as_str() == "fridge"),
        "{result:?}"
    );
    assert_eq!(env.snapshot().await, before);
}

pub async fn refusals_are_judged_in_the_seeds_order(env: TestEnv) {
    env.product("short-a", "1.00", 1).await;
    env.product("short-b", "1.00", 0).await;
    env.product("plenty", "1.00", 100).await;
    env.product_with("retired", "1.00", 100, StockSource::Local, false)
        .await;
    env.address("alice-home", "alice").await;
    env.address("bob-home", "bob").await;
    let before = env.snapshot().await;
    let orders = || {
        vec![
            line("plenty", 1, "1.00"),
            line("short-a", 2, "1.00"),
            line("short-b", 1, "1.00"),
        ]
    };

    // An unavailable product wins over a foreign address and shortages
    let mut with_retired = orders();
    with_retired.push(line("retired", 1, "1.00"));
    let result = env.svc.orders.place(&placement("bob-home", with_retired)).await;
    assert!(
        matches!(&result, Err(PlaceError::ProductUnavailable(id)) if id.as_str() == "retired"),
        "{result:?}"
    );

    // Then the address wins over shortages
    let result = env.svc.orders.place(&placement("bob-home", orders())).await;
    assert!(matches!(result, Err(PlaceError::AddressInvalid)), "{result:?}");

    // And every shortage is listed with what the store holds
    let result = env.svc.orders.place(&placement("alice-home", orders())).await;
    match result {
        Err(PlaceError::InsufficientStock(shortages)) => {
            let got: Vec<_> = shortages
                .iter()
                .map(|s| (s.product_id.as_str(), s.requested, s.available))
                .collect();
            assert_eq!(got, [("short-a", 2, 1), ("short-b", 1, 0)]);
        }
        other => panic!("expected shortages, got {other:?}"),
    }
    assert_eq!(env.snapshot().await, before);
}
