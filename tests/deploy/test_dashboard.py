"""deploy_dashboard: k8s/monitoring/dashboard.json is a Grafana dashboard that parses, whose every
query names only metrics the service exports (today's core/metrics.c and scripts/, or the series
issue 12 specifies), and that covers what an on-call engineer looks at first. The alert rules are
held to the same metric names.

Needs SOURCE_DIR (ctest's TEST_ENV)."""
import glob
import json
import os
import re
import unittest

ROOT = os.environ.get("SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Issue 12's series (prefix orderservice_ unless standard process_ ones), histograms marked.
ISSUE_12_COUNTERS_AND_GAUGES = """
downstream_requests_total circuit_breaker_state orders_created_total orders_cancelled_total
order_transitions_total outbox_pending outbox_oldest_pending_seconds outbox_deliveries_total
sagas_in_flight saga_recoveries_total db_errors_total http_connections_active lua_memory_bytes
jobs_last_success_timestamp_seconds build_info http_requests_total
""".split()
ISSUE_12_HISTOGRAMS = """
downstream_request_duration_seconds db_query_duration_seconds db_pool_acquire_duration_seconds
http_request_duration_seconds
""".split()
PROCESS = """process_resident_memory_bytes process_cpu_seconds_total process_open_fds process_max_fds
process_start_time_seconds""".split()
PROMQL_WORDS = {"sum", "by", "rate", "increase", "max", "min", "avg", "histogram_quantile", "time", "and", "on",
                "or", "unless", "without", "le", "count", "topk", "irate", "label_values", "ignoring"}


def known_metrics():
    names = {"orderservice_" + n for n in ISSUE_12_COUNTERS_AND_GAUGES} | set(PROCESS)
    for h in ISSUE_12_HISTOGRAMS:
        names |= {f"orderservice_{h}_{s}" for s in ("bucket", "sum", "count")}
    sources = glob.glob(os.path.join(ROOT, "core", "*.c")) + glob.glob(os.path.join(ROOT, "scripts", "**", "*.lua"),
                                                                       recursive=True)
    for path in sources:
        with open(path) as f:
            for name in re.findall(r"\b(orderservice_[a-z_]+[a-z])", f.read()):
                names |= {name, name + "_bucket", name + "_sum", name + "_count"}
    return names


def metrics_in(expr):
    """The metric names an expression reads: identifiers outside label matchers, not PromQL words."""
    expr = re.sub(r"\{[^}]*\}", "", expr)          # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)          # ranges
    expr = re.sub(r"\b(by|on|without|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    words = set(re.findall(r"\b([a-zA-Z_][a-zA-Z0-9_]*)\b", expr))
    return {w for w in words if w.startswith(("orderservice_", "process_"))} | \
           {w for w in words if w not in PROMQL_WORDS and not w.startswith("__") and "_" in w
            and not w.startswith(("orderservice_", "process_"))}


def panels(dash):
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


class DashboardTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(ROOT, "k8s", "monitoring", "dashboard.json")) as f:
            cls.dash = json.load(f)
        cls.known = known_metrics()
        cls.exprs = [(p["title"], t["expr"]) for p in panels(cls.dash) for t in p.get("targets", [])]

    def test_is_a_grafana_dashboard(self):
        self.assertTrue(self.dash["uid"] and self.dash["title"] and self.dash["schemaVersion"] >= 30)
        ids = [p["id"] for p in panels(self.dash)]
        self.assertEqual(len(ids), len(set(ids)), "panel ids are unique")
        variables = {v["name"] for v in self.dash["templating"]["list"]}
        for p in panels(self.dash):
            if p["type"] == "row":
                continue
            self.assertTrue(p.get("targets"), f"panel {p['title']} has no query")
            self.assertEqual(p["datasource"]["uid"], "${datasource}", p["title"])
            g = p["gridPos"]
            self.assertTrue(0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"])
        self.assertIn("datasource", variables)

    def test_every_query_names_an_exported_metric(self):
        self.assertGreater(len(self.exprs), 10)
        for title, expr in self.exprs:
            used = metrics_in(expr)
            self.assertTrue(used, f"{title}: {expr} reads no metric")
            self.assertEqual(used - self.known, set(), f"{title}: {expr}")

    def test_the_check_catches_a_misspelt_metric(self):
        self.assertEqual(metrics_in('sum(rate(orderservice_http_request_total{status=~"5.."}[5m]))') - self.known,
                         {"orderservice_http_request_total"})

    def test_covers_traffic_errors_latency_downstreams_outbox_pool_and_lua(self):
        text = " ".join(e for _, e in self.exprs)
        for needed in ("orderservice_http_requests_total", "orderservice_http_request_duration_seconds_bucket",
                       "orderservice_downstream_requests_total", "orderservice_circuit_breaker_state",
                       "orderservice_outbox_pending", "orderservice_outbox_oldest_pending_seconds",
                       "orderservice_db_pool_busy", "orderservice_db_pool_waiting", "orderservice_lua_memory_bytes"):
            self.assertIn(needed, text)
        self.assertIn("by (route", text, "traffic and latency by route")

    def test_alert_rules_name_exported_metrics(self):
        with open(os.path.join(ROOT, "k8s", "monitoring", "alerts.rules.yml")) as f:
            exprs = re.findall(r"expr: \|?\n?((?:.*\n)*?)\s*for:", f.read())
        self.assertEqual(len(exprs), 6)
        for expr in exprs:
            self.assertEqual(metrics_in(expr) - self.known, set(), expr)


if __name__ == "__main__":
    unittest.main()
