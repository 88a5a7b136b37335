"""Sign requests with botocore's own SigV4 signer, as an independent check of ours.

Usage: python3 tools/aws/sigv4_check.py < cases.json > signatures.json

Each case: {"method", "url" (scheme://host[:port]/path[?query], path and query exactly as
sent), "headers": [[name, value], ...] (every header to sign, host and x-amz-date included),
"body" (text), "access_key", "secret_key", "token" (or null), "region", "service"}.
Each answer: {"canonical_request", "authorization"}, computed by botocore.auth.SigV4Auth with
the request's own x-amz-date as its timestamp.
"""

import json
import sys

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


def sign(case: dict) -> dict:
    headers = {name: value for name, value in case["headers"]}
    request = AWSRequest(method=case["method"], url=case["url"], data=case["body"].encode(), headers=headers)
    amz_date = next(v for n, v in case["headers"] if n.lower() == "x-amz-date")
    request.context["timestamp"] = amz_date
    auth = SigV4Auth(Credentials(case["access_key"], case["secret_key"], case["token"]), case["service"], case["region"])
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    signed = auth.signed_headers(auth.headers_to_sign(request))
    scope = auth.scope(request)
    return {
        "canonical_request": canonical,
        "authorization": f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders={signed}, Signature={signature}",
    }


if __name__ == "__main__":
    json.dump([sign(c) for c in json.load(sys.stdin)], sys.stdout)
