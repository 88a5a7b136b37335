"""Run tools/audit/queries.sql against an audit directory with DuckDB and print each result.

Usage: python3 tools/audit/queries.py AUDIT_DIR
"""

import os
import sys

import duckdb


def main(root: str) -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "queries.sql")) as f:
        text = f.read().replace("switchyard-data/audit", root)
    sql = "\n".join(line for line in text.splitlines() if not line.strip().startswith("--"))
    con = duckdb.connect()
    for statement in (s.strip() for s in sql.split(";")):
        if not statement:
            continue
        cur = con.execute(statement)
        if cur.description:
            print(" | ".join(d[0] for d in cur.description))
            for row in cur.fetchall():
                print(" | ".join(str(v) for v in row))
            print()


if __name__ == "__main__":
    main(sys.argv[1])
