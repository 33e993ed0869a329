// Cloudflare's official TypeScript SDK (npm `cloudflare`) through permgate: the SDK errors the real API would
// give. Run by tests/sdk.rs (`cargo test`) once per pinned SDK version (4.5.0, 5.2.0, 7.3.0), each installed
// by that test into target/sdk-ts/, with node's own test runner:
//
//   CLOUDFLARE_SDK_DIR=target/sdk-ts/cloudflare-7.3.0 PERMGATE_BIN=target/debug/permgate \
//       node --test tests/sdk/cloudflare_sdk.test.mjs
//
// permgate serves the real route table (routes/cloudflare-v4.yaml) with the real permission-group catalog in
// front of a small upstream that answers like Cloudflare and records what reaches it. Retries are off
// (maxRetries: 0) so each call is one request.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = path.resolve(REPO, process.env.PERMGATE_BIN ?? 'target/debug/permgate');
const SDK_DIR = path.resolve(REPO, process.env.CLOUDFLARE_SDK_DIR ?? 'target/sdk-ts/cloudflare-7.3.0');

const sdkRequire = createRequire(path.join(SDK_DIR, 'package.json'));
const sdk = sdkRequire('cloudflare');
const Cloudflare = sdk.default ?? sdk.Cloudflare ?? sdk;
const BadRequestError = sdk.BadRequestError ?? Cloudflare.BadRequestError;
const PermissionDeniedError = sdk.PermissionDeniedError ?? Cloudflare.PermissionDeniedError;
const NotFoundError = sdk.NotFoundError ?? Cloudflare.NotFoundError;
// 7.x's `exports` map hides package.json from require: read it from the folder.
const VERSION = JSON.parse(readFileSync(path.join(SDK_DIR, 'node_modules/cloudflare/package.json'), 'utf8')).version;
const MAJOR = Number(VERSION.split('.')[0]);

const ACCOUNT_A = '01a7362d577a6c3019a474fd6f485823';
const ACCOUNT_B = '9a7806061c88ada191ed06f989cc3dac';
const ZONE_1 = '023e105f4ecef8ad9ca31a8372d0c353'; // in A
const ZONE_2 = '80ce4497cb0af370df5b9c891d7e2182'; // in A
const ZONE_3 = '3f2a9a7e6b8c4d5e9f0a1b2c3d4e5f60'; // in B
const NAMESPACE = '0f2ac74b498b48028cb68387c421e279';
const JOE = 'e5def38bc61044775ec59fa0607cda84';
const JOE_EMAIL = 'joe.smith@example.com';
const JOE_KEY = '5a0e9c1d2b3f4a5e6d7c8b9a0f1e2d3c4b5a6'; // a global API key: 37 lower-case hex characters
const UNKNOWN_KEY = '0123456789abcdef0123456789abcdef01234';
const UPSTREAM_SECRET = 'cfut_sdk_upstream_secret_5b7d';

const DNS_READ = '82e64a83756745bbbb1c9c2701bf816b';
const ACCOUNT_SETTINGS_READ = 'c1fde68c7bcc44588cbb6ddbc16d6480';
const KV_READ = '8b47d2786a534c08a1f94ee8f9f599ef';

const TOKENS = {
  // secret: [id, owner, groups, resources, extra YAML lines]
  pgt_ts_dns_read_zone1: ['5d1f6c0e2b7a4c8e9f1a2b3c4d5e6f71', { user: JOE }, [DNS_READ],
    { [`com.cloudflare.api.account.zone.${ZONE_1}`]: '*' }, []],
  pgt_ts_expired: ['6e2a7d1f3c8b4d9fa02b3c4d5e6f7082', { user: JOE }, [DNS_READ],
    { [`com.cloudflare.api.account.zone.${ZONE_1}`]: '*' }, ['expires_on: 2024-01-01T00:00:00Z']],
  pgt_ts_account_a: ['7f3b8e2a4d9c4eaf813c4d5e6f708193', { account: ACCOUNT_A },
    [ACCOUNT_SETTINGS_READ, DNS_READ], { [`com.cloudflare.api.account.${ACCOUNT_A}`]: '*' }, []],
  pgt_ts_kv_read: ['8a4c9f3b5e0d4fb0924d5e6f708192a4', { account: ACCOUNT_A }, [KV_READ],
    { [`com.cloudflare.api.account.${ACCOUNT_A}`]: '*' }, []],
};

const sha256 = (text) => createHash('sha256').update(text).digest('hex');

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// --- the upstream: answers like Cloudflare, records what reaches it ----------------------------------------

const envelope = (result, extra = {}) => ({ success: true, errors: [], messages: [], result, ...extra });

class Upstream {
  constructor({ secret } = {}) {
    this.requests = [];
    this.secret = secret;
    this.server = http.createServer((request, response) => {
      let body = '';
      request.on('data', (chunk) => { body += chunk; });
      request.on('end', () => {
        this.requests.push({ method: request.method, url: request.url, headers: request.headers });
        const [status, payload, type] = this.route(request, body);
        response.writeHead(status, { 'content-type': type ?? 'application/json' });
        response.end(typeof payload === 'string' ? payload : JSON.stringify(payload));
      });
    });
  }

  async start() {
    await new Promise((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  stop() {
    this.server.closeAllConnections?.();
    return new Promise((resolve) => this.server.close(resolve));
  }

  count(method) {
    return this.requests.filter((request) => method === undefined || request.method === method).length;
  }

  route(request, body) {
    if (this.secret !== undefined && request.headers.authorization !== `Bearer ${this.secret}`) {
      return [401, { success: false, errors: [{ code: 10000, message: 'Authentication error' }], messages: [], result: null }];
    }
    const url = new URL(request.url, 'http://upstream');
    const page = Number(url.searchParams.get('page') ?? '1');
    const rawPath = request.url.split('?')[0];
    let match;
    if ((match = rawPath.match(/^\/client\/v4\/zones\/([0-9a-f]{32})$/)) && request.method === 'GET') {
      return [200, envelope({ id: match[1], name: 'example.com', status: 'active', account: { id: ACCOUNT_A } })];
    }
    if (/^\/client\/v4\/zones\/[0-9a-f]{32}\/dns_records$/.test(rawPath) && request.method === 'GET') {
      // Two records on page 1, none after: the SDK's auto-pagination asks for page 2 and stops.
      const rows = page === 1 ? [
        { id: '372e67954025e0ba6aaa6d586b9e0b59', type: 'A', name: 'www.example.com', content: '198.51.100.4' },
        { id: '372e67954025e0ba6aaa6d586b9e0b60', type: 'A', name: 'api.example.com', content: '198.51.100.5' },
      ] : [];
      return [200, envelope(rows, { result_info: { page, per_page: 100, count: rows.length, total_count: 2, total_pages: 1 } })];
    }
    if (/^\/client\/v4\/zones\/[0-9a-f]{32}\/dns_records$/.test(rawPath) && request.method === 'POST') {
      return [200, envelope({ id: '023e105f4ecef8ad9ca31a8372d0c353', ...JSON.parse(body || '{}') })];
    }
    if (rawPath === '/client/v4/accounts' && request.method === 'GET') {
      return [200, envelope(page === 1 ? [{ id: ACCOUNT_A, name: 'Example Company' }] : [],
        { result_info: { page, per_page: 20, count: page === 1 ? 1 : 0, total_count: 1, total_pages: 1 } })];
    }
    if ((match = rawPath.match(/^\/client\/v4\/accounts\/[0-9a-f]{32}\/storage\/kv\/namespaces\/[0-9a-f]{32}\/values\/([^/]+)$/))) {
      return [200, `value of ${match[1]}`, 'application/octet-stream'];
    }
    return [404, { success: false, errors: [{ code: 7003, message: 'No route for the URI' }], messages: [], result: null }];
  }
}

// --- the gateway -------------------------------------------------------------------------------------------

async function writeConfig(folder, upstreamUrl, auth) {
  const [port, admin] = [await freePort(), await freePort()];
  writeFileSync(path.join(folder, 'gateway.yaml'), `listen: 127.0.0.1:${port}
admin_listen: 127.0.0.1:${admin}
upstream:
  url: ${upstreamUrl}
  connect_timeout_ms: 500
${auth ? `  auth: ${auth}\n` : ''}policy_files:
  - ${path.join(REPO, 'config/cloudflare/permission_groups.yaml')}
  - ${path.join(REPO, 'config/cloudflare/resource_types.yaml')}
  - accounts.yaml
  - tokens.yaml
route_files:
  - ${path.join(REPO, 'routes/cloudflare-v4.yaml')}
decision_log: { sink: off }
`);
  writeFileSync(path.join(folder, 'accounts.yaml'), `users:
  - { id: ${JOE}, email: ${JOE_EMAIL}, api_key_sha256: ${sha256(JOE_KEY)} }
accounts:
  - id: ${ACCOUNT_A}
    name: Example Company
    zones: [{ id: ${ZONE_1}, name: example.com }, { id: ${ZONE_2}, name: example.net }]
    members:
      - user: ${JOE}
        policies:
          - id: a1b2c3d4e5f60718293a4b5c6d7e8f90
            access: allow
            permission_groups: [{ id: 0f0e0d0c0b0a09080706050403020100, name: All (inline), permissions: ["*"] }]
            resource_groups:
              - scope: { key: com.cloudflare.api.account.${ACCOUNT_A}, objects: [{ key: "*" }] }
  - id: ${ACCOUNT_B}
    name: Globex
    zones: [{ id: ${ZONE_3}, name: globex.example }]
`);
  const lines = ['tokens:'];
  for (const [secret, [id, owner, groups, resources, extra]] of Object.entries(TOKENS)) {
    lines.push(`  - id: ${id}`, `    name: ${secret}`, `    owner: ${JSON.stringify(owner)}`,
      `    secret_sha256: ${sha256(secret)}`, ...extra.map((line) => `    ${line}`), '    policies:',
      `      - id: ${[...id].reverse().join('')}`, '        effect: allow',
      `        permission_groups: ${JSON.stringify(groups.map((group) => ({ id: group })))}`,
      `        resources: ${JSON.stringify(resources)}`);
  }
  writeFileSync(path.join(folder, 'tokens.yaml'), `${lines.join('\n')}\n`);
  return port;
}

async function waitForPort(port, child, output) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`permgate exited: ${output()}`);
    const open = await new Promise((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => { socket.destroy(); resolve(true); });
      socket.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`permgate did not start listening: ${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function startGateway(upstreamUrl, { auth, env } = {}) {
  const folder = mkdtempSync(path.join(os.tmpdir(), 'permgate-sdk-ts-'));
  const port = await writeConfig(folder, upstreamUrl, auth);
  let output = '';
  const child = spawn(BIN, ['serve', '--config', path.join(folder, 'gateway.yaml')], {
    env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (chunk) => { output += chunk; });
  child.stderr.on('data', (chunk) => { output += chunk; });
  await waitForPort(port, child, () => output);
  return {
    baseURL: `http://127.0.0.1:${port}/client/v4`,
    output: () => output,
    stop: () => new Promise((resolve) => { child.once('exit', resolve); child.kill('SIGTERM'); }),
  };
}

/** A client that reads nothing from the environment but what it is given. */
function client(gateway, credentials) {
  return new Cloudflare({
    apiToken: null, apiEmail: null, apiKey: null, ...credentials, baseURL: gateway.baseURL, maxRetries: 0,
  });
}

/** Runs `call`, which must fail with `errorClass`; returns the error. */
async function failure(call, errorClass) {
  try {
    await call();
  } catch (error) {
    assert.ok(error instanceof errorClass,
      `expected ${errorClass.name}, got ${error?.constructor?.name}: ${error?.message}`);
    return error;
  }
  assert.fail(`expected ${errorClass.name}, the call succeeded`);
}

// --- the tests ---------------------------------------------------------------------------------------------

describe(`cloudflare ${VERSION} through permgate`, () => {
  let upstream;
  let gateway;

  before(async () => {
    upstream = await new Upstream().start();
    gateway = await startGateway(upstream.url);
  });

  after(async () => {
    await gateway?.stop();
    await upstream?.stop();
  });

  test('a DNS-read token lists records, paging until the end, but cannot create one', async () => {
    const cf = client(gateway, { apiToken: 'pgt_ts_dns_read_zone1' });
    const before = upstream.requests.length;
    const names = [];
    for await (const record of cf.dns.records.list({ zone_id: ZONE_1 })) names.push(record.name);
    assert.deepEqual(names, ['www.example.com', 'api.example.com']);
    const pages = upstream.requests.slice(before).map((request) => request.url);
    assert.equal(pages.length, 2, `page 1, then an empty page 2 ends it: ${pages}`);
    assert.equal((await cf.zones.get({ zone_id: ZONE_1 })).id, ZONE_1);

    const posts = upstream.count('POST');
    const denied = await failure(() => cf.dns.records.create({
      zone_id: ZONE_1, name: 'new.example.com', type: 'A', content: '198.51.100.7', ttl: 1,
    }), PermissionDeniedError);
    assert.equal(denied.status, 403);
    assert.equal(denied.errors[0].code, 10000);
    assert.equal(denied.errors[0].message, 'Authentication error');
    assert.equal(upstream.count('POST'), posts, 'a denied call never reaches the upstream');
  });

  test('the upstream sees the caller, never its secret', async () => {
    await client(gateway, { apiToken: 'pgt_ts_dns_read_zone1' }).zones.get({ zone_id: ZONE_1 });
    const { headers } = upstream.requests.at(-1);
    assert.equal(headers['x-permgate-principal'], `user:${JOE}`);
    assert.equal(headers.authorization, undefined);
  });

  test('a path the route table does not have is BadRequestError 400/7000, as Cloudflare answers it', async () => {
    const cf = client(gateway, { apiToken: 'pgt_ts_dns_read_zone1' });
    const before = upstream.requests.length;
    // An SDK method whose operation has no permission annotation: no route in the shipped table.
    const noRoute = await failure(() => cf.rulesets.list({ zone_id: ZONE_1 }), BadRequestError);
    assert.equal(noRoute.status, 400);
    assert.equal(noRoute.errors[0].code, 7000);
    assert.equal(noRoute.errors[0].message, 'No route for that URI');
    assert.ok(!(noRoute instanceof NotFoundError));
    // A method the path does not have is answered the same way.
    const method = await failure(() => cf.put(`/zones/${ZONE_1}/dns_records`, { body: {} }), BadRequestError);
    assert.equal(method.errors[0].code, 7000);
    assert.equal(upstream.requests.length, before);
  });

  test('an account-owned token may not list accounts: BadRequestError 400/1001, as Cloudflare answers it', async () => {
    const refused = await failure(
      () => client(gateway, { apiToken: 'pgt_ts_account_a' }).accounts.list(), BadRequestError);
    assert.equal(refused.status, 400);
    assert.equal(refused.errors[0].code, 1001);
    assert.equal(refused.errors[0].message, 'List accounts endpoint does not support account owned tokens.');
    // A user token, and a legacy key, list the accounts they can see.
    const ids = [];
    for await (const account of client(gateway, { apiToken: 'pgt_ts_dns_read_zone1' }).accounts.list()) ids.push(account.id);
    assert.deepEqual(ids, [ACCOUNT_A]);
    const legacy = client(gateway, { apiEmail: JOE_EMAIL, apiKey: JOE_KEY });
    assert.equal((await legacy.accounts.list()).result.length, 1);
    // The account token is otherwise what its policies say: DNS in its own account only.
    const account = client(gateway, { apiToken: 'pgt_ts_account_a' });
    assert.equal((await account.dns.records.list({ zone_id: ZONE_2 })).result.length, 2);
    const other = await failure(() => account.dns.records.list({ zone_id: ZONE_3 }), PermissionDeniedError);
    assert.equal(other.errors[0].code, 10000);
  });

  test('tokens: expired or unknown is PermissionDeniedError 1000', async () => {
    for (const token of ['pgt_ts_expired', 'pgt_ts_never_issued']) {
      const denied = await failure(() => client(gateway, { apiToken: token }).zones.get({ zone_id: ZONE_1 }),
        PermissionDeniedError);
      assert.equal(denied.errors[0].code, 1000);
      assert.equal(denied.errors[0].message, 'Invalid API Token');
    }
    const verified = await client(gateway, { apiToken: 'pgt_ts_dns_read_zone1' }).user.tokens.verify();
    assert.equal(verified.id, TOKENS.pgt_ts_dns_read_zone1[0]);
    assert.equal(verified.status, 'active');
  });

  test('legacy keys: a malformed key is BadRequestError 6003/6103 before any lookup; an unknown one is 9103', async () => {
    const good = client(gateway, { apiEmail: JOE_EMAIL, apiKey: JOE_KEY });
    assert.equal((await good.zones.get({ zone_id: ZONE_1 })).id, ZONE_1);
    const malformed = await failure(
      () => client(gateway, { apiEmail: JOE_EMAIL, apiKey: 'not-a-global-api-key' }).zones.get({ zone_id: ZONE_1 }),
      BadRequestError);
    assert.equal(malformed.errors[0].code, 6003);
    assert.equal(malformed.errors[0].error_chain[0].code, 6103);
    assert.equal(malformed.errors[0].error_chain[0].message, 'Invalid format for X-Auth-Key header');
    const unknown = await failure(
      () => client(gateway, { apiEmail: JOE_EMAIL, apiKey: UNKNOWN_KEY }).zones.get({ zone_id: ZONE_1 }),
      PermissionDeniedError);
    assert.equal(unknown.errors[0].code, 9103);
  });

  test('a token next to a leftover CLOUDFLARE_EMAIL / CLOUDFLARE_API_KEY in the environment', async () => {
    const saved = { ...process.env };
    Object.assign(process.env, {
      CLOUDFLARE_API_TOKEN: 'pgt_ts_dns_read_zone1', CLOUDFLARE_EMAIL: JOE_EMAIL, CLOUDFLARE_API_KEY: UNKNOWN_KEY,
    });
    let cf;
    try {
      cf = new Cloudflare({ baseURL: gateway.baseURL, maxRetries: 0 });
    } finally {
      for (const name of ['CLOUDFLARE_API_TOKEN', 'CLOUDFLARE_EMAIL', 'CLOUDFLARE_API_KEY']) {
        if (saved[name] === undefined) delete process.env[name]; else process.env[name] = saved[name];
      }
    }
    const before = upstream.requests.length;
    if (MAJOR >= 7) {
      // 7.x sends every credential it finds: both kinds at once are refused, as Cloudflare refuses them.
      const both = await failure(() => cf.zones.get({ zone_id: ZONE_1 }), BadRequestError);
      assert.equal(both.errors[0].code, 6003);
      assert.equal(both.errors[0].error_chain[0].code, 6111);
    } else {
      // 4.x and 5.x send the email and key instead of the token: the leftover key is what is checked.
      const legacy = await failure(() => cf.zones.get({ zone_id: ZONE_1 }), PermissionDeniedError);
      assert.equal(legacy.errors[0].code, 9103);
    }
    assert.equal(upstream.requests.length, before);
  });

  test('a Workers KV key name holding a slash reaches the upstream as %2F, and only there', async () => {
    const cf = client(gateway, { apiToken: 'pgt_ts_kv_read' });
    // 7.x encodes path parameters itself; 4.x and 5.x interpolate them as given, so the caller encodes.
    const value = MAJOR >= 7
      ? await cf.kv.namespaces.values.get('images/cat.png', { account_id: ACCOUNT_A, namespace_id: NAMESPACE })
      : await cf.kv.namespaces.values.get(NAMESPACE, encodeURIComponent('images/cat.png'), { account_id: ACCOUNT_A });
    assert.equal(await value.text(), 'value of images%2Fcat.png');
    assert.equal(upstream.requests.at(-1).url,
      `/client/v4/accounts/${ACCOUNT_A}/storage/kv/namespaces/${NAMESPACE}/values/images%2Fcat.png`,
      'forwarded byte for byte');
    // Anywhere else a slash in a parameter is refused: encoded (7.x), a rejected target (6003); raw (4.x,
    // 5.x), another path, which has no route (7000).
    const before = upstream.requests.length;
    const elsewhere = await failure(
      () => client(gateway, { apiToken: 'pgt_ts_dns_read_zone1' }).dns.records.get('a/b', { zone_id: ZONE_1 }),
      BadRequestError);
    assert.equal(elsewhere.errors[0].code, MAJOR >= 7 ? 6003 : 7000);
    assert.equal(upstream.requests.length, before);
  });
});

describe(`cloudflare ${VERSION} through a gateway holding the upstream's own credential`, () => {
  test('a narrow permgate token reaches an upstream that accepts only the upstream credential', async () => {
    const upstream = await new Upstream({ secret: UPSTREAM_SECRET }).start();
    const gateway = await startGateway(upstream.url, {
      auth: '{ bearer_env: PERMGATE_SDK_UPSTREAM_TOKEN }', env: { PERMGATE_SDK_UPSTREAM_TOKEN: UPSTREAM_SECRET },
    });
    try {
      const cf = client(gateway, { apiToken: 'pgt_ts_dns_read_zone1' });
      assert.equal((await cf.dns.records.list({ zone_id: ZONE_1 })).result.length, 2);
      assert.equal(upstream.requests.at(-1).headers.authorization, `Bearer ${UPSTREAM_SECRET}`);
      const before = upstream.requests.length;
      await failure(() => cf.dns.records.list({ zone_id: ZONE_2 }), PermissionDeniedError);
      assert.equal(upstream.requests.length, before, 'a denied request never carries it');
    } finally {
      await gateway.stop();
      await upstream.stop();
    }
    assert.ok(!gateway.output().includes(UPSTREAM_SECRET));
  });
});

describe(`cloudflare ${VERSION} against permgate demo --config config/cloudflare/gateway.yaml`, () => {
  test('the demo is an SDK playground: lists page to their end, KV values come back, errors are Cloudflare\'s', async () => {
    const demo = spawn(BIN, ['demo', '--config', path.join(REPO, 'config/cloudflare/gateway.yaml'),
      '--listen', '127.0.0.1:0'], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let printed = '';
    demo.stdout.on('data', (chunk) => { printed += chunk; });
    try {
      const deadline = Date.now() + 20_000;
      while (!printed.includes('Python')) {
        assert.ok(Date.now() < deadline && demo.exitCode === null, `the demo did not start: ${printed}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const baseURL = printed.match(/baseURL: '([^']+)'/)[1];
      assert.match(baseURL, /\/client\/v4$/);
      const cf = new Cloudflare({ apiToken: 'pgt_cf_demo_joe_dns_read', apiEmail: null, apiKey: null, baseURL, maxRetries: 0 });
      const ids = [];
      for await (const record of cf.dns.records.list({ zone_id: '023e105f4ecef8ad9ca31a8372d0c353' })) ids.push(record.id);
      assert.equal(ids.length, 3, 'the sample upstream holds three items, then an empty page');
      const kv = new Cloudflare({ apiToken: 'pgt_cf_demo_kv_read', apiEmail: null, apiKey: null, baseURL, maxRetries: 0 });
      const [account, namespace] = ['01a7362d577a6c3019a474fd6f485823', '0f2ac74b498b48028cb68387c421e279'];
      const value = MAJOR >= 7
        ? await kv.kv.namespaces.values.get('images/cat.png', { account_id: account, namespace_id: namespace })
        : await kv.kv.namespaces.values.get(namespace, encodeURIComponent('images/cat.png'), { account_id: account });
      assert.equal(await value.text(), 'sample value of images%2Fcat.png');
      const ci = new Cloudflare({ apiToken: 'pgt_cf_demo_example_ci', apiEmail: null, apiKey: null, baseURL, maxRetries: 0 });
      const refused = await failure(() => ci.accounts.list(), BadRequestError);
      assert.equal(refused.errors[0].code, 1001);
      const missing = await failure(() => cf.rulesets.list({ zone_id: '023e105f4ecef8ad9ca31a8372d0c353' }), BadRequestError);
      assert.equal(missing.errors[0].code, 7000);
    } finally {
      await new Promise((resolve) => { demo.once('exit', resolve); demo.kill('SIGTERM'); });
    }
  });
});
