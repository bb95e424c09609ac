"""routes.lua mounted the way Kubernetes mounts a ConfigMap (routes.lua -> ..data/routes.lua,
..data -> ..<version>/, updated by swapping the ..data symlink atomically) and edited 50 times
under load: every edit is a new routes.lua with a new filter option, served within a second,
no request fails, and a broken edit leaves the previous routes in service while
`orderservice check` names its file and line."""
import os
import tempfile
import time
import unittest
import shutil

from harness import Load, Service, run_binary, wait_until

ROUTES = """
local decl = dofile(os.getenv("SOURCE_DIR") .. "/routes.lua")
decl.filters.headers.add["x-config-version"] = "%d"
return decl
"""

# A filter option of the wrong type: routes.lua still parses, the reload must refuse it.
BROKEN = """
local decl = dofile(os.getenv("SOURCE_DIR") .. "/routes.lua")
decl.filters.headers.add["x-config-version"] = "broken"
decl.filters.rate_limit = {
    burst = "lots" }
return decl
"""


class ConfigMapReload(unittest.TestCase):
    def setUp(self):
        self.mount = tempfile.mkdtemp(prefix="os-configmap-")
        self.n = 0
        self.publish(ROUTES % 1)
        os.symlink("..data/routes.lua", os.path.join(self.mount, "routes.lua"))

    def tearDown(self):
        shutil.rmtree(self.mount, ignore_errors=True)

    def publish(self, text):
        """What the kubelet does: a new timestamped directory, then an atomic rename of a
        fresh symlink over ..data; the old directory is removed afterwards."""
        self.n += 1
        new_dir = f"..{self.n:04d}"
        os.mkdir(os.path.join(self.mount, new_dir))
        with open(os.path.join(self.mount, new_dir, "routes.lua"), "w") as f:
            f.write(text)
        tmp = os.path.join(self.mount, "..data_tmp")
        os.symlink(new_dir, tmp)
        data = os.path.join(self.mount, "..data")
        old = os.readlink(data) if os.path.islink(data) else None
        os.rename(tmp, data)
        if old:
            shutil.rmtree(os.path.join(self.mount, old))
        return os.path.join(self.mount, new_dir, "routes.lua")

    def test_fifty_edits_under_load_through_the_symlink_swap(self):
        routes = os.path.join(self.mount, "routes.lua")
        env = {"RELOAD_POLL_MS": "100", "JOBS": "0"}
        with Service(workers=2, routes=routes, env=env) as svc:
            def served():
                return svc.request("GET", "/health/live/").headers.get("x-config-version")

            wait_until(lambda: served() == "1", what="version 1")
            lags = []
            with Load(lambda: svc.request("GET", "/health/live/").status) as load:
                for version in range(2, 52):
                    self.publish(ROUTES % version)
                    started = time.monotonic()
                    wait_until(lambda: served() == str(version), seconds=15, what=f"version {version}")
                    lags.append(time.monotonic() - started)
                    if version == 25:
                        broken = self.publish(BROKEN)
                        wait_until(lambda: "script reload failed" in svc.logs(), what="the refused reload")
                        self.assertEqual(served(), "25")  # the old routes stay in service
                        r = run_binary("check", env={"ROUTES_FILE": broken})
                        self.assertEqual(r.returncode, 1)
                        self.assertIn(f"{broken}:4: filter \"rate_limit\"", r.stderr)
                        self.assertIn('filter "rate_limit": option "burst" must be an integer', r.stderr)
            statuses = load.results
            self.assertGreater(len(statuses), 100)
            self.assertEqual(set(statuses), {200})
            # How fast an edit lands is a figure to report, not to assert (a busy machine stretches it).
            lags.sort()
            print(f"edit to first request served by it: median {lags[len(lags) // 2]:.2f} s, max {lags[-1]:.2f} s")
            self.assertIsNone(svc.proc.poll())


if __name__ == "__main__":
    unittest.main()
