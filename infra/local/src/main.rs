//! The local server: every route on loopback, presented to the same handlers the Lambda functions run,
//! through a request built the way API Gateway builds it. Embedded SQLite by default; DynamoDB with
//! `--dynamodb-endpoint` (or `--dynamodb-table` for a real table).

mod gateway;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use domain::ports::{Catalog, CatalogAdmin, OrderStore, SystemClock};
use domain::usecases::Services;
use infra::catalog_file::{CatalogFile, DEMO};
use infra::dynamodb::schema::TableSchema;
use infra::dynamodb::DynamoStore;
use infra::sqlite::SqliteStore;

/// Command-line options; each also reads an environment variable.
#[derive(Debug, Parser)]
#[command(about = "Runs the order API on loopback, the way API Gateway and Lambda would.")]
struct Args {
    /// Port on 127.0.0.1.
    #[arg(long, env = "PORT", default_value_t = 3000)]
    port: u16,
    /// The embedded database file (created if missing).
    #[arg(long, env = "LOCAL_DB", default_value = ".local/shop.sqlite3")]
    db: PathBuf,
    /// Use DynamoDB at this endpoint (DynamoDB Local, moto) instead of the embedded store; the table
    /// is created from template.yaml if it does not exist.
    #[arg(long, env = "DYNAMODB_ENDPOINT")]
    dynamodb_endpoint: Option<String>,
    /// Use this DynamoDB table (with the environment's AWS configuration when no endpoint is given).
    #[arg(long, env = "TABLE_NAME")]
    dynamodb_table: Option<String>,
    /// Upsert products and addresses (stock included) from this catalogue file; without it, the
    /// built-in demo catalogue is loaded into a store that has none of its products yet.
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Load the catalogue and exit without serving.
    #[arg(long)]
    load_only: bool,
}

/// The store the server runs on, seen through the ports it needs.
struct Store {
    catalog: Arc<dyn Catalog>,
    orders: Arc<dyn OrderStore>,
    admin: Arc<dyn CatalogAdmin>,
    description: String,
}

fn shared<S: Catalog + OrderStore + CatalogAdmin + 'static>(store: S, description: String) -> Store {
    let store = Arc::new(store);
    Store {
        catalog: store.clone(),
        orders: store.clone(),
        admin: store,
        description,
    }
}

async fn open_store(args: &Args) -> Result<Store, Box<dyn std::error::Error>> {
    if args.dynamodb_endpoint.is_none() && args.dynamodb_table.is_none() {
        if let Some(dir) = args.db.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let store = SqliteStore::open(&args.db)?;
        return Ok(shared(store, format!("embedded SQLite at {}", args.db.display())));
    }
    let table = args.dynamodb_table.clone().unwrap_or_else(|| "orders-local".to_owned());
    let client = infra::dynamodb::client(args.dynamodb_endpoint.as_deref()).await;
    let exists = client.describe_table().table_name(&table).send().await.is_ok();
    if !exists {
        if args.dynamodb_endpoint.is_none() {
            return Err(format!("table {table} not found; deploy template.yaml first").into());
        }
        TableSchema::bundled()?.create_table(&client, &table).await?;
        tracing::info!(%table, "created table from template.yaml");
    }
    let at = args.dynamodb_endpoint.as_deref().unwrap_or("AWS");
    Ok(shared(
        DynamoStore::new(client, table.clone()),
        format!("DynamoDB table {table} at {at}"),
    ))
}

async fn load_catalog(args: &Args, store: &Store) -> Result<(), Box<dyn std::error::Error>> {
    match &args.catalog {
        Some(path) => {
            let file = CatalogFile::parse(&std::fs::read_to_string(path)?)?;
            let (products, addresses) = file.load_into(store.admin.as_ref()).await?;
            tracing::info!(path = %path.display(), products, addresses, "catalogue loaded");
        }
        None => {
            let demo = CatalogFile::parse(DEMO)?;
            let mut already = false;
            for product in demo.products() {
                already |= store.catalog.product(&product.id).await?.is_some();
            }
            if already {
                tracing::info!("demo catalogue already present; left as it is");
            } else {
                let (products, addresses) = demo.load_into(store.admin.as_ref()).await?;
                tracing::info!(products, addresses, "demo catalogue loaded");
            }
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    infra::telemetry::init();
    let args = Args::parse();
    let store = open_store(&args).await?;
    load_catalog(&args, &store).await?;
    if args.load_only {
        return Ok(());
    }
    let services = Services {
        catalog: store.catalog,
        orders: store.orders,
        supplier: Arc::new(infra::supplier::NoSupplier),
        clock: Arc::new(SystemClock),
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, store = %store.description, "ready to serve");
    println!(
        "Try: curl -s -X POST http://{addr}/api/orders/create_order/ -H 'Authorization: Bearer alice' \
         -H 'Content-Type: application/json' -d '{{\"product_id\": \"fridge-bcd-470\", \"address_id\": \"addr-alice-home\", \"quantity\": 1}}'"
    );
    axum::serve(listener, gateway::router(Arc::new(services)))
        .with_graceful_shutdown(shutdown())
        .await?;
    Ok(())
}

async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down");
}
