// A bare page playing a live HLS playlist with the hls.js the runtime serves, recording per shown
// frame now − its capture time (PROGRAM-DATE-TIME is capture µs + the run's offset, so hls.js's
// playingDate is the capture time of the frame on screen). Shared by the Chromium test and the bench.
import type { Page } from 'playwright-core';

export async function playLiveHls(page: Page, base: string, playlist: string): Promise<void> {
  await page.goto(`${base}/healthz`);
  await page.addScriptTag({ url: '/dashboard/vendor/hls.min.js' });
  await page.evaluate((src) => {
    const w = window as unknown as { Hls: any; hls: any; lat: number[] };
    const v = document.createElement('video');
    v.muted = true;
    v.autoplay = true;
    document.body.appendChild(v);
    const hls = new w.Hls({ lowLatencyMode: true });
    w.hls = hls;
    w.lat = [];
    hls.loadSource(src);
    hls.attachMedia(v);
    v.play().catch(() => {});
    const tick = () => {
      const d = hls.playingDate as Date | null;
      if (d && !v.paused && v.readyState >= 2 && w.lat.length < 100_000) w.lat.push(Date.now() - d.getTime());
      (v as any).requestVideoFrameCallback(tick);
    };
    (v as any).requestVideoFrameCallback(tick);
  }, playlist);
}

/** The last `n` latency samples (ms), sorted. */
export async function latencies(page: Page, n: number): Promise<number[]> {
  return (await page.evaluate((k) => (window as unknown as { lat: number[] }).lat.slice(-k), n)).sort((a, b) => a - b);
}
