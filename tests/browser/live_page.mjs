// Opens concur's live page in headless Debian chromium (driven by playwright-core) and checks
// what a person would see: charts that receive data, numbers in the page, a strategy switch
// that /info and the page's configuration panel follow, and a mark on the charts for it.
// Run by tests/live_page.rs against the real server under load:
//   node tests/browser/live_page.mjs --url http://127.0.0.1:PORT/ --out DIR [--switch rayon] [--key K]
//     [--scheduler static]
// With --key (the server has API keys), the switch is tried first without the key and must
// be refused, then with the key typed into the page's field. With --scheduler (the server
// serves the generative model), the page's own streaming chat load runs, the generation
// charts must get points from it, and the scheduler button is clicked while it runs.
// Prints one JSON line of findings on success; exits 1 with the reason otherwise.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
  options: {
    url: { type: "string" }, out: { type: "string" }, switch: { type: "string" }, key: { type: "string" },
    scheduler: { type: "string" },
  },
});
const origin = new URL(args.url).origin;
const profile = mkdtempSync(join(tmpdir(), "concur-chromium-"));
const fail = (why) => { throw new Error(why); };

// The page's arithmetic on snapshots made up here, where the answers are known: quantiles
// interpolated inside a bucket as Prometheus' histogram_quantile does, the generation row's
// figures, and the split of a server-sent event stream.
async function checkArithmetic(page) {
  const got = await page.evaluate(() => {
    const live = window.concurLive, q = live.quantile;
    const d = { count: 4, sum: 0, le: [1, 2, 4], cumulative: [1, 2, 4] };
    const quantiles = [q(0.5, d), q(0.99, d), q(0.25, d), q(0.5, { ...d, count: 0 }),
      q(0.99, { count: 10, sum: 0, le: [1, 2], cumulative: [5, 5] })];
    const h = (count, cumulative) => ({ count, sum: 0, le: [0.01, 0.02, 0.05], cumulative });
    const empty = { count: 0, sum: 0, le: [], cumulative: [] };
    const snap = (clock, generation) => ({
      clock_seconds: clock, requests: { ok: 0, rejected: 0, client_errors: 0, server_errors: 0 },
      latency: empty, queue_wait: empty, event_loop_lag: empty, padding_ratio: empty, batch_size: empty,
      batches_by_width: {}, gauges: { queue_depth: 0, busy_workers: 0, cores_busy: 0 }, generation,
    });
    const gen = (tokens, ttft, itl, active) => ({
      scheduler: "continuous", slots: 16, generated_tokens: tokens, prompt_tokens: tokens / 2,
      ttft, itl, queue_wait: empty, active_sequences: active, slots_in_use: active, waiting_requests: 1,
    });
    const a = snap(10, gen(100, h(2, [0, 1, 2]), h(10, [5, 10, 10]), 0));
    const b = snap(12, gen(300, h(6, [0, 1, 6]), h(20, [15, 20, 20]), 3));
    const f = live.figures(a, b), none = live.figures(snap(10), b);
    const round = (v) => (v === null ? null : Math.round(v * 1000) / 1000);
    const generation = ["tokens", "ttft", "itl", "sequences"].map((k) => f[k].map(round));
    const absent = ["tokens", "ttft", "itl", "sequences"].flatMap((k) => none[k]);
    return { quantiles, generation, absent, sse: live.sseData('data: {"a":1}\n\ndata: [DONE]\n\ndata: {"b"') };
  });
  const want = {
    quantiles: [2, 3.96, 1, null, 2],
    // 200 tokens in 2 s; TTFT's 4 new in (0.02, 0.05]; ITL's 10 new at or below 0.01.
    generation: [[100, 50], [49.7, 35], [9.9, 5], [3, 3, 1]],
    absent: Array(9).fill(null),
    sse: { data: ['{"a":1}', "[DONE]"], rest: 'data: {"b"' },
  };
  if (JSON.stringify(got) !== JSON.stringify(want)) fail(`arithmetic: ${JSON.stringify(got)}`);
}

// The page's streaming chat load, a scheduler switch while it runs, and the generation
// row's charts fed by it. Returns what it saw.
async function generationUnderLoad(page, to) {
  const seen = { scheduler_before: await page.textContent("#cfg-scheduler") };
  await page.selectOption("#load-form select[name=kind]", "chat");
  await page.fill("#load-form input[name=max_tokens]", "32");
  await page.fill("#load-form input[name=requests]", "12");
  await page.fill("#load-form input[name=concurrency]", "4");
  await page.click("#load-run");
  await page.waitForFunction(() => {
    const v = window.concurLive.values;
    return v.tokens[0].some((x) => x > 0) && v.ttft[0].some((x) => x > 0) && v.itl[0].some((x) => x > 0)
      && v.sequences[0].some((x) => x > 0) && v.sequences[1].some((x) => x > 0);
  }, null, { timeout: 120_000 }).catch(() => fail("the generation charts got no points from the streaming load in 120 s"));
  await page.click(`button.scheduler[data-scheduler="${to}"]`);
  await page.waitForSelector("#reload-result.ok, #reload-result.bad", { timeout: 60_000 });
  seen.scheduler_reload = await page.textContent("#reload-result");
  if (await page.$("#reload-result.bad")) fail(`the scheduler switch was refused: ${seen.scheduler_reload}`);
  await page.waitForFunction((s) => document.querySelector("#cfg-scheduler")?.textContent === s,
    to, { timeout: 10_000 }).catch(() => fail(`the config panel did not show scheduler ${to}`));
  const info = await (await fetch(new URL("/info", origin))).json();
  if (info.generative?.scheduler !== to) fail(`/info says scheduler ${info.generative?.scheduler} after switching to ${to}`);
  seen.scheduler_after = info.generative.scheduler;
  await page.waitForFunction(() => /^12\/12 done/.test(document.querySelector("#load-progress").textContent),
    null, { timeout: 240_000 }).catch(() => fail("the streaming chat load did not finish 12 chats in 240 s"));
  seen.chat_load = await page.textContent("#load-progress");
  if (!seen.chat_load.includes(" 0 failed")) fail(`the streaming chat load failed: ${seen.chat_load}`);
  seen.generation_points = await page.evaluate(() => Object.fromEntries(["tokens", "ttft", "itl", "sequences"]
    .map((id) => [id, window.concurLive.values[id][0].filter((v) => v !== null).length])));
  return seen;
}

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
  await checkArithmetic(page);
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
  if (args.scheduler) Object.assign(findings, await generationUnderLoad(page, args.scheduler));
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
