// The live page's built-in load: embeddings requests, or streaming chat completions to the
// generative model read to their last event. Sent from the page to the server it came from
// (its policy allows nothing else), and bounded: a count, a concurrency, and for chats a
// max_tokens and a time limit per stream. Served inline by src/http/live.rs between
// live-figures.js and live.js.
const liveLoad = (() => {
  "use strict";

  const CAPS = {
    embeddings: { requests: 5000, concurrency: 64 },
    chat: { requests: 500, concurrency: 32, max_tokens: 256 },
  };
  // A stream that has not ended by then is abandoned (its slot is freed when it goes).
  const STREAM_TIMEOUT_MS = 60_000;
  const TEXTS = [
    "Where is my order?", "How do I reset my password?", "Can I change the delivery address?",
    "What payment methods do you accept?", "My parcel arrived damaged, what now?",
    "How long does a refund take?", "Do you ship to Canada?", "Is there a student discount?",
    "How do I cancel my subscription before it renews next month?",
    "The app keeps logging me out every few minutes on my phone, is that a known problem?",
    "I was charged twice for the same order and would like one of the payments returned.",
    "Which plan includes priority support and how much more does it cost per year?",
  ];

  // The data of every complete server-sent event in `buffer`, and what follows the last
  // blank line (an event still arriving), to prepend to the next read.
  function sseData(buffer) {
    const events = buffer.split(/\r?\n\r?\n/);
    const rest = events.pop();
    const data = events.map((e) => e.split(/\r?\n/)
      .filter((line) => line.startsWith("data:"))
      .map((line) => line.slice(5).trimStart())
      .join("\n")).filter((d) => d !== "");
    return { data, rest };
  }

  async function embeddings(i, opts, signal) {
    const r = await fetch("/v1/embeddings", {
      method: "POST", signal,
      headers: opts.headers({ "content-type": "application/json" }),
      body: JSON.stringify({ model: opts.model, input: TEXTS[i % TEXTS.length] }),
    });
    await r.arrayBuffer();
    return { ok: r.ok, tokens: 0 };
  }

  // One streaming chat, read to `[DONE]`: it counts as answered only if that came and no
  // error event did. Tokens from the usage chunk, else one per content chunk.
  async function chat(i, opts, signal) {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", signal,
      headers: opts.headers({ "content-type": "application/json", accept: "text/event-stream" }),
      body: JSON.stringify({
        model: opts.model, stream: true, stream_options: { include_usage: true },
        max_tokens: opts.maxTokens, temperature: 0,
        messages: [{ role: "user", content: TEXTS[i % TEXTS.length] }],
      }),
    });
    if (!r.ok || !r.body) {
      await r.arrayBuffer();
      return { ok: false, tokens: 0 };
    }
    const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "", done = false, failed = false, usage = 0, chunks = 0;
    for (let next = await reader.read(); !next.done; next = await reader.read()) {
      const { data, rest } = sseData(buffer + next.value);
      buffer = rest;
      for (const d of data) {
        if (d === "[DONE]") { done = true; continue; }
        const event = JSON.parse(d);
        if (event.error) failed = true;
        if (event.usage) usage = event.usage.completion_tokens;
        if (event.choices?.[0]?.delta?.content) chunks++;
      }
    }
    return { ok: done && !failed, tokens: usage || chunks };
  }

  let running = false;
  const inflight = new Set(); // AbortControllers of the requests under way

  // Sends `total` requests of `kind`, `concurrency` at a time, until they are done or
  // stop() is called. opts: {kind, total, concurrency, maxTokens, model, headers(extra),
  // onProgress(text)}. Requests aborted by stop() count as neither answered nor failed.
  async function run(opts) {
    const send = opts.kind === "chat" ? chat : embeddings;
    const timeout = opts.kind === "chat" ? STREAM_TIMEOUT_MS : null;
    running = true;
    let next = 0, ok = 0, failed = 0, tokens = 0;
    const started = performance.now();
    const progress = () => {
      const secs = Math.max((performance.now() - started) / 1e3, 1e-3);
      let text = `${ok + failed}/${opts.total} done, ${failed} failed, ${(ok / secs).toFixed(1)} req/s`;
      if (opts.kind === "chat") text += `, ${tokens} tokens (${(tokens / secs).toFixed(1)} tokens/s)`;
      opts.onProgress(text);
    };
    const user = async () => {
      while (running && next < opts.total) {
        const i = next++;
        const abort = new AbortController();
        inflight.add(abort);
        const timer = timeout && setTimeout(() => abort.abort(), timeout);
        try {
          const r = await send(i, opts, abort.signal);
          r.ok ? ok++ : failed++;
          tokens += r.tokens;
        } catch (e) {
          if (running) failed++; // a timeout or a network error; not a stop
        } finally {
          clearTimeout(timer);
          inflight.delete(abort);
        }
        progress();
      }
    };
    await Promise.all(Array.from({ length: opts.concurrency }, user));
    running = false;
    progress();
  }

  function stop() {
    running = false;
    for (const abort of inflight) abort.abort();
  }

  return { CAPS, run, stop, sseData, get running() { return running; } };
})();
