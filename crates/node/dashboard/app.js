// The bcte dashboard (docs/dashboard.md). It reads the node's own API, with the API's rules:
// the public sees the feeder, its prices, the mode and the blocks; an account signed in with a
// read token also sees what concerns it. GET /v1/stream says when a block is final; the page
// then fetches what changed. No inline script, no eval, no other origin (the node's CSP).
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const HISTORY = 48; // intervals in the price chart
  const BLOCKS = 8; // blocks in the table
  const RAMP = [[44, 123, 182], [171, 217, 233], [255, 255, 191], [253, 174, 97], [215, 25, 28]];
  const SVG = 'http://www.w3.org/2000/svg';

  const st = {
    config: { topology: true },
    feeder: null, // id
    feederView: null, // GET /v1/feeders/{id}
    schedule: null, // GET /v1/feeders/{id}/schedule
    results: new Map(), // interval -> result (of the selected feeder)
    node: null, // the node of the chart
    blocks: new Map(), // height -> block
    txs: [], // the latest transactions seen since the page loaded, newest first: [height, tx]
    height: 0,
    token: sessionStorage.getItem('bcte-token'),
    account: null,
    chart: null,
    busy: false,
    again: false,
  };

  // ---- the API ------------------------------------------------------------------------------

  class Refused extends Error {}

  async function api(path) {
    const headers = { Accept: 'application/json' };
    if (st.token) headers.Authorization = `Bearer ${st.token}`;
    const r = await fetch(path, { headers, cache: 'no-store' });
    if (r.status === 401 && st.token) {
      signOut('the node refused the token (expired or not valid): sign in again');
      throw new Refused(path);
    }
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      throw new Error(`${path}: ${r.status} ${body.error || r.statusText}`);
    }
    return r.json();
  }

  const enc = encodeURIComponent;
  const feederPath = (rest = '') => `/v1/feeders/${enc(st.feeder)}${rest}`;

  // ---- formatting ---------------------------------------------------------------------------

  const fmt = (x, d = 2) => (x === null || x === undefined ? '–' : Number(x).toFixed(d));
  const short = (hex) => (hex ? `${hex.slice(0, 10)}…` : '–');
  const time = (ms) => new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
  // Base units (10⁻⁶ token) as a decimal, from the integer: no float rounding.
  function money(units) {
    const n = BigInt(units);
    const neg = n < 0n;
    const a = neg ? -n : n;
    const frac = (a % 1000000n).toString().padStart(6, '0');
    return `${neg ? '−' : ''}${a / 1000000n}.${frac}`;
  }

  function text(el, value) {
    el.textContent = value;
    return el;
  }

  function row(cells, attrs = {}) {
    const tr = document.createElement('tr');
    for (const [k, v] of Object.entries(attrs)) tr.dataset[k] = v;
    for (const c of cells) {
      const td = document.createElement('td');
      if (c instanceof Node) td.append(c);
      else td.textContent = c;
      tr.append(td);
    }
    return tr;
  }

  function fill(tbody, rows, empty) {
    tbody.replaceChildren(...rows);
    if (!rows.length && empty) {
      const tr = row([empty]);
      tr.firstChild.colSpan = tbody.parentElement.tHead.rows[0].cells.length;
      tr.classList.add('muted');
      tbody.append(tr);
    }
  }

  function link(href, label) {
    const a = document.createElement('a');
    a.href = href;
    a.textContent = label;
    return a;
  }

  function showError(message) {
    const e = $('error');
    e.hidden = !message;
    e.textContent = message || '';
  }

  // ---- colour -------------------------------------------------------------------------------

  function colour(price, lo, hi) {
    const t = hi > lo ? Math.min(1, Math.max(0, (price - lo) / (hi - lo))) : 0.5;
    const x = t * (RAMP.length - 1);
    const i = Math.min(RAMP.length - 2, Math.floor(x));
    const f = x - i;
    const c = RAMP[i].map((v, j) => Math.round(v + (RAMP[i + 1][j] - v) * f));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }

  // ---- the feeder ---------------------------------------------------------------------------

  function latest() {
    const k = st.schedule && st.schedule.last_cleared;
    return k === null || k === undefined ? null : st.results.get(k) || null;
  }

  // A top-down tree: leaves side by side in depth-first order, a parent above the middle of
  // its children.
  function layout(nodes) {
    const children = new Map(nodes.map((n) => [n.id, []]));
    let root = null;
    for (const n of nodes) {
      if (n.parent === null || n.parent === undefined) root = n.id;
      else children.get(n.parent).push(n.id);
    }
    const pos = new Map();
    let leaf = 0;
    let depth = 0;
    const visit = (id, d) => {
      depth = Math.max(depth, d);
      const cs = children.get(id);
      if (!cs.length) {
        pos.set(id, { x: leaf++, y: d });
        return;
      }
      cs.forEach((c) => visit(c, d + 1));
      const xs = cs.map((c) => pos.get(c).x);
      pos.set(id, { x: (Math.min(...xs) + Math.max(...xs)) / 2, y: d });
    };
    if (root !== null) visit(root, 0);
    return { pos, leaves: Math.max(1, leaf), depth };
  }

  function drawTree(view, result) {
    const svg = $('feeder-tree');
    const box = $('tree-box');
    svg.replaceChildren();
    const { pos, leaves, depth } = layout(view.nodes);
    const width = Math.max(box.clientWidth || 600, leaves * 16);
    const gap = width / leaves;
    const labels = gap >= 46;
    const rowH = 70;
    const height = (depth + 1) * rowH + 20;
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    svg.setAttribute('width', width);
    svg.setAttribute('height', height);
    const xy = (id) => {
      const p = pos.get(id);
      return [(p.x + 0.5) * gap, 24 + p.y * rowH];
    };
    const prices = result ? result.prices : {};
    const values = Object.values(prices);
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    const congested = result ? result.congested_edges : {};
    for (const n of view.nodes) {
      if (n.parent === null || n.parent === undefined) continue;
      const [x1, y1] = xy(n.parent);
      const [x2, y2] = xy(n.id);
      const line = document.createElementNS(SVG, 'line');
      line.setAttribute('x1', x1);
      line.setAttribute('y1', y1);
      line.setAttribute('x2', x2);
      line.setAttribute('y2', y2);
      line.classList.add('edge');
      line.dataset.edge = n.id;
      if (congested[n.id]) {
        line.classList.add('congested');
        const t = document.createElementNS(SVG, 'title');
        t.textContent = `${n.parent} → ${n.id}: at its ${congested[n.id]} limit`;
        line.append(t);
      }
      svg.append(line);
    }
    for (const n of view.nodes) {
      const [x, y] = xy(n.id);
      const g = document.createElementNS(SVG, 'g');
      g.classList.add('node');
      if (n.id === st.node) g.classList.add('selected');
      g.dataset.node = n.id;
      const price = prices[n.id];
      const c = document.createElementNS(SVG, 'circle');
      c.setAttribute('cx', x);
      c.setAttribute('cy', y);
      c.setAttribute('r', labels ? 8 : 5);
      c.setAttribute('fill', price === undefined ? '#ccc' : colour(price, lo, hi));
      const title = document.createElementNS(SVG, 'title');
      title.textContent = `${n.id}: ${price === undefined ? 'no price yet' : `${fmt(price)} /MWh`}`;
      c.append(title);
      g.append(c);
      if (labels) {
        const name = document.createElementNS(SVG, 'text');
        name.setAttribute('x', x + 11);
        name.setAttribute('y', y + 4);
        name.textContent = n.id;
        g.append(name);
      }
      const p = document.createElementNS(SVG, 'text');
      p.classList.add('price');
      p.setAttribute('x', x - 11);
      p.setAttribute('y', y + 4);
      p.setAttribute('text-anchor', 'end');
      if (price !== undefined) p.dataset.price = String(price);
      p.textContent = labels && price !== undefined ? fmt(price) : '';
      g.append(p);
      g.addEventListener('click', () => selectNode(n.id));
      svg.append(g);
    }
    const legend = $('legend');
    legend.replaceChildren();
    if (values.length) {
      const ramp = document.createElement('span');
      ramp.className = 'ramp';
      legend.append(text(document.createElement('span'), `${fmt(lo)} /MWh`), ramp,
        text(document.createElement('span'), `${fmt(hi)} /MWh`),
        text(document.createElement('span'), '· dashed red: an edge at its limit'));
    }
  }

  function drawPriceTable(view, result) {
    const prices = result ? result.prices : {};
    const congested = result ? result.congested_edges : {};
    const rows = view.nodes.map((n) => {
      const price = text(document.createElement('span'), fmt(prices[n.id]));
      price.className = 'price';
      if (prices[n.id] !== undefined) price.dataset.price = String(prices[n.id]);
      const tr = row([n.id, price, fmt(n.import_limit_kw, 1), fmt(n.export_limit_kw, 1)], { node: n.id });
      if (congested[n.id]) tr.classList.add('congested');
      return tr;
    });
    fill($('price-table').tBodies[0], rows);
  }

  function drawMarket() {
    const s = st.schedule;
    if (!s) return;
    text($('current-interval'), s.current_interval === null ? 'before the epoch' : `#${s.current_interval}`);
    const mode = $('mode');
    text(mode, s.mode);
    mode.className = `badge ${s.mode}`;
    text($('next-gate'), `#${s.next_interval} at ${time(s.next_gate_ms)}`);
    const secs = Math.max(0, Math.round((s.next_gate_ms - s.market_time_ms) / 1000));
    text($('next-gate-in'), `(in ${secs} s of market time${s.clock_speed > 1 ? `, ×${s.clock_speed}` : ''}; next mode ${s.next_mode})`);
    const r = latest();
    const last = $('last-cleared');
    last.dataset.interval = s.last_cleared === null ? '' : String(s.last_cleared);
    text(last, r ? `#${r.interval} (block ${r.height}, ${r.mode})` : 'none yet');
    text($('upstream-prices'), r ? `import ${fmt(r.import_price)} · export ${fmt(r.export_price)} /MWh` : '–');
    const edges = r ? Object.entries(r.congested_edges) : [];
    text($('congested'), edges.length ? edges.map(([n, side]) => `${n} (${side})`).join(', ') : 'none');
  }

  function drawGrid() {
    const view = st.feederView;
    if (!view) return;
    const r = latest();
    text($('grid-title'), `${view.id} · ${view.nodes.length} nodes · ${view.sites} sites`);
    $('tree-box').hidden = !st.config.topology;
    $('legend').hidden = !st.config.topology;
    // Without the tree, the table is the feeder's only picture: open it.
    if (!st.config.topology) $('price-details').open = true;
    if (st.config.topology) drawTree(view, r);
    drawPriceTable(view, r);
  }

  // ---- history ------------------------------------------------------------------------------

  function selectNode(id) {
    st.node = id;
    const sel = $('history-node');
    if (sel.value !== id) sel.value = id;
    drawGrid();
    drawChart();
  }

  function drawChart() {
    if (!st.node || typeof uPlot === 'undefined') return;
    const ks = [...st.results.keys()].sort((a, b) => a - b);
    const xs = [];
    const price = [];
    const volume = [];
    let operator = false;
    const root = st.feederView.nodes.find((n) => n.parent === null || n.parent === undefined);
    for (const k of ks) {
      const r = st.results.get(k);
      xs.push(r.start_ms / 1000);
      price.push(r.prices[st.node] ?? null);
      if (r.scope === 'all') {
        operator = true;
        volume.push(st.node === root.id ? r.upstream_kw : r.flows[st.node] ?? null);
      } else volume.push(null);
    }
    text($('volume-note'), operator
      ? (st.node === root.id ? 'volume: the import from the upstream grid, kW' : 'volume: the flow into the node from its parent, kW')
      : 'volume per node is the operator\'s (a leaf\'s flow is one site\'s power): sign in as the DSO, an auditor or a regulator to see it');
    const data = [xs, price, volume];
    const el = $('chart');
    const width = Math.max(300, el.clientWidth || 600);
    if (!st.chart) {
      st.chart = new uPlot({
        width,
        height: 240,
        scales: { x: { time: true }, kw: { auto: true } },
        axes: [{}, { label: '/MWh' }, { scale: 'kw', side: 1, label: 'kW', grid: { show: false } }],
        series: [
          {},
          { label: 'price /MWh', stroke: '#1f6feb', width: 2, points: { show: true } },
          { label: 'volume kW', scale: 'kw', stroke: '#2e7d32', fill: 'rgba(46,125,50,0.12)', width: 1 },
        ],
      }, data, el);
    } else {
      st.chart.setData(data);
    }
  }

  // ---- blocks -------------------------------------------------------------------------------

  async function refreshBlocks(height) {
    const want = [];
    for (let h = height; h >= 0 && h > height - BLOCKS; h--) want.push(h);
    const fresh = want.filter((h) => !st.blocks.has(h));
    await Promise.all(fresh.map(async (h) => {
      st.blocks.set(h, await api(`/v1/blocks/${h}`));
    }));
    // Transactions stay listed after their block leaves the table.
    const seen = fresh.sort((a, b) => b - a).flatMap((h) => st.blocks.get(h).txs.map((t) => [h, t]));
    st.txs = [...seen, ...st.txs].slice(0, 12);
    for (const h of [...st.blocks.keys()]) if (h <= height - BLOCKS) st.blocks.delete(h);
    const blocks = want.map((h) => st.blocks.get(h));
    fill($('block-table').tBodies[0], blocks.map((b) => row([
      String(b.height),
      text(document.createElement('span'), short(b.hash)),
      time(b.timestamp),
      String(b.txs.length),
      link(`/v1/certificates/${b.height}`, b.certified ? 'certificate' : 'final through a descendant'),
    ], { height: b.height })));
    fill($('tx-table').tBodies[0], st.txs.map(([h, t]) => row([
      String(h),
      link(`/v1/txs/${t.hash}`, short(t.hash)),
      t.kind || 'not yours to see',
      t.reason ? `${t.status}: ${t.reason}` : t.status,
    ])), 'none in the blocks seen since the page loaded');
  }

  // ---- settlement ---------------------------------------------------------------------------

  async function refreshSettlement() {
    const s = st.schedule;
    const body = $('settlement-body');
    if (s.last_settled === null || s.last_settled === undefined) {
      body.className = 'muted';
      text(body, 'no interval settled yet');
      return null;
    }
    const dl = document.createElement('dl');
    const add = (k, val) => dl.append(text(document.createElement('dt'), k), text(document.createElement('dd'), val));
    body.className = '';
    add('Last settled', `#${s.last_settled}`);
    // Readings and charges are their sites' and the operator's (AC-6.3): none for the public.
    if (!st.token) {
      add('Readings and charges', 'sign in to see yours (the operator, auditors and regulators see the totals)');
      body.replaceChildren(dl);
      return null;
    }
    const v = await api(feederPath(`/intervals/${s.last_settled}/settlement`));
    add('Readings', `${Object.keys(v.readings).length} seen · ${v.batches.length} head-end batches`);
    if (v.totals) {
      const t = v.totals;
      add('Sites', `${t.sites} (${t.estimated} estimated)`);
      add('Energy charges', money(t.energy_charges));
      add('Imbalance charges', money(t.imbalance_charges));
      add('Upstream', `${t.upstream_wh} Wh · ${money(t.upstream_charge)}`);
      add('Congestion rent', money(t.congestion_rent));
      add('Market account net', money(t.market_net));
    } else {
      add('Totals', 'the market account\'s: sign in as the DSO, an auditor or a regulator');
    }
    body.replaceChildren(dl);
    return v;
  }

  // ---- my account ---------------------------------------------------------------------------

  function account() {
    try {
      const part = st.token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      return JSON.parse(atob(part)).sub || null;
    } catch {
      return null;
    }
  }

  async function refreshMine(settlement) {
    const mine = $('mine');
    mine.hidden = !st.token;
    $('signin').hidden = !!st.token;
    $('who').hidden = !st.token;
    if (!st.token) return;
    text($('who-account'), short(st.account));
    const a = await api(`/v1/accounts/${st.account}`);
    const dl = document.createElement('dl');
    const add = (k, val) => dl.append(text(document.createElement('dt'), k), text(document.createElement('dd'), val));
    add('Account', a.account);
    add('Roles', a.roles.length ? a.roles.join(', ') : 'none (it may only receive)');
    add('Balance', `${money(a.balance)} tokens`);
    add('Positions', a.positions.length ? a.positions.map((p) => `${money(p.amount)} with ${short(p.market)}`).join('; ') : 'none');
    $('mine-account').replaceChildren(dl);
    const r = latest();
    fill($('mine-sites').tBodies[0], r ? Object.entries(r.sites).map(([id, p]) =>
      row([id, fmt(p.allocation_kw), fmt(p.served_kw), fmt(p.shed_kw), fmt(p.spilled_kw)], { site: id })) : [], 'none');
    const s = st.schedule;
    // An open interval's bids are sealed until it clears (MC-5.4): the last cleared one's.
    const bids = r ? await api(feederPath(`/intervals/${r.interval}/bids`)) : { bids: [] };
    // A curve is `[[price, kW], ...]`, or for an aggregated one its components.
    const curve = (c) => (Array.isArray(c)
      ? c.map(([p, kw]) => `${fmt(p)} : ${fmt(kw)}`).join(' · ')
      : `${fmt(c.base_kw)} kW base, ${c.steps.length} steps, ${c.ramps.length} ramps`);
    fill($('mine-bids').tBodies[0], bids.bids.map((b) => row([b.site, curve(b.curve)])), 'none');
    const set = settlement ? Object.entries(settlement.sites) : [];
    fill($('mine-readings').tBodies[0], set.map(([id, x]) => row([
      id, x.metered_wh === null ? '–' : String(x.metered_wh), String(x.scheduled_wh), money(x.total), x.estimated ? 'estimated' : '',
    ])), 'none');
    if (s.last_settled !== null && s.last_settled !== undefined) {
      const from = Math.max(s.oldest_result ?? s.last_settled, s.last_settled - 2975);
      const bill = await api(feederPath(`/billing?from_interval=${from}&to_interval=${s.last_settled}`));
      fill($('mine-invoices').tBodies[0], bill.statements.map((x) => row([
        short(x.participant), String(x.total.intervals), String(x.total.wh_bought), String(x.total.wh_sold), money(x.total.total),
      ])), 'none');
    }
  }

  function signOut(why) {
    st.token = null;
    st.account = null;
    sessionStorage.removeItem('bcte-token');
    $('mine').hidden = true;
    $('signin').hidden = false;
    $('who').hidden = true;
    // They held what the token could see.
    st.results.clear();
    st.blocks.clear();
    st.txs = [];
    showError(why || '');
  }

  // ---- refreshing ---------------------------------------------------------------------------

  async function refreshFeeder() {
    if (!st.feeder) return null;
    const [view, schedule] = await Promise.all([api(feederPath()), api(feederPath('/schedule'))]);
    st.feederView = view;
    st.schedule = schedule;
    const sel = $('history-node');
    if (sel.options.length !== view.nodes.length) {
      sel.replaceChildren(...view.nodes.map((n) => new Option(n.id, n.id)));
    }
    if (!st.node || !view.nodes.some((n) => n.id === st.node)) {
      st.node = (view.nodes.find((n) => n.parent !== null && n.parent !== undefined) || view.nodes[0]).id;
    }
    sel.value = st.node;
    const last = schedule.last_cleared;
    if (last !== null && last !== undefined) {
      const first = Math.max(schedule.oldest_result ?? last, last - HISTORY + 1);
      for (const k of [...st.results.keys()]) if (k < first) st.results.delete(k);
      const missing = [];
      for (let k = first; k <= last; k++) if (!st.results.has(k)) missing.push(k);
      await Promise.all(missing.map(async (k) => {
        st.results.set(k, await api(feederPath(`/intervals/${k}/result`)));
      }));
    }
    drawMarket();
    drawGrid();
    drawChart();
    const settlement = await refreshSettlement();
    return settlement;
  }

  async function refresh() {
    if (st.busy) {
      st.again = true;
      return;
    }
    st.busy = true;
    try {
      const head = await api('/v1/head');
      st.height = head.height;
      text($('chain'), `chain ${head.chain_id}`);
      text($('height'), String(head.height));
      if (!st.feeder) await loadFeeders();
      const settlement = await refreshFeeder();
      await refreshBlocks(head.height);
      await refreshMine(settlement);
      if (!$('error').textContent.startsWith('the node refused')) showError('');
    } catch (e) {
      if (!(e instanceof Refused)) showError(`could not read the node: ${e.message}`);
    } finally {
      st.busy = false;
      if (st.again) {
        st.again = false;
        setTimeout(refresh, 300);
      }
    }
  }

  async function loadFeeders() {
    const f = await api('/v1/feeders');
    const sel = $('feeder');
    sel.replaceChildren(...f.feeders.map((x) => new Option(x.id, x.id)));
    const wanted = new URLSearchParams(location.hash.slice(1)).get('feeder');
    const ids = f.feeders.map((x) => x.id);
    st.feeder = ids.includes(wanted) ? wanted : ids[ids.length - 1] || null;
    if (st.feeder) sel.value = st.feeder;
    else text($('grid-title'), 'no feeder registered yet');
  }

  function live() {
    const badge = $('live');
    const source = new EventSource('/v1/stream');
    source.addEventListener('open', () => {
      badge.className = 'badge on';
      badge.textContent = 'live';
    });
    source.addEventListener('tip', (e) => {
      const tip = JSON.parse(e.data);
      text($('height'), String(tip.height));
      if (tip.height !== st.height) refresh();
    });
    source.addEventListener('error', () => {
      badge.className = 'badge off';
      badge.textContent = 'reconnecting';
    });
  }

  // ---- start --------------------------------------------------------------------------------

  async function start() {
    try {
      const r = await fetch('/dashboard/config.json');
      if (r.ok) st.config = await r.json();
    } catch {
      // the defaults
    }
    if (st.token) st.account = account();
    $('feeder').addEventListener('change', (e) => {
      st.feeder = e.target.value;
      st.results.clear();
      st.node = null;
      location.hash = `feeder=${enc(st.feeder)}`;
      refresh();
    });
    $('history-node').addEventListener('change', (e) => selectNode(e.target.value));
    $('signin').addEventListener('submit', (e) => {
      e.preventDefault();
      const token = $('token').value.trim();
      $('token').value = '';
      st.token = token;
      st.account = account();
      if (!st.account) {
        signOut('that is not a read token: get one with `bcte query token --key KEY`');
        return;
      }
      sessionStorage.setItem('bcte-token', token);
      // A token may see more of each result and transaction.
      st.results.clear();
      st.blocks.clear();
      st.txs = [];
      showError('');
      refresh();
    });
    $('signout').addEventListener('click', () => {
      signOut('');
      refresh();
    });
    window.addEventListener('resize', () => {
      if (st.chart) st.chart.setSize({ width: Math.max(300, $('chart').clientWidth), height: 240 });
      drawGrid();
    });
    // Market time moves between blocks too: keep the countdown honest.
    setInterval(() => {
      if (st.schedule) {
        st.schedule.market_time_ms += 1000 * (st.schedule.clock_speed || 1);
        drawMarket();
      }
    }, 1000);
    await refresh();
    live();
  }

  start();
})();
