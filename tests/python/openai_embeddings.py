"""The official OpenAI Python client against concur's /v1/embeddings.

Run by tests/openai_client.rs with the server's base URL; exits non-zero on any mismatch.
Usage: openai_embeddings.py BASE_URL GOLDEN_JSON
"""
import json
import math
import sys

from openai import OpenAI


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def main():
    base_url, golden_path = sys.argv[1], sys.argv[2]
    golden = json.load(open(golden_path))["items"]
    client = OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    texts = [item["text"] for item in golden]
    # The client asks for base64 by default and decodes it itself.
    response = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts)
    assert len(response.data) == len(golden), len(response.data)
    worst = 1.0
    for item, data in zip(golden, response.data):
        c = cosine(item["embedding"], data.embedding)
        worst = min(worst, c)
        assert c >= 0.9999, f"cosine {c} for {item['text']!r}"
    assert response.usage.prompt_tokens == sum(i["num_tokens"] for i in golden), response.usage
    one = client.embeddings.create(model="all-MiniLM-L6-v2", input=texts[0], encoding_format="float")
    assert cosine(one.data[0].embedding, golden[0]["embedding"]) >= 0.9999
    try:
        client.embeddings.create(model="all-MiniLM-L6-v2", input=[])
        raise AssertionError("empty input was accepted")
    except Exception as e:  # openai.UnprocessableEntityError
        assert getattr(e, "status_code", None) == 422, e
    print(f"openai client: {len(golden)} golden vectors, worst cosine {worst:.6f}")


if __name__ == "__main__":
    main()
