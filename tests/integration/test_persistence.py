"""The database layer: the non-blocking pool, query results, transactions, /health/, and
behaviour through a PostgreSQL outage (a real cluster stopped and restarted)."""
import asyncio
import os
import threading
import time
import unittest

from harness import ADMIN_TOKEN, SOURCE_DIR, Load, PrivateClusterCase, Service, fresh_database, psql, run_binary, wait_until



async def _get(port, path):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n"
                 "Connection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    return int(data.split(b" ", 2)[1])


def concurrent_gets(port, path, n):
    """Sends n requests at once on n connections; returns their statuses."""
    async def main():
        return await asyncio.gather(*(_get(port, path) for _ in range(n)))
    return asyncio.run(main())


class Queries(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.url = fresh_database("it_persistence")
        cls.svc = Service(database_url=cls.url, workers=1, env={"MIGRATE_ON_START": "1"}).start()

    @classmethod
    def tearDownClass(cls):
        cls.svc.__exit__(None, None, None)

    def test_serve_migrates_on_start(self):
        self.assertEqual(psql(self.url, "SELECT count(*) FROM schema_migrations"),
                         str(len([f for f in os.listdir(os.path.join(SOURCE_DIR, "sql/migrations"))
                                  if f.endswith(".sql")])))

    def test_health_is_healthy_when_the_database_answers(self):
        r = self.svc.request("GET", "/health/")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), {"status": "healthy"})

    def test_values_come_back_typed(self):
        r = self.svc.request("GET", "/test/query?v=caf%C3%A9")
        self.assertEqual(r.status, 200)
        row = r.json()
        self.assertEqual(row["big"], 42)
        self.assertEqual(row["small"], 7)
        self.assertEqual(row["money"], "12.50")
        self.assertIs(row["yes"], True)
        self.assertIsNone(row["nothing"])
        self.assertIs(row["nothing_is_null"], True)
        self.assertEqual(row["at"], "2024-09-18T14:40:32+00:00")
        self.assertEqual(row["echoed"], "café")

    def test_transactions_commit_roll_back_and_roll_back_on_error(self):
        self.assertEqual(self.svc.request("POST", "/test/tx", body={"value": "kept"}).json()["ok"], True)
        self.assertEqual(self.svc.request("POST", "/test/tx", body={"value": "refused", "fail": True}).status, 200)
        r = self.svc.request("POST", "/test/tx", body={"value": "raised", "raise": True})
        self.assertEqual(r.json()["ok"], False)
        self.assertIn("raised inside the transaction", r.json()["err"])
        self.assertEqual(psql(self.url, "SELECT string_agg(v, ',') FROM test_tx"), "kept")
        # The connection went back to the pool clean: the next request works.
        self.assertEqual(self.svc.request("GET", "/health/").status, 200)

    def test_a_slow_query_does_not_delay_other_requests_on_the_same_worker(self):
        result = {}

        def slow():
            result["r"] = self.svc.request("GET", "/test/pg-sleep/1000")
            result["at"] = time.monotonic()

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.2)
        health = self.svc.request("GET", "/health/")
        health_at = time.monotonic()
        t.join()
        self.assertEqual(health.status, 200)
        self.assertEqual(result["r"].status, 200)
        self.assertLess(health_at, result["at"])


class PreparedStatements(unittest.TestCase):
    """A connection prepares each named statement once, up to core/db.c's PREPARED_MAX. Past
    those, a held connection (db.query) deallocates its least recently used statement to
    prepare a new one, and a pipeline (db.read with DB_PIPELINE_DEPTH) runs the new one
    unnamed; either way every statement answers. All on the one connection."""
    PREPARED_MAX = 64

    @classmethod
    def setUpClass(cls):
        cls.url = fresh_database("it_prepared")
        cls.svc = Service(database_url=cls.url, workers=1,
                          env={"MIGRATE_ON_START": "1", "JOBS": "0", "DB_POOL_SIZE": "1",
                               "DB_PIPELINE_DEPTH": "8"}).start()

    @classmethod
    def tearDownClass(cls):
        cls.svc.__exit__(None, None, None)

    def prepared(self, path):
        """(statements prepared on the connection, whether the last text is one of them)"""
        r = self.svc.request("GET", path)
        self.assertEqual(r.status, 200, r.body)
        return r.json()["prepared"], r.json()["last_prepared"]

    def test_statements_are_prepared_up_to_the_cap_and_run_past_it(self):
        first, last = self.prepared("/test/prepared/5")
        self.assertTrue(last)
        self.assertGreaterEqual(first, 5)
        # the same five again: nothing new to prepare
        self.assertEqual((first, True), self.prepared("/test/prepared/5"))
        # 200 texts, each answering its own value: a pipeline fills the cap, then runs the rest
        # unnamed; the held connection makes room for each new one
        self.assertEqual((self.PREPARED_MAX, False), self.prepared("/test/prepared/200?read=1"))
        self.assertEqual((self.PREPARED_MAX, True), self.prepared("/test/prepared/200"))

    def test_a_full_cache_in_an_aborted_transaction_stays_consistent(self):
        r = self.svc.request("GET", "/test/prepared-aborted")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual({"failed_with": "25P02"}, r.json())  # in_failed_sql_transaction


class Pool(unittest.TestCase):
    def test_500_concurrent_queries_through_a_pool_of_2_all_complete(self):
        url = fresh_database("it_pool")
        with Service(database_url=url, workers=1,
                     env={"DB_POOL_SIZE": "2", "DB_ACQUIRE_TIMEOUT_MS": "60000"}) as svc:
            statuses = concurrent_gets(svc.port, "/test/pg-sleep/2", 500)
            self.assertEqual(statuses, [200] * 500)
            connections = psql(url, "SELECT count(*) FROM pg_stat_activity "
                                    "WHERE datname = 'it_pool' AND application_name = 'orderservice'")
            self.assertEqual(connections, "2")

    def test_waiting_longer_than_the_acquire_timeout_is_503(self):
        url = fresh_database("it_pool_timeout")
        with Service(database_url=url, workers=1,
                     env={"DB_POOL_SIZE": "1", "DB_ACQUIRE_TIMEOUT_MS": "200"}) as svc:
            t = threading.Thread(target=svc.request, args=("GET", "/test/pg-sleep/1500"))
            t.start()
            time.sleep(0.3)
            r = svc.request("GET", "/health/")
            t.join()
            self.assertEqual(r.status, 503)
            self.assertEqual(r.json()["status"], "unhealthy")
            self.assertIn("200 ms", r.json()["error"])
            self.assertEqual(svc.request("GET", "/health/").status, 200)


class Outage(PrivateClusterCase):
    """A private cluster, so stopping it disturbs no other test."""

    @staticmethod
    def wait_for(svc, status):
        def health():
            r = svc.request("GET", "/health/")
            return r if r.status == status else None
        return wait_until(health, seconds=20, what=f"/health/ to answer {status}")

    def test_database_restart_during_traffic(self):
        url = self.pg("start")
        self.assertEqual(run_binary("migrate", env={"DATABASE_URL": url}).returncode, 0)
        with Service(database_url=url, workers=2, env={"DB_POOL_SIZE": "3"}) as svc:
            self.wait_for(svc, 200)
            with Load(lambda: svc.request("GET", "/test/query").status) as load:
                time.sleep(0.5)
                self.pg("stop")
                down = self.wait_for(svc, 503)
                self.assertEqual(down.json()["status"], "unhealthy")
                outage_statuses = concurrent_gets(svc.port, "/test/query", 20)
                self.assertEqual(set(outage_statuses), {503})
                self.pg("start")
                self.wait_for(svc, 200)
                time.sleep(0.5)
            statuses = load.results
            self.assertIsNone(svc.proc.poll(), "the service must survive the outage")
            self.assertTrue(set(statuses) <= {200, 503}, set(statuses))
            self.assertIn(503, statuses)
            self.assertEqual(statuses[-1], 200)
            self.assertEqual(svc.stop(), 0)

    def test_service_starts_while_the_database_is_down_and_recovers(self):
        url = f"postgresql://postgres@127.0.0.1:{self.pgport}/orderservice"
        with Service(database_url=url, workers=1) as svc:
            r = svc.request("GET", "/health/")
            self.assertEqual(r.status, 503)
            self.assertIn("error", r.json())
            self.pg("start")
            self.wait_for(svc, 200)


if __name__ == "__main__":
    unittest.main()
