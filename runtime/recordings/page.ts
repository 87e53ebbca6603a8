// A minimal recordings page (served at /recordings); it only calls the JSON API: per track its
// continuous spans with a play button each (/api/recordings/tracks), then the newest segments
// (/api/recordings?order=desc) with play (video) or download (data) buttons.
export const RECORDINGS_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>moth-edge recordings</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:14px system-ui,sans-serif;margin:1rem}table{border-collapse:collapse;margin-bottom:1rem}td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}video{max-width:100%;display:block;margin:.5rem 0}</style>
</head><body>
<h1>Recordings</h1>
<video id="player" controls></video>
<h2>Tracks</h2>
<table><thead><tr><th>track</th><th>span</th><th>duration</th><th>segments</th><th></th></tr></thead><tbody id="spans"></tbody></table>
<h2>Newest segments</h2>
<table><thead><tr><th>track</th><th>start</th><th>duration</th><th>size</th><th>state</th><th></th></tr></thead><tbody id="rows"></tbody></table>
<script>
const player = document.getElementById('player');
// The dashboard's access token (issue 17), when this browser has one: a header on fetches, ?token= on media URLs.
const token = localStorage.getItem('moth-edge.token') || '';
const withToken = (u) => token ? u + (u.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token) : u;
const get = (u) => fetch(u, token ? { headers: { authorization: 'Bearer ' + token } } : {});
const play = (url) => { player.src = withToken(url); player.play(); };
const row = (tbody, cells, action) => {
  const tr = document.createElement('tr');
  for (const c of cells) { const td = document.createElement('td'); td.textContent = c; tr.appendChild(td); }
  const td = document.createElement('td');
  if (action) td.appendChild(action);
  tr.appendChild(td);
  tbody.appendChild(tr);
};
const button = (label, fn) => { const b = document.createElement('button'); b.textContent = label; b.onclick = fn; return b; };
const link = (label, href) => { const a = document.createElement('a'); a.textContent = label; a.href = withToken(href); return a; };
get('/api/recordings/tracks').then(r => r.json()).then(({ tracks }) => {
  const tbody = document.getElementById('spans');
  for (const t of tracks) {
    const name = t.channel + '/' + t.source + '/' + t.track + (t.recording ? ' (recording)' : '');
    for (const s of t.spans.slice().reverse()) {
      row(tbody, [name, s.from + ' → ' + s.to, (s.durationMs / 1000).toFixed(0) + ' s', String(s.segments)], s.playUrl ? button('play', () => play(s.playUrl)) : null);
    }
    if (t.spans.length === 0) row(tbody, [name, 'nothing local', '', String(t.segments)], null);
  }
});
get('/api/recordings?order=desc&limit=200').then(r => r.json()).then(({ segments }) => {
  const tbody = document.getElementById('rows');
  for (const s of segments) {
    const action = s.playUrl ? button('play', () => play(s.playUrl)) : s.url ? link('download', s.url) : null;
    row(tbody, [s.channel + '/' + s.source + '/' + s.track, s.start, (s.durationMs / 1000).toFixed(1) + ' s', (s.bytes / 1048576).toFixed(2) + ' MB', s.state], action);
  }
});
</script></body></html>
`;
