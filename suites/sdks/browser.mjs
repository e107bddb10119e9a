// The browser SDKs of check.py, each unmodified from npm (its standalone or
// UMD build, served here, no CDN), in headless Chromium (Debian's), on a
// page served on 127.0.0.1 at another port than the gateway: another origin,
// so every call crosses origins as on a real site. The gateway runs at its
// defaults (no CORS variable).
//
// Each page carries docs/sdks.md's snippet for its SDK ("In the browser"), so
// the snippets users copy are the ones tested.
//
// - @segment/analytics-next: settings from the gateway (`cdnURL`); one page
//   sends one request per event (/v1/i, /v1/t, /v1/p), another batches
//   (/v1/b) and is left before the batch is due (sent as the page unloads).
// - @rudderstack/analytics-js v3 (bundled build): source configuration from
//   the gateway (`configUrl`), events one per request (/v1/*); the last user's
//   page uses the SDK's beacon queue (`useBeacon`, /beacon/v1/batch).
// - posthog-js (the snippet's full bundle, array.full.js): remote config and
//   flags from the gateway, batches of gzip to /e/; the first user's page
//   waits for a flush, the others are left at once (sendBeacon, base64).
// - @snowplow/browser-tracker: tp2 POST with credentials, and GET /i
//   (`eventMethod: 'get'`), each event awaited through `onRequestSuccess`.
//
// Every SDK identifies each of several users, then tracks and pages, then
// the page navigates away. Chromium's console errors, failed requests and
// any request to another host fail the run with their text. At the end the
// run waits until the gateway has had no new request for two seconds, so
// unload deliveries (invisible to the browser tools) have landed.
//
// Prints one JSON line per event tracked (what check.py expects to read
// back); errors go to stderr and fail the run.
//
//   node browser.mjs GATEWAY RUN KEYS_JSON USERS_JSON EVENTS_PER_USER PAYLOAD_JSON PAGE_PORT
import { createRequire } from 'node:module';
import http from 'node:http';
import path from 'node:path';
import fs from 'node:fs';
import zlib from 'node:zlib';

const require = createRequire(path.join(process.env.NODE_PATH, 'x.js'));
const { chromium } = require('playwright-core');

const [gateway, run, keysJson, usersJson, perUser, payloadJson, pagePort] = process.argv.slice(2);
const keys = JSON.parse(keysJson);
const users = JSON.parse(usersJson);
const payload = JSON.parse(payloadJson);
const pageOrigin = `http://127.0.0.1:${pagePort}`;

// The script paths of docs/sdks.md's snippets.
const scripts = {
  '/js/segment-standalone.js': '@segment/analytics-next/dist/umd/standalone.js',
  '/js/rudderstack.js': '@rudderstack/analytics-js/dist/npm/modern/bundled/umd/index.js',
  '/js/posthog.js': 'posthog-js/dist/array.full.js',
  '/js/snowplow.js': '@snowplow/browser-tracker/dist/index.umd.min.js',
};
const scriptBodies = Object.fromEntries(
  // Read from node_modules by path: some packages' `exports` hide their dist files.
  Object.entries(scripts).map(([url, file]) => [url, fs.readFileSync(path.join(process.env.NODE_PATH, file))]),
);

const testId = (sdk, user, seq) => `${run}.${sdk}.${users.indexOf(user)}.${seq}`;

// The events one user sends: an identify, then tracks and pages in turn.
function planned(sdk, protocol, user) {
  const list = [];
  for (let seq = 0; seq < Number(perUser); seq++) {
    const type = seq === 0 ? 'identify' : seq % 2 ? 'track' : 'page';
    list.push({ id: testId(sdk, user, seq), sdk, user, seq, type, protocol });
  }
  return list;
}

const page = (head) => `<!doctype html><html><head><meta charset="utf-8"><title>shop</title>${head}</head><body>shop</body></html>`;

const server = http.createServer((req, res) => {
  const url = new URL(req.url, pageOrigin);
  const script = scriptBodies[url.pathname];
  if (script) {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    return res.end(script);
  }
  if (url.pathname === '/favicon.ico') {
    res.writeHead(204);
    return res.end();
  }
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  if (url.pathname === '/bye') return res.end(page(''));
  const snippet = snippets[url.pathname.slice(1)];
  if (!snippet) {
    res.writeHead(404);
    return res.end();
  }
  res.end(page(snippet(url.searchParams)));
});

// The browser snippets of docs/sdks.md, as a site puts them in its pages: the
// gateway's URL, the test's key and this server's script paths filled in,
// and `edits` (exact text, each must be found) for what a test adds.
const readme = fs.readFileSync(path.join(path.dirname(new URL(import.meta.url).pathname), '..', '..', 'docs', 'sdks.md'), 'utf8');
function snippet(name, key, edits = []) {
  const marker = `<!-- browser snippet: ${name} -->\n\`\`\`html\n`;
  const start = readme.indexOf(marker);
  if (start < 0) throw new Error(`docs/sdks.md has no browser snippet for ${name}`);
  const block = readme.slice(start + marker.length);
  let text = block
    .slice(0, block.indexOf('\n```'))
    .replaceAll('https://events.example.com', gateway)
    .replaceAll(/YOUR_[A-Z_]+/g, key);
  for (const [from, to] of edits) {
    if (!text.includes(from)) throw new Error(`the ${name} snippet has no ${JSON.stringify(from)}`);
    text = text.replace(from, to);
  }
  return text;
}

const snippets = {
  segment: (params) => {
    const batching = { 'Segment.io': { deliveryStrategy: { strategy: 'batching', config: { size: 100, timeout: 60000 } } } };
    const edits = params.get('strategy') === 'batching' ? [[`cdnURL: '${gateway}' }`, `cdnURL: '${gateway}', integrations: ${JSON.stringify(batching)} }`]] : [];
    return snippet('segment', keys['segment-browser'], edits);
  },
  rudderstack: (params) => {
    const edits = params.get('beacon') === '1' ? [[`configUrl: '${gateway}',`, `configUrl: '${gateway}', useBeacon: true,`]] : [];
    return snippet('rudderstack', keys['rudder-browser'], edits);
  },
  // HeadlessChrome is a bot to posthog-js; a real visitor's browser is not.
  posthog: () => snippet('posthog', keys['posthog-browser'], [[`api_host: '${gateway}',`, `api_host: '${gateway}', opt_out_useragent_filter: true,`]]),
  // The tracker reports each delivered batch, so the test waits for them.
  snowplow: (params) => {
    const appId = `appId: '${keys['snowplow-browser']}',`;
    const options = `${appId} eventMethod: '${params.get('method')}',
    onRequestSuccess: (batch) => (window.delivered = window.delivered || []).push(...batch),
    onRequestFailure: (failure) => (window.failed = window.failed || []).push(JSON.stringify(failure)),`;
    return snippet('snowplow', keys['snowplow-browser'], [[appId, options]]);
  },
};

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
// LIMITED=1 (limited.py): the gateway answers 429 on purpose, and what
// the SDK does with it is what is measured, so a 429 is not an error here.
const LIMITED = process.env.LIMITED === '1';
// Limited, each SDK's source is kept spent from the start of its run until
// the first request carrying the run's tracked events leaves a page, so that
// request meets a 429 however long the browser took to start: the SDKs
// send on timers of their own (posthog-js 3 s after the first event), and
// a source refilled at 2 events/s while Chromium started, or while
// posthog-js sent its own events first, let posthog-js's batch through.
// One-event batches of our own take each event of allowance as it comes;
// each of ours refused (one event) is counted and reported, so limited.py
// counts only the SDK's refusals.
let spending = null;
let ownRefused = 0;
function keepSpent(key) {
  const state = { stop: false };
  state.done = (async () => {
    while (!state.stop) {
      const event = { type: 'track', event: 'spend', userId: 'spender', messageId: `spend-${crypto.randomUUID()}` };
      const response = await fetch(`${gateway}/v1/batch`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ writeKey: key, batch: [event] }),
      });
      await response.arrayBuffer();
      if (response.status === 429) {
        ownRefused += 1;
        await pause(100);
      } else if (response.status !== 200) {
        throw new Error(`spending ${key}'s allowance: answered ${response.status}`);
      }
    }
  })();
  return state;
}
// Whether a request from a page carries the run's tracked events: a test
// id of the run with a sequence number past 0 (0 is each user's identify,
// which posthog-js may send alone, before the batch whose fate is
// measured), in the URL or the body (gzip inflated, as posthog-js sends
// its batches). The run id is hex.
const trackedId = new RegExp(`${run}\\.[a-z-]+\\.\\d+\\.[1-9]`);
function carriesRunEvents(request) {
  if (trackedId.test(request.url())) return true;
  let body = request.postDataBuffer();
  if (!body) return false;
  if (body[0] === 0x1f && body[1] === 0x8b) {
    try {
      body = zlib.gunzipSync(body);
    } catch {
      return false;
    }
  }
  return trackedId.test(body.toString('latin1'));
}
// LOSSY=1 (retried.py): a proxy loses the gateway's answer on purpose, and
// whether the SDK sends again is what is measured, so a failed request is
// not an error here.
const LOSSY = process.env.LOSSY === '1';
const errors = [];
const sent = [];
const toGateway = [];
const consoleLines = [];
const contexts = [];
// Below check.py's 180 s for the whole run, so the reasons get printed.
setTimeout(() => {
  console.error(`timed out; requests to the gateway: ${toGateway.join(', ')}`);
  console.error([...errors, ...consoleLines].join('\n'));
  process.exit(1);
}, 150000).unref();

// `promise`, or an error naming `what` after 20 s (an SDK that cannot load
// never becomes ready, and would otherwise wait forever).
function within(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not done within 20 s`)), 20000);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// A fresh browser context (its own cookies and storage: a new visitor) on
// one of the snippets' pages.
async function openPage(pathAndQuery) {
  const context = await browser.newContext();
  contexts.push(context);
  const tab = await context.newPage();
  const where = pathAndQuery.split('?')[0];
  tab.on('pageerror', (err) => errors.push(`${where}: page error: ${err.message}`));
  tab.on('console', (msg) => {
    consoleLines.push(`${where}: console ${msg.type()}: ${msg.text()}`);
    const refused = (LIMITED && msg.text().includes('429')) || LOSSY;
    if (msg.type() === 'error' && !refused) errors.push(`${where}: console: ${msg.text()}`);
  });
  tab.on('request', (request) => {
    const url = request.url();
    if (spending && url.startsWith(gateway) && carriesRunEvents(request)) spending.stop = true;
    if (!url.startsWith(gateway) && !url.startsWith(pageOrigin) && !url.startsWith('data:') && !url.startsWith('blob:')) {
      errors.push(`${where}: a request to another host: ${request.method()} ${url}`);
    }
  });
  tab.on('response', (response) => {
    const request = response.request();
    if (request.url().startsWith(gateway)) {
      const status = response.status();
      toGateway.push(`${request.method()} ${new URL(request.url()).pathname} ${status}`);
      if (status >= 400 && !(LIMITED && status === 429)) {
        errors.push(`${where}: ${request.method()} ${request.url()} answered ${status}`);
      }
    }
  });
  tab.on('requestfailed', (request) => {
    const reason = request.failure()?.errorText;
    // A navigation away cancels what the page did not await; the SDKs that
    // keep requests over an unload use sendBeacon or keepalive.
    if (request.url().startsWith(gateway) && reason !== 'net::ERR_ABORTED' && !LOSSY) {
      errors.push(`${where}: ${request.method()} ${request.url()} failed: ${reason}`);
    }
  });
  await tab.goto(`${pageOrigin}/${pathAndQuery}`);
  return tab;
}

// Limited, the visitor stays 8 s first: time for an SDK that retries a
// 429 to do so while the page is open.
const leave = async (tab) => {
  if (LIMITED || LOSSY) await pause(8000);
  return tab.goto(`${pageOrigin}/bye`);
};
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function segment() {
  const sdk = 'segment-browser';
  for (const [index, strategy] of [
    [0, 'fetch'],
    [1, 'batching'],
  ]) {
    const tab = await openPage(`segment?strategy=${strategy}`);
    await within(
      tab.evaluate(() => new Promise((resolve) => window.analytics.ready(resolve))),
      'analytics-next ready',
    );
    const list = planned(sdk, 'segment', users[index]);
    // Each call's promise settles once the event is delivered (one request
    // per event) or in the SDK's batch buffer (batching).
    const delivered = tab.evaluate(
      async ({ list, payload }) => {
        for (const e of list) {
          const fields = { test_id: e.id, seq: e.seq, ...payload };
          if (e.type === 'identify') await window.analytics.identify(e.user, fields);
          else if (e.type === 'track') await window.analytics.track('Order Completed', fields);
          else await window.analytics.page('Home', fields);
        }
      },
      { list, payload },
    );
    await within(delivered, 'analytics-next events');
    sent.push(...list);
    await leave(tab);
  }
}

async function rudderstack() {
  const sdk = 'rudder-browser';
  for (const [index, user] of users.entries()) {
    const beacon = index === users.length - 1;
    const tab = await openPage(`rudderstack?beacon=${beacon ? 1 : 0}`);
    await within(
      tab.evaluate(() => new Promise((resolve) => window.rudder.ready(resolve))),
      'rudderstack ready',
    );
    const list = planned(sdk, 'segment', user);
    const paths = ['/v1/identify', '/v1/track', '/v1/page'];
    const before = await answered(paths, 'POST');
    await tab.evaluate(
      ({ list, payload }) => {
        for (const e of list) {
          const fields = { test_id: e.id, seq: e.seq, ...payload };
          if (e.type === 'identify') window.rudder.identify(e.user, fields);
          else if (e.type === 'track') window.rudder.track('Order Completed', fields);
          else window.rudder.page('Shop', 'Home', fields);
        }
      },
      { list, payload },
    );
    sent.push(...list);
    if (!beacon) {
      // One request per event: leave once the gateway has answered them all.
      const all = waitFor(async () => (await answered(paths, 'POST')) >= before + list.length, 'rudderstack events');
      // Limited, the events it does not retry in time are what is measured.
      await (LIMITED || LOSSY ? all.catch(() => {}) : all);
    }
    await leave(tab);
  }
}

async function posthog() {
  const sdk = 'posthog-browser';
  for (const [index, user] of users.entries()) {
    const tab = await openPage('posthog');
    await waitFor(() => tab.evaluate(() => window.posthog.__loaded === true), 'posthog-js init');
    const list = planned(sdk, 'posthog', user);
    await tab.evaluate(
      ({ list, payload }) => {
        for (const e of list) {
          const fields = { test_id: e.id, seq: e.seq, ...payload };
          if (e.type === 'identify') window.posthog.identify(e.user, { test_id: e.id });
          else window.posthog.capture(e.type === 'track' ? 'order completed' : '$pageview', fields);
        }
      },
      { list, payload },
    );
    // posthog-js puts the person's properties of an identify in `$set`; the
    // events checked are the captures.
    sent.push(...list.filter((e) => e.type !== 'identify'));
    // The first visitor stays until the SDK's 3 s flush (gzip over fetch);
    // the others leave at once, so their events go out with sendBeacon.
    if (index === 0) await pause(4000);
    await leave(tab);
  }
}

async function snowplow(method) {
  const sdk = `snowplow-browser-${method}`;
  for (const user of users) {
    const tab = await openPage(`snowplow?method=${method}`);
    const list = planned(sdk, 'snowplow', user).filter((e) => e.type !== 'identify');
    await tab.evaluate(
      async ({ list, user, payload, limited }) => {
        const sp = window.snowplowBrowserTracking;
        window.delivered = window.delivered || [];
        window.failed = window.failed || [];
        sp.setUserId(user);
        for (const e of list) {
          if (e.type === 'track') {
            sp.trackStructEvent({ category: 'sdk-test', action: 'order', label: e.id, property: payload.note, value: e.seq });
          } else {
            sp.trackPageView({ title: e.id });
          }
        }
        const deadline = Date.now() + 20000;
        while (window.delivered.length < list.length && (limited || !window.failed.length) && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        if (limited) return;
        if (window.failed.length) throw new Error(`snowplow: ${window.failed.join('; ')}`);
        if (window.delivered.length < list.length) throw new Error(`snowplow: ${window.delivered.length} of ${list.length} delivered`);
      },
      { list, user, payload, limited: LIMITED || LOSSY },
    );
    // The partition key is the domain user id the tracker made in this
    // browser: check.py finds it in each record.
    sent.push(...list.map((e) => ({ ...e, uid: user })));
    await leave(tab);
  }
}

// The 2xx answers the gateway counted for `method` on `routes`.
async function answered(routes, method) {
  const metrics = await (await fetch(`${gateway}/metrics`)).text();
  let total = 0;
  for (const line of metrics.split('\n')) {
    if (!line.startsWith('http_requests_total{')) continue;
    const route = /route="([^"]*)"/.exec(line)?.[1];
    if (routes.includes(route) && line.includes(`method="${method}"`) && line.includes('status_class="2xx"')) {
      total += Number(line.split(' ').pop());
    }
  }
  return total;
}

// Polls `condition` for at most 20 s.
async function waitFor(condition, what) {
  const deadline = Date.now() + 20000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what}: not done within 20 s`);
    await pause(100);
  }
}

// Waits until the gateway has taken no request for two seconds.
async function settle() {
  const deadline = Date.now() + 60000;
  let last = '';
  let stableSince = Date.now();
  for (;;) {
    const metrics = await (await fetch(`${gateway}/metrics`)).text();
    const requests = metrics
      .split('\n')
      .filter((l) => l.startsWith('http_requests_total{') && !l.includes('route="/metrics"'))
      .join('\n');
    if (requests !== last) {
      last = requests;
      stableSince = Date.now();
    } else if (Date.now() - stableSince >= 2000) {
      return;
    }
    if (Date.now() > deadline) throw new Error('the gateway kept taking requests for 60 s');
    await pause(250);
  }
}

// Each SDK on its own: one that fails does not hide how the others fare.
const only = (process.env.BROWSER_SDKS || 'segment,rudderstack,posthog,snowplow').split(',');
const runs = {
  segment,
  rudderstack,
  posthog,
  snowplow: async () => {
    await snowplow('post');
    await snowplow('get');
  },
};
const sourceOf = { segment: 'segment-browser', rudderstack: 'rudder-browser', posthog: 'posthog-browser', snowplow: 'snowplow-browser' };
try {
  for (const [name, sdkRun] of Object.entries(runs)) {
    if (!only.includes(name)) continue;
    if (LIMITED) spending = keepSpent(keys[sourceOf[name]]);
    try {
      await sdkRun();
    } catch (err) {
      errors.push(`${name}: ${err.stack || err}`);
    } finally {
      if (spending) {
        spending.stop = true;
        await spending.done.catch((err) => errors.push(`${name}: ${err.stack || err}`));
        spending = null;
      }
    }
  }
  await settle();
} catch (err) {
  errors.push(err.stack || String(err));
} finally {
  for (const context of contexts) await context.close();
  await browser.close();
  server.close();
}

const counts = {};
for (const r of toGateway) counts[r] = (counts[r] || 0) + 1;
console.error(`requests to the gateway the browser saw: ${Object.entries(counts).map(([r, n]) => `${r} x${n}`).join(', ')}`);
if (errors.length) {
  console.error(errors.join('\n'));
  process.exit(1);
}
for (const event of sent) console.log(JSON.stringify(event));
if (LIMITED) console.log(JSON.stringify({ ownRefused }));
console.error(`sent ${sent.length} events`);
