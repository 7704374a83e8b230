// The live page's charts (uPlot): one row for requests and embeddings, one for the generative
// model (in #gen-charts, which live.js shows once the feed has a generation part), and a
// dashed mark on every chart at each reload. A chart's id names its points in
// liveFigures.figures, one per series in order. Served inline by src/http/live.rs, before
// live.js.
const liveCharts = (() => {
  "use strict";

  const WINDOW = 300; // points kept per chart: five minutes at one a second
  const $ = (id) => document.getElementById(id);

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
  // The generative model's row: in #gen-charts, shown once the feed has a generation part.
  const GENERATION_CHARTS = [
    { id: "tokens", title: "Tokens/s",
      series: [["output (generated)", "#1f77b4"], ["prompt (prefilled)", "#bcbd22", 1]] },
    { id: "sequences", title: "Sequences and slots",
      // Dashed: slots in use mostly equal active sequences and would hide that line.
      series: [["active sequences", "#1f77b4"], ["slots in use", "#ff7f0e", 2, [6, 4]], ["waiting", "#d62728"]] },
    // Sparse: an interval in which no stream got its first token (or its next) has no
    // point, so every point is drawn, not only the lines between neighbours.
    { id: "ttft", title: "Time to first token (ms)", sparse: true,
      series: [["p99", "#d62728"], ["p50", "#2ca02c"]] },
    { id: "itl", title: "Inter-token latency (ms)", sparse: true,
      series: [["p99", "#d62728"], ["p50", "#2ca02c"]] },
  ];
  const ALL_CHARTS = [...CHARTS.map((c) => ({ ...c, box: "charts" })),
    ...GENERATION_CHARTS.map((c) => ({ ...c, box: "gen-charts" }))];

  const times = [];
  const values = Object.fromEntries(ALL_CHARTS.map((c) => [c.id, c.series.map(() => [])]));
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
            // Right of the line, or left of it when it would run off the plot. The
            // alignment is set each time: uPlot leaves its axes' on the context.
            const right = x + 3 * dpr + ctx.measureText(m.label).width <= bbox.left + bbox.width;
            ctx.textAlign = right ? "left" : "right";
            ctx.fillText(m.label, right ? x + 3 * dpr : x - 3 * dpr, bbox.top + 12 * dpr);
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

  function create() {
    for (const c of ALL_CHARTS) {
      const el = document.createElement("div");
      el.className = "chart";
      el.id = `chart-${c.id}`;
      $(c.box).appendChild(el);
      charts[c.id] = new uPlot({
        title: c.title,
        width: chartWidth(),
        height: 210,
        plugins: [marksPlugin()],
        legend: { live: false }, // labels only: the numbers above the charts are the live ones
        scales: { y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
        series: [{}, ...c.series.map(([label, stroke, width = 2, dash]) => ({
          label, stroke, width, ...(dash ? { dash } : {}),
          ...(c.sparse ? { points: { show: true, size: 5 } } : {}),
          value: (u, v) => (v === null ? "–" : v.toFixed(v < 10 ? 2 : 1)),
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
    for (const c of ALL_CHARTS) fig[c.id].forEach((v, i) => values[c.id][i].push(v));
    if (times.length > WINDOW) {
      times.shift();
      for (const c of ALL_CHARTS) values[c.id].forEach((s) => s.shift());
    }
    for (const c of ALL_CHARTS) charts[c.id].setData([times, ...values[c.id]]);
  }

  return { create, push, charts, marks, values, times };
})();
