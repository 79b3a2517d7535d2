//! Test kit: what tests, the benchmark and the local server need to play the world around the service,
//! kept out of the production crates (no Lambda function depends on this crate, so none links axum or a
//! signing key generator).

#[cfg(feature = "servers")]
pub mod controls;
#[cfg(feature = "servers")]
pub mod counter;
#[cfg(feature = "servers")]
pub mod fake_alipay;
#[cfg(feature = "servers")]
pub mod fake_supplier;
#[cfg(feature = "servers")]
pub mod fake_wechatpay;
pub mod generic;
pub mod providers;

/// The demo catalogue the local server loads when given no file (three local products, an inactive one,
/// a supplier-held one, addresses for `alice` and `bob`).
pub const DEMO_CATALOG: &str = include_str!("../demo-catalog.json");

#[cfg(test)]
mod tests {
    use infra::catalog_file::CatalogFile;

    #[test]
    fn the_demo_catalogue_parses_and_has_a_supplier_product() {
        use domain::StockSource;
        let demo = CatalogFile::parse(super::DEMO_CATALOG).unwrap();
        assert!(demo.products().any(|p| p.stock_source == StockSource::Supplier));
        assert!(demo
            .products()
            .any(|p| p.stock_source == StockSource::Local && p.stock > 0));
        assert!(demo.addresses().count() >= 2);
    }
}
