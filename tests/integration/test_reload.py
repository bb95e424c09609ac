"""Hot reload: the service picks up edited scripts without a restart and without failing a
request, and a broken script never replaces a working one."""
import os
import shutil
import signal
import tempfile
import threading
import time
import unittest

from harness import SOURCE_DIR, Load, Service, wait_until

ROUTES = """
local decl = dofile(os.getenv("SOURCE_DIR") .. "/routes.lua")
table.insert(decl.routes, { method = "GET", path = "/test/version", handler = "testing.version" })
table.insert(decl.routes, { method = "GET", path = "/test/sleep/{ms:int}", handler = "testing.sleep" })
return decl
"""

VERSIONED = """
local async = require("lib.async")
local response = require("lib.response")
local _M = {}
function _M.version() return response.json(200, { version = %d }) end
function _M.sleep(req)
    async.sleep(req.params.ms)
    return response.json(200, { version = %d })
end
return _M
"""


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

    def wait_for_version(self, svc, n):
        wait_until(lambda: self.version(svc) == n, seconds=10, what=f"version {n} to be served")

    def service(self, **env):
        """Started and answering on the first scripts (the port accepts before the workers
        have loaded them, and an edit before that would be their first load)."""
        env = dict({"SCRIPTS_DIR": self.scripts, "RELOAD_POLL_MS": "100", "JOBS": "0"}, **env)
        svc = Service(workers=2, routes=self.routes, env=env)
        svc.start()
        wait_until(lambda: svc.logs().count('"routes loaded"') == 2, what="both workers to load")
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

    def test_sighup_reloads_when_watching_is_off(self):
        with self.service(RELOAD_POLL_MS="0") as svc:
            self.write_version(2)
            time.sleep(0.5)
            self.assertEqual(self.version(svc), 1)
            svc.proc.send_signal(signal.SIGHUP)
            self.wait_for_version(svc, 2)


if __name__ == "__main__":
    unittest.main()
