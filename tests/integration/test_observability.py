"""What operators read: /metrics stays valid Prometheus text whatever clients send, and every
log line is one valid JSON object, however long or odd the request."""
import json
import shutil
import socket
import subprocess
import unittest

from harness import ADMIN_TOKEN, Service, wait_until


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
