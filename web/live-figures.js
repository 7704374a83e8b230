// Figures for the live page from two cumulative snapshots of /live.json: per-second rates,
// means, and quantiles interpolated as Prometheus' histogram_quantile does. Pure functions,
// in the same inline script as live.js (src/http/live.rs puts them together); the browser
// test (tests/browser/live_page.mjs) checks them on snapshots it makes up.
const liveFigures = (() => {
  "use strict";

  // The difference of two cumulative histograms (same bounds).
  function histDelta(prev, cur) {
    return {
      count: cur.count - prev.count,
      sum: cur.sum - prev.sum,
      le: cur.le,
      cumulative: cur.cumulative.map((c, i) => c - (prev.cumulative[i] || 0)),
    };
  }

  // The q-quantile of a histogram delta, interpolated inside its bucket as Prometheus'
  // histogram_quantile does; null when nothing was observed.
  function quantile(q, d) {
    if (d.count <= 0) return null;
    const rank = q * d.count;
    for (let i = 0; i < d.le.length; i++) {
      if (d.cumulative[i] >= rank) {
        const lower = i === 0 ? 0 : d.le[i - 1];
        const below = i === 0 ? 0 : d.cumulative[i - 1];
        const inBucket = d.cumulative[i] - below;
        return inBucket > 0 ? lower + ((d.le[i] - lower) * (rank - below)) / inBucket : d.le[i];
      }
    }
    return d.le[d.le.length - 1]; // above every bound: the highest one, as Prometheus says
  }

  const mean = (d) => (d.count > 0 ? d.sum / d.count : null);
  const ms = (s) => (s === null ? null : s * 1e3);

  // Mean width of the batches run between two snapshots, from the per-width counters.
  function meanWidth(prev, cur) {
    let n = 0, cores = 0;
    for (const [w, c] of Object.entries(cur)) {
      const dn = c - (prev[w] || 0);
      n += dn;
      cores += dn * Number(w);
    }
    return n > 0 ? cores / n : null;
  }

  // The generation charts' points: output and prompt tokens/s, TTFT and ITL quantiles (ms),
  // and the sequences gauges. Nulls (gaps) when either snapshot has no generation part: the
  // generative model is not served.
  function generationFigures(prev, cur, dt) {
    const a = prev.generation, b = cur.generation;
    if (!a || !b) {
      return { tokens: [null, null], ttft: [null, null], itl: [null, null],
        sequences: [null, null, null] };
    }
    const ttft = histDelta(a.ttft, b.ttft), itl = histDelta(a.itl, b.itl);
    return {
      tokens: [(b.generated_tokens - a.generated_tokens) / dt, (b.prompt_tokens - a.prompt_tokens) / dt],
      ttft: [ms(quantile(0.99, ttft)), ms(quantile(0.5, ttft))],
      itl: [ms(quantile(0.99, itl)), ms(quantile(0.5, itl))],
      sequences: [b.active_sequences, b.slots_in_use, b.waiting_requests],
    };
  }

  // One point per chart series, in the order of CHARTS and GENERATION_CHARTS in live.js.
  function figures(prev, cur) {
    const dt = cur.clock_seconds - prev.clock_seconds;
    const rate = (f) => (f(cur) - f(prev)) / dt;
    const r = (s) => s.requests;
    const lat = histDelta(prev.latency, cur.latency);
    const wait = histDelta(prev.queue_wait, cur.queue_wait);
    const lag = histDelta(prev.event_loop_lag, cur.event_loop_lag);
    const pad = mean(histDelta(prev.padding_ratio, cur.padding_ratio));
    const g = cur.gauges;
    return {
      throughput: [rate((s) => r(s).ok), rate((s) => r(s).rejected),
        rate((s) => r(s).client_errors + r(s).server_errors)],
      latency: [ms(quantile(0.5, lat)), ms(quantile(0.99, lat)), ms(quantile(0.99, wait))],
      queue: [g.queue_depth, g.busy_workers, g.cores_busy],
      batch: [mean(histDelta(prev.batch_size, cur.batch_size)),
        meanWidth(prev.batches_by_width, cur.batches_by_width)],
      padding: [pad === null ? null : pad * 100],
      lag: [ms(quantile(0.99, lag)), ms(quantile(0.5, lag))],
      ...generationFigures(prev, cur, dt),
    };
  }

  return { quantile, figures };
})();
