"""The core under a mixed storm: 20,000 requests mixing queries, transactions, sleeps,
downstream calls (answered and timing out), clients that disconnect mid-request and an
exhausted pool, with a reload (SIGHUP) every second. Every answer must be a 200 or a 503,
the service must stay up, drain and exit 0 on SIGTERM, and (in the ASan+UBSan build, which
aborts on the first report) its output must hold no sanitizer report."""
import asyncio
import random
import re
import signal
import threading
import time
import unittest

from harness import ADMIN_TOKEN, Service, fresh_database, run_binary, start_standins, wait_until

TOTAL = 20000
CLIENTS = 48
TIME_LIMIT_S = 60


async def exchange(reader, writer, path):
    writer.write(f"GET {path} HTTP/1.1\r\nHost: stress\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


class Storm(unittest.TestCase):
    def test_twenty_thousand_mixed_requests_with_reloads_every_second(self):
        url = fresh_database("it_stress")
        self.assertEqual(run_binary("migrate", env={"DATABASE_URL": url}).returncode, 0)
        standin, env = start_standins()
        base = env["INVENTORY_SERVICE_URL"].rsplit("/", 1)[0]
        # reserve answers after the downstream deadline: those calls time out.
        self.assertEqual(standin.request("PUT", "/_behaviour", body={"reserve": {"delay_ms": 400}}).status, 200)
        env.update(DB_POOL_SIZE="2", DB_PIPELINE_DEPTH="8", DB_ACQUIRE_TIMEOUT_MS="150", DOWNSTREAM_TIMEOUT_MS="200",
                   RELOAD_POLL_MS="0", OUTBOX_EVERY_MS="100", LOG_LEVEL="warn")
        paths = [
            lambda: f"/test/pg-sleep/{random.randint(1, 15)}",
            # named statements: they share the connections (pipelines) with each other, between
            # the transactions and the unnamed statements that need one to themselves
            lambda: f"/test/pg-sleep/{random.randint(1, 15)}?named=1",
            lambda: f"/test/divide/{random.randint(1, 9)}",
            lambda: "/test/query",
            lambda: f"/test/tx-hold?ms={random.randint(0, 5)}",
            lambda: f"/test/sleep/{random.randint(1, 15)}",
            lambda: f"/test/downstream?url={base}/notification/",
            lambda: f"/test/downstream?url={base}/inventory/reserve/",
            lambda: "/health/live/",
        ]
        with standin, Service(database_url=url, workers=2, env=env) as svc:
            statuses, dropped, unexpected = {}, [0], []
            remaining = [TOTAL]
            stop_reloads = threading.Event()

            def reloads():
                while not stop_reloads.wait(1.0):
                    svc.proc.send_signal(signal.SIGHUP)

            async def client(rng):
                reader = writer = None
                while remaining[0] > 0:
                    remaining[0] -= 1
                    # Now and then a query holds a connection past the acquire timeout: the
                    # requests queued behind it on that worker get 503s.
                    path = "/test/pg-sleep/250" if rng.random() < 0.01 else rng.choice(paths)()
                    if rng.random() < 0.08:
                        # A client that sends a request and goes away before the answer.
                        _, w = await asyncio.open_connection("127.0.0.1", svc.port)
                        w.write(f"GET {path} HTTP/1.1\r\nHost: stress\r\n\r\n".encode())
                        await w.drain()
                        w.close()
                        dropped[0] += 1
                        continue
                    if writer is None:
                        reader, writer = await asyncio.open_connection("127.0.0.1", svc.port)
                    status = await asyncio.wait_for(exchange(reader, writer, path), 10)
                    statuses[status] = statuses.get(status, 0) + 1
                    if status not in (200, 503):
                        unexpected.append((status, path))
                if writer is not None:
                    writer.close()

            async def main():
                await asyncio.gather(*(client(random.Random(i)) for i in range(CLIENTS)))

            reloader = threading.Thread(target=reloads)
            reloader.start()
            started = time.monotonic()
            try:
                asyncio.run(main())
            finally:
                stop_reloads.set()
                reloader.join()
            elapsed = time.monotonic() - started
            reloads_done = int(re.search(rb'orderservice_script_reloads_total\{result="ok"\} (\d+)',
                                         svc.request("GET", "/metrics").body).group(1))
            print(f"\nstorm: {TOTAL} requests in {elapsed:.1f} s ({TOTAL / elapsed:.0f}/s), "
                  f"{dropped[0]} dropped by their clients, statuses {statuses}, {reloads_done} worker reloads")
            self.assertIsNone(svc.proc.poll(), "the service died under the storm")
            self.assertEqual(sum(statuses.values()) + dropped[0], TOTAL)
            self.assertEqual(unexpected[:10], [])
            self.assertGreater(statuses.get(200, 0), TOTAL // 2)
            self.assertGreater(statuses.get(503, 0), 0, "the pool was never exhausted")
            self.assertGreaterEqual(reloads_done, 3)
            self.assertLess(elapsed, TIME_LIMIT_S)
            # Nothing leaked: the pool drains and serves again.
            wait_until(lambda: b"orderservice_db_pool_busy 0\n" in svc.request("GET", "/metrics").body,
                       what="every connection back in the pool")
            wait_until(lambda: svc.request("GET", "/health/").status == 200, what="healthy after the storm")
            self.assertEqual(svc.stop(), 0)
            logs = svc.logs()
            for report in ("ERROR: AddressSanitizer", "runtime error", "ignored a completion"):
                self.assertNotIn(report, logs)


if __name__ == "__main__":
    unittest.main()
