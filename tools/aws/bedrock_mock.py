"""A Bedrock runtime for tests: Converse and ConverseStream, every request's SigV4 signature
recomputed with botocore's own signer (an implementation we did not write) and refused on a
mismatch, as AWS does.

Usage: python3 tools/aws/bedrock_mock.py --access-key AKID --secret-key SECRET [--region us-east-1]
                                         [--session-token T] [--api-key K] [--expired]

With `--expired`, the session token is taken as expired: a correctly signed request gets
403 ExpiredTokenException, as AWS answers once temporary credentials run out.

With `--api-key`, a request may instead carry `Authorization: Bearer K` (a Bedrock API key).

Prints `listening on http://127.0.0.1:PORT` when ready. Routes:
  POST /model/{id}/converse         a Converse answer: a tool call when tools are given and the
                                    last user turn holds no tool result, else text
  POST /model/{id}/converse-stream  the same as AWS event-stream frames, sent frame by frame
  POST /model/{id}/invoke           InvokeModel with an Anthropic body (`anthropic_version`
                                    must be bedrock-2023-05-31; no `model`, no `stream`):
                                    an Anthropic message
  POST /model/{id}/invoke-with-response-stream
                                    its Anthropic stream events, base64 in `chunk` frames
  GET  /__mock/requests             every request received: method, target, headers, body,
                                    and whether its signature verified
Request headers that steer it: `x-mock-status: 429` (an HTTP error in Bedrock's shape),
`x-mock-exception: throttlingException` (a stream that fails after its first delta).
"""

import argparse
import base64
import hmac
import json
import struct
import sys
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ERRORS = {
    400: "ValidationException",
    403: "AccessDeniedException",
    404: "ResourceNotFoundException",
    429: "ThrottlingException",
    500: "InternalServerException",
    503: "ServiceUnavailableException",
}


def frame(headers: list, payload: bytes) -> bytes:
    """One event-stream frame (string headers), with both CRC-32s."""
    hb = b""
    for name, value in headers:
        n, v = name.encode(), value.encode()
        hb += bytes([len(n)]) + n + b"\x07" + struct.pack(">H", len(v)) + v
    total = 16 + len(hb) + len(payload)
    prelude = struct.pack(">II", total, len(hb))
    msg = prelude + struct.pack(">I", zlib.crc32(prelude)) + hb + payload
    return msg + struct.pack(">I", zlib.crc32(msg))


def event(kind: str, payload: dict) -> bytes:
    return frame(
        [(":message-type", "event"), (":event-type", kind), (":content-type", "application/json")],
        json.dumps(payload).encode(),
    )


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status: int, body: dict, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/__mock/requests":
            with self.server.lock:
                self.reply(200, self.server.requests)
        else:
            self.reply(404, {"message": f"no route {self.path}"})

    def verify(self, body: bytes) -> str | None:
        """None when the signature verifies, else why not."""
        auth = self.headers.get("authorization", "")
        if self.server.api_key and auth.startswith("Bearer "):
            ok = hmac.compare_digest(auth[len("Bearer "):], self.server.api_key)
            return None if ok else "the Bedrock API key is not valid"
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return "no SigV4 authorization header"
        parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
        signed = parts["SignedHeaders"].split(";")
        for required in ("host", "x-amz-date"):
            if required not in signed:
                return f"{required} is not signed"
        headers = {name: self.headers[name] for name in signed}
        url = f"http://{self.headers['host']}{self.path}"
        request = AWSRequest(method=self.command, url=url, data=body, headers=headers)
        request.context["timestamp"] = self.headers["x-amz-date"]
        token = self.headers.get("x-amz-security-token")
        if (token is None) != (self.server.token is None) or (token and token != self.server.token):
            return "the session token is missing or wrong"
        creds = Credentials(self.server.access_key, self.server.secret_key, token)
        auth_v4 = SigV4Auth(creds, "bedrock", self.server.region)
        canonical = auth_v4.canonical_request(request)
        expected = auth_v4.signature(auth_v4.string_to_sign(request, canonical), request)
        scope = parts["Credential"].split("/", 1)
        if scope[0] != self.server.access_key or not scope[1].endswith(f"/{self.server.region}/bedrock/aws4_request"):
            return f"credential scope {parts['Credential']} is not ours"
        if not hmac.compare_digest(expected, parts["Signature"]):
            return "The request signature we calculated does not match the signature you provided."
        return None

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        failure = self.verify(body)
        with self.server.lock:
            self.server.requests.append({
                "method": self.command,
                "target": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body": body.decode(errors="replace"),
                "signature_ok": failure is None,
                "signature_error": failure,
            })
        if failure:
            return self.reply(403, {"message": failure}, [("x-amzn-errortype", "InvalidSignatureException:http://internal.amazon.com/coral/com.amazon.coral.service/")])
        if self.server.expired and self.headers.get("x-amz-security-token"):
            return self.reply(403, {"message": "The security token included in the request is expired"},
                              [("x-amzn-errortype", "ExpiredTokenException:http://internal.amazon.com/coral/com.amazon.coral.service/")])
        parts = self.path.split("/")
        if len(parts) == 4 and parts[1] == "model" and parts[3] in ("invoke", "invoke-with-response-stream"):
            return self.invoke(unquote(parts[2]), body, parts[3] != "invoke")
        if len(parts) != 4 or parts[1] != "model" or parts[3] not in ("converse", "converse-stream"):
            return self.reply(404, {"message": f"unknown operation {self.path}"})
        model = unquote(parts[2])
        status = int(self.headers.get("x-mock-status", "200"))
        if status != 200:
            name = ERRORS.get(status, "InternalServerException")
            return self.reply(status, {"message": f"mock {name} for {model}"}, [("x-amzn-errortype", f"{name}:http://internal.amazon.com/coral/com.amazon.bedrock/")])
        try:
            req = json.loads(body)
        except ValueError:
            return self.reply(400, {"message": "Malformed input request"}, [("x-amzn-errortype", "ValidationException")])
        tools = (req.get("toolConfig") or {}).get("tools") or []
        last = (req.get("messages") or [{}])[-1].get("content") or []
        answered = any("toolResult" in block for block in last)
        tool = tools[0]["toolSpec"]["name"] if tools and not answered else None
        usage = {"inputTokens": max(1, len(body) // 4), "outputTokens": 7, "totalTokens": max(1, len(body) // 4) + 7,
                 "cacheReadInputTokens": 0, "cacheWriteInputTokens": 0}
        text = f"Hello from Bedrock {model}"
        if parts[3] == "converse":
            content = [{"text": "Let me check."}, {"toolUse": {"toolUseId": "tooluse_mock1", "name": tool, "input": {"city": "Paris"}}}] if tool else [{"text": text}]
            return self.reply(200, {
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": "tool_use" if tool else "end_turn",
                "usage": usage,
                "metrics": {"latencyMs": 5},
            })
        self.send_response(200)
        self.send_header("content-type", "application/vnd.amazon.eventstream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

        def send(data: bytes):
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        send(event("messageStart", {"role": "assistant"}))
        pieces = ["Let me ", "check."] if tool else ["Hello from ", f"Bedrock {model}"]
        for i, piece in enumerate(pieces):
            send(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}, "p": "abcdefgh"}))
            exception = self.headers.get("x-mock-exception")
            if exception and i == 0:
                send(frame([(":message-type", "exception"), (":exception-type", exception), (":content-type", "application/json")],
                           json.dumps({"message": "Too many requests, please wait before trying again."}).encode()))
                self.wfile.write(b"0\r\n\r\n")
                return
        send(event("contentBlockStop", {"contentBlockIndex": 0}))
        if tool:
            send(event("contentBlockStart", {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_mock1", "name": tool}}}))
            send(event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"city\":"}}}))
            send(event("contentBlockDelta", {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "\"Paris\"}"}}}))
            send(event("contentBlockStop", {"contentBlockIndex": 1}))
        send(event("messageStop", {"stopReason": "tool_use" if tool else "end_turn"}))
        send(event("metadata", {"usage": usage, "metrics": {"latencyMs": 5}}))
        self.wfile.write(b"0\r\n\r\n")


def invoke(self, model: str, body: bytes, stream: bool):
    status = int(self.headers.get("x-mock-status", "200"))
    if status != 200:
        name = ERRORS.get(status, "InternalServerException")
        return self.reply(status, {"message": f"mock {name} for {model}"}, [("x-amzn-errortype", name)])
    req = json.loads(body)
    problems = [why for bad, why in [
        (req.get("anthropic_version") != "bedrock-2023-05-31", "anthropic_version must be bedrock-2023-05-31"),
        ("model" in req, "model is not allowed in the body"),
        ("stream" in req, "stream is not allowed in the body"),
        ("max_tokens" not in req, "max_tokens is required"),
    ] if bad]
    if problems:
        return self.reply(400, {"message": "; ".join(problems)}, [("x-amzn-errortype", "ValidationException")])
    text = f"Hello from Bedrock invoke {model}"
    usage = {"input_tokens": max(1, len(body) // 4), "output_tokens": 6}
    if not stream:
        return self.reply(200, {"id": "msg_bdrk_1", "type": "message", "role": "assistant", "model": model,
                                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                                "stop_sequence": None, "usage": usage})
    self.send_response(200)
    self.send_header("content-type", "application/vnd.amazon.eventstream")
    self.send_header("transfer-encoding", "chunked")
    self.end_headers()
    events = [
        {"type": "message_start", "message": {"id": "msg_bdrk_1", "type": "message", "role": "assistant", "model": model,
                                              "content": [], "stop_reason": None, "stop_sequence": None,
                                              "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello from "}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"Bedrock invoke {model}"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 6}},
        {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": usage["input_tokens"], "outputTokenCount": 6}},
    ]
    for i, ev in enumerate(events):
        data = base64.b64encode(json.dumps(ev).encode()).decode()
        chunk = frame([(":message-type", "event"), (":event-type", "chunk"), (":content-type", "application/json")],
                      json.dumps({"bytes": data, "p": "abcd"}).encode())
        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        self.wfile.flush()
        if i == 2 and self.headers.get("x-mock-exception"):
            exc = frame([(":message-type", "exception"), (":exception-type", self.headers["x-mock-exception"])],
                        json.dumps({"message": "Too many requests, please wait before trying again."}).encode())
            self.wfile.write(f"{len(exc):x}\r\n".encode() + exc + b"\r\n")
            break
    self.wfile.write(b"0\r\n\r\n")


Handler.invoke = invoke


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--access-key", required=True)
    ap.add_argument("--secret-key", required=True)
    ap.add_argument("--session-token")
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--api-key")
    ap.add_argument("--expired", action="store_true")
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.access_key, server.secret_key, server.token = args.access_key, args.secret_key, args.session_token
    server.region = args.region
    server.api_key = args.api_key
    server.expired = args.expired
    server.requests = []
    server.lock = threading.Lock()
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
