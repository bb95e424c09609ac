"""The API reference (/orders-doc/) and the My Orders page's server side (issue 11).

The OpenAPI document is built from the loaded routes.lua; these tests keep it honest against the
file itself and against the input validation: every route in routes.lua is in the document and
nothing else is, every documented query parameter is accepted with its example and each of its
allowed values, and values outside a documented enum or range are refused. The browser side (the
page in Chromium, Swagger UI's "Try it out", the validator) is tests/browser/.
"""
import os
import re
import socket
import unittest
import urllib.parse

from harness import SOURCE_DIR, Service, fresh_database, run_binary, token

ROUTES = os.path.join(SOURCE_DIR, "routes.lua")
ROUTE_RE = re.compile(r'\{\s*method\s*=\s*(\{[^}]*\}|"[A-Z]+")\s*,\s*path\s*=\s*"([^"]+)"')
HOSTILE = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"


def routes_in_file():
    """(METHOD, path) of every route written in routes.lua, how many entries the pattern read,
    and how many paths the file names (comments left out): the two counts must agree."""
    with open(ROUTES) as f:
        text = re.sub(r"--[^\n]*", "", f.read())
    pairs, entries = set(), ROUTE_RE.findall(text)
    for methods, path in entries:
        for m in re.findall(r'"([A-Z]+)"', methods):
            pairs.add((m, re.sub(r"\{(\w+):\w+\}", r"{\1}", path)))
    return pairs, len(entries), len(re.findall(r'\bpath\s*=\s*"', text))


class ApiDocsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.url = fresh_database("api_docs")
        for command in ("migrate", "seed"):
            r = run_binary(command, env={"DATABASE_URL": cls.url})
            assert r.returncode == 0, r.stderr
        # The shipped routes.lua, not the fixture's (which adds test-only routes).
        cls.svc = Service(database_url=cls.url, routes=ROUTES, env={"JOBS": "0"}).start()
        r = cls.svc.request("GET", "/orders-doc/openapi.json", token=None)
        assert r.status == 200, r.body
        cls.doc = r.json()

    @classmethod
    def tearDownClass(cls):
        cls.svc.__exit__(None, None, None)

    def operations(self):
        for path, ops in self.doc["paths"].items():
            for method, op in ops.items():
                yield method.upper(), path, op

    def concrete(self, path, op):
        """path with each path parameter replaced by its example."""
        for p in op.get("parameters", []):
            if p["in"] == "path":
                path = path.replace("{" + p["name"] + "}", str(p["example"]))
        return path

    # ---- the document against routes.lua ----

    def test_every_route_in_routes_lua_is_documented_and_nothing_else(self):
        in_file, read, paths = routes_in_file()
        self.assertEqual(read, paths, "a route in routes.lua the pattern did not read")
        self.assertGreater(read, 10)
        documented = {(m, p) for m, p, _ in self.operations()}
        self.assertEqual(sorted(in_file - documented), [], "routes in routes.lua missing from the document")
        self.assertEqual(sorted(documented - in_file), [], "documented routes that routes.lua does not have")

    def test_document_basics(self):
        self.assertEqual(self.doc["openapi"], "3.1.0")
        self.assertEqual(self.doc["components"]["securitySchemes"]["bearerAuth"],
                         {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                          "description": self.doc["components"]["securitySchemes"]["bearerAuth"]["description"]})
        ids = [op["operationId"] for _, _, op in self.operations()]
        self.assertEqual(len(ids), len(set(ids)), "operationIds are unique")

    def test_security_and_error_responses_follow_each_routes_filters(self):
        for method, path, op in self.operations():
            with self.subTest(method=method, path=path):
                secured = op["security"] != []
                self.assertEqual(secured, path.startswith("/v1/"), "the API needs a token; health, metrics, docs do not")
                self.assertEqual("401" in op["responses"], secured)
                self.assertIn("500", op["responses"])
                r = self.svc.request(method, self.concrete(path, op), token=None,
                                     body="{}" if method in ("POST", "PATCH") else None,
                                     headers={"Accept": "application/json", "Content-Type": "application/json"})
                if secured:
                    self.assertEqual(r.status, 401, "documented as needing a token")
                else:
                    self.assertNotEqual(r.status, 401, "documented as open")
        update = self.doc["paths"]["/v1/orders/{id}/update/"]["patch"]
        self.assertIn("403", update["responses"], "roles on the route: a 403 is documented")
        self.assertIn("413", self.doc["paths"]["/v1/orders/"]["post"]["responses"], "body_limit: 413")

    # ---- the document against the input validation ----

    def get(self, path, args):
        return self.svc.request("GET", path + "?" + urllib.parse.urlencode(args),
                                headers={"Accept": "application/json"})

    def test_every_documented_query_parameter_is_accepted(self):
        checked = 0
        for method, path, op in self.operations():
            query = [p for p in op.get("parameters", []) if p["in"] == "query"]
            for p in query:
                values = [p["example"]] + p["schema"].get("enum", [])
                for value in values:
                    with self.subTest(path=path, parameter=p["name"], value=value):
                        r = self.get(self.concrete(path, op), {p["name"]: value})
                        self.assertEqual(r.status, 200, r.body)
                        checked += 1
        self.assertGreater(checked, 40)

    def test_values_outside_the_documented_ones_are_refused(self):
        checked = 0
        for method, path, op in self.operations():
            for p in [p for p in op.get("parameters", []) if p["in"] == "query"]:
                schema, bad = p["schema"], None
                if "enum" in schema:
                    bad = "Nonsense"
                elif "maximum" in schema:
                    bad = schema["maximum"] + 1
                elif "maxLength" in schema:
                    bad = "x" * (schema["maxLength"] + 1)
                if bad is None:
                    continue
                with self.subTest(path=path, parameter=p["name"], value=str(bad)[:20]):
                    r = self.get(self.concrete(path, op), {p["name"]: bad})
                    self.assertEqual(r.status, 400, r.body)
                    self.assertEqual(r.json()["details"]["field"], p["name"])
                    checked += 1
        self.assertGreater(checked, 15)

    def test_documented_path_examples_answer(self):
        history = self.doc["paths"]["/v1/orders/my-orders/{customer_id}/"]["get"]
        r = self.get(self.concrete("/v1/orders/my-orders/{customer_id}/", history), {})
        self.assertEqual(r.status, 200)
        self.assertGreater(r.json()["count"], 0, "the example customer has seed orders")

    # ---- the docs page ----

    def test_docs_page_and_its_files_need_no_token(self):
        r = self.svc.request("GET", "/orders-doc/", token=None)
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["content-type"].startswith("text/html"))
        csp = r.headers["content-security-policy"]
        self.assertIn("default-src 'self'", csp)
        self.assertNotIn("unsafe-inline", re.search(r"script-src[^;]*", csp).group(0))
        for src in re.findall(r'(?:src|href)="(/[^"]+)"', r.body.decode()):
            with self.subTest(asset=src):
                a = self.svc.request("GET", src, token=None)
                self.assertEqual(a.status, 200, src)
        self.assertNotIn(b"//cdn", r.body)
        self.assertNotRegex(r.body.decode(), r'(src|href)="(https?:)?//', "nothing from another origin")

    # ---- the My Orders page (server side) ----

    def page(self, query="", accept="text/html,application/xhtml+xml,*/*;q=0.8", **kw):
        return self.svc.request("GET", "/v1/orders/my-orders/55/" + query, headers={"Accept": accept}, **kw)

    def test_browsers_get_the_page_without_a_token(self):
        r = self.page(token=None)
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["content-type"].startswith("text/html"))
        self.assertIn(b"<title>My Orders</title>", r.body)
        csp = r.headers["content-security-policy"]
        for directive in ("default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'"):
            self.assertIn(directive, csp)
        self.assertNotIn("unsafe", csp)
        self.assertEqual(r.headers["vary"], "Accept")
        self.assertEqual(r.headers["cache-control"], "no-cache")
        self.assertNotIn(b"<script>", r.body, "no inline script")
        for src in re.findall(r'(?:src|href)="(/[^"]+)"', r.body.decode()):
            with self.subTest(asset=src):
                a = self.svc.request("GET", src, token=None)
                self.assertEqual(a.status, 200, src)
                self.assertEqual(a.headers["cache-control"], "public, max-age=300")
                self.assertEqual(a.headers["x-content-type-options"], "nosniff")
                self.assertIn("etag", a.headers)
                again = self.svc.request("GET", src, token=None, headers={"If-None-Match": a.headers["etag"]})
                self.assertEqual(again.status, 304, "revalidation is cheap")

    def test_the_json_form_still_needs_a_token(self):
        for accept in (None, "*/*", "application/json", "application/json, text/html;q=0.5", "text/html;q=0"):
            with self.subTest(accept=accept):
                headers = {"Accept": accept} if accept else {}
                r = self.svc.request("GET", "/v1/orders/my-orders/55/", headers=headers, token=None)
                self.assertEqual(r.status, 401)
                self.assertEqual(r.headers["vary"], "Accept")
                r = self.svc.request("GET", "/v1/orders/my-orders/55/", headers=headers)
                self.assertEqual(r.status, 200)
                self.assertEqual(r.json()["count"], 11)
        customer = token("55", "customer", customer_id=55)
        self.assertEqual(self.page(accept="application/json", token=customer).status, 200)

    def test_hostile_search_string_is_not_reflected(self):
        plain = self.page(token=None).body
        hostile = self.page("?" + urllib.parse.urlencode({"search": HOSTILE, "status_filter": '"><b>'}), token=None)
        self.assertEqual(hostile.status, 200)
        self.assertEqual(hostile.body, plain, "the page is a static shell: nothing of the request is echoed")
        r = self.get("/v1/orders/my-orders/55/", {"search": HOSTILE})
        self.assertEqual(r.status, 200, "the API takes it as text to look for")
        self.assertEqual(r.json()["count"], 0)

    def test_static_paths_list_no_directory_and_leave_the_tree(self):
        self.assertIn(self.svc.request("GET", "/static/", token=None).status, (403, 404))
        self.assertEqual(self.svc.request("GET", "/static/nothing.js", token=None).status, 404)
        for path in ("/static/../routes.lua", "/static/%2e%2e/routes.lua", "/orders-doc/ui/../../routes.lua"):
            with self.subTest(path=path):
                r = self.svc.request("GET", path, token=None)
                self.assertNotIn(b"routes.lua - every endpoint", r.body)

    def test_static_paths_refuse_ambiguous_framing_too(self):
        # h2o serves these without Lua; the framing check (core/framing.c) guards them all the
        # same, so a smuggled second request behind a static one is never served.
        for path in ("/static/my-orders/my-orders.js", "/orders-doc/ui/swagger-ui.css"):
            with self.subTest(path=path):
                raw = (f"GET {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                       "GET /health/live/ HTTP/1.1\r\nHost: x\r\n\r\n").encode()
                with socket.create_connection(("127.0.0.1", self.svc.port), timeout=10) as s:
                    s.sendall(raw)
                    got = b""
                    while True:
                        data = s.recv(65536)
                        if not data:
                            break
                        got += data
                self.assertTrue(got.startswith(b"HTTP/1.1 400"), got[:100])
                self.assertEqual(got.count(b"HTTP/1.1 "), 1, "nothing served after the refused request")


if __name__ == "__main__":
    unittest.main()
