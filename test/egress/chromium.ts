// Headless Chromium (Debian's) through playwright-core, with the flags the field notes require.
import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

export function chromiumMissing(): string | null {
  return existsSync(CHROMIUM) ? null : `${CHROMIUM} not installed (apt-get install chromium)`;
}

/** `extraArgs`: e.g. `--ignore-certificate-errors-spki-list=<hash>` to trust one server key. */
export async function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-features=WebRtcHideLocalIpsWithMdns', '--autoplay-policy=no-user-gesture-required', ...extraArgs],
  });
}

/**
 * In `page`: draw a changing 640×360 canvas at 30 fps and publish it over WHIP to `url` (H.264
 * with packetization-mode 1, 42e01f first). The session URL is kept in `window.loc`, the peer
 * connection in `window.pc`.
 */
export function publishCanvasOverWhip(page: Page, url: string, headers: Record<string, string> = {}): Promise<{ status: number; error: string }> {
  return page.evaluate(
    async ({ url, headers }) => {
      const c = document.getElementById('c') as HTMLCanvasElement;
      const g = c.getContext('2d')!;
      let n = 0;
      setInterval(() => {
        g.fillStyle = `hsl(${(n * 7) % 360} 80% 50%)`;
        g.fillRect(0, 0, 640, 360);
        g.fillStyle = '#fff';
        g.font = '48px sans-serif';
        g.fillText(`frame ${n++}`, 40, 120);
      }, 33);
      const pc = new RTCPeerConnection();
      (window as unknown as { pc: RTCPeerConnection }).pc = pc;
      const tr = pc.addTransceiver(c.captureStream(30).getVideoTracks()[0]!, { direction: 'sendonly' });
      const h264 = RTCRtpSender.getCapabilities('video')!
        .codecs.filter((x) => /h264/i.test(x.mimeType) && /packetization-mode=1/.test(x.sdpFmtpLine ?? ''))
        .sort((a, b) => Number(/42e01f/.test(b.sdpFmtpLine ?? '')) - Number(/42e01f/.test(a.sdpFmtpLine ?? '')));
      if (h264.length === 0) return { status: 0, error: 'no H.264 encoder in this Chromium' };
      tr.setCodecPreferences(h264);
      await pc.setLocalDescription(await pc.createOffer());
      await new Promise<void>((r) => {
        const to = setTimeout(r, 3000);
        pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && (clearTimeout(to), r()));
      });
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/sdp', ...headers }, body: pc.localDescription!.sdp });
      if (res.status !== 201) return { status: res.status, error: await res.text() };
      (window as unknown as { loc: string }).loc = res.headers.get('location')!;
      await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
      return { status: 201, error: '' };
    },
    { url, headers },
  );
}

/** A page with the 640×360 canvas publishCanvasOverWhip draws on. */
export const CANVAS_PAGE = '<html><body><canvas id="c" width="640" height="360"></canvas></body></html>';
