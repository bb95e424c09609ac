"""Bad input never crashes the service or reaches a 5xx: generated bodies, query strings and
paths (a fixed seed, so a failure reproduces) against create, update, cancel and the lists."""
import json
import random
import unittest
import urllib.parse

from harness import Service, fresh_database, psql, run_binary, start_standins

VALID_ITEM = {"product_id": 3, "sku": "SKU0003", "quantity": 2, "unit_price": "30.00"}
ODD_VALUES = [None, True, False, 0, -1, 1.5, 1e308, -1e308, 2 ** 63, 2 ** 64, "", " ", "1", "1.234",
              "-0.01", "NaN", "Infinity", "1e3", "\u0000", "é" * 200, "x" * 5000, [], {}, [1, 2],
              {"a": {"b": {"c": []}}}, "99999999.99", "100000000.00", 0.1, 0.105, 12.5]


def mutate(rng):
    order = {"customer_id": 7, "items": [dict(VALID_ITEM)]}
    for _ in range(rng.randint(1, 3)):
        target = rng.choice(["customer_id", "items", "item", "extra", "many"])
        if target == "items":
            order["items"] = rng.choice(ODD_VALUES)
        elif target == "item" and isinstance(order.get("items"), list) and order["items"]:
            order["items"][0][rng.choice(list(VALID_ITEM) + ["extra"])] = rng.choice(ODD_VALUES)
        elif target == "extra":
            order[rng.choice(["note", "", "customer_id "])] = rng.choice(ODD_VALUES)
        elif target == "many":
            order["items"] = [dict(VALID_ITEM)] * rng.choice([0, 101, 1000])
        else:
            order["customer_id"] = rng.choice(ODD_VALUES)
    return order


def raw_bodies(rng):
    yield b""
    yield b"null"
    yield b"[" * 10000
    yield b"{\"customer_id\": 1, \"items\": [" + b"{}," * 5000 + b"{}]}"
    yield bytes(rng.getrandbits(8) for _ in range(300))
    yield "{\"customer_id\": 1, \"items\": [{\"sku\": \"\ud800\"}]}".encode("utf-8", "surrogatepass")
    for _ in range(150):
        yield json.dumps(mutate(rng)).encode()


class BadInput(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.url = fresh_database("it_robustness")
        assert run_binary("migrate", env={"DATABASE_URL": cls.url}).returncode == 0
        cls.standin, env = start_standins()
        cls.svc = Service(database_url=cls.url, workers=2, env=env).start()
        cls.rng = random.Random(20261125)

    @classmethod
    def tearDownClass(cls):
        cls.svc.__exit__(None, None, None)
        cls.standin.__exit__(None, None, None)

    def assert_not_5xx(self, r, what):
        self.assertLess(r.status, 500, f"{what}: {r.status} {r.body[:300]!r}")
        if r.status >= 400:
            self.assertEqual(r.headers["content-type"], "application/json", what)
            self.assertIn("error", r.json(), what)

    def test_create_with_generated_bodies(self):
        before = psql(self.url, "SELECT count(*) FROM ordersapp_order")
        created = 0
        for body in raw_bodies(self.rng):
            r = self.svc.request("POST", "/v1/orders/create/", body=body,
                                 headers={"Content-Type": "application/json"})
            self.assert_not_5xx(r, body[:200])
            created += r.status == 201
        after = psql(self.url, "SELECT count(*) FROM ordersapp_order")
        self.assertEqual(int(after) - int(before), created, "a refused body wrote an order")
        self.assertIsNone(self.svc.proc.poll())

    def test_update_and_cancel_with_generated_bodies(self):
        oid = self.svc.request("POST", "/v1/orders/create/", body={"customer_id": 9, "items": [VALID_ITEM]}).json()["order_id"]
        for body in raw_bodies(self.rng):
            for method, path in (("PATCH", f"/v1/orders/{oid}/update/"), ("POST", f"/v1/orders/{oid}/cancel/")):
                r = self.svc.request(method, path, body=body, headers={"Content-Type": "application/json"})
                self.assert_not_5xx(r, (path, body[:200]))

    def test_lists_with_generated_query_strings(self):
        keys = ["page", "page_size", "sort", "dir", "customer_id", "product_id", "sku", "order_status",
                "payment_status", "shipping_status", "created_from", "created_to", "search",
                "status_filter", "payment_filter", "shipping_filter", "sort_by", "sort_dir", "format"]
        values = ["", "0", "-1", "1", "101", "abc", "1e3", "9" * 40, "2024-13-45", "2024-02-30T25:00:00Z",
                  "%00", "'; DROP TABLE ordersapp_order; --", "_%\\", "created_at", "Total", "asc",
                  "PENDING", "pending", "é", "x" * 3000]
        for _ in range(300):
            q = [(self.rng.choice(keys), self.rng.choice(values)) for _ in range(self.rng.randint(1, 4))]
            for path in ("/v1/orders/", "/v1/orders/my-orders/44/"):
                target = path + "?" + urllib.parse.urlencode(q)
                r = self.svc.request("GET", target)
                self.assert_not_5xx(r, target[:300])
        self.assertEqual(psql(self.url, "SELECT to_regclass('ordersapp_order') IS NOT NULL"), "t")

    def test_odd_paths_and_methods(self):
        for path in ["/v1/orders/0/", "/v1/orders/-1/", "/v1/orders/1e3/", "/v1/orders/" + "9" * 30 + "/",
                     "/v1/orders/%2e%2e/", "/v1/orders//", "//", "/v1/orders/1/details/extra/",
                     "/v1/orders/my-orders/abc/", "/%ff%fe", "/v1/orders/1/update/"]:
            for method in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
                r = self.svc.request(method, path, body=b"{}")
                self.assert_not_5xx(r, (method, path))


if __name__ == "__main__":
    unittest.main()
