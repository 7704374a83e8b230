// The live page: polls /live.json and /info once a second, turns two cumulative snapshots
// into rates and quantiles (live-figures.js), charts them (live-charts.js; the generative
// model's row when it is served), switches the live configuration through POST
// /admin/reload, and runs the built-in load (live-load.js). Served inline by
// src/http/live.rs, after uPlot and those files in the same script; talks to this server only.
(() => {
  "use strict";

  const POLL_MS = 1000;
  const MIN_INTERVAL_S = 0.5; // shortest interval a chart point may cover
  const $ = (id) => document.getElementById(id);
  const STRATEGIES = document.body.dataset.strategies.split(" ").filter(Boolean);
  const SCHEDULERS = document.body.dataset.schedulers.split(" ").filter(Boolean);

  // ---- The numbers above the charts ----------------------------------------------------------

  function showStats(fig) {
    const text = (v, digits = 1) => (v === null || !isFinite(v) ? "–" : v.toFixed(digits));
    $("stat-throughput").textContent = text(fig.throughput[0]);
    $("stat-p50").textContent = text(fig.latency[0]);
    $("stat-p99").textContent = text(fig.latency[1]);
    $("stat-queue").textContent = text(fig.queue[0], 0);
    $("stat-busy").textContent = text(fig.queue[1], 0);
    $("stat-batch").textContent = text(fig.batch[0]);
    $("stat-lag").textContent = text(fig.lag[0], 2);
    $("stat-tokens").textContent = text(fig.tokens[0]);
    $("stat-ttft").textContent = text(fig.ttft[0]);
    $("stat-itl").textContent = text(fig.itl[0]);
    $("stat-active").textContent = text(fig.sequences[0], 0);
  }

  // The generation row and its numbers, once the feed has a generation part (the model
  // is served).
  function showGeneration(g) {
    $("gen-charts").hidden = !g;
    document.querySelectorAll(".stat.gen").forEach((el) => (el.hidden = !g));
    if (g) $("stat-slots").textContent = `of ${g.slots} slots`;
  }

  // ---- Live configuration ------------------------------------------------------------------

  let info = null;
  let generation = null;

  // The configuration panel's rows: what is served and how.
  function configRows(next) {
    const b = next.batching, p = next.parallelism, g = next.generative;
    const widths = (p.widths || []).map((w) => `${w.sessions}×${w.width}`).join(" + ");
    return [
      ["strategy", next.strategy],
      ["parallelism", `${p.mode}, ${p.core_budget} cores (sessions×width: ${widths})`],
      ["model", `${next.model.name} ${next.model.variant}`],
      ["max_batch_size", b.max_batch_size],
      ["max_batch_tokens", b.max_batch_tokens],
      ["max_wait_ms", b.max_wait_ms],
      ["length_aware", b.length_aware],
      ["queue_capacity", b.queue_capacity],
      ...(g ? [["generative model", g.model], ["scheduler", g.scheduler],
        ["slots", `${g.slots} × ${g.max_context} tokens of context`],
        ["static_batch", g.static_batch], ["prefill_chunk_tokens", g.prefill_chunk_tokens]] : []),
      ["API keys", next.auth.api_keys ? "required" : "none"],
      ["generation", next.generation ?? 0],
    ];
  }

  // What /info says of the generative model: its badge, scheduler buttons and load kind.
  function showGenerative(g) {
    $("scheduler-badge").hidden = !g;
    $("scheduler-group").hidden = !g;
    $("load-form").elements.kind.querySelector("option[value=chat]").disabled = !g;
    if (!g) return;
    $("scheduler-badge").textContent = g.scheduler;
    pressed("scheduler", g.scheduler);
  }

  // Marks the button of the live value among `kind`'s buttons.
  function pressed(kind, live) {
    for (const b of $(`${kind}-buttons`).children) b.setAttribute("aria-pressed", String(b.dataset[kind] === live));
  }

  function showInfo(next) {
    const before = info;
    info = next;
    const gen = next.generation ?? 0;
    $("strategy-badge").textContent = next.strategy;
    $("generation-badge").textContent = `generation ${gen}`;
    const list = $("config-list");
    list.replaceChildren();
    for (const [k, v] of configRows(next)) {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.id = `cfg-${k.replace(/[^a-z_]/gi, "_")}`;
      dd.textContent = String(v);
      list.append(dt, dd);
    }
    $("info-json").textContent = JSON.stringify(next, null, 2);
    pressed("strategy", next.strategy);
    showGenerative(next.generative);
    if (gen !== generation) {
      fillForm(next);
      if (generation !== null) liveCharts.marks.push({ t: Date.now() / 1e3, label: `gen ${gen}: ${switched(before, next)}` });
      generation = gen;
    }
  }

  // What a reload switched, for its mark: the scheduler when that changed, else the strategy.
  function switched(before, next) {
    const from = before?.generative?.scheduler, to = next.generative?.scheduler;
    return from && to && from !== to ? `scheduler ${to}` : next.strategy;
  }

  function fillForm(i) {
    const f = $("reload-form").elements;
    f.parallelism.value = i.parallelism.mode;
    f.variant.value = i.model.variant;
    f.max_batch_size.value = i.batching.max_batch_size;
    f.max_wait_ms.value = i.batching.max_wait_ms;
  }

  // ---- Polling -------------------------------------------------------------------------------

  let prev = null;

  async function getJSON(path) {
    const r = await fetch(path, { cache: "no-store" });
    if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
    return r.json();
  }

  function setStatus(text, ok) {
    const s = $("conn-status");
    s.textContent = text;
    s.className = ok ? "status ok" : "status bad";
  }

  async function poll() {
    try {
      const [snap, next] = await Promise.all([getJSON("/live.json"), getJSON("/info").catch(() => null)]);
      if (next) showInfo(next);
      showGeneration(snap.generation);
      const dt = prev ? snap.clock_seconds - prev.clock_seconds : 0;
      if (prev && dt < 0) prev = null; // the server restarted: start over
      // An extra poll right after a reload refreshes the configuration only: a point from
      // a few milliseconds of traffic would be noise.
      if (prev && dt < MIN_INTERVAL_S) return setStatus("live", true);
      if (prev) {
        const fig = liveFigures.figures(prev, snap);
        liveCharts.push(Date.now() / 1e3, fig);
        showStats(fig);
      }
      prev = snap;
      setStatus("live", true);
    } catch (e) {
      setStatus(`no answer: ${e.message}`, false);
    }
  }

  // ---- Switching -------------------------------------------------------------------------------

  function authHeaders(extra) {
    const key = $("api-key").value.trim();
    return key ? { ...extra, authorization: `Bearer ${key}` } : extra;
  }

  function setResult(text, ok) {
    const p = $("reload-result");
    p.textContent = text;
    p.className = ok === undefined ? "" : ok ? "ok" : "bad";
  }

  async function reload(toml, query = "") {
    const buttons = document.querySelectorAll("#controls button");
    buttons.forEach((b) => (b.disabled = true));
    setResult("switching…");
    try {
      const r = await fetch(`/admin/reload${query}`, {
        method: "POST", headers: authHeaders({ "content-type": "application/toml" }), body: toml,
      });
      const body = await r.json().catch(() => ({}));
      if (r.ok) {
        const changed = (body.changed || []).map((c) => `${c.key}: ${c.from} → ${c.to}`);
        setResult(changed.length
          ? `generation ${body.generation}: ${changed.join(", ")} (${Math.round(body.took_ms)} ms)`
          : "nothing changed", true);
      } else {
        setResult(`refused (${r.status}): ${body.error ? body.error.message : r.statusText}`, false);
      }
    } catch (e) {
      setResult(`failed: ${e.message}`, false);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
      poll();
    }
  }

  // TOML for the form's fields that differ from the live configuration.
  function formToml() {
    const f = $("reload-form").elements;
    const lines = [];
    const str = (k, v, live) => v !== live && lines.push(`${k} = ${JSON.stringify(v)}`);
    const num = (k, v, live) => v !== "" && Number(v) !== live && lines.push(`${k} = ${Number(v)}`);
    str("executor.parallelism", f.parallelism.value, info.parallelism.mode);
    str("model.variant", f.variant.value, info.model.variant);
    num("batching.max_batch_size", f.max_batch_size.value, info.batching.max_batch_size);
    num("batching.max_wait_ms", f.max_wait_ms.value, info.batching.max_wait_ms);
    return lines.join("\n");
  }

  function createControls() {
    // One button per value of a live key: `kind` names its class, data attribute and box.
    const buttons = (kind, names, key) => {
      for (const s of names) {
        const b = document.createElement("button");
        Object.assign(b, { type: "button", className: kind, textContent: s });
        b.dataset[kind] = s;
        b.addEventListener("click", () => reload(`${key} = ${JSON.stringify(s)}`));
        $(`${kind}-buttons`).appendChild(b);
      }
    };
    buttons("strategy", STRATEGIES, "executor.strategy");
    buttons("scheduler", SCHEDULERS, "generation.scheduler");
    $("reset").addEventListener("click", () => reload("", "?reset"));
    $("reload-form").addEventListener("submit", (e) => {
      e.preventDefault();
      if (!info) return;
      const toml = formToml();
      if (toml) reload(toml);
      else setResult("nothing to change: the form matches the live configuration");
    });
  }

  // ---- Built-in load (live-load.js) -----------------------------------------------------------

  function loadHint(kind) {
    const caps = liveLoad.CAPS[kind];
    $("load-hint").textContent = kind === "chat"
      ? `Streaming chat completions to ${info?.generative?.model ?? "the generative model"}, each read `
        + `to its end (at most ${caps.requests}, ${caps.concurrency} at a time, max_tokens up to ${caps.max_tokens}).`
      : `Embeddings requests sent from this page (at most ${caps.requests}, ${caps.concurrency} at a time).`;
  }

  async function startLoad(f) {
    const kind = f.kind.value;
    const caps = liveLoad.CAPS[kind];
    const clamp = (v, max) => Math.min(max, Math.max(1, Math.floor(Number(v) || 1)));
    $("load-run").disabled = true;
    $("load-stop").disabled = false;
    await liveLoad.run({
      kind,
      total: clamp(f.requests.value, caps.requests),
      concurrency: clamp(f.concurrency.value, caps.concurrency),
      maxTokens: clamp(f.max_tokens.value, caps.max_tokens || 1),
      model: kind === "chat" ? info?.generative?.model : info?.model.name,
      headers: authHeaders,
      onProgress: (text) => ($("load-progress").textContent = text),
    });
    $("load-run").disabled = false;
    $("load-stop").disabled = true;
  }

  function createLoad() {
    const f = $("load-form").elements;
    loadHint(f.kind.value);
    f.kind.addEventListener("change", () => {
      f.max_tokens.disabled = f.kind.value !== "chat";
      loadHint(f.kind.value);
    });
    $("load-form").addEventListener("submit", (e) => {
      e.preventDefault();
      if (!liveLoad.running) startLoad(e.target.elements);
    });
    $("load-stop").addEventListener("click", () => liveLoad.stop());
  }

  // What this listener serves, from its own OpenAPI document: the admin listener serves no
  // inference, and a server without live reload has no /admin/reload.
  async function probe() {
    let paths = {};
    try {
      paths = (await getJSON("/openapi.json")).paths || {};
    } catch (e) { /* keep everything enabled and let the requests say why */ return; }
    if (!("/admin/reload" in paths)) {
      $("controls-hint").textContent = "This server has no live reload (POST /admin/reload).";
      // The API key field stays: the built-in load uses it too.
      document.querySelectorAll("#controls button, #controls select, #reload-form input")
        .forEach((el) => (el.disabled = true));
    }
    if (!("/v1/embeddings" in paths)) {
      $("load-hint").textContent =
        "This listener serves no inference (it is the admin listener): run the load tester against the public one.";
      $("load-run").disabled = true;
    }
  }

  liveCharts.create();
  createControls();
  createLoad();
  probe();
  poll();
  setInterval(poll, POLL_MS);
  // For the browser test and the curious: the chart objects and what the page knows.
  const { charts, marks, values, times } = liveCharts;
  window.concurLive = {
    charts, marks, values, times, get info() { return info; },
    quantile: liveFigures.quantile, figures: liveFigures.figures, sseData: liveLoad.sseData,
  };
})();
