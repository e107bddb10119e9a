// The Node SDKs of check.py: @segment/analytics-node and
// @rudderstack/rudder-sdk-node, unmodified, send events from several users to
// the gateway and flush. Prints one JSON line per event sent (what check.py
// expects in the stream); any SDK error goes to stderr and fails the run.
//
//   node send.mjs URL RUN KEYS_JSON USERS_JSON EVENTS_PER_USER PAYLOAD_JSON
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(path.join(process.env.NODE_PATH, 'x.js'));
const { Analytics: SegmentAnalytics } = require('@segment/analytics-node');
const RudderAnalytics = require('@rudderstack/rudder-sdk-node');

const [url, run, keysJson, usersJson, perUser, payloadJson] = process.argv.slice(2);
const keys = JSON.parse(keysJson);
const users = JSON.parse(usersJson);
const payload = JSON.parse(payloadJson);
const errors = [];
const testId = (sdk, user, seq) => `${run}.${sdk}.${users.indexOf(user)}.${seq}`;

function kindOf(seq) {
  return seq % 3 === 1 ? 'identify' : seq % 3 === 2 ? 'page' : 'track';
}

async function segmentNode() {
  const sdk = 'segment-node';
  const analytics = new SegmentAnalytics({ writeKey: keys[sdk], host: url, flushAt: 10, flushInterval: 200 });
  analytics.on('error', (err) => errors.push(`${sdk}: ${err.code || ''} ${err.reason || err.message || err}`));
  const sent = [];
  for (let seq = 0; seq < Number(perUser); seq++) {
    for (const user of users) {
      const id = testId(sdk, user, seq);
      const fields = { test_id: id, seq, ...payload };
      const type = kindOf(seq);
      if (type === 'identify') analytics.identify({ userId: user, traits: fields, messageId: id });
      else if (type === 'page') analytics.page({ userId: user, name: 'Home', properties: fields, messageId: id });
      else analytics.track({ userId: user, event: 'Order Completed', properties: fields, messageId: id });
      sent.push({ id, sdk, user, seq, type, protocol: 'segment' });
    }
  }
  await analytics.closeAndFlush({ timeout: 60000 });
  return sent;
}

async function rudderNode() {
  const sdk = 'rudder-node';
  const client = new RudderAnalytics(keys[sdk], {
    dataPlaneUrl: url,
    flushAt: 10,
    flushInterval: 200,
    retryCount: 3,
    errorHandler: (err) => errors.push(`${sdk}: ${err && err.message}`),
  });
  const sent = [];
  const delivered = [];
  for (let seq = 0; seq < Number(perUser); seq++) {
    for (const user of users) {
      const id = testId(sdk, user, seq);
      const fields = { test_id: id, seq, ...payload };
      const type = kindOf(seq);
      delivered.push(
        new Promise((resolve) => {
          const done = (err) => {
            if (err) errors.push(`${sdk}: ${err.message || err}`);
            resolve();
          };
          if (type === 'identify') client.identify({ userId: user, traits: fields, messageId: id }, done);
          else if (type === 'page') client.page({ userId: user, name: 'Home', properties: fields, messageId: id }, done);
          else client.track({ userId: user, event: 'Order Completed', properties: fields, messageId: id }, done);
        }),
      );
      sent.push({ id, sdk, user, seq, type, protocol: 'segment' });
    }
  }
  const flushing = setInterval(() => client.flush(), 100);
  await Promise.race([
    Promise.all(delivered),
    new Promise((_, reject) => setTimeout(() => reject(new Error('rudder-node: not delivered in 60 s')), 60000)),
  ]).finally(() => clearInterval(flushing));
  return sent;
}

try {
  // NODE_SDKS=segment or rudder runs one (limited.py measures each alone).
  const only = process.env.NODE_SDKS || 'segment,rudder';
  const sent = [
    ...(only.includes('segment') ? await segmentNode() : []),
    ...(only.includes('rudder') ? await rudderNode() : []),
  ];
  // LIMITED=1 (limited.py): an SDK's report of a 429 is what is measured.
  // LOSSY=1 (retried.py): so is its report of an answer lost on the wire.
  if (errors.length && (process.env.LIMITED === '1' || process.env.LOSSY === '1')) console.error(errors.join('\n'));
  else if (errors.length) {
    console.error(errors.join('\n'));
    process.exit(1);
  }
  for (const event of sent) console.log(JSON.stringify(event));
  console.error(`sent ${sent.length} events`);
  process.exit(0);
} catch (err) {
  console.error(err.stack || String(err));
  process.exit(1);
}
