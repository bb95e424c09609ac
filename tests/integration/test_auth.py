"""Authentication and the shipped filters over real HTTP (issue 10): who gets a 401 or a 403,
which endpoints are open, the production start refusing to run without a key, and
`orderservice check`. Customer scoping inside the order handlers is tested with them."""
import os
import tempfile
import unittest

from harness import SOURCE_DIR, Service, run_binary, token, wait_until

OTHER_SECRET = "not-the-service-secret-0123456789abcdef"

FILTERED_ROUTES = """
local decl = dofile(os.getenv("SOURCE_DIR") .. "/routes.lua")
decl.filters.rate_limit = { rate = 1, burst = 3, by = "address" }
decl.filters.cors = { origins = { "https://shop.example" } }
for _, route in ipairs(decl.routes) do
    if route.path == "/metrics" then
        route.filters.ip_allow = { allow = { "10.0.0.0/8" } }
    elseif route.path == "/health/live/" then
        route.filters.maintenance = { message = "back soon", retry_after = 42 }
        route.filters.rate_limit = false
    end
end
return decl
"""


class Auth(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.svc = Service(workers=2).start()
        cls.customer = token("44", "customer")

    @classmethod
    def tearDownClass(cls):
        cls.svc.__exit__(None, None, None)

    def get(self, path, tok=None, headers=None):
        return self.svc.request("GET", path, token=tok, headers=headers)

    def test_no_token_is_401_with_a_bare_bearer_challenge(self):
        for path in ("/v1/orders/", "/v1/orders/1/", "/v1/orders/my-orders/44/", "/no/such/page"):
            r = self.get(path)
            self.assertEqual(r.status, 401, path)
            self.assertEqual(r.headers["www-authenticate"], 'Bearer realm="orderservice"')
            self.assertIn("x-request-id", r.headers)

    def test_invalid_tokens_are_401_invalid_token(self):
        cases = {
            "garbage": "garbage",
            "another secret": token("1", "admin", env={"JWT_SECRET": OTHER_SECRET}),
            "truncated": self.customer[:-8],
            "10 KB": "A" * 5000 + "." + "B" * 5000 + ".C",
        }
        for what, tok in cases.items():
            with self.subTest(what):
                r = self.get("/v1/orders/", tok)
                self.assertEqual(r.status, 401)
                self.assertIn('error="invalid_token"', r.headers["www-authenticate"])

    def test_a_token_in_the_query_string_is_ignored(self):
        admin = token("1", "admin")
        for q in ("access_token", "token", "jwt"):
            r = self.get(f"/v1/orders/?{q}={admin}")
            self.assertEqual(r.status, 401)
            self.assertNotIn("error=", r.headers["www-authenticate"])

    def test_update_is_403_for_a_customer_and_allowed_for_staff(self):
        r = self.svc.request("PATCH", "/v1/orders/1/update/", body={"status": "Shipped"}, token=self.customer)
        self.assertEqual(r.status, 403)
        for role in ("admin", "service"):
            r = self.svc.request("PATCH", "/v1/orders/1/update/", body={"status": "Shipped"},
                                 token=token("staff-1", role))
            self.assertNotIn(r.status, (401, 403), role)

    def test_a_valid_customer_token_gets_past_auth(self):
        r = self.get("/v1/orders/1/", self.customer)
        self.assertNotIn(r.status, (401, 403))

    def test_health_metrics_and_docs_need_no_token(self):
        self.assertEqual(self.get("/health/live/").status, 200)
        self.assertNotEqual(self.get("/health/").status, 401)  # 503: no database here
        self.assertEqual(self.get("/metrics").status, 200)
        self.assertEqual(self.get("/orders-doc/index.html").status, 404)  # no docs route yet, and not 401

    def test_security_headers_on_every_response(self):
        r = self.get("/health/live/")
        self.assertEqual(r.headers["x-content-type-options"], "nosniff")
        self.assertEqual(r.headers["x-frame-options"], "DENY")

    def test_body_limit_answers_json_413_before_the_handler(self):
        r = self.svc.request("POST", "/v1/orders/", body=b"x" * 70000, headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 413)
        self.assertEqual(r.json()["error"], "request body too large")

    def test_the_principal_is_in_the_access_log(self):
        self.get("/v1/orders/1/", self.customer, headers={"X-Request-Id": "who-is-it-1"})
        # access log lines wait in the worker's buffer for up to ACCESS_LOG_FLUSH_MS
        line = wait_until(lambda: next((l for l in self.svc.logs().splitlines() if "who-is-it-1" in l and
                                        '"request"' in l), None), what="the access log line")
        self.assertIn('"sub":"44"', line)
        self.assertIn('"role":"customer"', line)
        self.assertNotIn(self.customer, self.svc.logs())


class Filters(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="os-filters-")
        cls.routes = os.path.join(cls.dir, "routes.lua")
        with open(cls.routes, "w") as f:
            f.write(FILTERED_ROUTES)
        cls.svc = Service(workers=1, routes=cls.routes).start()

    @classmethod
    def tearDownClass(cls):
        cls.svc.__exit__(None, None, None)

    def test_rate_limit_answers_429_with_retry_after(self):
        statuses = [self.svc.request("GET", "/v1/orders/0/").status for _ in range(8)]
        self.assertIn(429, statuses)
        r = self.svc.request("GET", "/v1/orders/0/")
        self.assertEqual(r.status, 429)
        self.assertGreaterEqual(int(r.headers["retry-after"]), 1)

    def test_ip_allow_fences_metrics(self):
        r = self.svc.request("GET", "/metrics", token=None)
        self.assertEqual(r.status, 403)

    def test_maintenance_answers_503_with_retry_after(self):
        r = self.svc.request("GET", "/health/live/", token=None)
        self.assertEqual(r.status, 503)
        self.assertEqual(r.headers["retry-after"], "42")
        self.assertEqual(r.json()["message"], "back soon")

    def test_cors_preflight_is_answered_without_a_token(self):
        r = self.svc.request("OPTIONS", "/v1/orders/", token=None,
                             headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "POST"})
        self.assertEqual(r.status, 204)
        self.assertEqual(r.headers["access-control-allow-origin"], "https://shop.example")


class Commands(unittest.TestCase):
    def test_production_start_without_a_key_is_refused(self):
        r = run_binary("serve", env={"JWT_SECRET": "", "ORDERSERVICE_ENV": "production"})
        self.assertEqual(r.returncode, 2)
        self.assertIn("JWT_SECRET", r.stderr)

    def test_bad_key_settings_exit_2(self):
        keys = os.path.join(SOURCE_DIR, "tests/c/jwt")
        cases = {
            "a short secret": ({"JWT_SECRET": "short"}, "at least 32 bytes"),
            "a missing key file": ({"JWT_SECRET": "", "JWT_PUBLIC_KEY_FILE": "/nonexistent.pem"}, "cannot be read"),
            "a P-384 key": ({"JWT_SECRET": "", "JWT_PUBLIC_KEY_FILE": keys + "/p384.pem"}, "unsupported"),
            "two keys": ({"JWT_PUBLIC_KEY_FILE": keys + "/rfc7515_a3_ec.pem"}, "not both"),
            "an unknown mode": ({"ORDERSERVICE_ENV": "staging"}, "ORDERSERVICE_ENV"),
        }
        for what, (env, message) in cases.items():
            with self.subTest(what):
                r = run_binary("serve", env=env)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(message, r.stderr)

    def test_token_command_refuses_bad_input(self):
        self.assertEqual(run_binary("token", "--sub", "1", "--role", "root").returncode, 2)
        self.assertEqual(run_binary("token", "--role", "admin").returncode, 2)
        self.assertEqual(run_binary("token", "--sub", "1", "--ttl", "-5").returncode, 2)
        self.assertEqual(run_binary("token", "--sub", "1", env={"JWT_SECRET": ""}).returncode, 2)

    def test_check_passes_the_shipped_routes_and_names_file_and_line(self):
        r = run_binary("check")
        self.assertEqual(r.returncode, 0, r.stderr)
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write('return {\n  routes = {\n    { method = "GET", path = "/x/", handler = "health.live",\n'
                    '      filters = { auth = { roles = { "root" } } } },\n  },\n}\n')
        try:
            r = run_binary("check", env={"ROUTES_FILE": f.name})
            self.assertEqual(r.returncode, 1)
            self.assertIn(f"{f.name}:3: route 1 (GET /x/): filter \"auth\"", r.stderr)
        finally:
            os.unlink(f.name)

    def test_check_names_every_bad_job(self):
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write('return {\n  routes = {},\n  jobs = {\n'
                    '    spread = { handler = "jobs.deliver_outbox", every_ms = 100, workers = "two" },\n'
                    '    often = { handler = "jobs.recover_sagas", every_ms = 0 },\n'
                    '    typo = { handler = "jobs.nope", every_ms = 100, workers = "all" },\n'
                    '    fine = { handler = "jobs.recover_sagas", every_ms = 100, workers = "one" },\n  },\n}\n')
        try:
            r = run_binary("check", env={"ROUTES_FILE": f.name})
            self.assertEqual(r.returncode, 1)
            self.assertIn('job "spread": workers must be "one" (worker 0, the default) or "all", not "two"', r.stderr)
            self.assertIn('job "often": needs handler = "module.function" and every_ms >= 1', r.stderr)
            self.assertIn('job typo: handlers/jobs.lua has no function "nope"', r.stderr)
            self.assertNotIn("fine", r.stderr)
        finally:
            os.unlink(f.name)


if __name__ == "__main__":
    unittest.main()
