//! The local server: every route on loopback, presented to the same handlers the Lambda functions run,
//! through a request built the way API Gateway builds it. Embedded SQLite by default; DynamoDB with
//! `--dynamodb-endpoint` (or `--dynamodb-table` for a real table).

mod demo;
mod dev_providers;
mod edge;
mod gateway;
mod queue;
mod signing;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use domain::ports::{CatalogAdmin, SystemClock};
use domain::usecases::Services;
use infra::catalog_file::CatalogFile;
use infra::dynamodb::schema::TableSchema;
use infra::dynamodb::DynamoStore;
use infra::sqlite::SqliteStore;
use testkit::DEMO_CATALOG as DEMO;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Command-line options. Every flag may come before or after a helper subcommand. The store is chosen
/// by flags only (never by `TABLE_NAME` or AWS settings in the shell).
#[derive(Debug, Parser)]
#[command(about = "Runs the order API on loopback, the way API Gateway and Lambda would.")]
struct Args {
    /// Port on 127.0.0.1 (`0` picks a free one).
    #[arg(long, env = "PORT", default_value_t = 3000, global = true)]
    port: u16,
    /// The data folder: the embedded database, the development secret and keys, the cursor secret and
    /// the fake supplier's figures. Default: `.local` at the workspace root, wherever you run from.
    #[arg(long, env = "LOCAL_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// The embedded database file (default: `shop.sqlite3` in the data folder).
    #[arg(long, global = true)]
    db: Option<PathBuf>,
    /// Use DynamoDB at this endpoint (DynamoDB Local, moto) instead of the embedded store; the table
    /// is created from template.yaml if it does not exist.
    #[arg(long, global = true)]
    dynamodb_endpoint: Option<String>,
    /// Use this DynamoDB table: at `--dynamodb-endpoint` (default `orders-local` there), or alone a
    /// real table with the environment's AWS credentials.
    #[arg(long, global = true)]
    dynamodb_table: Option<String>,
    /// Upsert products and addresses (stock included) from this catalogue file instead of the demo.
    #[arg(long, global = true)]
    catalog: Option<PathBuf>,
    /// Load no catalogue at all (not even the demo).
    #[arg(long, global = true, conflicts_with = "catalog")]
    no_demo: bool,
    /// Load the catalogue and exit without serving.
    #[arg(long, global = true)]
    load_only: bool,
    /// Seconds a client may take to send a request's head, and then its body.
    #[arg(long, env = "READ_TIMEOUT_SECS", default_value_t = 10, global = true)]
    read_timeout_secs: u64,
    /// Seconds between expiry sweeps (the schedule's `rate(1 minute)` in AWS).
    #[arg(long, env = "EXPIRY_INTERVAL_SECS", default_value_t = 60, global = true)]
    expiry_interval: u64,
    /// Seconds between refund runs (the schedule's `rate(1 minute)` in AWS).
    #[arg(long, env = "REFUND_INTERVAL_SECS", default_value_t = 60, global = true)]
    refund_interval: u64,
    /// Where development WeChat Pay and Alipay keys are kept when those providers are not configured
    /// (default: `dev-providers.json` in the data folder).
    #[arg(long, env = "PROVIDER_KEYS", global = true)]
    provider_keys: Option<PathBuf>,
    /// Where the development callback secret is kept when `PAYMENT_CALLBACK_SECRETS` is not set
    /// (default: `callback-secret` in the data folder).
    #[arg(long, global = true)]
    secret_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<signing::Command>,
}

/// Where the server keeps its files, every path resolved once at start.
#[derive(Debug, Clone)]
pub struct DataPaths {
    /// The data folder.
    pub dir: PathBuf,
    /// The embedded database.
    pub db: PathBuf,
    /// The development WeChat Pay and Alipay keys.
    pub provider_keys: PathBuf,
    /// The development callback secret.
    pub secret_file: PathBuf,
    /// The list cursors' secret.
    pub cursor_secret: PathBuf,
    /// The fake supplier's figures.
    pub supplier: PathBuf,
    /// The callback queue's journal: messages acknowledged and not yet delivered.
    pub queue: PathBuf,
}

/// The workspace this server was built in (the parent of this crate's folder).
fn workspace_root() -> PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

impl Args {
    /// The data folder (`--data-dir`, else `.local` at the workspace root: this crate's parent folder,
    /// as it was built) and the files in it, each overridable by its own flag.
    fn paths(&self) -> DataPaths {
        let dir = self.data_dir.clone().unwrap_or_else(|| workspace_root().join(".local"));
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        DataPaths {
            db: self.db.clone().unwrap_or_else(|| dir.join("shop.sqlite3")),
            provider_keys: self
                .provider_keys
                .clone()
                .unwrap_or_else(|| dir.join("dev-providers.json")),
            secret_file: self.secret_file.clone().unwrap_or_else(|| dir.join("callback-secret")),
            cursor_secret: dir.join("cursor-secret"),
            queue: dir.join("callback-queue.sqlite3"),
            supplier: dir.join("fake-supplier.json"),
            dir,
        }
    }
}

/// The store the server runs on, seen through the ports it needs.
struct Store {
    /// The services over it, as a Lambda function assembles them (the supplier and the cache are set
    /// once the catalogue is loaded).
    services: Services,
    admin: Arc<dyn CatalogAdmin>,
    description: String,
}

fn shared<S: domain::ports::Store + 'static>(store: S, description: String) -> Store {
    let store = Arc::new(store);
    Store {
        services: Services::over(
            store.clone(),
            Arc::new(infra::supplier::NoSupplier),
            Arc::new(SystemClock),
            Arc::new(infra::metrics::EmfMetrics),
        ),
        admin: store,
        description,
    }
}

async fn open_store(args: &Args, paths: &DataPaths) -> Result<Store, Box<dyn std::error::Error>> {
    if args.dynamodb_endpoint.is_none() && args.dynamodb_table.is_none() {
        if let Some(dir) = paths.db.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let store = SqliteStore::open(&paths.db)?;
        return Ok(shared(store, format!("embedded SQLite at {}", paths.db.display())));
    }
    let table = args.dynamodb_table.clone().unwrap_or_else(|| "orders-local".to_owned());
    let client = infra::dynamodb::client_from_default_chain(args.dynamodb_endpoint.as_deref()).await;
    let at = args
        .dynamodb_endpoint
        .as_deref()
        .unwrap_or("AWS (the environment's credentials and region)");
    match client.describe_table().table_name(&table).send().await {
        Ok(_) => {}
        Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => {
            if args.dynamodb_endpoint.is_none() {
                return Err(format!("table {table} not found in AWS; deploy template.yaml first").into());
            }
            TableSchema::bundled()?.create_table(&client, &table).await?;
            tracing::info!(%table, "created table from template.yaml");
        }
        Err(err) => {
            return Err(format!(
                "could not reach DynamoDB table {table} at {at}: {} (check the endpoint, or the AWS credentials and region)",
                domain::error::error_chain(&err)
            )
            .into())
        }
    }
    Ok(shared(
        DynamoStore::new(client, table.clone()),
        format!("DynamoDB table {table} at {at}"),
    ))
}

/// The `stock` command: a product's shards as the store holds them, rebalanced first if asked; one JSON
/// object on stdout.
async fn stock_command(store: &Store, product_id: &str, rebalance: bool) -> Result<(), Box<dyn std::error::Error>> {
    let id = domain::ProductId::parse(product_id)?;
    let unknown = || format!("no product {id} in {}", store.description);
    let mut report = serde_json::Map::new();
    report.insert("product_id".into(), id.to_string().into());
    if rebalance {
        let done = store.admin.rebalance_stock(&id).await?.ok_or_else(unknown)?;
        report.insert("before".into(), serde_json::to_value(&done.before)?);
        report.insert("after".into(), serde_json::to_value(&done.after)?);
    }
    let product = store.services.catalog.product(&id).await?.ok_or_else(unknown)?;
    let figures = store.services.catalog.shard_stock(&id, product.shards).await?;
    report.insert("shards".into(), product.shards.into());
    report.insert("stock".into(), product.stock.into());
    report.insert("figures".into(), serde_json::to_value(&figures)?);
    println!("{}", serde_json::Value::Object(report));
    Ok(())
}

/// Loads the catalogue: the `--catalog` file, or the demo into a store that has none of its products yet,
/// or nothing with `--no-demo`. Returns the supplier-held products' figures (which seed the fake
/// supplier), kept in the data folder so a restart serves the same ones.
async fn load_catalog(
    args: &Args,
    paths: &DataPaths,
    store: &Store,
) -> Result<Vec<(String, u32)>, Box<dyn std::error::Error>> {
    let supplier_figures = |file: &CatalogFile| -> Vec<(String, u32)> {
        file.products()
            .filter(|p| p.stock_source == domain::StockSource::Supplier)
            .map(|p| (p.id.to_string(), p.stock))
            .collect()
    };
    let loaded = match (&args.catalog, args.no_demo) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("catalogue {}: {e}", path.display()))?;
            let (file, refused) = CatalogFile::parse_entries(&text)?;
            // A bar on a terminal (stderr), nothing when stderr is not one.
            let bar = indicatif::ProgressBar::new(file.entries() as u64).with_style(
                indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} entries, {per_sec}, {eta} left")
                    .map_err(|e| e.to_string())?
                    .progress_chars("=> "),
            );
            bar.set_message(format!("loading {}", path.display()));
            let started = std::time::Instant::now();
            let report = file
                .load(store.services.catalog.as_ref(), store.admin.as_ref(), &|n| bar.inc(n))
                .await?;
            bar.finish_and_clear();
            println!(
                "catalogue {}: {} products created, {} updated, {} unchanged; {} addresses loaded; {} entries refused ({:.1} s)",
                path.display(),
                report.products_created,
                report.products_updated,
                report.products_unchanged,
                report.addresses_loaded,
                refused.len(),
                started.elapsed().as_secs_f64()
            );
            for refusal in &refused {
                println!("  refused {refusal}");
            }
            tracing::info!(path = %path.display(), ?report, refused = refused.len(), "catalogue loaded");
            if !refused.is_empty() && args.load_only {
                return Err(format!("{} catalogue entries refused (the others were loaded)", refused.len()).into());
            }
            Some(file)
        }
        (None, true) => {
            tracing::info!("--no-demo: no catalogue loaded");
            None
        }
        (None, false) => {
            let demo = CatalogFile::parse(DEMO)?;
            let mut already = false;
            for product in demo.products() {
                already |= store.services.catalog.product(&product.id).await?.is_some();
            }
            if already {
                tracing::info!("demo catalogue already present; left as it is");
                None
            } else {
                let (products, addresses) = demo.load_into(store.admin.as_ref()).await?;
                tracing::info!(products, addresses, "demo catalogue loaded");
                Some(demo)
            }
        }
    };
    let kept: Option<Vec<(String, u32)>> = match std::fs::read_to_string(&paths.supplier) {
        Ok(text) => Some(serde_json::from_str(&text)?),
        Err(_) => None,
    };
    let Some(file) = loaded else {
        // A store filled before the figures were kept: the demo's.
        return Ok(kept.unwrap_or(supplier_figures(&CatalogFile::parse(DEMO)?)));
    };
    // The figures kept, with the loaded catalogue's upserted over them (as its products are).
    let mut figures = kept.unwrap_or_default();
    for (sku, available) in supplier_figures(&file) {
        figures.retain(|(kept, _)| kept != &sku);
        figures.push((sku, available));
    }
    std::fs::create_dir_all(&paths.dir)?;
    std::fs::write(&paths.supplier, serde_json::to_string_pretty(&figures)?)?;
    Ok(figures)
}

/// The supplier's stock API: `SUPPLIER_BASE_URL` when set; else a fake served on loopback, answering for
/// each supplier-held product of the catalogue with its catalogue figure. Like the real supplier it does
/// not learn of our orders: the store's reservation ledger holds what they take (docs/api.md §10).
async fn supplier(
    figures: Vec<(String, u32)>,
) -> Result<Arc<dyn domain::ports::SupplierStock>, Box<dyn std::error::Error>> {
    if let Some(config) = infra::supplier::SupplierConfig::from_env()? {
        tracing::info!(base_url = %config.base_url, "supplier stock API");
        return Ok(Arc::new(infra::supplier::HttpSupplier::new(config)?));
    }
    let fake = testkit::fake_supplier::FakeSupplier::start(figures, None).await?;
    tracing::info!(base_url = %fake.base_url, "fake supplier stock API serving the catalogue's supplier-held products");
    let client = infra::supplier::HttpSupplier::new(infra::supplier::SupplierConfig::new(&fake.base_url))?;
    Ok(Arc::new(client))
}

/// The checkout's providers as configured in the environment (`BANK_ACCOUNT`, `WECHATPAY_*`,
/// `ALIPAY_*`). What is not configured is played on a laptop: a development bank account, and a fake
/// WeChat Pay and a fake Alipay on loopback that sign their answers with the development keys the server
/// verifies notifications with (the merchant's own keys are made afresh each start: only this process
/// and its fakes use them). Notifications are addressed to this server at `addr`.
/// The providers the server talks to, and the fakes it runs for those not configured.
struct LocalProviders {
    /// Checkout, close and query, configured or faked.
    gateway: infra::checkout::Providers,
    /// The fakes, whose trades a shopper can pay (`POST /dev/{provider}/pay/{payment_id}`).
    cashiers: gateway::Cashiers,
}

async fn checkout_providers(paths: &DataPaths, addr: SocketAddr) -> Result<LocalProviders, Box<dyn std::error::Error>> {
    use infra::providers::alipay::{AlipayApp, AlipayClient};
    use infra::providers::signing::MerchantKey;
    use infra::providers::wechatpay::{WechatPayClient, WechatPayMerchant, DEFAULT_TIMEOUT};
    use testkit::providers::SigningKey;
    let mut providers = infra::checkout::Providers::from_env()?;
    if providers.bank.is_none() {
        let account = serde_json::json!({"payee": "海尔演示商城 (development)", "bank": "开发银行", "account_number": "6222 0000 0000 0000"});
        providers.bank = account.as_object().cloned();
    }
    let notify = |provider: &str| format!("http://{addr}/api/payments/callback/{provider}/");
    let wechat_configured = infra::providers::wechatpay::WechatPay::from_env()?.is_some();
    let alipay_configured = infra::providers::alipay::Alipay::from_env()?.is_some();
    let mut cashiers = gateway::Cashiers::default();
    if wechat_configured && alipay_configured {
        return Ok(LocalProviders {
            gateway: providers,
            cashiers,
        });
    }
    let dev = dev_providers::DevProviders::load_or_create(&paths.provider_keys)?;
    if providers.wechatpay.is_none() && !wechat_configured {
        let merchant = SigningKey::generate();
        let platform = testkit::providers::WechatPaySimulator {
            key: SigningKey::from_pkcs8_base64(&dev.wechatpay.key.pkcs8_base64())?,
            key_id: dev.wechatpay.key_id.clone(),
            apiv3_key: dev.wechatpay.apiv3_key.clone(),
            mchid: dev.wechatpay.mchid.clone(),
            appid: dev.wechatpay.appid.clone(),
        };
        let fake = testkit::fake_wechatpay::FakeWechatPay::start(platform, &merchant.public_key_pem()).await?;
        tracing::info!(base_url = %fake.base_url, "WeChat Pay checkout is not configured: a fake WeChat Pay serves it");
        let merchant = WechatPayMerchant {
            mchid: dev.wechatpay.mchid.clone(),
            appid: dev.wechatpay.appid.clone(),
            serial: "LOCAL_DEVELOPMENT_MERCHANT".into(),
            key: MerchantKey::parse(&merchant.pkcs8_base64())?,
            notify_url: notify("wechatpay"),
            base_url: fake.base_url.clone(),
        };
        cashiers.wechatpay = Some(fake);
        providers.wechatpay = Some(WechatPayClient::new(merchant, dev.wechatpay.config(), DEFAULT_TIMEOUT)?);
    }
    if providers.alipay.is_none() && !alipay_configured {
        let app_key = SigningKey::generate();
        let alipay = testkit::providers::AlipaySimulator {
            key: SigningKey::from_pkcs8_base64(&dev.alipay.key.pkcs8_base64())?,
            app_id: dev.alipay.app_id.clone(),
        };
        let fake = testkit::fake_alipay::FakeAlipay::start(alipay, &app_key.public_key_base64()).await?;
        tracing::info!(gateway = %fake.gateway, "Alipay checkout is not configured: a fake Alipay gateway serves it");
        let app = AlipayApp {
            app_id: dev.alipay.app_id.clone(),
            key: MerchantKey::parse(&app_key.pkcs8_base64())?,
            notify_url: notify("alipay"),
            return_url: None,
            gateway: fake.gateway.clone(),
        };
        providers.alipay_api = Some(AlipayClient::new(app.clone(), dev.alipay.config(), DEFAULT_TIMEOUT)?);
        providers.alipay = Some(app);
        cashiers.alipay = Some(fake);
    }
    Ok(LocalProviders {
        gateway: providers,
        cashiers,
    })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("local-server: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let paths = args.paths();
    if let Some(signing::Command::Stock { product_id, rebalance }) = &args.command {
        let store = open_store(&args, &paths).await?;
        return stock_command(&store, product_id, *rebalance).await;
    }
    if let Some(command) = &args.command {
        return signing::run(command, args.port, &paths.secret_file, &paths.provider_keys);
    }
    infra::telemetry::init();
    let store = open_store(&args, &paths).await?;
    println!("store: {} (data folder {})", store.description, paths.dir.display());
    let figures = load_catalog(&args, &paths, &store).await?;
    if args.load_only {
        return Ok(());
    }
    // Bound first: the fake providers address their notifications to this server.
    let listener = match tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, args.port))).await {
        Ok(listener) => listener,
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
            return Err(format!(
                "port {} is already in use (another local-server?): stop it, or choose another with --port N",
                args.port
            )
            .into())
        }
        Err(err) => return Err(format!("cannot listen on 127.0.0.1:{}: {err}", args.port).into()),
    };
    let addr = listener.local_addr()?;
    let mut services = store.services.clone();
    services.supplier = supplier(figures).await?;
    let providers = checkout_providers(&paths, addr).await?;
    services.gateway = Arc::new(providers.gateway);
    // As in a warm Lambda: product descriptions and addresses from memory, re-read when stale.
    services.catalog = Arc::new(infra::cache::CachedCatalog::new(
        services.catalog,
        services.clock.clone(),
    ));
    let services = Arc::new(services);
    let (secrets, development) = dev_providers::callback_secrets(&paths.secret_file)?;
    if development {
        tracing::warn!(secret_file = %paths.secret_file.display(),
            "PAYMENT_CALLBACK_SECRETS is not set: callbacks are verified with the development secret in this file; \
             `cargo run -p local-server -- sign-callback` signs with it");
    }
    let (wechatpay, alipay) = provider_settings(&paths)?;
    let queue = queue::LocalQueue::durable(std::time::Duration::from_millis(200), &paths.queue)?;
    let processor = services.clone();
    tokio::spawn(queue.clone().consume(move |event| {
        let processor = processor.clone();
        async move { process_payment_callbacks::handle(&processor, event).await }
    }));
    tokio::spawn(ticker(services.clone(), Schedule::Expiry, args.expiry_interval));
    tokio::spawn(ticker(services.clone(), Schedule::Refunds, args.refund_interval));
    let cursor_secret = match std::env::var("LIST_CURSOR_SECRET") {
        Ok(secret) => secret,
        // Kept in the data folder, so a restart still reads the cursors it issued.
        Err(_) => dev_providers::kept_secret(&paths.cursor_secret)?,
    };
    let cursors = domain::usecases::CursorKey::new(&cursor_secret).ok_or("LIST_CURSOR_SECRET is blank")?;
    // What the demo page shows: the catalogue file this server loads (none with --no-demo).
    let demo = match (&args.catalog, args.no_demo) {
        (Some(path), _) => demo::DemoCatalog::parse(&std::fs::read_to_string(path)?)?,
        (None, true) => demo::DemoCatalog::default(),
        (None, false) => demo::DemoCatalog::parse(DEMO)?,
    };
    let app = Arc::new(gateway::App {
        listing: list_orders::Listing {
            services: services.as_ref().clone(),
            cursors: cursors.clone(),
        },
        admin: admin_orders::Admin {
            services: services.as_ref().clone(),
            cursors,
        },
        demo,
        services,
        receiver: payment_callback::Receiver {
            verifier: domain::SignatureVerifier::from_list(&secrets)?,
            queue: Arc::new(queue),
            clock: Arc::new(SystemClock),
            wechatpay: Some(Arc::new(wechatpay)),
            alipay: Some(Arc::new(alipay)),
        },
        cashiers: providers.cashiers,
    });
    let (interrupt, terminate) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
    tracing::info!(%addr, store = %store.description, "ready to serve");
    println!("serving http://{addr}/api/ (Ctrl-C to stop)");
    let limits = edge::Limits {
        read_timeout: std::time::Duration::from_secs(args.read_timeout_secs.max(1)),
        ..edge::Limits::default()
    };
    edge::serve(
        listener,
        gateway::router(app, limits.read_timeout),
        limits,
        shutdown(interrupt, terminate),
    )
    .await;
    Ok(())
}

/// The providers' settings: from the environment when configured, else the development keys (whose
/// ids the server announces, so that the helpers' notifications verify).
fn provider_settings(
    paths: &DataPaths,
) -> Result<(infra::providers::wechatpay::WechatPay, infra::providers::alipay::Alipay), Box<dyn std::error::Error>> {
    let configured = (
        infra::providers::wechatpay::WechatPay::from_env()?,
        infra::providers::alipay::Alipay::from_env()?,
    );
    let dev = match configured {
        (Some(_), Some(_)) => None,
        _ => Some(dev_providers::DevProviders::load_or_create(&paths.provider_keys)?),
    };
    let wechatpay = match (configured.0, &dev) {
        (Some(configured), _) => configured,
        (None, Some(dev)) => {
            tracing::warn!(key_id = %dev.wechatpay.key_id, mchid = %dev.wechatpay.mchid, keys = %paths.provider_keys.display(),
                "WeChat Pay is not configured: verifying with development keys; `sign-wechatpay` signs with them");
            dev.wechatpay.config()
        }
        (None, None) => return Err("WeChat Pay settings missing".into()),
    };
    let alipay = match (configured.1, &dev) {
        (Some(configured), _) => configured,
        (None, Some(dev)) => {
            tracing::warn!(app_id = %dev.alipay.app_id, keys = %paths.provider_keys.display(),
                "Alipay is not configured: verifying with a development key; `sign-alipay` signs with it");
            dev.alipay.config()
        }
        (None, None) => return Err("Alipay settings missing".into()),
    };
    Ok((wechatpay, alipay))
}

/// The scheduled functions the server plays.
#[derive(Clone, Copy)]
enum Schedule {
    /// expire_payments.
    Expiry,
    /// refund_payments.
    Refunds,
}

/// Plays an EventBridge schedule: every `interval` seconds, the function's handler gets a real
/// scheduled-event payload and a minute to run, as its Lambda would.
async fn ticker(services: Arc<Services>, schedule: Schedule, interval: u64) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(interval.max(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let rule = match schedule {
        Schedule::Expiry => "expire-payments",
        Schedule::Refunds => "refund-payments",
    };
    loop {
        ticks.tick().await;
        let event = infra::lambda::scheduled_event("000000000000", "local", rule);
        let event = match serde_json::from_value(event) {
            Ok(event) => event,
            Err(err) => {
                tracing::error!(error = %err, "could not build the scheduled event");
                return;
            }
        };
        let deadline = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        let failed = match schedule {
            Schedule::Expiry => expire_payments::handle(&services, event, deadline).await.err(),
            Schedule::Refunds => refund_payments::handle(&services, event, deadline).await.err(),
        };
        if let Some(err) = failed {
            tracing::error!(rule, error = %domain::error::error_chain(&err), "scheduled run failed");
        }
    }
}

/// Ctrl-C (SIGINT) or SIGTERM, whichever comes first. Both are listened for from before the server says
/// it is ready, so neither can arrive unhandled.
async fn shutdown(mut interrupt: Signal, mut terminate: Signal) {
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
}
