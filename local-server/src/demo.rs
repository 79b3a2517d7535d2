//! What the demo shop page needs beside the public API, in the local server alone: the catalogue it
//! loaded, read live (ids and addresses from the catalogue file, products through the same `Catalog` port
//! create_order reads, so the stock shown is the stock an order takes); the WeChat Pay `code_url` drawn
//! as a QR code (SVG); and the way from a scanned code to the fake WeChat Pay's cashier.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::catalog::Address;
use domain::usecases::Services;
use domain::ProductId;
use serde_json::{json, Value};

/// The catalogue as the server loaded it: which products and addresses the demo shows.
#[derive(Debug, Clone, Default)]
pub struct DemoCatalog {
    /// The products, in the file's order.
    pub products: Vec<ProductId>,
    /// Every address, with its owner.
    pub addresses: Vec<Address>,
}

impl DemoCatalog {
    /// From a catalogue file's text.
    pub fn parse(text: &str) -> Result<Self, infra::catalog_file::CatalogError> {
        let file = infra::catalog_file::CatalogFile::parse(text)?;
        Ok(DemoCatalog {
            products: file.products().map(|p| p.id).collect(),
            addresses: file.addresses().collect(),
        })
    }

    /// `GET /demo/catalog`: each product as the store holds it now (name, price, stock, whether it is
    /// on sale; for a supplier-held product the supplier's figure less what orders hold, or `null` when
    /// the supplier cannot answer), and the demo users' addresses.
    pub async fn answer(&self, services: &Services) -> Response {
        let mut products = Vec::with_capacity(self.products.len());
        for id in &self.products {
            match services.catalog.product(id).await {
                Ok(Some(p)) => {
                    let stock = match p.stock_source {
                        domain::StockSource::Local => Some(p.stock),
                        // What an order can still take: the supplier's figure less what orders hold.
                        domain::StockSource::Supplier => services
                            .supplier
                            .available(id)
                            .await
                            .ok()
                            .map(|figure| figure.saturating_sub(p.reserved)),
                    };
                    products.push(json!({
                        "id": p.id, "name": p.name, "price": p.price, "stock": stock,
                        "stock_source": p.stock_source, "active": p.active,
                    }));
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::error!(error = %domain::error::error_chain(&err), "demo catalogue read failed");
                    let body = domain::ServiceError::from(err).to_body(&uuid::Uuid::now_v7().to_string());
                    return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
                }
            }
        }
        let addresses: Vec<Value> = self
            .addresses
            .iter()
            .map(|a| json!({ "id": a.id, "user_id": a.user_id, "fields": a.fields }))
            .collect();
        axum::Json(json!({ "products": products, "addresses": addresses })).into_response()
    }
}

/// `GET /demo/qr.svg?text=…`: `text` as a QR code, an SVG image (the page draws the WeChat Pay
/// `code_url` with it, as a shop's page would).
pub fn qr_svg(query: Option<&str>) -> Response {
    let text = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "text")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if text.is_empty() || text.len() > 1024 {
        return (StatusCode::BAD_REQUEST, "text: 1 to 1024 bytes").into_response();
    }
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => {
            let svg = code
                .render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(200, 200)
                .build();
            ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
        }
        Err(err) => (StatusCode::BAD_REQUEST, err.to_string()).into_response(),
    }
}
