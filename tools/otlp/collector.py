#!/usr/bin/env python3
"""A minimal OTLP/HTTP trace collector for the router's tests.

    python3 tools/otlp/collector.py [--listen 127.0.0.1:0]

`POST /v1/traces` takes an `ExportTraceServiceRequest` in the OTLP JSON encoding and checks it
with the OpenTelemetry project's own protobuf definitions (`opentelemetry-proto`): the hex
trace and span ids are turned into bytes (checked to be 16 and 8 long), then the document is
parsed by `google.protobuf.json_format` into the message, unknown fields refused. A request
that does not parse is answered 400 and kept out. `GET /__spans` returns every span received
(ids in hex, attributes flattened to a `{key: value}` map, the resource's `service.name`
beside them). Prints `listening on http://ADDR` when ready.
"""

import argparse
import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

SPANS = []
LOCK = threading.Lock()
ID_LENGTHS = {"traceId": 16, "spanId": 8, "parentSpanId": 8}


def hex_ids_to_base64(node):
    """OTLP JSON writes ids in hex; protobuf's JSON mapping expects base64 for bytes."""
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if key in ID_LENGTHS:
                raw = bytes.fromhex(value)
                if len(raw) != ID_LENGTHS[key]:
                    raise ValueError(f"{key} {value!r} is not {ID_LENGTHS[key]} bytes")
                node[key] = base64.b64encode(raw).decode()
            else:
                hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            hex_ids_to_base64(item)


def value_of(any_value):
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path != "/v1/traces":
            return self.answer(404, {"error": f"no {self.path}"})
        if self.headers.get("content-type", "") != "application/json":
            return self.answer(415, {"error": "expected application/json"})
        try:
            doc = json.loads(body)
            hex_ids_to_base64(doc)
            message = json_format.ParseDict(doc, ExportTraceServiceRequest(), ignore_unknown_fields=False)
        except Exception as e:  # noqa: BLE001 - any refusal is the test's failure
            return self.answer(400, {"error": str(e)})
        spans = []
        for rs in message.resource_spans:
            resource = {a.key: value_of(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append({
                        "service": resource.get("service.name"),
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex(),
                        "name": s.name,
                        "kind": s.kind,
                        "start": s.start_time_unix_nano,
                        "end": s.end_time_unix_nano,
                        "status": s.status.code,
                        "attributes": {a.key: value_of(a.value) for a in s.attributes},
                    })
        with LOCK:
            SPANS.extend(spans)
        self.answer(200, {})

    def do_GET(self):
        if self.path == "/__spans":
            with LOCK:
                return self.answer(200, SPANS)
        self.answer(404, {"error": f"no {self.path}"})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:0")
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    print(f"listening on http://{server.server_address[0]}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
