#!/usr/bin/env python3
"""Reads Prometheus text exposition from stdin with the official Python client's parser
(`prometheus_client.parser`) and prints every sample as JSON: one object per line with
`family`, `type`, `name`, `labels` and `value`.

The router's tests use it as an independent reader of `GET /metrics`: a line the parser
refuses fails the test.

    curl -s localhost:8080/metrics | python3 tools/metrics/read_metrics.py
"""

import json
import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def main() -> None:
    text = sys.stdin.read()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            value = sample.value
            if isinstance(value, float) and math.isinf(value):
                value = "+Inf" if value > 0 else "-Inf"
            print(
                json.dumps(
                    {
                        "family": family.name,
                        "type": family.type,
                        "name": sample.name,
                        "labels": sample.labels,
                        "value": value,
                    }
                )
            )


if __name__ == "__main__":
    main()
