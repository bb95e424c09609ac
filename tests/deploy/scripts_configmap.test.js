// deploy_scripts_configmap: the ConfigMap the pods load their routes and scripts from holds
// exactly the repository's routes.lua and scripts/ (less the stand-ins), byte for byte, and
// tools/k8s-scripts-configmap --check notices when someone edits a script and forgets it.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const lib = require('./lib.js');

// Not shipped (as in the Dockerfile's scripts stage): the stand-in downstream services.
const EXCLUDED = ['scripts/standins/', 'scripts/handlers/standin.lua'];

function repoScripts(root) {
  const walk = (rel) => fs.readdirSync(path.join(root, rel), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(`${rel}/${e.name}`) : [`${rel}/${e.name}`]);
  return ['routes.lua', ...walk('scripts')].filter((p) => !EXCLUDED.some((x) => p === x || p.startsWith(x))).sort();
}

function shipped(objects) {
  const dep = lib.one(objects, 'Deployment', 'order-service');
  const volume = dep.spec.template.spec.volumes.find((v) => v.configMap?.name === 'order-service-scripts');
  const cm = lib.one(objects, 'ConfigMap', 'order-service-scripts');
  return { items: volume.configMap.items, data: cm.data };
}

test('every overlay ships the current routes.lua and scripts/, byte for byte, and nothing else', () => {
  const expected = repoScripts(lib.ROOT);
  assert.ok(expected.includes('scripts/lib/host.lua') && expected.includes('routes.lua'));
  for (const dir of lib.OVERLAYS) {
    const { items, data } = shipped(lib.render(dir));
    assert.deepEqual(items.map((i) => i.path).sort(), expected, `${dir}: the files mounted under /app/live`);
    assert.deepEqual(Object.keys(data).sort(), items.map((i) => i.key).sort(), `${dir}: every key is mounted`);
    for (const { key, path: p } of items) {
      assert.ok(data[key] === lib.read(p), `${dir}: ${p} differs from the ConfigMap: run tools/k8s-scripts-configmap`);
    }
    const bytes = Object.values(data).reduce((n, v) => n + Buffer.byteLength(v), 0);
    assert.ok(bytes < 1024 * 1024, `${dir}: ${bytes} bytes; a ConfigMap holds at most 1 MiB`);
  }
});

test('every handler and filter routes.lua names is shipped', () => {
  const { items } = shipped(lib.render('k8s/base'));
  const paths = new Set(items.map((i) => i.path));
  const routes = lib.read('routes.lua').replace(/--[^\n]*/g, '');
  const handlers = [...routes.matchAll(/handler\s*=\s*"(\w+)\.\w+"/g)].map((m) => `scripts/handlers/${m[1]}.lua`);
  // The names at depth one of every `filters = { ... }` table.
  const filters = [];
  for (const m of routes.matchAll(/filters\s*=\s*\{/g)) {
    let depth = 1;
    let i = m.index + m[0].length;
    for (; depth > 0 && i < routes.length; i++) {
      if (routes[i] === '{') depth++;
      else if (routes[i] === '}') depth--;
      else if (depth === 1) {
        const name = routes.slice(i).match(/^(\w+)\s*=/);
        if (name && /[\s{,]/.test(routes[i - 1])) filters.push(`scripts/filters/${name[1]}.lua`);
      }
    }
  }
  assert.ok(handlers.length > 3 && filters.length >= 1);
  for (const p of [...handlers, ...filters]) assert.ok(paths.has(p), `${p} is not in the ConfigMap`);
});

test('tools/k8s-scripts-configmap --check passes now and fails once a script changes', () => {
  const ok = spawnSync(path.join(lib.ROOT, 'tools/k8s-scripts-configmap'), ['--check'], { encoding: 'utf8' });
  assert.equal(ok.status, 0, ok.stderr);

  // A copy of what the tool reads and writes, with one script edited.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'scripts-drift-'));
  try {
    for (const p of ['tools/k8s-scripts-configmap', 'routes.lua', 'scripts', 'k8s/base/scripts.generated.yaml',
      'k8s/base/scripts-volume.generated.yaml']) {
      fs.cpSync(path.join(lib.ROOT, p), path.join(tmp, p), { recursive: true });
    }
    fs.appendFileSync(path.join(tmp, 'scripts/handlers/health.lua'), '-- edited\n');
    const stale = spawnSync(path.join(tmp, 'tools/k8s-scripts-configmap'), ['--check'], { encoding: 'utf8' });
    assert.equal(stale.status, 1);
    assert.match(stale.stderr, /out of date: scripts\.generated\.yaml/);
    assert.match(stale.stderr, /\+    -- edited/);

    fs.writeFileSync(path.join(tmp, 'scripts/lib/new_module.lua'), 'return {}\n');
    const added = spawnSync(path.join(tmp, 'tools/k8s-scripts-configmap'), ['--check'], { encoding: 'utf8' });
    assert.match(added.stderr, /scripts-volume\.generated\.yaml/, 'a new file changes the volume items too');

    const fixed = spawnSync(path.join(tmp, 'tools/k8s-scripts-configmap'), [], { encoding: 'utf8' });
    assert.equal(fixed.status, 0, fixed.stderr);
    const again = spawnSync(path.join(tmp, 'tools/k8s-scripts-configmap'), ['--check'], { encoding: 'utf8' });
    assert.equal(again.status, 0, again.stderr);
    assert.match(fs.readFileSync(path.join(tmp, 'k8s/base/scripts-volume.generated.yaml'), 'utf8'),
      /key: scripts__lib__new_module\.lua\n\s+path: scripts\/lib\/new_module\.lua/);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
