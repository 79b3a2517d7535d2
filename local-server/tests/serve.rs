//! The local server binary, run as a developer runs it, exercised over real HTTP on loopback.

use std::process::{Child, Command};

use serde_json::{json, Value};

mod common;

/// A running local-server process, killed when dropped.
struct Server {
    child: Child,
    base: String,
    /// Every line it printed after its ready line.
    output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on a free port and waits for its ready line.
fn start(args: &[&str]) -> Server {
    let mut command = common::command();
    if !args.contains(&"--secret-file") {
        // Never leave a development secret file behind in the source tree.
        command.env("PAYMENT_CALLBACK_SECRETS", "serve-test-secret");
    }
    if !args.contains(&"--provider-keys") {
        let keys = std::env::temp_dir().join(format!("serve-dev-providers-{}.json", std::process::id()));
        command.env("PROVIDER_KEYS", keys);
    }
    if !args.contains(&"--data-dir") {
        // Never write into the workspace's own data folder: beside the test's database (so a restart on
        // the same database finds the same files), or a fresh folder.
        let dir = match args.iter().position(|a| *a == "--db") {
            Some(i) => format!("{}.data", args[i + 1]),
            None => std::env::temp_dir()
                .join(format!("serve-data-{}", uuid_like()))
                .display()
                .to_string(),
        };
        command.env("LOCAL_DATA_DIR", dir);
    }
    command.args(args);
    let (child, base, lines) = common::launch(command);
    // Keep draining stdout so the server never blocks on a full pipe.
    let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = output.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    Server { child, base, output }
}

impl Server {
    /// `POST path` with a JSON body, as `user` when given; status and JSON body back.
    async fn post(&self, path: &str, user: Option<&str>, body: &Value) -> (u16, Value) {
        self.send(
            reqwest::Client::new()
                .post(format!("{}{path}", self.base))
                .body(body.to_string()),
            user,
        )
        .await
    }

    /// `GET path`, as `user` when given.
    async fn get(&self, path: &str, user: Option<&str>) -> (u16, Value) {
        self.send(reqwest::Client::new().get(format!("{}{path}", self.base)), user)
            .await
    }

    async fn send(&self, mut req: reqwest::RequestBuilder, user: Option<&str>) -> (u16, Value) {
        req = req.header("content-type", "application/json");
        if let Some(user) = user {
            req = req.header("authorization", format!("Bearer {user}"));
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

fn code(reply: &(u16, Value)) -> (u16, Option<&str>) {
    (reply.0, reply.1["error"]["code"].as_str())
}

const CREATE: &str = "/api/orders/create_order/";
const BATCH: &str = "/api/orders/create_batch_orders/";

async fn exercise_every_route(server: &Server) {
    let order = json!({"product_id": "fridge-bcd-470", "address_id": "addr-alice-home", "quantity": 2});

    let (status, created) = server.post(CREATE, Some("alice"), &order).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["order"]["total_amount"], "6598.00");
    let path = format!("/api/orders/{}/", created["order"]["id"].as_str().unwrap());

    let (status, got) = server.get(&path, Some("alice")).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(got["order"], created["order"]);

    assert_eq!(
        code(&server.get(&path, Some("bob")).await),
        (404, Some("ORDER_NOT_FOUND"))
    );

    let batch = json!({"items": [{"product_id": "washer-eg100", "quantity": 1}, {"product_id": "aircon-kfr35", "quantity": 9}],
                       "address_id": "addr-bob-home"});
    let (status, body) = server.post(BATCH, Some("bob"), &batch).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["error"]["details"],
        json!([{"product_id": "aircon-kfr35", "requested": 9, "available": 5}])
    );

    assert_eq!(
        code(&server.post(CREATE, None, &order).await),
        (401, Some("UNAUTHENTICATED"))
    );

    let huge = json!({"padding": "x".repeat(70 * 1024)});
    assert_eq!(
        code(&server.post(CREATE, Some("alice"), &huge).await),
        (413, Some("PAYLOAD_TOO_LARGE"))
    );

    // The supplier-held product is checked with the fake supplier over HTTP (20 in the demo
    // catalogue); the store's reservation ledger holds what each order takes of that figure.
    let supplier = json!({"product_id": "haier-water-heater-ec6002", "address_id": "addr-alice-home", "quantity": 1});
    let (status, body) = server.post(CREATE, Some("alice"), &supplier).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["order"]["stock_source"], "supplier");
    let all = json!({"product_id": "haier-water-heater-ec6002", "address_id": "addr-alice-home", "quantity": 20});
    let (status, body) = server.post(CREATE, Some("alice"), &all).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["details"][0]["available"], 19);

    // A bank-transfer payment checked out: the development account and the payment as the reference.
    let bank =
        json!({"product_id": "washer-eg100", "address_id": "addr-alice-home", "quantity": 1, "payment_method": "bank"});
    let (status, created) = server.post(CREATE, Some("alice"), &bank).await;
    assert_eq!(status, 201, "{created}");
    let (order, payment) = (
        created["order"]["id"].as_str().unwrap(),
        created["payment"]["id"].as_str().unwrap(),
    );
    let path = format!("/api/orders/{order}/payments/{payment}/checkout/");
    let (status, checkout) = server.post(&path, Some("alice"), &json!({})).await;
    assert_eq!(status, 200, "{checkout}");
    assert_eq!(checkout["checkout"]["provider"], "bank");
    assert_eq!(checkout["checkout"]["reference"], payment);
    assert_eq!(checkout["checkout"]["amount"], created["payment"]["amount"]);
    assert_eq!(
        code(&server.post(&path, Some("bob"), &json!({})).await),
        (404, Some("ORDER_NOT_FOUND"))
    );

    // WeChat Pay and Alipay checkouts against the fakes the server starts with its development keys.
    for (method, scene, field, prefix) in [
        ("wechat", "native", "code_url", "weixin://wxpay/bizpayurl?pr="),
        ("alipay", "qr", "qr_code", "https://qr.alipay.com/"),
        ("alipay", "page", "url", "http://127.0.0.1:"),
    ] {
        let body = json!({"product_id": "washer-eg100", "address_id": "addr-alice-home", "quantity": 1, "payment_method": method});
        let (status, created) = server.post(CREATE, Some("alice"), &body).await;
        assert_eq!(status, 201, "{created}");
        let (order, payment) = (
            created["order"]["id"].as_str().unwrap(),
            created["payment"]["id"].as_str().unwrap(),
        );
        let path = format!("/api/orders/{order}/payments/{payment}/checkout/");
        let (status, got) = server.post(&path, Some("alice"), &json!({"scene": scene})).await;
        assert_eq!(status, 200, "{scene}: {got}");
        let handed_out = got["checkout"][field].as_str().unwrap_or_default();
        assert!(handed_out.starts_with(prefix), "{scene}: {got}");
    }

    assert_eq!(server.get("/api/nothing-here", Some("alice")).await.0, 404);
}

#[tokio::test]
async fn embedded_store_serves_every_route_and_keeps_data_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.sqlite3");
    let db = db.to_str().unwrap();
    let server = start(&["--db", db]);
    exercise_every_route(&server).await;
    let (status, page) = server.get("/api/orders/?limit=1", Some("alice")).await;
    assert_eq!(status, 200, "{page}");
    let cursor = page["next_cursor"].as_str().expect("more than one order").to_owned();
    drop(server);

    // A restart keeps orders and stock: the demo catalogue is not loaded over them again.
    let server = start(&["--db", db]);
    let order = json!({"product_id": "fridge-bcd-470", "address_id": "addr-alice-home", "quantity": 19});
    let (status, body) = server.post(CREATE, Some("alice"), &order).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["details"][0]["available"], 18);
    // and the cursor secret: a cursor issued before the restart still reads the next page
    let (status, next) = server
        .get(&format!("/api/orders/?limit=1&cursor={cursor}"), Some("alice"))
        .await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["orders"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_catalogue_file_is_upserted() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.json");
    std::fs::write(
        &catalog,
        r#"{"products": [{"id": "kettle", "name": "Kettle", "price": "89.90", "stock": 1},
                         {"id": "boiler", "name": "Boiler", "price": "999.00", "stock": 2, "stock_source": "supplier"}],
            "addresses": [{"id": "carol-home", "user_id": "carol", "city": "杭州"}]}"#,
    )
    .unwrap();
    let db = dir.path().join("shop.sqlite3");
    let server = start(&["--db", db.to_str().unwrap(), "--catalog", catalog.to_str().unwrap()]);
    let order = json!({"product_id": "kettle", "address_id": "carol-home", "quantity": 1});
    let (status, body) = server.post(CREATE, Some("carol"), &order).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["order"]["address"]["fields"]["city"], "杭州");
    // Only the file was loaded: the demo products are not there.
    let demo = json!({"product_id": "fridge-bcd-470", "address_id": "carol-home", "quantity": 1});
    assert_eq!(
        code(&server.post(CREATE, Some("carol"), &demo).await),
        (400, Some("PRODUCT_NOT_FOUND"))
    );
    // The fake supplier answers the file's figure for its supplier-held product...
    let boilers = json!({"product_id": "boiler", "address_id": "carol-home", "quantity": 3});
    let (status, body) = server.post(CREATE, Some("carol"), &boilers).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["details"][0]["available"], 2);
    drop(server);

    // ...and still after a restart without the file: the figures are kept in the data folder
    let server = start(&["--db", db.to_str().unwrap(), "--no-demo"]);
    let (status, body) = server.post(CREATE, Some("carol"), &boilers).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["details"][0]["available"], 2);
}

/// `local-server stock`: one JSON object on stdout.
fn stock(dir: &std::path::Path, args: &[&str]) -> Result<Value, String> {
    let out = common::command()
        .args(["--data-dir", dir.to_str().unwrap()])
        .arg("stock")
        .args(args)
        .output()
        .expect("run stock");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).expect("one JSON object"))
}

#[tokio::test]
async fn an_operator_reads_and_rebalances_a_hot_products_shards() {
    // Given a catalogue marking a product hot, loaded alone
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("catalog.json");
    std::fs::write(
        &catalog,
        r#"{"products": [{"id": "flash", "name": "秒杀冰箱", "price": "1999.00", "stock": 10, "shards": 4}],
            "addresses": [{"id": "carol-home", "user_id": "carol", "city": "杭州"}]}"#,
    )
    .unwrap();
    let data = dir.path().join("data");
    common::load_only(&data, &catalog);
    assert_eq!(
        stock(&data, &["flash"]).unwrap(),
        json!({"product_id": "flash", "shards": 4, "stock": 10, "figures": [3, 3, 2, 2]})
    );

    // When a shopper buys 5 (more than any shard holds) through the server
    let server = start(&["--data-dir", data.to_str().unwrap(), "--no-demo"]);
    let order = json!({"product_id": "flash", "address_id": "carol-home", "quantity": 5});
    let (status, body) = server.post(CREATE, Some("carol"), &order).await;
    assert_eq!(status, 201, "{body}");
    let taken: u64 = body["order"]["stock_shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["quantity"].as_u64().unwrap())
        .sum();
    assert_eq!(taken, 5);
    drop(server);

    // Then the operator sees the 5 left shard by shard, and a rebalance spreads them evenly
    let skewed = stock(&data, &["flash"]).unwrap();
    assert_eq!(skewed["stock"], 5);
    let done = stock(&data, &["flash", "--rebalance"]).unwrap();
    assert_eq!(done["before"], skewed["figures"]);
    assert_eq!(done["after"], json!([2, 1, 1, 1]));
    assert_eq!(done["figures"], json!([2, 1, 1, 1]));
    assert_eq!(done["stock"], 5);
    let unknown = stock(&data, &["nope"]).unwrap_err();
    assert!(unknown.contains("no product nope"), "{unknown}");
}

#[tokio::test]
async fn a_dynamodb_endpoint_replaces_the_embedded_store() {
    let Some(endpoint) = e2e::emulator() else { return };
    let table = format!("local-{}", uuid_like());
    let server = start(&["--dynamodb-endpoint", &endpoint, "--dynamodb-table", &table]);
    exercise_every_route(&server).await;
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// The signed callback the `sign-callback` helper prints as a curl command: (signature header, body).
fn signed_callback(secret_file: &str, payment_id: &str, amount: &str) -> (String, String) {
    let out = common::command()
        .args(["--secret-file", secret_file, "sign-callback"])
        .args(["--payment-id", payment_id, "--amount", amount])
        .output()
        .expect("run sign-callback");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let curl = String::from_utf8(out.stdout).expect("utf-8");
    assert!(curl.starts_with("curl -s -X POST http://127.0.0.1:"), "{curl}");
    let quoted = |prefix: &str| {
        let start = curl.find(prefix).unwrap_or_else(|| panic!("{prefix} in {curl}")) + prefix.len();
        curl[start..].split('\'').next().expect("closing quote").to_owned()
    };
    (quoted("-H 'X-Payment-Signature: "), quoted("-d '"))
}

#[tokio::test]
async fn an_order_is_paid_by_a_signed_callback_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.sqlite3");
    let secret = dir.path().join("callback-secret");
    let secret = secret.to_str().unwrap();
    let server = start(&["--db", db.to_str().unwrap(), "--secret-file", secret]);

    // Given alice's order
    let order = json!({"product_id": "washer-eg100", "address_id": "addr-alice-home", "quantity": 1});
    let (status, created) = server.post(CREATE, Some("alice"), &order).await;
    assert_eq!(status, 201, "{created}");
    let path = format!("/api/orders/{}/", created["order"]["id"].as_str().unwrap());
    let payment_id = created["payment"]["id"].as_str().unwrap();

    // When the provider posts a success signed with the server's development secret
    let (signature, body) = signed_callback(secret, payment_id, created["payment"]["amount"].as_str().unwrap());
    let post = |signature: String| {
        reqwest::Client::new()
            .post(format!("{}/api/payments/callback/", server.base))
            .header("content-type", "application/json")
            .header("x-payment-signature", signature)
            .body(body.clone())
            .send()
    };
    let resp = post(signature.clone()).await.expect("callback");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"code": "SUCCESS"}));
    // The provider's retry of the same notification is taken, and logged as the duplicate it is
    let resp = post(signature.clone()).await.expect("callback again");
    assert_eq!(resp.status().as_u16(), 200);
    let logged = |message: &str| {
        server
            .output
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(message))
            .count()
    };
    assert_eq!((logged("\"callback enqueued\""), logged("callback duplicate")), (1, 1));
    // A forged signature is refused in the catalogue's shape
    let resp = post(signature.replace("v1=", "v1=00")).await.expect("forged callback");
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"]["code"],
        "INVALID_SIGNATURE"
    );

    // Then the in-process queue hands it to the processor and the order reads paid
    let mut got = Value::Null;
    for _ in 0..100 {
        got = server.get(&path, Some("alice")).await.1;
        if got["order"]["status"] == "paid" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(got["order"]["status"], "paid", "{got}");
    assert_eq!(got["payments"][0]["status"], "succeeded");

    // And a new payment for the paid order is refused
    let (status, body) = server
        .post(&format!("{path}payments/"), Some("alice"), &json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("INVALID_ORDER_STATUS"))
    );
}

#[tokio::test]
async fn the_server_cancels_lists_and_runs_the_sweeper_on_its_ticker() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.sqlite3");
    let server = start(&["--db", db.to_str().unwrap(), "--expiry-interval", "1"]);

    let order = json!({"product_id": "aircon-kfr35", "address_id": "addr-bob-home", "quantity": 1});
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, created) = server.post(CREATE, Some("bob"), &order).await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["order"]["id"].as_str().unwrap().to_owned());
    }

    // The shopper cancels one (twice: the same answer); its unit comes back
    let (status, cancelled) = server
        .post(&format!("/api/orders/{}/cancel/", ids[0]), Some("bob"), &json!({}))
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["order"]["status"], "cancelled");
    let (status, again) = server
        .post(&format!("/api/orders/{}/cancel/", ids[0]), Some("bob"), &json!({}))
        .await;
    assert_eq!((status, &again), (200, &cancelled));
    assert_eq!(
        code(
            &server
                .post(&format!("/api/orders/{}/cancel/", ids[1]), Some("alice"), &json!({}))
                .await
        ),
        (404, Some("ORDER_NOT_FOUND"))
    );
    let three = json!({"product_id": "aircon-kfr35", "address_id": "addr-bob-home", "quantity": 3});
    let (status, body) = server.post(CREATE, Some("bob"), &three).await;
    assert_eq!(status, 201, "5 - 3 + 1 returned = 3 left: {body}");
    ids.push(body["order"]["id"].as_str().unwrap().to_owned());

    // The list pages newest first behind a cursor
    let (status, page) = server.get("/api/orders/?limit=2", Some("bob")).await;
    assert_eq!(status, 200, "{page}");
    let listed: Vec<&str> = page["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[3].as_str(), ids[2].as_str()]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (status, rest) = server
        .get(&format!("/api/orders/?limit=2&cursor={cursor}"), Some("bob"))
        .await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(rest["orders"][0]["id"], ids[1].as_str());
    assert_eq!(rest["orders"][1]["id"], ids[0].as_str());
    assert_eq!(rest["orders"][1]["open_payment"], Value::Null);
    assert_eq!(rest["next_cursor"], Value::Null);
    assert_eq!(
        code(
            &server
                .get(&format!("/api/orders/?cursor={cursor}"), Some("alice"))
                .await
        ),
        (400, Some("VALIDATION_ERROR"))
    );

    // The ticker hands the sweeper a scheduled event every second
    let mut swept = false;
    for _ in 0..60 {
        swept = server
            .output
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains("expiry sweep finished"));
        if swept {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(swept, "no sweep ran within 3 s");
}

#[tokio::test]
async fn orders_are_paid_by_wechatpay_and_alipay_notifications_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.sqlite3");
    let keys = dir.path().join("dev-providers.json");
    let keys = keys.to_str().unwrap();
    let server = start(&["--db", db.to_str().unwrap(), "--provider-keys", keys]);

    for (method, subcommand, ok_status, ok_body) in [
        ("wechat", "sign-wechatpay", 200, ""),
        ("alipay", "sign-alipay", 200, "success"),
    ] {
        let order = json!({"product_id": "fridge-bcd-470", "address_id": "addr-alice-home", "quantity": 1, "payment_method": method});
        let (status, created) = server.post(CREATE, Some("alice"), &order).await;
        assert_eq!(status, 201, "{created}");
        let payment = created["payment"]["id"].as_str().unwrap();
        let amount = created["payment"]["amount"].as_str().unwrap();
        let curl = common::helper(keys, &[subcommand, "--payment-id", payment, "--amount", amount]);
        let (url, headers, body) = common::parse_curl(&curl);
        let path = &url[url.find("/api/").unwrap()..];
        let mut req = reqwest::Client::new()
            .post(format!("{}{path}", server.base))
            .body(body.clone());
        for (name, value) in &headers {
            req = req.header(name.as_str(), value.as_str());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), ok_status, "{method}");
        assert_eq!(resp.text().await.unwrap(), ok_body, "{method}");

        let order_path = format!("/api/orders/{}/", created["order"]["id"].as_str().unwrap());
        let mut got = Value::Null;
        for _ in 0..100 {
            got = server.get(&order_path, Some("alice")).await.1;
            if got["order"]["status"] == "paid" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(got["order"]["status"], "paid", "{method}: {got}");

        // The same notification with its body altered is refused the provider's way
        let mut req = reqwest::Client::new()
            .post(format!("{}{path}", server.base))
            .body(body.replacen('1', "2", 1));
        for (name, value) in &headers {
            req = req.header(name.as_str(), value.as_str());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        match method {
            "wechat" => assert_eq!(
                (status, text.as_str()),
                (401, r#"{"code":"FAIL","message":"签名错误"}"#)
            ),
            _ => assert_eq!((status, text.as_str()), (200, "failure")),
        }
    }
}

/// Sends raw bytes on a fresh connection and reads until the server closes it: status and JSON body.
async fn raw(base: &str, request: &[u8]) -> (u16, Value, std::time::Duration) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let started = std::time::Instant::now();
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(20), stream.read_to_end(&mut out)).await;
    let elapsed = started.elapsed();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null), elapsed)
}

#[tokio::test]
async fn the_http_edge_answers_in_the_catalogue_shape_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.sqlite3");
    let server = start(&["--db", db.to_str().unwrap(), "--read-timeout-secs", "1"]);
    let order = json!({"product_id": "washer-eg100", "address_id": "addr-alice-home", "quantity": 1}).to_string();
    let (status, _) = server
        .post(CREATE, Some("alice"), &serde_json::from_str(&order).unwrap())
        .await;
    assert_eq!(status, 201);
    // The whole store, every table, not one user's view of it.
    let before = e2e::sqlite_snapshot(&db);

    let huge_uri = format!("GET /api/orders/{}/ HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70 * 1024));
    let many_headers: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many_headers =
        format!("GET /api/orders/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice\r\n{many_headers}\r\n");
    let big_body = format!(
        "POST /api/orders/create_order/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice\r\nContent-Length: {}\r\n\r\n{}",
        1100 * 1024,
        "x".repeat(1100 * 1024)
    );
    let bad_chunk = "POST /api/orders/create_order/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n".to_owned();
    let two_auth = format!(
        "POST /api/orders/create_order/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice\r\nAuthorization: Bearer bob\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{order}",
        order.len()
    );
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("wrong method", "PUT /api/orders/create_order/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".into(), 405, "METHOD_NOT_ALLOWED"),
        ("unknown path", "GET /api/nothing-here/ HTTP/1.1\r\nHost: x\r\n\r\n".into(), 404, "NOT_FOUND"),
        ("no trailing slash", "POST /api/orders/create_order HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".into(), 404, "NOT_FOUND"),
        ("70 KB target", huge_uri, 414, "URI_TOO_LONG"),
        ("500 headers", many_headers, 431, "HEADERS_TOO_LARGE"),
        ("body over 1 MiB", big_body, 413, "PAYLOAD_TOO_LARGE"),
        ("malformed chunk size", bad_chunk, 400, "VALIDATION_ERROR"),
        ("undecodable order id", "GET /api/orders/%ff/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice\r\n\r\n".into(), 404, "ORDER_NOT_FOUND"),
        ("two Authorization headers", two_auth, 401, "UNAUTHENTICATED"),
        ("partial head", "GET /api/orders/ HTTP/1.1\r\nHost: x\r\nAuthor".into(), 408, "REQUEST_TIMEOUT"),
        ("partial body", "POST /api/orders/create_order/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice\r\nContent-Length: 100\r\n\r\n{\"product".into(), 408, "REQUEST_TIMEOUT"),
    ];
    let create_with = |extra: &str| {
        format!(
            "POST /api/orders/create_order/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{order}",
            order.len()
        )
    };
    let list_with = |head: &str| format!("GET /api/orders/ HTTP/1.1\r\n{head}Authorization: Bearer alice\r\n\r\n");
    const V: &str = "VALIDATION_ERROR";
    let mut cases = cases;
    cases.extend([
        // Heads hyper refuses with an empty 400: answered in the catalogue shape before it sees them.
        ("two different Content-Length", "POST /api/orders/create_order/ HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}".into(), 400, V),
        ("Content-Length -1", "POST /api/orders/create_order/ HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".into(), 400, V),
        ("Transfer-Encoding identity", "POST /api/orders/create_order/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n".into(), 400, V),
        ("chunked and a length", "POST /api/orders/create_order/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(), 400, V),
        ("header name with a space", "GET /api/orders/ HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n".into(), 400, V),
        ("header line without a colon", "GET /api/orders/ HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n".into(), 400, V),
        ("folded header line", "GET /api/orders/ HTTP/1.1\r\nHost: x\r\nX-A: one\r\n  two\r\n\r\n".into(), 400, V),
        ("garbage request line", "\u{1}\u{2}garbage\r\n\r\n".into(), 400, V),
        ("HTTP/0.9", "GET /api/orders/ HTTP/0.9\r\nHost: x\r\n\r\n".into(), 400, V),
        ("HTTP/2.0", "GET /api/orders/ HTTP/2.0\r\nHost: x\r\n\r\n".into(), 400, V),
        ("NUL in the path", "GET /api/orders/\0/ HTTP/1.1\r\nHost: x\r\n\r\n".into(), 400, V),
        // Headers lambda_http could not build a URL from (its conversion would panic): 400 on every kind of route.
        ("Host with a space", list_with("Host: a b\r\n"), 400, V),
        ("Host [", list_with("Host: [\r\n"), 400, V),
        ("Host with a port out of range", list_with("Host: x:99999999\r\n"), 400, V),
        ("Host %", create_with("").replace("Host: x", "Host: %"), 400, V),
        ("X-Forwarded-Proto 1bad", list_with("Host: x\r\nX-Forwarded-Proto: 1bad\r\n"), 400, V),
        ("X-Forwarded-Proto ://", create_with("X-Forwarded-Proto: ://\r\n"), 400, V),
        ("Host [ on the WeChat Pay route", "POST /api/payments/callback/wechatpay/ HTTP/1.1\r\nHost: [\r\nContent-Length: 2\r\n\r\n{}".into(), 400, V),
        ("Host a b on the Alipay route", "POST /api/payments/callback/alipay/ HTTP/1.1\r\nHost: a b\r\nContent-Length: 0\r\n\r\n".into(), 400, V),
        // No header is dropped on its way to a handler: a key it cannot accept is refused, never ignored.
        ("a non-ASCII Idempotency-Key", create_with("Idempotency-Key: cl\u{e9}-42\r\n"), 400, V),
        ("Idempotency-Key twice", create_with("Idempotency-Key: k-1\r\nIdempotency-Key: k-1\r\n"), 400, V),
        ("two different Idempotency-Keys", create_with("Idempotency-Key: k-1\r\nIdempotency-Key: k-2\r\n"), 400, V),
    ]);
    for (name, request, status, code) in cases {
        let (got, body, elapsed) = raw(&server.base, request.as_bytes()).await;
        assert_eq!(
            (got, body["error"]["code"].as_str()),
            (status, Some(code)),
            "{name}: {body}"
        );
        assert!(
            body["error"]["message"].is_string() && body["request_id"].is_string(),
            "{name}: {body}"
        );
        assert!(elapsed < std::time::Duration::from_secs(5), "{name} took {elapsed:?}");
    }
    assert_eq!(e2e::sqlite_snapshot(&db), before, "nothing was written");

    // Bare LF line endings (which hyper accepts) are read promptly, not left to the read timeout.
    let (status, body, elapsed) = raw(
        &server.base,
        b"GET /api/orders/ HTTP/1.1\nHost: x\nAuthorization: Bearer alice\n\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["orders"].as_array().map(Vec::len), Some(1), "{body}");
    assert!(
        elapsed < std::time::Duration::from_millis(900),
        "bare LF took {elapsed:?}"
    );
}

/// Runs a helper of the binary: exit success, stdout, stderr.
fn run_helper(args: &[&str], data_dir: &std::path::Path) -> (bool, String, String) {
    let out = common::command()
        .args(args)
        .env("LOCAL_DATA_DIR", data_dir)
        .env_remove("PAYMENT_CALLBACK_SECRETS")
        .env_remove("PORT")
        .output()
        .expect("run local-server");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn flags_go_before_or_after_a_helper_which_never_invents_a_secret() {
    let data = tempfile::tempdir().unwrap();
    let sign = [
        "sign-callback",
        "--payment-id",
        "pay_0123456789abcdef0123456789ab",
        "--amount",
        "1.00",
    ];

    // No server has made a secret in this data folder yet: the helper says so and prints nothing
    let (ok, stdout, stderr) = run_helper(&sign, data.path());
    assert!(!ok && stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("no development callback secret at"), "{stderr}");
    assert!(!data.path().join("callback-secret").exists(), "nothing invented");

    // Once the server made one there, the helper signs with it, its flags before or after it alike
    let secret_file = data.path().join("callback-secret");
    let server = start(&[
        "--data-dir",
        data.path().to_str().unwrap(),
        "--secret-file",
        secret_file.to_str().unwrap(),
        "--no-demo",
    ]);
    drop(server);
    let secret = std::fs::read_to_string(data.path().join("callback-secret")).unwrap();
    let after: Vec<&str> = sign.iter().copied().chain(["--port", "4321"]).collect();
    let before: Vec<&str> = ["--port", "4321"].into_iter().chain(sign.iter().copied()).collect();
    for args in [after, before] {
        let (ok, stdout, stderr) = run_helper(&args, data.path());
        assert!(ok, "{args:?}: {stderr}");
        assert!(
            stdout.contains("http://127.0.0.1:4321/api/payments/callback/"),
            "{stdout}"
        );
        let (url, headers, body) = common::parse_curl(&stdout);
        assert!(url.ends_with("/api/payments/callback/"));
        let signature = headers
            .iter()
            .find(|(k, _)| k == "X-Payment-Signature")
            .map(|(_, v)| v.clone())
            .unwrap();
        let verifier = domain::SignatureVerifier::from_list(secret.trim()).unwrap();
        assert!(verifier
            .verify(Some(&signature), body.as_bytes(), domain::Timestamp::now())
            .is_ok());
    }
}

#[test]
fn a_busy_port_is_named_and_table_name_in_the_shell_changes_nothing() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let data = tempfile::tempdir().unwrap();
    let out = common::command()
        .args(["--port", &port, "--no-demo"])
        .env("LOCAL_DATA_DIR", data.path())
        .env("TABLE_NAME", "orders-in-aws")
        .env("PAYMENT_CALLBACK_SECRETS", "serve-test-secret")
        .output()
        .expect("run local-server");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("port {port} is already in use")) && stderr.contains("--port"),
        "{stderr}"
    );
    assert!(
        stdout.contains("store: embedded SQLite at") && !stdout.contains("orders-in-aws"),
        "TABLE_NAME never chooses the store: {stdout}"
    );
}

#[test]
fn sigterm_stops_the_server_as_ctrl_c_does() {
    let server = start(&["--no-demo"]);
    let pid = server.child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(killed.success());
    let mut server = server;
    let status = server.child.wait().expect("wait");
    assert!(status.success(), "a clean exit on SIGTERM: {status}");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let lines = server.output.lock().unwrap().clone();
    assert!(lines.iter().any(|l| l.contains("shutting down")), "{lines:?}");
}

#[tokio::test]
async fn an_operator_refunds_a_paid_order_and_the_ticker_sends_the_refund() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.sqlite3");
    let keys = dir.path().join("dev-providers.json");
    let server = start(&[
        "--db",
        db.to_str().unwrap(),
        "--provider-keys",
        keys.to_str().unwrap(),
        "--refund-interval",
        "1",
    ]);

    // Alice pays a fridge at the fake WeChat Pay's cashier
    let order = json!({"product_id": "fridge-bcd-470", "address_id": "addr-alice-home", "quantity": 1, "payment_method": "wechat"});
    let (status, created) = server.post(CREATE, Some("alice"), &order).await;
    assert_eq!(status, 201, "{created}");
    let (order_id, payment) = (
        created["order"]["id"].as_str().unwrap().to_owned(),
        created["payment"]["id"].as_str().unwrap().to_owned(),
    );
    let checkout = format!("/api/orders/{order_id}/payments/{payment}/checkout/");
    assert_eq!(server.post(&checkout, Some("alice"), &json!({})).await.0, 200);
    let (status, paid) = server
        .post(&format!("/dev/wechatpay/pay/{payment}"), None, &json!({}))
        .await;
    assert_eq!(status, 200, "{paid}");
    let order_path = format!("/api/orders/{order_id}/");
    let wait_for = |status: &'static str| {
        let (server, path) = (&server, order_path.clone());
        async move {
            let mut got = Value::Null;
            for _ in 0..100 {
                got = server.get(&path, Some("alice")).await.1;
                if got["order"]["status"] == status {
                    return got;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("order never {status}: {got}");
        }
    };
    wait_for("paid").await;

    // A shopper's token cannot reach the merchant's routes; `Bearer <user> orders:admin` can
    let refund = format!("/api/admin/orders/{order_id}/refund/");
    let body = json!({"reason": "客户要求退款"});
    assert_eq!(
        code(&server.post(&refund, Some("alice"), &body).await),
        (403, Some("FORBIDDEN"))
    );
    assert_eq!(
        code(&server.post(&refund, None, &body).await),
        (401, Some("UNAUTHENTICATED"))
    );
    let (status, answered) = server.post(&refund, Some("ops orders:admin"), &body).await;
    assert_eq!(status, 200, "{answered}");
    assert_eq!(answered["payments"][0]["status"], "refunding");
    let (status, any) = server
        .get(&format!("/api/admin/orders/{order_id}/"), Some("ops orders:admin"))
        .await;
    assert_eq!((status, &any["order"]["id"]), (200, &json!(order_id)));

    // The server's refund ticker sends it to the fake WeChat Pay: refunded, the order with it
    let got = wait_for("refunded").await;
    assert_eq!(got["payments"][0]["status"], "refunded", "{got}");
    let history = got["order"]["history"].as_array().unwrap();
    let operators: Vec<&str> = history.iter().map(|h| h["operator"].as_str().unwrap()).collect();
    assert_eq!(
        operators,
        ["user:alice", "payment-callback", "staff:ops", "system:refund"]
    );
    let ran = server
        .output
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("refund run finished"));
    assert!(ran, "the ticker ran the refund worker");
}

/// The `action` of the cashier page's 确认支付 form, resolved against the page's own URL.
fn pay_action(page_url: &str, html: &str) -> String {
    let start = html.find("action=\"").expect("a form") + "action=\"".len();
    let action = html[start..][..html[start..].find('"').unwrap()].replace("&amp;", "&");
    let origin_end = page_url[8..].find('/').map_or(page_url.len(), |i| i + 8);
    format!("{}{action}", &page_url[..origin_end])
}

#[tokio::test]
async fn the_demo_page_its_catalogue_qr_codes_and_the_fake_cashiers_pay_orders() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shop.sqlite3");
    let keys = dir.path().join("dev-providers.json");
    let server = start(&["--db", db.to_str().unwrap(), "--provider-keys", keys.to_str().unwrap()]);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // The page, in Chinese, from the server's root
    let page = http.get(format!("{}/", server.base)).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("提交订单"));

    // The catalogue it shows, read live: the stock an order takes
    let stock_of = |catalog: &Value, id: &str| {
        catalog["products"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .map(|p| p["stock"].clone())
            .unwrap()
    };
    let (status, catalog) = server.get("/demo/catalog", None).await;
    assert_eq!(status, 200, "{catalog}");
    assert_eq!(stock_of(&catalog, "fridge-bcd-470"), 20);
    assert_eq!(
        stock_of(&catalog, "haier-water-heater-ec6002"),
        20,
        "the supplier's figure"
    );
    assert!(catalog["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["user_id"] == "alice"));

    for method in ["wechat", "alipay"] {
        let order = json!({"product_id": "fridge-bcd-470", "address_id": "addr-alice-home", "quantity": 1, "payment_method": method});
        let (status, created) = server.post(CREATE, Some("alice"), &order).await;
        assert_eq!(status, 201, "{created}");
        let order_id = created["order"]["id"].as_str().unwrap().to_owned();
        let payment = created["payment"]["id"].as_str().unwrap().to_owned();
        let checkout = format!("/api/orders/{order_id}/payments/{payment}/checkout/");
        let (status, answer) = server.post(&checkout, Some("alice"), &json!({})).await;
        assert_eq!(status, 200, "{answer}");

        // What the shopper scans or follows leads to the fake provider's cashier
        let cashier_url = if method == "wechat" {
            let code_url = answer["checkout"]["code_url"].as_str().unwrap();
            let text: String = form_urlencoded::byte_serialize(code_url.as_bytes()).collect();
            let qr = http
                .get(format!("{}/demo/qr.svg?text={text}", server.base))
                .send()
                .await
                .unwrap();
            assert_eq!(qr.headers()["content-type"], "image/svg+xml");
            assert!(qr.text().await.unwrap().starts_with("<?xml"), "an SVG image");
            let scanned = http
                .get(format!("{}/dev/wechatpay/cashier/{payment}", server.base))
                .send()
                .await
                .unwrap();
            assert_eq!(scanned.status().as_u16(), 303);
            scanned.headers()["location"].to_str().unwrap().to_owned()
        } else {
            answer["checkout"]["url"].as_str().unwrap().to_owned()
        };
        let cashier = http.get(&cashier_url).send().await.unwrap();
        assert_eq!(cashier.status().as_u16(), 200, "{method}");
        let html = cashier.text().await.unwrap();
        assert!(
            html.contains("确认支付") && html.contains("取消") && html.contains("3299.00"),
            "{html}"
        );

        // 确认支付: the fake pays the trade and posts its signed notification; the order is paid
        let paid = http.post(pay_action(&cashier_url, &html)).send().await.unwrap();
        assert_eq!(paid.status().as_u16(), 200, "{method}");
        assert!(paid.text().await.unwrap().contains("支付成功"));
        let mut got = Value::Null;
        for _ in 0..100 {
            got = server.get(&format!("/api/orders/{order_id}/"), Some("alice")).await.1;
            if got["order"]["status"] == "paid" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(got["order"]["status"], "paid", "{method}: {got}");
        // and the cashier will not take the same trade twice
        let again = http.post(pay_action(&cashier_url, &html)).send().await.unwrap();
        assert_eq!(again.status().as_u16(), 409, "{method}");
    }
    let (_, catalog) = server.get("/demo/catalog", None).await;
    assert_eq!(stock_of(&catalog, "fridge-bcd-470"), 18, "two fridges sold");
}
