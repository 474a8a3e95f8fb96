// SPDX-License-Identifier: MIT
// llmd's dashboard in a real browser: Debian's chromium, headless, driven by puppeteer-core.
// node dashboard.mjs CASE URL SCREENSHOT_DIR [KEY]; CASE is "switch" or "keys". Each step
// prints one JSON line ({"step": ..., what the page showed}) and saves SCREENSHOT_DIR/CASE-N-STEP.png;
// tests/integration/test_dashboard.py checks the lines. Exits 1 on a blank or error page, a
// script error in the page, or a step that does not come.
import puppeteer from "puppeteer-core";

const [mode, url, shots, key] = process.argv.slice(2);
const TIMEOUT = 30000;
let n = 0;

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"],
});
const failures = [];
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1400, height: 900 });
  page.on("pageerror", (e) => failures.push("page error: " + e.message));
  page.on("console", (m) => m.type() === "error" && !/401|404/.test(m.text()) &&
    failures.push("console error: " + m.text()));

  // What the page shows: each model's state, the active one, the error banner.
  const shown = () => page.evaluate(() => {
    const models = {};
    let active = null;
    for (const tr of document.querySelectorAll("#models tbody tr")) {
      models[tr.dataset.model] = tr.dataset.state;
      if (tr.querySelector(".active-mark").textContent) active = tr.dataset.model;
    }
    return { models, active, error: document.getElementById("error").textContent,
             switches: [...document.querySelectorAll("#switches tbody tr")].map((r) => r.innerText),
             rows: document.querySelectorAll("#activity tbody tr").length,
             note: document.getElementById("activity-note").textContent,
             keybox: document.getElementById("keybox").classList.contains("shown"),
             seen: window.__seen || [] };
  });
  const step = async (name, extra) => {
    const s = { step: name, ...(await shown()), ...(extra || {}) };
    const text = await page.evaluate(() => document.body.innerText.trim());
    if (!text || /^\s*\{"error"/.test(text)) failures.push(`${name}: a blank or error page`);
    await page.screenshot({ path: `${shots}/${mode}-${++n}-${name}.png`, fullPage: true });
    console.log(JSON.stringify(s));
    if (failures.length) throw new Error(failures.join("; "));
  };
  // Every state the gemma row showed, in order: a load is seen even when it is quick.
  const watchStates = () => page.evaluate(() => {
    window.__seen = [];
    new MutationObserver(() => {
      const tr = document.querySelector('#models tr[data-model="gemma"]');
      const st = tr && tr.dataset.state;
      if (st && window.__seen[window.__seen.length - 1] !== st) window.__seen.push(st);
    }).observe(document.querySelector("#models tbody"), { childList: true, subtree: true });
  });

  const res = await page.goto(url, { waitUntil: "domcontentloaded", timeout: TIMEOUT });
  if (!res || res.status() !== 200) throw new Error(`GET ${url}: ${res && res.status()}`);

  if (mode === "keys") {
    await page.waitForSelector("#keybox.shown", { timeout: TIMEOUT });
    await step("asked");
    await page.type("#key", key);
    await page.click("#key-save");
  }
  await page.waitForFunction(
    () => document.querySelectorAll("#models tbody tr").length > 0 &&
      document.querySelector('#models tr[data-model="qwen"]').dataset.state === "loaded",
    { timeout: TIMEOUT });
  await watchStates();
  await step("open");

  if (mode === "keys") {
    // A key that is not llmd's: the switch is refused, the page says so, nothing changes.
    await page.evaluate(() => { S.key = "not-the-key"; });
    const answer = page.waitForResponse((r) => r.url().endsWith("/llmd/switch"));
    await page.click('#models tr[data-model="gemma"] button.switch');
    const status = (await answer).status();
    await page.waitForSelector("#keybox.shown", { timeout: TIMEOUT });
    await page.waitForFunction(() => document.getElementById("error").textContent.includes("401"),
                               { timeout: TIMEOUT });
    await step("refused", { status });
    // The right key: the action goes on.
    await page.evaluate(() => { document.getElementById("key").value = ""; });
    await page.type("#key", key);
    await page.click("#key-save");
  } else {
    await page.click('#models tr[data-model="gemma"] button.switch');
    await step("switch");
  }
  await page.waitForFunction(() => {
    const tr = document.querySelector('#models tr[data-model="gemma"]');
    return tr && tr.dataset.state === "loaded" && tr.querySelector(".active-mark").textContent &&
      document.querySelectorAll("#switches tbody tr").length > 0;
  }, { timeout: TIMEOUT });
  await step("switched");

  if (mode === "switch") {
    // Requests run all along (the test sends them): rows for gemma come in after the switch,
    // with their tokens/s (the switch's own row names gemma too, and has none).
    await page.waitForFunction(
      () => [...document.querySelectorAll("#activity tbody tr")].some(
        (tr) => tr.querySelector(".model").textContent === "gemma" &&
                tr.querySelector(".tps").textContent !== ""),
      { timeout: TIMEOUT });
    const rows = await page.evaluate(() => [...document.querySelectorAll("#activity tbody tr")]
      .map((tr) => ({ model: tr.querySelector(".model").textContent,
                      status: tr.children[5].textContent,
                      tps: tr.querySelector(".tps").textContent })));
    await step("activity", { activity: rows });
  }
} catch (e) {
  console.error(e.stack || String(e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
