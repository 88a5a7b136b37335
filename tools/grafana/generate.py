#!/usr/bin/env python3
"""Writes tools/grafana/switchyard.json, the Grafana dashboard over the router's /metrics.

    python3 tools/grafana/generate.py            # rewrite switchyard.json
    python3 tools/grafana/generate.py --check    # exit 1 if switchyard.json is stale

Import the JSON in Grafana (Dashboards -> New -> Import) and pick a Prometheus data source that
scrapes the routers. Every metric a query names is listed in README.md ("Metrics"); the test
suite checks each one is served by a live router (router/tests/observability.rs).
"""

import json
import pathlib
import sys

OUT = pathlib.Path(__file__).with_name("switchyard.json")
DS = {"type": "prometheus", "uid": "${datasource}"}
FILTER = 'tenant=~"$tenant", switchyard_endpoint=~"$endpoint"'
RATE = "$__rate_interval"


def panel(title, kind, targets, x, y, w=12, h=8, unit=None, description=None, **extra):
    p = {
        "type": kind,
        "title": title,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend, "datasource": DS}
            for i, (expr, legend) in enumerate(targets)
        ],
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {},
    }
    if unit:
        p["fieldConfig"]["defaults"]["unit"] = unit
    if description:
        p["description"] = description
    p.update(extra)
    return p


def quantiles(metric, by, where=FILTER):
    return [
        (
            f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{where}}}[{RATE}])))",
            f"p{int(q * 100)} {{{{{by}}}}}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def row(title, y):
    return {"type": "row", "title": title, "collapsed": False, "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []}


def dashboard():
    panels = []
    y = 0
    panels.append(row("Traffic", y))
    y += 1
    panels.append(panel(
        "Requests per second by status class", "timeseries",
        [(f'sum by (status_class) (rate(switchyard_requests_total{{{FILTER}}}[{RATE}]))', "{{status_class}}")],
        0, y, unit="reqps"))
    panels.append(panel(
        "Requests per second by endpoint, model and rule", "timeseries",
        [(f'sum by (switchyard_endpoint, gen_ai_request_model, rule) (rate(switchyard_requests_total{{{FILTER}}}[{RATE}]))',
          "{{switchyard_endpoint}} {{gen_ai_request_model}} {{rule}}")],
        12, y, unit="reqps"))
    y += 8
    panels.append(row("Latency", y))
    y += 1
    panels.append(panel(
        "Request duration p50 / p95 / p99 by endpoint", "timeseries",
        quantiles("gen_ai_server_request_duration_seconds", "switchyard_endpoint"), 0, y, unit="s",
        description="As the client sees it: head read to last byte sent."))
    panels.append(panel(
        "Time to first token p50 / p95 / p99 by endpoint", "timeseries",
        quantiles("gen_ai_server_time_to_first_token_seconds", "switchyard_endpoint"), 12, y, unit="s"))
    y += 8
    panels.append(panel(
        "Time per output token p50 by endpoint", "timeseries",
        [(f"histogram_quantile(0.5, sum by (le, switchyard_endpoint) (rate(gen_ai_server_time_per_output_token_seconds_bucket{{{FILTER}}}[{RATE}])))",
          "{{switchyard_endpoint}}")],
        0, y, unit="s"))
    panels.append(panel(
        "Gateway overhead p50 / p99", "timeseries",
        [(f"histogram_quantile({q}, sum by (le) (rate(switchyard_overhead_seconds_bucket{{{FILTER}}}[{RATE}])))", f"p{int(q * 100)}")
         for q in (0.5, 0.99)],
        12, y, unit="s", description="Router time per request, excluding waits on the upstream and the client."))
    y += 8
    panels.append(row("Tokens and cost", y))
    y += 1
    panels.append(panel(
        "Cost per hour by tenant (USD)", "timeseries",
        [(f'sum by (tenant) (increase(switchyard_cost_usd_total{{{FILTER}}}[1h]))', "{{tenant}}")],
        0, y, unit="currencyUSD"))
    panels.append(panel(
        "Tokens per second by tenant and type", "timeseries",
        [(f'sum by (tenant, gen_ai_token_type) (rate(gen_ai_client_token_usage_sum{{{FILTER}}}[{RATE}]))',
          "{{tenant}} {{gen_ai_token_type}}")],
        12, y))
    y += 8
    panels.append(panel(
        "Cost by tenant and endpoint over the range (USD)", "table",
        [(f'sum by (tenant, switchyard_endpoint, gen_ai_request_model) (increase(switchyard_cost_usd_total{{{FILTER}}}[$__range]))', "")],
        0, y, unit="currencyUSD"))
    panels.append(panel(
        "Tokens by endpoint, model and rule over the range", "table",
        [(f'sum by (switchyard_endpoint, gen_ai_request_model, rule, gen_ai_token_type) (increase(gen_ai_client_token_usage_sum{{{FILTER}}}[$__range]))', "")],
        12, y))
    y += 8
    panels.append(row("Errors and failover", y))
    y += 1
    panels.append(panel(
        "Upstream attempts by outcome", "timeseries",
        [(f'sum by (outcome) (rate(switchyard_upstream_attempts_total{{switchyard_endpoint=~"$endpoint"}}[{RATE}]))', "{{outcome}}")],
        0, y, unit="ops"))
    panels.append(panel(
        "Fallbacks per second", "timeseries",
        [(f'sum by (from, to) (rate(switchyard_fallbacks_total[{RATE}]))', "{{from}} -> {{to}}")],
        12, y, unit="ops"))
    y += 8
    panels.append(panel(
        "Errors per second by endpoint (5xx to clients, cut streams)", "timeseries",
        [(f'sum by (switchyard_endpoint) (rate(switchyard_requests_total{{status_class="5xx", {FILTER}}}[{RATE}]))', "5xx {{switchyard_endpoint}}"),
         (f'sum by (switchyard_endpoint) (rate(switchyard_stream_interrupted_total{{{FILTER}}}[{RATE}]))', "cut {{switchyard_endpoint}}")],
        0, y, unit="ops"))
    panels.append(panel(
        "Endpoint circuit state", "state-timeline",
        [('max by (switchyard_endpoint) (switchyard_endpoint_state{switchyard_endpoint=~"$endpoint"})', "{{switchyard_endpoint}}")],
        12, y,
        description="0 closed, 1 half-open, 2 open, 3 cooling after a 429.",
        fieldConfig={"defaults": {"mappings": [{"type": "value", "options": {
            "0": {"text": "closed", "color": "green"}, "1": {"text": "half-open", "color": "yellow"},
            "2": {"text": "open", "color": "red"}, "3": {"text": "cooling", "color": "orange"}}}]},
            "overrides": []}))
    y += 8
    panels.append(panel(
        "Requests refused by tenant limits", "timeseries",
        [(f'sum by (tenant, limit) (rate(switchyard_rate_limited_total{{tenant=~"$tenant"}}[{RATE}]))', "{{tenant}} {{limit}}")],
        0, y, unit="ops"))
    panels.append(panel(
        "Breaker ejections over the range", "stat",
        [('sum by (switchyard_endpoint) (increase(switchyard_endpoint_ejections_total{switchyard_endpoint=~"$endpoint"}[$__range]))', "{{switchyard_endpoint}}")],
        12, y))
    y += 8
    panels.append(row("Audit trail", y))
    y += 1
    panels.append(panel(
        "Audit records", "timeseries",
        [(f"sum(rate(switchyard_audit_records_written_total[{RATE}]))", "written"),
         (f"sum(rate(switchyard_audit_records_failed_total[{RATE}]))", "failed"),
         (f"sum(rate(switchyard_audit_shards_shipped_total[{RATE}]))", "shards shipped")],
        0, y, unit="ops"))
    panels.append(panel(
        "Audit backlog", "timeseries",
        [("sum(switchyard_audit_shards_pending_upload)", "shards pending upload"),
         ("sum(switchyard_audit_records_queued)", "records queued on the cores"),
         ("max by (instance) (switchyard_table_revision)", "table revision {{instance}}")],
        12, y))
    for i, p in enumerate(panels):
        p["id"] = i + 1
    return {
        "title": "Switchyard",
        "uid": "switchyard-gateway",
        "description": "Switchyard gateway: latency by endpoint, cost by tenant, usage by endpoint/model/rule, failover. Generated by tools/grafana/generate.py.",
        "tags": ["switchyard", "llm", "gen-ai"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
            {"name": "tenant", "type": "query", "datasource": DS, "label": "Tenant",
             "query": {"query": "label_values(switchyard_requests_total, tenant)", "refId": "tenant"},
             "definition": "label_values(switchyard_requests_total, tenant)",
             "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2,
             "current": {"text": "All", "value": "$__all"}},
            {"name": "endpoint", "type": "query", "datasource": DS, "label": "Endpoint",
             "query": {"query": "label_values(switchyard_requests_total, switchyard_endpoint)", "refId": "endpoint"},
             "definition": "label_values(switchyard_requests_total, switchyard_endpoint)",
             "includeAll": True, "multi": True, "allValue": ".*", "refresh": 2,
             "current": {"text": "All", "value": "$__all"}},
        ]},
        "panels": panels,
    }


def main():
    text = json.dumps(dashboard(), indent=2) + "\n"
    if "--check" in sys.argv[1:]:
        if OUT.read_text() != text:
            print(f"{OUT} is stale: run python3 tools/grafana/generate.py", file=sys.stderr)
            sys.exit(1)
        return
    OUT.write_text(text)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
