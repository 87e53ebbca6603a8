// moth-edge dashboard: plain ES module, no build step. Polls /api/stats once a second, plays a
// video track over WHEP, shows upstream link state, sensor values, PTZ and recordings.
const $ = (id) => document.getElementById(id);
const state = { pc: null, session: null, playing: null, lastBytes: 0, lastAt: 0, tracks: [], names: new Map(), uptimeS: null };
window.mothEdge = { get pc() { return state.pc; }, state };

const fmtRate = (bps) => (bps >= 1e6 ? `${(bps / 1e6).toFixed(2)} Mbit/s` : bps >= 1e3 ? `${(bps / 1e3).toFixed(0)} kbit/s` : `${Math.round(bps || 0)} bit/s`);
const fmtBytes = (b) => (b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MB` : `${Math.round(b / 1024)} KB`);
const fmtAge = (s) => (s >= 86400 ? `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h` : s >= 3600 ? `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m` : s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`);
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
const sum = (o) => Object.values(o || {}).reduce((a, b) => a + (typeof b === 'number' ? b : 0), 0);

// ---------------------------------------------------------------------------------------------
// Access token (issue 17): asked once, kept in this browser (localStorage), sent as a Bearer
// header on every API, PTZ and WHEP call, and as ?token= where a URL must carry it (stills,
// recordings). A wrong token is forgotten at once, so polling never piles up failed attempts
// (the server blocks an address after repeated wrong tokens).
const TOKEN_KEY = 'moth-edge.token';
const auth = { token: localStorage.getItem(TOKEN_KEY) || '' };

function authHeaders(h = {}) {
  return auth.token ? { ...h, authorization: `Bearer ${auth.token}` } : h;
}

function withToken(url) {
  return auth.token ? `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(auth.token)}` : url;
}

/** fetch with the token; a 401/429 opens the token form with the server's reason. */
async function api(url, opts = {}) {
  const r = await fetch(url, { cache: 'no-store', ...opts, headers: authHeaders(opts.headers) });
  if (r.status === 401 || r.status === 429) {
    const j = await r.clone().json().catch(() => ({}));
    const code = j.error?.code;
    if (code === 'AUTH_FAILED') {
      auth.token = '';
      localStorage.removeItem(TOKEN_KEY);
    }
    if (code === 'AUTH_FAILED') askToken('That token was refused.', true);
    else if (r.status === 429) askToken(j.error?.message ?? 'Too many failed attempts; wait a minute.', true);
    else askToken('This robot needs its access token.', false);
  }
  return r;
}

/** Show the token form; a refusal's message is not overwritten by the plain 401s racing it. */
function askToken(why, strong) {
  const f = $('auth');
  if (f.hidden || strong) $('auth-msg').textContent = why;
  if (!f.hidden) return;
  f.hidden = false;
  $('auth-token').focus();
}

$('auth').addEventListener('submit', (e) => {
  e.preventDefault();
  const t = $('auth-token').value.trim();
  if (!t) return;
  auth.token = t;
  localStorage.setItem(TOKEN_KEY, t);
  $('auth-token').value = '';
  $('auth').hidden = true;
  $('ptz').dataset.ids = '';
  refresh();
  refreshSensors();
  refreshPtz();
  refreshRecordings();
  if (state.playing) play(state.playing);
});
$('auth-forget').addEventListener('click', () => {
  auth.token = '';
  localStorage.removeItem(TOKEN_KEY);
  askToken('Token forgotten in this browser.', true);
});

async function getJson(url) {
  const r = await api(url);
  if (!r.ok) throw Object.assign(new Error(`${r.status}`), { status: r.status });
  return r.json();
}

// ---------------------------------------------------------------------------------------------
// Stats: tracks, links, health

function collectTracks(stats) {
  const out = [];
  state.names = new Map((stats?.engine?.channels ?? []).map((ch) => [ch.id, ch.name]));
  for (const ch of stats?.engine?.channels ?? []) {
    for (const t of ch.tracks ?? []) out.push({ ...t, path: `${t.channel}/${t.source}/${t.track}`, channelName: ch.name, label: named(`${t.channel}/${t.source}/${t.track}`) });
  }
  return out;
}

/** `<channel id>/source/track` → `<channel name>/source/track` for people (ids stay in URLs: both work). */
function named(path) {
  const [c, ...rest] = String(path ?? '').split('/');
  const n = state.names.get(c);
  return n ? [n, ...rest].join('/') : String(path ?? '');
}

function renderTracks(tracks) {
  const body = $('tracks');
  if (tracks.length === 0) {
    body.innerHTML = '<tr><td colspan="6" class="empty">No tracks yet</td></tr>';
    return;
  }
  body.innerHTML = tracks
    .map((t) => {
      const drops = sum(t.drops);
      const type = t.mime ? t.mime.split(';')[0] : '–';
      return `<tr><td class="mono" title="${esc(t.path)}">${esc(t.label)}</td><td class="hide-phone">${esc(type)}</td><td class="num">${(t.fps ?? 0).toFixed(1)}</td><td class="num">${fmtRate(t.bitrateBps)}</td><td class="num ${drops ? 'drops-bad' : ''}">${drops}</td><td class="num">${(t.consumers ?? []).length}</td></tr>`;
    })
    .join('');
}

function renderSelect(tracks) {
  const sel = $('track-select');
  const videos = tracks.filter((t) => (t.mime || '').toLowerCase().startsWith('video/h264'));
  const want = videos.map((t) => t.path).join('|');
  if (sel.dataset.paths === want) return;
  const cur = sel.value;
  sel.dataset.paths = want;
  sel.innerHTML = videos.length ? videos.map((t) => `<option value="${esc(t.path)}">${esc(t.label)}</option>`).join('') : '<option value="">No H.264 track</option>';
  if (videos.some((t) => t.path === cur)) sel.value = cur;
  $('play').disabled = videos.length === 0;
  if (!state.playing && videos.length) {
    const q = new URLSearchParams(location.search).get('track');
    const pick = videos.find((t) => t.path === q || t.label === q) ?? videos[0];
    sel.value = pick.path;
    if (new URLSearchParams(location.search).get('autoplay') !== '0') play(pick.path);
  }
}

function linkBadge(l) {
  if (l.state === 'connected') return '<span class="badge ok">connected</span>';
  if (l.state === 'backoff') return `<span class="badge bad">backoff${l.nextRetryInMs != null ? ` ${Math.ceil(l.nextRetryInMs / 1000)}s` : ''}</span>`;
  return `<span class="badge warn">${esc(l.state)}</span>`;
}

function renderLinks(egress) {
  const links = [...(egress?.upstream ?? []), ...(egress?.whip ?? []), ...(egress?.pull ?? [])];
  const ul = $('links');
  if (links.length === 0) {
    ul.innerHTML = '<li class="empty">No upstream configured</li>';
    return;
  }
  ul.innerHTML = links
    .map((l) => {
      const drops = l.dropped ? sum(l.dropped) : 0;
      // a link that is up again shows no old error (it stays in /api/stats as lastError)
      const err = l.lastError && l.state !== 'connected' ? `<div class="link-err">${esc(l.lastError.code)} · ${esc(l.lastError.message)}</div>` : '';
      const extra = l.kind === 'pang-pub' ? ` · ${l.framesOut} frames · ${drops} dropped · buffer ${fmtBytes(l.bufferedBytes)}` : l.kind === 'whip' ? ` · ${l.sessions} sessions` : l.kind === 'pang-pull' ? ` · ${l.framesIn} in` : '';
      return `<li><div class="link-top"><span class="link-name">${esc(l.kind)} · ${esc(l.track ? named(l.track) : (l.tracks ?? []).map(named).join(', '))}</span>${linkBadge(l)}</div><div class="link-target">${esc(l.target)}</div><div class="meta">${l.reconnects} reconnects${extra}</div>${err}</li>`;
    })
    .join('');
}

// ---------------------------------------------------------------------------------------------
// Uplink (issue 8): budget, per-track mode and encoder cap, backfill, gap bars

function renderUplink(egress) {
  const up = egress?.uplink;
  const pubs = egress?.upstream ?? [];
  state.upTracks = pubs.map((p) => p.track);
  if (up) {
    const budget = up.bytesPerSec != null ? fmtRate(up.bytesPerSec * 8) : 'not measured';
    const sched = up.scheduler;
    const left = sched?.backfillLeftoverBytesPerSec != null ? ` · backfill gets ${fmtRate(sched.backfillLeftoverBytesPerSec * 8)}` : '';
    $('uplink-budget').textContent = `budget ${budget}${up.confident ? ' (measured)' : ' (lower bound)'} · carried ${fmtRate((up.carriedBytesPerSec ?? 0) * 8)}${sched ? '' : ' · priority off'}${left}`;
  }
  const body = $('uplink');
  if (pubs.length === 0) {
    body.innerHTML = '<tr><td colspan="6" class="empty">No upstream configured</td></tr>';
    return;
  }
  const bf = new Map((up?.backfill?.tracks ?? []).map((b) => [b.track, b]));
  body.innerHTML = pubs
    .map((p) => {
      const pr = p.priority ?? {};
      const cap = pr.encodingCap?.bytesPerSec;
      const b = bf.get(p.track);
      const bfText = b ? `${b.link.confirmed} sent${b.link.queued ? ` · ${b.link.queued} queued` : ''}` : '–';
      return `<tr><td class="mono" title="${esc(p.track)}">${esc(named(p.track))}</td><td class="num">${pr.priority ?? '–'}</td><td class="mode-${esc(pr.mode)}">${esc(pr.mode ?? '–')}${pr.waitingForKeyframe ? ' ⏳' : ''}</td><td class="num hide-phone">${fmtRate((pr.demandBytesPerSec ?? 0) * 8)}</td><td class="num hide-phone">${cap != null ? fmtRate(cap * 8) : pr.encodingCap?.unsupported ? 'n/a' : '–'}</td><td class="num">${esc(bfText)}</td></tr>`;
    })
    .join('');
}

async function refreshGaps() {
  const box = $('gaps');
  const tracks = [...new Set(state.upTracks ?? [])];
  if (tracks.length === 0) {
    box.innerHTML = '<p class="empty">No upstream tracks</p>';
    return;
  }
  const to = Date.now();
  const from = to - 600_000;
  const rows = await Promise.all(
    tracks.map(async (t) => {
      try {
        const r = await getJson(`/api/gaps?track=${encodeURIComponent(t)}&from=${from}&to=${to}`);
        const pos = (x) => `left:${(((Math.max(x.from, from) - from) / (to - from)) * 100).toFixed(2)}%;width:${(((Math.min(x.to, to) - Math.max(x.from, from)) / (to - from)) * 100).toFixed(2)}%`;
        const seg = (list, cls) => (list ?? []).map((x) => `<span class="${cls}" style="${pos(x)}"></span>`).join('');
        const missing = r.missing ?? [];
        // The report's own totals (merged spans), never a sum of the drawn spans (they overlap when
        // the in-memory log and the index both hold a stretch), and never more than the window.
        const secs = (ms) => Math.round(Math.min(ms ?? 0, to - from) / 1000);
        const note = `${secs(r.liveMs)} s live · ${secs(r.backfilledMs)} s backfilled · ${r.missingMs != null ? `${secs(r.missingMs)} s missing` : 'no recordings'}`;
        return `<div class="gap-row" data-track="${esc(t)}" data-live-s="${secs(r.liveMs)}"><span class="mono link-name" title="${esc(t)}">${esc(named(t))}</span><div class="gap-bar" role="img" aria-label="${esc(note)}">${seg(missing, 'g-miss')}${seg(r.backfilled, 'g-back')}${seg(r.live, 'g-live')}</div><span class="meta">${esc(note)}</span></div>`;
      } catch {
        return `<div class="gap-row"><span class="mono link-name">${esc(named(t))}</span><div class="gap-bar"></div><span class="meta">gap report unavailable</span></div>`;
      }
    }),
  );
  box.innerHTML = rows.join('');
}

async function refresh() {
  let stats;
  try {
    stats = await getJson('/api/stats');
  } catch (e) {
    try {
      stats = await getJson('/api/egress/overview');
    } catch {
      $('health').textContent = 'offline';
      $('health').dataset.state = 'down';
      return;
    }
  }
  const tracks = collectTracks(stats);
  state.tracks = tracks;
  renderTracks(tracks);
  renderSelect(tracks);
  renderLinks(stats.egress);
  renderUplink(stats.egress);
  const drivers = stats.drivers ?? [];
  const bad = drivers.filter((d) => d.state !== 'running' && d.state !== 'starting').length;
  const h = stats.health; // 'ok' | 'degraded' | 'down' over every component (GET /healthz has the list)
  $('health').textContent = h === 'down' ? 'down' : bad ? `${bad} driver${bad > 1 ? 's' : ''} down` : h === 'degraded' ? 'degraded' : 'healthy';
  $('health').dataset.state = h === 'down' ? 'down' : bad || h === 'degraded' ? 'degraded' : 'ok';
  if (stats.uptimeS != null) {
    state.uptimeS = stats.uptimeS;
    $('uptime').textContent = `up ${fmtAge(stats.uptimeS)}`;
    $('uptime').dataset.s = stats.uptimeS;
  }
  const mem = stats.engine?.memory;
  if (mem) $('mem').textContent = `buffers ${fmtBytes(mem.used ?? mem.usedBytes ?? 0)} / ${fmtBytes(mem.ceiling ?? mem.ceilingBytes ?? 0)}`;
  $('updated').textContent = `updated ${new Date().toLocaleTimeString()}`;
}

// ---------------------------------------------------------------------------------------------
// Sensors, PTZ, recordings

/** {accel:{x,y}} → [['accel.x', …], ['accel.y', …]] (one level deep; arrays stay whole). */
function flatten(v) {
  const out = [];
  for (const [k, x] of Object.entries(v)) {
    if (x && typeof x === 'object' && !Array.isArray(x)) for (const [k2, y] of Object.entries(x)) out.push([`${k}.${k2}`, y]);
    else out.push([k, x]);
  }
  return out;
}

async function refreshSensors() {
  try {
    const { tracks } = await getJson('/api/sensors/latest');
    const box = $('sensors');
    if (!tracks.length) {
      box.innerHTML = '<p class="empty">No sensor tracks</p>';
      return;
    }
    box.innerHTML = tracks
      .map((s) => {
        const v = s.value;
        const rows = v && typeof v === 'object' && !Array.isArray(v)
          ? flatten(v).slice(0, 16).map(([k, x]) => `<dt>${esc(k)}</dt><dd>${esc(typeof x === 'number' ? +x.toFixed(6) : typeof x === 'object' ? JSON.stringify(x) : x)}</dd>`).join('')
          : `<dt>value</dt><dd>${esc(typeof v === 'string' ? v : JSON.stringify(v))}</dd>`;
        const age = s.ageMs != null ? ` · ${(s.ageMs / 1000).toFixed(1)} s ago` : '';
        return `<div class="sensor"><h3 class="mono" title="${esc(s.path)}">${esc(named(s.path))}${age}</h3><dl>${rows}</dl></div>`;
      })
      .join('');
  } catch {
    $('sensors').innerHTML = '<p class="empty">Sensor API not available</p>';
  }
}

async function refreshPtz() {
  const box = $('ptz');
  try {
    const { cameras } = await getJson('/ptz/cameras');
    if (!cameras?.length) {
      box.innerHTML = '<p class="empty">No PTZ heads configured</p>';
      return;
    }
    const ids = cameras.map((c) => c.id).join('|');
    const showLinks = () => cameras.forEach((c) => showLink(box.querySelector(`.ptz[data-cam="${CSS.escape(c.id)}"]`), c.link));
    if (box.dataset.ids === ids) return showLinks(); // keep the pad (and a held button) across refreshes
    box.dataset.ids = ids;
    box.innerHTML = cameras
      .map(
        (c) => `<div class="ptz" data-cam="${esc(c.id)}"><div class="ptz-head"><span class="mono">${esc(c.id)}</span><span class="meta">${esc(c.kind)}</span><span class="badge link-badge"></span></div>
        <div class="pad">
          <button class="btn" data-v="0,1,0" aria-label="tilt up">▲</button>
          <button class="btn" data-v="-1,0,0" aria-label="pan left">◀</button>
          <button class="btn stop" data-stop aria-label="stop">■</button>
          <button class="btn" data-v="1,0,0" aria-label="pan right">▶</button>
          <button class="btn" data-v="0,-1,0" aria-label="tilt down">▼</button>
          <button class="btn" data-v="0,0,1" aria-label="zoom in">+</button>
          <button class="btn" data-v="0,0,-1" aria-label="zoom out">−</button>
        </div><p class="meta ptz-msg"></p><button class="btn auth-reset" type="button" hidden>Reset credential lock-out</button></div>`,
      )
      .join('');
    box.querySelectorAll('.ptz').forEach(wirePad);
    showLinks();
  } catch (e) {
    box.dataset.ids = '';
    box.innerHTML = `<p class="empty">${e.status === 404 ? 'PTZ API not enabled' : e.status === 401 || e.status === 429 ? 'PTZ needs the access token' : 'PTZ unavailable'}</p>`;
  }
}

/** The head's link on its pad: up, down (with why: a pulled cable, an unreachable camera), locked credentials. */
function showLink(el, link) {
  if (!el || !link) return;
  const b = el.querySelector('.link-badge');
  const locked = link.auth === 'locked';
  b.className = `badge link-badge ${link.up && !locked ? 'ok' : 'bad'}`;
  b.textContent = !link.up ? 'link down' : locked ? 'login locked' : 'link up';
  b.title = link.reason ?? (locked ? `credentials refused; locked for ${Math.ceil((link.authLockedForMs ?? 0) / 1000)} s` : '');
  el.classList.toggle('down', !link.up || locked);
  el.querySelector('.auth-reset').hidden = !locked;
  const msg = el.querySelector('.ptz-msg');
  if (!link.up) {
    msg.textContent = link.reason ?? 'unreachable';
    msg.dataset.link = 'down';
  } else if (msg.dataset.link === 'down') {
    msg.textContent = '';
    delete msg.dataset.link;
  }
}

// Hold to move: the command is re-sent every 250 ms with a 600 ms lease, so a lost release
// (tab closed, network cut) still stops the head at the server's dead-man deadline.
function wirePad(el) {
  const cam = encodeURIComponent(el.dataset.cam);
  const msg = el.querySelector('.ptz-msg');
  let timer = null;
  // Each refresh carries its send time: one held up in the network is refused, never executed.
  const send = (v) =>
    api(`/ptz/${cam}/move`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pan: v[0] * 0.5, tilt: v[1] * 0.5, zoom: v[2] * 0.5, lease_ms: 600, ts: Date.now() }) })
      .then(async (r) => {
        const j = r.ok ? {} : await r.json().catch(() => ({}));
        if (j.error?.code === 'LINK_DOWN') return showLink(el, { up: false, reason: j.error.message });
        msg.textContent = r.ok ? '' : (j.error?.message ?? `error ${r.status}`);
      })
      .catch(() => (msg.textContent = 'offline'));
  const stop = () => {
    if (timer) clearInterval(timer);
    timer = null;
    api(`/ptz/${cam}/stop`, { method: 'POST' }).catch(() => {});
  };
  el.querySelector('.auth-reset').addEventListener('click', () =>
    api(`/ptz/${cam}/auth/reset`, { method: 'POST' }).then(() => {
      msg.textContent = 'Lock-out reset: two login attempts allowed';
      refreshPtz();
    }),
  );
  el.querySelectorAll('[data-v]').forEach((b) => {
    const v = b.dataset.v.split(',').map(Number);
    b.addEventListener('pointerdown', (e) => {
      e.preventDefault();
      b.setPointerCapture?.(e.pointerId);
      send(v);
      if (timer) clearInterval(timer);
      timer = setInterval(() => send(v), 250);
    });
    for (const ev of ['pointerup', 'pointercancel', 'lostpointercapture']) b.addEventListener(ev, () => timer && stop());
  });
  el.querySelector('[data-stop]').addEventListener('click', stop);
}

/** Disk space and losses of the recordings (issue 15): shown only when there is something to say. */
async function recordingSpaceNote() {
  let st;
  try {
    st = await getJson('/api/recordings/stats');
  } catch {
    return '';
  }
  const notes = [];
  const sp = st.space;
  const paused = (st.tracks ?? []).filter((t) => t.diskFull);
  if (paused.length) {
    const why = paused.some((t) => t.pausedBy === 'floor') ? 'free space under the floor, nothing left to delete' : 'disk full';
    notes.push(`<span class="badge warn">paused</span> ${esc(why)}${sp ? ` · ${fmtBytes(sp.freeBytes)} free, resumes at ${fmtBytes(sp.resumeBytes)}` : ''}`);
  }
  const lost = Object.entries(st.lost ?? {}).filter(([, n]) => n > 0);
  if (lost.length) notes.push(`lost ${lost.map(([k, n]) => `${n} (${esc(k)})`).join(', ')} frames`);
  const un = st.retention?.unsyncedLost ?? 0;
  if (un > 0) notes.push(`${un} unsynced segment(s) deleted for space`);
  return notes.length ? `<p class="meta">${notes.join('<br>')}</p>` : '';
}

async function refreshRecordings() {
  const box = $('recordings');
  try {
    // newest first: the index lists oldest first unless asked (limit=6 alone showed the oldest six forever)
    const r = await getJson('/api/recordings?limit=6&order=desc');
    const list = r.segments ?? [];
    const rows = list
      .map((s) => `<li data-id="${esc(s.id)}" data-start-ms="${esc(s.startMs)}"><div class="link-top"><span class="link-name mono" title="${esc(`${s.channel}/${s.source}/${s.track}`)}">${esc(named(`${s.channel}/${s.source}/${s.track}`))}</span><span class="badge ${s.state === 'synced' ? 'ok' : s.state === 'quarantined' || s.state === 'missing' ? 'bad' : 'warn'}">${esc(s.state)}</span></div><div class="meta">${esc(new Date(s.startMs).toLocaleString())} · ${Math.round((s.durationMs ?? 0) / 1000)} s · ${fmtBytes(s.bytes ?? 0)}</div></li>`)
      .join('');
    box.innerHTML = `${await recordingSpaceNote()}${rows ? `<ul class="links">${rows}</ul>` : '<p class="empty">No recordings yet</p>'}<p><a class="btn" href="/recordings">Open recordings →</a></p>`;
  } catch (e) {
    box.innerHTML = `<p class="empty">${e.status === 404 ? 'Recording API not enabled' : 'Recordings unavailable'}</p>`;
  }
}

// ---------------------------------------------------------------------------------------------
// WHEP player

async function stop() {
  const { pc, session } = state;
  state.pc = null;
  state.session = null;
  state.playing = null;
  if (pc) pc.close();
  if (session) fetch(session, { method: 'DELETE', keepalive: true, headers: authHeaders() }).catch(() => {});
  $('video').srcObject = null;
  $('video-overlay').classList.remove('hidden');
  $('v-state').textContent = 'idle';
  $('play').textContent = 'Play';
}

async function play(path) {
  await stop();
  if (!path) return;
  state.playing = path;
  $('play').textContent = 'Stop';
  $('v-state').textContent = 'connecting';
  $('video-overlay').textContent = 'Connecting…';
  const pc = new RTCPeerConnection();
  state.pc = pc;
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.ontrack = (ev) => {
    const v = $('video');
    v.srcObject = ev.streams[0] ?? new MediaStream([ev.track]);
    v.play().catch(() => {});
  };
  pc.onconnectionstatechange = () => {
    $('v-state').textContent = pc.connectionState;
    if (pc.connectionState === 'failed') {
      $('video-overlay').textContent = 'Connection failed — retrying';
      setTimeout(() => state.pc === pc && play(path), 2000);
    }
  };
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === 'complete') return resolve();
      const t = setTimeout(resolve, 2000);
      pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && (clearTimeout(t), resolve()));
    });
    const r = await api(`/whep/${path.split('/').map(encodeURIComponent).join('/')}`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: pc.localDescription.sdp });
    if (r.status !== 201) {
      const j = await r.json().catch(() => ({}));
      throw new Error(j.error?.message ?? `WHEP ${r.status}`);
    }
    state.session = new URL(r.headers.get('location'), location.href).toString();
    await pc.setRemoteDescription({ type: 'answer', sdp: await r.text() });
    $('video-overlay').classList.add('hidden');
  } catch (e) {
    $('video-overlay').textContent = `Cannot play: ${e.message}`;
    $('v-state').textContent = 'error';
  }
}

async function viewerStats() {
  const pc = state.pc;
  if (!pc) return;
  const s = await pc.getStats();
  s.forEach((r) => {
    if (r.type !== 'inbound-rtp' || r.kind !== 'video') return;
    $('v-frames').textContent = r.framesDecoded ?? 0;
    if (r.frameWidth) $('v-res').textContent = `${r.frameWidth}×${r.frameHeight}${r.framesPerSecond ? ` @ ${Math.round(r.framesPerSecond)}` : ''}`;
    const now = performance.now();
    if (state.lastAt && r.bytesReceived >= state.lastBytes) $('v-rate').textContent = fmtRate(((r.bytesReceived - state.lastBytes) * 8000) / (now - state.lastAt));
    state.lastBytes = r.bytesReceived;
    state.lastAt = now;
  });
}

$('play').addEventListener('click', () => (state.playing ? stop() : play($('track-select').value)));
$('track-select').addEventListener('change', (e) => state.playing && play(e.target.value));
$('shot').addEventListener('click', () => {
  const p = $('track-select').value;
  if (p) window.open(withToken(`/api/shot/${p.split('/').map(encodeURIComponent).join('/')}.jpg`), '_blank');
});
window.addEventListener('pagehide', () => state.session && fetch(state.session, { method: 'DELETE', keepalive: true, headers: authHeaders() }));
$('host').textContent = location.host;

refresh();
refreshSensors();
refreshPtz();
refreshRecordings();
setInterval(refresh, 1000);
setInterval(refreshSensors, 1000);
setInterval(viewerStats, 1000);
setInterval(refreshRecordings, 15000);
setInterval(refreshPtz, 2000); // each head's link state on its pad
setTimeout(refreshGaps, 1500);
setInterval(refreshGaps, 5000);

// ---------------------------------------------------------------------------------------------
// Timeline of recordings (issue 21): per track, recorded / synced / missing / delivered-upstream
// spans over a zoomable window; click plays the recording from that moment over HLS (hls.js from
// /dashboard/vendor), the sensor values of the playing moment show beside the video (one clock:
// PROGRAM-DATE-TIME is capture time + the run's offset, as the sensor records); a dragged range
// exports as MP4 (that track) or MCAP (every track).
const tl = { to: Date.now(), span: 86_400_000, tracks: [], hls: null, playing: null, sel: null, lastValuesAt: 0, follow: true };
window.mothEdgeTimeline = tl;

const tlPath = (t) => `${t.channel}/${t.source}/${t.track}`;
const tlSeg = (t) => [t.channel, t.source, t.track].map(encodeURIComponent).join('/');

async function tlLoad() {
  const box = $('timeline');
  if (tl.follow) tl.to = Date.now();
  const from = tl.to - tl.span;
  let tracks;
  try {
    tracks = (await getJson('/api/recordings/tracks?maxSpans=2000')).tracks ?? [];
  } catch (e) {
    box.innerHTML = `<p class="empty">${e.status === 404 ? 'Recording API not enabled' : 'Recordings unavailable'}</p>`;
    return;
  }
  tl.tracks = await Promise.all(
    tracks.map(async (t) => {
      const q = new URLSearchParams({ channel: t.channel, source: t.source, track: t.track, from: String(from), to: String(tl.to), limit: '1000' });
      const rows = await getJson(`/api/recordings?${q}`).then((r) => r.segments ?? [], () => []);
      const up = await getJson(`/api/gaps?track=${encodeURIComponent(tlPath(t))}&from=${from}&to=${tl.to}`).then((r) => [...(r.live ?? []), ...(r.backfilled ?? [])], () => []);
      return {
        ...t,
        rec: (t.spans ?? []).map((s) => ({ from: s.fromMs, to: s.toMs })),
        sync: rows.filter((r) => r.state === 'synced').map((r) => ({ from: r.startMs, to: r.endMs })),
        miss: rows.filter((r) => r.state === 'missing' || r.state === 'quarantined').map((r) => ({ from: r.startMs, to: r.endMs })),
        up,
      };
    }),
  );
  tlRender();
}

function tlRender() {
  const box = $('timeline');
  if (tl.tracks.length === 0) {
    box.innerHTML = '<p class="empty">No recordings yet</p>';
    return;
  }
  const from = tl.to - tl.span;
  const pos = (x) => {
    const a = Math.max(x.from, from);
    const b = Math.min(x.to, tl.to);
    return b < a ? null : `left:${(((a - from) / tl.span) * 100).toFixed(3)}%;width:${Math.max(0.15, ((b - a) / tl.span) * 100).toFixed(3)}%`;
  };
  const spans = (list, cls) => list.map((x) => pos(x)).filter(Boolean).map((p) => `<span class="${cls}" style="${p}"></span>`).join('');
  const fmt = (ms) => new Date(ms).toLocaleString([], tl.span > 86_400_000 ? { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' } : { hour: '2-digit', minute: '2-digit', second: tl.span < 600_000 ? '2-digit' : undefined });
  const rows = tl.tracks
    .map((t, i) => {
      const sel = tl.sel ? `<span class="tl-selbox" style="${pos(tl.sel)}"></span>` : '';
      const cur = tl.playing && tl.playing.path === tlPath(t) && tl.playing.atMs ? `<span class="tl-cursor" style="${pos({ from: tl.playing.atMs, to: tl.playing.atMs })}"></span>` : '';
      return `<div class="tl-row"><span class="mono link-name" title="${esc(t.mime)}">${esc(tlPath(t))}</span><div class="tl-bar" data-i="${i}" data-kind="${esc(t.kind)}">${spans(t.rec, 'tl-rec')}${spans(t.sync, 'tl-sync')}${spans(t.miss, 'tl-miss')}${spans(t.up, 'tl-up')}${sel}${cur}</div></div>`;
    })
    .join('');
  box.innerHTML = `${rows}<div class="tl-axis"><span>${esc(fmt(from))}</span><span>${esc(fmt(from + tl.span / 2))}</span><span>${esc(fmt(tl.to))}</span></div>`;
}

function tlTimeAt(bar, clientX) {
  const r = bar.getBoundingClientRect();
  return tl.to - tl.span + ((clientX - r.left) / r.width) * tl.span;
}

/** Zoom around a moment (the wheel's), or keep the right edge (buttons; "now" while following). */
function tlZoom(factor, centerMs) {
  const span = Math.min(7 * 86_400_000, Math.max(60_000, tl.span * factor));
  if (centerMs !== undefined) {
    const f = (centerMs - (tl.to - tl.span)) / tl.span;
    tl.to = Math.min(Date.now(), centerMs + (1 - f) * span);
  }
  tl.span = span;
  tl.follow = tl.to >= Date.now() - 1000;
  tlLoad();
}

async function tlHlsJs() {
  if (window.Hls) return window.Hls;
  await new Promise((resolve, reject) => {
    const s = document.createElement('script');
    s.src = '/dashboard/vendor/hls.min.js';
    s.onload = resolve;
    s.onerror = () => reject(new Error('hls.js not served'));
    document.head.appendChild(s);
  });
  return window.Hls;
}

/** Play a recorded track from `atMs` (an hour of it; the video's own controls scrub within). */
async function tlPlay(t, atMs) {
  const video = $('tl-video');
  const toMs = Math.min(atMs + 3_600_000, t.lastMs ?? Date.now());
  const url = `/hls/recordings/${tlSeg(t)}/index.m3u8?from=${Math.floor(atMs)}&to=${Math.ceil(Math.max(toMs, atMs + 1000))}`;
  tl.playing = { path: tlPath(t), atMs, url, startMs: atMs };
  $('tl-overlay').textContent = 'Loading…';
  $('tl-overlay').classList.remove('hidden');
  if (tl.hls) tl.hls.destroy();
  tl.hls = null;
  try {
    const Hls = await tlHlsJs();
    if (Hls && Hls.isSupported()) {
      const hls = new Hls({ enableWorker: true, lowLatencyMode: false, backBufferLength: 30 });
      tl.hls = hls;
      hls.on(Hls.Events.ERROR, (_e, d) => {
        if (d.fatal) $('tl-overlay').textContent = `Cannot play: ${d.details}`;
      });
      hls.loadSource(url);
      hls.attachMedia(video);
    } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
      video.src = url; // Safari plays HLS itself
    } else throw new Error('this browser has no Media Source Extensions');
    await video.play().catch(() => {});
    $('tl-overlay').classList.add('hidden');
  } catch (e) {
    $('tl-overlay').textContent = `Cannot play: ${e.message}`;
  }
  tlRender();
}

/** The capture-clock time of what the video shows: PROGRAM-DATE-TIME of the fragment + offset into it. */
function tlPlayingMs() {
  const v = $('tl-video');
  const d = tl.hls?.playingDate;
  if (d instanceof Date && !Number.isNaN(d.getTime())) return d.getTime();
  return tl.playing ? tl.playing.startMs + v.currentTime * 1000 : null;
}

async function tlValues() {
  const at = tlPlayingMs();
  if (at === null || !tl.playing) return;
  tl.playing.atMs = at;
  $('tl-at').textContent = `${new Date(at).toLocaleString()}.${String(Math.floor(at % 1000)).padStart(3, '0')}`;
  if (Math.abs(at - tl.lastValuesAt) < 200) return;
  tl.lastValuesAt = at;
  try {
    const { tracks } = await getJson(`/api/recordings/values?at=${Math.round(at)}`);
    $('tl-values').innerHTML = tracks.length
      ? tracks
          .map((s) => {
            const v = s.value;
            const rows = v && typeof v === 'object' && !Array.isArray(v) ? flatten(v).slice(0, 12).map(([k, x]) => `<dt>${esc(k)}</dt><dd>${esc(typeof x === 'number' ? +x.toFixed(6) : typeof x === 'object' ? JSON.stringify(x) : x)}</dd>`).join('') : `<dt>value</dt><dd>${esc(typeof v === 'string' ? v : JSON.stringify(v))}</dd>`;
            return `<div class="sensor" data-path="${esc(s.path)}" data-at="${s.atMs}"><h3 class="mono">${esc(s.path)} · ${(s.ageMs / 1000).toFixed(2)} s before</h3><dl>${rows}</dl></div>`;
          })
          .join('')
      : '<p class="empty">No sensor values recorded at this moment</p>';
  } catch {
    $('tl-values').innerHTML = '<p class="empty">Sensor values unavailable</p>';
  }
}

function tlSelect(a, b, t) {
  const from = Math.floor(Math.min(a, b));
  const to = Math.ceil(Math.max(a, b));
  tl.sel = { from, to, path: tlPath(t) };
  const q = (extra) => new URLSearchParams({ from: String(from), to: String(to), ...extra }).toString();
  $('tl-sel').textContent = `${new Date(from).toLocaleString()} → ${new Date(to).toLocaleTimeString()} (${Math.round((to - from) / 1000)} s)`;
  $('tl-mp4').href = `/api/recordings/export?${q({ format: 'mp4', channel: t.channel, source: t.source, track: t.track })}`;
  $('tl-mp4').hidden = t.kind !== 'video';
  $('tl-mcap').href = `/api/recordings/export?${q({ format: 'mcap' })}`;
  $('tl-export').hidden = false;
  tlRender();
}

(() => {
  const box = $('timeline');
  let down = null;
  box.addEventListener('pointerdown', (e) => {
    const bar = e.target.closest?.('.tl-bar');
    if (!bar) return;
    down = { bar, x: e.clientX, t: tlTimeAt(bar, e.clientX) };
  });
  window.addEventListener('pointerup', (e) => {
    if (!down) return;
    const { bar, x, t } = down;
    down = null;
    const track = tl.tracks[Number(bar.dataset.i)];
    if (!track) return;
    if (Math.abs(e.clientX - x) > 5) return tlSelect(t, tlTimeAt(bar, e.clientX), track);
    if (track.kind === 'video') tlPlay(track, t);
  });
  box.addEventListener('wheel', (e) => {
    const bar = e.target.closest?.('.tl-bar');
    if (!bar) return;
    e.preventDefault();
    tlZoom(e.deltaY > 0 ? 1.5 : 1 / 1.5, tlTimeAt(bar, e.clientX));
  }, { passive: false });
  $('tl-in').addEventListener('click', () => tlZoom(1 / 2));
  $('tl-out').addEventListener('click', () => tlZoom(2));
  $('tl-range').addEventListener('change', (e) => {
    tl.span = Number(e.target.value);
    tl.follow = true;
    tlLoad();
  });
  $('tl-video').addEventListener('timeupdate', () => {
    tlValues();
  });
  tlLoad();
  setInterval(() => tl.follow && tlLoad(), 30_000);
  setInterval(() => tl.playing && tlRender(), 1000);
})();
