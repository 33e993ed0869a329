// The admin console in a real browser (Debian's Chromium driven by playwright-core), against the real
// gateway that tests/suite/console_browser.rs started. Usage: node console_browser.mjs ARGS.json
//
// ARGS.json (written by the Rust test): admin and proxy URLs, the demo token and the path to deny, the reason
// `permgate check` gives for that denial, `permgate access who-can --json`'s answer, the accounts file to
// edit and the edit, the secrets and secret hashes that must never be served, where the screenshots go.
//
// It checks, failing with a message on the first miss:
// 1. every page loads without a console error, page error or CSP violation;
// 2. a denial made by a real request appears in Recent denials with its reason, without reloading the page;
// 3. the Who-can page lists exactly the credentials of `permgate access who-can --json`;
// 4. an edit of a config file shows the new generation and the access change on the Overview page without
//    reloading it (the page is the same document before and after);
// 5. no secret, and no 12 hex digits of a secret hash, is in any HTML, JSON, JS or CSS the browser received;
// and takes a screenshot of each page.
import { readFileSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';

const args = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const require = createRequire(join(args.playwright_dir, 'package.json'));
const { chromium } = require('playwright-core');

const PAGES = [
  ['overview', '/console/'],
  ['traffic', '/console/traffic'],
  ['denials', '/console/denials'],
  ['routes', '/console/routes'],
  ['who-can', '/console/who-can'],
  ['why-denied', '/console/why-denied'],
];

function fail(message) {
  throw new Error(message);
}

const problems = [];
const bodies = [];
const browser = await chromium.launch({
  executablePath: args.chromium,
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
  // Reported by the page itself too (Chromium also logs each violation as a console error).
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (event) => {
      console.error(`CSP violation: ${event.violatedDirective} ${event.blockedURI}`);
    });
  });
  const page = await context.newPage();
  page.on('console', (message) => {
    if (message.type() === 'error') {
      problems.push(`${page.url()}: console ${message.type()}: ${message.text()}`);
    }
  });
  page.on('pageerror', (error) => problems.push(`${page.url()}: page error: ${error.message}`));
  page.on('response', async (response) => {
    try {
      bodies.push({ url: response.url(), body: await response.text() });
    } catch {
      // A redirect or an aborted load has no body.
    }
  });
  const checkProblems = (where) => {
    if (problems.length) fail(`${where}:\n${problems.join('\n')}`);
  };

  // 1. Every page, with its script running (two polls).
  for (const [name, path] of PAGES) {
    const response = await page.goto(args.admin + path, { waitUntil: 'load' });
    if (response.status() !== 200) fail(`${path}: status ${response.status()}`);
    await page.waitForTimeout(2500);
    const shown = await page.textContent('#pg-hash');
    if (!args.content_hash.startsWith(shown) || shown.length < 12) fail(`${path}: hash ${shown}`);
    const links = await page.$$eval('nav a', (anchors) => anchors.map((a) => a.getAttribute('href')));
    for (const [, other] of PAGES) if (!links.includes(other)) fail(`${path}: no link to ${other}`);
    checkProblems(`loading ${name}`);
  }
  const root = await page.goto(args.admin + '/', { waitUntil: 'load' });
  if (new URL(page.url()).pathname !== '/console/' || root.status() !== 200) fail(`/ went to ${page.url()}`);

  // 2. A denial by a real request shows up in Recent denials, which follows live.
  await page.goto(args.admin + '/console/denials', { waitUntil: 'load' });
  const denied = await fetch(args.proxy + args.deny_path, {
    method: 'POST',
    headers: { authorization: `Bearer ${args.demo_token}` },
  });
  if (denied.status !== 403) fail(`the denied request answered ${denied.status}`);
  await page.locator('tr.denial td.reason', { hasText: args.deny_reason }).first()
    .waitFor({ timeout: 15000 });
  const row = await page.locator('tr.denial').first().textContent();
  if (!row.includes('POST') || !row.includes(args.deny_path)) fail(`denial row: ${row}`);
  // Filtered by route: still there; by a reason nobody has: gone.
  await page.fill('input[name="route"]', 'dns_records.create');
  await Promise.all([page.waitForNavigation(), page.click('form.filters button')]);
  if ((await page.locator('tr.denial').count()) < 1) fail('the route filter lost the denial');
  await page.goto(args.admin + '/console/denials?reason=no+such+reason', { waitUntil: 'load' });
  if ((await page.locator('tr.denial').count()) !== 0) fail('the reason filter kept a denial');
  await page.goto(args.admin + '/console/denials', { waitUntil: 'load' });
  await page.screenshot({ path: join(args.screenshots, 'denials.png') });
  // Its why? link runs the same decision again.
  await Promise.all([page.waitForNavigation(), page.locator('tr.denial a', { hasText: 'why?' }).first().click()]);
  if ((await page.textContent('#pg-decision')).trim() !== 'deny') fail('why? did not deny');
  if (!(await page.textContent('main')).includes(args.deny_reason)) fail('why? shows another reason');
  await page.screenshot({ path: join(args.screenshots, 'why-denied.png') });
  checkProblems('denials');

  // 3. Who can call the route: the same credentials as the CLI.
  await page.goto(`${args.admin}/console/who-can?method=GET&path=${encodeURIComponent(args.who_can_path)}&at=${args.at}`,
    { waitUntil: 'load' });
  const listed = await page.$$eval('table[data-list="allowed"] td.credential a',
    (cells) => cells.map((cell) => cell.textContent.trim()));
  const expected = args.who_can.allowed.map((holder) => (holder.credential.token_id
    ? `token ${holder.credential.token_id}` : `legacy key of ${holder.credential.owner.email}`));
  if (JSON.stringify(listed) !== JSON.stringify(expected)) {
    fail(`who-can lists ${JSON.stringify(listed)}, the CLI ${JSON.stringify(expected)}`);
  }
  await page.screenshot({ path: join(args.screenshots, 'who-can.png') });
  // A credential's own access, from its link.
  await Promise.all([page.waitForNavigation(), page.locator('td.credential a').first().click()]);
  if ((await page.locator('table.resources tbody tr').count()) < 1) fail('explain lists no resource');
  checkProblems('who-can');

  // 4. A config edit, seen live on the Overview page.
  await page.goto(args.admin + '/console/', { waitUntil: 'load' });
  const before = Number(await page.textContent('#pg-generation'));
  await page.evaluate(() => { window.permgateSameDocument = true; });
  const text = readFileSync(args.accounts, 'utf8');
  if (text.split(args.edit_from).length !== 2) fail(`${args.edit_from} is not in ${args.accounts} once`);
  writeFileSync(`${args.accounts}.tmp`, text.replace(args.edit_from, args.edit_to));
  renameSync(`${args.accounts}.tmp`, args.accounts);
  await page.waitForFunction((generation) => Number(document.getElementById('pg-generation').textContent) === generation,
    before + 1, { timeout: 30000 });
  await page.locator('#pg-last-change', { hasText: args.change_label }).waitFor({ timeout: 30000 });
  const change = await page.textContent('#pg-last-change');
  if (!change.includes(`${args.change_gained} gained`)) fail(`last change: ${change}`);
  if (!(await page.evaluate(() => window.permgateSameDocument === true))) fail('the page was reloaded');
  const generationInTable = await page.locator('table.facts tr', { hasText: 'generation' }).first().textContent();
  if (!generationInTable.includes(String(before + 1))) fail(`overview table: ${generationInTable}`);
  await page.screenshot({ path: join(args.screenshots, 'overview.png'), fullPage: true });
  checkProblems('config edit');

  // The remaining screenshots, with some traffic to chart: allowed and denied calls for a few seconds.
  await page.goto(args.admin + '/console/traffic', { waitUntil: 'load' });
  for (let round = 0; round < 12; round += 1) {
    const calls = [];
    for (let i = 0; i < 8; i += 1) {
      calls.push(fetch(args.proxy + args.deny_path, {
        method: i % 3 === 0 ? 'POST' : 'GET',
        headers: { authorization: `Bearer ${args.demo_token}` },
      }).then((response) => response.arrayBuffer()));
    }
    await Promise.all(calls);
    await page.waitForTimeout(500);
  }
  await page.waitForTimeout(2500);
  const requests = await page.locator('table.facts tr', { hasText: 'requests' }).first().textContent();
  if (!/\d{2,}/.test(requests)) fail(`the traffic page did not follow: ${requests}`);
  await page.screenshot({ path: join(args.screenshots, 'traffic.png') });
  await page.goto(args.admin + '/console/routes?q=dns', { waitUntil: 'load' });
  await page.screenshot({ path: join(args.screenshots, 'routes.png') });
  checkProblems('screenshots');

  // 5. Nothing secret in anything served.
  if (bodies.length < 20) fail(`only ${bodies.length} responses seen`);
  for (const { url, body } of bodies) {
    const lower = body.toLowerCase();
    for (const secret of args.secrets) {
      if (lower.includes(secret.toLowerCase())) fail(`${url} holds a secret`);
    }
    for (const hash of args.secret_hashes) {
      for (let i = 0; i + 12 <= hash.length; i += 1) {
        if (lower.includes(hash.slice(i, i + 12))) fail(`${url} holds part of a secret hash`);
      }
    }
  }
  writeFileSync(join(args.screenshots, 'checked.json'), JSON.stringify({ responses: bodies.length }));
  console.log(`console_browser: ok (${bodies.length} responses checked)`);
} finally {
  await browser.close();
}
