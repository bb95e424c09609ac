"""The order saga against real downstream servers: the stand-ins (the same binary serving
scripts/standins/routes.lua) on loopback, one per test class, driven through /_behaviour
and read back through /_calls."""
import concurrent.futures
import json
import signal
import socket
import threading
import time
import unittest

from harness import ADMIN_TOKEN, Service, fresh_database, psql, quietly, run_binary, start_standins, wait_until

ORDER = {"customer_id": 7, "items": [{"product_id": 3, "sku": "SKU0003", "quantity": 2, "unit_price": "30.00"}]}
# subtotal 60.00, tax 3.00, shipping 50.00
TOTAL = "113.00"


class SagaCase(unittest.TestCase):
    service_env = {}
    workers = 1

    @classmethod
    def setUpClass(cls):
        cls.url = fresh_database("it_saga_" + cls.__name__.lower())
        assert run_binary("migrate", env={"DATABASE_URL": cls.url}).returncode == 0
        cls.standin, env = start_standins()
        env.update(DOWNSTREAM_TIMEOUT_MS="500", OUTBOX_EVERY_MS="100",
                   SAGA_RECOVERY_EVERY_MS="200", SAGA_GRACE_MS="1000", BREAKER_FAILURES="1000",
                   OUTBOX_BACKOFF_BASE_MS="100", OUTBOX_BACKOFF_MAX_MS="1000")
        env.update(cls.service_env)
        cls.svc = Service(database_url=cls.url, workers=cls.workers, env=env).start()

    @classmethod
    def tearDownClass(cls):
        cls.svc.__exit__(None, None, None)
        cls.standin.__exit__(None, None, None)

    def setUp(self):
        self.behave({})
        self.standin.request("DELETE", "/_calls")

    def behave(self, behaviour):
        self.assertEqual(self.standin.request("PUT", "/_behaviour", body=behaviour).status, 200)

    def calls(self, step=None, order_id=None):
        """What the stand-ins received, optionally for one step and one order only (work
        left over from an earlier test may still arrive)."""
        calls = self.standin.request("GET", "/_calls").json()["calls"]
        return [c for c in calls if (step is None or c["step"] == step) and
                (order_id is None or (c["body"].get("data") or c["body"]).get("order_id") == order_id)]

    def order_row(self, order_id):
        row = psql(self.url, "SELECT order_status, payment_status, shipping_status FROM ordersapp_order "
                             f"WHERE order_id = {int(order_id)}")
        return tuple(row.split("|"))

    def pending_outbox(self, order_id):
        return int(psql(self.url, f"SELECT count(*) FROM outbox WHERE order_id = {int(order_id)} "
                                  "AND delivered_at IS NULL"))

    def create(self, headers=None):
        return self.svc.request("POST", "/v1/orders/create/", body=ORDER, headers=headers)


class Outcomes(SagaCase):
    def test_success_reserves_charges_then_ships_and_notifies_through_the_outbox(self):
        r = self.create(headers={"X-Request-Id": "req-success-1"})
        self.assertEqual(r.status, 201, r.body)
        order = r.json()
        oid = order["order_id"]
        self.assertEqual((order["order_status"], order["payment_status"]), ("CONFIRMED", "PAID"))
        self.assertEqual(self.order_row(oid), ("CONFIRMED", "PAID", "Pending"))
        reserve, = self.calls("reserve", oid)
        self.assertEqual(reserve["body"], {"order_id": oid, "items": [
            {"product_id": 3, "sku": "SKU0003", "quantity": 2, "warehouse": "WH1"}]})
        self.assertEqual(reserve["idempotency_key"], f"order-{oid}-reserve")
        self.assertEqual(reserve["request_id"], "req-success-1")
        charge, = self.calls("charge", oid)
        self.assertEqual(charge["body"], {"order_id": oid, "customer_id": 7, "amount": TOTAL, "method": "Card"})
        wait_until(lambda: self.pending_outbox(oid) == 0, what="outbox delivery")
        ship, = self.calls("ship", oid)
        self.assertEqual(ship["body"]["order_id"], oid)
        self.assertEqual(ship["body"]["status"], "PENDING")
        notify, = self.calls("notify", oid)
        self.assertEqual(notify["body"]["type"], "ORDER_CREATED")
        self.assertEqual(notify["body"]["data"]["order_total"], TOTAL)
        self.assertEqual(self.calls("release", oid), [])
        events = psql(self.url, f"SELECT string_agg(field || ':' || coalesce(from_status, '-') || '>' || to_status, ',' "
                                f"ORDER BY id) FROM order_events WHERE order_id = {oid}")
        self.assertIn("order_status:PENDING>CONFIRMED", events)
        self.assertIn("payment_status:PENDING>PAID", events)

    def test_reservation_refused_is_409_cancelled_and_nothing_charged(self):
        self.behave({"reserve": {"status": 409}})
        r = self.create()
        self.assertEqual(r.status, 409, r.body)
        oid = r.json()["order"]["order_id"]
        self.assertEqual(self.order_row(oid)[0], "CANCELLED")
        self.assertEqual(r.json()["order"]["order_status"], "CANCELLED")
        self.assertEqual(self.calls("charge", oid), [])
        # Compensations are outbox rows written with the order's final state: none was queued.
        self.assertEqual(psql(self.url, f"SELECT count(*) FROM outbox WHERE order_id = {int(oid)} AND kind = 'release'"),
                         "0")
        self.assertEqual(self.calls("release", oid), [])

    def test_reservation_unavailable_is_503_cancelled_and_released(self):
        self.behave({"reserve": {"status": 503}})
        r = self.create()
        self.assertEqual(r.status, 503, r.body)
        oid = r.json()["order"]["order_id"]
        self.assertEqual(self.order_row(oid)[0], "CANCELLED")
        self.assertEqual(self.calls("charge", oid), [])
        wait_until(lambda: len(self.calls("release", oid)) == 1, what="release")
        self.assertEqual(self.calls("release", oid)[0]["idempotency_key"], f"order-{oid}-release")

    def test_charge_refused_is_402_cancelled_failed_and_released(self):
        self.behave({"charge": {"status": 402}})
        r = self.create()
        self.assertEqual(r.status, 402, r.body)
        oid = r.json()["order"]["order_id"]
        self.assertEqual(self.order_row(oid), ("CANCELLED", "FAILED", "Cancelled"))
        wait_until(lambda: self.pending_outbox(oid) == 0, what="compensation")
        self.assertEqual(len(self.calls("release", oid)), 1)
        self.assertEqual(self.calls("refund", oid), [])

    def test_charge_timeout_is_503_released_and_refunded(self):
        self.behave({"charge": {"delay_ms": 1500}})
        r = self.create()
        self.assertEqual(r.status, 503, r.body)
        oid = r.json()["order"]["order_id"]
        self.assertEqual(r.json()["order"]["payment_status"], "FAILED")
        wait_until(lambda: self.pending_outbox(oid) == 0, what="compensation")
        # the charge went through at the payment service, so the refund confirms it
        self.assertEqual(self.order_row(oid), ("CANCELLED", "REFUNDED", "Cancelled"))
        self.assertEqual(len(self.calls("release", oid)), 1)
        refund, = self.calls("refund", oid)
        self.assertEqual(refund["body"], {"order_id": oid, "amount": TOTAL})
        self.assertEqual(refund["path"], f"/payment/{oid}/refund/")

    def test_shipping_outage_neither_fails_nor_slows_create_and_is_retried(self):
        self.behave({"ship": {"fail_rate": 1}, "notify": {"fail_rate": 1}})
        r = self.create()
        self.assertEqual(r.status, 201, r.body)
        oid = r.json()["order_id"]
        wait_until(lambda: len(self.calls("ship", oid)) >= 2, what="retried ship")
        self.assertEqual(self.pending_outbox(oid), 2)
        self.behave({})
        # Backoff grows with each attempt; a few seconds covers the first retries.
        wait_until(lambda: self.pending_outbox(oid) == 0, seconds=20, what="delivery after recovery")
        attempts = psql(self.url, f"SELECT min(attempts) FROM outbox WHERE order_id = {oid}")
        self.assertGreaterEqual(int(attempts), 2)

    def test_cancel_releases_refunds_and_notifies(self):
        oid = self.create().json()["order_id"]
        wait_until(lambda: self.pending_outbox(oid) == 0, what="ship and notify")
        self.standin.request("DELETE", "/_calls")
        r = self.svc.request("POST", f"/v1/orders/{oid}/cancel/")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["status"], "Order cancelled successfully")
        self.assertEqual(self.order_row(oid)[:2], ("CANCELLED", "REFUNDED"))
        self.assertEqual(len(self.calls("release", oid)), 1)
        self.assertEqual(len(self.calls("refund", oid)), 1)
        notify, = self.calls("notify", oid)
        self.assertEqual(notify["body"]["type"], "ORDER_CANCELLED")

    def test_cancel_with_payment_down_refunds_later_from_the_outbox(self):
        oid = self.create().json()["order_id"]
        # the create's ship and notify rows first, so the one row left is the refund
        wait_until(lambda: self.pending_outbox(oid) == 0, what="ship and notify")
        self.behave({"refund": {"status": 503}})
        r = self.svc.request("POST", f"/v1/orders/{oid}/cancel/")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(self.order_row(oid)[:2], ("CANCELLED", "PAID"))
        self.assertEqual(self.pending_outbox(oid), 1)
        self.behave({})
        wait_until(lambda: self.order_row(oid)[1] == "REFUNDED", seconds=20, what="refund from the outbox")
        self.assertEqual(self.pending_outbox(oid), 0)

    def test_a_create_whose_client_disconnects_still_finishes_its_saga(self):
        # Only GET and HEAD are abandoned when their client goes away: a create goes on to its
        # end (charged and confirmed), it does not stop between the reservation and the charge.
        # (the reservation answers late, within DOWNSTREAM_TIMEOUT_MS, after the client left)
        self.behave({"reserve": {"delay_ms": 300}})
        before = {c["idempotency_key"] for c in self.calls("reserve")}
        conn = self.svc.connection(30)
        conn.request("POST", "/v1/orders/create/", body=json.dumps(ORDER),
                     headers={"Authorization": "Bearer " + ADMIN_TOKEN, "Content-Type": "application/json"})
        reserve = wait_until(lambda: [c for c in self.calls("reserve") if c["idempotency_key"] not in before],
                             what="the reservation to start")
        conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
        oid = reserve[0]["body"]["order_id"]
        wait_until(lambda: self.calls("charge", oid), what="the charge after the client left")
        wait_until(lambda: self.order_row(oid)[:2] == ("CONFIRMED", "PAID"), what="the order confirmed")
        wait_until(lambda: self.pending_outbox(oid) == 0, what="its outbox rows delivered")

    def test_creates_overlap_while_downstreams_are_slow(self):
        self.behave({"reserve": {"delay_ms": 200}, "charge": {"delay_ms": 200}})
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            started = time.monotonic()
            results = list(pool.map(lambda _: self.create(), range(50)))
            elapsed = time.monotonic() - started
        self.assertEqual([r.status for r in results], [201] * 50)
        # One after another they would take 50 x 0.4 s = 20 s.
        self.assertLess(elapsed, 10)


class Replicas(SagaCase):
    def test_two_replicas_deliver_each_outbox_row_exactly_once(self):
        env = {k: v for k, v in self.svc.env.items() if k not in ("PORT", "HOST")}
        with Service(database_url=self.url, workers=2, env=env) as replica:
            with concurrent.futures.ThreadPoolExecutor(10) as pool:
                results = list(pool.map(lambda i: (self.svc if i % 2 else replica).request(
                    "POST", "/v1/orders/create/", body=ORDER), range(20)))
            self.assertEqual([r.status for r in results], [201] * 20)
            ids = [r.json()["order_id"] for r in results]
            wait_until(lambda: all(self.pending_outbox(i) == 0 for i in ids), what="delivery")
        keys = [c["idempotency_key"] for c in self.calls() if c["step"] in ("ship", "notify")]
        self.assertEqual(len(keys), 40)
        self.assertEqual(len(set(keys)), 40, "a row was delivered more than once")


# A call that outlives DOWNSTREAM_TIMEOUT_MS is made again with its key (harmless downstream):
# the classes that count calls give a loaded machine a timeout it does not reach.
PATIENT = {"DOWNSTREAM_TIMEOUT_MS": "5000"}


class OutboxBurst(SagaCase):
    def deliver_burst(self, orders, delay_ms):
        """Creates `orders` orders at once, shipments and notifications answering delay_ms late;
        waits for their outbox rows and checks each was delivered exactly once. Returns the most
        calls the stand-in saw in flight, per step."""
        self.behave({"ship": {"delay_ms": delay_ms}, "notify": {"delay_ms": delay_ms}})
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda _: self.create(), range(orders)))
        self.assertEqual([r.status for r in results], [201] * orders)
        ids = [r.json()["order_id"] for r in results]
        wait_until(lambda: int(psql(self.url, "SELECT count(*) FROM outbox WHERE delivered_at IS NULL "
                                              f"AND order_id IN ({','.join(map(str, ids))})")) == 0,
                   seconds=60, what="the burst's delivery")
        most = {}
        for step in ("ship", "notify"):
            calls = [c for c in self.calls(step) if (c["body"].get("data") or c["body"]).get("order_id") in ids]
            keys = [c["idempotency_key"] for c in calls]
            self.assertEqual(len(keys), orders, step)
            self.assertEqual(len(set(keys)), orders, f"a {step} row was delivered more than once")
            most[step] = max(c["in_flight"] for c in calls)
        return most


class OutboxKeepsUp(OutboxBurst):
    service_env = {"OUTBOX_CONCURRENCY": "8", **PATIENT}

    def test_a_burst_is_delivered_exactly_once_with_several_calls_in_flight(self):
        # Every shipment and notification answers 50 ms late: one delivery at a time would
        # need 200 x 2 x 50 ms = 20 s; the job keeps up to OUTBOX_CONCURRENCY calls in flight.
        for step, most in self.deliver_burst(200, 50).items():
            self.assertGreater(most, 1, f"{step}: the stand-in never saw two calls at once")
            self.assertLessEqual(most, 8, f"{step}: more calls in flight than OUTBOX_CONCURRENCY")


class OutboxOnEveryWorker(OutboxBurst):
    """The outbox job runs on every worker (routes.lua: workers = "all"); the workers of a
    replica, like replicas, share the rows through their leases."""
    service_env = {"OUTBOX_CONCURRENCY": "2", **PATIENT}
    workers = 3

    def test_several_workers_deliver_at_once_and_each_row_exactly_once(self):
        most = max(self.deliver_burst(120, 100).values())
        # One worker's job has at most OUTBOX_CONCURRENCY (2) calls in flight, whatever the step.
        self.assertGreater(most, 2, "never more calls at once than one worker's job makes")
        self.assertLessEqual(most, 6, "more calls in flight than 3 workers x OUTBOX_CONCURRENCY")


class Breaker(SagaCase):
    # A cool-down no busy machine outlasts between the third failure and the next create.
    service_env = {"BREAKER_FAILURES": "3", "BREAKER_COOLDOWN_MS": "5000", **PATIENT}

    def test_repeated_failures_open_the_circuit_then_a_probe_closes_it(self):
        self.behave({"reserve": {"status": 503}})
        for _ in range(3):
            self.assertEqual(self.create().status, 503)
        reached = len(self.calls("reserve"))
        r = self.create()
        self.assertEqual(r.status, 503)
        self.assertIn("circuit", r.json()["error"])
        self.assertEqual(len(self.calls("reserve")), reached, "an open circuit must not call the service")
        self.behave({})
        # Creates fail fast until the cool-down ends; then a probe goes out, succeeds and closes it.
        wait_until(lambda: self.create().status == 201, seconds=30, what="a create once a probe closed the circuit")
        self.assertEqual(self.create().status, 201)


class Crash(SagaCase):
    service_env = PATIENT

    def test_sigkill_mid_saga_then_restart_compensates_exactly_once(self):
        self.behave({"charge": {"delay_ms": 2000}})
        env = dict(self.svc.env)
        victim = Service(database_url=self.url, workers=1, env={k: v for k, v in env.items()
                                                                  if k not in ("PORT", "HOST")}).start()
        try:
            t = threading.Thread(target=lambda: quietly(victim.request, "POST", "/v1/orders/create/", ORDER))
            t.start()
            wait_until(lambda: len(self.calls("charge")) == 1, what="the charge to start")
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait()
            t.join()
        finally:
            victim.__exit__(None, None, None)
        oid = int(psql(self.url, "SELECT max(order_id) FROM ordersapp_order"))
        self.assertEqual(self.order_row(oid)[0], "PENDING")
        self.behave({})
        # self.svc (running all along) runs the recovery job: after the grace period the order
        # is cancelled and its compensations delivered.
        wait_until(lambda: self.order_row(oid)[0] == "CANCELLED", seconds=20, what="recovery")
        wait_until(lambda: self.pending_outbox(oid) == 0, seconds=20, what="compensations")
        # The charge went through at the payment service: the refund confirms it.
        self.assertEqual(self.order_row(oid), ("CANCELLED", "REFUNDED", "Cancelled"))
        keys = [c["idempotency_key"] for c in self.calls(order_id=oid) if c["step"] in ("release", "refund")]
        self.assertEqual(sorted(keys), [f"order-{oid}-refund", f"order-{oid}-release"])
        rows = psql(self.url, f"SELECT count(*), count(delivered_at) FROM outbox WHERE order_id = {oid}")
        self.assertEqual(rows, "2|2")


if __name__ == "__main__":
    unittest.main()
