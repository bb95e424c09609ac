"""What operators read: /metrics stays valid Prometheus text whatever clients send, explains
what the service did (downstream calls, sagas, the outbox, the database), keeps operators' own
metrics across a reload, and every log line is one valid JSON object, however long or odd the
request."""
import json
import re
import shutil
import signal
import socket
import subprocess
import threading
import unittest

from harness import ADMIN_TOKEN, Service, fresh_database, run_binary, start_standins, wait_until

ORDER = {"customer_id": 7, "items": [{"product_id": 3, "sku": "SKU0003", "quantity": 2, "unit_price": "30.00"}]}


def samples(text):
    """{'name{labels}': value} of every sample line of a scrape."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def raw_request(port, raw):
    """Sends one raw request (Connection: close) and returns the whole reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def promtool_check(test, text):
    promtool = shutil.which("promtool")
    test.assertIsNotNone(promtool, "promtool (Debian package prometheus) is required")
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    test.assertEqual(check.returncode, 0, check.stdout + check.stderr + text[:2000])


class MetricsUnderOddRequests(unittest.TestCase):
    def test_odd_methods_are_counted_as_other_and_the_scrape_stays_valid(self):
        with Service(workers=2) as svc:
            odd = [b'A"B', b"A\\B", b"ABCDEFGHIJKLMNOPQRST", b"get", b"M{x}", b"PROPFIND"]
            # Many distinct made-up methods: none may claim one of the bounded slots.
            odd += [b"X%03d" % i for i in range(300)]
            for method in odd:
                reply = raw_request(svc.port, method + b" /health/live/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                self.assertTrue(reply.startswith(b"HTTP/1.1 "), reply[:100])
            self.assertEqual(svc.request("GET", "/health/live/").status, 200)
            text = svc.request("GET", "/metrics").body.decode()
            promtool_check(self, text)
            self.assertNotIn('A"B', text)
            self.assertNotIn("PROPFIND", text)
            self.assertIn('orderservice_http_requests_total{route="/health/live/",method="GET",status="200"} 1', text)
            other = [l for l in text.splitlines() if l.startswith("orderservice_http_requests_total{") and
                     'method="other"' in l]
            self.assertEqual(sum(int(l.rsplit(" ", 1)[1]) for l in other), len(odd))
            self.assertNotIn('route="overflow"', text)

    def test_scrape_after_many_routes_is_complete(self):
        # The text outgrows the first buffer size of the handler (64 KiB): it must come back whole.
        paths = ["/health/", "/health/live/", "/metrics", "/nope", "/test/echo/a/1", "/test/sleep/1", "/test/boom",
                 "/test/query", "/test/tx", "/test/pg-sleep/1", "/v1/orders/", "/v1/orders/create/",
                 "/v1/orders/my-orders/1/", "/v1/orders/1/", "/v1/orders/1/details/", "/v1/orders/1/update/",
                 "/v1/orders/1/cancel/"]
        with Service(workers=2) as svc:
            for path in paths:
                for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "BREW"]:
                    svc.request(method, path)
            text = svc.request("GET", "/metrics").body.decode()
            self.assertGreater(len(text), 64 * 1024)
            promtool_check(self, text)
            self.assertTrue(text.rstrip().splitlines()[-1].startswith("orderservice_start_time_seconds "))


class DomainMetrics(unittest.TestCase):
    """Two workers, the stand-ins downstream: traffic of every kind, then one scrape."""

    @classmethod
    def setUpClass(cls):
        cls.url = fresh_database("it_observability")
        assert run_binary("migrate", env={"DATABASE_URL": cls.url}).returncode == 0
        cls.standin, env = start_standins()
        env.update(OUTBOX_EVERY_MS="100", BREAKER_FAILURES="1000", DOWNSTREAM_TIMEOUT_MS="2000")
        cls.svc = Service(database_url=cls.url, workers=2, env=env).start()

    @classmethod
    def tearDownClass(cls):
        cls.svc.__exit__(None, None, None)
        cls.standin.__exit__(None, None, None)

    def behave(self, behaviour):
        self.assertEqual(self.standin.request("PUT", "/_behaviour", body=behaviour).status, 200)

    def scrape(self):
        r = self.svc.request("GET", "/metrics")
        self.assertEqual(r.status, 200)
        return r.body.decode()

    def test_traffic_of_every_kind_is_explained_and_the_scrape_stays_valid(self):
        svc = self.svc
        # Creates with each outcome, then a cancel of the confirmed one.
        statuses = []
        for behaviour in ({}, {"reserve": {"status": 409}}, {"charge": {"status": 402}}, {"reserve": {"status": 503}}):
            self.behave(behaviour)
            statuses.append(svc.request("POST", "/v1/orders/create/", body=ORDER))
        self.behave({})
        self.assertEqual([r.status for r in statuses], [201, 409, 402, 503], [r.body for r in statuses])
        confirmed = statuses[0].json()["order_id"]
        self.assertEqual(svc.request("POST", f"/v1/orders/{confirmed}/cancel/").status, 200)
        # A failing statement, a 404 and a 405 on declared routes, paths that match nothing,
        # hostile methods and paths.
        self.assertEqual(svc.request("GET", "/test/sql-error").status, 500)
        self.assertEqual(svc.request("GET", "/v1/orders/99999999/").status, 404)
        self.assertEqual(svc.request("DELETE", "/v1/orders/99999999/").status, 405)
        self.assertEqual(svc.request("POST", "/health/").status, 405)
        for i in range(50):
            self.assertEqual(svc.request("GET", f"/no/such/path/{i}").status, 404)
        for raw in (b'A"B /x HTTP/1.1', b"BREW /v1/orders/ HTTP/1.1", b'GET /"}\\n{ HTTP/1.1',
                    b"GET /v1/orders/%0A%22/ HTTP/1.1", b"GET /" + b"x" * 5000 + b" HTTP/1.1"):
            reply = raw_request(svc.port, raw + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
            self.assertTrue(reply.startswith(b"HTTP/1.1 "), reply[:100])
        # The outbox delivers what the sagas and the cancel left (ship, notify, release, refund).
        wait_until(lambda: 'orderservice_outbox_pending{kind="release"} 0' in self.scrape() and
                   samples(self.scrape()).get("orderservice_outbox_oldest_pending_seconds") == 0,
                   what="the outbox to drain")
        text = self.scrape()
        promtool_check(self, text)
        m = samples(text)

        created = {o: m.get(f'orderservice_orders_created_total{{outcome="{o}"}}')
                   for o in ("confirmed", "out_of_stock", "payment_declined", "unavailable")}
        self.assertEqual(created, {"confirmed": 1, "out_of_stock": 1, "payment_declined": 1, "unavailable": 1})
        self.assertEqual(m["orderservice_orders_cancelled_total"], 1)
        self.assertEqual(m['orderservice_order_transitions_total{from="PENDING",to="CONFIRMED"}'], 1)
        self.assertEqual(m['orderservice_order_transitions_total{from="PENDING",to="CANCELLED"}'], 3)
        self.assertEqual(m['orderservice_order_transitions_total{from="CONFIRMED",to="CANCELLED"}'], 1)
        ds = 'orderservice_downstream_requests_total{service="%s",operation="%s",outcome="%s"}'
        self.assertEqual(m[ds % ("inventory", "reserve", "ok")], 2)
        self.assertEqual(m[ds % ("inventory", "reserve", "refused")], 1)
        self.assertEqual(m[ds % ("inventory", "reserve", "unavailable")], 1)
        self.assertEqual(m[ds % ("payment", "charge", "ok")], 1)
        self.assertEqual(m[ds % ("payment", "charge", "refused")], 1)
        self.assertEqual(m[ds % ("payment", "refund", "ok")], 1)
        self.assertEqual(m[ds % ("inventory", "release", "ok")], 3)  # charge refused, reserve 503, cancel
        self.assertEqual(m['orderservice_downstream_request_duration_seconds_count{service="inventory",'
                           'operation="reserve"}'], 4)
        self.assertEqual(m['orderservice_circuit_breaker_state{service="inventory"}'], 0)
        self.assertEqual(m['orderservice_outbox_deliveries_total{kind="release",outcome="delivered"}'], 3)
        self.assertEqual(m["orderservice_sagas_in_flight"], 0)
        self.assertEqual(m['orderservice_db_errors_total{class="22"}'], 1)
        self.assertGreaterEqual(m['orderservice_db_query_duration_seconds_count{statement="orders_details"}'], 4)
        self.assertGreater(m["orderservice_db_pool_acquire_duration_seconds_count"], 0)
        self.assertEqual(m['orderservice_build_info{version="0.1.0"}'], 1)
        for worker in ("0", "1"):
            self.assertGreater(m[f'orderservice_lua_memory_bytes{{worker="{worker}"}}'], 100000)
        for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds",
                     "process_max_fds", "process_start_time_seconds"):
            self.assertGreater(m[name], 0, name)
        self.assertIn('orderservice_jobs_last_success_timestamp_seconds{job="outbox"}', text)
        # Route patterns, never raw paths: 404/405 on a declared path carry its pattern.
        http = 'orderservice_http_requests_total{route="%s",method="%s",status="%s"}'
        self.assertEqual(m[http % ("/v1/orders/{id}/", "GET", "404")], 1)
        self.assertEqual(m[http % ("/v1/orders/{id}/", "DELETE", "405")], 1)
        self.assertEqual(m[http % ("/health/", "POST", "405")], 1)
        self.assertGreaterEqual(m[http % ("unmatched", "GET", "404")], 50)
        routes = set(re.findall(r'route="([^"]*)"', text))
        self.assertFalse([r for r in routes if "no/such" in r or "99999999" in r or "xxxx" in r], routes)

    def test_connections_are_counted_while_open(self):
        conns = [self.svc.connection() for _ in range(3)]
        try:
            for c in conns:
                self.assertEqual(self.svc.request("GET", "/health/live/", conn=c).status, 200)
            wait_until(lambda: samples(self.scrape())["orderservice_http_connections_active"] >= 3,
                       what="three open connections in the gauge")
        finally:
            for c in conns:
                c.close()


class BreakerGauge(unittest.TestCase):
    def test_the_breaker_gauge_follows_open_then_closed_and_fast_failures_are_counted(self):
        url = fresh_database("it_observability_breaker")
        self.assertEqual(run_binary("migrate", env={"DATABASE_URL": url}).returncode, 0)
        standin, env = start_standins()
        # A cool-down long enough that no call (the outbox's releases included) can probe the
        # breaker before the open state is read, however slow the machine.
        env.update(BREAKER_FAILURES="2", BREAKER_COOLDOWN_MS="3000", OUTBOX_EVERY_MS="100")
        with standin, Service(database_url=url, workers=1, env=env) as svc:
            def metrics():
                return samples(svc.request("GET", "/metrics").body.decode())
            state = 'orderservice_circuit_breaker_state{service="inventory"}'
            ds = 'orderservice_downstream_requests_total{service="inventory",operation="reserve",outcome="%s"}'
            self.assertEqual(standin.request("PUT", "/_behaviour", body={"reserve": {"status": 503}}).status, 200)
            for _ in range(2):
                self.assertEqual(svc.request("POST", "/v1/orders/create/", body=ORDER).status, 503)
            self.assertEqual(metrics()[state], 1)
            r = svc.request("POST", "/v1/orders/create/", body=ORDER)  # within the cool-down: not sent
            self.assertIn("circuit", r.json()["error"])
            m = metrics()
            self.assertEqual((m[ds % "unavailable"], m[ds % "circuit_open"]), (2, 1))
            self.assertEqual(standin.request("PUT", "/_behaviour", body={}).status, 200)
            # After the cool-down a probe goes out and succeeds: closed again.
            wait_until(lambda: svc.request("POST", "/v1/orders/create/", body=ORDER).status == 201,
                       what="a create once the breaker lets a probe through")
            m = metrics()
            self.assertEqual(m[state], 0)
            self.assertEqual(m[ds % "ok"], 1)


class OperatorMetrics(unittest.TestCase):
    def test_a_scripts_metric_keeps_counting_across_a_reload(self):
        with Service(workers=2) as svc:
            def hits():
                m = samples(svc.request("GET", "/metrics").body.decode())
                return sum(v for k, v in m.items() if k.startswith("fixture_hits_total{"))
            def reloads():
                m = samples(svc.request("GET", "/metrics").body.decode())
                return m['orderservice_script_reloads_total{result="ok"}']
            for _ in range(4):
                self.assertEqual(svc.request("POST", "/test/metric/5").status, 200)
            self.assertEqual(hits(), 20)
            svc.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: reloads() == 2, what="both workers to reload")
            self.assertEqual(hits(), 20)
            for _ in range(2):
                self.assertEqual(svc.request("POST", "/test/metric/1").status, 200)
            self.assertEqual(hits(), 22)
            promtool_check(self, svc.request("GET", "/metrics").body.decode())


class LogLines(unittest.TestCase):
    def access_line(self, svc, request_id):
        def find():
            for raw in open(svc.log.name, "rb").read().splitlines():
                if request_id.encode() in raw:
                    return raw
        raw = wait_until(find, what=f"the access log line of {request_id}")
        return json.loads(raw.decode("utf-8"))  # strict: valid UTF-8 and valid JSON

    def test_every_line_parses_with_a_20_kb_path_or_invalid_utf8(self):
        with Service(workers=1) as svc:
            long_path = b"/" + b"p" * 20000
            cases = {"req-long": long_path, "req-raw-bytes": b"/caf\xc3\xa9/\xff\xfe/\xc0\xaf/end",
                     "req-percent": b"/x/%FF%FE/end", "req-quotes": b'/"quoted"/\\back'}
            for request_id, path in cases.items():
                reply = raw_request(svc.port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                                    ADMIN_TOKEN.encode() + b"\r\nX-Request-Id: " +
                                    request_id.encode() + b"\r\nConnection: close\r\n\r\n")
                self.assertTrue(reply.startswith(b"HTTP/1.1 404"), reply[:80])
            for request_id in cases:
                with self.subTest(request_id=request_id):
                    line = self.access_line(svc, request_id)
                    self.assertEqual((line["msg"], line["status"], line["request_id"]), ("request", 404, request_id))
            long_line = self.access_line(svc, "req-long")
            self.assertTrue(long_line["path"].endswith("\u2026[truncated]"), long_line["path"][-40:])
            self.assertIn("\ufffd", self.access_line(svc, "req-raw-bytes")["path"])
            self.assertTrue(self.access_line(svc, "req-raw-bytes")["path"].startswith("/caf\u00e9/"))
            # Every line the service wrote parses.
            for raw in open(svc.log.name, "rb").read().splitlines():
                json.loads(raw.decode("utf-8"))


class AccessLogBuffer(unittest.TestCase):
    """Each worker keeps its access log lines in a buffer (ACCESS_LOG_BUFFER_BYTES) written whole:
    when full, ACCESS_LOG_FLUSH_MS after its oldest line, and when the service stops."""

    def lines(self, svc, prefix):
        out = []
        for raw in open(svc.log.name, "rb").read().splitlines():
            line = json.loads(raw.decode("utf-8"))  # every line whole: valid UTF-8 and JSON
            if str(line.get("request_id", "")).startswith(prefix):
                out.append(line)
        return out

    def test_a_burst_on_several_workers_arrives_whole_line_by_line(self):
        # A buffer of 2 KiB fills every few lines, so the workers write often and at once.
        env = {"ACCESS_LOG_BUFFER_BYTES": "2048", "ACCESS_LOG_FLUSH_MS": "200"}
        with Service(workers=3, env=env) as svc:
            ids = [f"burst-{n}" for n in range(600)]

            def send(chunk):
                for request_id in chunk:  # a connection each: the kernel spreads them over the workers
                    self.assertEqual(svc.request("GET", "/health/live/", headers={"X-Request-Id": request_id}).status,
                                     200)
            threads = [threading.Thread(target=send, args=(ids[i::8],)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wait_until(lambda: len(self.lines(svc, "burst-")) == len(ids), what="an access log line per request")
            lines = self.lines(svc, "burst-")
            self.assertEqual(sorted(line["request_id"] for line in lines), sorted(ids))
            self.assertGreater(len({line["worker"] for line in lines}), 1)

    def test_a_line_arrives_within_the_flush_interval_once_traffic_stops(self):
        with Service(workers=2, env={"ACCESS_LOG_FLUSH_MS": "300"}) as svc:
            self.assertEqual(svc.request("GET", "/health/live/", headers={"X-Request-Id": "lone-1"}).status, 200)
            lines = wait_until(lambda: self.lines(svc, "lone-"), seconds=5, what="the buffered line")
            self.assertEqual([(line["msg"], line["status"], line["level"]) for line in lines], [("request", 200, "info")])

    def test_sigterm_writes_the_lines_still_buffered(self):
        # A minute's flush interval: only the stop can write these lines.
        with Service(workers=2, env={"ACCESS_LOG_FLUSH_MS": "60000"}) as svc:
            for n in range(20):
                svc.request("GET", "/health/live/", headers={"X-Request-Id": f"tail-{n}"})
            self.assertEqual(self.lines(svc, "tail-"), [])
            self.assertEqual(svc.stop(), 0)
            self.assertEqual(sorted(line["request_id"] for line in self.lines(svc, "tail-")),
                             sorted(f"tail-{n}" for n in range(20)))


class RequestIds(unittest.TestCase):
    def test_replicas_started_together_never_share_request_ids(self):
        # Started back to back (the same second, as a deployment does): their own ids differ.
        first, second = Service(workers=2), Service(workers=2)
        first.start(), second.start()
        try:
            ids = [svc.request("GET", "/health/live/").headers["x-request-id"] for svc in (first, second)
                   for _ in range(50)]
            self.assertEqual(len(set(ids)), len(ids))
        finally:
            first.__exit__(None, None, None)
            second.__exit__(None, None, None)


if __name__ == "__main__":
    unittest.main()
