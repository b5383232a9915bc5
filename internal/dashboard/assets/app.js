// Gatehouse dashboard: one page for the public status view (/) and the admin
// view (/admin). Live updates come as server-sent events: a snapshot, then
// only the cells that changed. No framework, no build step.
'use strict';

const admin = location.pathname === '/admin';
const TOKEN_KEY = 'gatehouse-admin-token';
let token = admin ? sessionStorage.getItem(TOKEN_KEY) : null;

const cells = new Map();   // key -> cell {k, c, s, st, cl, n}
const els = new Map();     // key -> element
const groups = new Map();  // group key -> {box, list}
let fleet = null;
let history = [];
let selected = null;
let highlighted = [];

const $ = (id) => document.getElementById(id);

// h builds an element; children are nodes or strings (never parsed as HTML).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function ago(ts) {
  if (!ts) return 'never';
  const s = Math.max(0, (Date.now() - new Date(ts).getTime()) / 1000);
  if (s < 90) return Math.round(s) + ' s ago';
  if (s < 5400) return Math.round(s / 60) + ' min ago';
  return Math.round(s / 3600) + ' h ago';
}

function num(v, digits) {
  if (v === null || v === undefined) return '–';
  return Number(v).toLocaleString(undefined, { maximumFractionDigits: digits ?? 0 });
}

function setConn(live, text) {
  const c = $('conn');
  c.textContent = text || (live ? 'live' : 'reconnecting…');
  c.classList.toggle('live', live);
}

// ---- grid ----

function groupKey(c) { return admin && c.c === 'gateway' ? c.c + ' · ' + (c.n || 'unassigned') : c.c; }

function groupFor(c) {
  const key = groupKey(c);
  let g = groups.get(key);
  if (!g) {
    const list = h('div', { class: 'cells' });
    const box = h('div', { class: 'group', 'data-group': key }, h('h3', {}, key), list);
    // Keep groups sorted by name.
    const after = [...groups.keys()].sort().find((k) => k > key);
    $('grid').insertBefore(box, after ? groups.get(after).box : null);
    g = { box, list };
    groups.set(key, g);
  }
  return g;
}

function place(el, c) {
  const g = groupFor(c);
  if (el.parentNode === g.list) return;
  const last = g.list.lastElementChild;
  if (!last || Number(last.dataset.s) < c.s) { g.list.append(el); return; } // the snapshot comes sorted
  let before = null;
  for (const other of g.list.children) {
    if (Number(other.dataset.s) > c.s) { before = other; break; }
  }
  g.list.insertBefore(el, before);
}

function paint(el, c) {
  el.className = 'cell ' + c.cl + (highlighted.includes(c.k) ? ' hl' : '') + (selected === c.k ? ' sel' : '');
  el.title = c.c + ' shard ' + c.s + ': ' + c.st + (c.n ? ' on ' + c.n : '');
  el.setAttribute('aria-label', el.title);
  el.dataset.state = c.st;
  el.dataset.cls = c.cl;
}

function upsert(c) {
  const prev = cells.get(c.k);
  cells.set(c.k, c);
  let el = els.get(c.k);
  if (!el) {
    el = h('button', { type: 'button', 'data-k': c.k, 'data-s': c.s, 'data-c': c.c });
    els.set(c.k, el);
  }
  if (!prev || groupKey(prev) !== groupKey(c) || !el.parentNode) place(el, c);
  paint(el, c);
  if (selected === c.k) showDetails(c.k);
}

function remove(k) {
  const el = els.get(k);
  if (el) el.remove();
  els.delete(k);
  cells.delete(k);
}

function pruneGroups() {
  for (const [k, g] of groups) {
    if (!g.list.children.length) { g.box.remove(); groups.delete(k); }
  }
}

function onSnapshot(m) {
  $('grid').replaceChildren();
  groups.clear(); els.clear(); cells.clear();
  const sorted = [...m.cells].sort((a, b) => groupKey(a).localeCompare(groupKey(b)) || a.s - b.s);
  for (const c of sorted) upsert(c);
  history = m.history || [];
  onFleet(m.fleet);
  drawCharts();
}

function onCells(m) {
  for (const c of m.changed || []) upsert(c);
  for (const k of m.gone || []) remove(k);
  pruneGroups();
  summary();
}

// ---- summary and fleet ----

function counts() {
  const n = { ok: 0, warn: 0, bad: 0, unknown: 0 };
  for (const c of cells.values()) n[c.cl] = (n[c.cl] || 0) + 1;
  return n;
}

function summary() {
  const n = counts();
  const parts = [cells.size + ' shards', n.ok + ' online', n.warn + ' starting', n.bad + ' down'];
  if (n.unknown) parts.push(n.unknown + ' unknown');
  if (fleet) parts.push(num(fleet.events_per_sec) + ' events/s');
  $('summary').textContent = parts.join(' · ');
  document.title = (n.bad ? '(' + n.bad + ' down) ' : '') + 'Gatehouse ' + (admin ? 'admin' : 'status');
}

function onFleet(f) {
  fleet = f;
  const body = [];
  const q = f.identify || {};
  const p = f.planner;
  const facts = [
    ['Shard count', num(f.shard_count)],
    ['Guilds', num(f.guilds)],
    ['Events/s', num(f.events_per_sec)],
    ['Mean latency', f.latency_ms ? num(f.latency_ms, 1) + ' ms' : '–'],
    ['Gateway nodes', num(f.node_count)],
    ['Session starts left', num(q.session_starts_remaining) + (q.session_starts_reset_at ? ' (reset ' + new Date(q.session_starts_reset_at).toLocaleTimeString() + ')' : '')],
    ['Identify buckets', num(q.max_concurrency) + ' × one per ' + num((q.interval_ms || 0) / 1000, 1) + ' s'],
  ];
  if (p) facts.push(['Planner', p.action + ': ' + p.current_shards + ' → ' + p.target_shards + ' shards'], ['Why', p.reason]);
  facts.push(['Largest consumer lag', num(f.max_lag) + ' batches']);
  body.push(h('dl', {}, facts.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])));

  // Resharding progress.
  if (f.reshard) {
    const r = f.reshard;
    const pct = r.to ? Math.round((100 * r.ready) / r.to) : 0;
    const bar = h('div', {});
    bar.style.width = pct + '%';
    const eta = r.phase === 'starting' && r.eta && !r.eta.startsWith('0001') ? ', ETA ' + new Date(r.eta).toLocaleTimeString() : '';
    body.push(h('h3', {}, 'Resharding ' + r.from + ' → ' + r.to + ' (' + r.phase + '): ' + r.ready + ' of ' + r.to + ' new shards ready, ' + pct + '%' + eta),
      h('div', { class: 'progress', role: 'progressbar', 'aria-valuenow': pct, 'aria-valuemin': 0, 'aria-valuemax': 100 }, bar));
  } else {
    body.push(h('p', { class: 'muted' }, 'No reshard running.'));
  }

  const now = Date.now();
  const waiting = (q.buckets || []).filter((b) => b.waiting > 0 || (b.next_free && new Date(b.next_free).getTime() > now));
  if (waiting.length) {
    body.push(h('h3', {}, 'Identify queue'), h('table', {},
      h('tr', {}, h('th', {}, 'Bucket'), h('th', {}, 'Waiting'), h('th', {}, 'Next slot')),
      waiting.slice(0, 32).map((b) => h('tr', {}, h('td', {}, b.bucket), h('td', {}, b.waiting), h('td', {}, b.next_free ? new Date(b.next_free).toLocaleTimeString() : 'now')))));
  }
  if (admin && f.nodes && f.nodes.length) {
    body.push(h('h3', {}, 'Nodes'), h('table', {},
      h('tr', {}, h('th', {}, 'Node'), h('th', {}, 'Shards'), h('th', {}, 'Capacity'), h('th', {}, 'Seen'), h('th', {}, '')),
      f.nodes.map((n) => h('tr', {}, h('td', {}, n.id), h('td', {}, (n.shards || []).length), h('td', {}, n.capacity || '∞'),
        h('td', {}, ago(n.last_seen)),
        h('td', {}, h('button', { type: 'button', 'data-node': n.id, onclick: () => command({ target: n.id, type: n.draining ? 'undrain' : 'drain' }) }, n.draining ? 'Undrain' : 'Drain'))))));
  }
  if (admin && f.consumers && f.consumers.length) {
    body.push(h('h3', {}, 'Consumers'), h('table', {},
      h('tr', {}, h('th', {}, 'Consumer'), h('th', {}, 'Pending'), h('th', {}, 'Unacked')),
      f.consumers.map((c) => h('tr', {}, h('td', {}, c.name), h('td', {}, num(c.pending)), h('td', {}, num(c.ack_pending))))));
  }
  $('fleet-body').replaceChildren(...body);
  summary();
}

// ---- details ----

async function showDetails(k) {
  selected = k;
  for (const [key, el] of els) el.classList.toggle('sel', key === k);
  const c = cells.get(k);
  if (!c) return;
  $('details').hidden = false;
  $('details-title').textContent = c.c + ' shard ' + c.s;
  const rows = [['State', c.st]];
  let d = null;
  if (c.c === 'gateway') {
    try {
      d = await api(admin ? '/v1/shards/' + c.s : '/public/shards/' + c.s);
    } catch (e) { rows.push(['Details', String(e.message || e)]); }
  }
  if (selected !== k) return;
  if (d) {
    rows.push(['Latency', d.latency_ms !== undefined && d.latency_ms !== null ? num(d.latency_ms, 1) + ' ms' : '–'],
      ['Guilds', num(d.guilds)], ['Events/s', num(d.events_per_sec, 1)], ['Last heartbeat', ago(d.reported_at)],
      ['In this state', d.state_since ? ago(d.state_since).replace(' ago', '') : '–'],
      ['Reconnects', num(d.reconnects)], ['Resumes / identifies', num(d.resumes) + ' / ' + num(d.identifies)]);
    if (admin) rows.push(['Node', d.node || '–'], ['Zombies', num(d.zombies)], ['Error', d.error || '–']);
  }
  $('details-list').replaceChildren(...rows.map(([a, b]) => [h('dt', {}, a), h('dd', {}, b)]).flat());
  const actions = [];
  if (admin && d && d.node && d.holder === 'node') {
    actions.push(h('button', { type: 'button', id: 'restart', onclick: () => command({ target: d.node, type: 'restart_shard', shard: c.s }) }, 'Restart shard'));
  }
  $('details-actions').replaceChildren(...actions);
}

// ---- guild search ----

function search(ev) {
  ev.preventDefault();
  const raw = $('guild').value.trim();
  const out = $('search-result');
  for (const k of highlighted) { const el = els.get(k); if (el) el.classList.remove('hl'); }
  highlighted = [];
  if (!/^\d+$/.test(raw)) { out.textContent = 'A server ID is a number, like 81384788765712384 (Discord: right-click the server, Copy Server ID).'; out.className = 'error'; return; }
  const id = BigInt(raw);
  if (id === 0n || id >= (1n << 64n)) { out.textContent = 'That number is out of range for a server ID (1 to 18446744073709551615).'; out.className = 'error'; return; }
  if (id < (1n << 22n)) { out.textContent = 'That number is too small to be a server ID.'; out.className = 'error'; return; }
  const clusters = new Map();
  for (const c of cells.values()) clusters.set(c.c, Math.max(clusters.get(c.c) || 0, c.s + 1));
  if (fleet && fleet.shard_count) clusters.set('gateway', fleet.shard_count);
  const found = [];
  for (const [cluster, count] of clusters) {
    const shard = Number((id >> 22n) % BigInt(count));
    const k = cluster + '/' + shard;
    const c = cells.get(k);
    if (!c) continue;
    highlighted.push(k);
    found.push(c);
  }
  out.className = '';
  if (!found.length) { out.textContent = 'No shards to look in yet.'; return; }
  out.textContent = found.map((c) => 'Server ' + raw + ' is on ' + c.c + ' shard ' + c.s + ': ' + c.st + (c.cl === 'ok' ? ' (up)' : c.cl === 'bad' ? ' (down)' : '')).join('; ');
  for (const k of highlighted) { const el = els.get(k); if (el) { el.classList.add('hl'); } }
  const first = els.get(highlighted[0]);
  if (first) first.scrollIntoView({ block: 'nearest' });
  showDetails(highlighted[0]);
}

// ---- charts ----

function drawChart(id, lastId, key, unit, digits) {
  const svg = $(id);
  const pts = history.filter((p) => p[key] !== undefined);
  svg.replaceChildren();
  if (pts.length < 2) { $(lastId).textContent = pts.length ? num(pts[0][key], digits) + unit : 'collecting…'; return; }
  const t0 = pts[0].t, t1 = pts[pts.length - 1].t;
  const max = Math.max(...pts.map((p) => p[key]), 1e-9);
  const coords = pts.map((p) => ((300 * (p.t - t0)) / Math.max(1, t1 - t0)).toFixed(1) + ',' + (98 - (93 * p[key]) / max).toFixed(1)).join(' ');
  const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
  line.setAttribute('points', coords);
  svg.append(line);
  $(lastId).textContent = 'now ' + num(pts[pts.length - 1][key], digits) + unit + ' · max ' + num(max, digits) + unit;
}

function drawCharts() {
  drawChart('chart-eps', 'last-eps', 'eps', '', 0);
  drawChart('chart-lat', 'last-lat', 'lat', ' ms', 1);
  drawChart('chart-guilds', 'last-guilds', 'guilds', '', 0);
}

// ---- API, actions ----

async function api(path, opts) {
  const o = Object.assign({ headers: {} }, opts || {});
  if (token) o.headers.Authorization = 'Bearer ' + token;
  const res = await fetch(path, o);
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = { error: text }; }
  if (!res.ok) throw new Error((body && body.error) || res.status + ' ' + res.statusText);
  return body;
}

async function command(cmd) {
  try {
    await api('/v1/commands', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(cmd) });
    setConn(true, cmd.type.replace('_', ' ') + ' sent');
  } catch (e) { alert(cmd.type + ': ' + e.message); }
}

async function reshard(ev) {
  ev.preventDefault();
  const to = Number($('reshard-to').value);
  try {
    const plan = await api('/v1/reshard', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ to, dry_run: true }) });
    $('reshard-plan').textContent = plan.summary || JSON.stringify(plan, null, 2);
  } catch (e) { $('reshard-plan').textContent = e.message; }
}

// ---- live updates ----

function handle(event, data) {
  if (event === 'snapshot') onSnapshot(data);
  else if (event === 'cells') onCells(data);
  else if (event === 'fleet') onFleet(data);
  else if (event === 'history') { history.push(data); drawCharts(); }
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

function publicStream() {
  const es = new EventSource('/public/stream');
  for (const ev of ['snapshot', 'cells', 'fleet', 'history']) es.addEventListener(ev, (e) => handle(ev, JSON.parse(e.data)));
  es.onopen = () => setConn(true);
  es.onerror = () => setConn(false);
}

// EventSource cannot send a token: the admin view reads the stream with fetch.
async function adminStream() {
  for (;;) {
    try {
      const res = await fetch('/v1/stream', { headers: { Authorization: 'Bearer ' + token } });
      if (res.status === 401 || res.status === 403) { login('That token was refused.'); return; }
      if (!res.ok) throw new Error(String(res.status));
      setConn(true);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let ev = 'message', data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) ev = line.slice(7);
            else if (line.startsWith('data: ')) data += line.slice(6);
          }
          if (data) handle(ev, JSON.parse(data));
        }
      }
    } catch (e) { /* reconnect below */ }
    setConn(false);
    await sleep(2000);
  }
}

function login(msg) {
  $('login').hidden = false;
  $('login-error').textContent = msg || '';
  setConn(false, 'signed out');
}

function start() {
  $('search').addEventListener('submit', search);
  $('grid').addEventListener('click', (e) => { const k = e.target.dataset && e.target.dataset.k; if (k) showDetails(k); });
  if (!admin) { publicStream(); return; }
  $('mode').textContent = 'admin';
  $('reshard-panel').hidden = false;
  $('reshard').addEventListener('submit', reshard);
  $('login').addEventListener('submit', (e) => {
    e.preventDefault();
    token = $('token').value;
    sessionStorage.setItem(TOKEN_KEY, token);
    $('token').value = '';
    $('login').hidden = true;
    adminStream();
  });
  if (!token) { login(); return; }
  adminStream();
}

setInterval(() => { if (selected) showDetails(selected); }, 5000);
start();
