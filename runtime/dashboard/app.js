// moth-edge dashboard: plain ES module, no build step. Polls /api/stats once a second, plays a
// video track over WHEP, shows upstream link state, sensor values, PTZ and recordings.
const $ = (id) => document.getElementById(id);
const state = { pc: null, session: null, playing: null, lastBytes: 0, lastAt: 0, tracks: [] };
window.mothEdge = { get pc() { return state.pc; }, state };

const fmtRate = (bps) => (bps >= 1e6 ? `${(bps / 1e6).toFixed(2)} Mbit/s` : bps >= 1e3 ? `${(bps / 1e3).toFixed(0)} kbit/s` : `${Math.round(bps || 0)} bit/s`);
const fmtBytes = (b) => (b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(1)} MB` : `${Math.round(b / 1024)} KB`);
const fmtAge = (s) => (s >= 86400 ? `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h` : s >= 3600 ? `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m` : s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`);
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
const sum = (o) => Object.values(o || {}).reduce((a, b) => a + (typeof b === 'number' ? b : 0), 0);

async function getJson(url) {
  const r = await fetch(url, { cache: 'no-store' });
  if (!r.ok) throw Object.assign(new Error(`${r.status}`), { status: r.status });
  return r.json();
}

// ---------------------------------------------------------------------------------------------
// Stats: tracks, links, health

function collectTracks(stats) {
  const out = [];
  for (const ch of stats?.engine?.channels ?? []) {
    for (const t of ch.tracks ?? []) out.push({ ...t, path: `${t.channel}/${t.source}/${t.track}`, channelName: ch.name });
  }
  return out;
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
      return `<tr><td class="mono">${esc(t.path)}</td><td class="hide-phone">${esc(type)}</td><td class="num">${(t.fps ?? 0).toFixed(1)}</td><td class="num">${fmtRate(t.bitrateBps)}</td><td class="num ${drops ? 'drops-bad' : ''}">${drops}</td><td class="num">${(t.consumers ?? []).length}</td></tr>`;
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
  sel.innerHTML = videos.length ? videos.map((t) => `<option value="${esc(t.path)}">${esc(t.path)}</option>`).join('') : '<option value="">No H.264 track</option>';
  if (videos.some((t) => t.path === cur)) sel.value = cur;
  $('play').disabled = videos.length === 0;
  if (!state.playing && videos.length) {
    const q = new URLSearchParams(location.search).get('track');
    const pick = videos.find((t) => t.path === q) ?? videos[0];
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
      const err = l.lastError ? `<div class="link-err">${esc(l.lastError.code)} · ${esc(l.lastError.message)}</div>` : '';
      const extra = l.kind === 'pang-pub' ? ` · ${l.framesOut} frames · ${drops} dropped · buffer ${fmtBytes(l.bufferedBytes)}` : l.kind === 'whip' ? ` · ${l.sessions} sessions` : l.kind === 'pang-pull' ? ` · ${l.framesIn} in` : '';
      return `<li><div class="link-top"><span class="link-name">${esc(l.kind)} · ${esc(l.track ?? (l.tracks ?? []).join(', '))}</span>${linkBadge(l)}</div><div class="link-target">${esc(l.target)}</div><div class="meta">${l.reconnects} reconnects${extra}</div>${err}</li>`;
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
      return `<tr><td class="mono">${esc(p.track)}</td><td class="num">${pr.priority ?? '–'}</td><td class="mode-${esc(pr.mode)}">${esc(pr.mode ?? '–')}${pr.waitingForKeyframe ? ' ⏳' : ''}</td><td class="num hide-phone">${fmtRate((pr.demandBytesPerSec ?? 0) * 8)}</td><td class="num hide-phone">${cap != null ? fmtRate(cap * 8) : pr.encodingCap?.unsupported ? 'n/a' : '–'}</td><td class="num">${esc(bfText)}</td></tr>`;
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
        const sum = (l) => (l ?? []).reduce((a, x) => a + (x.to - x.from), 0) / 1000;
        const note = `${sum(r.live).toFixed(0)} s live · ${sum(r.backfilled).toFixed(0)} s backfilled · ${r.missing ? `${sum(missing).toFixed(0)} s missing` : 'no recordings'}`;
        return `<div class="gap-row"><span class="mono link-name">${esc(t)}</span><div class="gap-bar" role="img" aria-label="${esc(note)}">${seg(missing, 'g-miss')}${seg(r.backfilled, 'g-back')}${seg(r.live, 'g-live')}</div><span class="meta">${esc(note)}</span></div>`;
      } catch {
        return `<div class="gap-row"><span class="mono link-name">${esc(t)}</span><div class="gap-bar"></div><span class="meta">gap report unavailable</span></div>`;
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
  $('health').textContent = bad ? `${bad} driver${bad > 1 ? 's' : ''} down` : 'healthy';
  $('health').dataset.state = bad ? 'degraded' : 'ok';
  if (stats.uptimeS != null) $('uptime').textContent = `up ${fmtAge(stats.uptimeS)}`;
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
        return `<div class="sensor"><h3 class="mono">${esc(s.path)}${age}</h3><dl>${rows}</dl></div>`;
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
    if (box.dataset.ids === ids) return; // keep the pad (and a held button) across refreshes
    box.dataset.ids = ids;
    box.innerHTML = cameras
      .map(
        (c) => `<div class="ptz" data-cam="${esc(c.id)}"><div class="ptz-head"><span class="mono">${esc(c.id)}</span><span class="meta">${esc(c.kind)}</span></div>
        <div class="pad">
          <button class="btn" data-v="0,1,0" aria-label="tilt up">▲</button>
          <button class="btn" data-v="-1,0,0" aria-label="pan left">◀</button>
          <button class="btn stop" data-stop aria-label="stop">■</button>
          <button class="btn" data-v="1,0,0" aria-label="pan right">▶</button>
          <button class="btn" data-v="0,-1,0" aria-label="tilt down">▼</button>
          <button class="btn" data-v="0,0,1" aria-label="zoom in">+</button>
          <button class="btn" data-v="0,0,-1" aria-label="zoom out">−</button>
        </div><p class="meta ptz-msg"></p></div>`,
      )
      .join('');
    box.querySelectorAll('.ptz').forEach(wirePad);
  } catch (e) {
    box.dataset.ids = '';
    box.innerHTML = `<p class="empty">${e.status === 404 ? 'PTZ API not enabled' : e.status === 401 ? 'PTZ needs a token (server bound beyond loopback)' : 'PTZ unavailable'}</p>`;
  }
}

// Hold to move: the command is re-sent every 250 ms with a 600 ms lease, so a lost release
// (tab closed, network cut) still stops the head at the server's dead-man deadline.
function wirePad(el) {
  const cam = encodeURIComponent(el.dataset.cam);
  const msg = el.querySelector('.ptz-msg');
  let timer = null;
  const send = (v) =>
    fetch(`/ptz/${cam}/move`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ pan: v[0] * 0.5, tilt: v[1] * 0.5, zoom: v[2] * 0.5, lease_ms: 600 }) })
      .then(async (r) => (msg.textContent = r.ok ? '' : ((await r.json().catch(() => ({}))).error?.message ?? `error ${r.status}`)))
      .catch(() => (msg.textContent = 'offline'));
  const stop = () => {
    if (timer) clearInterval(timer);
    timer = null;
    fetch(`/ptz/${cam}/stop`, { method: 'POST' }).catch(() => {});
  };
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
    const r = await getJson('/api/recordings?limit=6');
    const list = (r.segments ?? []).slice(-6).reverse();
    const rows = list
      .map((s) => `<li><div class="link-top"><span class="link-name mono">${esc(`${s.channel}/${s.source}/${s.track}`)}</span><span class="badge ${s.state === 'uploaded' || s.state === 'verified' ? 'ok' : 'warn'}">${esc(s.state)}</span></div><div class="meta">${esc(new Date(s.startMs).toLocaleString())} · ${Math.round((s.durationMs ?? 0) / 1000)} s · ${fmtBytes(s.bytes ?? 0)}</div></li>`)
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
  if (session) fetch(session, { method: 'DELETE', keepalive: true }).catch(() => {});
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
    const r = await fetch(`/whep/${path.split('/').map(encodeURIComponent).join('/')}`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: pc.localDescription.sdp });
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
  if (p) window.open(`/api/shot/${p.split('/').map(encodeURIComponent).join('/')}.jpg`, '_blank');
});
window.addEventListener('pagehide', () => state.session && fetch(state.session, { method: 'DELETE', keepalive: true }));
$('host').textContent = location.host;

refresh();
refreshSensors();
refreshPtz();
refreshRecordings();
setInterval(refresh, 1000);
setInterval(refreshSensors, 1000);
setInterval(viewerStats, 1000);
setInterval(refreshRecordings, 15000);
setTimeout(refreshGaps, 1500);
setInterval(refreshGaps, 5000);
