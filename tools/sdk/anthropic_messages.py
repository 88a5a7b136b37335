"""Drive a running switchyard with the official Anthropic Python SDK, as a user would.

Usage: python3 tools/sdk/anthropic_messages.py ROUTER_URL API_KEY MOCK_URL

The router's policy must send `claude-sonnet-4-5` to an Anthropic endpoint and
`llama-3.1-70b` to an OpenAI-compatible one, both on the mock upstream at MOCK_URL (whose
request log shows what reached it). For each model: a message, a streamed message and its
final message, a tool-use round trip (streamed and not), and typed errors; the key is sent
both ways the SDKs send it (`Authorization: Bearer`, `x-api-key`), and the SDK's own
`anthropic-version` reaches an Anthropic upstream unchanged. Exits non-zero on failure.
"""

import json
import sys
import urllib.request

import anthropic
from anthropic._constants import ANTHROPIC_API_VERSION

TOOLS = [
    {
        "name": "tool_0",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
    {"name": "tool_1", "input_schema": {"type": "object", "properties": {}}},
]
ASK = {"role": "user", "content": "Weather in Paris?"}


def upstream(mock: str) -> list:
    with urllib.request.urlopen(f"{mock}/__mock/requests") as r:
        return json.load(r)


def header(request: dict, name: str):
    return next((v for n, v in request["headers"] if n.lower() == name), None)


def check_model(client: anthropic.Anthropic, model: str, mock: str, anthropic_upstream: bool) -> None:
    label = f"{model} ({'Anthropic' if anthropic_upstream else 'OpenAI-compatible'} upstream)"

    msg = client.messages.create(model=model, max_tokens=200, messages=[{"role": "user", "content": "Say hi"}])
    assert msg.type == "message" and msg.role == "assistant", (label, msg)
    assert msg.content[0].type == "text" and msg.content[0].text, (label, msg)
    assert msg.stop_reason == "end_turn", (label, msg.stop_reason)
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0, (label, msg.usage)
    last = upstream(mock)[-1]
    if anthropic_upstream:
        assert last["target"] == "/v1/messages", last["target"]
        assert header(last, "anthropic-version") == ANTHROPIC_API_VERSION, (
            "the SDK's anthropic-version must reach Anthropic unchanged",
            header(last, "anthropic-version"),
            ANTHROPIC_API_VERSION,
        )
    else:
        assert last["target"] == "/v1/chat/completions", last["target"]

    with client.messages.stream(model=model, max_tokens=200, messages=[{"role": "user", "content": "Stream"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text and final.content[0].text == text, (label, text, final)
    assert final.stop_reason == "end_turn", (label, final.stop_reason)
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0, (label, final.usage)

    # Tool use: the model calls a tool; its result goes back; the model answers.
    first = client.messages.create(
        model=model, max_tokens=200, tools=TOOLS, messages=[ASK], extra_headers={"x-mock-tools": "1"}
    )
    assert first.stop_reason == "tool_use", (label, first)
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "tool_0" and use.input == {"city": "Paris", "call": 0}, (label, use)
    with client.messages.stream(
        model=model, max_tokens=200, tools=TOOLS, messages=[ASK], extra_headers={"x-mock-tools": "2"}
    ) as s:
        streamed = s.get_final_message()
    uses = [b for b in streamed.content if b.type == "tool_use"]
    assert [u.input for u in uses] == [{"city": "Paris", "call": 0}, {"city": "Paris", "call": 1}], (label, uses)
    assert streamed.stop_reason == "tool_use", (label, streamed.stop_reason)
    second = client.messages.create(
        model=model,
        max_tokens=200,
        tools=TOOLS,
        messages=[
            ASK,
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in streamed.content]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": uses[0].id, "content": "18C"},
                    {"type": "tool_result", "tool_use_id": uses[1].id, "content": "no data", "is_error": True},
                ],
            },
        ],
    )
    assert second.stop_reason == "end_turn", (label, second)
    sent = json.loads(upstream(mock)[-1]["body"])
    if anthropic_upstream:
        results = [b for b in sent["messages"][-1]["content"] if b["type"] == "tool_result"]
        assert [r["tool_use_id"] for r in results] == [u.id for u in uses], sent
    else:
        tool_messages = [m for m in sent["messages"] if m["role"] == "tool"]
        assert [m["tool_call_id"] for m in tool_messages] == [u.id for u in uses], sent
        calls = sent["messages"][-3]["tool_calls"]
        assert [json.loads(c["function"]["arguments"]) for c in calls] == [u.input for u in uses], sent

    # Typed errors, in Anthropic's shape whichever upstream failed.
    try:
        client.messages.create(model=model, max_tokens=10, messages=[ASK], extra_headers={"x-mock-status": "429"})
    except anthropic.RateLimitError as e:
        assert e.status_code == 429 and e.body["type"] == "error", (label, e.body)
        assert e.body["error"]["type"] == "rate_limit_error", (label, e.body)
    else:
        raise AssertionError(f"{label}: no RateLimitError")
    status = "529" if anthropic_upstream else "500"
    try:
        client.messages.create(model=model, max_tokens=10, messages=[ASK], extra_headers={"x-mock-status": status})
    except anthropic.APIStatusError as e:
        assert e.status_code == int(status), (label, e.status_code)
        expected = "overloaded_error" if anthropic_upstream else "api_error"
        assert e.body["error"]["type"] == expected, (label, e.body)
    else:
        raise AssertionError(f"{label}: no APIStatusError")


def main(base: str, key: str, mock: str) -> None:
    # Current SDKs send the key as `Authorization: Bearer`.
    bearer = anthropic.Anthropic(base_url=base, api_key=key, max_retries=0)
    for model, native in [("claude-sonnet-4-5", True), ("llama-3.1-70b", False)]:
        check_model(bearer, model, mock, native)

    # Older SDKs, Claude Code and curl examples send `x-api-key`.
    by_header = anthropic.Anthropic(base_url=base, api_key=None, default_headers={"x-api-key": key}, max_retries=0)
    msg = by_header.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=[ASK])
    assert msg.stop_reason == "end_turn", msg
    assert header(upstream(mock)[-1], "x-api-key") != key, "the client's key must never go upstream"

    count = bearer.messages.count_tokens(model="claude-sonnet-4-5", messages=[ASK])
    assert count.input_tokens > 0, count
    try:
        bearer.messages.count_tokens(model="llama-3.1-70b", messages=[ASK])
    except anthropic.NotFoundError as e:
        assert "vllm" in e.body["error"]["message"], e.body
    else:
        raise AssertionError("count_tokens on an OpenAI-compatible endpoint was not refused")

    for client in [
        anthropic.Anthropic(base_url=base, api_key="sk-swy-not-a-key", max_retries=0),
        anthropic.Anthropic(base_url=base, api_key=None, default_headers={"x-api-key": "sk-swy-nope"}, max_retries=0),
    ]:
        try:
            client.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=[ASK])
        except anthropic.AuthenticationError as e:
            assert e.body["error"]["type"] == "authentication_error", e.body
        else:
            raise AssertionError("an unknown key was accepted")
    try:
        bearer.messages.create(model="gpt-9", max_tokens=10, messages=[ASK])
    except anthropic.PermissionDeniedError as e:
        assert "gpt-9" in e.body["error"]["message"], e.body
    else:
        raise AssertionError("a model outside the allowlist was served")

    # `models.list`: the tenant's models, in Anthropic's list shape, with either key header.
    for client in [bearer, by_header]:
        page = client.models.list()
        ids = [m.id for m in page.data]
        assert "claude-sonnet-4-5" in ids and "llama-3.1-70b" in ids, ids
        assert "gpt-9" not in ids, ids
        assert all(m.type == "model" and m.display_name for m in page.data), page.data
        assert page.has_more is False and page.first_id == ids[0] and page.last_id == ids[-1], page
    try:
        anthropic.Anthropic(base_url=base, api_key=None, default_headers={"x-api-key": "sk-swy-nope"}, max_retries=0).models.list()
    except anthropic.AuthenticationError as e:
        assert e.body["type"] == "error" and e.body["error"]["type"] == "authentication_error", e.body
    else:
        raise AssertionError("models.list with an unknown key was answered")

    print("anthropic SDK: messages, streams, tool use, errors, both key headers, models.list OK")


if __name__ == "__main__":
    main(*sys.argv[1:4])
