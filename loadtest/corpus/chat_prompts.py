#!/usr/bin/env python3
"""Builds chat_prompts.jsonl, the prompts of `loadtest stream`, from the
hand-written files beside it and a seeded sample of chat.jsonl. Run it from
anywhere; it rewrites the file in place and prints the length spread.

Parts: one-line questions (chat_prompts_short.txt), requests of a sentence
or two (chat_prompts_medium.txt), each passage of chat_prompts_passages.txt
(separated by lines of `---`) under four asks, a few pairs of passages, and
support-chat messages from chat.jsonl, so the spread of prompt lengths runs
from one word to several hundred."""

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 25
FROM_SUPPORT_CHAT = 80
PAIRS = 6

ASKS = [
    "Summarize this in two or three sentences:\n\n{p}",
    "{p}\n\nCan you list the three most important points of the text above?",
    "Read the following and tell me what the main problem or question is, "
    "and what you would suggest.\n\n{p}",
    "{p}\n\nPlease rewrite the text above so that it is shorter and easier to read.",
]
PAIR_ASK = "Here are two texts.\n\nFirst:\n{a}\n\nSecond:\n{b}\n\nWhat do they have in common, if anything? Then summarize each in one sentence."


def lines(name):
    return [l.strip() for l in (HERE / name).read_text().splitlines() if l.strip()]


def main():
    rng = random.Random(SEED)
    passages = [p.strip() for p in (HERE / "chat_prompts_passages.txt").read_text().split("\n---\n")]
    prompts = lines("chat_prompts_short.txt") + lines("chat_prompts_medium.txt")
    prompts += [ask.format(p=p) for p in passages for ask in ASKS]
    pairs = rng.sample([(a, b) for a in passages for b in passages if a < b], PAIRS)
    prompts += [PAIR_ASK.format(a=a, b=b) for a, b in pairs]
    support = [json.loads(l)["text"] for l in (HERE / "chat.jsonl").read_text().splitlines() if l.strip()]
    prompts += rng.sample(support, FROM_SUPPORT_CHAT)
    assert len(set(prompts)) == len(prompts), "duplicate prompt"
    rng.shuffle(prompts)
    out = HERE / "chat_prompts.jsonl"
    out.write_text("".join(json.dumps({"text": p}, ensure_ascii=False) + "\n" for p in prompts))
    words = sorted(len(p.split()) for p in prompts)
    q = lambda f: words[min(len(words) - 1, int(f * len(words)))]
    print(f"{out.name}: {len(prompts)} prompts; words min {words[0]} median {q(0.5)} "
          f"p90 {q(0.9)} max {words[-1]} mean {sum(words) / len(words):.1f}")


if __name__ == "__main__":
    main()
