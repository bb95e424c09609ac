// The OpenAPI document at /orders-doc/openapi.json through a real validator
// (@apidevtools/swagger-parser: the OpenAPI 3.1 schema, $refs resolved, unique operationIds,
// path parameters declared). The service needs no database to serve it.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const SwaggerParser = require('@apidevtools/swagger-parser');
const lib = require('./lib');

let svc;
let doc;

test.before(async () => {
  svc = await lib.startService({ DATABASE_URL: '', JOBS: '0' });
  const r = await fetch(svc.url + '/orders-doc/openapi.json');
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /^application\/json/);
  doc = await r.json();
});

test.after(async () => {
  if (svc) await svc.stop();
});

test('the document is valid OpenAPI 3.1', async () => {
  assert.equal(doc.openapi, '3.1.0');
  const api = await SwaggerParser.validate(structuredClone(doc));
  assert.ok(Object.keys(api.paths).length >= 10);
});

test('the validator is not a rubber stamp: a broken copy is refused', async () => {
  const broken = structuredClone(doc);
  delete broken.paths['/v1/orders/{id}/'].get.responses['200'].description; // required by the 3.1 schema
  await assert.rejects(SwaggerParser.validate(broken));
  const unknown = structuredClone(doc);
  unknown.paths['/v1/orders/'].get.parameters[0].in = 'body';              // not an OpenAPI 3 location
  await assert.rejects(SwaggerParser.validate(unknown));
  const dangling = structuredClone(doc);
  dangling.components.schemas.Order = undefined;
  delete dangling.components.schemas.Order;               // $ref to nothing
  await assert.rejects(SwaggerParser.validate(dangling));
});

test('every operation documents its responses, errors included, and has an example where it takes input', () => {
  for (const [p, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const where = `${method.toUpperCase()} ${p}`;
      assert.ok(op.summary, `${where}: summary`);
      assert.ok(Object.keys(op.responses).some((s) => s.startsWith('2')), `${where}: a success response`);
      assert.ok(op.responses['500'], `${where}: 500`);
      for (const param of op.parameters || []) assert.notEqual(param.example, undefined, `${where}: ${param.name} example`);
      if (op.requestBody) {
        const ref = op.requestBody.content['application/json'].schema.$ref.split('/').pop();
        assert.ok(doc.components.schemas[ref].examples, `${where}: request example`);
      }
    }
  }
});
