"""The official OpenAI Python client against concur's /v1/chat/completions.

Paraphrased questions (worded differently from the knowledge base's examples) must find
the right entry in at least 90% of cases, with and without streaming; off-topic messages
must get the fallback. Usage: openai_chat.py BASE_URL PARAPHRASES_JSON KNOWLEDGE_BASE_TOML
"""
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


def main():
    base_url, paraphrases_path, kb_path = sys.argv[1:4]
    cases = json.load(open(paraphrases_path))
    kb = tomllib.load(open(kb_path, "rb"))["entries"]
    answers = {e["id"]: e["answer"] for e in kb}
    client = OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    hits, misses = 0, []
    for i, case in enumerate(cases["paraphrases"]):
        stream = i % 5 == 0
        content, retrieval = ask(client, case["question"], stream)
        if content == answers[case["expected"]] and retrieval["entry"] == case["expected"]:
            hits += 1
        else:
            misses.append((case["question"], case["expected"], retrieval))
    accuracy = hits / len(cases["paraphrases"])
    print(f"paraphrases: {hits}/{len(cases['paraphrases'])} = {accuracy:.1%}")
    for m in misses:
        print("  miss:", m)
    assert accuracy >= 0.90, f"paraphrase accuracy {accuracy:.1%} < 90%"
    fallbacks = 0
    for i, question in enumerate(cases["off_topic"]):
        content, retrieval = ask(client, question, i % 5 == 0)
        assert not retrieval["matched"], (question, retrieval)
        assert content not in answers.values(), (question, content)
        fallbacks += 1
    print(f"off-topic: {fallbacks}/{len(cases['off_topic'])} got the fallback")


if __name__ == "__main__":
    main()
