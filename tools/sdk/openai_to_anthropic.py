"""Drive a running switchyard with the official OpenAI Python SDK against an Anthropic upstream.

Usage: python3 tools/sdk/openai_to_anthropic.py ROUTER_URL API_KEY MOCK_URL

The router's policy must send `claude-sonnet-4-5` to an Anthropic endpoint on the mock
upstream at MOCK_URL. Checks a chat completion, a stream whose tool calls are accumulated by
index (as the SDK and every agent framework do), the usage chunk when asked for and its
absence otherwise, a tool round trip, and typed errors. Exits non-zero on failure.
"""

import json
import sys
import urllib.request

import openai

MODEL = "claude-sonnet-4-5"
TOOLS = [
    {"type": "function", "function": {"name": f"tool_{i}", "parameters": {"type": "object", "properties": {}}}}
    for i in range(2)
]
ASK = {"role": "user", "content": "Weather in Paris?"}


def last_upstream(mock: str) -> dict:
    with urllib.request.urlopen(f"{mock}/__mock/requests") as r:
        return json.load(r)[-1]


def main(base: str, key: str, mock: str) -> None:
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)

    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "system", "content": "Be brief."}, ASK])
    assert chat.choices[0].message.content, chat
    assert chat.choices[0].finish_reason == "stop", chat
    assert chat.usage.prompt_tokens > 0 and chat.usage.completion_tokens > 0, chat.usage
    sent = last_upstream(mock)
    assert sent["target"] == "/v1/messages", sent["target"]
    assert json.loads(sent["body"])["system"][0]["text"] == "Be brief.", sent["body"]

    def stream(include_usage: bool):
        calls, finish, usage, text = {}, None, None, ""
        options = {"stream_options": {"include_usage": True}} if include_usage else {}
        for chunk in client.chat.completions.create(
            model=MODEL, messages=[ASK], tools=TOOLS, stream=True, extra_headers={"x-mock-tools": "2"}, **options
        ):
            if chunk.usage is not None:
                usage = chunk.usage
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            text += delta.content or ""
            for tc in delta.tool_calls or []:
                call = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = tc.id or call["id"]
                if tc.function is not None:
                    call["name"] += tc.function.name or ""
                    call["arguments"] += tc.function.arguments or ""
            finish = chunk.choices[0].finish_reason or finish
        return calls, finish, usage, text

    calls, finish, usage, text = stream(include_usage=True)
    assert text, text
    assert sorted(calls) == [0, 1], calls
    assert [json.loads(calls[i]["arguments"]) for i in (0, 1)] == [
        {"city": "Paris", "call": 0},
        {"city": "Paris", "call": 1},
    ], calls
    assert [calls[i]["name"] for i in (0, 1)] == ["tool_0", "tool_1"], calls
    assert finish == "tool_calls", finish
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0, usage
    _, _, usage, _ = stream(include_usage=False)
    assert usage is None, "no usage chunk when the client did not ask"

    # The tool results go back; the model answers.
    answer = client.chat.completions.create(
        model=MODEL,
        tools=TOOLS,
        messages=[
            ASK,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": calls[i]["id"], "type": "function", "function": {"name": calls[i]["name"], "arguments": calls[i]["arguments"]}}
                    for i in (0, 1)
                ],
            },
            {"role": "tool", "tool_call_id": calls[0]["id"], "content": "18C"},
            {"role": "tool", "tool_call_id": calls[1]["id"], "content": "cloudy"},
        ],
    )
    assert answer.choices[0].finish_reason == "stop", answer
    sent = json.loads(last_upstream(mock)["body"])
    turn = sent["messages"][-1]
    assert turn["role"] == "user" and [b["tool_use_id"] for b in turn["content"]] == [calls[0]["id"], calls[1]["id"]], sent

    try:
        client.chat.completions.create(model=MODEL, messages=[ASK], extra_headers={"x-mock-status": "429"})
    except openai.RateLimitError as e:
        assert e.status_code == 429 and e.body["type"] == "rate_limit_error", e.body
    else:
        raise AssertionError("no RateLimitError")
    try:
        client.chat.completions.create(model=MODEL, messages=[ASK], extra_headers={"x-mock-status": "529"})
    except openai.APIStatusError as e:
        assert e.status_code == 529 and e.body["type"] == "overloaded_error", e.body
    else:
        raise AssertionError("no APIStatusError")
    try:
        client.chat.completions.create(model=MODEL, messages=[ASK], n=2)
    except openai.BadRequestError as e:
        assert e.param == "n" and e.code == "untranslatable", (e.param, e.code)
    else:
        raise AssertionError("n=2 was not refused")

    print("openai SDK against Anthropic: chat, streamed tool calls, usage chunk, errors OK")


if __name__ == "__main__":
    main(*sys.argv[1:4])
