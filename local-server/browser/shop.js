// Drives the local server's demo shop page (local-server/src/page/index.html) in Debian's Chromium,
// as a shopper would: buys with WeChat Pay through the fake cashier, with Alipay, with a bank transfer,
// meets 库存不足, and cancels from 我的订单. Run by local-server/tests/browser.rs:
//   node shop.js <server base URL> <screenshot path>
// Exits 1 with the step that failed; prints one line per step that passed.
"use strict";
const { chromium } = require("playwright-core");

const [base, screenshot] = process.argv.slice(2);
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run",
];

function check(condition, what) {
  if (!condition) { throw new Error(what); }
}

async function stockOf(page, product) {
  return page.textContent(`#products tr[data-product="${product}"] .stock`);
}

async function buy(page, method, quantity = 1) {
  await page.check(`input[name=method][value=${method}]`);
  await page.fill("#quantity", String(quantity));
  await page.click("#buy");
}

async function paidAtCashier(context, page, opener) {
  const [cashier] = await Promise.all([context.waitForEvent("page"), page.click(opener)]);
  await cashier.waitForSelector("#pay");
  check((await cashier.textContent("#amount")).includes("3299.00"), "the cashier shows the amount");
  await cashier.click("#pay");
  await cashier.waitForSelector("#result");
  check((await cashier.textContent("#result")) === "支付成功", "the cashier pays");
  await cashier.close();
  await page.waitForFunction(() => document.getElementById("order-status").textContent === "已支付", null, { timeout: 10000 });
}

(async () => {
  const userDataDir = require("fs").mkdtempSync(require("path").join(require("os").tmpdir(), "shop-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM, args: ARGS, headless: true, viewport: { width: 1100, height: 900 },
  });
  const errors = [];
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(base + "/");
  await page.waitForSelector('#products tr[data-product="fridge-bcd-470"]');
  check((await page.textContent("h1")).includes("家电商城"), "the page is the shop");
  check((await page.inputValue("#user")) === "alice", "the first demo user is chosen");
  const fridge = Number(await stockOf(page, "fridge-bcd-470"));

  // 微信支付: the QR code leads to the fake WeChat Pay's cashier; 确认支付 → 已支付
  await buy(page, "wechat");
  await page.waitForSelector("#qr");
  check(await page.$eval("#qr", (img) => img.complete && img.naturalWidth > 0), "the QR code is drawn");
  await paidAtCashier(context, page, "#wechat-cashier");
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log("wechat: paid at the cashier, 已支付");

  // 支付宝: the page-pay link leads to the fake Alipay's cashier
  await buy(page, "alipay");
  await page.waitForSelector("#alipay-link");
  await paidAtCashier(context, page, "#alipay-link");
  console.log("alipay: paid at the cashier, 已支付");
  await page.waitForFunction((n) => document.querySelector('#products tr[data-product="fridge-bcd-470"] .stock').textContent === String(n), fridge - 2);

  // 银行转账: the instructions, with the payment id to quote
  await buy(page, "bank");
  await page.waitForSelector("#bank");
  const reference = await page.textContent("#bank-reference");
  check(reference.startsWith("pay_"), "the bank transfer's reference is the payment id");
  check((await page.textContent("#order-status")) === "待支付", "a bank transfer waits");
  check((await page.textContent("#countdown")).includes("剩余"), "a countdown to the deadline");
  console.log("bank: instructions shown, 待支付 with a countdown");

  // 库存不足, with the figure
  await buy(page, "bank", 999);
  await page.waitForSelector("#error", { state: "visible" });
  const error = await page.textContent("#error");
  check(error.startsWith("库存不足") && error.includes(`仅剩 ${fridge - 3} 件`), "库存不足 with the figure: " + error);
  console.log("insufficient stock: " + error);

  // 我的订单: cancel the pending bank order; the stock comes back
  const row = page.locator("#orders tr", { has: page.locator("button.cancel") }).first();
  await row.locator("button.cancel").click();
  await page.waitForFunction((n) => document.querySelector('#products tr[data-product="fridge-bcd-470"] .stock').textContent === String(n), fridge - 2);
  // The product list and the order list are refreshed separately: wait for the orders' too.
  await page
    .waitForFunction(() => ![...document.querySelectorAll("#orders button.cancel")].some((b) => b.offsetParent !== null), null, { timeout: 5000 })
    .catch(() => {});
  check(!(await page.isVisible("#orders button.cancel")), "no pending order left to cancel");
  const statuses = await page.$$eval("#orders td.status", (cells) => cells.map((c) => c.textContent));
  check(statuses[0] === "已取消" && statuses.filter((s) => s === "已支付").length === 2, "the list: " + statuses);
  console.log("cancel: 已取消, stock back to " + (fridge - 2));

  check(errors.length === 0, "no script errors: " + errors.join("; "));
  await context.close();
})().catch((err) => {
  console.error("browser test failed: " + (err && err.stack ? err.stack : err));
  process.exit(1);
});
