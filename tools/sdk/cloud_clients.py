"""Drive a running switchyard whose policy sends MODEL to a cloud endpoint (Bedrock or Vertex AI)
with the official openai and anthropic Python SDKs, as a user would.

Usage: python3 tools/sdk/cloud_clients.py ROUTER_URL API_KEY MOCK_URL MODEL

MOCK_URL is the cloud test server (tools/aws/bedrock_mock.py or tools/gcp/vertex_mock.py), whose
request log says whether each request's signature (or bearer token) verified. For each SDK: a completion, a stream, a tool-use round trip
(streamed and not) and typed errors. Exits non-zero on failure.
"""

import json
import sys
import urllib.request

import anthropic
import openai

TOOLS_OPENAI = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                                   "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
TOOLS_ANTHROPIC = [{"name": "get_weather", "description": "Weather for a city",
                    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
ASK = "Weather in Paris?"


def upstream(mock: str) -> list:
    with urllib.request.urlopen(f"{mock}/__mock/requests") as r:
        return json.load(r)


def with_openai(base: str, key: str, model: str) -> None:
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
    done = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Say hi"}])
    assert done.choices[0].message.content, done
    assert done.choices[0].finish_reason == "stop", done
    assert done.usage.completion_tokens > 0, done.usage

    text, calls, finish, usage = "", {}, None, None
    for chunk in client.chat.completions.create(model=model, messages=[{"role": "user", "content": ASK}],
                                                tools=TOOLS_OPENAI, stream=True,
                                                stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            for tc in choice.delta.tool_calls or []:
                call = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                call["id"] = tc.id or call["id"]
                if tc.function:
                    call["name"] += tc.function.name or ""
                    call["arguments"] += tc.function.arguments or ""
            finish = choice.finish_reason or finish
    assert finish == "tool_calls", finish
    assert list(calls) == [0] and calls[0]["name"] == "get_weather", calls
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}, calls
    assert usage and usage.completion_tokens > 0, usage

    answer = client.chat.completions.create(model=model, tools=TOOLS_OPENAI, messages=[
        {"role": "user", "content": ASK},
        {"role": "assistant", "content": text or None, "tool_calls": [
            {"id": calls[0]["id"], "type": "function", "function": {"name": "get_weather", "arguments": calls[0]["arguments"]}}]},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "18C and sunny"}])
    assert answer.choices[0].finish_reason == "stop", answer

    try:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}],
                                       extra_headers={"x-mock-status": "429"})
    except openai.RateLimitError as e:
        assert e.status_code == 429, e
    else:
        raise AssertionError("no RateLimitError")


def with_anthropic(base: str, key: str, model: str) -> None:
    client = anthropic.Anthropic(base_url=base, api_key=key, max_retries=0)
    msg = client.messages.create(model=model, max_tokens=100, messages=[{"role": "user", "content": "Say hi"}])
    assert msg.content[0].type == "text" and msg.content[0].text, msg
    assert msg.stop_reason == "end_turn", msg

    with client.messages.stream(model=model, max_tokens=100, tools=TOOLS_ANTHROPIC,
                                messages=[{"role": "user", "content": ASK}]) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use", final
    uses = [b for b in final.content if b.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "get_weather" and uses[0].input == {"city": "Paris"}, final
    assert final.usage.output_tokens > 0, final.usage

    answer = client.messages.create(model=model, max_tokens=100, tools=TOOLS_ANTHROPIC, messages=[
        {"role": "user", "content": ASK},
        {"role": "assistant", "content": final.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "18C and sunny"}]}])
    assert answer.stop_reason == "end_turn", answer

    try:
        client.messages.create(model=model, max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                               extra_headers={"x-mock-status": "429"})
    except anthropic.RateLimitError as e:
        assert e.body["type"] == "error" and e.body["error"]["type"] == "rate_limit_error", e.body
    else:
        raise AssertionError("no RateLimitError")
    # A stream that fails after its first event (a throttling exception frame): the SDK
    # raises instead of returning a short answer.
    try:
        with client.messages.stream(model=model, max_tokens=100, messages=[{"role": "user", "content": "hi"}],
                                    extra_headers={"x-mock-exception": "throttlingException"}) as stream:
            stream.get_final_message()
    except anthropic.APIError as e:
        assert "rate_limit_error" in str(e) or "Too many requests" in str(e), e
    else:
        raise AssertionError("a throttled stream ended as a normal answer")


def main(base: str, key: str, mock: str, model: str) -> None:
    with_openai(base, key, model)
    with_anthropic(base, key, model)
    bad = [r for r in upstream(mock) if not r["signature_ok"]]
    assert not bad, bad
    print(f"openai and anthropic SDKs against {model}: chat, streams, tool use, errors OK")


if __name__ == "__main__":
    main(*sys.argv[1:5])
