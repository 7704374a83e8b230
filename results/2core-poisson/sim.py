#!/usr/bin/env python3
"""A discrete-event model of concur's batcher on 2 cores under Poisson arrivals.

What it is for: telling what sets the wait at 50-80% of `concur bench` without the noise of
a shared machine. Arrivals carry the corpus's token lengths (lens.json: the tokenizer's
lengths of loadtest/corpus/chat.jsonl, truncated at 256); a batch costs a + b x padded
tokens at its width. Batches form as in src/batcher/queue.rs (length-aware around the
oldest entry, pad <= 1/7 of a row or 4 tokens, rows >= 128 tokens alone, 32 rows, 512
padded tokens); a batch starts whenever a core is idle and the queue holds work
(max_wait_ms = 0). HTTP, tokenization and the load generator are not modelled; the
"server" cost model folds what they take from the cores into the fitted costs.

    python3 sim.py [MACHINE ...]     # MACHINE: server (default), issue

Policies: `before` is the width rule up to this change (a moving average of batches in
flight caps a lone batch's share), `after` the rule in src/executor/width.rs (expected
row-seconds from each width's cost, the arrival rate and the core-time beyond the
narrowest width, within the headroom the measured load leaves), with the true costs
standing in for the learned ones; and the same without the headroom, and without both
the headroom and the core-time term. The model has no learned costs, so it cannot show the instability the
headroom is there for (see src/executor/width.rs, `headroom`).
"""
import heapq
import json
import math
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
LENS = json.load(open(os.path.join(HERE, "lens.json")))

MACHINES = {
    # Fitted to the server's own batches on the 2-core machine (quiet): one core 2.1 ms +
    # 0.171 ms per padded token (inference at 240 and 390 req/s), two cores 2.1 + 0.092.
    "server": {1: (2.1, 0.171), 2: (2.1, 0.092)},
    # The machine (AVX2, no VNNI): batches of one ran 111-130 seq/s against 200
    # with batches of 16 (README), a large fixed part per pass.
    "issue": {1: (7.6, 0.353), 2: (4.0, 0.21)},
}
MAX_ROWS, MAX_TOKENS, SOLO, SLACK, SHARE = 32, 512, 128, 4, 7


def fits(rows, shortest, longest):
    if rows > MAX_ROWS or rows * longest > MAX_TOKENS:
        return False
    if rows > 1 and longest >= SOLO:
        return False
    pad = longest - shortest
    return pad <= SLACK or pad * SHARE <= shortest


def take_batch(queue):
    """The oldest entry, grown in length order: src/batcher/queue.rs choose_similar."""
    order = sorted(range(len(queue)), key=lambda i: (queue[i][1], i))
    ln = lambda pos: queue[order[pos]][1]
    lo = hi = anchor = order.index(0)
    target = ln(anchor)
    while True:
        rows = hi - lo + 2
        down = lo - 1 if lo > 0 and fits(rows, ln(lo - 1), ln(hi)) else None
        up = hi + 1 if hi + 1 < len(order) and fits(rows, ln(lo), ln(hi + 1)) else None
        if down is not None and (up is None or target - ln(down) <= ln(up) - target):
            lo = down
        elif up is not None:
            hi = up
        else:
            break
    chosen = set(order[lo:hi + 1])
    return ([queue[i] for i in sorted(chosen)],
            [queue[i] for i in range(len(queue)) if i not in chosen])


def pending_batches(queue):
    if not queue:
        return 0
    tokens = sum(t for _, t in queue)
    return max(math.ceil(len(queue) / MAX_ROWS), math.ceil(tokens / MAX_TOKENS))


def cost(machine, width, rows, longest):
    a, b = MACHINES[machine][width]
    return a + b * rows * longest


def bench(machine):
    """`concur bench`: the whole corpus queued at once, two one-core batches side by side."""
    queue, total = [(0.0, t) for t in LENS], 0.0
    while queue:
        batch, queue = take_batch(queue)
        total += cost(machine, 1, len(batch), max(t for _, t in batch))
    return len(LENS) / (total / 2) * 1000.0


class Before:
    """Share capped by a moving average of batches in flight (the rule being replaced)."""

    def __init__(self):
        self.value, self.last = 1.0, None

    def width(self, machine, batch, rest, free, running, now, rate):
        pending = pending_batches(rest)
        pause = math.inf if self.last is None else now - self.last
        self.last = now
        fresh = 1 - math.exp(-pause / 100.0)
        sample = running + 1 + pending
        self.value += max(0.1, fresh) * (sample - self.value)
        if abs(self.value - sample) < 1e-3:
            self.value = float(sample)
        share = max(round(2 / max(self.value, 1.0)), 1)
        return 2 if min(free // (1 + pending), share) >= 2 else 1


class After:
    """src/executor/width.rs choose() on 2 cores, the true costs for the learned ones."""

    TYPICAL = 26  # the corpus's mean tokens per row
    HALF_LIFE = 250.0  # ms, of the load (core-seconds of recent batches)

    def __init__(self, excess=True, headroom=True):
        self.excess, self.headroom = excess, headroom
        self.work, self.last = 0.0, None

    def dispatched(self, width, took, now):
        """Counts a batch's core-time, as Costs::record does (at dispatch)."""
        self.work = self.faded(now) + width * took
        self.last = now

    def faded(self, now):
        if self.last is None:
            return 0.0
        return self.work * 0.5 ** ((now - self.last) / self.HALF_LIFE)

    def width(self, machine, batch, rest, free, running, now, rate):
        if free < 2 or rest:
            return 1
        load = min(self.faded(now) / (self.HALF_LIFE / math.log(2) * 2), 1.0)
        typical = cost(machine, 1, 1, self.TYPICAL)
        if self.headroom and rate * typical >= 0.05 and load > 0.5:
            if int(2 * (1 - load) / 0.5) < 2:
                return 1
        n, longest = len(batch), max(t for _, t in batch)
        c1, c2 = cost(machine, 1, n, longest), cost(machine, 2, n, longest)
        t1, t2 = cost(machine, 1, 1, self.TYPICAL), cost(machine, 2, 1, self.TYPICAL)
        load = min(rate * t1 / 2, 0.95)
        later = rate * t1 / (1 - load) * max(2 * c2 - c1, 0.0) / 2 if self.excess else 0.0
        wide = n * c2 + rate * c2 * c2 / 2 + later
        narrow = n * c1 + rate * c1 * max(t1 - t2, 0.0)
        return 2 if wide <= narrow else 1


def simulate(machine, rate_per_s, policy, seconds=60, seed=1):
    rng = random.Random(seed)
    events, t, i = [], 0.0, 0
    while t < seconds * 1000:
        t += rng.expovariate(rate_per_s / 1000.0)
        events.append((t, 0, "arrive", LENS[i % len(LENS)]))
        i += 1
    heapq.heapify(events)
    queue, free, running, seq = [], 2, 0, 1
    latencies, widths, rows = [], {1: 0, 2: 0}, []
    rate = rate_per_s / 1000.0  # what the server measures: arrivals while batches run
    while events:
        now, _, kind, data = heapq.heappop(events)
        if kind == "arrive":
            queue.append((now, data))
        else:
            width, batch = data
            free, running = free + width, running - 1
            latencies.extend(now - arrived for arrived, _ in batch)
        while free >= 1 and queue:
            batch, queue = take_batch(queue)
            width = policy.width(machine, batch, queue, free, running, now, rate)
            free, running = free - width, running + 1
            widths[width] += 1
            rows.append(len(batch))
            took = cost(machine, width, len(batch), max(t for _, t in batch))
            if hasattr(policy, "dispatched"):
                policy.dispatched(width, took, now)
            heapq.heappush(events, (now + took, seq, "done", (width, batch)))
            seq += 1
    latencies.sort()
    q = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))]
    return q(0.5), q(0.99), sum(rows) / len(rows), widths


def main():
    for machine in sys.argv[1:] or ["server"]:
        ceiling = bench(machine)
        print(f"{machine}: modelled bench {ceiling:.0f} seq/s")
        for fraction in (0.25, 0.5, 0.65, 0.8):
            policies = (("before", Before), ("after", After),
                        ("after, costs alone (no load headroom)", lambda: After(headroom=False)),
                        ("after, costs alone, no core-time term",
                         lambda: After(excess=False, headroom=False)))
            for name, make in policies:
                runs = [simulate(machine, fraction * ceiling, make(), seed=s) for s in (1, 2)]
                p50 = "/".join(f"{r[0]:.1f}" for r in runs)
                p99 = "/".join(f"{r[1]:.1f}" for r in runs)
                print(f"  {fraction:.2f} x bench {name:<6}\n      p50 {p50:>11} ms  p99 {p99:>13} ms"
                      f"  mean batch {runs[0][2]:.2f}  batches by width {runs[0][3]}")


if __name__ == "__main__":
    main()
