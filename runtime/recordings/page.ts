// A minimal recordings page (list + play buttons) served at /recordings; it only calls the JSON API.
export const RECORDINGS_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>moth-edge recordings</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:14px system-ui,sans-serif;margin:1rem}table{border-collapse:collapse}td,th{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left}video{max-width:100%;display:block;margin:.5rem 0}</style>
</head><body>
<h1>Recordings</h1>
<video id="player" controls></video>
<table><thead><tr><th>track</th><th>start</th><th>duration</th><th>size</th><th>state</th><th></th></tr></thead><tbody id="rows"></tbody></table>
<script>
const rows = document.getElementById('rows');
const player = document.getElementById('player');
fetch('/api/recordings?limit=500').then(r => r.json()).then(({ segments }) => {
  for (const s of segments.reverse()) {
    const tr = document.createElement('tr');
    const cells = [s.channel + '/' + s.source + '/' + s.track, s.start, (s.durationMs / 1000).toFixed(1) + ' s', (s.bytes / 1048576).toFixed(2) + ' MB', s.state];
    for (const c of cells) { const td = document.createElement('td'); td.textContent = c; tr.appendChild(td); }
    const td = document.createElement('td');
    if (s.url) {
      const a = document.createElement(s.kind === 'video' ? 'button' : 'a');
      a.textContent = s.kind === 'video' ? 'play' : 'download';
      if (s.kind === 'video') a.onclick = () => { player.src = s.url; player.play(); };
      else a.href = s.url;
      td.appendChild(a);
    }
    tr.appendChild(td);
    rows.appendChild(tr);
  }
});
</script></body></html>
`;
