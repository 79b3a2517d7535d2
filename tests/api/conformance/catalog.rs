//! The catalogue loader at scale, on both stores: bulk creation, unchanged and updated products (their
//! reservation ledger kept), refused entries reported with their reasons and nothing else refused.

use domain::ports::{Catalog, CatalogAdmin};
use domain::ProductId;
use infra::catalog_file::CatalogFile;
use serde_json::json;

use e2e::TestEnv;

fn catalogue(products: usize, stock: u32) -> serde_json::Value {
    let products: Vec<serde_json::Value> = (0..products)
        .map(|i| json!({"id": format!("bulk-{i:05}"), "name": format!("商品 {i}"), "price": "199.00", "stock": stock}))
        .collect();
    let addresses: Vec<serde_json::Value> = (0..30)
        .map(|i| json!({"id": format!("bulk-addr-{i}"), "user_id": format!("user-{i}"), "city": "青岛"}))
        .collect();
    json!({ "products": products, "addresses": addresses })
}

pub async fn a_large_catalogue_loads_in_bulk_and_a_reload_changes_only_what_changed(env: TestEnv) {
    let catalog: &dyn Catalog = env.svc.catalog.as_ref();
    let admin: &dyn CatalogAdmin = env.admin.as_ref();
    let text = catalogue(1_234, 7).to_string();
    let (file, refused) = CatalogFile::parse_entries(&text).unwrap();
    assert!(refused.is_empty(), "{refused:?}");
    let handled = std::sync::atomic::AtomicU64::new(0);
    let tick = |n: u64| {
        handled.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
    };
    let report = file.load(catalog, admin, &tick).await.unwrap();
    assert_eq!(
        (
            report.products_created,
            report.products_updated,
            report.products_unchanged,
            report.addresses_loaded
        ),
        (1_234, 0, 0, 30)
    );
    assert_eq!(handled.load(std::sync::atomic::Ordering::SeqCst), 1_264);
    let ids: Vec<ProductId> = (0..1_234)
        .map(|i| ProductId::parse(&format!("bulk-{i:05}")).unwrap())
        .collect();
    let held = catalog.products(&ids).await.unwrap();
    assert!(held
        .iter()
        .all(|p| p.as_ref().is_some_and(|p| p.stock == 7 && p.reserved == 0)));
    assert!(catalog
        .address(&domain::AddressId::parse("bulk-addr-29").unwrap())
        .await
        .unwrap()
        .is_some());

    // A product with units reserved (a supplier-held product's ledger) keeps them through a reload that
    // changes its stock; the rest are unchanged.
    let mut reserved = held[3].clone().unwrap();
    reserved.reserved = 2;
    set_ledger(&env, &reserved).await;
    let mut changed = catalogue(1_234, 7);
    changed["products"][3]["stock"] = json!(9);
    changed["products"][4]["price"] = json!("188.00");
    let (file, _) = CatalogFile::parse_entries(&changed.to_string()).unwrap();
    let report = file.load(catalog, admin, &|_| {}).await.unwrap();
    assert_eq!(
        (
            report.products_created,
            report.products_updated,
            report.products_unchanged
        ),
        (0, 2, 1_232)
    );
    let after = catalog.products(&ids[3..5]).await.unwrap();
    let (third, fourth) = (after[0].clone().unwrap(), after[1].clone().unwrap());
    assert_eq!((third.stock, third.reserved), (9, 2));
    assert_eq!(fourth.price.to_string(), "188.00");
}

/// Sets a product's reservation ledger as orders would have.
async fn set_ledger(env: &TestEnv, product: &domain::Product) {
    env.set_reserved(&product.id, product.reserved).await;
}

pub async fn refused_entries_are_reported_and_the_rest_loaded(env: TestEnv) {
    let text = json!({
        "products": [
            {"id": "ok-1", "name": "好", "price": "1.00", "stock": 1},
            {"id": "too-dear", "name": "贵", "price": "1001001001.01"},
            {"id": "ok-1", "name": "重复", "price": "2.00"},
            {"id": "bad-price", "name": "坏", "price": 1.5},
            {"name": "无编号", "price": "1.00"},
            {"id": "ok-2", "name": "好", "price": "2.00", "stock": 2, "colour": "red"},
            {"id": "ok-3", "name": "好", "price": "3.00", "stock": 3, "stock_source": "supplier"}
        ],
        "addresses": [{"id": "a-1", "user_id": "u-1"}, {"user_id": "u-2"}]
    })
    .to_string();
    let (file, refused) = CatalogFile::parse_entries(&text).unwrap();
    let listed: Vec<(usize, Option<&str>)> = refused.iter().map(|r| (r.entry, r.id.as_deref())).collect();
    assert_eq!(
        listed,
        [
            (1, Some("too-dear")),
            (2, Some("ok-1")),
            (3, Some("bad-price")),
            (4, None),
            (5, Some("ok-2")),
            (1, None)
        ]
    );
    assert!(
        refused[0].reason.contains("above the highest unit price"),
        "{}",
        refused[0]
    );
    assert!(refused[1].reason.contains("earlier product"), "{}", refused[1]);
    let report = file
        .load(env.svc.catalog.as_ref(), env.admin.as_ref(), &|_| {})
        .await
        .unwrap();
    assert_eq!((report.products_created, report.addresses_loaded), (2, 1));
    for (id, held) in [("ok-1", true), ("ok-3", true), ("too-dear", false), ("ok-2", false)] {
        let found = env.svc.catalog.product(&ProductId::parse(id).unwrap()).await.unwrap();
        assert_eq!(found.is_some(), held, "{id}");
    }
    assert!(CatalogFile::parse_entries(r#"{"produtcs": []}"#).is_err());
    assert!(CatalogFile::parse_entries("[]").is_err());
}
