//! Flash sales (秒杀) against the model of DynamoDB's hot-item behaviour (tests/support/dynamo_model.rs):
//! the real handlers, use cases and DynamoDB adapter, the real SDK client with the functions' retry and
//! timeout settings, and a modelled DynamoDB that enforces per-item throughput and cancels overlapping
//! transactions on an item, all in virtual time (a paused tokio clock), so the figures are the model's
//! and not this machine's.
//!
//! The test command runs the three runs the targets rest on and asserts their outcomes; the figures for
//! BENCHMARKS.md come from `FLASH_SALE_MATRIX=1` (scripts/flash-sale.sh), which runs every design at
//! every load and prints one row per run.

use std::sync::Arc;
use std::time::Duration;

use e2e::dynamo_model::{DynamoModel, ModelCounts, ModelSettings};
use e2e::{create_order, TestEnv};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::conformance::shards::{hot, shard_books_balance};

/// One flash sale: `buyers` each ordering one unit of one product, arriving at random over `over`.
#[derive(Debug, Clone, Copy)]
struct Sale {
    shards: u16,
    stock: u32,
    buyers: usize,
    over: Duration,
}

/// What a sale came to, in the model's time.
#[derive(Debug)]
struct Outcome {
    sale: Sale,
    created: usize,
    refused: usize,
    busy: usize,
    /// Answers other than 201, 409 and 503.
    odd: Vec<(u16, Value)>,
    /// Every 409's `available`.
    refused_available: Vec<u64>,
    /// Each buyer's wait, sorted.
    latencies: Vec<Duration>,
    /// From the first possible arrival to the last order created.
    last_created: Duration,
    /// From the first possible arrival to the last answer.
    all_answered: Duration,
    counts: ModelCounts,
}

impl Outcome {
    fn percentile(&self, p: f64) -> Duration {
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(i).copied().unwrap_or_default()
    }

    /// Orders created per second while orders were being created.
    fn orders_per_second(&self) -> f64 {
        self.created as f64 / self.last_created.as_secs_f64().max(f64::EPSILON)
    }

    fn row(&self, settings: &ModelSettings) -> String {
        format!(
            "| {} | {} | {} | {:.0}/s | {} | {:.0} | {} ({:.2}%) | {:.1} | {:.1} | {} | {} | {:.2} s | {} ms |",
            if self.sale.shards == 1 {
                "one item (today)".to_owned()
            } else {
                format!("{} shards", self.sale.shards)
            },
            self.sale.stock,
            self.sale.buyers,
            self.sale.buyers as f64 / self.sale.over.as_secs_f64(),
            self.created,
            self.orders_per_second(),
            self.busy,
            100.0 * self.busy as f64 / self.sale.buyers as f64,
            self.percentile(0.5).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.counts.conflicts,
            self.counts.throttled_transactions + self.counts.throttled_reads,
            self.all_answered.as_secs_f64(),
            settings.transaction_window.as_millis(),
        )
    }
}

/// Runs one sale on a fresh model; checks the books per product and per shard whatever the outcome.
async fn run(sale: Sale, settings: ModelSettings) -> Outcome {
    let model = DynamoModel::new(settings);
    let env = e2e::over_model(&model);
    let product = hot(&env, "flash", sale.stock, sale.shards).await;
    let initial = domain::stock::split(sale.stock, sale.shards);
    env.shoppers(sale.buyers).await;
    let env = Arc::new(env);
    let before = model.counts();

    let start = Instant::now();
    let tasks = (0..sale.buyers).map(|i| {
        let env = Arc::clone(&env);
        let arrival = sale.over.mul_f64(fastrand::f64());
        tokio::spawn(async move {
            tokio::time::sleep_until(start + arrival).await;
            let asked = Instant::now();
            let body = json!({"product_id": "flash", "address_id": format!("addr-{i}"), "quantity": 1});
            let answer = create_order(&env, Some(&format!("user-{i}")), &body).await;
            let answered = Instant::now();
            (answer, answered - asked, answered - start)
        })
    });
    let results: Vec<((u16, Value), Duration, Duration)> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("buyer"))
        .collect();

    let mut outcome = Outcome {
        sale,
        created: 0,
        refused: 0,
        busy: 0,
        odd: Vec::new(),
        refused_available: Vec::new(),
        latencies: results.iter().map(|(_, wait, _)| *wait).collect(),
        last_created: Duration::ZERO,
        all_answered: results.iter().map(|(_, _, at)| *at).max().unwrap_or_default(),
        counts: ModelCounts::default(),
    };
    outcome.latencies.sort();
    for ((status, body), _, at) in results {
        match status {
            201 => {
                outcome.created += 1;
                outcome.last_created = outcome.last_created.max(at);
            }
            409 => {
                outcome.refused += 1;
                outcome
                    .refused_available
                    .push(body["error"]["details"][0]["available"].as_u64().unwrap_or(u64::MAX));
            }
            503 => outcome.busy += 1,
            _ => outcome.odd.push((status, body)),
        }
    }
    let after = model.counts();
    outcome.counts = ModelCounts {
        requests: after.requests.clone(),
        committed: after.committed - before.committed,
        conflicts: after.conflicts - before.conflicts,
        throttled_transactions: after.throttled_transactions - before.throttled_transactions,
        throttled_reads: after.throttled_reads - before.throttled_reads,
        refused: after.refused - before.refused,
    };

    // Whatever the answers: no unit sold twice or lost, per product and per shard.
    books_balance(&env, &product, &initial, outcome.created).await;
    outcome
}

async fn books_balance(env: &TestEnv, product: &domain::ProductId, initial: &[u32], created: usize) {
    let (orders, payments) = env.records().await;
    assert_eq!(orders.len(), created, "every 201 is an order, and only those");
    assert_eq!(payments.len(), created, "each with its payment");
    let sold: u32 = orders.iter().map(|o| o.quantity.get()).sum();
    assert_eq!(env.stock(product).await + sold, initial.iter().sum::<u32>());
    shard_books_balance(env, product, initial).await;
}

const HEADER: &str = "| design | stock | buyers | offered | created | orders/s | 503 | p50 ms | p99 ms | conflicts | throttled | all answered | window |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|";

#[tokio::test(start_paused = true)]
async fn eight_shards_take_over_two_thousand_orders_a_second_without_a_503() {
    // 2,500 buyers within 1 s, with stock for all of them (scripts/flash-sale.sh runs 5,000 over 2 s)
    let settings = ModelSettings::default();
    let sale = Sale {
        shards: 8,
        stock: 3_000,
        buyers: 2_500,
        over: Duration::from_secs(1),
    };
    let out = run(sale, settings).await;
    println!("{HEADER}\n{}", out.row(&settings));
    assert!(out.odd.is_empty(), "{:?}", out.odd);
    assert_eq!((out.created, out.busy, out.refused), (2_500, 0, 0), "{out:?}");
    assert!(
        out.orders_per_second() >= 2_000.0,
        "{:.0} orders/s",
        out.orders_per_second()
    );
    assert!(out.counts.conflicts > 0, "the model cancelled overlapping transactions");
}

#[tokio::test(start_paused = true)]
async fn eight_shards_sell_out_a_thousand_units_among_five_thousand_buyers() {
    let settings = ModelSettings::default();
    // 2,500 buyers a second: below what 8 shards take (each refused buyer costs a take on one shard and
    // a read of every shard), so every buyer must be answered 201 or 409.
    let sale = Sale {
        shards: 8,
        stock: 1_000,
        buyers: 5_000,
        over: Duration::from_secs(2),
    };
    let out = run(sale, settings).await;
    println!("{HEADER}\n{}", out.row(&settings));
    assert!(out.odd.is_empty(), "{:?}", out.odd);
    assert_eq!(out.busy, 0, "every buyer answered 201 or 409: {out:?}");
    assert_eq!((out.created, out.refused), (1_000, 4_000));
    assert!(
        out.refused_available.iter().all(|a| *a == 0),
        "one unit is refused only when no shard holds one"
    );
}

#[tokio::test(start_paused = true)]
async fn one_item_under_a_thousand_buyers_a_second_answers_503s_and_never_oversells() {
    // Today's design (one stock item) at 1,000 buyers a second: the model's conflicts reach the shopper
    let settings = ModelSettings::default();
    let sale = Sale {
        shards: 1,
        stock: 1_000,
        buyers: 1_000,
        over: Duration::from_secs(1),
    };
    let out = run(sale, settings).await;
    println!("{HEADER}\n{}", out.row(&settings));
    assert!(out.odd.is_empty(), "{:?}", out.odd);
    assert!(out.counts.conflicts > 0);
    assert!(out.busy > 0, "{out:?}");
    assert_eq!(out.created + out.busy, 1_000);
}

/// The figures for BENCHMARKS.md: every design at every load, and the window's sensitivity. Runs only
/// with `FLASH_SALE_MATRIX=1` (scripts/flash-sale.sh); says so when it does not.
#[tokio::test(start_paused = true)]
async fn matrix() {
    if std::env::var("FLASH_SALE_MATRIX").as_deref() != Ok("1") {
        println!("FLASH_SALE_MATRIX is not 1: the matrix is for scripts/flash-sale.sh");
        return;
    }
    let base = ModelSettings::default();
    println!("{HEADER}");
    for shards in [1, 8] {
        for buyers in [100, 1_000, 5_000] {
            let sale = Sale {
                shards,
                stock: buyers as u32,
                buyers,
                over: Duration::from_secs(1),
            };
            println!("{}", run(sale, base).await.row(&base));
        }
    }
    for (shards, buyers, seconds) in [(8, 5_000, 2), (8, 6_000, 2), (8, 8_000, 2), (16, 8_000, 2)] {
        let sale = Sale {
            shards,
            stock: buyers as u32,
            buyers,
            over: Duration::from_secs(seconds),
        };
        println!("{}", run(sale, base).await.row(&base));
    }
    for (shards, seconds) in [(1, 1), (8, 1), (1, 2), (8, 2)] {
        let sale = Sale {
            shards,
            stock: 1_000,
            buyers: 5_000,
            over: Duration::from_secs(seconds),
        };
        println!("{}", run(sale, base).await.row(&base));
    }
    for window in [1, 4] {
        let settings = ModelSettings {
            transaction_window: Duration::from_millis(window),
            ..base
        };
        for shards in [1, 8] {
            let sale = Sale {
                shards,
                stock: 5_000,
                buyers: 5_000,
                over: Duration::from_secs(2),
            };
            println!("{}", run(sale, settings).await.row(&settings));
        }
    }
}

/// The model against what DynamoDB documents, through the real SDK client (so the wire format is
/// the one the SDK parses), with the SDK's retries off so every answer is seen.
mod the_model {
    use aws_sdk_dynamodb::config::retry::RetryConfig;
    use aws_sdk_dynamodb::error::SdkError;
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};

    use super::*;

    fn update(stock_at_least: u32) -> TransactWriteItem {
        let update = Update::builder()
            .table_name("t")
            .key("pk", AttributeValue::S("PRODUCT#p".into()))
            .key("sk", AttributeValue::S("#PRODUCT".into()))
            .update_expression("SET stock = stock - :q")
            .condition_expression("stock >= :q AND attribute_exists(pk)")
            .expression_attribute_values(":q", AttributeValue::N(stock_at_least.to_string()))
            .return_values_on_condition_check_failure(
                aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld,
            )
            .build()
            .unwrap();
        TransactWriteItem::builder().update(update).build()
    }

    async fn seeded(padding: usize) -> (DynamoModel, aws_sdk_dynamodb::Client) {
        seeded_with(padding, ModelSettings::default()).await
    }

    /// The model with no latency at all: writes one after another take no time, so only the budgets
    /// limit them.
    fn instant() -> ModelSettings {
        ModelSettings {
            network: Duration::ZERO,
            read: Duration::ZERO,
            transaction_window: Duration::ZERO,
            write: Duration::ZERO,
            ..ModelSettings::default()
        }
    }

    async fn seeded_with(padding: usize, settings: ModelSettings) -> (DynamoModel, aws_sdk_dynamodb::Client) {
        let model = DynamoModel::new(settings);
        let client = model.client_retrying(RetryConfig::disabled());
        client
            .put_item()
            .table_name("t")
            .item("pk", AttributeValue::S("PRODUCT#p".into()))
            .item("sk", AttributeValue::S("#PRODUCT".into()))
            .item("stock", AttributeValue::N("100000".into()))
            .item("padding", AttributeValue::S("x".repeat(padding)))
            .send()
            .await
            .expect("put");
        // The put spent a unit: a second later the item's budgets are full again.
        tokio::time::sleep(Duration::from_secs(1)).await;
        (model, client)
    }

    /// The cancellation reason codes of a failed transaction, or `None` if it committed.
    async fn transact(client: &aws_sdk_dynamodb::Client, q: u32) -> Option<Vec<String>> {
        match client.transact_write_items().transact_items(update(q)).send().await {
            Ok(_) => None,
            Err(SdkError::ServiceError(e)) => match e.err() {
                TransactWriteItemsError::TransactionCanceledException(c) => Some(
                    c.cancellation_reasons()
                        .iter()
                        .map(|r| r.code().unwrap_or_default().to_owned())
                        .collect(),
                ),
                other => panic!("{other:?}"),
            },
            Err(other) => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn overlapping_transactions_on_one_item_cancel_the_later_with_transaction_conflict() {
        let (model, client) = seeded(0).await;
        let (first, second) = tokio::join!(transact(&client, 1), transact(&client, 1));
        let mut answers = vec![first, second];
        answers.sort();
        assert_eq!(
            answers,
            vec![None, Some(vec!["TransactionConflict".to_owned()])],
            "the first to arrive commits, the other is cancelled"
        );
        // Once the first has committed, the item is free again
        assert_eq!(transact(&client, 1).await, None);
        assert_eq!((model.counts().committed, model.counts().conflicts), (2, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn one_item_takes_500_transactional_writes_a_second_and_throttles_the_next() {
        // An item under 1 KB: 2 write units a transactional write, 1,000 a second
        let (_, client) = seeded_with(0, instant()).await;
        for i in 0..500 {
            assert_eq!(transact(&client, 1).await, None, "write {i}");
        }
        assert_eq!(transact(&client, 1).await, Some(vec!["ThrottlingError".to_owned()]));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(transact(&client, 1).await, None, "10 ms refills 10 units");
        // An item of 1.5 KB costs 4 units: 250 a second
        let (_, client) = seeded_with(1_500, instant()).await;
        let mut committed = 0;
        while transact(&client, 1).await.is_none() {
            committed += 1;
        }
        assert_eq!(committed, 250);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_condition_returns_the_old_item_and_consistent_reads_are_throttled_past_3000() {
        let (_, client) = seeded(0).await;
        let failed = client
            .transact_write_items()
            .transact_items(update(200_000))
            .send()
            .await;
        let Err(SdkError::ServiceError(e)) = failed else {
            panic!("{failed:?}")
        };
        let TransactWriteItemsError::TransactionCanceledException(c) = e.err() else {
            panic!("{e:?}")
        };
        let reason = &c.cancellation_reasons()[0];
        assert_eq!(reason.code(), Some("ConditionalCheckFailed"));
        assert_eq!(reason.item().unwrap()["stock"], AttributeValue::N("100000".into()));

        let read = || {
            client
                .get_item()
                .table_name("t")
                .key("pk", AttributeValue::S("PRODUCT#p".into()))
                .key("sk", AttributeValue::S("#PRODUCT".into()))
                .consistent_read(true)
                .send()
        };
        let reads = futures::future::join_all((0..3_001).map(|_| read())).await;
        let throttled: Vec<_> = reads.iter().filter(|r| r.is_err()).collect();
        assert_eq!(throttled.len(), 1);
        let Err(SdkError::ServiceError(e)) = throttled[0] else {
            panic!()
        };
        assert_eq!(
            aws_sdk_dynamodb::error::ProvideErrorMetadata::code(e.err()),
            Some("ThrottlingException")
        );
    }
}
