"""Read replicas (DATABASE_READ_URL) against a real streaming standby: a private primary cluster
(tools/pgcluster), a standby made from it with `pg_basebackup -R`, and the service pointed at
both. Which pool served a read is told by the service's debug log ("database read <statement>
on the replica|primary") and, better, by what the answer holds: with replay paused on the
standby, an order the primary has is missing from a read the replica served."""
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import unittest

from harness import PGCLUSTER, Service, free_port, psql, run_binary, start_standins, wait_until

PG_PORT = int(os.environ["PG_PORT"])
ORDER = {"customer_id": 4242, "items": [{"product_id": 3, "sku": "SKU0003", "quantity": 1, "unit_price": "10.00"}]}


def spare_port(preferred):
    """preferred when nothing listens there (the clusters of one test run sit beside its
    PG_PORT), else any free port."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def pg_bindir():
    """Where tools/pgcluster finds the server binaries."""
    if os.environ.get("PGCLUSTER_BINDIR"):
        return os.environ["PGCLUSTER_BINDIR"]
    return sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))[-1]


def as_owner(*cmd):
    """Runs a PostgreSQL program as the clusters' owner (postgres when we are root)."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(prefix + list(cmd), check=True, capture_output=True, text=True, cwd="/")


class ReadReplica(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="os-replica-", dir="/tmp")
        os.chmod(cls.dir, 0o755)
        cls.primary_dir = os.path.join(cls.dir, "primary")
        cls.standby_dir = os.path.join(cls.dir, "standby")
        cls.primary_port = spare_port(PG_PORT + 2)
        cls.primary = cls.pgcluster("start", cls.primary_dir, cls.primary_port)
        assert run_binary("migrate", env={"DATABASE_URL": cls.primary}).returncode == 0
        # The standby: a base backup of the primary with its WAL, -R writing standby.signal and
        # primary_conninfo; pgcluster then starts it on its own port and socket directory.
        os.mkdir(cls.standby_dir, 0o700)
        if os.geteuid() == 0:
            shutil.chown(cls.standby_dir, "postgres", "postgres")
        as_owner(os.path.join(pg_bindir(), "pg_basebackup"), "-h", "127.0.0.1", "-p", str(cls.primary_port),
                 "-U", "postgres", "-D", cls.standby_dir, "-R", "-X", "stream", "--no-sync", "--checkpoint=fast")
        cls.standby_port = spare_port(PG_PORT + 3)
        cls.standby = cls.start_standby()
        cls.standin, cls.standin_env = start_standins()

    @classmethod
    def tearDownClass(cls):
        cls.standin.__exit__(None, None, None)
        for d in (cls.standby_dir, cls.primary_dir):
            subprocess.run([PGCLUSTER, "stop", d], capture_output=True)
        shutil.rmtree(cls.dir, ignore_errors=True)

    @staticmethod
    def pgcluster(action, directory, port=None):
        args = [PGCLUSTER, action, directory] + ([str(port)] if port else [])
        return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()

    @classmethod
    def start_standby(cls):
        url = cls.pgcluster("start", cls.standby_dir, cls.standby_port)
        wait_until(lambda: psql(url, "SELECT status FROM pg_stat_wal_receiver") == "streaming",
                   what="the standby to stream from the primary")
        # Until it replays a commit, a standby cannot tell how old its data is (the service
        # then keeps reads off it once anything is pending): give it one.
        psql(cls.primary, "SELECT txid_current()")
        wait_until(lambda: psql(url, "SELECT pg_last_xact_replay_timestamp() IS NOT NULL") == "t",
                   what="the standby to replay a commit")
        return url

    def setUp(self):
        self.resume_replay()

    def pause_replay(self):
        psql(self.standby, "SELECT pg_wal_replay_pause()")
        wait_until(lambda: psql(self.standby, "SELECT pg_get_wal_replay_pause_state()") == "paused",
                   what="replay to pause")

    def resume_replay(self):
        psql(self.standby, "SELECT pg_wal_replay_resume()")

    def service(self, max_lag_ms):
        env = dict(self.standin_env, DATABASE_READ_URL=self.standby, READ_MAX_LAG_MS=str(max_lag_ms),
                   LOG_LEVEL="debug", BREAKER_FAILURES="1000")
        svc = Service(database_url=self.primary, workers=1, env=env).start()
        self.addCleanup(svc.__exit__, None, None, None)
        wait_until(lambda: "read replica in use" in svc.logs(), what="the first lag probe to answer")
        return svc

    @staticmethod
    def last_read(svc):
        """Which pool served the latest db.read (one worker: the reads are in its log in order)."""
        found = re.findall(r"database read \S+ on the (replica|primary)", svc.logs())
        return found[-1] if found else None

    def details(self, svc, oid):
        return svc.request("GET", f"/v1/orders/{oid}/").status

    def listed(self, svc):
        r = svc.request("GET", f"/v1/orders/?customer_id={ORDER['customer_id']}&page_size=100")
        self.assertEqual(r.status, 200, r.body)
        return {o["order_id"] for o in r.json()["results"]}

    def test_reads_come_from_the_replica_and_writes_with_their_own_answers_from_the_primary(self):
        svc = self.service(max_lag_ms=600000)  # a budget no pause in this test reaches
        self.pause_replay()
        r = svc.request("POST", "/v1/orders/create/", body=ORDER)
        # The create wrote on the primary and answered from it: the order, as the saga left it.
        self.assertEqual(r.status, 201, r.body)
        oid = r.json()["order_id"]
        self.assertEqual(r.json()["order_status"], "CONFIRMED")
        self.assertEqual(psql(self.primary, f"SELECT order_status FROM ordersapp_order WHERE order_id = {oid}"),
                         "CONFIRMED")
        # The replica has not replayed it: details, list and history, served there, do not see it.
        self.assertEqual(self.details(svc, oid), 404)
        self.assertNotIn(oid, self.listed(svc))
        history = svc.request("GET", f"/v1/orders/my-orders/{ORDER['customer_id']}/")
        self.assertEqual(history.status, 200, history.body)
        self.assertNotIn(oid, [o["order_id"] for o in history.json()["results"]])
        # A cancel writes on the primary and its answer reads there too.
        r = svc.request("POST", f"/v1/orders/{oid}/cancel/")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["order"]["order_status"], "CANCELLED")
        self.resume_replay()
        wait_until(lambda: self.details(svc, oid) == 200, what="the replica to replay the order")
        self.assertIn(oid, self.listed(svc))
        logs = svc.logs()
        self.assertRegex(logs, r"database read orders_details_\w+ on the replica")
        self.assertNotIn(" on the primary", logs)

    def test_a_replica_lagging_beyond_the_budget_gives_its_reads_to_the_primary(self):
        svc = self.service(max_lag_ms=300)
        self.pause_replay()
        r = svc.request("POST", "/v1/orders/create/", body=ORDER)
        self.assertEqual(r.status, 201, r.body)
        oid = r.json()["order_id"]
        # Once replay is further behind than 300 ms, the probe takes the replica out: the
        # primary serves the reads, and they see the order.
        wait_until(lambda: self.details(svc, oid) == 200, what="reads to fall back to the primary")
        self.assertIn(oid, self.listed(svc))
        self.assertIn("reads go to the primary: the replica is lagging", svc.logs())
        self.assertRegex(svc.logs(), r"database read orders_details_\w+ on the primary")
        # Caught up again, the replica takes the reads back (and, being within the budget,
        # may still miss the newest writes for a moment: wait for it to have the order).
        self.resume_replay()
        wait_until(lambda: self.details(svc, oid) == 200 and self.last_read(svc) == "replica",
                   what="the replica back in use, with the order")

    def test_a_stopped_replica_gives_its_reads_to_the_primary_without_a_failed_request(self):
        svc = self.service(max_lag_ms=600000)
        oid = svc.request("POST", "/v1/orders/create/", body=ORDER).json()["order_id"]
        wait_until(lambda: self.details(svc, oid) == 200, what="the replica to replay the order")
        try:
            self.pgcluster("stop", self.standby_dir)
            # From the moment it is gone: every read answers, from the primary.
            for _ in range(20):
                self.assertIn(oid, self.listed(svc))
                self.assertEqual(self.details(svc, oid), 200)
            wait_until(lambda: "reads go to the primary: " in svc.logs(), what="the probe to notice")
            self.assertEqual(svc.request("GET", "/health/").status, 200, "the replica is not needed to serve")
        finally:
            type(self).standby = self.start_standby()
        wait_until(lambda: svc.logs().count("read replica in use") >= 2, seconds=30, what="the replica back in use")


if __name__ == "__main__":
    unittest.main()
