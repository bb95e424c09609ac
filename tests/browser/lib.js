// Helpers of the browser tests: the real orderservice binary on a free loopback port over a
// fresh database in the test cluster (ctest's pg fixture), tokens from `orderservice token`,
// SQL through psql, and Debian's Chromium driven by playwright-core (no browser download).
// The same ground as tests/integration/harness.py, for node.
'use strict';
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const BIN = process.env.ORDERSERVICE_BIN;
const SOURCE_DIR = process.env.SOURCE_DIR || path.resolve(__dirname, '..', '..');
const ADMIN_URL = process.env.PG_ADMIN_URL;
const ARTIFACTS = process.env.BROWSER_ARTIFACTS || path.join(os.tmpdir(), 'orderservice-browser');
const AUTH_ENV = { JWT_SECRET: 'browser-tests-only-0123456789abcdef-0123', ORDERSERVICE_ENV: 'development' };
const CHROMIUM = '/usr/bin/chromium';
// As root in a container: no sandbox; and nothing of Chromium's own may call out (no QUIC,
// no background networking, no component or sync updates), so every request seen is the page's.
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

function need(name, value) {
  if (!value) throw new Error(`${name} is not set: run these tests through ctest (tests/CMakeLists.txt)`);
  return value;
}

function psql(url, sql) {
  return execFileSync('psql', [url, '-v', 'ON_ERROR_STOP=1', '-qAtF', '\t', '-c', sql], { encoding: 'utf8' }).trim();
}

// Rows of a query as arrays of strings.
function rows(url, sql) {
  const out = psql(url, sql);
  return out === '' ? [] : out.split('\n').map((l) => l.split('\t'));
}

function freshDatabase(name) {
  need('PG_ADMIN_URL', ADMIN_URL);
  psql(ADMIN_URL, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  psql(ADMIN_URL, `CREATE DATABASE ${name}`);
  return ADMIN_URL.replace(/\/[^/]*$/, '/' + name);
}

function run(args, env) {
  return execFileSync(need('ORDERSERVICE_BIN', BIN), args, {
    cwd: SOURCE_DIR, env: { ...process.env, ...AUTH_ENV, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
  }).trim();
}

function token(sub, role, customerId) {
  const args = ['token', '--sub', String(sub), '--role', role, '--ttl', '3600'];
  if (customerId !== undefined) args.push('--customer-id', String(customerId));
  return run(args);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function connects(port) {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.once('connect', () => { c.destroy(); resolve(true); });
    c.once('error', () => resolve(false));
  });
}

// Polls fn until it returns something true (or the deadline passes): a wait on a condition.
async function until(fn, what, ms = 20000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// orderservice serving the shipped routes.lua (unless env says otherwise) on a free port.
async function startService(env = {}) {
  const port = await freePort();
  const log = path.join(os.tmpdir(), `orderservice-browser-${port}.log`);
  const fd = fs.openSync(log, 'w');
  const proc = spawn(need('ORDERSERVICE_BIN', BIN), ['serve'], {
    cwd: SOURCE_DIR,
    env: { ...process.env, ...AUTH_ENV, PORT: String(port), HOST: '127.0.0.1', WORKERS: '1',
      ROUTES_FILE: path.join(SOURCE_DIR, 'routes.lua'), LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', fd, fd],
  });
  fs.closeSync(fd);
  let exited = null;
  proc.on('exit', (code) => { exited = code; });
  const logs = () => fs.readFileSync(log, 'utf8');
  await until(async () => {
    if (exited !== null) throw new Error(`orderservice exited with ${exited}:\n${logs()}`);
    return connects(port);
  }, 'orderservice to listen');
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    logs,
    async stop() {
      if (exited === null) {
        const done = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await done;
      }
      fs.rmSync(log, { force: true });
    },
  };
}

// The downstream stand-ins (scripts/standins/routes.lua) and the settings pointing at them.
async function startStandins() {
  const s = await startService({ ROUTES_FILE: path.join(SOURCE_DIR, 'scripts/standins/routes.lua'), JOBS: '0' });
  const env = { INVENTORY_SERVICE_URL: s.url + '/inventory', PAYMENT_SERVICE_URL: s.url + '/payment',
    SHIPPING_SERVICE_URL: s.url + '/shipping', NOTIFICATION_SERVICE_URL: s.url + '/notification/' };
  return { standins: s, env };
}

async function launchChromium() {
  const { chromium } = require('playwright-core');
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: tools/deps installs Debian's chromium`);
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

function artifact(name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  return path.join(ARTIFACTS, name);
}

module.exports = { SOURCE_DIR, psql, rows, freshDatabase, run, token, startService, startStandins, launchChromium,
  artifact, until };
