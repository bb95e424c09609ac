"""Settings in one place: every variable of README's configuration table is parsed by the C
core, and a bad value of any of them exits 2 naming it, before anything listens. A second
instance on a port another process holds refuses to start and leaves the first serving."""
import os
import re
import socket
import unittest

from harness import SOURCE_DIR, Service, free_port, run_binary

# One bad value per setting; test_every_setting_has_a_bad_value keeps this list and the
# README table (which is what operators read) in step.
BAD = {
    "HOST": "h" * 300,
    "PORT": "eighty",
    "WORKERS": "0",
    "ROUTES_FILE": "r" * 2000,
    "SCRIPTS_DIR": "s" * 2000,
    "LOG_LEVEL": "loud",
    "ACCESS_LOG_BUFFER_BYTES": "16777217",
    "ACCESS_LOG_FLUSH_MS": "0",
    "DATABASE_URL": "d" * 3000,
    "DB_POOL_SIZE": "-1",
    "DB_ACQUIRE_TIMEOUT_MS": "abc",
    "DB_STATEMENT_TIMEOUT_MS": "1e3",
    "DB_CONNECT_TIMEOUT_MS": "soon",
    "DB_PIPELINE_DEPTH": "1001",
    "DATABASE_READ_URL": "d" * 3000,
    "READ_MAX_LAG_MS": "-1",
    "MIGRATE_ON_START": "yes",
    "MIGRATIONS_DIR": "m" * 2000,
    "SEED_DIR": "s" * 2000,
    "STATIC_DIR": "s" * 2000,
    "SWAGGER_UI_DIR": "w" * 2000,
    "SHUTDOWN_TIMEOUT_MS": "-5",
    "SHUTDOWN_READY_DELAY_MS": "3s",
    "TAX_RATE": "5%",
    "SHIPPING_FEE": "1.234",
    "INVENTORY_SERVICE_URL": "ftp://inventory/",
    "PAYMENT_SERVICE_URL": "not a url",
    "SHIPPING_SERVICE_URL": "https://shipping/",
    "NOTIFICATION_SERVICE_URL": "http://",
    "DOWNSTREAM_TIMEOUT_MS": "0",
    "DOWNSTREAM_POOL_SIZE": "x",
    "BREAKER_FAILURES": "x",
    "BREAKER_COOLDOWN_MS": "5s",
    "JOBS": "2",
    "OUTBOX_EVERY_MS": "abc",
    "OUTBOX_BACKOFF_BASE_MS": "0",
    "OUTBOX_BACKOFF_MAX_MS": "10",  # below the base (1000)
    "SAGA_RECOVERY_EVERY_MS": "1.5",
    "SAGA_GRACE_MS": "-5",
    "OUTBOX_LEASE_MS": "10",
    "OUTBOX_CONCURRENCY": "0",
    "RECONCILE_WINDOW_MS": "forever",
    "RELOAD_POLL_MS": "-1",
    "STANDIN_LATENCY_MS": "fast",
    "STANDIN_FAILURE_RATE": "1.5",
    "STANDIN_CALL_LOG": "0",
    "LUAJIT_OFF": "maybe",
    "JWT_SECRET": "too-short",
    "JWT_PUBLIC_KEY_FILE": "/nonexistent/key.pem",
    "JWT_ISSUER": "i" * 300,
    "JWT_AUDIENCE": "a" * 300,
    "ORDERSERVICE_ENV": "staging",
}


def readme_settings():
    with open(os.path.join(SOURCE_DIR, "README.md")) as f:
        text = f.read()
    table = text.split("## Configuration", 1)[1].split("\n\n")[2]
    names = []
    for row in table.splitlines()[2:]:
        names += re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])
    return names


class BadSettings(unittest.TestCase):
    def test_every_setting_has_a_bad_value(self):
        self.assertEqual(sorted(readme_settings()), sorted(BAD))

    def test_each_bad_setting_exits_2_naming_it(self):
        for name, value in BAD.items():
            with self.subTest(name=name, value=value[:20]):
                env = {"PORT": str(free_port()), "WORKERS": "1", name: value}
                r = run_binary("serve", env=env, timeout=20)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(name, r.stderr)

    def test_good_non_default_values_start(self):
        env = {"BREAKER_FAILURES": "7", "OUTBOX_EVERY_MS": "100", "SAGA_GRACE_MS": "1", "STANDIN_FAILURE_RATE": "0.25",
               "INVENTORY_SERVICE_URL": "http://127.0.0.1:9/inventory/", "LUAJIT_OFF": "1", "TAX_RATE": "0.2"}
        with Service(env=env) as svc:
            self.assertEqual(svc.request("GET", "/health/live/").status, 200)


class BusyPort(unittest.TestCase):
    def test_second_instance_on_a_busy_port_exits_with_a_clear_message(self):
        with Service(workers=2) as first:
            r = run_binary("serve", env={"PORT": str(first.port), "HOST": "127.0.0.1", "WORKERS": "2"}, timeout=20)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn(f"127.0.0.1:{first.port}", r.stderr)
            self.assertIn("in use", r.stderr)
            # The first still answers every request (none went to a half-started second one).
            for _ in range(50):
                self.assertEqual(first.request("GET", "/health/live/").status, 200)

    def test_port_held_by_a_foreign_listener_is_refused(self):
        with socket.socket() as holder:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            port = holder.getsockname()[1]
            r = run_binary("serve", env={"PORT": str(port), "HOST": "127.0.0.1", "WORKERS": "1"}, timeout=20)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn(f"127.0.0.1:{port}", r.stderr)


if __name__ == "__main__":
    unittest.main()
