// The live view: reads /live/events (server-sent events) and keeps the page
// up to date. No framework: the page is small, and nothing may load from
// another host (the CSP allows only this script and its stylesheet).
//
// Frames: `hello` (what this viewer gets), `event` (an event that arrived),
// `refused` (a request refused, as its client was answered), `state` (every
// second: the stream's state and cumulative counts, turned into rates here).
'use strict';

const MAX_ITEMS = 300; // the list is bounded whatever the rate
const TOP_ROWS = 10;
const $ = (id) => document.getElementById(id);

let source = null;
let paused = false;
let pending = [];
let previous = null;
let heldWhilePaused = 0;

function query() {
  const form = new FormData($('filters'));
  const params = new URLSearchParams();
  for (const name of ['door', 'key', 'q']) {
    const value = String(form.get(name) || '').trim();
    if (value) params.set(name, value);
  }
  if (form.get('refused')) params.set('refused', '1');
  return params.toString();
}

function connect() {
  if (source) source.close();
  const q = query();
  source = new EventSource('/live/events' + (q ? '?' + q : ''));
  setConnection('connecting…', 'wait');
  source.addEventListener('open', () => setConnection('live', 'ok'));
  source.addEventListener('error', () => setConnection('reconnecting…', 'bad'));
  source.addEventListener('hello', (e) => {
    const hello = JSON.parse(e.data);
    $('cap').textContent = hello.per_second;
    $('payloads-off').hidden = hello.payloads;
  });
  source.addEventListener('event', (e) => take(JSON.parse(e.data), 'event'));
  source.addEventListener('refused', (e) => take(JSON.parse(e.data), 'refused'));
  source.addEventListener('state', (e) => showState(JSON.parse(e.data)));
}

function setConnection(text, kind) {
  const badge = $('connection');
  badge.textContent = text;
  badge.dataset.kind = kind;
}

function take(item, kind) {
  if (paused) {
    heldWhilePaused++;
    $('pause').textContent = `Resume (${heldWhilePaused} missed)`;
    return;
  }
  item.kind = kind;
  pending.push(item);
  if (pending.length === 1) requestAnimationFrame(flush);
}

function flush() {
  const list = $('items');
  const batch = pending.splice(0, pending.length).slice(-MAX_ITEMS);
  const fragment = document.createDocumentFragment();
  for (let i = batch.length - 1; i >= 0; i--) fragment.appendChild(render(batch[i]));
  list.insertBefore(fragment, list.firstChild);
  while (list.children.length > MAX_ITEMS) list.removeChild(list.lastChild);
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function time(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString(undefined, { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

function bytes(n) {
  return n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`;
}

function pretty(payload, truncated) {
  if (!truncated) {
    try {
      return JSON.stringify(JSON.parse(payload), null, 2);
    } catch (_) {
      // not JSON: shown as sent
    }
  }
  return payload + (truncated ? '\n… (cut: the payload is longer)' : '');
}

function render(item) {
  const li = el('li', 'item ' + item.kind);
  li.dataset.kind = item.kind;
  const head = el('div', 'head');
  head.append(el('time', 'at', time(item.t)));
  if (item.kind === 'refused') {
    li.dataset.door = item.door;
    li.dataset.code = item.code;
    head.append(el('span', 'status', String(item.status)), el('span', 'door', `${item.method} ${item.door}`),
      el('code', 'code', item.code));
    if (item.key) head.append(el('span', 'key', `key ${item.key}`));
    li.append(head, el('p', 'message', item.message), el('p', 'meta', `request ${item.request_id}`));
    return li;
  }
  li.dataset.door = item.door;
  li.dataset.protocol = item.protocol;
  // An earlier copy (the same id) stored it: this one is not written again.
  if (item.duplicate) {
    li.classList.add('duplicate');
    head.append(el('span', 'dup', 'duplicate, not written'));
  }
  head.append(el('span', 'door', item.door), el('span', 'protocol', item.protocol),
    el('span', 'key', item.key ? `key ${item.key}` : 'no key'),
    el('span', 'pkey', `partition ${item.partition_key}`), el('span', 'size', bytes(item.bytes)));
  li.append(head);
  if (item.payload !== undefined) {
    const details = el('details');
    const summary = el('summary', 'preview', item.payload.slice(0, 160));
    details.append(summary, el('pre', 'payload', pretty(item.payload, item.truncated)));
    li.append(details);
  }
  return li;
}

function rates(now, before, dt) {
  const out = [];
  for (const [name, n] of Object.entries(now || {})) {
    const rate = (n - ((before || {})[name] || 0)) / dt;
    if (rate > 0) out.push([name, rate]);
  }
  return out.sort((a, b) => b[1] - a[1]);
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows.slice(0, TOP_ROWS).map(([name, rate]) => {
    const tr = el('tr');
    tr.append(el('td', '', name), el('td', 'num', rate >= 10 ? Math.round(rate).toLocaleString() : rate.toFixed(1)));
    return tr;
  }));
  if (!rows.length) {
    const tr = el('tr');
    tr.append(el('td', 'quiet', 'none'), el('td'));
    tbody.replaceChildren(tr);
  }
}

function showState(state) {
  const sink = state.sink;
  $('viewers').textContent = state.viewers;
  $('sink-target').textContent = `${sink.kind}: ${sink.target}`;
  $('sink-ready').textContent = sink.ready ? 'ready' : `not ready: ${sink.status}`;
  $('sink-ready').dataset.kind = sink.ready ? 'ok' : 'bad';
  $('sink-calls').textContent = `${sink.calls_in_flight} / ${sink.call_limit}`;
  $('sink-spill').textContent = sink.spill
    ? `${sink.spill_records.toLocaleString()} records, ${bytes(sink.spill_bytes)}, oldest ${sink.spill_oldest_age_seconds.toFixed(0)} s`
    : 'off';
  if (previous) {
    const dt = Math.max((state.t - previous.t) / 1000, 0.001);
    const doors = rates(state.counts.doors, previous.counts.doors, dt);
    fill($('rate-doors'), doors);
    fill($('rate-protocols'), rates(state.counts.protocols, previous.counts.protocols, dt));
    fill($('rate-keys'), rates(state.counts.keys, previous.counts.keys, dt));
    const total = doors.reduce((sum, [, r]) => sum + r, 0);
    $('rate-total').textContent = Math.round(total).toLocaleString();
    $('rate-refused').textContent = Math.round((state.counts.refused - previous.counts.refused) / dt).toLocaleString();
    $('rate-duplicates').textContent = Math.round((state.counts.duplicates - previous.counts.duplicates) / dt).toLocaleString();
    $('skipped').textContent = Math.round((state.skipped - previous.skipped) / dt).toLocaleString() + '/s';
    $('sink-replay').textContent = sink.spill
      ? `${Math.round((sink.spill_replayed - previous.sink.spill_replayed) / dt).toLocaleString()} records/s`
      : 'off';
    const answered503 = (state.counts.refused_503 - previous.counts.refused_503) / dt;
    const notSent = (sink.records_not_sent - previous.sink.records_not_sent) / dt;
    $('sink-503').textContent = `${Math.round(answered503)} requests, ${Math.round(notSent)} records unsent`;
    const list = $('doors');
    const known = new Set([...list.options].map((o) => o.value));
    for (const name of [...Object.keys(state.counts.doors), ...Object.keys(state.counts.protocols)]) {
      if (!known.has(name)) list.append(new Option(name, name));
    }
  }
  previous = state;
}

function togglePause() {
  paused = !paused;
  heldWhilePaused = 0;
  const button = $('pause');
  button.setAttribute('aria-pressed', String(paused));
  button.textContent = paused ? 'Resume' : 'Pause';
}

document.addEventListener('DOMContentLoaded', () => {
  $('filters').addEventListener('submit', (e) => {
    e.preventDefault();
    $('items').replaceChildren();
    connect();
  });
  $('filters').addEventListener('reset', () => setTimeout(() => {
    $('items').replaceChildren();
    connect();
  }));
  $('pause').addEventListener('click', togglePause);
  document.addEventListener('keydown', (e) => {
    const typing = e.target instanceof HTMLInputElement;
    if (e.key === 'p' && !typing && !e.ctrlKey && !e.metaKey) togglePause();
  });
  connect();
});
