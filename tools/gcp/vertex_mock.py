"""A Vertex AI for tests: Google's OAuth2 token endpoint (every JWT assertion verified with the
service account's public key by `cryptography`, an implementation we did not write), the
metadata server's token path, and the Gemini and Claude model routes, whole and streamed.

Usage: python3 tools/gcp/vertex_mock.py --key-file SA.json [--expires-in 3600] [--api-key K]

At start it writes a fresh service-account key file to SA.json whose `token_uri` is this
server's `/token`, then prints `listening on http://127.0.0.1:PORT`. Routes:
  POST /token                       RFC 7523 jwt-bearer grant: the assertion's signature,
                                    iss, aud, scope, iat and exp are checked; a token valid
                                    for --expires-in seconds is issued
  GET  /computeMetadata/v1/instance/service-accounts/default/token
                                    the metadata server's (needs `Metadata-Flavor: Google`)
  POST /v1/projects/P/locations/L/publishers/google/models/M:generateContent
  POST …:streamGenerateContent?alt=sse
                                    a Gemini answer: a function call when tools are given and
                                    the last user turn holds no functionResponse, else text
  POST /v1/projects/P/locations/L/publishers/anthropic/models/M:rawPredict
  POST …:streamRawPredict           the same as an Anthropic message (the body must have
                                    anthropic_version vertex-2023-10-16 and no model)
  POST /__mock/expire               every token issued so far is refused from now on (401)
  GET  /__mock/requests             model requests: target, headers, body, and whether the
                                    bearer token was one this server issued and still valid
  GET  /__mock/tokens               {"issued": N, "refused": [why, …]}
Every model request needs a valid bearer token (or, with --api-key, `x-goog-api-key: K`, Vertex's
express mode), else 401 UNAUTHENTICATED in Google's shape.
Request headers that steer it: `x-mock-status: 429` (an error in Google's shape),
`x-mock-exception: RESOURCE_EXHAUSTED` (a stream that fails after its first part).
"""

import argparse
import base64
import json
import secrets
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
          429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status: int, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def google_error(self, status: int, message: str):
        self.reply(status, {"error": {"code": status, "message": message, "status": STATUS.get(status, "UNKNOWN")}})

    def issue(self):
        token = "ya29.mock-" + secrets.token_urlsafe(24)
        with self.server.lock:
            self.server.tokens[token] = time.time() + self.server.expires_in
            self.server.issued += 1
        self.reply(200, {"access_token": token, "expires_in": self.server.expires_in, "token_type": "Bearer"})

    def refuse_grant(self, why: str):
        with self.server.lock:
            self.server.refused.append(why)
        self.reply(400, {"error": "invalid_grant", "error_description": why})

    def token_grant(self, body: bytes):
        form = parse_qs(body.decode())
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return self.refuse_grant(f"unsupported grant_type {form.get('grant_type')}")
        try:
            head, claims, sig = form["assertion"][0].split(".")
            header = json.loads(b64url(head))
            claim = json.loads(b64url(claims))
            self.server.public_key.verify(b64url(sig), f"{head}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return self.refuse_grant("Invalid JWT Signature.")
        except (KeyError, ValueError) as e:
            return self.refuse_grant(f"malformed assertion: {e}")
        now = time.time()
        problems = [why for bad, why in [
            (header.get("alg") != "RS256", "alg must be RS256"),
            (header.get("kid") != self.server.key_id, "kid is not the key's id"),
            (claim.get("iss") != self.server.email, "iss is not the service account"),
            (claim.get("aud") != self.server.token_uri, "aud is not the token URI"),
            (SCOPE not in str(claim.get("scope", "")).split(), "scope lacks cloud-platform"),
            (abs(claim.get("iat", 0) - now) > 300, "iat is not now"),
            (not 0 < claim.get("exp", 0) - claim.get("iat", 0) <= 3600, "exp is not within an hour of iat"),
        ] if bad]
        if problems:
            return self.refuse_grant("Invalid JWT: " + "; ".join(problems))
        self.issue()

    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/__mock/requests":
            with self.server.lock:
                return self.reply(200, self.server.requests)
        if path == "/__mock/tokens":
            with self.server.lock:
                return self.reply(200, {"issued": self.server.issued, "refused": self.server.refused})
        if path == "/computeMetadata/v1/instance/service-accounts/default/token":
            if self.headers.get("metadata-flavor") != "Google":
                return self.reply(403, b"Missing Metadata-Flavor:Google header.", "text/plain")
            return self.issue()
        self.reply(404, {"error": {"code": 404, "message": f"no route {path}", "status": "NOT_FOUND"}})

    def token_ok(self) -> str | None:
        key = self.headers.get("x-goog-api-key")
        if key is not None:
            return None if self.server.api_key and key == self.server.api_key else "the API key is not valid"
        auth = self.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return "no bearer token"
        with self.server.lock:
            until = self.server.tokens.get(auth[len("Bearer "):])
        if until is None:
            return "the token was not issued here or was revoked"
        if until < time.time():
            return "the token has expired"
        return None

    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        url = urlsplit(self.path)
        if url.path == "/token":
            return self.token_grant(body)
        if url.path == "/__mock/expire":
            with self.server.lock:
                self.server.tokens.clear()
            return self.reply(200, {"expired": True})
        failure = self.token_ok()
        with self.server.lock:
            self.server.requests.append({
                "method": self.command, "target": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body": body.decode(errors="replace"),
                "signature_ok": failure is None, "signature_error": failure,
            })
        if failure:
            return self.google_error(401, "Request had invalid authentication credentials. Expected OAuth 2 access token.")
        parts = url.path.split("/")
        # ['', 'v1', 'projects', P, 'locations', L, 'publishers', PUB, 'models', 'M:method']
        if len(parts) != 10 or parts[1:3] != ["v1", "projects"] or parts[4] != "locations" or parts[8] != "models":
            return self.google_error(404, f"unknown path {url.path}")
        publisher = parts[7]
        model, _, method = unquote(parts[9]).rpartition(":")
        status = int(self.headers.get("x-mock-status", "200"))
        if status != 200:
            return self.google_error(status, f"mock {STATUS.get(status, 'error')} for {model}")
        try:
            req = json.loads(body)
        except ValueError:
            return self.google_error(400, "Invalid JSON payload received.")
        if publisher == "google" and method in ("generateContent", "streamGenerateContent"):
            if method == "streamGenerateContent" and parse_qs(url.query).get("alt") != ["sse"]:
                return self.google_error(400, "this mock streams only with alt=sse")
            return self.gemini(model, req, body, method != "generateContent")
        if publisher == "anthropic" and method in ("rawPredict", "streamRawPredict"):
            return self.claude(model, req, body, method == "streamRawPredict")
        self.google_error(404, f"Publisher model {publisher}/{model}:{method} not found")

    def stream_head(self):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

    def send_chunk(self, data: bytes):
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def gemini(self, model: str, req: dict, body: bytes, stream: bool):
        problems = [why for bad, why in [
            (not req.get("contents"), "contents is required"),
            (any(c.get("role") not in ("user", "model") for c in req.get("contents", [])), "role must be user or model"),
            (any("id" in (p.get("functionCall") or p.get("functionResponse") or {}) for c in req.get("contents", []) for p in c.get("parts", [])),
             "function call and response parts take no id"),
            (any(c1.get("role") == c2.get("role") for c1, c2 in zip(req.get("contents", []), req.get("contents", [])[1:])),
             "consecutive turns of one role"),
        ] if bad]
        if problems:
            return self.google_error(400, "; ".join(problems))
        decls = [d for t in req.get("tools", []) for d in t.get("functionDeclarations", [])]
        last = req["contents"][-1].get("parts", [])
        answered = any("functionResponse" in p for p in last)
        tool = decls[0]["name"] if decls and not answered else None
        prompt = max(1, len(body) // 4)
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": 7, "totalTokenCount": prompt + 7}
        if tool:
            pieces = [{"text": "Let me check."}, {"functionCall": {"name": tool, "args": {"city": "Paris"}}, "thoughtSignature": "c2lnLW1vY2s="}]
        else:
            pieces = [{"text": "Hello from "}, {"text": f"Gemini {model}"}]
        if not stream:
            return self.reply(200, {"candidates": [{"content": {"role": "model", "parts": pieces}, "finishReason": "STOP", "index": 0}],
                                    "usageMetadata": usage, "modelVersion": model, "responseId": "resp-mock-1"})
        self.stream_head()
        for i, part in enumerate(pieces):
            chunk = {"candidates": [{"content": {"role": "model", "parts": [part]}, "index": 0}],
                     "usageMetadata": {"promptTokenCount": prompt}, "modelVersion": model, "responseId": "resp-mock-1"}
            if i == len(pieces) - 1:
                chunk["candidates"][0]["finishReason"] = "STOP"
            self.send_chunk(b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n")
            exception = self.headers.get("x-mock-exception")
            if exception and i == 0:
                err = {"error": {"code": 429, "message": "Resource exhausted. Please try again later.", "status": exception}}
                self.send_chunk(b"data: " + json.dumps(err).encode() + b"\r\n\r\n")
                self.wfile.write(b"0\r\n\r\n")
                return
        self.send_chunk(b"data: " + json.dumps({"usageMetadata": usage, "modelVersion": model, "responseId": "resp-mock-1"}).encode() + b"\r\n\r\n")
        self.wfile.write(b"0\r\n\r\n")

    def claude(self, model: str, req: dict, body: bytes, stream: bool):
        problems = [why for bad, why in [
            (req.get("anthropic_version") != "vertex-2023-10-16", "anthropic_version must be vertex-2023-10-16"),
            ("model" in req, "model is not allowed in the body"),
            (bool(req.get("stream")) != stream, "stream in the body does not match the method"),
            ("max_tokens" not in req, "max_tokens is required"),
        ] if bad]
        if problems:
            return self.reply(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "; ".join(problems)}})
        tools = req.get("tools") or []
        last = (req.get("messages") or [{}])[-1].get("content")
        answered = isinstance(last, list) and any(b.get("type") == "tool_result" for b in last)
        tool = tools[0]["name"] if tools and not answered else None
        usage = {"input_tokens": max(1, len(body) // 4), "output_tokens": 6}
        content = ([{"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_vrtx_1", "name": tool, "input": {"city": "Paris"}}] if tool
                   else [{"type": "text", "text": f"Hello from Claude {model}"}])
        stop = "tool_use" if tool else "end_turn"
        if not stream:
            return self.reply(200, {"id": "msg_vrtx_1", "type": "message", "role": "assistant", "model": model,
                                    "content": content, "stop_reason": stop, "stop_sequence": None, "usage": usage})
        self.stream_head()
        events = [("message_start", {"type": "message_start", "message": {
            "id": "msg_vrtx_1", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1}}})]
        for i, block in enumerate(content):
            if block["type"] == "text":
                events.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}))
                events.append(("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": block["text"]}}))
            else:
                events.append(("content_block_start", {"type": "content_block_start", "index": i, "content_block": {
                    "type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}}))
                events.append(("content_block_delta", {"type": "content_block_delta", "index": i, "delta": {
                    "type": "input_json_delta", "partial_json": json.dumps(block["input"])}}))
            events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
        events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 6}}))
        events.append(("message_stop", {"type": "message_stop"}))
        for i, (name, data) in enumerate(events):
            self.send_chunk(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            if i == 2 and self.headers.get("x-mock-exception"):
                err = {"type": "error", "error": {"type": "rate_limit_error", "message": "Resource exhausted. Please try again later."}}
                self.send_chunk(f"event: error\ndata: {json.dumps(err)}\n\n".encode())
                break
        self.wfile.write(b"0\r\n\r\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--key-file", required=True, help="where to write the service-account key file")
    ap.add_argument("--expires-in", type=int, default=3600, help="token lifetime in seconds")
    ap.add_argument("--api-key", help="an API key accepted in x-goog-api-key")
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server.public_key = key.public_key()
    server.email = "router@acme-ml.iam.gserviceaccount.com"
    server.key_id = "kid-" + secrets.token_hex(4)
    server.token_uri = f"http://127.0.0.1:{port}/token"
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    with open(args.key_file, "w") as f:
        json.dump({"type": "service_account", "project_id": "acme-ml", "private_key_id": server.key_id,
                   "private_key": pem, "client_email": server.email, "client_id": "1",
                   "token_uri": server.token_uri}, f)
    server.expires_in = args.expires_in
    server.api_key = args.api_key
    server.tokens = {}
    server.issued = 0
    server.refused = []
    server.requests = []
    server.lock = threading.Lock()
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
