// Opens concur's live page in headless Debian chromium (driven by playwright-core) and checks
// what a person would see: charts that receive data, numbers in the page, a strategy switch
// that /info and the page's configuration panel follow, and a mark on the charts for it.
// Run by tests/live_page.rs against the real server under load:
//   node tests/browser/live_page.mjs --url http://127.0.0.1:PORT/ --out DIR [--switch rayon] [--key K]
// With --key (the server has API keys), the switch is tried first without the key and must
// be refused, then with the key typed into the page's field.
// Prints one JSON line of findings on success; exits 1 with the reason otherwise.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
  options: {
    url: { type: "string" }, out: { type: "string" }, switch: { type: "string" }, key: { type: "string" },
  },
});
const origin = new URL(args.url).origin;
const profile = mkdtempSync(join(tmpdir(), "concur-chromium-"));
const fail = (why) => { throw new Error(why); };

const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1400, height: 1000 },
  args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const findings = { external: [], errors: [] };
const page = context.pages()[0] || (await context.newPage());
try {
  // Offline: every request the page makes goes to the server it came from.
  page.on("request", (r) => { if (new URL(r.url()).origin !== origin) findings.external.push(r.url()); });
  page.on("console", (m) => { if (m.type() === "error") findings.errors.push(m.text()); });
  page.on("pageerror", (e) => findings.errors.push(String(e)));

  await page.goto(args.url);
  // The page's quantile interpolates inside a bucket as Prometheus' histogram_quantile does.
  const quantiles = await page.evaluate(() => {
    const d = { count: 4, sum: 0, le: [1, 2, 4], cumulative: [1, 2, 4] };
    const q = window.concurLive.quantile;
    return [q(0.5, d), q(0.99, d), q(0.25, d), q(0.5, { ...d, count: 0 }),
      q(0.99, { count: 10, sum: 0, le: [1, 2], cumulative: [5, 5] })];
  });
  if (JSON.stringify(quantiles) !== JSON.stringify([2, 3.96, 1, null, 2])) fail(`quantiles: ${quantiles}`);
  // Charts received data: points in every uPlot object, answered requests among them.
  await page.waitForFunction(() => {
    const live = window.concurLive;
    return live && live.times.length >= 3 && live.values.throughput[0].some((v) => v > 0)
      && live.values.latency[1].some((v) => v !== null);
  }, null, { timeout: 30_000 }).catch(() => fail("the charts got no data with answered requests in 30 s"));
  const charts = await page.evaluate(() => Object.fromEntries(
    Object.entries(window.concurLive.charts).map(([id, u]) => [id, u.data[0].length])));
  for (const [id, points] of Object.entries(charts)) if (!(points > 0)) fail(`chart ${id} has no points`);
  findings.points = charts;
  const number = async (id) => Number(await page.textContent(`#${id}`));
  findings.throughput = await number("stat-throughput");
  findings.p99_ms = await number("stat-p99");
  if (!(findings.p99_ms > 0)) fail(`p99 in the page is not a positive number: ${findings.p99_ms}`);
  findings.strategy_before = await page.textContent("#cfg-strategy");

  // The built-in load button: a few requests from the page itself, every one answered.
  if (args.key) await page.fill("#api-key", args.key);
  await page.fill("#load-form input[name=requests]", "24");
  await page.fill("#load-form input[name=concurrency]", "4");
  await page.click("#load-run");
  await page.waitForFunction(() => /^24\/24 done/.test(document.querySelector("#load-progress").textContent),
    null, { timeout: 60_000 }).catch(() => fail("the built-in load did not finish 24 requests in 60 s"));
  findings.page_load = await page.textContent("#load-progress");
  if (!findings.page_load.includes(" 0 failed")) fail(`the built-in load failed: ${findings.page_load}`);
  if (args.key) await page.fill("#api-key", "");

  if (args.switch) {
    const to = args.switch;
    const button = `button.strategy[data-strategy="${to}"]`;
    const result = "#reload-result.ok, #reload-result.bad";
    if (await page.isDisabled(button)) fail(`the switch is disabled: ${await page.textContent("#controls-hint")}`);
    if (args.key) {
      await page.click(button);
      await page.waitForSelector(result, { timeout: 60_000 });
      findings.without_key = await page.textContent("#reload-result");
      if (!(await page.$("#reload-result.bad")) || !findings.without_key.includes("401")) {
        fail(`a switch without the API key was not refused: ${findings.without_key}`);
      }
      await page.fill("#api-key", args.key);
    }
    await page.click(button);
    await page.waitForSelector(result, { timeout: 60_000 });
    findings.reload = await page.textContent("#reload-result");
    if (await page.$("#reload-result.bad")) fail(`the switch was refused: ${findings.reload}`);
    // The configuration panel and /info follow, and the charts carry a mark for it.
    await page.waitForFunction((s) => document.querySelector("#cfg-strategy")?.textContent === s,
      to, { timeout: 10_000 }).catch(() => fail(`the config panel did not show ${to}`));
    const info = await (await fetch(new URL("/info", origin))).json();
    if (info.strategy !== to) fail(`/info says ${info.strategy} after switching to ${to}`);
    findings.generation = info.generation;
    findings.marks = await page.evaluate(() => window.concurLive.marks.length);
    if (findings.marks < 1) fail("no reload mark on the charts");
    // Data after the switch too, so the screenshot shows both sides of the mark.
    const before = await page.evaluate(() => window.concurLive.times.length);
    await page.waitForFunction((n) => window.concurLive.times.length >= Math.min(n + 4, 300), before,
      { timeout: 15_000 }).catch(() => fail("the charts stopped after the switch"));
    findings.strategy_after = await page.textContent("#cfg-strategy");
  }
  await page.screenshot({ path: join(args.out, "live-page.png"), fullPage: true });
  if (findings.external.length) fail(`requests left the server: ${findings.external.join(", ")}`);
  // The switch tried without the key is refused on purpose; chromium logs that 401.
  const unexpected = findings.errors.filter((e) => !(args.key && e.includes("status of 401")));
  if (unexpected.length) fail(`errors in the page: ${unexpected.join(" | ")}`);
  console.log(JSON.stringify(findings));
} catch (e) {
  console.error(`live page: ${e.message}\nfindings so far: ${JSON.stringify(findings)}`);
  await page.screenshot({ path: join(args.out, "live-page-failed.png"), fullPage: true }).catch(() => {});
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
