"""A real Prometheus (the Debian package's binary) on loopback, with its own config and storage
in a temporary directory, scrapes a service with three workers every 100 ms; its HTTP API then
returns exactly the request and downstream-call counts this test generated. Every wait is on a
condition (the scrape after the traffic is visible), never a fixed sleep."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest
import urllib.parse
import urllib.request

from harness import Service, free_port, fresh_database, run_binary, start_standins, wait_until

ORDER = {"customer_id": 7, "items": [{"product_id": 3, "sku": "SKU0003", "quantity": 2, "unit_price": "30.00"}]}
CREATES, HEALTH, MISSING, WRONG_METHOD = 6, 23, 7, 4


class RealPrometheus(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        binary = shutil.which("prometheus")
        assert binary, "prometheus (Debian package prometheus, tools/install-prometheus) is required"
        cls.url = fresh_database("it_prometheus")
        assert run_binary("migrate", env={"DATABASE_URL": cls.url}).returncode == 0
        cls.standin, env = start_standins()
        env.update(OUTBOX_EVERY_MS="100", BREAKER_FAILURES="1000")
        cls.svc = Service(database_url=cls.url, workers=3, env=env).start()
        cls.dir = tempfile.mkdtemp(prefix="it-prometheus-")
        config = os.path.join(cls.dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 100ms\n  scrape_timeout: 100ms\n"
                    "scrape_configs:\n  - job_name: orderservice\n"
                    f"    static_configs:\n      - targets: ['127.0.0.1:{cls.svc.port}']\n")
        cls.api_port = free_port()
        cls.log = open(os.path.join(cls.dir, "prometheus.log"), "w")
        cls.prometheus = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={os.path.join(cls.dir, 'data')}",
             f"--web.listen-address=127.0.0.1:{cls.api_port}", "--storage.tsdb.retention.time=1h"],
            stdout=cls.log, stderr=subprocess.STDOUT)
        wait_until(cls.target_up, seconds=30, what="Prometheus to scrape the service")

    @classmethod
    def tearDownClass(cls):
        cls.prometheus.terminate()
        cls.prometheus.wait(timeout=30)
        cls.log.close()
        shutil.rmtree(cls.dir, ignore_errors=True)
        cls.svc.__exit__(None, None, None)
        cls.standin.__exit__(None, None, None)

    @classmethod
    def api(cls, path, **params):
        url = f"http://127.0.0.1:{cls.api_port}/api/v1/{path}?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.load(r)["data"]
        except OSError:
            return None  # not listening yet

    @classmethod
    def target_up(cls):
        data = cls.api("targets")
        return data and any(t["health"] == "up" for t in data["activeTargets"])

    def query(self, expr):
        """{frozenset(labels minus __name__, instance, job): value} of an instant query."""
        data = self.api("query", query=expr)
        out = {}
        for r in data["result"] if data else []:
            labels = {k: v for k, v in r["metric"].items() if k not in ("__name__", "instance", "job")}
            out[frozenset(labels.items())] = float(r["value"][1])
        return out

    def test_prometheus_sees_exactly_the_requests_and_downstream_calls_made(self):
        svc = self.svc
        for _ in range(HEALTH):
            self.assertEqual(svc.request("GET", "/health/live/").status, 200)
        for i in range(MISSING):
            self.assertEqual(svc.request("GET", f"/missing/{i}").status, 404)
        for _ in range(WRONG_METHOD):
            self.assertEqual(svc.request("PUT", "/health/live/").status, 405)
        for _ in range(CREATES):
            self.assertEqual(svc.request("POST", "/v1/orders/create/", body=ORDER).status, 201)

        def key(**labels):
            return frozenset(labels.items())

        http_expected = {
            key(route="/health/live/", method="GET", status="200"): HEALTH,
            key(route="unmatched", method="GET", status="404"): MISSING,
            key(route="/health/live/", method="PUT", status="405"): WRONG_METHOD,
            key(route="/v1/orders/create/", method="POST", status="201"): CREATES,
        }
        downstream_expected = {
            key(service="inventory", operation="reserve", outcome="ok"): CREATES,
            key(service="payment", operation="charge", outcome="ok"): CREATES,
            key(service="shipping", operation="ship", outcome="ok"): CREATES,
            key(service="notification", operation="notify", outcome="ok"): CREATES,
        }

        def http_seen():
            # Prometheus' own scrapes of /metrics are requests too: they are the one route left out.
            return {k: v for k, v in self.query("orderservice_http_requests_total").items()
                    if ("route", "/metrics") not in k}

        # The outbox delivers ship and notify after the creates answered: wait for a scrape that
        # has everything, then require it to be exactly that (nothing extra, nothing missing).
        wait_until(lambda: http_seen() == http_expected, seconds=30, what="the requests in Prometheus")
        wait_until(lambda: self.query("orderservice_downstream_requests_total") == downstream_expected,
                   seconds=30, what="the downstream calls in Prometheus")
        self.assertEqual(http_seen(), http_expected)
        self.assertEqual(self.query("orderservice_downstream_requests_total"), downstream_expected)
        # Prometheus keeps its target label `job`; the service's own is stored as exported_job
        # (what k8s/monitoring/alerts.rules.yml and the dashboard group by).
        jobs = self.api("query", query="orderservice_jobs_last_success_timestamp_seconds")["result"]
        self.assertEqual({r["metric"]["job"] for r in jobs}, {"orderservice"})
        self.assertEqual({r["metric"]["exported_job"] for r in jobs}, {"outbox", "saga_recovery"})
        self.assertEqual(self.query("sum(orderservice_workers)"), {frozenset(): 3})


if __name__ == "__main__":
    unittest.main()
