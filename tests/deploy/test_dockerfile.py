"""deploy_dockerfile: the Dockerfile cannot be built here (no Docker engine), so check what a build
would trip on: every COPY source exists and is not excluded by .dockerignore, every library the
built binary links (ldd) and every Lua C module the scripts require comes from a package the
runtime stage installs (or one of their dependencies, per dpkg on this Debian 12 machine, the
image's release), the build stage has the -dev package of every library CMakeLists.txt looks for,
and the production image is the default target, non-root, with a health check.

Needs ORDERSERVICE_BIN and SOURCE_DIR (ctest's TEST_ENV)."""
import fnmatch
import functools
import glob
import json
import os
import re
import socket
import subprocess
import sys
import unittest

ROOT = os.environ.get("SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("ORDERSERVICE_BIN", os.path.join(ROOT, "build", "orderservice"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from harness import wait_until  # noqa: E402 (the integration tests' harness)
# In every Debian image, and a dependency of every package that links C: never listed.
BASE_PACKAGES = {"libc6"}
# The sanitizer runtimes of the ASan+UBSan test build; the image is built without them.
SANITIZER_LIBS = re.compile(r"^lib(asan|ubsan|lsan|tsan)\.so")


def parse_dockerfile(text):
    """[(stage name, base, [instruction lines])] with continuation lines joined, comments dropped."""
    lines = [l for l in text.split("\n") if not l.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    stages = []
    for line in joined.split("\n"):
        line = line.strip()
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?$", line, re.I)
        if m:
            stages.append((m.group(2) or str(len(stages)), m.group(1), []))
        elif line and stages:
            stages[-1][2].append(line)
    return stages


def stage_chain(stages, name):
    by_name = {s[0]: s for s in stages}
    chain = []
    while name in by_name:
        chain.insert(0, by_name[name])
        name = by_name[name][1]
    return chain


def apt_packages(instructions):
    pkgs = []
    for line in instructions:
        for m in re.finditer(r"apt-get install ([^&;]*)", line):
            pkgs += [w for w in m.group(1).split() if not w.startswith("-")]
    return pkgs


def dockerignore_patterns():
    with open(os.path.join(ROOT, ".dockerignore")) as f:
        return [l.strip() for l in f if l.strip() and not l.startswith("#")]


def ignored(rel, patterns):
    """Whether .dockerignore excludes rel (or a directory above it); no '!' exceptions are used."""
    parts = rel.split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        for p in patterns:
            p = p.rstrip("/")
            if fnmatch.fnmatchcase(prefix, p) or (p.startswith("**/") and fnmatch.fnmatchcase(parts[i - 1], p[3:])):
                return True
    return False


def spellings(path):
    """path as given, resolved, and its other /usr-merged spelling (dpkg knows only one)."""
    out = [path, os.path.realpath(path)]
    for p in list(out):
        out.append(p[4:] if p.startswith("/usr/lib/") else "/usr" + p if p.startswith("/lib") else p)
    return list(dict.fromkeys(out))


def dpkg_owners(paths):
    """path -> the package that installed it (one dpkg call for all: each call reads the whole database)."""
    wanted = {p: spellings(p) for p in paths if p}
    every = sorted({s for v in wanted.values() for s in v})
    out = subprocess.run(["dpkg", "-S"] + every, capture_output=True, text=True).stdout if every else ""
    found = {}
    for line in out.splitlines():
        pkgs, _, path = line.partition(": ")
        found[path.strip()] = pkgs.split(",")[0].split(":")[0].strip()
    return {p: next((found[s] for s in v if s in found), None) for p, v in wanted.items()}


def dpkg_owner(path):
    return dpkg_owners([path]).get(path)


@functools.lru_cache(maxsize=None)
def installed_depends():
    """package -> set of packages it depends on (Depends and Pre-Depends, installed alternatives)."""
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Depends}, ${Pre-Depends}\t${Provides}\n"],
                         capture_output=True, text=True, check=True).stdout
    rows = [l.split("\t") for l in out.splitlines() if l.count("\t") == 2]
    provides = {}
    for pkg, _, prov in rows:
        for p in prov.split(","):
            if p.strip():
                provides.setdefault(p.split()[0].split(":")[0], set()).add(pkg)
    installed = {r[0] for r in rows}
    deps = {}
    for pkg, dep, _ in rows:
        s = set()
        for clause in dep.split(","):
            for alt in clause.split("|"):
                name = alt.strip().split(" ")[0].split(":")[0]
                if name in installed:
                    s.add(name)
                s |= provides.get(name, set())
        deps[pkg] = s
    return deps


def closure(pkgs, deps):
    seen, todo = set(), list(pkgs)
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.add(p)
            todo += deps.get(p, ())
    return seen


def ldd(path):
    """soname -> path of every library the dynamic linker loads for path (the loader included)."""
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
    libs = {m.group(1): m.group(2) for m in re.finditer(r"^\s*(\S+) => (/\S+)", out, re.M)}
    libs.update({os.path.basename(m.group(1)): m.group(1) for m in re.finditer(r"^\s*(/\S+) \(", out, re.M)})
    return libs


def needed(path):
    out = subprocess.run(["readelf", "-d", path], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


class DockerfileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(ROOT, "Dockerfile")) as f:
            cls.stages = parse_dockerfile(f.read())
        cls.names = [s[0] for s in cls.stages]
        cls.runtime = stage_chain(cls.stages, "runtime")
        cls.runtime_pkgs = [p for s in cls.runtime for p in apt_packages(s[2])]

    def test_stages(self):
        self.assertEqual(self.names[-1], "runtime", "the production image is the default (last) target")
        for name in ("build", "standins", "runtime"):
            self.assertIn(name, self.names)
        for name, base, _ in self.stages:
            if base not in self.names:
                self.assertRegex(base, r"^debian:\$\{DEBIAN_TAG\}$", f"stage {name} starts from the pinned Debian")
        with open(os.path.join(ROOT, "Dockerfile")) as f:
            tag = re.search(r"^ARG DEBIAN_TAG=(\S+)", f.read(), re.M).group(1)
        self.assertRegex(tag, r"^bookworm-\d{8}-slim(@sha256:[0-9a-f]{64})?$", "a dated bookworm slim tag")

    def test_copy_sources_exist_and_are_in_the_context(self):
        patterns = dockerignore_patterns()
        copies = 0
        for name, _, instructions in self.stages:
            for line in instructions:
                m = re.match(r"COPY\s+(.*)$", line)
                if not m or "--from=" in line:
                    continue
                args = [a for a in m.group(1).split() if not a.startswith("--")]
                for src in args[:-1]:
                    matches = glob.glob(os.path.join(ROOT, src))
                    self.assertTrue(matches, f"stage {name}: COPY {src}: no such file")
                    rel = os.path.relpath(matches[0], ROOT)
                    self.assertFalse(ignored(rel, patterns), f"stage {name}: COPY {src} is excluded by .dockerignore")
                    copies += 1
        self.assertGreaterEqual(copies, 5)
        self.assertTrue(ignored(".data/pg/base", patterns) and ignored("build-asan/x", patterns)
                        and ignored("tests/deploy/node_modules/yaml", patterns) and ignored(".git/HEAD", patterns))

    def test_copies_from_build_are_what_cmake_builds(self):
        for name, _, instructions in self.stages:
            for line in instructions:
                m = re.match(r"COPY\s+--from=build\s+(.*)\s+\S+$", line)
                if m:
                    for src in m.group(1).split():
                        self.assertIn(os.path.basename(src), ("orderservice", "liboscore.so"), src)
                        self.assertTrue(os.path.exists(os.path.join(os.path.dirname(BIN), os.path.basename(src))),
                                        f"{src}: the build produces no such file")

    def test_runtime_ships_what_the_service_needs(self):
        runtime = [l for s in self.runtime for l in s[2]]
        copied = " ".join(l for l in runtime if l.startswith("COPY"))
        for what in ("routes.lua", "scripts", "sql", "orderservice", "liboscore.so"):
            self.assertIn(what, copied)
        if os.path.isdir(os.path.join(ROOT, "static")):
            self.assertRegex(copied, r"\bstatic\b", "static/ exists: the runtime image must copy it")
        user = [l for l in runtime if l.startswith("USER")][-1].split()[1]
        self.assertNotIn(user.split(":")[0], ("0", "root"), "runs as root")
        self.assertTrue(any(l.startswith("HEALTHCHECK") for l in self.runtime[-1][2]), "runtime HEALTHCHECK")
        self.assertFalse([p for p in self.runtime_pkgs if p.endswith("-dev") or p in ("build-essential", "curl", "cmake")],
                         "the runtime stage installs build tools")
        scripts_stage = dict((s[0], s[2]) for s in self.stages)["scripts"]
        self.assertTrue(any("scripts/standins" in l and l.startswith("RUN rm") for l in scripts_stage),
                        "the production scripts drop the stand-ins")

    def test_every_linked_library_comes_from_the_runtime_packages(self):
        self.assertTrue(os.path.exists(BIN), BIN)
        deps = installed_depends()
        listed = set(self.runtime_pkgs) | BASE_PACKAGES
        for p in self.runtime_pkgs:
            self.assertIn(p, deps, f"{p} (runtime stage) is not a Debian package installed here: check its name")
        provided = closure(listed, deps)
        libs = ldd(BIN)
        self.assertIn("libpq.so.5", libs, "ldd sees the binary's libraries")
        ours = {"liboscore.so"}
        core = os.path.join(os.path.dirname(BIN), "liboscore.so")
        libs.update({k: v for k, v in ldd(core).items() if k not in libs})
        owners = dpkg_owners(list(libs.values()))
        # The libraries our code pulls in: NEEDED entries followed from the binary and the core
        # library, not through a sanitizer runtime (the ASan build's libasan brings libstdc++).
        required, todo = set(), [BIN, core]
        while todo:
            for so in needed(todo.pop()):
                if so not in ours and not SANITIZER_LIBS.match(so) and so not in required:
                    required.add(so)
                    todo.append(libs[so])
        self.assertIn("libssl.so.3", required, "the walk reaches libraries two levels down")
        for soname, path in sorted(libs.items()):
            if soname not in required:
                continue
            pkg = owners[path]
            self.assertIsNotNone(pkg, f"{soname} ({path}) belongs to no Debian package")
            self.assertIn(pkg, provided, f"{soname} comes from {pkg}, which the runtime stage does not install")
        # What we link directly must be installed by name, not by luck through another package.
        for soname in set(needed(BIN)) | set(needed(core)):
            if soname in ours or SANITIZER_LIBS.match(soname):
                continue
            pkg = owners[libs[soname]]
            self.assertIn(pkg, listed, f"{soname} is linked directly; list {pkg} in the runtime stage")

    def test_lua_c_modules_come_from_the_runtime_packages(self):
        names = set()
        for path in glob.glob(os.path.join(ROOT, "scripts", "**", "*.lua"), recursive=True):
            with open(path) as f:
                names |= set(re.findall(r'require\s*\(?\s*"([\w.]+)"', f.read()))
        # Our own modules: any folder of scripts/ (lib, handlers, filters, orders, ...).
        own = tuple(d + "." for d in os.listdir(os.path.join(ROOT, "scripts"))
                    if os.path.isdir(os.path.join(ROOT, "scripts", d)))
        # table.new and table.clear: LuaJIT's own extensions, preloaded by the VM
        builtin = {"ffi", "jit", "bit", "string", "table", "math", "io", "os", "coroutine", "debug", "package",
                   "table.new", "table.clear"}
        external = sorted({n.split(".")[0] for n in names if not n.startswith(own) and n not in builtin})
        self.assertIn("cjson", external)
        provided = closure(set(self.runtime_pkgs) | BASE_PACKAGES, installed_depends())
        for mod in external:
            r = subprocess.run(["luajit", "-e", f'print(package.searchpath("{mod}", package.cpath) or '
                                f'package.searchpath("{mod}", package.path) or "")'],
                               capture_output=True, text=True, check=True)
            path = r.stdout.strip()
            self.assertTrue(path, f"Lua module {mod} is not installed here")
            self.assertIn(dpkg_owner(path), provided, f"Lua module {mod} ({path}): its package is not in the runtime stage")

    def test_build_stage_has_the_dev_package_of_every_library_cmake_looks_for(self):
        with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
            cmake = f.read()
        modules = re.findall(r"pkg_check_modules\(\w+ REQUIRED IMPORTED_TARGET (\S+)\)", cmake)
        self.assertGreaterEqual(len(modules), 3)
        if "find_package(OpenSSL" in cmake:
            modules.append("openssl")
        build_pkgs = set(apt_packages(dict((s[0], s[2]) for s in self.stages)["build"]))
        deps = installed_depends()
        for mod in modules:
            pcdir = subprocess.run(["pkg-config", "--variable=pcfiledir", mod], capture_output=True, text=True,
                                   check=True).stdout.strip()
            owner = dpkg_owner(os.path.join(pcdir, mod + ".pc"))
            self.assertIn(owner, closure(build_pkgs, deps), f"pkg-config {mod} comes from {owner}, not in the build stage")


class HealthcheckTest(unittest.TestCase):
    """Each image's HEALTHCHECK command, run as Docker would (exec form, the image's PORT), against
    the real binary: healthy while it serves, unhealthy once it is gone."""

    def healthcheck(self, stage):
        with open(os.path.join(ROOT, "Dockerfile")) as f:
            stages = parse_dockerfile(f.read())
        line = [l for l in dict((s[0], s[2]) for s in stages)[stage] if l.startswith("HEALTHCHECK")][-1]
        return json.loads(re.search(r"\bCMD\s+(\[.*\])$", line).group(1))

    def serve(self, **env):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        full = dict(os.environ, PORT=str(port), HOST="127.0.0.1", WORKERS="1", JOBS="0", DATABASE_URL="",
                    ORDERSERVICE_ENV="development",
                    LOG_LEVEL="error", ROUTES_FILE=os.path.join(ROOT, "routes.lua"),
                    SCRIPTS_DIR=os.path.join(ROOT, "scripts"))
        full.update(env)
        proc = subprocess.Popen([BIN, "serve"], env=full)

        def listening():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_until(listening, 20, "the service to start")
        return proc, port

    def check(self, stage, **env):
        cmd = self.healthcheck(stage)
        proc, port = self.serve(**env)
        try:
            run = subprocess.run(cmd, env=dict(os.environ, PORT=str(port)), timeout=10)
            self.assertEqual(run.returncode, 0, f"{stage} HEALTHCHECK against a serving process")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        run = subprocess.run(cmd, env=dict(os.environ, PORT=str(port)), timeout=10, stderr=subprocess.DEVNULL)
        self.assertNotEqual(run.returncode, 0, f"{stage} HEALTHCHECK once the process is gone")

    def test_runtime_healthcheck(self):
        self.check("runtime")

    def test_standins_healthcheck(self):
        self.check("standins", ROUTES_FILE=os.path.join(ROOT, "scripts", "standins", "routes.lua"))


if __name__ == "__main__":
    unittest.main()
