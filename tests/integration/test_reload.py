"""Hot reload: the service picks up edited scripts without a restart and without failing a
request, a broken script never replaces a working one, the workers switch to a new version
together, and /metrics shows the live generation and the old ones still draining."""
import http.client
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import unittest

from harness import SOURCE_DIR, Load, Service, fresh_database, wait_until

ROUTES = """
local decl = dofile(os.getenv("SOURCE_DIR") .. "/routes.lua")
table.insert(decl.routes, { method = "GET", path = "/test/version", handler = "testing.version" })
table.insert(decl.routes, { method = "GET", path = "/test/sleep/{ms:int}", handler = "testing.sleep" })
return decl
"""

VERSIONED = """
local async = require("lib.async")
local C = require("lib.core")
local log = require("lib.log")
local response = require("lib.response")
local _M = {}
function _M.version() return response.json(200, { version = %d, worker = C.os_worker_id() }) end
function _M.sleep(req)
    log.info("test sleep started")
    async.sleep(req.params.ms)
    return response.json(200, { version = %d })
end
return _M
"""

# Worker 1 stops in the middle of loading the routes while HOLD exists, until GO exists
# (neither is under SCRIPTS_DIR, so neither is a reload): a test's edit lands mid-build.
HELD_ROUTES = """
local C = require("lib.core")
local function exists(path)
    local f = io.open(path)
    if f then f:close() end
    return f ~= nil
end
if C.os_worker_id() == 1 and exists(os.getenv("OS_TEST_HOLD_FILE")) then
    while not exists(os.getenv("OS_TEST_GO_FILE")) do end
end
""" + ROUTES


# routes.lua's own jobs replaced by one that completes its cycles on worker 0 only.
JOB_ROUTES = ROUTES.replace("return decl", """decl.jobs = { tick = { handler = "testing.tick", every_ms = 100%s } }
return decl""")
TICK = VERSIONED.replace("return _M", """function _M.tick()
    if C.os_worker_id() == 1 then return nil, "refused on worker 1" end
    return true
end
return _M""")


class Reload(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="os-reload-")
        self.scripts = os.path.join(self.dir, "scripts")
        shutil.copytree(os.path.join(SOURCE_DIR, "scripts"), self.scripts)
        self.routes = os.path.join(self.dir, "routes.lua")
        with open(self.routes, "w") as f:
            f.write(ROUTES)
        self.write_version(1)

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def write_version(self, n, text=None):
        path = os.path.join(self.scripts, "handlers", "testing.lua")
        with open(path, "w") as f:
            f.write(text if text is not None else VERSIONED % (n, n))
        # mtimes have a coarse grain on some filesystems: make each edit visibly newer
        t = time.time() + n
        os.utime(path, (t, t))

    def version(self, svc):
        r = svc.request("GET", "/test/version")
        self.assertEqual(r.status, 200, r.body)
        return r.json()["version"]

    def timed_call(self, svc):
        """GET /test/version on a new connection (so calls spread over the workers): when it was
        sent and answered, the version and the worker that answered."""
        conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=30)
        try:
            sent = time.monotonic()
            r = svc.request("GET", "/test/version", conn=conn)
            received = time.monotonic()
        finally:
            conn.close()
        self.assertEqual(r.status, 200, r.body)
        return sent, received, r.json()["version"], r.json()["worker"]

    def assert_versions_in_order(self, results):
        """Once any answer of version n has been received, no request sent after it got an older
        version, whichever worker served it."""
        for n in sorted({v for _, _, v, _ in results})[1:]:
            first_new = min(received for _, received, v, _ in results if v >= n)
            late_old = [(round(sent - first_new, 4), v, w) for sent, _, v, w in results if v < n and sent > first_new]
            self.assertEqual([], late_old, f"requests sent after version {n} answered, served older versions")

    def wait_for_version(self, svc, n):
        wait_until(lambda: self.version(svc) == n, seconds=10, what=f"version {n} to be served")

    def service(self, workers=2, **env):
        """Started and answering on the first scripts (the port accepts before the workers
        have loaded them, and an edit before that would be their first load)."""
        env = dict({"SCRIPTS_DIR": self.scripts, "RELOAD_POLL_MS": "100", "JOBS": "0"}, **env)
        svc = Service(workers=workers, routes=self.routes, env=env)
        svc.start()
        wait_until(lambda: svc.logs().count('"routes loaded"') == workers, what="every worker to load")
        self.assertEqual(self.version(svc), 1)
        return svc

    def test_edited_script_is_served_without_failing_a_request(self):
        with self.service() as svc:
            with Load(lambda: svc.request("GET", "/test/version").status) as load:
                # A request in flight on the old scripts finishes on them.
                slow = {}
                t_slow = threading.Thread(target=lambda: slow.setdefault("r", svc.request("GET", "/test/sleep/800")))
                t_slow.start()
                time.sleep(0.1)
                self.write_version(2)
                self.wait_for_version(svc, 2)
                t_slow.join()
                time.sleep(0.3)
            statuses = load.results
            self.assertEqual(slow["r"].status, 200)
            self.assertEqual(slow["r"].json(), {"version": 1})
            self.assertGreater(len(statuses), 10)
            self.assertEqual(set(statuses), {200})
            self.assertIn("scripts reloaded", svc.logs())
            metrics = svc.request("GET", "/metrics").body.decode()
            self.assertIn('orderservice_script_reloads_total{result="ok"} 2', metrics)

    def test_a_broken_script_never_replaces_a_working_one(self):
        with self.service() as svc:
            self.write_version(2, text="this is not lua (")
            wait_until(lambda: "script reload failed" in svc.logs(), what="the refused reload")
            self.assertEqual(self.version(svc), 1)
            self.write_version(3)
            self.wait_for_version(svc, 3)
            self.assertIsNone(svc.proc.poll())

    def test_the_workers_switch_to_a_new_version_together(self):
        """Several connections, each request on a new one so they spread over the workers, while
        the scripts change five times: once any request has been answered by version n, no
        request sent after that answer gets a version before n, whichever worker serves it."""
        workers = 4
        with self.service(workers=workers) as svc:
            with Load(lambda: self.timed_call(svc), threads=8) as load:
                for n in range(2, 7):
                    self.write_version(n)
                    self.wait_for_version(svc, n)
                wait_until(lambda: any(v == 6 for _, _, v, _ in load.results[-50:]), what="load on version 6")
            results = load.results
        self.assertEqual(set(range(workers)), {w for _, _, _, w in results}, "every worker served the load")
        self.assertEqual(set(range(1, 7)), {v for _, _, v, _ in results})
        self.assert_versions_in_order(results)

    def test_an_edit_landing_between_the_workers_builds_is_not_served_half_way(self):
        """Version 2 is being built: worker 0 has built it, worker 1 is held mid-build while the
        files move on to version 3, then reads the rest. Switching then would serve version 2 on
        worker 0 and a version 2/3 mix on worker 1; the workers rebuild instead, and version 2
        is never served."""
        with open(self.routes, "w") as f:
            f.write(HELD_ROUTES)
        hold, go = os.path.join(self.dir, "hold"), os.path.join(self.dir, "go")
        with self.service(OS_TEST_HOLD_FILE=hold, OS_TEST_GO_FILE=go) as svc:
            open(hold, "w").close()
            loaded = svc.logs().count('"routes loaded"')
            with Load(lambda: self.timed_call(svc), threads=6) as load:
                self.write_version(2)
                wait_until(lambda: svc.logs().count('"routes loaded"') > loaded, what="worker 0 to build version 2")
                self.write_version(3)
                os.unlink(hold)
                open(go, "w").close()
                wait_until(lambda: {0, 1} <= {w for _, _, v, w in load.results[-50:] if v == 3},
                           what="both workers to serve version 3")
            results = load.results
        self.assertNotIn(2, {v for _, _, v, _ in results})
        self.assert_versions_in_order(results)

    def test_metrics_show_the_live_generation_and_the_draining_ones(self):
        with self.service(RELOAD_POLL_MS="0") as svc:
            def gauges():
                text = svc.request("GET", "/metrics").body.decode()
                return tuple(int(re.search(rf"^{name} (\d+)$", text, re.M).group(1)) for name in
                             ("orderservice_scripts_generation", "orderservice_script_generations_draining"))

            self.assertEqual((0, 0), gauges())
            slow = {}
            t_slow = threading.Thread(target=lambda: slow.setdefault("r", svc.request("GET", "/test/sleep/1500")))
            t_slow.start()
            # The fixture logs when its sleep starts (the tasks gauge is sampled every 100 ms and
            # can still hold a scrape of the line above).
            wait_until(lambda: "test sleep started" in svc.logs(), what="the slow request to start")
            self.write_version(2)
            svc.proc.send_signal(signal.SIGHUP)
            self.wait_for_version(svc, 2)
            # Generation 1 is live; generation 0 drains until the slow request has finished on it
            # (once that request's worker has switched: at its next request or tick).
            wait_until(lambda: gauges() == (1, 1), what="generation 0 draining")
            t_slow.join()
            self.assertEqual(1, slow["r"].json()["version"])
            wait_until(lambda: gauges() == (1, 0), what="generation 0 to finish draining")

    def test_sighup_reloads_when_watching_is_off(self):
        with self.service(RELOAD_POLL_MS="0") as svc:
            self.write_version(2)
            time.sleep(0.5)
            self.assertEqual(self.version(svc), 1)
            svc.proc.send_signal(signal.SIGHUP)
            self.wait_for_version(svc, 2)

    def write_routes(self, n, workers):
        with open(self.routes, "w") as f:
            f.write(JOB_ROUTES % (', workers = "%s"' % workers if workers else ""))
        t = time.time() + n
        os.utime(self.routes, (t, t))

    def tick_success(self, svc):
        text = svc.request("GET", "/metrics").body.decode()
        return float(re.search(r'^orderservice_jobs_last_success_timestamp_seconds\{job="tick"\} (\S+)$', text, re.M)[1])

    def test_a_stalled_instance_on_any_worker_shows_and_a_job_moved_to_worker_0_leaves_none_behind(self):
        self.write_version(1, text=TICK % (1, 1))
        self.write_routes(1, "all")
        env = {"JOBS": "1", "DATABASE_URL": fresh_database("it_reload_job_workers")}
        with self.service(**env) as svc:
            # Worker 0's instance succeeds; the job's last success is its oldest instance's: never.
            r = wait_until(lambda: (lambda r: r if r.status == 503 else None)(svc.request("GET", "/health/")),
                           what="/health/ to report worker 1's stalled instance")
            self.assertIn("job tick has not completed a cycle", r.json()["error"])
            self.assertIn("on worker 1", r.json()["error"])
            self.assertNotIn("on worker 0", r.json()["error"])
            self.assertEqual(self.tick_success(svc), 0)
            # Back to the default, worker 0 only: worker 1's instance is forgotten, not stalled.
            moved = time.time()
            self.write_routes(2, None)
            wait_until(lambda: self.tick_success(svc) > moved, what="the job's last success from worker 0 alone")
            self.assertEqual(svc.request("GET", "/health/").status, 200)


if __name__ == "__main__":
    unittest.main()
