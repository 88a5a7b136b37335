"""Read switchyard audit shards with DuckDB, as a user would, and print them as JSON.

Usage: python3 tools/audit/dump.py AUDIT_DIR

Prints {"schema": [[column, type], ...], "rows": [{...}, ...]} for
read_parquet('AUDIT_DIR/**/*.parquet', hive_partitioning = true, union_by_name = true)
(`union_by_name`: shards from before a column existed read it as NULL). Used by the router's
end-to-end audit test; also a starting point for your own queries.
"""

import json
import sys

import duckdb


def main(root: str) -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    source = f"read_parquet('{root}/**/*.parquet', hive_partitioning = true, union_by_name = true)"
    schema = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    cur = con.execute(f"SELECT *, epoch_ms(ts) AS ts_epoch_ms FROM {source} ORDER BY ts, request_id")
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur.fetchall()]
    print(json.dumps({"schema": [[s[0], s[1]] for s in schema], "rows": rows}, default=str))


if __name__ == "__main__":
    main(sys.argv[1])
