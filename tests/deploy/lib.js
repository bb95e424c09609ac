// Helpers of the deploy tests: render the kustomizations, read the repository's own sources
// (routes, settings, the settings table in docs/deploy.md) and validate objects against the
// Kubernetes schemas. Needs the npm packages of package.json (NODE_PATH points at them).
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const YAML = require('yaml');

const ROOT = process.env.SOURCE_DIR || path.resolve(__dirname, '..', '..');
const OVERLAYS = ['k8s/base', 'k8s/overlays/dev', 'k8s/overlays/prod'];

function read(rel) {
  return fs.readFileSync(path.join(ROOT, rel), 'utf8');
}

// `kubectl kustomize` (kustomize v5 built in) renders offline.
function render(dir) {
  let out;
  try {
    out = execFileSync('kubectl', ['kustomize', path.join(ROOT, dir)], { encoding: 'utf8', maxBuffer: 64 << 20 });
  } catch (e) {
    if (e.code === 'ENOENT') throw new Error('kubectl not found: these tests render k8s/ with `kubectl kustomize`');
    throw e;
  }
  return YAML.parseAllDocuments(out).map((d) => {
    if (d.errors.length) throw new Error(`${dir}: ${d.errors[0].message}`);
    return d.toJS();
  }).filter(Boolean);
}

function find(objects, kind, name) {
  return objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name ||
    (o.metadata.name.startsWith(name + '-') && /^[a-z0-9]{10}$/.test(o.metadata.name.slice(name.length + 1)))));
}

function one(objects, kind, name) {
  const found = find(objects, kind, name);
  if (found.length !== 1) throw new Error(`expected one ${kind} ${name}, found ${found.length}`);
  return found[0];
}

// Every route path in a routes file: `path = "/health/"`.
function routePaths(rel) {
  return [...read(rel).matchAll(/\bpath\s*=\s*"([^"]+)"/g)].map((m) => m[1]);
}

// Every environment variable the service reads: env_int("NAME", ...) and getenv("NAME") in
// core/*.c, os.getenv("NAME") and env_number("NAME", ...) in scripts/ and routes.lua.
function envVarsRead() {
  const files = fs.readdirSync(path.join(ROOT, 'core')).filter((f) => f.endsWith('.c')).map((f) => 'core/' + f);
  const walk = (rel) => fs.readdirSync(path.join(ROOT, rel), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? walk(rel + '/' + e.name) : e.name.endsWith('.lua') ? [rel + '/' + e.name] : []);
  files.push(...walk('scripts'), 'routes.lua');
  const names = new Map();
  for (const f of files) {
    for (const m of read(f).matchAll(/\b(?:getenv|env_[a-z]+)\s*\(\s*"([A-Z][A-Z0-9_]*)"/g)) {
      if (!names.has(m[1])) names.set(m[1], f);
    }
  }
  return names;
}

// docs/deploy.md's settings table: | `NAME` | required|optional|unused | from | why |
function settingsTable() {
  const rows = new Map();
  for (const m of read('docs/deploy.md').matchAll(/^\| `([A-Z][A-Z0-9_]*)` \| (required|optional|unused) \| *([a-zA-Z]*) *\|/gm)) {
    rows.set(m[1], { need: m[2], from: m[3] });
  }
  return rows;
}

// docs/deploy.md's budget table: | overlay | pool | workers | maxReplicas | maxSurge | total | max_connections |
function budgetTable() {
  const rows = new Map();
  for (const m of read('docs/deploy.md').matchAll(/^\| (dev|prod) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|$/gm)) {
    const [pool, workers, maxReplicas, maxSurge, total, maxConnections] = m.slice(2).map(Number);
    rows.set(m[1], { pool, workers, maxReplicas, maxSurge, total, maxConnections });
  }
  return rows;
}

// The model class of an object, from kubernetes-models (and the Prometheus Operator's models).
function modelClass(obj) {
  const [group, version] = obj.apiVersion.includes('/') ? obj.apiVersion.split('/') : ['', obj.apiVersion];
  const candidates = group === 'monitoring.coreos.com'
    ? [`@kubernetes-models/prometheus-operator/${group}/${version}/${obj.kind}`]
    : [`kubernetes-models/${group ? group + '/' : ''}${version}/${obj.kind}`];
  for (const c of candidates) {
    try {
      return require(c)[obj.kind];
    } catch (e) {
      if (e.code !== 'MODULE_NOT_FOUND') throw e;
    }
  }
  return null;
}

// Wraps value so that every property the validator looks at is recorded. The compiled schema
// validators test each property the schema defines (`data.x === undefined || ...`) and enumerate
// the keys of maps (labels, data); a key never looked at is one the schema does not know: the
// typo'd field that a plain JSON-schema check (no additionalProperties: false) would accept.
function track(value, where, seen) {
  if (value === null || typeof value !== 'object') return value;
  const info = { accessed: new Set(), enumerated: false, where, value };
  seen.push(info);
  const children = new Map();
  return new Proxy(value, {
    get(target, key, receiver) {
      const v = Reflect.get(target, key, receiver);
      if (typeof key !== 'string') return v;
      info.accessed.add(key);
      if (v === null || typeof v !== 'object') return v;
      if (!children.has(key)) children.set(key, track(v, `${where}/${key}`, seen));
      return children.get(key);
    },
    has(target, key) {
      if (typeof key === 'string') info.accessed.add(key);
      return Reflect.has(target, key);
    },
    ownKeys(target) {
      info.enumerated = true;
      return Reflect.ownKeys(target);
    },
  });
}

// Problems of one object against its schema: [] when it is valid and has no unknown field.
function schemaProblems(obj) {
  const cls = modelClass(obj);
  if (!cls) return [`no schema for ${obj.apiVersion} ${obj.kind}`];
  const seen = [];
  const problems = [];
  try {
    cls.prototype.validate.call(track(obj, '', seen));
  } catch (e) {
    problems.push(e.message);
  }
  for (const info of seen) {
    if (Array.isArray(info.value) || info.enumerated) continue;
    for (const key of Object.keys(info.value)) {
      if (!info.accessed.has(key)) problems.push(`unknown field ${info.where}/${key}`);
    }
  }
  return problems;
}

// The pod templates of workload objects.
function podTemplates(objects) {
  return objects.filter((o) => ['Deployment', 'StatefulSet', 'Job', 'DaemonSet'].includes(o.kind))
    .map((o) => ({ owner: `${o.kind}/${o.metadata.name}`, spec: o.spec.template.spec, labels: o.spec.template.metadata.labels }));
}

// Kubernetes quantities we use: "2", "500m".
function cpu(q) {
  const s = String(q);
  return s.endsWith('m') ? Number(s.slice(0, -1)) / 1000 : Number(s);
}

module.exports = {
  ROOT, OVERLAYS, read, render, find, one, routePaths, envVarsRead, settingsTable, budgetTable,
  schemaProblems, podTemplates, cpu,
};
