// The live page: polls /live.json and /info once a second, turns two cumulative snapshots
// into rates and quantiles (live-figures.js), charts them with uPlot, and switches the live
// configuration through POST /admin/reload. Served inline by src/http/live.rs, after uPlot
// and live-figures.js in the same script; talks to this server only.
(() => {
  "use strict";

  const POLL_MS = 1000;
  const WINDOW = 300; // points kept per chart: five minutes at one a second
  const MIN_INTERVAL_S = 0.5; // shortest interval a chart point may cover
  const $ = (id) => document.getElementById(id);
  const STRATEGIES = document.body.dataset.strategies.split(" ").filter(Boolean);

  // ---- Charts -------------------------------------------------------------------------------

  const CHARTS = [
    { id: "throughput", title: "Throughput (requests/s)",
      series: [["answered", "#1f77b4"], ["rejected 429/503", "#d62728"], ["errors", "#ff7f0e"]] },
    { id: "latency", title: "Latency of answered requests (ms)",
      series: [["p50", "#2ca02c"], ["p99", "#d62728"], ["queue wait p99", "#9467bd"]] },
    { id: "queue", title: "Queue depth and busy workers",
      series: [["queue depth", "#1f77b4"], ["busy workers", "#ff7f0e"], ["cores busy", "#2ca02c"]] },
    { id: "batch", title: "Batch size and width",
      series: [["mean batch size", "#1f77b4"], ["mean width (cores)", "#8c564b"]] },
    { id: "padding", title: "Padding (% of token slots)", series: [["padding", "#e377c2"]] },
    { id: "lag", title: "Event-loop lag (ms)", series: [["p99", "#d62728"], ["p50", "#17becf"]] },
  ];

  const times = [];
  const values = Object.fromEntries(CHARTS.map((c) => [c.id, c.series.map(() => [])]));
  const charts = {};
  const marks = []; // {t, label}: one per reload, drawn on every chart

  // Draws a dashed vertical line and a label at every reload.
  function marksPlugin() {
    return {
      hooks: {
        draw: [(u) => {
          const { ctx, bbox } = u;
          const dpr = window.devicePixelRatio || 1;
          for (const m of marks) {
            const x = u.valToPos(m.t, "x", true);
            if (x < bbox.left || x > bbox.left + bbox.width) continue;
            ctx.save();
            ctx.strokeStyle = "#333";
            ctx.lineWidth = dpr;
            ctx.setLineDash([4 * dpr, 3 * dpr]);
            ctx.beginPath();
            ctx.moveTo(x, bbox.top);
            ctx.lineTo(x, bbox.top + bbox.height);
            ctx.stroke();
            ctx.fillStyle = "#333";
            ctx.font = `${11 * dpr}px sans-serif`;
            ctx.fillText(m.label, x + 3 * dpr, bbox.top + 12 * dpr);
            ctx.restore();
          }
        }],
      },
    };
  }

  function chartWidth() {
    const box = $("charts").getBoundingClientRect().width;
    // Two charts a row when they fit: each is padded and bordered (10 px), 8 px apart.
    return Math.max(280, Math.floor(box >= 760 ? (box - 8) / 2 - 12 : box - 12));
  }

  function createCharts() {
    for (const c of CHARTS) {
      const el = document.createElement("div");
      el.className = "chart";
      el.id = `chart-${c.id}`;
      $("charts").appendChild(el);
      charts[c.id] = new uPlot({
        title: c.title,
        width: chartWidth(),
        height: 210,
        plugins: [marksPlugin()],
        legend: { live: false }, // labels only: the numbers above the charts are the live ones
        scales: { y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
        series: [{}, ...c.series.map(([label, stroke]) => ({
          label, stroke, width: 2, value: (u, v) => (v === null ? "–" : v.toFixed(v < 10 ? 2 : 1)),
        }))],
        axes: [{}, { size: 56 }],
      }, [times, ...values[c.id]], el);
    }
    window.addEventListener("resize", () => {
      for (const u of Object.values(charts)) u.setSize({ width: chartWidth(), height: 210 });
    });
  }

  function push(t, fig) {
    times.push(t);
    for (const c of CHARTS) fig[c.id].forEach((v, i) => values[c.id][i].push(v));
    if (times.length > WINDOW) {
      times.shift();
      for (const c of CHARTS) values[c.id].forEach((s) => s.shift());
    }
    for (const c of CHARTS) charts[c.id].setData([times, ...values[c.id]]);
  }

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
  }

  // ---- Live configuration ------------------------------------------------------------------

  let info = null;
  let generation = null;

  function showInfo(next) {
    info = next;
    const gen = next.generation ?? 0;
    $("strategy-badge").textContent = next.strategy;
    $("generation-badge").textContent = `generation ${gen}`;
    const b = next.batching, p = next.parallelism;
    const widths = (p.widths || []).map((w) => `${w.sessions}×${w.width}`).join(" + ");
    const rows = [
      ["strategy", next.strategy],
      ["parallelism", `${p.mode}, ${p.core_budget} cores (sessions×width: ${widths})`],
      ["model", `${next.model.name} ${next.model.variant}`],
      ["max_batch_size", b.max_batch_size],
      ["max_batch_tokens", b.max_batch_tokens],
      ["max_wait_ms", b.max_wait_ms],
      ["length_aware", b.length_aware],
      ["queue_capacity", b.queue_capacity],
      ["API keys", next.auth.api_keys ? "required" : "none"],
      ["generation", gen],
    ];
    const list = $("config-list");
    list.replaceChildren();
    for (const [k, v] of rows) {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.id = `cfg-${k.replace(/[^a-z_]/gi, "_")}`;
      dd.textContent = String(v);
      list.append(dt, dd);
    }
    $("info-json").textContent = JSON.stringify(next, null, 2);
    for (const btn of $("strategy-buttons").children) {
      btn.setAttribute("aria-pressed", String(btn.dataset.strategy === next.strategy));
    }
    if (gen !== generation) {
      fillForm(next);
      if (generation !== null) marks.push({ t: Date.now() / 1e3, label: `gen ${gen}: ${next.strategy}` });
      generation = gen;
    }
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
      const dt = prev ? snap.clock_seconds - prev.clock_seconds : 0;
      if (prev && dt < 0) prev = null; // the server restarted: start over
      // An extra poll right after a reload refreshes the configuration only: a point from
      // a few milliseconds of traffic would be noise.
      if (prev && dt < MIN_INTERVAL_S) return setStatus("live", true);
      if (prev) {
        const fig = liveFigures.figures(prev, snap);
        push(Date.now() / 1e3, fig);
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
    for (const s of STRATEGIES) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "strategy";
      b.dataset.strategy = s;
      b.textContent = s;
      b.addEventListener("click", () => reload(`executor.strategy = ${JSON.stringify(s)}`));
      $("strategy-buttons").appendChild(b);
    }
    $("reset").addEventListener("click", () => reload("", "?reset"));
    $("reload-form").addEventListener("submit", (e) => {
      e.preventDefault();
      if (!info) return;
      const toml = formToml();
      if (toml) reload(toml);
      else setResult("nothing to change: the form matches the live configuration");
    });
  }

  // ---- Built-in load ---------------------------------------------------------------------------

  const TEXTS = [
    "Where is my order?", "How do I reset my password?", "Can I change the delivery address?",
    "What payment methods do you accept?", "My parcel arrived damaged, what now?",
    "How long does a refund take?", "Do you ship to Canada?", "Is there a student discount?",
    "How do I cancel my subscription before it renews next month?",
    "The app keeps logging me out every few minutes on my phone, is that a known problem?",
    "I was charged twice for the same order and would like one of the payments returned.",
    "Which plan includes priority support and how much more does it cost per year?",
  ];
  const LOAD_CAP = { requests: 5000, concurrency: 64 };
  let loadRunning = false;

  async function runLoad(total, concurrency) {
    loadRunning = true;
    $("load-run").disabled = true;
    $("load-stop").disabled = false;
    let next = 0, ok = 0, failed = 0;
    const started = performance.now();
    const progress = () => {
      const secs = (performance.now() - started) / 1e3;
      $("load-progress").textContent =
        `${ok + failed}/${total} done, ${failed} failed, ${(ok / Math.max(secs, 1e-3)).toFixed(1)} req/s`;
    };
    const user = async () => {
      while (loadRunning && next < total) {
        const i = next++;
        try {
          const r = await fetch("/v1/embeddings", {
            method: "POST",
            headers: authHeaders({ "content-type": "application/json" }),
            body: JSON.stringify({ model: info ? info.model.name : undefined, input: TEXTS[i % TEXTS.length] }),
          });
          await r.arrayBuffer();
          r.ok ? ok++ : failed++;
        } catch (e) {
          failed++;
        }
        progress();
      }
    };
    await Promise.all(Array.from({ length: concurrency }, user));
    loadRunning = false;
    $("load-run").disabled = false;
    $("load-stop").disabled = true;
    progress();
  }

  function createLoad() {
    $("load-form").addEventListener("submit", (e) => {
      e.preventDefault();
      if (loadRunning) return;
      const f = e.target.elements;
      const clamp = (v, max) => Math.min(max, Math.max(1, Math.floor(Number(v) || 1)));
      runLoad(clamp(f.requests.value, LOAD_CAP.requests), clamp(f.concurrency.value, LOAD_CAP.concurrency));
    });
    $("load-stop").addEventListener("click", () => (loadRunning = false));
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

  createCharts();
  createControls();
  createLoad();
  probe();
  poll();
  setInterval(poll, POLL_MS);
  // For the browser test and the curious: the chart objects and what the page knows.
  window.concurLive = { charts, marks, values, times, get info() { return info; }, quantile: liveFigures.quantile };
})();
