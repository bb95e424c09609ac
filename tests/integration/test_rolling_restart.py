"""What a rolling restart needs: two service processes on one database share the work exactly
once (idempotency keys, outbox delivery, saga recovery), and SIGTERM drains a loaded process
without failing a request: readiness answers 503 first while everything else is still served,
then the listener closes, then the process exits 0 once its requests and jobs are done."""
import concurrent.futures
import http.client
import json
import signal
import socket
import threading
import time
import unittest

from harness import ADMIN_TOKEN, Service, fresh_database, psql, quietly, run_binary, start_standins, wait_until

JOB_ENV = {"DOWNSTREAM_TIMEOUT_MS": "5000", "OUTBOX_EVERY_MS": "100", "SAGA_RECOVERY_EVERY_MS": "200",
           "SAGA_GRACE_MS": "1000", "BREAKER_FAILURES": "1000", "OUTBOX_BACKOFF_BASE_MS": "100",
           "OUTBOX_BACKOFF_MAX_MS": "1000"}


def order(customer_id):
    return {"customer_id": customer_id,
            "items": [{"product_id": 3, "sku": "SKU0003", "quantity": 1, "unit_price": "10.00"}]}


class Case(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.url = fresh_database("it_rolling_" + cls.__name__.lower())
        assert run_binary("migrate", env={"DATABASE_URL": cls.url}).returncode == 0
        cls.standin, env = start_standins()
        cls.env = dict(env, **JOB_ENV)

    @classmethod
    def tearDownClass(cls):
        cls.standin.__exit__(None, None, None)

    def service(self, **env):
        svc = Service(database_url=self.url, workers=2, env=dict(self.env, **env)).start()
        self.addCleanup(svc.__exit__, None, None, None)
        return svc

    def behave(self, behaviour):
        self.assertEqual(self.standin.request("PUT", "/_behaviour", body=behaviour).status, 200)

    def calls(self):
        return self.standin.request("GET", "/_calls").json()["calls"]

    def pending_outbox(self):
        return int(psql(self.url, "SELECT count(*) FROM outbox WHERE delivered_at IS NULL"))


class TwoProcesses(Case):
    def test_keys_deliveries_and_recovery_happen_once_across_two_processes_under_load(self):
        self.behave({})
        a, b = self.service(), self.service()
        # A third process dies mid-saga with charges in flight: its sagas are for the other
        # two's recovery sweeps, which both run every 200 ms.
        self.behave({"charge": {"delay_ms": 3000}})
        victim = Service(database_url=self.url, workers=1, env=dict(self.env, JOBS="0")).start()
        creates = [threading.Thread(target=quietly, args=(victim.request, "POST", "/v1/orders/create/",
                                                          order(9000 + i))) for i in range(4)]
        try:
            for t in creates:
                t.start()
            wait_until(lambda: len([c for c in self.calls() if c["step"] == "charge"]) == 4,
                       what="the victim's charges to start")
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait()
            for t in creates:
                t.join()
        finally:
            victim.__exit__(None, None, None)
        self.behave({})
        stalled = [int(x) for x in psql(self.url, "SELECT order_id FROM order_sagas WHERE finished_at IS NULL "
                                                  "ORDER BY order_id").split()]
        self.assertEqual(len(stalled), 4)

        # Meanwhile, load on both: each Idempotency-Key sent to both at once, plus plain creates.
        def keyed(i):
            body = order(1000 + i)
            headers = {"Idempotency-Key": f"rolling-{i}"}
            with concurrent.futures.ThreadPoolExecutor(2) as both:
                return list(both.map(lambda svc: svc.request("POST", "/v1/orders/create/", body=body,
                                                               headers=headers), (a, b)))

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            plain = [pool.submit((a, b)[i % 2].request, "POST", "/v1/orders/create/", order(2000)) for i in range(20)]
            pairs = list(pool.map(keyed, range(20)))
            plain = [f.result() for f in plain]
        self.assertEqual([r.status for r in plain], [201] * 20)
        for i, pair in enumerate(pairs):
            statuses = sorted(r.status for r in pair)
            # The second to arrive is told the first is running (409), or gets the order as it
            # stands (202) or the first's answer replayed (201).
            self.assertIn(statuses, ([201, 201], [201, 202], [201, 409]), [r.body for r in pair])
            ids = {r.json()["order_id"] if r.status == 201 else r.json()["order"]["order_id"]
                   for r in pair if r.status in (201, 202)}
            self.assertEqual(len(ids), 1, f"key rolling-{i} made two orders")
            self.assertEqual(psql(self.url, f"SELECT count(*) FROM ordersapp_order WHERE customer_id = {1000 + i}"),
                             "1", f"key rolling-{i}")

        # Every saga recovered once, every outbox row delivered once.
        wait_until(lambda: psql(self.url, "SELECT count(*) FROM order_sagas WHERE finished_at IS NULL") == "0",
                   seconds=30, what="recovery of the victim's sagas")
        wait_until(lambda: self.pending_outbox() == 0, seconds=30, what="every outbox row delivered")
        for oid in stalled:
            self.assertEqual(psql(self.url, f"SELECT order_status, payment_status FROM ordersapp_order "
                                            f"WHERE order_id = {oid}"), "CANCELLED|REFUNDED")
            self.assertEqual(psql(self.url, f"SELECT count(*) FROM order_events WHERE order_id = {oid} "
                                            "AND actor = 'saga-recovery' AND field = 'saga' AND to_status = 'ended'"),
                             "1")
        keys = [c["idempotency_key"] for c in self.calls() if c["step"] in ("ship", "notify", "release", "refund")]
        confirmed = int(psql(self.url, "SELECT count(*) FROM ordersapp_order WHERE order_status = 'CONFIRMED'"))
        self.assertEqual(confirmed, 40)
        # ship + notify per confirmed order; release + refund per recovered one
        self.assertEqual(len(keys), 2 * confirmed + 2 * len(stalled))
        self.assertEqual(len(set(keys)), len(keys), "a downstream call was made twice")


class Sigterm(Case):
    def test_sigterm_under_load_fails_no_request_and_readiness_goes_false_before_the_listener_closes(self):
        self.behave({"reserve": {"delay_ms": 50}, "charge": {"delay_ms": 50}})
        svc = self.service(SHUTDOWN_READY_DELAY_MS="1500", SHUTDOWN_TIMEOUT_MS="20000")
        oid = svc.request("POST", "/v1/orders/create/", body=order(3000)).json()["order_id"]
        stop = threading.Event()
        removed = threading.Event()  # the load balancer saw readiness fail: no new connections
        lock = threading.Lock()
        answers, failures, health = [], [], []

        def client(n):
            """A client behind the load balancer: keeps its connection alive, and opens a new one
            when the server closes it only while the balancer still routes to this process."""
            conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=30)
            conn.connect()
            i = 0
            while not stop.is_set():
                i += 1
                method, path, body = [("GET", f"/v1/orders/{oid}/", None), ("GET", "/v1/orders/?page_size=5", None),
                                      ("POST", "/v1/orders/create/", json.dumps(order(3000)))][(n + i) % 3]
                try:
                    conn.request(method, path, body=body, headers={"Authorization": "Bearer " + ADMIN_TOKEN,
                                                                   "Content-Type": "application/json"})
                    r = conn.getresponse()
                    r.read()
                    with lock:
                        answers.append((time.monotonic(), r.status, method))
                except (OSError, http.client.HTTPException) as e:
                    # The connection was established: the request had a server to answer it.
                    with lock:
                        failures.append((time.monotonic(), method, path, repr(e)))
                    return
                if r.will_close:
                    conn.close()
                    if removed.is_set():
                        return
                    conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=30)
                    conn.connect()

        def probe():
            """Readiness as the load balancer sees it: a fresh connection each time."""
            while not stop.is_set():
                c = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=5)
                try:
                    c.request("GET", "/health/")
                    r = c.getresponse()
                    health.append((time.monotonic(), r.status, r.read()))
                    if r.status == 503:
                        removed.set()
                except ConnectionRefusedError:
                    health.append((time.monotonic(), "refused", b""))
                except (OSError, http.client.HTTPException):
                    # accepted by the kernel as the listener closed: a probe the balancer counts as failed
                    health.append((time.monotonic(), "reset", b""))
                finally:
                    c.close()
                time.sleep(0.01)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(6)] + [threading.Thread(target=probe)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: len(answers) >= 60, what="load before SIGTERM")
            svc.proc.send_signal(signal.SIGTERM)
            sigterm = time.monotonic()
            code = svc.proc.wait(timeout=60)
            ended = time.monotonic()
            wait_until(lambda: health and health[-1][1] == "refused", what="the probe to find the listener gone")
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(code, 0, svc.logs())
        self.assertEqual(failures, [], "requests that had a connection but no complete answer")
        statuses = [s for _, s, _ in answers]
        self.assertEqual([s for s in statuses if s >= 500], [], "a 5xx under the restart")
        self.assertTrue(set(statuses) <= {200, 201}, set(statuses))
        # Readiness went false on a connection the listener still accepted, and only then was
        # the listener closed.
        not_ready = [t for t, s, body in health if s == 503]
        self.assertTrue(not_ready, "readiness never answered 503")
        first_503 = min(not_ready)
        self.assertTrue(all(json.loads(body)["status"] == "shutting down" for _, s, body in health if s == 503))
        first_refused = min(t for t, s, _ in health if s == "refused")
        self.assertGreater(first_503, sigterm)
        self.assertLess(first_503, first_refused)
        after = {s for t, s, _ in health if t > first_503}
        self.assertTrue(after <= {503, "refused", "reset"}, f"ready again after SIGTERM: {after}")
        # Requests kept being served while readiness was false.
        self.assertTrue([t for t, s, _ in answers if first_503 < t < first_refused], "nothing served in the window")
        # Nothing was left half-done: every saga finished (the creates drained), and the log
        # tells the order of events.
        self.assertEqual(psql(self.url, "SELECT count(*) FROM order_sagas WHERE finished_at IS NULL"), "0")
        logs = svc.logs()
        self.assertLess(logs.index("readiness answers 503"), logs.index("listeners closing"))
        self.assertIn("background jobs stopped", logs)
        self.assertNotIn("shutdown deadline passed", logs, "the drain did not finish by itself")
        print(f"\nsigterm: {len(answers)} answers, readiness 503 "
              f"{first_503 - sigterm:.2f} s after SIGTERM, listener closed {first_refused - sigterm:.2f} s after, "
              f"exit {ended - sigterm:.2f} s after")


if __name__ == "__main__":
    unittest.main()
