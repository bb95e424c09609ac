"""The core under faults: backends terminated under the background jobs, PostgreSQL restarted
under load, a multi-host DATABASE_URL whose first host is dead, a connection attempt that
hangs, a backend killed inside a transaction, a stalled job, and downstream calls that time
out, are refused, or meet a kept-alive connection the server dropped. Real PostgreSQL, the
real binary, real HTTP; every wait is on a condition."""
import json
import os
import re
import signal
import socket
import threading
import time
import unittest

from harness import (ADMIN_TOKEN, Load, PrivateClusterCase, Service, free_port, fresh_database, psql, run_binary,
                     start_standins, wait_until)

ADMIN_URL = os.environ["PG_ADMIN_URL"]
PG_PORT = int(os.environ["PG_PORT"])
ORDER = {"customer_id": 7, "items": [{"product_id": 3, "sku": "SKU0003", "quantity": 2, "unit_price": "30.00"}]}
JOB_ENV = {"OUTBOX_EVERY_MS": "100", "SAGA_RECOVERY_EVERY_MS": "200", "SAGA_GRACE_MS": "1000",
           "BREAKER_FAILURES": "1000", "OUTBOX_BACKOFF_BASE_MS": "100", "OUTBOX_BACKOFF_MAX_MS": "500",
           "DOWNSTREAM_TIMEOUT_MS": "1000"}


def migrated_database(name):
    url = fresh_database(name)
    assert run_binary("migrate", env={"DATABASE_URL": url}).returncode == 0
    return url


def metric(svc, name, labels=""):
    """The value of one sample of /metrics, or None."""
    text = svc.request("GET", "/metrics").body.decode()
    m = re.search(r"^" + re.escape(name + labels) + r" (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def terminate_service_backends(url):
    db = url.rsplit("/", 1)[1]
    return int(psql(ADMIN_URL, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                               f"WHERE datname = '{db}' AND application_name = 'orderservice'"))


class JobsSurviveTerminatedBackends(unittest.TestCase):
    def test_ten_rounds_of_terminated_connections_then_each_row_is_delivered_exactly_once(self):
        url = migrated_database("it_faults_terminate")
        standin, env = start_standins()
        env.update(JOB_ENV)
        # Two workers, each running the outbox job: both must survive every round, and the
        # two instances must still deliver each row once.
        with standin, Service(database_url=url, workers=2, env=dict(env, DB_POOL_SIZE="3")) as svc:
            # Rows the job must deliver once the rounds are over: parked until then.
            psql(url, "INSERT INTO outbox (kind, order_id, payload, next_attempt_at) "
                      "SELECT 'notify', i, jsonb_build_object('service', 'notification', 'path', '', "
                      "'body', jsonb_build_object('type', 'FAULTS', 'data', jsonb_build_object('order_id', i)), "
                      "'key', 'faults-' || i), 'infinity' FROM generate_series(1, 20) i")
            rounds_started = time.time()
            for round_ in range(10):
                wait_until(lambda: terminate_service_backends(url) > 0, what="service connections to kill")
                killed_at = time.time()
                # The job must complete a cycle after every round: it survived the failures (the
                # metric is the oldest last success of its instances: each worker's completed one).
                wait_until(lambda: (metric(svc, "orderservice_jobs_last_success_timestamp_seconds",
                                           '{job="outbox"}') or 0) > killed_at,
                           what=f"an outbox cycle after round {round_ + 1}")
            print(f"\nterminations: 10 rounds, each followed by a completed outbox cycle, in "
                  f"{time.time() - rounds_started:.2f} s")
            self.assertEqual(svc.request("GET", "/health/").status, 200)
            psql(url, "UPDATE outbox SET next_attempt_at = now() WHERE delivered_at IS NULL")
            wait_until(lambda: psql(url, "SELECT count(*) FROM outbox WHERE delivered_at IS NULL") == "0",
                       what="the parked rows delivered")
            keys = [c["idempotency_key"] for c in standin.request("GET", "/_calls").json()["calls"]]
            self.assertEqual(sorted(keys), sorted(f"faults-{i}" for i in range(1, 21)))
            self.assertIsNone(svc.proc.poll())
            logs = svc.logs()
            self.assertNotIn("SIGHUP", logs)
            self.assertNotIn("ignored a completion", logs)


class Restart(PrivateClusterCase):
    """PostgreSQL (a private cluster, so no other test is disturbed) stopped and started
    under a load of reads and creates."""

    def test_restart_under_load_gives_503s_only_during_the_outage_never_500_and_jobs_resume(self):
        url = self.pg("start")
        self.assertEqual(run_binary("migrate", env={"DATABASE_URL": url}).returncode, 0)
        standin, env = start_standins()
        env.update(JOB_ENV)
        with standin, Service(database_url=url, workers=2, env=dict(env, DB_POOL_SIZE="3")) as svc:
            oid = svc.request("POST", "/v1/orders/create/", body=ORDER).json()["order_id"]
            marks = {}

            def call():
                started = time.time()
                if threading.get_ident() % 2:
                    r = svc.request("GET", f"/v1/orders/{oid}/")
                else:
                    r = svc.request("POST", "/v1/orders/create/", body=ORDER)
                return started, time.time(), r.status, r.headers.get("retry-after")

            with Load(call, threads=4) as load:
                wait_until(lambda: len(load.results) >= 20, what="load before the outage")
                marks["stop"] = time.time()
                self.pg("stop")
                wait_until(lambda: svc.request("GET", "/health/").status == 503, what="503 during the outage")
                self.pg("start")
                marks["started"] = time.time()

                def recovered():
                    # Both workers' pools: health on several connections, then the load succeeding.
                    return all(svc.request("GET", "/health/").status == 200 for _ in range(6))
                wait_until(recovered, seconds=30, what="recovery")
                marks["recovered"] = time.time()
                n = len(load.results)
                wait_until(lambda: len(load.results) >= n + 40, what="load after the recovery")
            results = load.results
            statuses = [r[2] for r in results]
            print(f"\nrestart: {len(results)} requests, {statuses.count(503)} answered 503, recovered "
                  f"{marks['recovered'] - marks['started']:.2f} s after PostgreSQL was started again")
            self.assertEqual(statuses.count(500), 0, "500s while PostgreSQL restarted")
            self.assertTrue(set(statuses) <= {200, 201, 503}, set(statuses))
            self.assertIn(503, statuses)
            for started, ended, status, retry_after in results:
                if status == 503:
                    self.assertGreater(ended, marks["stop"], "a 503 before the outage")
                    self.assertLess(started, marks["recovered"], "a 503 after the recovery")
                    self.assertEqual(retry_after, "1")
            after = [r[2] for r in results if r[0] > marks["recovered"]]
            self.assertTrue(after and set(after) <= {200, 201}, after)
            # The jobs deliver again: a new order's shipment and notification go out.
            oid = svc.request("POST", "/v1/orders/create/", body=ORDER).json()["order_id"]
            wait_until(lambda: psql(url, f"SELECT count(*) FROM outbox WHERE order_id = {oid} "
                                         "AND delivered_at IS NULL") == "0", what="delivery after the restart")
            self.assertEqual(svc.request("GET", "/health/").status, 200)
            self.assertEqual(svc.stop(), 0)


class Connecting(unittest.TestCase):
    def test_a_multi_host_url_whose_first_host_is_dead_connects_to_the_next(self):
        fresh_database("it_faults_multihost")
        dead = free_port()  # nothing listens there: refused at once
        # The second host is a name: resolved on h2o's resolver threads, then tried by address.
        multi = f"postgresql://postgres@127.0.0.1:{dead},localhost:{PG_PORT}/it_faults_multihost"
        with Service(database_url=multi, workers=1, env={"JOBS": "0"}) as svc:
            wait_until(lambda: svc.request("GET", "/health/").status == 200, what="a connection to the second host")
            self.assertEqual(svc.request("GET", "/test/query").status, 200)

    def test_health_live_answers_at_once_while_a_connection_attempt_hangs(self):
        # A listener that never accepts: the kernel completes the handshake, libpq sends its
        # first message and waits for an answer that never comes, up to DB_CONNECT_TIMEOUT_MS.
        # The host is a name, so it is resolved first (on h2o's resolver threads).
        silent = socket.socket()
        self.addCleanup(silent.close)
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        hung = f"postgresql://postgres@localhost:{silent.getsockname()[1]}/orderservice"
        with Service(database_url=hung, workers=1,
                     env={"JOBS": "0", "DB_CONNECT_TIMEOUT_MS": "20000", "DB_ACQUIRE_TIMEOUT_MS": "300"}) as svc:
            for _ in range(10):
                started = time.monotonic()
                r = svc.request("GET", "/health/live/")
                self.assertEqual(r.status, 200)
                self.assertLess(time.monotonic() - started, 0.5)
            started = time.monotonic()
            r = svc.request("GET", "/health/")
            self.assertEqual(r.status, 503)
            self.assertLess(time.monotonic() - started, 2)
            self.assertNotIn("cannot connect to the database", svc.logs(), "the attempt was to be still pending")

    def test_a_database_url_whose_lists_differ_exits_2(self):
        r = run_binary("serve", env={"DATABASE_URL": "postgresql://postgres@a,b/db?port=1,2,3",
                                     "PORT": str(free_port())})
        self.assertEqual(r.returncode, 2)
        self.assertIn("DATABASE_URL", r.stdout + r.stderr)

    def test_a_bad_connect_timeout_exits_2_naming_it(self):
        r = run_binary("serve", env={"DB_CONNECT_TIMEOUT_MS": "soon", "PORT": str(free_port())})
        self.assertEqual(r.returncode, 2)
        self.assertIn("DB_CONNECT_TIMEOUT_MS", r.stdout + r.stderr)


class Transactions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.url = fresh_database("it_faults_tx")
        cls.svc = Service(database_url=cls.url, workers=1,
                          env={"JOBS": "0", "DB_POOL_SIZE": "1", "DB_ACQUIRE_TIMEOUT_MS": "5000"}).start()

    @classmethod
    def tearDownClass(cls):
        cls.svc.__exit__(None, None, None)

    def kill_backend_running(self, fragment):
        def kill():
            return psql(ADMIN_URL, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                   f"WHERE datname = 'it_faults_tx' AND query LIKE '%{fragment}%' "
                                   "AND application_name = 'orderservice'") == "1"
        wait_until(kill, what=f"a backend running {fragment}")

    def background(self, path):
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("r", self.svc.request("GET", path)))
        t.start()
        return t, result

    def assert_pool_recovers(self):
        # The pool gauges are published by the worker every 100 ms: wait for them to say so.
        wait_until(lambda: metric(self.svc, "orderservice_db_pool_busy") == 0, what="no connection busy")
        wait_until(lambda: self.svc.request("GET", "/test/tx-hold?ms=1").status == 200,
                   what="the next transaction to work")
        wait_until(lambda: metric(self.svc, "orderservice_db_pool_busy") == 0, what="no connection busy after it")

    def test_a_backend_killed_during_a_query_in_a_transaction_fails_it_with_503_and_leaks_no_pin(self):
        t, result = self.background("/test/tx-hold?ms=5000")
        self.kill_backend_running("pg_sleep")
        t.join()
        self.assertEqual(result["r"].status, 503, result["r"].body)
        self.assertEqual(result["r"].headers.get("retry-after"), "1")
        self.assert_pool_recovers()

    def test_a_backend_killed_while_its_transaction_waits_on_something_else_breaks_only_that_transaction(self):
        # The task is pinned but sleeping, not waiting on the connection: it must not be resumed
        # by the connection's failure (that was a double resume); its next query fails instead.
        t, result = self.background("/test/tx-hold?ms=1&pause_ms=1500&again=1")
        self.kill_backend_running("pg_backend_pid")
        t.join()
        self.assertEqual(result["r"].status, 503, result["r"].body)
        self.assertIn("lost inside the transaction", result["r"].json()["error"])
        # The same task's next transaction works (a job's task lives on after such a failure).
        self.assertEqual(result["r"].json()["details"]["again"], 2)
        self.assert_pool_recovers()
        self.assertNotIn("ignored a completion", self.svc.logs())


class StalledJob(unittest.TestCase):
    def test_a_job_that_stops_completing_cycles_makes_health_503_with_the_reason(self):
        url = migrated_database("it_faults_stalled")
        with Service(database_url=url, workers=2, env=JOB_ENV) as svc:
            wait_until(lambda: metric(svc, "orderservice_jobs_last_success_timestamp_seconds", '{job="outbox"}'),
                       what="a first outbox cycle")
            self.assertEqual(svc.request("GET", "/health/").status, 200)
            # Every outbox claim now fails (the job runs on, failing): after 3 intervals and the
            # margin, /health/ names it, on whichever worker answers.
            psql(url, "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                      "$$BEGIN RAISE EXCEPTION 'outbox refused for the test'; END$$; "
                      "CREATE TRIGGER refuse BEFORE UPDATE ON outbox FOR EACH STATEMENT EXECUTE FUNCTION refuse()")
            r = wait_until(lambda: (lambda r: r if r.status == 503 else None)(svc.request("GET", "/health/")),
                           what="/health/ to report the stalled job")
            self.assertEqual(r.json()["status"], "unhealthy")
            self.assertIn("job outbox has not completed a cycle", r.json()["error"])
            # The outbox runs on both workers, and each instance stalled.
            wait_until(lambda: all(f"on worker {w}" in (svc.request("GET", "/health/").json().get("error") or "")
                                   for w in (0, 1)), what="/health/ to name both workers' instances")
            self.assertEqual(r.headers.get("retry-after"), "1")
            psql(url, "DROP TRIGGER refuse ON outbox")
            wait_until(lambda: all(svc.request("GET", "/health/").status == 200 for _ in range(4)),
                       what="/health/ healthy once the job completes cycles again")
            self.assertIsNone(svc.proc.poll())


class Reload(unittest.TestCase):
    def test_a_successful_reload_logs_no_error(self):
        url = migrated_database("it_faults_reload")
        with Service(database_url=url, workers=1, env=dict(JOB_ENV, RELOAD_POLL_MS="0")) as svc:
            wait_until(lambda: svc.logs().count("background jobs started") == 1, what="the jobs")
            svc.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: svc.logs().count("background jobs started") == 2, what="the reloaded jobs")
            wait_until(lambda: "background jobs stopped" in svc.logs(), what="the retired jobs to stop")
            self.assertEqual(svc.request("GET", "/health/").status, 200)
            errors = [line for line in svc.logs().splitlines() if '"level":"error"' in line]
            self.assertEqual(errors, [])


class StubServer:
    """A downstream on a loopback port, one thread per connection; `serve(conn, n)` handles the
    n-th request read on a connection (n counts from 1) and says whether to keep it open."""

    def __init__(self, serve):
        self.serve, self.connections, self.requests = serve, 0, 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._conn, args=(conn,), daemon=True).start()

    def _conn(self, conn):
        buf, n = b"", 0
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, buf = buf.split(b"\r\n\r\n", 1)
                length = int(re.search(rb"content-length: *(\d+)", head, re.I).group(1))
                while len(buf) < length:
                    buf += conn.recv(65536)
                buf = buf[length:]
                n += 1
                self.requests += 1
                if not self.serve(conn, n):
                    return

    def close(self):
        self.sock.close()


def answer(conn, n):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    return True


class Downstream(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.svc = Service(workers=1, env={"JOBS": "0", "DOWNSTREAM_TIMEOUT_MS": "400"}).start()

    @classmethod
    def tearDownClass(cls):
        cls.svc.__exit__(None, None, None)

    def call(self, port):
        return self.svc.request("GET", f"/test/downstream?url=http://127.0.0.1:{port}/x").json()

    def test_a_slow_answer_is_a_timeout_at_the_deadline_that_may_have_been_processed(self):
        def slow(conn, n):
            time.sleep(1.5)
            return False
        stub = StubServer(slow)
        r = self.call(stub.port)
        stub.close()
        self.assertEqual(r["kind"], "timeout", r)
        self.assertIs(r["maybe_sent"], True)
        self.assertIn("400 ms", r["message"])
        self.assertGreaterEqual(r["ms"], 390)
        self.assertLess(r["ms"], 900)

    def test_a_refused_connection_is_unavailable_and_provably_not_sent(self):
        r = self.call(free_port())
        self.assertEqual(r["kind"], "unavailable", r)
        self.assertIs(r["maybe_sent"], False)

    def test_a_dropped_kept_alive_connection_is_retried_once_on_a_fresh_one(self):
        def second_request_dropped(conn, n):
            if n == 1:
                return answer(conn, n)
            return False  # read, then closed without a byte: as if it had timed out idle
        stub = StubServer(second_request_dropped)
        self.assertEqual(self.call(stub.port)["status"], 200)
        r = self.call(stub.port)  # goes out on the kept-alive connection, which is dropped
        stub.close()
        self.assertEqual(r.get("status"), 200, r)
        self.assertEqual(stub.requests, 3)
        self.assertEqual(stub.connections, 2)

    def test_a_fresh_connection_dropped_after_the_request_is_not_retried(self):
        stub = StubServer(lambda conn, n: False)
        r = self.call(stub.port)
        stub.close()
        self.assertEqual(r["kind"], "timeout", r)
        self.assertIs(r["maybe_sent"], True)
        self.assertEqual(stub.requests, 1)


class ClientGone(unittest.TestCase):
    """A client that gives up: its GET's query is stopped on the server and its coroutine ends
    (client_connection_check_interval: within a second of the connection being closed)."""

    @classmethod
    def setUpClass(cls):
        cls.url = fresh_database("it_faults_gone")
        cls.svc = Service(database_url=cls.url, workers=1, env={"JOBS": "0", "DB_POOL_SIZE": "2"}).start()

    @classmethod
    def tearDownClass(cls):
        cls.svc.__exit__(None, None, None)

    def sleeping_backends(self):
        return int(psql(ADMIN_URL, "SELECT count(*) FROM pg_stat_activity WHERE datname = 'it_faults_gone' "
                                   "AND state = 'active' AND query LIKE '%pg_sleep%' "
                                   "AND application_name = 'orderservice'"))

    def logged(self, request_id, text):
        """Whether a line of the service's log names the request and holds text."""
        return any(request_id in line and text in line for line in self.svc.logs().splitlines())

    def get(self, conn, path, request_id):
        conn.request("GET", path, headers={"Authorization": "Bearer " + ADMIN_TOKEN, "X-Request-Id": request_id})

    # The tasks gauge is sampled every 100 ms and counts a scrape caught waiting on its own
    # queries, so these tests wait on exact signs instead: the sleeping query in pg_stat_activity,
    # the fixture's log line when its sleep starts, the request's access log line (a 499: the
    # coroutine unwound) once it ends.
    def test_a_get_whose_client_disconnects_stops_its_query_and_its_coroutine(self):
        conn = self.svc.connection(30)
        self.get(conn, "/test/pg-sleep/5000", "gone-query")
        started = time.monotonic()
        wait_until(lambda: self.sleeping_backends() == 1, what="the query to run")
        conn.sock.shutdown(socket.SHUT_RDWR)
        conn.close()
        wait_until(lambda: self.sleeping_backends() == 0, seconds=3, what="the server to stop the sleep")
        wait_until(lambda: self.logged("gone-query", '"status":499'), seconds=3, what="the coroutine to end")
        self.assertLess(time.monotonic() - started, 5, "the work ran as long as the sleep")
        wait_until(lambda: metric(self.svc, "orderservice_tasks_running") == 0, what="no task left")
        # The connection it was on is replaced: the next query works, and nothing was logged as lost.
        self.assertEqual(self.svc.request("GET", "/test/pg-sleep/1").status, 200)
        self.assertNotIn("database connection lost", self.svc.logs())
        self.assertNotIn("handler failed", self.svc.logs())

    def sleeping_get_ends_early(self, how, request_id):
        """A GET sleeping 5 s whose client shuts its socket `how`: its coroutine ends at once."""
        conn = self.svc.connection(30)
        self.get(conn, "/test/sleep/5000", request_id)
        started = time.monotonic()
        wait_until(lambda: self.logged(request_id, "test sleep started"), what="the sleep to start")
        conn.sock.shutdown(how)
        wait_until(lambda: self.logged(request_id, '"status":499'), seconds=3, what="the coroutine to end")
        self.assertLess(time.monotonic() - started, 5)
        wait_until(lambda: metric(self.svc, "orderservice_tasks_running") == 0, what="no task left")
        conn.close()

    def test_a_get_whose_client_disconnects_during_a_sleep_ends_early(self):
        self.sleeping_get_ends_early(socket.SHUT_RDWR, "gone-rdwr")

    def test_a_get_whose_client_only_shuts_its_sending_side_ends_early(self):
        # As in nginx, a client that says it sends no more has given up on the answer.
        self.sleeping_get_ends_early(socket.SHUT_WR, "gone-wr")

    def test_requests_pipelined_behind_a_waiting_get_are_answered_after_it_in_order(self):
        # The connection is watched while its GET waits: the bytes of the next requests that come
        # meanwhile stay for HTTP/1 to parse after the answer, and are not a client gone. The
        # first request's large header fills most of the connection's buffer, which it points into.
        auth = b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n"
        pad, long_value = b"p" * 6000, "v" * 9000
        with socket.create_connection(("127.0.0.1", self.svc.port), timeout=10) as s:
            s.sendall(b"GET /test/sleep/400 HTTP/1.1\r\nHost: x\r\nX-Request-Id: pipelined\r\nX-Pad: " + pad +
                      b"\r\n" + auth + b"\r\n")
            wait_until(lambda: self.logged("pipelined", "test sleep started"), what="the sleep to start")
            s.sendall(b"GET /test/echo/b/2 HTTP/1.1\r\nHost: x\r\nX-Test: " + long_value.encode() + b"\r\n" + auth +
                      b"\r\nGET /test/echo/c/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + auth + b"\r\n")
            chunks = []
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
        reply = b"".join(chunks)
        bodies = [json.loads(part.partition(b"\r\n\r\n")[2].split(b"HTTP/1.1 ")[0])
                  for part in reply.split(b"HTTP/1.1 200 OK")[1:]]
        self.assertEqual(len(bodies), 3, reply[:300])
        self.assertEqual(bodies[0], {"slept": 400})
        self.assertEqual((bodies[1]["path"], bodies[1]["header"]), ("/test/echo/b/2", long_value))
        self.assertEqual(bodies[2]["path"], "/test/echo/c/3")
        # Its access log line, written after the wait from what the request points to.
        wait_until(lambda: '"path":"/test/sleep/400","status":200' in self.svc.logs(), what="the access log line")


class Pipelines(unittest.TestCase):
    """Named autocommit statements of many requests share one connection (libpq's pipeline mode):
    a pool of one connection, a named statement that sleeps at the head of the pipeline, and
    requests sent while it sleeps. They are not queued for the connection (the acquire timeout is
    far below the sleep); each gets its own answer once the sleep is over."""

    ORDERS = 50

    @classmethod
    def setUpClass(cls):
        cls.url = migrated_database("it_faults_pipe")
        psql(cls.url, "INSERT INTO ordersapp_order (customer_id, order_status, payment_status, shipping_status, "
                      "order_total, subtotal, tax, shipping_fee) "
                      f"SELECT 100 + i, 'PENDING', 'PENDING', 'Pending', i, i, 0, 0 "
                      f"FROM generate_series(1, {cls.ORDERS}) i")
        cls.ids = [int(v) for v in psql(cls.url, "SELECT order_id FROM ordersapp_order ORDER BY order_id").split()]
        cls.svc = Service(database_url=cls.url, workers=1,
                          env={"JOBS": "0", "DB_POOL_SIZE": "1", "DB_PIPELINE_DEPTH": "64",
                               "DB_ACQUIRE_TIMEOUT_MS": "500", "LOG_LEVEL": "debug"}).start()

    @classmethod
    def tearDownClass(cls):
        cls.svc.__exit__(None, None, None)

    def backends(self, where=""):
        return int(psql(ADMIN_URL, "SELECT count(*) FROM pg_stat_activity WHERE datname = 'it_faults_pipe' "
                                   f"AND application_name = 'orderservice' {where}"))

    def concurrently(self, paths):
        """Sends every path at once, each on its own connection; returns the threads and their answers."""
        results = [None] * len(paths)

        def one(i):
            try:
                results[i] = self.svc.request("GET", paths[i])
            except OSError as e:
                results[i] = e
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(paths))]
        for t in threads:
            t.start()
        return threads, results

    def sleep_at_the_head(self, ms):
        """A named statement sleeping ms on the only connection; returns once the server runs it."""
        threads, results = self.concurrently([f"/test/pg-sleep/{ms}?named=1"])
        wait_until(lambda: self.backends("AND state = 'active' AND query LIKE '%pg_sleep%'") == 1,
                   what="the sleep to run")
        return threads[0], results

    def details_sent(self):
        return self.svc.logs().count("database read orders_details")

    def test_a_named_write_never_joins_a_pipeline(self):
        # A write may wait for a row lock as long as another transaction lasts, and would hold
        # up every statement behind it: only reads share. With a second connection, the read
        # joins the sleeping pipeline (same backend, answered after the sleep) and the write
        # (db.query) takes the idle connection and is answered while the sleep still runs.
        svc = Service(database_url=self.url, workers=1,
                      env={"JOBS": "0", "DB_POOL_SIZE": "2", "DB_PIPELINE_DEPTH": "64"}).start()
        try:
            slept = []
            sleeper = threading.Thread(target=lambda: slept.append(svc.request("GET", "/test/pg-sleep/3000?named=1")))
            sleeper.start()
            wait_until(lambda: self.backends("AND state = 'active' AND query LIKE '%pg_sleep%'") == 1,
                       what="the sleep to run")
            read = []
            reader = threading.Thread(target=lambda: read.append(svc.request("GET", "/test/divide/4")))
            reader.start()
            write = svc.request("GET", "/test/divide/5?write=1")
            self.assertEqual(200, write.status, write.body)
            self.assertTrue(sleeper.is_alive(), "the write was answered only after the sleep")
            sleeper.join()
            reader.join()
            self.assertEqual(200, read[0].status, read[0].body)
            self.assertEqual(slept[0].json()["pid"], read[0].json()["pid"])
            self.assertNotEqual(slept[0].json()["pid"], write.json()["pid"])
        finally:
            svc.__exit__(None, None, None)

    def test_fifty_concurrent_details_share_the_one_connection_and_each_gets_its_own_order(self):
        sleeper, slept = self.sleep_at_the_head(2000)
        threads, results = self.concurrently([f"/v1/orders/{i}/details/" for i in self.ids])
        for t in threads + [sleeper]:
            t.join()
        self.assertEqual(slept[0].status, 200, slept[0].body)
        for order_id, r in zip(self.ids, results):
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.json()["order_id"], order_id)
            self.assertEqual(r.json()["customer_id"], 100 + self.ids.index(order_id) + 1)
        self.assertEqual(self.backends(), 1)

    def test_a_failing_statement_fails_only_its_request(self):
        sleeper, _ = self.sleep_at_the_head(1500)
        ns = [i % 5 for i in range(30)]  # every fifth one divides by zero
        threads, results = self.concurrently([f"/test/divide/{n}" for n in ns] + [f"/v1/orders/{self.ids[0]}/details/"])
        for t in threads + [sleeper]:
            t.join()
        for n, r in zip(ns, results):
            if n == 0:
                self.assertEqual(r.status, 500, r.body)
                self.assertEqual(r.json()["details"]["sqlstate"], "22012")
            else:
                self.assertEqual(r.status, 200, r.body)
                self.assertEqual(r.json()["q"], 1000 // n)
        self.assertEqual(results[-1].status, 200)
        self.assertEqual(results[-1].json()["order_id"], self.ids[0])

    def test_requests_whose_clients_disconnect_leave_the_pipeline_and_its_connection_alone(self):
        pid = self.svc.request("GET", "/test/pg-sleep/1?named=1").json()["pid"]
        lost = self.svc.logs().count("database connection lost")
        # The statement at the head of the pipeline and one behind it lose their clients.
        gone = []
        for path in ("/test/pg-sleep/1500?named=1", "/test/divide/4"):
            conn = self.svc.connection(30)
            conn.request("GET", path, headers={"Authorization": "Bearer " + ADMIN_TOKEN})
            gone.append(conn)
            if not path.startswith("/test/divide"):
                wait_until(lambda: self.backends("AND state = 'active' AND query LIKE '%pg_sleep%'") == 1,
                           what="the sleep to run")
        sent = self.details_sent()
        threads, results = self.concurrently([f"/v1/orders/{i}/details/" for i in self.ids[:10]])
        wait_until(lambda: self.details_sent() == sent + 10, what="the details to be sent")
        for conn in gone:
            conn.sock.shutdown(socket.SHUT_RDWR)
            conn.close()
        for t in threads:
            t.join()
        for order_id, r in zip(self.ids, results):
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.json()["order_id"], order_id)
        # The same backend still serves: the sleep ran to its end, nothing was closed or cancelled.
        self.assertEqual(self.svc.request("GET", "/test/pg-sleep/1?named=1").json()["pid"], pid)
        logs = self.svc.logs()
        self.assertEqual(logs.count("database connection lost"), lost)
        self.assertNotIn("ignored a completion", logs)

    def test_a_connection_killed_with_statements_in_flight_fails_exactly_those_with_503(self):
        pid = self.svc.request("GET", "/test/pg-sleep/1?named=1").json()["pid"]
        sleeper, slept = self.sleep_at_the_head(3000)
        sent = self.details_sent()
        threads, results = self.concurrently([f"/v1/orders/{i}/details/" for i in self.ids[:20]])
        wait_until(lambda: self.details_sent() == sent + 20, what="the details to be in the pipeline")
        self.assertEqual(int(psql(ADMIN_URL, f"SELECT count(pg_terminate_backend({pid}))")), 1)
        for t in threads + [sleeper]:
            t.join()
        self.assertEqual(slept[0].status, 503, slept[0].body)
        self.assertEqual([r.status for r in results], [503] * 20)
        # The next requests get a new connection.
        r = wait_until(lambda: (lambda r: r if r.status == 200 else None)(
            self.svc.request("GET", f"/v1/orders/{self.ids[0]}/details/")), what="a details request to work again")
        self.assertEqual(r.json()["order_id"], self.ids[0])
        self.assertNotEqual(self.svc.request("GET", "/test/pg-sleep/1?named=1").json()["pid"], pid)
        self.assertNotIn("ignored a completion", self.svc.logs())

    def test_a_transaction_gets_the_connection_while_pipelined_requests_keep_coming(self):
        # One connection, details without pause from eight clients: a transaction queued for the
        # connection stops the pipeline from growing, gets the connection once it drains, and
        # commits well within the acquire timeout; the details all succeed meanwhile.
        with Load(lambda: self.svc.request("GET", f"/v1/orders/{self.ids[1]}/details/").status, threads=8) as load:
            wait_until(lambda: len(load.results) > 50, what="details traffic")
            for i in range(10):
                r = self.svc.request("POST", "/test/tx", body={"value": f"pipe-{i}"})
                self.assertEqual(r.status, 200, r.body)
                self.assertTrue(r.json()["ok"], r.body)
        self.assertEqual(set(load.results), {200})
        self.assertEqual(psql(self.url, "SELECT count(*) FROM test_tx WHERE v LIKE 'pipe-%'"), "10")


if __name__ == "__main__":
    unittest.main()
