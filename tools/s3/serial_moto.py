"""moto's S3 server (PyPI `moto[server]`), answering one request at a time.

Usage: python3 serial_moto.py HOST PORT

moto checks a conditional write (`If-Match`, `If-None-Match: *`) and then stores the object
as two steps; its usual threaded server can interleave two writers between them, which
real S3 never does. Served from one thread, each request is atomic, as on S3, so the fleet
tests exercise our compare-and-swap protocol rather than a race inside the test server.
"""

import sys

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple


def main(host: str, port: str) -> None:
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, int(port), app, threaded=False, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main(*sys.argv[1:3])
