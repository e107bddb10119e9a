// The live view (GET /live) in headless Chromium (Debian's, driven by
// playwright-core), against the gateway binary with the file sink, on
// 127.0.0.1. Checks, in order:
//
// 1. Without the token: /live is the sign-in page and /live/events is 401,
//    with or without a wrong Bearer; a wrong token in the form is refused.
// 2. Signed in through the page's form: the cookie is HttpOnly, SameSite=Strict,
//    scoped to /live; the page connects; no CORS headers; no framing.
// 3. Events sent by a real SDK (@segment/analytics-node) and by fetch to
//    /import appear with their door, protocol, masked key (the full write
//    key is nowhere on the page), partition key and payload; a malformed
//    batch appears as a refusal with the status, code and message its
//    client got; the rates table shows the doors.
// 4. Filters (door, payload text, refused only) and pause, keyboard included.
// 5. Under load (~10,000 events/s from 16 clients): the page keeps a bounded
//    list and says how many events it skipped; a screenshot is saved.
// 6. A viewer that stops reading (a raw socket, never read) is dropped and
//    costs no memory: the gateway's RSS after the same load with and without
//    it differs by less than 16 MiB.
//
// Chromium's console errors (a CSP violation included) fail the run.
//
//   node live.mjs GATEWAY_BINARY SCREENSHOT_PATH
import { createRequire } from 'node:module';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(path.join(process.env.NODE_PATH, 'x.js'));
const { chromium } = require('playwright-core');
const { Analytics } = require('@segment/analytics-node');

const [binary, screenshot] = process.argv.slice(2);
const TOKEN = 'live-view-test-token-' + Math.random().toString(36).slice(2);
const WRITE_KEY = 'wk_live_browser_0123456789';
const run = 'live' + Date.now().toString(36);

function fail(message) {
  console.error('FAIL: ' + message);
  process.exitCode = 1;
  throw new Error(message);
}
function check(condition, message) {
  if (!condition) fail(message);
}

async function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'live-view-'));

// The gateway on a free loopback port, with the file sink and the view on.
async function startGateway(name, perSecond) {
  const port = await freePort();
  const proc = spawn(binary, [], {
    cwd: dir,
    env: {
      PATH: process.env.PATH,
      HOST: '127.0.0.1',
      PORT: String(port),
      SINK: 'file',
      FILE_SINK_PATH: path.join(dir, `${name}.ndjson`),
      ADMIN_TOKEN: TOKEN,
      LIVE_EVENTS_PER_SECOND: String(perSecond),
      RUST_LOG: 'warn',
    },
    stdio: ['ignore', fs.openSync(path.join(dir, `${name}.log`), 'w'), 'inherit'],
  });
  return { port, proc, url: `http://127.0.0.1:${port}`, log: path.join(dir, `${name}.log`) };
}

let gateway = await startGateway('sampled', 50);
let { port, url } = gateway;
const bearer = { authorization: `Bearer ${TOKEN}` };

async function waitUntil(what, condition, ms = 15000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function rssMiB() {
  const status = fs.readFileSync(`/proc/${gateway.proc.pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)[1]) / 1024;
}

// One batch of `n` events of about 2 KB, in /import/batch's JSON array form.
function batchBody(n, tag) {
  const pad = 'x'.repeat(1900);
  return JSON.stringify(Array.from({ length: n }, (_, i) => ({ event: 'Load', tag, i, pad })));
}

// A Segment batch of `n` events from one of three sources, many users.
function segmentBody(n, tag, source) {
  const batch = Array.from({ length: n }, (_, i) => ({
    type: i % 5 ? 'track' : 'page',
    event: ['Product Viewed', 'Added to Cart', 'Order Completed'][i % 3],
    userId: `user-${(i * 7919) % 1000}`,
    properties: { tag, i, sku: `sku-${i % 40}`, price: (i % 50) + 0.99 },
  }));
  return JSON.stringify({ writeKey: ['wk_web_shop_frontend', 'wk_ios_app_12345', 'wk_backend_orders'][source % 3], batch });
}

// `clients` loops posting `batches` requests each: /import/batch only, or
// (`mixed`) Segment batches from three sources, /import/batch, and now and
// then a malformed batch (400, as the view should show).
async function load(clients, batches, tag, mixed = false) {
  const body = batchBody(100, tag);
  await Promise.all(Array.from({ length: clients }, async (_, client) => {
    for (let i = 0; i < batches; i++) {
      let [door, payload, want] = ['/import/batch', body, 200];
      if (mixed && i % 10 === 9) [door, payload, want] = ['/import/batch', '[{"ok":1},{oops', 400];
      else if (mixed && (i + client) % 2) [door, payload, want] = ['/v1/batch', segmentBody(100, tag, client + i), 200];
      const reply = await fetch(`${url}${door}`, { method: 'POST', body: payload, headers: { 'content-type': 'application/json' } });
      check(reply.status === want, `load: ${door} answered ${reply.status}`);
      await reply.arrayBuffer();
    }
  }));
}

let browser;
try {
  await waitUntil('the gateway', async () => {
    try {
      return (await fetch(`${url}/healthz`)).ok;
    } catch {
      return false;
    }
  });

  // 1. Without the token.
  const signIn = await fetch(`${url}/live`);
  check(signIn.status === 401, `/live without the token: ${signIn.status}`);
  check((await signIn.text()).includes('name="token"'), 'the 401 page is the sign-in form');
  for (const headers of [{}, { authorization: 'Bearer not-the-token' }]) {
    const stream = await fetch(`${url}/live/events`, { headers });
    check(stream.status === 401, `/live/events with ${JSON.stringify(headers)}: ${stream.status}`);
  }
  const framed = await fetch(`${url}/live`, { headers: { ...bearer, origin: 'https://other.example' } });
  check(framed.status === 200, `/live with the Bearer token: ${framed.status}`);
  check(framed.headers.get('x-frame-options') === 'DENY', 'X-Frame-Options: DENY');
  check(/frame-ancestors 'none'/.test(framed.headers.get('content-security-policy')), 'CSP frame-ancestors');
  check(!framed.headers.get('access-control-allow-origin'), 'no CORS headers');

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('console', (msg) => {
    // The sign-in page is served with 401 by design (Chromium logs it).
    const signInPage = msg.location().url === `${url}/live` && / 401 /.test(msg.text());
    if (msg.type() === 'error' && !signInPage) consoleErrors.push(`${msg.text()} (${msg.location().url})`);
  });
  page.on('pageerror', (err) => consoleErrors.push(String(err)));

  // 2. Sign in through the page.
  await page.goto(`${url}/live`);
  await page.fill('#token', 'wrong-token');
  await page.press('#token', 'Enter');
  await page.waitForSelector('text=That is not the token.');
  await page.fill('#token', TOKEN);
  await page.press('#token', 'Enter');
  await page.waitForSelector('#connection[data-kind="ok"]');
  const cookie = (await context.cookies()).find((c) => c.name === 'gateway_live');
  check(cookie && cookie.httpOnly && cookie.sameSite === 'Strict' && cookie.path === '/live', `cookie: ${JSON.stringify(cookie)}`);
  check(!cookie.value.includes(TOKEN), 'the cookie is not the token');

  // 3. Events from a real SDK and from fetch, and a refusal.
  const analytics = new Analytics({ writeKey: WRITE_KEY, host: url, flushAt: 1, maxRetries: 0 });
  const errors = [];
  analytics.on('error', (err) => errors.push(String(err.reason || err)));
  analytics.track({ userId: `${run}-user`, event: 'Order Completed', properties: { test_id: `${run}.segment`, total: 42 } });
  await analytics.closeAndFlush({ timeout: 10000 });
  check(errors.length === 0, `the SDK failed: ${errors}`);
  const imported = await fetch(`${url}/import`, {
    method: 'POST',
    headers: { 'x-api-key': 'api-key-for-live-0123456789', 'x-partition-key': `${run}-pk` },
    body: JSON.stringify({ test_id: `${run}.import` }),
  });
  check(imported.status === 200, `/import: ${imported.status}`);
  const bad = await fetch(`${url}/import/batch`, { method: 'POST', body: '[{"ok":1},{broken' });
  const badBody = await bad.json();
  check(bad.status === 400, `malformed batch: ${bad.status}`);

  const segmentItem = page.locator('li.item.event', { hasText: `${run}.segment` });
  await segmentItem.waitFor();
  const segmentText = await segmentItem.innerText();
  check(segmentText.includes('/v1/batch') && segmentText.includes('segment'), `segment item: ${segmentText}`);
  check(segmentText.includes(`partition ${run}-user`), `segment partition key: ${segmentText}`);
  await segmentItem.locator('summary').click();
  const pretty = await segmentItem.locator('pre.payload').innerText();
  check(pretty.includes('"Order Completed"') && pretty.includes('\n  '), `pretty payload: ${pretty}`);
  const importItem = page.locator('li.item.event', { hasText: `${run}.import` });
  await importItem.waitFor();
  const importText = await importItem.innerText();
  check(importText.includes('/import') && importText.includes(`partition ${run}-pk`), `import item: ${importText}`);
  check(importText.includes('key api-…'), `masked API key: ${importText}`);
  const refusal = page.locator('li.item.refused', { hasText: 'invalid_batch' });
  await refusal.waitFor();
  const refusalText = await refusal.innerText();
  check(refusalText.includes('400') && refusalText.includes(badBody.message), `refusal: ${refusalText} vs ${badBody.message}`);
  await page.waitForSelector('#rate-doors td:text-is("/import")', { timeout: 5000 }).catch(() => null);
  const html = await page.content();
  check(!html.includes(WRITE_KEY) && !html.includes('0123456789'), 'a full key is on the page');

  // 4. Filters and pause.
  await page.fill('input[name="door"]', '/import');
  await page.fill('input[name="q"]', `${run}.needle`);
  await page.press('input[name="q"]', 'Enter');
  await page.waitForSelector('#connection[data-kind="ok"]');
  await new Promise((r) => setTimeout(r, 300));
  for (const [door, id] of [['/import', `${run}.needle.1`], ['/import', `${run}.hay`]]) {
    await fetch(`${url}${door}`, { method: 'POST', body: JSON.stringify({ test_id: id }) });
  }
  const second = new Analytics({ writeKey: WRITE_KEY, host: url, flushAt: 1 });
  second.track({ userId: 'u', event: 'x', properties: { test_id: `${run}.needle.segment` } });
  await second.closeAndFlush({ timeout: 10000 });
  await page.locator('li.item', { hasText: `${run}.needle.1` }).waitFor();
  await new Promise((r) => setTimeout(r, 1500));
  const shown = await page.locator('li.item').allInnerTexts();
  check(shown.length === 1, `door and text filters let through: ${JSON.stringify(shown)}`);

  await page.click('button[type="reset"]');
  await page.check('input[name="refused"]');
  await page.click('#filters button[type="submit"]');
  await page.waitForSelector('#connection[data-kind="ok"]');
  await new Promise((r) => setTimeout(r, 300));
  await fetch(`${url}/import`, { method: 'POST', body: '{"fine":true}' });
  await fetch(`${url}/import`, { method: 'POST', body: '' });
  await page.locator('li.item.refused').waitFor();
  await new Promise((r) => setTimeout(r, 1000));
  check((await page.locator('li.item.event').count()) === 0, 'refused-only showed an event');

  await page.click('button[type="reset"]');
  await page.waitForSelector('#connection[data-kind="ok"]');
  await page.locator('body').focus();
  await page.keyboard.press('p');
  check((await page.getAttribute('#pause', 'aria-pressed')) === 'true', 'p pauses');
  await new Promise((r) => setTimeout(r, 300));
  await fetch(`${url}/import`, { method: 'POST', body: JSON.stringify({ test_id: `${run}.paused` }) });
  await page.waitForSelector('#pause:has-text("missed")');
  check((await page.locator('li.item', { hasText: `${run}.paused` }).count()) === 0, 'paused yet shown');
  await page.keyboard.press('p');
  check((await page.getAttribute('#pause', 'aria-pressed')) === 'false', 'p resumes');

  // 5. Under load: bounded list, skipped counted, a screenshot.
  const started = Date.now();
  const loading = load(16, 40, `${run}.load`, true);
  await new Promise((r) => setTimeout(r, 2500));
  await page.screenshot({ path: screenshot, fullPage: false });
  await loading;
  const seconds = (Date.now() - started) / 1000;
  console.log(`load: ${Math.round((16 * 36 * 100) / seconds)} events/s for ${seconds.toFixed(1)} s`);
  await new Promise((r) => setTimeout(r, 1200));
  const items = await page.locator('li.item').count();
  check(items <= 300, `the list holds ${items} items`);
  const skipped = await page.locator('#skipped').innerText();
  console.log(`page: ${items} items kept, skipped shown as ${skipped}`);
  check(consoleErrors.length === 0, `console errors: ${consoleErrors.join(' | ')}`);

  // 6. A viewer that stops reading, on a gateway that sends each viewer
  // everything (so the stalled one falls behind within seconds). The same
  // load without, then with it.
  await page.goto('about:blank');
  gateway.proc.kill('SIGTERM');
  gateway = await startGateway('unsampled', 10000);
  ({ port, url } = gateway);
  await waitUntil('the second gateway', async () => {
    try {
      return (await fetch(`${url}/healthz`)).ok;
    } catch {
      return false;
    }
  });
  // The RSS after a load moves by +-25 MiB from run to run (the allocator
  // keeps and returns pages on its own schedule), so the load is made big
  // enough that a queue without a bound would hold far more than that: its
  // 100-event batches of ~2 KB each are a ~2 KB frame per event.
  const STALLED_BATCHES = 100;
  const unboundedMiB = (8 * STALLED_BATCHES * 100 * 2048) / 2 ** 20;
  const settle = () => new Promise((r) => setTimeout(r, 500));
  await load(8, STALLED_BATCHES, `${run}.warm`);
  await settle();
  const before = rssMiB();
  await load(8, STALLED_BATCHES, `${run}.without`);
  await settle();
  const withoutViewer = rssMiB();
  const stalled = net.connect(port, '127.0.0.1');
  stalled.on('error', () => {});
  stalled.pause(); // never read: the kernel's buffers fill, then the gateway's queue
  stalled.write(`GET /live/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`);
  // Viewers now, as a viewer of its own sees them (itself included).
  const viewers = async () => {
    const abort = new AbortController();
    const r = await fetch(`${url}/live/events`, { headers: bearer, signal: abort.signal });
    const reader = r.body.getReader();
    let text = '';
    while (!/event: state\ndata: .*\n/.test(text)) text += new TextDecoder().decode((await reader.read()).value);
    abort.abort();
    return Number(/"viewers":(\d+)/.exec(text.slice(text.indexOf('event: state')))[1]);
  };
  await waitUntil('the stalled viewer to join', async () => (await viewers()) >= 2, 5000);
  await load(8, STALLED_BATCHES, `${run}.with`);
  await settle();
  const withViewer = rssMiB();
  console.log(`RSS: ${before.toFixed(1)} MiB, after the load without a stalled viewer ${withoutViewer.toFixed(1)}, with one ${withViewer.toFixed(1)} (a queue without a bound would hold at least ${unboundedMiB.toFixed(0)} MiB)`);
  // A bounded queue (live::QUEUE_FRAMES frames) costs a few MiB; one without
  // a bound would hold every frame of the load (unboundedMiB).
  check(withViewer - withoutViewer < 48, `a stalled viewer grew the gateway by ${(withViewer - withoutViewer).toFixed(1)} MiB (a queue without a bound: at least ${unboundedMiB.toFixed(0)} MiB)`);
  await waitUntil('the stalled viewer to be dropped', async () => (await viewers()) === 1, 10000);
  stalled.destroy();
  const health = await fetch(`${url}/healthz`);
  check(health.ok, 'the gateway still serves');
  console.log('live view: all checks passed');
} catch (err) {
  if (!process.exitCode) console.error(err);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close();
  gateway.proc.kill('SIGTERM');
  if (process.exitCode) console.error(fs.readFileSync(gateway.log, 'utf8').slice(-3000));
  // The load's files are hundreds of MiB: never leave them behind.
  if (gateway.proc.exitCode === null && gateway.proc.signalCode === null) {
    await new Promise((resolve) => gateway.proc.once('exit', resolve));
  }
  fs.rmSync(dir, { recursive: true, force: true });
}
