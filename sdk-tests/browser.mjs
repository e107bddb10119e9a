// The browser SDK of check.py: @segment/analytics-next's standalone build,
// unmodified, in headless Chromium (Debian's), on a page served here on
// 127.0.0.1. It loads its settings from the gateway
// (GET /v1/projects/{writeKey}/settings, `cdnURL`), so it sends its events
// to the gateway with the settings' apiHost, crossing origins (CORS
// preflight: Authorization), as `text/plain`.
//
// Page 1 sends one request per event (/v1/i, /v1/t, /v1/p) and waits for each.
// Page 2 uses the SDK's batching strategy (/v1/b) and is left as soon as its
// events are buffered: they go out with `keepalive` as the page unloads.
//
// Prints one JSON line per event tracked; errors go to stderr and fail the run.
//
//   node browser.mjs URL RUN KEYS_JSON USERS_JSON EVENTS_PER_USER PAYLOAD_JSON PAGE_PORT
import { createRequire } from 'node:module';
import http from 'node:http';
import path from 'node:path';
import fs from 'node:fs';

const require = createRequire(path.join(process.env.NODE_PATH, 'x.js'));
const { chromium } = require('playwright-core');

const [gateway, run, keysJson, usersJson, perUser, payloadJson, pagePort] = process.argv.slice(2);
const writeKey = JSON.parse(keysJson)['segment-browser'];
const users = JSON.parse(usersJson);
const payload = JSON.parse(payloadJson);
const sdk = 'segment-browser';
const standalone = fs.readFileSync(
  require.resolve('@segment/analytics-next/dist/umd/standalone.js'),
);
const testId = (user, seq) => `${run}.${sdk}.${users.indexOf(user)}.${seq}`;

function page(strategy) {
  const integrations =
    strategy === 'batching'
      ? { 'Segment.io': { deliveryStrategy: { strategy: 'batching', config: { size: 100, timeout: 60000 } } } }
      : {};
  return `<!doctype html><html><head><meta charset="utf-8"><title>shop</title>
<script>
  window.analytics = [];
  window.analytics._writeKey = ${JSON.stringify(writeKey)};
  window.analytics._cdn = ${JSON.stringify(gateway)};
  window.analytics._loadOptions = { cdnURL: ${JSON.stringify(gateway)}, integrations: ${JSON.stringify(integrations)} };
  for (const m of ['identify', 'track', 'page', 'ready']) {
    window.analytics[m] = (...args) => { window.analytics.push([m, ...args]); return window.analytics; };
  }
</script>
<script src="/standalone.js"></script></head><body>shop</body></html>`;
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (url.pathname === '/standalone.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    return res.end(standalone);
  }
  if (url.pathname === '/bye') {
    res.writeHead(200, { 'content-type': 'text/html' });
    return res.end('<!doctype html><title>bye</title>bye');
  }
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(page(url.searchParams.get('strategy')));
});
await new Promise((resolve) => server.listen(Number(pagePort), '127.0.0.1', resolve));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const errors = [];
const sent = [];
const toGateway = [];
const consoleLines = [];
setTimeout(() => {
  console.error(`timed out; requests to the gateway: ${toGateway.join(', ')}`);
  console.error([...errors, ...consoleLines].join('\n'));
  process.exit(1);
}, 90000).unref();

async function openPage(strategy) {
  const context = await browser.newContext();
  const tab = await context.newPage();
  tab.on('pageerror', (err) => errors.push(`page error: ${err.message}`));
  tab.on('console', (msg) => {
    consoleLines.push(`console ${msg.type()}: ${msg.text()}`);
    if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
  });
  tab.on('response', (response) => {
    const request = response.request();
    if (request.url().startsWith(gateway)) {
      toGateway.push(`${request.method()} ${new URL(request.url()).pathname} ${response.status()}`);
    }
  });
  tab.on('requestfailed', (request) => {
    if (request.url().startsWith(gateway)) errors.push(`${request.method()} ${request.url()} failed: ${request.failure()?.errorText}`);
  });
  await tab.goto(`http://127.0.0.1:${pagePort}/?strategy=${strategy}`);
  await tab.evaluate(() => new Promise((resolve) => window.analytics.ready(resolve)));
  return { context, tab };
}

function events(user) {
  const list = [];
  for (let seq = 0; seq < Number(perUser); seq++) {
    const type = seq === 0 ? 'identify' : seq % 2 ? 'track' : 'page';
    list.push({ id: testId(user, seq), sdk, user, seq, type, protocol: 'segment' });
  }
  return list;
}

// Sends `list` from the page; `wait`: each call's promise awaited (delivery
// for one request per event; buffering for the batching strategy).
async function track(tab, list, wait) {
  await tab.evaluate(
    async ({ list, payload, wait }) => {
      for (const e of list) {
        const fields = { test_id: e.id, seq: e.seq, ...payload };
        const call =
          e.type === 'identify'
            ? window.analytics.identify(e.user, fields)
            : e.type === 'track'
              ? window.analytics.track('Order Completed', fields)
              : window.analytics.page('Home', fields);
        if (wait) await call;
      }
    },
    { list, payload, wait },
  );
}

try {
  // Page 1: one request per event.
  const first = await openPage('fetch');
  const one = events(users[0]);
  await track(first.tab, one, true);
  sent.push(...one);
  await first.context.close();

  // Page 2: batched, and left before the batch is due (60 s): sent on unload.
  // Each call is awaited until the SDK has the event in its batch buffer
  // (its promise settles then); an event still in the SDK's own pipeline at
  // unload is lost by the SDK itself, which is not what this tests.
  const second = await openPage('batching');
  const two = events(users[1]);
  await track(second.tab, two, true);
  sent.push(...two);
  await second.tab.goto(`http://127.0.0.1:${pagePort}/bye`);
  // The unload batch is invisible to the browser tools: wait until the
  // gateway has answered it (its metrics count it), for at most 20 s.
  const batched = /^http_requests_total\{[^\n]*route="\/v1\/b"[^\n]*method="POST"[^\n]*status_class="2xx"[^\n]*\} [1-9]/m;
  const deadline = Date.now() + 20000;
  for (;;) {
    const metrics = await (await fetch(`${gateway}/metrics`)).text();
    if (batched.test(metrics)) break;
    if (Date.now() > deadline) throw new Error('the unload batch (POST /v1/b) did not reach the gateway within 20 s');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  await second.context.close();
} catch (err) {
  errors.push(err.stack || String(err));
} finally {
  await browser.close();
  server.close();
}

console.error(`requests to the gateway: ${toGateway.join(', ')}`);
if (errors.length) {
  console.error(errors.join('\n'));
  process.exit(1);
}
for (const event of sent) console.log(JSON.stringify(event));
console.error(`sent ${sent.length} events`);
