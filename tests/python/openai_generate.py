"""The official OpenAI Python client against concur's generative model: legacy completions
and chat completions, streamed and not, the model list, and refusals of bad input with the
status and the field at fault.

Usage: openai_generate.py BASE_URL MAX_TOKENS_CAP
"""
import sys

import openai
from openai import OpenAI

MODEL = "SmolLM2-135M-Instruct"
EMBEDDING_MODEL = "all-MiniLM-L6-v2"


def completions(client):
    """A fact through a plain completion (the chat answer of this small model is wrong)."""
    r = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=12, temperature=0)
    choice = r.choices[0]
    assert r.object == "text_completion" and r.model == MODEL, r
    assert "Paris" in choice.text, choice.text
    assert choice.finish_reason in ("stop", "length"), choice
    assert r.usage.prompt_tokens == 5 and r.usage.completion_tokens <= 12, r.usage
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, r.usage
    pieces, finish, usage = [], None, None
    stream = client.completions.create(
        model=MODEL, prompt="The capital of France is", max_tokens=12, temperature=0,
        stream=True, stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].text)
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert len(pieces) > 2, pieces
    # Greedy: the stream says exactly what the whole reply said.
    assert "".join(pieces) == choice.text, (pieces, choice.text)
    assert finish == choice.finish_reason, finish
    assert usage is not None and usage.completion_tokens == r.usage.completion_tokens, usage
    print("completions:", repr(choice.text))


def chat(client):
    messages = [{"role": "user", "content": "Write one sentence about the sea."}]
    r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10, temperature=0, seed=7)
    choice = r.choices[0]
    assert r.object == "chat.completion" and r.model == MODEL, r
    assert choice.message.role == "assistant" and choice.message.content.strip(), choice
    assert choice.finish_reason in ("stop", "length"), choice
    assert r.usage.prompt_tokens > 10 and 0 < r.usage.completion_tokens <= 10, r.usage
    roles, pieces, finish, usage = [], [], None, None
    stream = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=10, temperature=0.8, top_p=0.9, seed=7,
        stop=["\n\n"], stream=True, stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices:
            delta = chunk.choices[0].delta
            roles.append(delta.role)
            pieces.append(delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        else:
            usage = chunk.usage
    assert roles[0] == "assistant", roles
    assert "".join(pieces).strip(), pieces
    assert finish in ("stop", "length"), finish
    assert usage is not None and 0 < usage.completion_tokens <= 10, usage
    print("chat:", repr(choice.message.content), "| streamed:", repr("".join(pieces)))


def models(client):
    ids = {m.id for m in client.models.list()}
    assert ids == {EMBEDDING_MODEL, MODEL}, ids


def refused(call, error, param, code=None):
    try:
        call()
    except error as e:
        assert e.param == param, (e.param, param, e.body)
        assert code is None or e.code == code, (e.code, code, e.body)
        return
    raise AssertionError(f"expected {error.__name__} naming {param}")


def bad_input(client, cap):
    user = [{"role": "user", "content": "hi"}]
    chat = lambda **kw: client.chat.completions.create(**{"model": MODEL, "messages": user, **kw})
    complete = lambda **kw: client.completions.create(**{"model": MODEL, "prompt": "hi", **kw})
    refused(lambda: chat(model="gpt-4"), openai.NotFoundError, "model", "model_not_found")
    refused(
        lambda: complete(model=EMBEDDING_MODEL), openai.NotFoundError, "model", "model_not_found"
    )
    refused(lambda: chat(max_tokens=cap + 1), openai.UnprocessableEntityError, "max_tokens")
    refused(
        lambda: chat(max_completion_tokens=cap + 1),
        openai.UnprocessableEntityError,
        "max_completion_tokens",
    )
    refused(lambda: complete(max_tokens=cap + 1), openai.UnprocessableEntityError, "max_tokens")
    refused(lambda: chat(temperature=3), openai.UnprocessableEntityError, "temperature")
    refused(lambda: complete(top_p=0), openai.UnprocessableEntityError, "top_p")
    refused(lambda: chat(stop=["a", "b", "c", "d", "e"]), openai.UnprocessableEntityError, "stop")
    refused(lambda: complete(n=2), openai.UnprocessableEntityError, "n")
    refused(lambda: chat(messages=[]), openai.UnprocessableEntityError, "messages")
    refused(lambda: complete(prompt=["one", "two"]), openai.UnprocessableEntityError, "prompt")
    long = "word " * 600
    refused(
        lambda: complete(prompt=long, max_tokens=cap),
        openai.BadRequestError,
        "prompt",
        "context_length_exceeded",
    )
    refused(
        lambda: chat(messages=[{"role": "user", "content": long}], stream=True),
        openai.BadRequestError,
        "messages",
        "context_length_exceeded",
    )


def main():
    base_url, cap = sys.argv[1], int(sys.argv[2])
    client = OpenAI(base_url=base_url, api_key="unused", max_retries=0)
    completions(client)
    chat(client)
    models(client)
    bad_input(client, cap)
    print("openai client: generation OK")


if __name__ == "__main__":
    main()
