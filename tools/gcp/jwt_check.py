"""An independent check of the router's Google service-account assertions (RS256 JWTs).

  python3 tools/gcp/jwt_check.py keyfile OUT.json
      writes a service-account key file with a fresh 2048-bit RSA key (`cryptography`)
  python3 tools/gcp/jwt_check.py verify OUT.json JWT
      verifies JWT's signature with the key's public half and prints its header and claims
      as JSON; exits 1 when the signature does not verify
"""

import base64
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def keyfile(path: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    with open(path, "w") as f:
        json.dump({"type": "service_account", "project_id": "acme-ml", "private_key_id": "kid-123",
                   "private_key": pem, "client_email": "router@acme-ml.iam.gserviceaccount.com",
                   "client_id": "1", "token_uri": "http://127.0.0.1:1/token"}, f)


def verify(path: str, jwt: str) -> None:
    with open(path) as f:
        info = json.load(f)
    key = serialization.load_pem_private_key(info["private_key"].encode(), password=None).public_key()
    head, claims, sig = jwt.split(".")
    try:
        key.verify(b64url(sig), f"{head}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        print("signature does not verify")
        sys.exit(1)
    print(json.dumps({"header": json.loads(b64url(head)), "claims": json.loads(b64url(claims))}))


if __name__ == "__main__":
    {"keyfile": lambda: keyfile(sys.argv[2]), "verify": lambda: verify(sys.argv[2], sys.argv[3])}[sys.argv[1]]()
