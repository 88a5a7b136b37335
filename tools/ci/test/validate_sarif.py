"""Validates SARIF logs against the SARIF 2.1.0 JSON schema (testdata/sarif), with the
`jsonschema` package: prints each violation and exits 1 if there is any.

usage: validate_sarif.py SCHEMA LOG...
"""

import json
import sys

import jsonschema


def main() -> int:
    schema = json.load(open(sys.argv[1], encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    bad = 0
    for path in sys.argv[2:]:
        log = json.load(open(path, encoding="utf-8"))
        for error in validator.iter_errors(log):
            bad += 1
            where = "/".join(str(p) for p in error.absolute_path)
            print(f"{path}: {where}: {error.message}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
