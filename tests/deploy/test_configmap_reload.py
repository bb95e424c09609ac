"""deploy_configmap_reload: the real binary serving routes.lua and scripts/ from a directory laid
out the way kubelet lays out a ConfigMap volume, and picking up an update the way kubelet makes
one: every file written anew into a fresh `..<timestamp>` directory, then the `..data` symlink
swapped in one rename, then the old directory removed. Both a routes.lua change and a change to a
script alone (routes.lua's content unchanged) must be served without a restart.

Needs ORDERSERVICE_BIN and SOURCE_DIR (ctest's TEST_ENV); no database (DATABASE_URL empty)."""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.error
import urllib.request

ROOT = os.environ["SOURCE_DIR"]
BIN = os.environ["ORDERSERVICE_BIN"]
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from harness import free_port, wait_until  # noqa: E402 (the integration tests' harness)


class ConfigMapVolume:
    """A directory as kubelet's AtomicWriter keeps a ConfigMap volume: ..data -> ..<ts>/ and one
    symlink per top-level entry through ..data."""

    def __init__(self, path):
        self.path = path
        self.generation = 0
        os.makedirs(path)

    def write(self, files):
        """files: {relative path: text}. Writes a new generation and swaps it in atomically."""
        self.generation += 1
        ts = f"..2026_11_26_00_00_00.{self.generation:09d}"
        for rel, text in files.items():
            full = os.path.join(self.path, ts, rel)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write(text)
        old = os.readlink(os.path.join(self.path, "..data")) if self.generation > 1 else None
        tmp = os.path.join(self.path, "..data_tmp")
        os.symlink(ts, tmp)
        os.rename(tmp, os.path.join(self.path, "..data"))
        for top in {rel.split("/")[0] for rel in files}:
            link = os.path.join(self.path, top)
            if not os.path.islink(link):
                os.symlink(os.path.join("..data", top), link)
        if old:
            shutil.rmtree(os.path.join(self.path, old))


def shipped_files():
    with open(os.path.join(ROOT, "routes.lua")) as f:
        files = {"routes.lua": f.read()}
    for dirpath, _, names in os.walk(os.path.join(ROOT, "scripts")):
        for n in names:
            rel = os.path.relpath(os.path.join(dirpath, n), ROOT)
            with open(os.path.join(ROOT, rel)) as f:
                files[rel] = f.read()
    return files


class ConfigMapReloadTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cm-reload-")
        self.volume = ConfigMapVolume(os.path.join(self.tmp, "live"))
        self.files = shipped_files()
        self.volume.write(self.files)
        self.port = free_port()
        env = dict(os.environ, PORT=str(self.port), HOST="127.0.0.1", WORKERS="2", JOBS="0", DATABASE_URL="",
                   ORDERSERVICE_ENV="development",
                   RELOAD_POLL_MS="50", ROUTES_FILE=os.path.join(self.volume.path, "routes.lua"),
                   SCRIPTS_DIR=os.path.join(self.volume.path, "scripts"), LOG_LEVEL="warn")
        self.log = open(os.path.join(self.tmp, "log"), "w+")
        self.proc = subprocess.Popen([BIN, "serve"], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(lambda: self.get("/health/live/")[0] == 200, 20, "the service to start")

    def tearDown(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.seek(0)
        if os.environ.get("OS_TEST_PRINT_LOGS"):
            print(self.log.read())
        self.log.close()
        shutil.rmtree(self.tmp)

    def get(self, path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except (ConnectionError, urllib.error.URLError):
            return None, ""

    def test_a_routes_change_is_served_after_the_symlink_swap(self):
        self.assertEqual(self.get("/deploy-probe/")[0], 401)  # no such route: the global auth filter answers
        routes = self.files["routes.lua"].replace(
            'routes = {\n', 'routes = {\n        { method = "GET", path = "/deploy-probe/", handler = "health.live",'
            ' filters = { auth = false } },\n', 1)
        self.assertNotEqual(routes, self.files["routes.lua"], "routes.lua has the shape this test edits")
        self.volume.write({**self.files, "routes.lua": routes})
        # Both workers: every request after the swap, whichever worker takes it, must see it.
        wait_until(lambda: all(self.get("/deploy-probe/")[0] == 200 for _ in range(8)), 10, "the new route")

    def test_a_script_change_alone_is_served_after_the_symlink_swap(self):
        status, body = self.get("/health/live/")
        self.assertEqual((status, '"alive"' in body), (200, True))
        health = self.files["scripts/handlers/health.lua"]
        edited = health.replace('status = "alive"', 'status = "alive-v2"')
        self.assertNotEqual(edited, health, "health.lua has the shape this test edits")
        self.volume.write({**self.files, "scripts/handlers/health.lua": edited})
        wait_until(lambda: all("alive-v2" in self.get("/health/live/")[1] for _ in range(8)), 10, "the edited script")

    def test_a_broken_update_keeps_the_working_scripts(self):
        self.volume.write({**self.files, "routes.lua": "return {"})
        wait_until(lambda: 'result="failed"' in self.failed_reloads(), 10, "the refused reload")
        self.assertEqual(self.get("/health/live/")[0], 200)

    def failed_reloads(self):
        _, body = self.get("/metrics")
        return "\n".join(l for l in body.splitlines()
                         if l.startswith('orderservice_script_reloads_total{result="failed"}') and not l.endswith(" 0"))


if __name__ == "__main__":
    unittest.main()
