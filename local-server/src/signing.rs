//! The local server's signing helpers (`sign-callback`, `sign-wechatpay`, `sign-alipay`): each prints a
//! curl command that posts a correctly signed notification to the local server, with the same secret or
//! development keys the server verifies with.

use std::path::Path;

use clap::Subcommand;
use domain::ports::{Clock, SystemClock};

/// A helper subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Prints a curl command posting a correctly signed generic callback to the local server.
    #[command(name = "sign-callback")]
    Generic {
        /// The payment id (`payment.id` in the create response).
        #[arg(long)]
        payment_id: String,
        /// The amount the provider reports, e.g. 6598.00.
        #[arg(long)]
        amount: String,
        /// processing, succeeded or failed.
        #[arg(long, default_value = "succeeded")]
        status: String,
        /// The provider's event id (a fresh one by default).
        #[arg(long)]
        event_id: Option<String>,
    },
    /// Prints a curl command posting a WeChat Pay APIv3 notification, signed and encrypted with the
    /// development keys, to the local server.
    #[command(name = "sign-wechatpay")]
    Wechatpay {
        /// The payment id (`out_trade_no`).
        #[arg(long)]
        payment_id: String,
        /// The amount in yuan, e.g. 2199.00 (sent in fen, as WeChat Pay does).
        #[arg(long)]
        amount: String,
        /// SUCCESS, USERPAYING, CLOSED, PAYERROR, REVOKED or NOTPAY.
        #[arg(long, default_value = "SUCCESS")]
        trade_state: String,
        /// The notification id (a fresh one by default).
        #[arg(long)]
        id: Option<String>,
    },
    /// Prints a curl command posting an Alipay notification, signed with the development key, to the
    /// local server.
    #[command(name = "sign-alipay")]
    Alipay {
        /// The payment id (`out_trade_no`).
        #[arg(long)]
        payment_id: String,
        /// The amount in yuan, e.g. 2199.00.
        #[arg(long)]
        amount: String,
        /// TRADE_SUCCESS, TRADE_FINISHED, WAIT_BUYER_PAY or TRADE_CLOSED.
        #[arg(long, default_value = "TRADE_SUCCESS")]
        trade_status: String,
        /// The notification id (a fresh one by default).
        #[arg(long)]
        notify_id: Option<String>,
    },
    /// Prints a product's stock shard by shard (docs/api.md §19), from the store the flags choose (the
    /// embedded database, or `--dynamodb-table`); with `--rebalance`, first spreads its stock evenly
    /// over its shards again, and prints the figures before and after.
    #[command(name = "stock")]
    Stock {
        /// The product id.
        product_id: String,
        /// Spread the stock evenly over the shards.
        #[arg(long)]
        rebalance: bool,
    },
}

/// Runs a helper subcommand.
pub fn run(
    command: &Command,
    port: u16,
    secret_file: &Path,
    provider_keys: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let url = |path: &str| format!("http://127.0.0.1:{}/api/payments/callback/{path}", port);
    match command {
        Command::Generic { .. } => sign_callback(command, port, secret_file),
        Command::Stock { .. } => Err("the stock command runs against a store (see main)".into()),
        Command::Wechatpay {
            payment_id,
            amount,
            trade_state,
            id,
        } => {
            crate::dev_providers::made_by_the_server(provider_keys, "development WeChat Pay keys")?;
            let dev = crate::dev_providers::DevProviders::load_or_create(provider_keys)?;
            let fen = domain::Money::parse(amount)?.to_fen();
            let id = id.clone().unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            let posted = dev.wechatpay.notification(&id, payment_id, trade_state, fen);
            let headers: Vec<String> = posted
                .headers
                .iter()
                .map(|(name, value)| format!("-H '{name}: {value}'"))
                .collect();
            println!(
                "curl -s -i -X POST {} -H 'Content-Type: application/json' \\\n  {} \\\n  -d '{}'",
                url("wechatpay/"),
                headers.join(" \\\n  "),
                posted.body
            );
            Ok(())
        }
        Command::Alipay {
            payment_id,
            amount,
            trade_status,
            notify_id,
        } => {
            crate::dev_providers::made_by_the_server(provider_keys, "development Alipay key")?;
            let dev = crate::dev_providers::DevProviders::load_or_create(provider_keys)?;
            let notify_id = notify_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
            let body = dev.alipay.notification(&notify_id, payment_id, trade_status, amount);
            println!(
                "curl -s -X POST {} -H 'Content-Type: application/x-www-form-urlencoded' \\\n  -d '{body}'",
                url("alipay/")
            );
            Ok(())
        }
    }
}

fn sign_callback(command: &Command, port: u16, secret_file: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let Command::Generic {
        payment_id,
        amount,
        status,
        event_id,
    } = command
    else {
        return Ok(());
    };
    let secrets = match crate::dev_providers::configured_secrets() {
        Some(secrets) => secrets,
        None => {
            crate::dev_providers::made_by_the_server(secret_file, "development callback secret")?;
            crate::dev_providers::kept_secret(secret_file)?
        }
    };
    // The current secret: the first of the list the server verifies with (docs/api.md §8).
    let secret = secrets
        .split(',')
        .map(str::trim)
        .find(|s| !s.is_empty())
        .ok_or("no callback secret configured")?;
    let now = SystemClock.now();
    let body = serde_json::json!({
        "event_id": event_id.clone().unwrap_or_else(|| format!("evt_{}", uuid::Uuid::now_v7().simple())),
        "payment_id": payment_id,
        "provider_txn_id": format!("txn_{}", uuid::Uuid::now_v7().simple()),
        "status": status,
        "amount": amount,
        "occurred_at": now,
    })
    .to_string();
    let signature = testkit::generic::header(secret.as_bytes(), now.unix_seconds(), body.as_bytes());
    println!(
        "curl -s -X POST http://127.0.0.1:{}/api/payments/callback/ -H 'Content-Type: application/json' \\\n  -H 'X-Payment-Signature: {signature}' \\\n  -d '{body}'",
        port
    );
    Ok(())
}
