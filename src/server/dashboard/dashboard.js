// hyperlet dashboard: the daemon's objects, host and events, live from its event stream
// (GET /api/v1/watch, Server-Sent Events read with fetch so the token can go in a header).
// No framework, no build step, nothing from the internet. Text from the daemon only ever
// reaches the page through textContent, never as HTML.

// ---- The token: the one place it is read, kept and sent. -------------------------------------
const auth = {
  key: 'hyperlet-token',
  /** The token from #token=… (then removed from the address bar) or from this tab's storage. */
  load() {
    const m = /(?:^#|&)token=([A-Za-z0-9._~+/=-]+)/.exec(location.hash);
    if (m) {
      sessionStorage.setItem(this.key, m[1]);
      history.replaceState(null, '', `${location.pathname}#/`);
    }
    return sessionStorage.getItem(this.key);
  },
  get token() { return sessionStorage.getItem(this.key); },
  set token(value) {
    if (value) sessionStorage.setItem(this.key, value);
    else sessionStorage.removeItem(this.key);
  },
  headers() { return this.token ? { authorization: `Bearer ${this.token}` } : {}; },
};

/** GET or POST the daemon's API; resolves with the parsed JSON, rejects with its error message. */
async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: { ...auth.headers(), ...(options.headers || {}) } });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw Object.assign(new Error(body.error || `${res.status}`), { status: res.status });
  return body;
}

// ---- DOM helpers ---------------------------------------------------------------------------------
const $ = (selector, root = document) => root.querySelector(selector);
/** An element with attributes and children (strings become text nodes). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== undefined && c !== null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

function age(iso) {
  if (!iso) return '-';
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  return s < 172800 ? `${Math.floor(s / 3600)}h` : `${Math.floor(s / 86400)}d`;
}
function bytes(n) {
  if (!n) return '0';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n >= 10 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`;
}
const QUANTITY = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, K: 1e3, M: 1e6, G: 1e9, T: 1e12 };
function quantity(q) {
  if (q === undefined) return undefined;
  if (typeof q === 'number') return q;
  const m = /^([0-9.]+)([KMGT]i?)?$/.exec(q);
  return m ? Number(m[1]) * (QUANTITY[m[2]] || 1) : undefined;
}
const readyOf = (o) => (o.status?.conditions || []).find((c) => c.type === 'Ready');
const keyOf = (o) => `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`;

// ---- State ---------------------------------------------------------------------------------------
const state = { objects: new Map(), events: [], host: undefined, filter: '', detail: undefined, canAct: false };

// ---- Overview: host cards ------------------------------------------------------------------------
function renderHost() {
  const host = state.host;
  if (!host) return;
  $('#node').textContent = `node ${host.node}`;
  const cpuShare = host.capacity.cpus ? host.allocated.cpus / host.capacity.cpus : 0;
  const memShare = host.capacity.memoryBytes ? host.allocated.memoryBytes / host.capacity.memoryBytes : 0;
  const meter = (share) => {
    const bar = h('span');
    bar.style.width = `${Math.min(100, Math.round(share * 100))}%`; // CSSOM: the page's CSP allows no style attributes
    return h('div', { class: `meter${share > 1 ? ' over' : ''}`, role: 'presentation' }, bar);
  };
  const cards = [
    h('div', { class: 'card' }, h('h3', {}, 'Objects'), h('div', { class: 'big' }, String(host.allocated.objects)),
      h('div', { class: 'muted' }, `${host.allocated.running} declared running`)),
    h('div', { class: 'card' }, h('h3', {}, 'CPU allocated'),
      h('div', { class: 'big' }, `${host.allocated.cpus} / ${host.capacity.cpus}`), meter(cpuShare)),
    h('div', { class: 'card' }, h('h3', {}, 'Memory allocated'),
      h('div', { class: 'big' }, `${bytes(host.allocated.memoryBytes)} / ${bytes(host.capacity.memoryBytes)}`), meter(memShare)),
    h('div', { class: 'card', 'data-card': 'providers' }, h('h3', {}, 'Providers'), h('ul', {}, host.providers.map((p) =>
      h('li', { title: p.reason || 'available' },
        h('span', { class: `badge ${p.ok ? 'r-True' : 'r-False'}` }, p.ok ? 'up' : 'down'), ' ', p.name,
        p.ok ? '' : h('span', { class: 'muted' }, ` ${p.reason || ''}`))))),
    h('div', { class: 'card', 'data-card': 'sources' }, h('h3', {}, 'Sources'), h('ul', {}, host.sources.map((s) =>
      h('li', { title: s.summary || s.description },
        h('span', { class: `badge ${!s.synced ? 'r-Unknown' : s.behind || s.problems.length ? 'r-False' : 'r-True'}` },
          !s.synced ? 'syncing' : s.behind ? 'behind' : s.problems.length ? `${s.problems.length} problem(s)` : 'ok'),
        ' ', s.id, ' ', h('span', { class: 'muted' }, s.summary || s.description))))),
  ];
  $('#host').replaceChildren(...cards);
}

// ---- Overview: objects table ---------------------------------------------------------------------
function matches(o, text) {
  if (!text) return true;
  const ready = readyOf(o);
  const haystack = [o.kind, o.metadata.namespace, o.metadata.name, o.status?.phase, o.status?.node, ready?.reason,
    ...(o.status?.addresses || []), ...Object.entries(o.metadata.labels || {}).map(([k, v]) => `${k}=${v}`)].join(' ').toLowerCase();
  return text.toLowerCase().split(/\s+/).every((word) => haystack.includes(word));
}

function objectRow(o) {
  const ready = readyOf(o);
  const phase = o.status?.phase || 'Pending';
  const readyText = !ready ? 'Unknown' : ready.status === 'True' ? 'True' : 'False';
  const res = o.spec.resources || {};
  return h('tr', { tabindex: 0, 'data-key': keyOf(o), 'data-name': o.metadata.name, onclick: () => openObject(keyOf(o)) },
    h('td', { class: 'name' }, o.metadata.name, h('small', {}, o.metadata.namespace)),
    h('td', {}, o.kind),
    h('td', {}, h('span', { class: `badge p-${phase}`, 'data-phase': phase }, phase)),
    h('td', { title: ready ? `${ready.reason}: ${ready.message}` : '' }, h('span', { class: `r-${readyText}`, 'data-ready': readyText },
      readyText === 'False' ? `False (${ready.reason})` : readyText)),
    h('td', {}, o.status?.node || '-'),
    h('td', {}, res.cpu === undefined ? '-' : String(res.cpu)),
    h('td', {}, res.memory === undefined ? '-' : bytes(quantity(res.memory))),
    h('td', { class: 'mono' }, (o.status?.addresses || []).join(', ') || '-'),
    h('td', {}, age(o.metadata.creationTimestamp)));
}

function renderObjects(changedKey) {
  const tbody = $('#objects tbody');
  const focused = document.activeElement?.dataset?.key;
  const all = [...state.objects.values()].sort((a, b) => keyOf(a).localeCompare(keyOf(b)));
  const shown = all.filter((o) => matches(o, state.filter));
  tbody.replaceChildren(...shown.map((o) => {
    const row = objectRow(o);
    if (keyOf(o) === changedKey) row.classList.add('flash');
    return row;
  }));
  $('#count').textContent = shown.length === all.length ? `(${all.length})` : `(${shown.length} of ${all.length})`;
  $('#empty').hidden = all.length > 0;
  if (focused) tbody.querySelector(`tr[data-key="${CSS.escape(focused)}"]`)?.focus();
}

// ---- Timeline ------------------------------------------------------------------------------------
function eventItem(e) {
  const o = e.involvedObject;
  return h('li', { class: e.type },
    h('time', { datetime: e.time, title: e.time }, new Date(e.time).toLocaleTimeString()),
    h('span', { class: 'reason' }, e.reason), ' ',
    h('a', { href: objectHash(o.kind, o.namespace, o.name) }, `${o.kind} ${o.namespace}/${o.name}`),
    h('div', { class: 'muted' }, e.message));
}
function renderTimeline() {
  $('#timeline').replaceChildren(...state.events.slice(-100).reverse().map(eventItem));
}

// ---- Object page ---------------------------------------------------------------------------------
const objectHash = (kind, namespace, name) =>
  `#/o/${encodeURIComponent(kind)}/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;
function openObject(key) {
  const [kind, namespace, name] = key.split('/');
  location.hash = objectHash(kind, namespace, name);
}

async function loadDetail(kind, namespace, name) {
  const path = `/api/v1/objects/${encodeURIComponent(kind)}/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`;
  try {
    state.detail = { key: `${kind}/${namespace}/${name}`, data: await api(path), error: undefined };
  } catch (err) {
    state.detail = { key: `${kind}/${namespace}/${name}`, data: undefined, error: err.message };
  }
  renderDetail();
}

function renderDetail() {
  const section = $('#detail');
  const d = state.detail;
  if (!d) return;
  const live = state.objects.get(d.key);
  const back = h('a', { href: '#/' }, '← All objects');
  if (!d.data && !live) {
    section.replaceChildren(back, h('p', { class: 'error' }, d.error || 'Loading…'));
    return;
  }
  const view = live || d.data.view;
  const status = view.status || {};
  const ready = readyOf(view);
  const phase = status.phase || 'Pending';
  const conditions = status.conditions || [];
  const actions = state.canAct ? (d.data?.actions || []) : [];
  section.replaceChildren(
    h('nav', {}, back),
    h('div', { class: 'detail-head' },
      h('h2', {}, `${view.kind} ${view.metadata.namespace}/${view.metadata.name}`),
      h('span', { class: `badge p-${phase}`, 'data-phase': phase }, phase),
      h('span', { class: `r-${ready ? ready.status : 'Unknown'}` }, ready ? `Ready ${ready.status} (${ready.reason})` : 'Ready Unknown'),
      h('span', { class: 'spacer' }),
      h('div', { class: 'actions', 'data-actions': actions.join(' ') }, actions.filter((a) => a !== 'restore').map((a) =>
        h('button', { type: 'button', class: 'primary', onclick: () => act(view, a) }, a[0].toUpperCase() + a.slice(1))))),
    h('div', { class: 'grid2' },
      h('section', { class: 'panel' }, h('h2', {}, 'Status'), h('dl', { class: 'facts' }, [
        ['Node', status.node], ['Host name', status.hostName], ['PID', status.pid], ['Addresses', (status.addresses || []).join(', ')],
        ['Started', status.startedAt], ['Generation', `${view.metadata.generation} (observed ${status.observedGeneration ?? '-'})`],
        ['ID', view.metadata.uid], ['Source', view.metadata.annotations?.['hyperlet.io/source']],
        ...Object.entries(status.details || {}),
      ].filter(([, v]) => v !== undefined && v !== '').flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, String(v))]))),
      h('section', { class: 'panel' }, h('h2', {}, 'Conditions'), h('table', { 'data-conditions': '' },
        h('thead', {}, h('tr', {}, ['Type', 'Status', 'Reason', 'Message', 'Since'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, conditions.map((c) => h('tr', {}, h('td', {}, c.type), h('td', { class: `r-${c.status}` }, c.status),
          h('td', {}, c.reason), h('td', {}, c.message), h('td', { title: c.lastTransitionTime }, age(c.lastTransitionTime))))))),
      h('section', { class: 'panel' }, h('h2', {}, 'Spec'),
        h('pre', { 'data-spec': '' }, d.data ? JSON.stringify(d.data.object.spec, null, 2) : '…')),
      h('section', { class: 'panel' }, h('h2', {}, 'Events and audit'), h('ol', { id: 'object-events', class: 'events' },
        (d.data?.events || []).slice(-50).reverse().map(eventItem))),
      h('section', { class: 'panel' }, h('h2', {}, 'Snapshots'), (status.snapshots || []).length === 0
        ? h('p', { class: 'muted' }, 'None.')
        : h('ul', { class: 'snapshots' }, status.snapshots.map((s) => h('li', { 'data-snapshot': s.name },
          h('span', { class: 'mono' }, s.name), ' ',
          h('span', { class: 'muted' }, `${s.time || ''} ${s.sizeBytes ? bytes(s.sizeBytes) : ''} ${s.origin}`),
          actions.includes('restore')
            ? h('button', { type: 'button', onclick: () => act(view, 'restore', `?snapshot=${encodeURIComponent(s.name)}`) }, 'Restore')
            : '')))),
      h('section', { class: 'panel' }, h('h2', {}, 'Console (tail)'),
        d.data?.consoleTail === undefined
          ? h('p', { class: 'muted' }, 'No console log.')
          : h('pre', { 'data-console': '' }, d.data.consoleTail))));
}

async function act(view, action, query = '') {
  const { kind, metadata: { namespace, name } } = view;
  const path = `/api/v1/objects/${encodeURIComponent(kind)}/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}/${action}${query}`;
  try {
    await api(path, { method: 'POST' });
  } catch (err) {
    alertLine(`${action} failed: ${err.message}`);
  }
}
function alertLine(text) {
  $('#live').textContent = text;
}

// ---- Routing and keyboard ------------------------------------------------------------------------
function route() {
  // A link with #token=… opened in this tab already (same page, new fragment): take the token.
  if (/token=/.test(location.hash)) {
    auth.load();
    void checkToken();
  }
  const m = /^#\/o\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(location.hash);
  const detail = $('#detail');
  if (m) {
    const [kind, namespace, name] = m.slice(1).map(decodeURIComponent);
    $('#overview').hidden = true;
    detail.hidden = false;
    state.detail = { key: `${kind}/${namespace}/${name}`, data: undefined };
    renderDetail();
    void loadDetail(kind, namespace, name);
    $('#main').focus();
  } else {
    state.detail = undefined;
    detail.hidden = true;
    $('#overview').hidden = false;
  }
}

function moveFocus(step) {
  const rows = [...document.querySelectorAll('#objects tbody tr')];
  if (rows.length === 0) return;
  const at = rows.indexOf(document.activeElement);
  rows[Math.max(0, Math.min(rows.length - 1, at < 0 ? 0 : at + step))].focus();
}

document.addEventListener('keydown', (e) => {
  const typing = e.target instanceof HTMLInputElement;
  if (e.key === 'Escape') {
    if (typing && e.target.value) return;
    if (location.hash.startsWith('#/o/')) { location.hash = '#/'; e.preventDefault(); }
    else if (typing) e.target.blur();
    return;
  }
  if (typing || e.altKey || e.ctrlKey || e.metaKey) return;
  if (e.key === '/') { e.preventDefault(); $('#filter').focus(); }
  else if (e.key === '?') $('#help').showModal();
  else if (e.key === 'j' || e.key === 'ArrowDown') { e.preventDefault(); moveFocus(1); }
  else if (e.key === 'k' || e.key === 'ArrowUp') { e.preventDefault(); moveFocus(-1); }
  else if (e.key === 'Enter' && e.target.dataset?.key) openObject(e.target.dataset.key);
});

// ---- The event stream ----------------------------------------------------------------------------
/** Reads one stream until it ends; calls `onMessage(event, data)` per message. */
async function readStream(url, onMessage, signal) {
  const res = await fetch(url, { headers: { accept: 'text/event-stream', ...auth.headers() }, signal });
  if (!res.ok || !res.body) throw new Error(`the event stream answered ${res.status}`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = '';
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.search(/\r?\n/)) >= 0) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + (buffer[end] === '\r' ? 2 : 1));
      if (line === '') {
        if (data.length) onMessage(event || 'message', JSON.parse(data.join('\n')));
        event = '';
        data = [];
      } else if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
  }
}

function onMessage(event, data) {
  if (event === 'ADDED' || event === 'MODIFIED') {
    state.objects.set(keyOf(data.object), data.object);
    if (!state.listing) renderObjects(keyOf(data.object));
    if (state.detail?.key === keyOf(data.object)) renderDetail();
  } else if (event === 'DELETED') {
    state.objects.delete(keyOf(data.object));
    renderObjects();
    if (state.detail?.key === keyOf(data.object)) renderDetail();
  } else if (event === 'SYNCED') {
    state.listing = false;
    renderObjects();
  } else if (event === 'EVENT') {
    state.events.push(data.event);
    if (state.events.length > 500) state.events.splice(0, state.events.length - 500);
    renderTimeline();
    const o = data.event.involvedObject;
    if (state.detail?.key === `${o.kind}/${o.namespace}/${o.name}`) void loadDetail(o.kind, o.namespace, o.name);
  } else if (event === 'HOST') {
    state.host = data.host;
    renderHost();
  }
}

async function follow() {
  let delay = 1000;
  for (;;) {
    const live = $('#live');
    try {
      state.objects.clear();
      state.listing = true;
      const events = await api('/api/v1/events?limit=100');
      state.events = events.items;
      renderTimeline();
      live.className = 'live on';
      live.textContent = 'live';
      delay = 1000;
      await readStream('/api/v1/watch?events=true&host=true', onMessage);
      live.className = 'live off';
      live.textContent = 'the daemon closed the stream; reconnecting…';
    } catch (err) {
      live.className = 'live off';
      live.textContent = `disconnected (${err.message}); retrying…`;
    }
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 10_000);
  }
}

// ---- Sign in: validate the token, then offer actions ---------------------------------------------
async function checkToken() {
  if (!auth.token) {
    state.canAct = false;
  } else {
    try {
      await api('/api/v1/session', { method: 'POST' });
      state.canAct = true;
    } catch (err) {
      state.canAct = false;
      if (err.status === 401) auth.token = '';
    }
  }
  const button = $('#signin');
  button.textContent = state.canAct ? 'Sign out' : 'Sign in';
  button.title = state.canAct ? 'Forget the token in this tab' : 'Paste the API token to enable actions';
  if (state.detail) renderDetail();
}

function setUp() {
  $('#filter').addEventListener('input', (e) => { state.filter = e.target.value; renderObjects(); });
  $('#help-button').addEventListener('click', () => $('#help').showModal());
  for (const b of document.querySelectorAll('dialog [data-close]')) b.addEventListener('click', (e) => e.target.closest('dialog').close());
  $('#signin').addEventListener('click', () => {
    if (state.canAct) { auth.token = ''; void checkToken(); return; }
    $('#token-error').hidden = true;
    $('#token-dialog').showModal();
    $('#token-input').focus();
  });
  const submit = async () => {
    auth.token = $('#token-input').value.trim();
    await checkToken();
    if (state.canAct) { $('#token-dialog').close(); $('#token-input').value = ''; return; }
    $('#token-error').textContent = 'The daemon did not accept this token.';
    $('#token-error').hidden = false;
  };
  $('#token-ok').addEventListener('click', () => void submit());
  $('#token-input').addEventListener('keydown', (e) => { if (e.key === 'Enter') void submit(); });
  window.addEventListener('hashchange', route);
  route();
  void checkToken();
  void follow();
}

setUp();
