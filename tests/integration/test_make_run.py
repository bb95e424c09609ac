"""`make run` (tools/run): once it serves, Ctrl-C (SIGINT to its process group) or SIGTERM to
the script stops the service, the stand-ins and the private PostgreSQL cluster, and leaves no
process behind. Each run gets its own data directory and ports, so a developer's own
`make run` is never touched."""
import os
import shutil
import signal
import subprocess
import tempfile
import unittest
import urllib.request

from harness import BIN, SOURCE_DIR, free_port, wait_until


def processes_mentioning(text):
    """PIDs of live processes whose command line contains text."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(int(entry))
    return found


def children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                pass
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def serves(port, path="/health/live/"):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class MakeRun(unittest.TestCase):
    def setUp(self):
        # World-traversable, so that the postgres user can reach the cluster when run as root.
        self.data = tempfile.mkdtemp(prefix="osrun-")
        os.chmod(self.data, 0o755)
        self.port, self.standin_port = free_port(), free_port()
        self.env = dict(os.environ, ORDERSERVICE_BIN=BIN, DATA_DIR=self.data, PG_PORT=str(free_port()),
                        PORT=str(self.port), HOST="127.0.0.1", STANDIN_PORT=str(self.standin_port), WORKERS="1",
                        SEED="0", SHUTDOWN_TIMEOUT_MS="2000")
        for name in ("DATABASE_URL", "INVENTORY_SERVICE_URL", "PAYMENT_SERVICE_URL", "SHIPPING_SERVICE_URL",
                     "NOTIFICATION_SERVICE_URL"):
            self.env.pop(name, None)
        self.log = tempfile.TemporaryFile()
        self.proc = None

    def tearDown(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        pg = os.path.join(self.data, "pg")
        if os.path.exists(os.path.join(pg, "postmaster.pid")):
            subprocess.run([os.path.join(SOURCE_DIR, "tools/pgcluster"), "stop", pg], capture_output=True)
        shutil.rmtree(self.data, ignore_errors=True)

    def start(self):
        self.proc = subprocess.Popen([os.path.join(SOURCE_DIR, "tools/run")], cwd=SOURCE_DIR, env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(lambda: serves(self.port) or self.proc.poll() is not None, seconds=120, what="tools/run to serve")
        self.assertIsNone(self.proc.poll(), self.output())
        wait_until(lambda: serves(self.standin_port, "/_calls"), what="the stand-ins")
        self.cluster = os.path.realpath(os.path.join(self.data, "pg"))
        self.assertTrue(processes_mentioning(self.cluster), "no postgres running for " + self.cluster)
        return children_of(self.proc.pid)

    def output(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def assert_everything_stopped(self, children):
        self.assertEqual(self.proc.wait(timeout=90), 0, self.output())
        self.assertEqual(processes_mentioning(self.cluster), [], "PostgreSQL still running\n" + self.output())
        self.assertEqual([p for p in children if alive(p)], [], "children still running")
        self.assertFalse(serves(self.port))
        self.assertFalse(serves(self.standin_port, "/_calls"))

    def test_ctrl_c_stops_service_standins_and_cluster(self):
        children = self.start()
        os.killpg(self.proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
        self.assert_everything_stopped(children)

    def test_sigterm_to_the_script_stops_everything(self):
        children = self.start()
        self.proc.send_signal(signal.SIGTERM)
        self.assert_everything_stopped(children)


if __name__ == "__main__":
    unittest.main()
