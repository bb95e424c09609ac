"""The host: configuration, routing, the Lua request API, errors, the non-blocking
scheduler, request-size limits, keep-alive, metrics and graceful shutdown."""
import concurrent.futures
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import ADMIN_TOKEN, Service, free_port, quietly, run_binary, wait_until


class CommandLine(unittest.TestCase):
    def test_help_and_version(self):
        r = run_binary("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("usage: orderservice", r.stdout)
        self.assertIn("DATABASE_URL", r.stdout)
        r = run_binary("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^orderservice \d+\.\d+\.\d+")

    def test_bad_configuration_exits_2_naming_the_variable(self):
        for name, value in [("PORT", "eighty"), ("PORT", "70000"), ("WORKERS", "0"), ("LOG_LEVEL", "loud"),
                            ("DB_POOL_SIZE", "-1"), ("MIGRATE_ON_START", "yes"), ("TAX_RATE", "5%"),
                            ("SHIPPING_FEE", "1.234")]:
            with self.subTest(name=name, value=value):
                r = run_binary("serve", env={name: value})
                self.assertEqual(r.returncode, 2)
                self.assertIn(name, r.stderr)

    def test_unknown_command_exits_2(self):
        self.assertEqual(run_binary("frobnicate").returncode, 2)

    def test_broken_routes_file_fails_start(self):
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write("return { routes = { { method = 'GET', path = '/x', handler = 'nope.missing' } } }")
        try:
            r = run_binary("serve", env={"ROUTES_FILE": f.name, "PORT": str(free_port()), "WORKERS": "1"}, timeout=20)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("nope", r.stderr)
        finally:
            os.unlink(f.name)


class Http(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.svc = Service(workers=2).start()

    @classmethod
    def tearDownClass(cls):
        cls.svc.__exit__(None, None, None)

    def test_unknown_path_is_404_json(self):
        r = self.svc.request("GET", "/no/such/thing")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.headers["content-type"], "application/json")
        self.assertIn("error", r.json())

    def test_wrong_method_is_405_with_allow(self):
        r = self.svc.request("DELETE", "/health/live/")
        self.assertEqual(r.status, 405)
        self.assertEqual(r.headers["allow"], "GET, HEAD")
        self.assertIn("error", r.json())

    def test_path_matches_with_and_without_trailing_slash(self):
        self.assertEqual(self.svc.request("GET", "/health/live/").status, 200)
        self.assertEqual(self.svc.request("GET", "/health/live").status, 200)
        self.assertEqual(self.svc.request("GET", "/test/echo/a/1/").status, 200)

    def test_int_parameters_must_be_positive_integers(self):
        for bad in ["0", "-1", "abc", "1.5", "007", "99999999999999999999"]:
            with self.subTest(bad=bad):
                self.assertEqual(self.svc.request("GET", f"/test/echo/a/{bad}").status, 404)

    def test_response_header_names_go_out_lower_cased(self):
        # One a script spells in mixed case, whether h2o knows the name (cache-control) or not
        conn = self.svc.connection()
        try:
            conn.request("GET", "/test/echo/a/1", headers={"Authorization": "Bearer " + ADMIN_TOKEN})
            r = conn.getresponse()
            r.read()
            sent = r.getheaders()
        finally:
            conn.close()
        self.assertIn(("x-echo-case", "Kept As Is"), sent)
        self.assertIn(("cache-control", "no-store"), sent)
        self.assertIn(("content-type", "application/json"), sent)
        self.assertEqual([n for n, _ in sent if n.lower() == "x-echo-case"], ["x-echo-case"])

    def test_request_api(self):
        r = self.svc.request("PATCH", "/test/echo/caf%C3%A9%20au%20lait/42?tag=a&tag=b%20c&q=x+y&empty=",
                             body={"items": [1, 2], "name": "n"}, headers={"X-Test": "hello"})
        self.assertEqual(r.status, 200)
        got = r.json()
        self.assertEqual(got["method"], "PATCH")
        self.assertEqual(got["params"], {"name": "café au lait", "n": 42})
        self.assertEqual(got["query"], {"tag": ["a", "b c"], "q": ["x y"], "empty": [""]})
        self.assertEqual(got["header"], "hello")
        self.assertEqual(got["json"], {"items": [1, 2], "name": "n"})

    def test_request_api_of_a_get_read_from_h2o_when_asked(self):
        # A GET's headers and query reach Lua only when a script asks (lib/request.lua live()):
        # any case, a repeated header joined with ", " as for the other methods.
        conn = self.svc.connection()
        try:
            conn.putrequest("GET", "/test/echo/caf%C3%A9/7?tag=a&tag=b%20c")
            conn.putheader("X-TEST", "one")
            conn.putheader("x-test", "two")
            conn.putheader("Authorization", "Bearer " + ADMIN_TOKEN)
            conn.endheaders()
            r = conn.getresponse()
            got = json.loads(r.read())
        finally:
            conn.close()
        self.assertEqual(r.status, 200)
        self.assertEqual((got["method"], got["path"]), ("GET", "/test/echo/caf%C3%A9/7"))
        self.assertEqual(got["params"], {"name": "café", "n": 7})
        self.assertEqual(got["query"], {"tag": ["a", "b c"]})
        self.assertEqual(got["header"], "one, two")
        self.assertEqual(got["body_length"], 0)

    def test_invalid_json_body_is_reported_not_raised(self):
        r = self.svc.request("POST", "/test/echo/a/1", body=b"{not json", headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 200)
        self.assertIn("not valid JSON", r.json()["json_error"])

    def test_lua_error_is_500_with_request_id_and_worker_keeps_serving(self):
        for _ in range(5):
            r = self.svc.request("GET", "/test/boom")
            self.assertEqual(r.status, 500)
            body = r.json()
            self.assertEqual(body["error"], "internal error")
            self.assertEqual(body["request_id"], r.headers["x-request-id"])
            self.assertNotIn("deliberate", r.body.decode())
        self.assertEqual(self.svc.request("GET", "/health/live").status, 200)
        self.assertIn("deliberate failure for the test", self.svc.logs())

    def test_every_request_is_logged_with_its_request_id(self):
        self.svc.request("GET", "/no/such/page", headers={"X-Request-Id": "trace-me-42"})
        wait_until(lambda: "trace-me-42" in self.svc.logs(), what="the access log line")
        line = next(json.loads(l) for l in self.svc.logs().splitlines() if "trace-me-42" in l)
        self.assertEqual((line["msg"], line["method"], line["path"], line["status"], line["level"]),
                         ("request", "GET", "/no/such/page", 404, "info"))
        self.assertIsInstance(line["ms"], int)

    def test_request_id_is_taken_from_the_caller_when_well_formed(self):
        r = self.svc.request("GET", "/health/live", headers={"X-Request-Id": "abc-123"})
        self.assertEqual(r.headers["x-request-id"], "abc-123")
        r = self.svc.request("GET", "/health/live", headers={"X-Request-Id": "bad id with spaces"})
        self.assertNotEqual(r.headers["x-request-id"], "bad id with spaces")

    def test_head_is_answered_like_get_without_a_body(self):
        r = self.svc.request("HEAD", "/health/live")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b"")

    def test_keep_alive_serves_several_requests_on_one_connection(self):
        conn = self.svc.connection()
        try:
            for path in ["/health/live", "/no/such", "/test/echo/x/1", "/health/live"]:
                r = self.svc.request("GET", path, conn=conn)
                self.assertIn(r.status, (200, 404))
        finally:
            conn.close()

    def test_http2_cleartext_is_served(self):
        for flag in ("--http2-prior-knowledge", "--http2"):
            out = subprocess.run(["curl", "-s", flag, "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                                  f"http://127.0.0.1:{self.svc.port}/health/live/"],
                                 capture_output=True, text=True, timeout=10)
            self.assertEqual(out.stdout, "2 200", flag)

    def test_body_over_1_mib_is_413_without_reading_it(self):
        with socket.create_connection(("127.0.0.1", self.svc.port), timeout=10) as s:
            s.sendall(b"POST /test/echo/a/1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 5000000\r\n\r\n" + b"x" * 1000)
            reply = s.recv(4096)
        self.assertTrue(reply.startswith(b"HTTP/1.1 413"), reply[:80])
        ok = self.svc.request("POST", "/test/echo/a/1", body=b"y" * (1024 * 1024 - 10))
        self.assertEqual(ok.status, 200)
        self.assertEqual(ok.json()["body_length"], 1024 * 1024 - 10)

    def test_sleep_does_not_block_the_worker(self):
        # One worker: while a request sleeps for 1.5 s, others are answered.
        with Service(workers=1) as svc:
            done = {}

            def slow():
                done["slow"] = svc.request("GET", "/test/sleep/1500")
                done["slow_at"] = time.monotonic()

            t = threading.Thread(target=slow)
            t.start()
            time.sleep(0.2)
            fast = [svc.request("GET", "/health/live") for _ in range(10)]
            fast_at = time.monotonic()
            t.join()
            self.assertTrue(all(r.status == 200 for r in fast))
            self.assertEqual(done["slow"].status, 200)
            self.assertEqual(done["slow"].json(), {"slept": 1500})
            self.assertLess(fast_at, done["slow_at"])

    def test_many_concurrent_sleeps_overlap_on_one_worker(self):
        with Service(workers=1) as svc:
            with concurrent.futures.ThreadPoolExecutor(50) as pool:
                started = time.monotonic()
                results = list(pool.map(lambda _: svc.request("GET", "/test/sleep/500"), range(50)))
                elapsed = time.monotonic() - started
            self.assertTrue(all(r.status == 200 for r in results))
            # Serially this would take 25 s; overlapping, about one sleep.
            self.assertLess(elapsed, 10)


class Metrics(unittest.TestCase):
    def test_metrics_are_valid_prometheus_text_summed_over_workers(self):
        with Service(workers=2) as svc:
            for _ in range(20):
                svc.request("GET", "/health/live")
            svc.request("GET", "/nope")
            r = svc.request("GET", "/metrics")
            self.assertEqual(r.status, 200)
            self.assertTrue(r.headers["content-type"].startswith("text/plain; version=0.0.4"))
            text = r.body.decode()
            self.assertIn('orderservice_http_requests_total{route="/health/live/",method="GET",status="200"} 20',
                          text)
            self.assertIn('orderservice_http_requests_total{route="unmatched",method="GET",status="404"} 1', text)
            self.assertIn("orderservice_workers 2", text)
            promtool = shutil.which("promtool")
            self.assertIsNotNone(promtool, "promtool (Debian package prometheus) is required")
            check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
            self.assertEqual(check.returncode, 0, check.stdout + check.stderr)


class Shutdown(unittest.TestCase):
    def test_sigterm_finishes_in_flight_requests_then_exits_0(self):
        svc = Service(workers=1).start()
        try:
            result = {}
            t = threading.Thread(target=lambda: result.setdefault("r", svc.request("GET", "/test/sleep/1000")))
            t.start()
            time.sleep(0.3)
            code = svc.stop()
            t.join()
            self.assertEqual(code, 0)
            self.assertEqual(result["r"].status, 200)
            with self.assertRaises(OSError):
                socket.create_connection(("127.0.0.1", svc.port), timeout=1).close()
        finally:
            svc.__exit__(None, None, None)

    def test_shutdown_deadline_bounds_the_drain(self):
        with Service(workers=1, env={"SHUTDOWN_TIMEOUT_MS": "300"}) as svc:
            t = threading.Thread(target=lambda: quietly(svc.request, "GET", "/test/sleep/20000"))
            t.start()
            time.sleep(0.3)
            started = time.monotonic()
            self.assertEqual(svc.stop(), 0)
            self.assertLess(time.monotonic() - started, 5)
            t.join()


if __name__ == "__main__":
    unittest.main()
