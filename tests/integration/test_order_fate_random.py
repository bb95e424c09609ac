"""Issue 9: 200 seeds of interleaved creates, cancels, PATCHes, downstream delays, failures,
refusals, late charges and restarts (SIGKILL), then one invariant check over the stand-ins'
ledgers for every order:
  - charged - refunded equals the order's total exactly when it is PAID and not cancelled,
    and is 0 otherwise;
  - reservations - releases is 0 for every cancelled order;
  - no active shipment for a cancelled order, and no ORDER_CREATED after ORDER_CANCELLED;
  - a finished saga never leaves the payment PENDING.
Cancels and PATCHes are timed by conditions (the stand-in has received a given step for the
order), not by sleeps; a seed's randomness only picks what happens and when."""
import random
import signal
import threading
import unittest

from harness import Service, psql, wait_until
from test_saga import SagaCase

SEEDS = 200
RESTART_EVERY = 40  # seeds; a restart kills the service mid-saga


def order_body(rng):
    items = [{"product_id": rng.randint(1, 50), "sku": f"SKU{rng.randint(1, 9999):04d}",
              "quantity": rng.randint(1, 3), "unit_price": f"{rng.randint(0, 5000) / 100:.2f}"}
             for _ in range(rng.randint(1, 2))]
    return {"customer_id": rng.randint(1, 100), "items": items}


def cents(amount):
    units, _, frac = amount.partition(".")
    return int(units) * 100 + int((frac + "00")[:2])


class RandomizedFate(SagaCase):
    service_env = {"DOWNSTREAM_TIMEOUT_MS": "300", "SAGA_GRACE_MS": "1000", "OUTBOX_EVERY_MS": "50",
                   "OUTBOX_BACKOFF_BASE_MS": "50", "OUTBOX_BACKOFF_MAX_MS": "400",
                   "RECONCILE_WINDOW_MS": "2000", "SAGA_RECOVERY_EVERY_MS": "200",
                   "OUTBOX_LEASE_MS": "5000"}

    def behaviour(self, rng):
        b = {}
        for step in ("reserve", "charge", "ship", "notify", "release", "refund", "ship_cancel"):
            roll = rng.random()
            if roll < 0.15:
                b[step] = {"delay_ms": rng.randint(20, 150)}
            elif roll < 0.22:
                b[step] = {"fail_rate": 0.5}
            elif roll < 0.26:
                b[step] = {"delay_ms": 400}  # past DOWNSTREAM_TIMEOUT_MS: outcome unknown
        roll = rng.random()
        if roll < 0.05:
            b["reserve"] = {"status": 409}
        elif roll < 0.10:
            b["charge"] = {"status": 402}
        elif roll < 0.15:
            b["charge"] = {"apply_after_ms": 450, "delay_ms": 450}  # lands after the refund
        return b

    def one_order(self, svc, rng, results):
        body = order_body(rng)
        before = {}
        plan = rng.choice(["none", "none", "reserve", "charge", "created", "ship", "patch", "patch_cancel"])
        out = {}

        def create():
            try:
                out["r"] = svc.request("POST", "/v1/orders/create/", body=body, timeout=10)
            except Exception as e:
                out["error"] = e
        t = threading.Thread(target=create)
        marker = int(psql(self.url, "SELECT coalesce(max(order_id), 0) FROM ordersapp_order"))
        before["marker"] = marker
        t.start()
        if plan in ("reserve", "charge", "ship"):
            def received():
                return any(c["step"] == plan and ((c["body"].get("data") or c["body"]).get("order_id") or 0) > marker
                           for c in self.calls())
            # or the create ended without that step (refused or failed earlier): cancel anyway
            wait_until(lambda: received() or not t.is_alive(), seconds=10, what=plan)
        t.join()
        r = out.get("r")
        if r is None:
            return  # the service was killed under the request
        data = r.json()
        oid = (data.get("order") or data).get("order_id")
        if oid is None:
            return
        results.append(oid)
        if plan in ("reserve", "charge", "ship", "created"):
            quiet(svc, "POST", f"/v1/orders/{oid}/cancel/")
        elif plan == "patch":
            quiet(svc, "PATCH", f"/v1/orders/{oid}/update/",
                  {"order_status": rng.choice(["PROCESSING", "SHIPPED", "CONFIRMED", "DELIVERED"])})
        elif plan == "patch_cancel":
            quiet(svc, "PATCH", f"/v1/orders/{oid}/update/", {"order_status": "CANCELLED"})

    def test_invariants_hold_over_200_seeds(self):
        svc = self.svc
        env = {k: v for k, v in self.svc.env.items() if k not in ("PORT", "HOST")}
        restarted = []
        ids = []
        try:
            for seed in range(SEEDS):
                rng = random.Random(seed)
                self.behave(self.behaviour(rng))
                threads = [threading.Thread(target=self.one_order, args=(svc, random.Random(seed * 10 + i), ids))
                           for i in range(rng.randint(1, 3))]
                for t in threads:
                    t.start()
                if seed % RESTART_EVERY == RESTART_EVERY - 1:
                    # kill it while sagas run, then start another on the same database
                    wait_until(lambda: len(self.calls()) > 0, seconds=2, what="some traffic")
                    svc.proc.send_signal(signal.SIGKILL)
                    svc.proc.wait()
                    for t in threads:
                        t.join()
                    restarted.append(svc)
                    svc = Service(database_url=self.url, workers=1, env=env).start()
                else:
                    for t in threads:
                        t.join()
            self.behave({})
            wait_until(lambda: psql(self.url, "SELECT count(*) FROM order_sagas WHERE finished_at IS NULL") == "0"
                       and psql(self.url, "SELECT count(*) FROM outbox WHERE delivered_at IS NULL") == "0",
                       seconds=60, what="every saga and outbox row to settle")
            self.check_invariants()
        finally:
            for s in restarted:
                s.proc = None
            if svc is not self.svc:
                svc.__exit__(None, None, None)

    def check_invariants(self):
        ledgers = self.standin.request("GET", "/_ledger").json()["orders"]
        rows = psql(self.url, "SELECT o.order_id, o.order_status, o.payment_status, o.order_total, "
                              "s.finished_at IS NOT NULL FROM ordersapp_order o JOIN order_sagas s USING (order_id)")
        checked = 0
        for line in rows.splitlines():
            oid, status, payment, total, finished = line.split("|")
            l = ledgers.get(oid, {})
            net = l.get("charged_cents", 0) - l.get("refunded_cents", 0)
            what = f"order {oid} {status}/{payment} ledger {l}"
            self.assertEqual(finished, "t", what)
            self.assertNotEqual(payment, "PENDING", what)
            if payment == "PAID" and status != "CANCELLED":
                self.assertEqual(net, cents(total), what)
            else:
                self.assertEqual(net, 0, what)
            if status == "CANCELLED":
                self.assertEqual(l.get("reservations", 0) - l.get("releases", 0), 0, what)
                self.assertEqual(l.get("active_shipments", 0), 0, what)
                notes = l.get("notifications", [])
                if "ORDER_CREATED" in notes and "ORDER_CANCELLED" in notes:
                    self.assertLess(notes.index("ORDER_CREATED"), notes.index("ORDER_CANCELLED"), what)
            checked += 1
        self.assertGreater(checked, SEEDS)


def quiet(svc, method, path, body=None):
    try:
        return svc.request(method, path, body=body, timeout=10)
    except Exception:
        return None


if __name__ == "__main__":
    unittest.main()
