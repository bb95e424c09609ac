"""Customer scoping over real HTTP (issue 10): one test per rule of lib/principal.lua as the
order handlers apply it. Customers A and B each own orders; admin and service see and change
everything; who acted is recorded in order_events.actor and scopes the Idempotency-Key.

  details, events, cancel of another customer's order  404 (as for a missing order; nothing moves)
  history of another customer                          403
  create for another customer                          403 (nothing written)
  list                                                 narrowed to the caller's own orders; a
                                                       customer_id filter naming another customer
                                                       is an empty page
  PATCH .../update/                                    admin and service only (403), also when an
                                                       operator's routes.lua drops the roles
"""
import itertools
import os
import tempfile
import unittest

from harness import Service, fresh_database, psql, run_binary, start_standins, token

# Customer ids far from the seed's and from test_orders_api's, so counts here are exact.
A, B = 3_000_001, 3_000_002
_customers = itertools.count(3_000_100)
ITEMS = [{"product_id": 900_000_001, "sku": "SKU-S", "quantity": 1, "unit_price": "10.00"}]

# routes.lua as an operator might break it: PATCH .../update/ open to every valid token.
OPEN_UPDATE_ROUTES = """
local decl = dofile(os.getenv("SOURCE_DIR") .. "/routes.lua")
for _, route in ipairs(decl.routes) do
    if route.handler == "orders.update" then
        route.filters = nil
    end
end
return decl
"""


class Scoping(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.url = fresh_database("scoping")
        r = run_binary("migrate", env={"DATABASE_URL": cls.url})
        assert r.returncode == 0, r.stderr
        cls.standin, cls.downstream = start_standins()
        cls.svc = Service(database_url=cls.url, workers=2, env=cls.downstream).start()
        # A's token names its customer in customer_id (sub is a login name); B's is its sub.
        cls.a = token("alice", "customer", customer_id=A)
        cls.b = token(str(B), "customer")
        cls.admin = token("ops-1", "admin")
        cls.service = token("billing", "service")

    @classmethod
    def tearDownClass(cls):
        cls.svc.__exit__(None, None, None)
        cls.standin.__exit__(None, None, None)

    # ---- helpers ----

    def call(self, method, path, tok, body=None, headers=None, svc=None):
        return (svc or self.svc).request(method, path, body=body, headers=headers, token=tok)

    def create(self, tok, customer_id, headers=None, expect=201):
        r = self.call("POST", "/v1/orders/", tok, {"customer_id": customer_id, "items": ITEMS}, headers)
        self.assertEqual(expect, r.status, r.body)
        return r

    def order_of(self, tok, customer_id):
        return self.create(tok, customer_id).json()["order_id"]

    def state(self, order_id):
        """The order's statuses, its number of events and of Idempotency-Keys: what a refused
        request must leave as it was."""
        return psql(self.url, "SELECT order_status || payment_status || shipping_status"
                              f" || (SELECT count(*) FROM order_events WHERE order_id = {order_id})"
                              " || '/' || (SELECT count(*) FROM idempotency_keys)"
                              f" FROM ordersapp_order WHERE order_id = {order_id}")

    def actors(self, order_id, field="order_status"):
        out = psql(self.url, f"SELECT to_status || ' ' || actor FROM order_events WHERE order_id = {order_id}"
                             f" AND field = '{field}' ORDER BY id")
        return out.splitlines()

    def assert_hidden(self, r, order_id):
        """Another customer's order answers exactly what a missing order does."""
        self.assertEqual(404, r.status, r.body)
        self.assertEqual({"error": "order not found", "details": {"order_id": order_id}}, r.json())

    # ---- details and events ----

    def test_details_of_another_customers_order_is_404(self):
        oid = self.order_of(self.a, A)
        for path in (f"/v1/orders/{oid}/", f"/v1/orders/{oid}/details/"):
            self.assertEqual(200, self.call("GET", path, self.a).status)
            self.assert_hidden(self.call("GET", path, self.b), oid)
            for staff in (self.admin, self.service):
                self.assertEqual(A, self.call("GET", path, staff).json()["customer_id"])
        missing = self.call("GET", "/v1/orders/99999999999/", self.b)
        self.assert_hidden(missing, 99999999999)

    def test_events_of_another_customers_order_is_404(self):
        oid = self.order_of(self.a, A)
        path = f"/v1/orders/{oid}/events/"
        r = self.call("GET", path, self.a)
        self.assertEqual(200, r.status, r.body)
        self.assertEqual(oid, r.json()["order_id"])
        self.assert_hidden(self.call("GET", path, self.b), oid)
        for staff in (self.admin, self.service):
            self.assertEqual(200, self.call("GET", path, staff).status)
        self.assert_hidden(self.call("GET", "/v1/orders/99999999999/events/", self.b), 99999999999)

    # ---- cancel ----

    def test_cancel_of_another_customers_order_is_404_and_changes_nothing(self):
        oid = self.order_of(self.a, A)
        before = self.state(oid)
        r = self.call("POST", f"/v1/orders/{oid}/cancel/", self.b, {"reason": "not mine"},
                      headers={"Idempotency-Key": "b-cancels-a"})
        self.assert_hidden(r, oid)
        self.assertEqual(before, self.state(oid))  # no status, no event, no key claimed
        r = self.call("POST", f"/v1/orders/{oid}/cancel/", self.a, {"reason": "changed my mind"})
        self.assertEqual(200, r.status, r.body)
        self.assertEqual("CANCELLED", r.json()["order"]["order_status"])
        self.assertEqual(["PENDING customer:alice", "CONFIRMED saga", "CANCELLED customer:alice"],
                         self.actors(oid))

    def test_staff_cancel_any_order_as_themselves(self):
        for tok, actor in ((self.admin, "admin:ops-1"), (self.service, "service:billing")):
            oid = self.order_of(self.b, B)
            r = self.call("POST", f"/v1/orders/{oid}/cancel/", tok)
            self.assertEqual(200, r.status, r.body)
            self.assertEqual(f"CANCELLED {actor}", self.actors(oid)[-1])

    # ---- history and list ----

    def test_history_of_another_customer_is_403(self):
        mine = self.order_of(self.a, A)
        r = self.call("GET", f"/v1/orders/my-orders/{A}/", self.a)
        self.assertEqual(200, r.status, r.body)
        self.assertIn(mine, [o["order_id"] for o in r.json()["results"]])
        self.assertEqual({A}, {o["customer_id"] for o in r.json()["results"]})
        r = self.call("GET", f"/v1/orders/my-orders/{A}/", self.b)
        self.assertEqual(403, r.status, r.body)
        self.assertEqual("customer_id", r.json()["details"]["field"])
        for staff in (self.admin, self.service):
            r = self.call("GET", f"/v1/orders/my-orders/{A}/", staff)
            self.assertEqual(200, r.status, r.body)
            self.assertIn(mine, [o["order_id"] for o in r.json()["results"]])

    def test_a_customers_list_holds_only_their_own_orders(self):
        a_orders = {self.order_of(self.a, A) for _ in range(2)}
        b_order = self.order_of(self.b, B)
        own = psql(self.url, f"SELECT count(*) FROM ordersapp_order WHERE customer_id = {A}")
        body = self.call("GET", "/v1/orders/?page_size=100", self.a).json()
        self.assertEqual(int(own), body["count"])
        self.assertEqual({A}, {o["customer_id"] for o in body["results"]})
        self.assertLessEqual(a_orders, {o["order_id"] for o in body["results"]})
        # Filters narrow further inside the scope; one naming another customer finds nothing.
        self.assertEqual(int(own), self.call("GET", f"/v1/orders/?customer_id={A}", self.a).json()["count"])
        for query in (f"customer_id={B}", f"search={b_order}"):
            r = self.call("GET", f"/v1/orders/?{query}", self.a)
            self.assertEqual(200, r.status, r.body)
            self.assertEqual((0, []), (r.json()["count"], r.json()["results"]), query)
        # Staff see every customer's orders.
        for staff in (self.admin, self.service):
            body = self.call("GET", "/v1/orders/?page_size=100", staff).json()
            self.assertLessEqual({A, B}, {o["customer_id"] for o in body["results"]})
            self.assertEqual([b_order], [o["order_id"] for o in self.call(
                "GET", f"/v1/orders/?search={b_order}", staff).json()["results"]])

    # ---- create ----

    def test_create_for_another_customer_is_403_and_writes_nothing(self):
        count = f"SELECT count(*) FROM ordersapp_order WHERE customer_id = {B}"
        before = psql(self.url, count), psql(self.url, "SELECT count(*) FROM idempotency_keys")
        r = self.create(self.a, B, headers={"Idempotency-Key": "a-for-b"}, expect=403)
        self.assertEqual("customer_id", r.json()["details"]["field"])
        self.assertEqual(before, (psql(self.url, count), psql(self.url, "SELECT count(*) FROM idempotency_keys")))
        for staff, actor in ((self.admin, "admin:ops-1"), (self.service, "service:billing")):
            oid = self.order_of(staff, B)
            self.assertEqual(f"PENDING {actor}", self.actors(oid)[0])

    # ---- update ----

    def test_update_is_for_admin_and_service_only(self):
        oid = self.order_of(self.a, A)
        before = self.state(oid)
        r = self.call("PATCH", f"/v1/orders/{oid}/update/", self.a, {"payment_status": "REFUNDED"})
        self.assertEqual(403, r.status, r.body)
        self.assertEqual(before, self.state(oid))
        for tok, actor, status in ((self.admin, "admin:ops-1", "SHIPPED"), (self.service, "service:billing", "DELIVERED")):
            r = self.call("PATCH", f"/v1/orders/{oid}/update/", tok, {"order_status": status})
            self.assertEqual(200, r.status, r.body)
            self.assertEqual(f"{status} {actor}", self.actors(oid)[-1])

    def test_update_stays_staff_only_when_routes_lua_drops_the_roles(self):
        oid = self.order_of(self.a, A)
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(OPEN_UPDATE_ROUTES)
        try:
            with Service(database_url=self.url, routes=f.name, env=dict(self.downstream, JOBS="0")) as svc:
                r = self.call("PATCH", f"/v1/orders/{oid}/update/", self.a, {"order_status": "SHIPPED"}, svc=svc)
                self.assertEqual(403, r.status, r.body)
                # the handler's answer, not the auth filter's {"role": ...} refusal
                self.assertEqual("status changes are for admin and service callers", r.json()["error"])
                self.assertEqual("CONFIRMED", self.call("GET", f"/v1/orders/{oid}/", self.a).json()["order_status"])
        finally:
            os.unlink(f.name)

    # ---- the Idempotency-Key's scope ----

    def test_one_key_from_two_callers_makes_two_orders(self):
        customer = next(_customers)
        key = {"Idempotency-Key": "shared-key-1"}
        first = self.create(self.admin, customer, headers=key)
        second = self.create(self.service, customer, headers=key)
        self.assertNotEqual(first.json()["order_id"], second.json()["order_id"])
        self.assertNotIn("idempotent-replayed", second.headers)
        # Each caller's retry replays its own order.
        for tok, r in ((self.admin, first), (self.service, second)):
            again = self.create(tok, customer, headers=key)
            self.assertEqual("true", again.headers.get("idempotent-replayed"))
            self.assertEqual(r.json()["order_id"], again.json()["order_id"])
        self.assertEqual(["admin:ops-1 orders.create", "service:billing orders.create"], psql(
            self.url, "SELECT scope FROM idempotency_keys WHERE key = 'shared-key-1' ORDER BY scope").splitlines())

    def test_customers_keys_do_not_meet(self):
        key = {"Idempotency-Key": "cancel-key-1"}
        a_order, b_order = self.order_of(self.a, A), self.order_of(self.b, B)
        for tok, oid in ((self.a, a_order), (self.b, b_order)):
            r = self.call("POST", f"/v1/orders/{oid}/cancel/", tok, headers=key)
            self.assertEqual(200, r.status, r.body)
            self.assertNotIn("idempotent-replayed", r.headers)
        self.assertEqual([f"customer:{B} orders.cancel", "customer:alice orders.cancel"], psql(
            self.url, "SELECT scope FROM idempotency_keys WHERE key = 'cancel-key-1' ORDER BY scope").splitlines())


if __name__ == "__main__":
    unittest.main()
