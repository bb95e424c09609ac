"""Integration-test harness: the real orderservice binary on a free loopback port, a fresh
database in the test cluster (started by ctest's pg_start fixture), and plain HTTP."""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

BIN = os.environ["ORDERSERVICE_BIN"]
SOURCE_DIR = os.environ["SOURCE_DIR"]
ADMIN_URL = os.environ["PG_ADMIN_URL"]
FIXTURE_ROUTES = os.path.join(SOURCE_DIR, "tests/integration/fixtures/routes.lua")
STANDIN_ROUTES = os.path.join(SOURCE_DIR, "scripts/standins/routes.lua")
# Every service the tests start verifies tokens with this secret, in development mode; tests
# get tokens the way operators do, from `orderservice token`.
JWT_SECRET = "integration-tests-only-0123456789abcdef"
AUTH_ENV = {"JWT_SECRET": JWT_SECRET, "ORDERSERVICE_ENV": "development"}


def psql(url, sql):
    """Runs sql with psql and returns its unaligned output (one row per line)."""
    out = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def fresh_database(name):
    psql(ADMIN_URL, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    psql(ADMIN_URL, f"CREATE DATABASE {name}")
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self):
        return json.loads(self.body)


def wait_until(predicate, seconds=15, what="condition"):
    """Polls predicate until it returns something true, and returns that; raises
    AssertionError naming `what` after `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


class Load:
    """`threads` threads calling fn() in a loop until the with-block ends; .results holds
    what the calls returned."""

    def __init__(self, fn, threads=4):
        self.fn, self.results, self._stop = fn, [], threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self):
        while not self._stop.is_set():
            self.results.append(self.fn())

    def __enter__(self):
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join()


def quietly(fn, *args):
    """Calls fn, ignoring what it raises: for a request a test kills the server under."""
    try:
        fn(*args)
    except Exception:
        pass


def run_binary(*args, env=None, timeout=60):
    full_env = dict(os.environ)
    full_env.update(AUTH_ENV)
    full_env.update(env or {})
    return subprocess.run([BIN, *args], env=full_env, cwd=SOURCE_DIR, capture_output=True, text=True,
                          timeout=timeout)


def token(sub="1", role="admin", customer_id=None, ttl=3600, env=None):
    """A bearer token from `orderservice token` (signed with JWT_SECRET unless env says otherwise)."""
    args = ["token", "--sub", str(sub), "--role", role, "--ttl", str(ttl)]
    if customer_id is not None:
        args += ["--customer-id", str(customer_id)]
    out = run_binary(*args, env=env)
    if out.returncode != 0:
        raise RuntimeError("orderservice token failed: " + out.stderr)
    return out.stdout.strip()


ADMIN_TOKEN = token("test-admin", "admin")
DEFAULT = object()  # Service.request's token: the admin token unless the test says otherwise


class Service:
    """orderservice serving on a free port; use as a context manager."""

    def __init__(self, database_url=None, workers=1, routes=FIXTURE_ROUTES, env=None):
        self.port = free_port()
        self.env = dict(os.environ)
        self.env.update(AUTH_ENV)
        self.env.update({"PORT": str(self.port), "HOST": "127.0.0.1", "WORKERS": str(workers),
                         "ROUTES_FILE": routes, "LOG_LEVEL": "info", "DATABASE_URL": database_url or "",
                         # SIGTERM stops at once unless a test is about the readiness window
                         "SHUTDOWN_READY_DELAY_MS": "0"})
        self.env.update(env or {})
        self.log = tempfile.NamedTemporaryFile(prefix="orderservice-", suffix=".log", delete=False)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([BIN, "serve"], env=self.env, cwd=SOURCE_DIR, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"orderservice exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("orderservice did not start listening:\n" + self.logs())

    def stop(self, timeout=30):
        """SIGTERM, then the exit status (the service must drain and exit by itself)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def logs(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def __enter__(self):
        return self if self.proc else self.start()

    def __exit__(self, *exc):
        died = self.proc is not None and self.proc.poll() not in (None, 0)
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if died or (self.proc and os.environ.get("OS_TEST_PRINT_LOGS")):
            # When it died on its own, what it wrote is the only clue: keep it in the output.
            print(f"orderservice exited with {self.proc.returncode}; its log:\n{self.logs()}", file=sys.stderr)
        os.unlink(self.log.name)

    def connection(self, timeout=30):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, conn=None, timeout=30, token=DEFAULT):
        """token: DEFAULT sends the admin token, None no Authorization header, else that token
        (an Authorization header given in headers wins)."""
        own = conn is None
        conn = conn or self.connection(timeout)
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            headers = dict(headers or {}, **{"Content-Type": "application/json"})
        if token is not None and not any(k.lower() == "authorization" for k in (headers or {})):
            headers = dict(headers or {}, Authorization="Bearer " + (ADMIN_TOKEN if token is DEFAULT else token))
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            if own:
                conn.close()


def start_standins():
    """The downstream stand-ins (the same binary serving scripts/standins/routes.lua) and the
    environment that points a service at them."""
    standin = Service(routes=STANDIN_ROUTES, env={"JOBS": "0"}).start()
    base = f"http://127.0.0.1:{standin.port}"
    env = {"INVENTORY_SERVICE_URL": base + "/inventory", "PAYMENT_SERVICE_URL": base + "/payment",
           "SHIPPING_SERVICE_URL": base + "/shipping", "NOTIFICATION_SERVICE_URL": base + "/notification/"}
    return standin, env


PGCLUSTER = os.path.join(SOURCE_DIR, "tools/pgcluster")


class PrivateClusterCase(unittest.TestCase):
    """A test case with its own PostgreSQL cluster (tools/pgcluster), so stopping or restarting
    it disturbs no other test: self.pg("start") returns its URL, self.pg("stop") stops it."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="os-cluster-", dir="/tmp")
        os.chmod(self.dir, 0o755)  # the postgres user (under root) must reach the cluster below
        self.pgdata = os.path.join(self.dir, "pg")
        self.pgport = free_port()

    def tearDown(self):
        subprocess.run([PGCLUSTER, "stop", self.pgdata], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def pg(self, action):
        args = [PGCLUSTER, action, self.pgdata] + ([str(self.pgport)] if action == "start" else [])
        return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()
