//! The demo shop page (docs/local-server.md) end to end in headless Chromium: Debian's `chromium`,
//! driven by the pinned `playwright-core` (local-server/browser/shop.js), against the real server with
//! its fake providers. It buys with WeChat Pay through the fake cashier (已支付), with Alipay, and with a
//! bank transfer (the instructions), meets 库存不足 with the figure, and cancels from 我的订单 (已取消,
//! the stock shown again). The paid order's screenshot is kept in `target/browser/`. Where tools are
//! required (CI, scripts/test.sh) a missing Chromium or playwright-core fails the test; elsewhere it
//! says SKIPPED.

use std::path::PathBuf;
use std::process::Command;

mod common;

fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true") || std::env::var("REQUIRE_EMULATORS").is_ok_and(|v| v == "1")
}

#[test]
fn a_shopper_buys_pays_and_cancels_on_the_demo_page_in_chromium() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let driver = root.join("browser/node_modules/playwright-core");
    let missing: Vec<String> = [
        (!std::path::Path::new(&chromium).exists()).then(|| format!("{chromium} (Debian's chromium)")),
        (!driver.exists()).then(|| "local-server/browser/node_modules/playwright-core".to_owned()),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !missing.is_empty() {
        let why = format!("missing {}; run scripts/browser.sh", missing.join(" and "));
        assert!(
            !required(),
            "browser test tools required (CI=true or REQUIRE_EMULATORS=1): {why}"
        );
        eprintln!("SKIPPED (no browser): {why}");
        return;
    }

    let data = tempfile::tempdir().unwrap();
    let (_server, base) = common::spawn(&[], data.path());
    let artifacts = root.join("../target/browser");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("paid-order.png");
    let _ = std::fs::remove_file(&screenshot);

    let out = Command::new("node")
        .arg(root.join("browser/shop.js"))
        .arg(&base)
        .arg(&screenshot)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the browser test failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for step in [
        "wechat: paid",
        "alipay: paid",
        "bank: instructions",
        "insufficient stock: 库存不足",
        "cancel: 已取消",
    ] {
        assert!(stdout.contains(step), "step not reached: {step}\n{stdout}");
    }
    let png = std::fs::read(&screenshot).expect("the paid order's screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a screenshot of the page"
    );
}
