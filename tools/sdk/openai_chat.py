"""Drive a running switchyard with the official OpenAI Python SDK, as a user would.

Usage: python3 tools/sdk/openai_chat.py http://127.0.0.1:PORT

Checks a chat completion, a streamed chat completion, model listing, and that a router error
surfaces as the SDK's typed exception with the router's message. Exits non-zero on failure.
"""

import sys

import openai


def main(base: str) -> None:
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="sk-test-not-used", max_retries=0)

    chat = client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "Say hello"}],
        extra_headers={"X-Tenant": "demo"},
    )
    assert chat.choices[0].message.content, chat
    assert chat.model == "demo-small", chat.model
    assert chat.usage is not None and chat.usage.total_tokens > 0, chat.usage

    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hi"}]
    )
    route = raw.headers.get("x-switchyard-route", "")
    assert route.startswith("endpoint=mock-fast; rule="), route

    def streamed(**options):
        pieces, usage = [], None
        stream = client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "Stream please"}],
            stream=True,
            extra_headers={"X-Latency-Budget-Ms": "100"},
            **options,
        )
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            if chunk.usage is not None:
                usage = chunk.usage
        assert len(pieces) > 3, pieces
        assert "mock completion" in "".join(pieces), pieces
        return pieces, usage

    # The SDK's default: no usage chunk, as from OpenAI.
    _, usage = streamed()
    assert usage is None, usage
    # Asked for: the usage chunk, counting the pieces.
    pieces, usage = streamed(stream_options={"include_usage": True})
    assert usage is not None and usage.completion_tokens == len(pieces), usage

    models = [m.id for m in client.models.list()]
    assert "demo-small" in models, models

    try:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    except openai.BadRequestError as e:
        assert e.code == "model_not_found", e.code
        assert "no-such-model" in str(e.message), e.message
    else:
        raise AssertionError("pinned unknown model was not refused")

    print("openai SDK: chat, stream, models and errors OK")


if __name__ == "__main__":
    main(sys.argv[1])
