// deploy_k8s: the Kubernetes manifests, rendered by kustomize (base and both overlays), are
// valid Kubernetes objects and say what the service needs: real probe paths, settings for every
// required variable, Pod Security "restricted", consistent CPU/WORKERS, drain timing, spread,
// and a database connection budget that matches docs/deploy.md.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const lib = require('./lib.js');

const rendered = Object.fromEntries(lib.OVERLAYS.map((dir) => [dir, lib.render(dir)]));
const deployable = ['k8s/overlays/dev', 'k8s/overlays/prod'];

function server(objects) {
  return lib.one(objects, 'Deployment', 'order-service');
}
function container(objects) {
  const c = server(objects).spec.template.spec.containers;
  assert.equal(c.length, 1);
  return c[0];
}
function settings(objects) {
  return lib.one(objects, 'ConfigMap', 'order-service-settings').data;
}
function matches(selector, labels) {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

test('every object of base, dev and prod validates against the Kubernetes schemas, with no unknown field', () => {
  for (const [dir, objects] of Object.entries(rendered)) {
    assert.ok(objects.length > 5, `${dir} renders to ${objects.length} objects`);
    for (const obj of objects) {
      assert.deepEqual(lib.schemaProblems(obj), [], `${dir}: ${obj.kind}/${obj.metadata.name}`);
    }
  }
});

test('the schema check catches a wrong type and an unknown field (so the test above can fail)', () => {
  const dep = structuredClone(server(rendered['k8s/base']));
  dep.spec.template.spec.containers[0].readinessProbe.timeoutSecond = 3;
  dep.spec.revisionHistoryLimit = 'five';
  const problems = lib.schemaProblems(dep);
  assert.ok(problems.some((p) => p.includes('unknown field /spec/template/spec/containers/0/readinessProbe/timeoutSecond')), problems.join('\n'));
  assert.ok(problems.some((p) => p.includes('revisionHistoryLimit')), problems.join('\n'));
});

test('everything lives in the overlay\'s namespace, which enforces Pod Security "restricted"', () => {
  for (const [dir, objects] of Object.entries(rendered)) {
    const ns = lib.one(objects, 'Namespace');
    assert.equal(ns.metadata.labels['pod-security.kubernetes.io/enforce'], 'restricted', dir);
    for (const obj of objects.filter((o) => o.kind !== 'Namespace')) {
      assert.equal(obj.metadata.namespace, ns.metadata.name, `${dir}: ${obj.kind}/${obj.metadata.name}`);
    }
  }
});

test('every pod meets Pod Security "restricted", mounts no token and has a read-only root', () => {
  for (const [dir, objects] of Object.entries(rendered)) {
    const pods = lib.podTemplates(objects);
    assert.ok(pods.length >= 2, dir);
    for (const { owner, spec } of pods) {
      const where = `${dir}: ${owner}`;
      assert.equal(spec.automountServiceAccountToken, false, `${where}: automountServiceAccountToken`);
      for (const k of ['hostNetwork', 'hostPID', 'hostIPC']) assert.ok(!spec[k], `${where}: ${k}`);
      assert.ok(!(spec.volumes || []).some((v) => v.hostPath), `${where}: hostPath volume`);
      const psc = spec.securityContext || {};
      for (const c of [...(spec.initContainers || []), ...spec.containers]) {
        const sc = c.securityContext || {};
        const w = `${where} container ${c.name}`;
        assert.equal(sc.runAsNonRoot ?? psc.runAsNonRoot, true, `${w}: runAsNonRoot`);
        assert.notEqual(sc.runAsUser ?? psc.runAsUser, 0, `${w}: runAsUser 0`);
        assert.equal(sc.allowPrivilegeEscalation, false, `${w}: allowPrivilegeEscalation`);
        assert.ok(!sc.privileged, `${w}: privileged`);
        assert.deepEqual(sc.capabilities?.drop, ['ALL'], `${w}: capabilities.drop`);
        assert.ok((sc.capabilities?.add || []).every((a) => a === 'NET_BIND_SERVICE'), `${w}: capabilities.add`);
        assert.equal((sc.seccompProfile ?? psc.seccompProfile)?.type, 'RuntimeDefault', `${w}: seccompProfile`);
        assert.equal(sc.readOnlyRootFilesystem, true, `${w}: readOnlyRootFilesystem`);
        assert.ok(c.resources?.requests?.cpu && c.resources?.limits?.memory, `${w}: resources`);
      }
    }
  }
});

test('probes, Dockerfile health checks and scrape paths name routes that exist', () => {
  const routes = new Set(lib.routePaths('routes.lua'));
  const standinRoutes = new Set(lib.routePaths('scripts/standins/routes.lua'));
  for (const [dir, objects] of Object.entries(rendered)) {
    const c = container(objects);
    assert.equal(c.readinessProbe.httpGet.path, '/health/', `${dir}: readiness asks the database`);
    assert.equal(c.livenessProbe.httpGet.path, '/health/live/', `${dir}: liveness asks only the loop`);
    assert.ok(c.startupProbe?.httpGet, `${dir}: startup probe`);
    const ports = new Set(c.ports.map((p) => p.name));
    for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
      assert.ok(routes.has(probe.httpGet.path), `${dir}: ${probe.httpGet.path} is not a route in routes.lua`);
      assert.ok(ports.has(probe.httpGet.port), `${dir}: probe port ${probe.httpGet.port}`);
    }
    const annotations = server(objects).spec.template.metadata.annotations;
    assert.ok(routes.has(annotations['prometheus.io/path']), `${dir}: scrape path`);
    assert.equal(annotations['prometheus.io/port'], String(c.ports[0].containerPort));
    for (const sm of lib.find(objects, 'ServiceMonitor')) {
      for (const ep of sm.spec.endpoints) assert.ok(routes.has(ep.path), `${dir}: ServiceMonitor path ${ep.path}`);
    }
    for (const d of lib.find(objects, 'Deployment', 'order-service-standins')) {
      const probe = d.spec.template.spec.containers[0].readinessProbe.httpGet.path;
      assert.ok(standinRoutes.has(probe), `${dir}: stand-ins probe ${probe}`);
    }
  }
  const dockerfile = lib.read('Dockerfile');
  const checks = [...dockerfile.matchAll(/^FROM .* AS (\w+)$|GET (\/\S*) HTTP/gm)];
  let stage = null;
  let seen = 0;
  for (const m of checks) {
    if (m[1]) { stage = m[1]; continue; }
    assert.ok((stage === 'standins' ? standinRoutes : routes).has(m[2]), `Dockerfile ${stage} HEALTHCHECK ${m[2]}`);
    seen++;
  }
  assert.equal(seen, 2, 'both images have a HEALTHCHECK');
});

test('readiness outlasts a pool wait, and the grace period outlasts preStop plus the drain', () => {
  for (const [dir, objects] of Object.entries(rendered)) {
    const c = container(objects);
    const s = settings(objects);
    const acquireMs = Number(s.DB_ACQUIRE_TIMEOUT_MS);
    assert.ok(c.readinessProbe.timeoutSeconds * 1000 > acquireMs,
      `${dir}: readiness timeout ${c.readinessProbe.timeoutSeconds}s <= DB_ACQUIRE_TIMEOUT_MS ${acquireMs}`);
    assert.ok(c.readinessProbe.failureThreshold >= 2, `${dir}: one missed readiness probe drops the pod`);
    const cmd = c.lifecycle.preStop.exec.command;
    assert.equal(cmd[0], 'sleep');
    const preStop = Number(cmd[1]);
    const grace = server(objects).spec.template.spec.terminationGracePeriodSeconds;
    const drain = Number(s.SHUTDOWN_TIMEOUT_MS) / 1000;
    // After SIGTERM the pod keeps serving (readiness false) for SHUTDOWN_READY_DELAY_MS, then drains.
    const ready = Number(s.SHUTDOWN_READY_DELAY_MS ?? 3000) / 1000;
    assert.ok(grace > preStop + ready + drain,
      `${dir}: grace ${grace}s <= preStop ${preStop}s + SHUTDOWN_READY_DELAY_MS ${ready}s + SHUTDOWN_TIMEOUT_MS ${drain}s`);
    const strategy = server(objects).spec.strategy.rollingUpdate;
    assert.equal(strategy.maxUnavailable, 0, `${dir}: a rollout never lowers capacity`);
  }
});

test('WORKERS follows a CPU request equal to the CPU limit', () => {
  for (const [dir, objects] of Object.entries(rendered)) {
    const c = container(objects);
    const workers = c.env.find((e) => e.name === 'WORKERS');
    assert.ok(workers, `${dir}: WORKERS is set`);
    assert.equal(workers.valueFrom?.resourceFieldRef?.resource, 'requests.cpu', `${dir}: WORKERS from requests.cpu`);
    assert.equal(String(workers.valueFrom.resourceFieldRef.divisor), '1');
    assert.equal(lib.cpu(c.resources.requests.cpu), lib.cpu(c.resources.limits.cpu), `${dir}: CPU requests == limits`);
    assert.ok(Number.isInteger(lib.cpu(c.resources.requests.cpu)), `${dir}: whole CPUs (one worker each)`);
    assert.equal(c.resources.requests.memory, c.resources.limits.memory, `${dir}: memory requests == limits`);
  }
});

test('pods spread over nodes and zones; Service, PDB and HPA select the server pods', () => {
  for (const [dir, objects] of Object.entries(rendered)) {
    const dep = server(objects);
    const labels = dep.spec.template.metadata.labels;
    const spread = dep.spec.template.spec.topologySpreadConstraints;
    for (const key of ['kubernetes.io/hostname', 'topology.kubernetes.io/zone']) {
      const t = spread.find((s) => s.topologyKey === key);
      assert.ok(t, `${dir}: spread over ${key}`);
      assert.ok(matches(t.labelSelector.matchLabels, labels), `${dir}: ${key} spread selects the pods`);
    }
    assert.equal(spread.find((s) => s.topologyKey === 'kubernetes.io/hostname').whenUnsatisfiable, 'DoNotSchedule');
    const svc = lib.one(objects, 'Service', 'order-service');
    assert.ok(matches(svc.spec.selector, labels), `${dir}: Service selects the pods`);
    assert.equal(svc.spec.ports[0].port, 8001);
    assert.ok(dep.spec.template.spec.containers[0].ports.some((p) => p.name === svc.spec.ports[0].targetPort));
    for (const job of lib.find(objects, 'Job')) {
      assert.ok(!matches(svc.spec.selector, job.spec.template.metadata.labels), `${dir}: Service selects the Job`);
    }
    const pdb = lib.one(objects, 'PodDisruptionBudget', 'order-service');
    assert.ok(matches(pdb.spec.selector.matchLabels, labels), `${dir}: PDB selects the pods`);
    const hpa = lib.one(objects, 'HorizontalPodAutoscaler', 'order-service');
    assert.deepEqual([hpa.spec.scaleTargetRef.kind, hpa.spec.scaleTargetRef.name], ['Deployment', dep.metadata.name]);
    assert.equal(dep.spec.replicas, undefined, `${dir}: the HPA owns the replica count`);
    if (dir === 'k8s/overlays/prod') {
      assert.ok(hpa.spec.minReplicas >= 3, 'prod runs at least 3 replicas');
      assert.ok(hpa.spec.minReplicas > (pdb.spec.maxUnavailable ?? 0), 'the PDB leaves pods serving');
    }
  }
});

test('docs/deploy.md classifies every variable the service reads', () => {
  const table = lib.settingsTable();
  assert.ok(table.size > 20, 'the settings table parses');
  const missing = [...lib.envVarsRead()].filter(([name]) => !table.has(name)).map(([n, f]) => `${n} (${f})`);
  assert.deepEqual(missing, [], 'variables read by the service but not in docs/deploy.md\'s settings table');
  for (const [name, row] of table) {
    if (row.need === 'required') assert.match(row.from, /^(settings|secret|Deployment)$/, name);
  }
});

test('the order-service container gets every required variable; settings.env sets only known ones', () => {
  const table = lib.settingsTable();
  for (const dir of lib.OVERLAYS) {
    const objects = rendered[dir];
    const c = container(objects);
    const s = settings(objects);
    const cmName = lib.one(objects, 'ConfigMap', 'order-service-settings').metadata.name;
    assert.ok(c.envFrom.some((e) => e.configMapRef?.name === cmName), `${dir}: envFrom the settings`);
    const env = new Map(c.env.map((e) => [e.name, e]));
    for (const [name, row] of table) {
      if (row.need !== 'required') continue;
      if (row.from === 'settings') {
        assert.ok(s[name] !== undefined && s[name] !== '', `${dir}: ${name} missing from the settings ConfigMap`);
      } else if (row.from === 'secret') {
        const ref = env.get(name)?.valueFrom?.secretKeyRef;
        assert.ok(ref && ref.key === name && ref.name.startsWith('order-service-secrets'), `${dir}: ${name} from the Secret`);
      } else {
        assert.ok(env.has(name), `${dir}: ${name} set by the Deployment`);
      }
    }
    for (const key of Object.keys(s)) assert.ok(table.has(key), `${dir}: settings set ${key}, which the service does not know`);
    assert.equal(s.MIGRATE_ON_START, '0', `${dir}: the Job migrates, not the pods`);
    assert.ok(Number(s.RELOAD_POLL_MS) > 0, `${dir}: RELOAD_POLL_MS watches the mounted scripts`);
    assert.equal(Number(s.PORT), c.ports.find((p) => p.name === 'http').containerPort, `${dir}: PORT`);
    assert.ok(!/:[^@/]*@/.test(s.DATABASE_URL), `${dir}: DATABASE_URL carries a password`);
  }
});

test('secrets exist where they are referenced (dev), and only example ones are in the repository', () => {
  const objects = rendered['k8s/overlays/dev'];
  const secret = lib.one(objects, 'Secret', 'order-service-secrets');
  const refs = lib.podTemplates(objects).flatMap(({ spec }) => spec.containers.flatMap((c) => (c.env || [])
    .map((e) => e.valueFrom?.secretKeyRef).filter(Boolean)));
  for (const ref of refs) {
    assert.equal(ref.name, secret.metadata.name);
    assert.ok(ref.key in secret.data, `dev Secret has ${ref.key}`);
  }
  for (const [key, value] of Object.entries(secret.data)) {
    assert.match(Buffer.from(value, 'base64').toString(), /^dev-only-/, `${key} is an obvious example`);
  }
  assert.ok(Buffer.from(secret.data.JWT_SECRET, 'base64').length >= 32, 'JWT_SECRET is long enough for the service');
  assert.equal(lib.find(rendered['k8s/overlays/prod'], 'Secret').length, 0, 'prod takes its Secret from outside');
});

test('the scripts volume is where ROUTES_FILE and SCRIPTS_DIR point, and updates in place', () => {
  for (const [dir, objects] of Object.entries(rendered)) {
    const c = container(objects);
    const s = settings(objects);
    const dep = server(objects);
    const mount = c.volumeMounts.find((m) => m.mountPath === '/app/live');
    assert.ok(mount && mount.readOnly, `${dir}: /app/live mounted read-only`);
    assert.ok(!mount.subPath, `${dir}: a subPath mount never sees ConfigMap updates`);
    const volume = dep.spec.template.spec.volumes.find((v) => v.name === mount.name);
    const cm = lib.one(objects, 'ConfigMap', 'order-service-scripts');
    assert.equal(volume.configMap.name, 'order-service-scripts', `${dir}: no hash suffix, so an edit updates the pods in place`);
    assert.equal(cm.metadata.name, 'order-service-scripts');
    const paths = new Map(volume.configMap.items.map((i) => [i.path, i.key]));
    assert.ok(paths.has('routes.lua') && s.ROUTES_FILE === `${mount.mountPath}/routes.lua`, `${dir}: ROUTES_FILE`);
    assert.equal(s.SCRIPTS_DIR, `${mount.mountPath}/scripts`, `${dir}: SCRIPTS_DIR`);
    assert.ok([...paths.keys()].filter((p) => p !== 'routes.lua').every((p) => p.startsWith('scripts/')));
    const emptyDirs = dep.spec.template.spec.volumes.filter((v) => v.emptyDir).map((v) => v.name);
    assert.ok(c.volumeMounts.some((m) => m.mountPath === '/tmp' && emptyDirs.includes(m.name)), `${dir}: writable /tmp`);
  }
});

test('the migration Job runs `orderservice migrate` with the server\'s image and database settings', () => {
  for (const [dir, objects] of Object.entries(rendered)) {
    const job = lib.one(objects, 'Job', 'order-service-migrate');
    const jc = job.spec.template.spec.containers[0];
    const c = container(objects);
    assert.deepEqual(jc.args, ['migrate']);
    assert.equal(jc.image, c.image, `${dir}: same image as the server`);
    assert.deepEqual(jc.envFrom, c.envFrom, `${dir}: same settings`);
    assert.ok(jc.env.some((e) => e.name === 'PGPASSWORD' && e.valueFrom.secretKeyRef), `${dir}: the password`);
    assert.equal(job.spec.template.spec.restartPolicy, 'Never');
    assert.ok(job.spec.backoffLimit >= 1 && job.spec.activeDeadlineSeconds > 0);
    assert.equal(server(objects).spec.template.spec.initContainers, undefined, `${dir}: no init containers`);
  }
});

test('dev is self-contained: database, stand-ins and every downstream URL resolve inside it', () => {
  const objects = rendered['k8s/overlays/dev'];
  const s = settings(objects);
  const services = new Map(lib.find(objects, 'Service').map((svc) => [svc.metadata.name, svc]));
  for (const name of ['INVENTORY_SERVICE_URL', 'PAYMENT_SERVICE_URL', 'SHIPPING_SERVICE_URL', 'NOTIFICATION_SERVICE_URL', 'DATABASE_URL']) {
    const url = new URL(s[name]);
    const svc = services.get(url.hostname);
    assert.ok(svc, `dev: ${name} names ${url.hostname}, which is no Service in the overlay`);
    assert.ok(svc.spec.ports.some((p) => p.port === Number(url.port)), `dev: ${name} port ${url.port}`);
  }
  const standinRoutes = lib.routePaths('scripts/standins/routes.lua');
  for (const name of ['INVENTORY_SERVICE_URL', 'PAYMENT_SERVICE_URL', 'SHIPPING_SERVICE_URL']) {
    const prefix = new URL(s[name]).pathname;
    assert.ok(standinRoutes.some((r) => r.startsWith(prefix + '/')), `dev: ${name} path ${prefix} is served by the stand-ins`);
  }
  assert.ok(standinRoutes.includes(new URL(s.NOTIFICATION_SERVICE_URL).pathname));
  assert.equal(lib.find(objects, 'StatefulSet', 'postgres').length, 1);
  assert.equal(lib.find(rendered['k8s/overlays/prod'], 'StatefulSet').length, 0, 'prod uses a managed database');
});

test('the connection budget in docs/deploy.md matches the manifests and fits max_connections', () => {
  const table = lib.budgetTable();
  for (const overlay of ['dev', 'prod']) {
    const objects = rendered[`k8s/overlays/${overlay}`];
    const dep = server(objects);
    const hpa = lib.one(objects, 'HorizontalPodAutoscaler', 'order-service');
    const c = container(objects);
    const actual = {
      pool: Number(settings(objects).DB_POOL_SIZE),
      workers: Math.ceil(lib.cpu(c.resources.requests.cpu)),
      maxReplicas: hpa.spec.maxReplicas,
      maxSurge: dep.spec.strategy.rollingUpdate.maxSurge,
    };
    actual.total = actual.pool * actual.workers * (actual.maxReplicas + actual.maxSurge) + 1 + 5;
    const row = table.get(overlay);
    assert.ok(row, `docs/deploy.md has a budget row for ${overlay}`);
    const { maxConnections, ...documented } = row;
    assert.deepEqual(documented, actual, `docs/deploy.md's budget for ${overlay} is out of date`);
    assert.ok(actual.total <= maxConnections - 3, `${overlay}: ${actual.total} connections > max_connections ${maxConnections} - 3 reserved`);
    for (const pg of lib.find(objects, 'StatefulSet', 'postgres')) {
      const args = pg.spec.template.spec.containers[0].args.join(' ');
      assert.match(args, new RegExp(`max_connections=${maxConnections}\\b`), `${overlay}: the StatefulSet's max_connections`);
    }
  }
});

test('prod names its image by version; every pod of the service runs the same image', () => {
  for (const dir of deployable) {
    const objects = rendered[dir];
    const images = new Set([container(objects).image, lib.one(objects, 'Job', 'order-service-migrate').spec.template.spec.containers[0].image]);
    assert.equal(images.size, 1, `${dir}: ${[...images]}`);
  }
  const image = container(rendered['k8s/overlays/prod']).image;
  assert.match(image, /:\d+\.\d+\.\d+(@sha256:[0-9a-f]{64})?$/, `prod image ${image}`);
});
