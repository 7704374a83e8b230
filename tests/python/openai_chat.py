"""The official OpenAI Python client against concur's /v1/chat/completions.

Asks every message of an evaluation file (tests/data/chat_eval_*.json: `on_topic` with the
expected entry, `off_topic` that must get the fallback), every fifth one streamed, and
gates on the share answered correctly and the share given the fallback. For the held-out
file it first checks that both parts of the split still follow the hash rule.

Usage: openai_chat.py BASE_URL DATA_JSON KNOWLEDGE_BASE_TOML MIN_ON_TOPIC MIN_OFF_TOPIC
"""
import hashlib
import json
import sys
import tomllib

from openai import OpenAI

MODEL = "all-MiniLM-L6-v2"


def ask(client, question, stream):
    messages = [
        {"role": "system", "content": "You are Acme's support assistant."},
        {"role": "user", "content": question},
    ]
    if not stream:
        r = client.chat.completions.create(model=MODEL, messages=messages, user="test")
        choice = r.choices[0]
        assert choice.finish_reason == "stop", choice
        assert r.usage.prompt_tokens > 0 and r.usage.total_tokens >= r.usage.prompt_tokens, r.usage
        return choice.message.content, r.model_extra["concur_retrieval"]
    parts, retrieval, finish = [], None, None
    for chunk in client.chat.completions.create(model=MODEL, messages=messages, stream=True):
        if chunk.choices:
            delta = chunk.choices[0].delta
            parts.append(delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
            retrieval = (chunk.model_extra or {}).get("concur_retrieval", retrieval)
    assert finish == "stop", finish
    return "".join(parts), retrieval


def held_out(message):
    """The split fixed before tuning: about 40% of messages, by a hash of their text."""
    return int(hashlib.sha256(message.encode()).hexdigest()[:8], 16) % 5 < 2


def main():
    base_url, data_path, kb_path = sys.argv[1:4]
    min_on, min_off = float(sys.argv[4]), float(sys.argv[5])
    data = json.load(open(data_path))
    if data.get("part") == "holdout":
        tune = json.load(open(data_path.replace("holdout", "tune")))
        for part, held in ((data, True), (tune, False)):
            cases = part["on_topic"] + part["off_topic"]
            moved = [c["message"] for c in cases if held_out(c["message"]) != held]
            assert not moved, f"messages in the wrong part of the split: {moved}"
    kb = tomllib.load(open(kb_path, "rb"))["entries"]
    answers = {e["id"]: e["answer"] for e in kb}
    client = OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    n = 0
    hits, misses = 0, []
    for case in data["on_topic"]:
        content, retrieval = ask(client, case["message"], n % 5 == 0)
        n += 1
        right = retrieval["decision"] == "answer" and retrieval["entry"] == case["expected"]
        if right and content == answers[case["expected"]]:
            hits += 1
        else:
            misses.append(("on", case["message"], case["expected"], retrieval))
    fallbacks, kinds = 0, {}
    for case in data["off_topic"]:
        content, retrieval = ask(client, case["message"], n % 5 == 0)
        n += 1
        got, total = kinds.get(case["kind"], (0, 0))
        ok = retrieval["decision"] == "fallback" and not retrieval["matched"]
        if ok and content not in answers.values():
            fallbacks += 1
            kinds[case["kind"]] = (got + 1, total + 1)
        else:
            kinds[case["kind"]] = (got, total + 1)
            misses.append(("off", case["message"], case["kind"], retrieval))
    on, off = hits / len(data["on_topic"]), fallbacks / len(data["off_topic"])
    print(f"{data_path}")
    print(f"on-topic answered correctly: {hits}/{len(data['on_topic'])} = {on:.1%}")
    by_kind = ", ".join(f"{k} {g}/{t}" for k, (g, t) in kinds.items())
    print(f"off-topic given the fallback: {fallbacks}/{len(data['off_topic'])} = {off:.1%} ({by_kind})")
    failed = on < min_on or off < min_off
    # A held-out part's messages are shown only when its gate fails: read on every passing
    # run, they would end up steering the next change.
    if failed or not data.get("part", "").startswith("holdout"):
        for m in misses:
            print("  miss:", json.dumps(m))
    assert on >= min_on, f"on-topic {on:.1%} < {min_on:.1%}"
    assert off >= min_off, f"off-topic fallback {off:.1%} < {min_off:.1%}"


if __name__ == "__main__":
    main()
