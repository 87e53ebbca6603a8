// A simulated ONVIF Profile S *streaming* camera for the capture tests (the PTZ side has its own
// simulator in onvif-device.ts): SOAP 1.2 over HTTP with WS-UsernameToken PasswordDigest checked as
// a camera does (SHA-1 of nonce + created + password, a clock window, no nonce reuse), the services
// the `onvif` package walks on connect (GetSystemDateAndTime unauthenticated, GetServices
// unsupported → GetCapabilities, GetProfiles, GetVideoSources) and GetStreamUri; plus a
// WS-Discovery responder on UDP answering Probes with ProbeMatches.

import { createHash, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createSocket, type Socket } from 'node:dgram';

export interface SimProfile {
  token: string;
  name: string;
  width: number;
  height: number;
  fps: number;
  /** What GetStreamUri returns for this profile. */
  streamUri: string;
  ptz?: boolean;
}

export interface OnvifCameraSimOptions {
  username: string;
  password: string;
  profiles: SimProfile[];
  name?: string;
  hardware?: string;
  /** Device clock offset from ours in ms (cameras are often hours off). */
  clockOffsetMs?: number;
  /** Also listen on the WS-Discovery multicast group (on the loopback interface) at this port. */
  multicastPort?: number;
}

export interface OnvifCameraSim {
  port: number;
  discoveryPort: number;
  endpoint: string;
  requests: Array<{ op: string; authenticated: boolean }>;
  readonly authFailures: number;
  close(): Promise<void>;
}

const NS =
  'xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope" xmlns:tt="http://www.onvif.org/ver10/schema" ' +
  'xmlns:tds="http://www.onvif.org/ver10/device/wsdl" xmlns:trt="http://www.onvif.org/ver10/media/wsdl" ' +
  'xmlns:ter="http://www.onvif.org/ver10/error"';

function envelope(body: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?><SOAP-ENV:Envelope ${NS}><SOAP-ENV:Body>${body}</SOAP-ENV:Body></SOAP-ENV:Envelope>`;
}

function fault(code: string, sub: string, reason: string): string {
  return envelope(
    `<SOAP-ENV:Fault><SOAP-ENV:Code><SOAP-ENV:Value>SOAP-ENV:${code}</SOAP-ENV:Value><SOAP-ENV:Subcode><SOAP-ENV:Value>${sub}</SOAP-ENV:Value></SOAP-ENV:Subcode></SOAP-ENV:Code>` +
      `<SOAP-ENV:Reason><SOAP-ENV:Text xml:lang="en">${reason}</SOAP-ENV:Text></SOAP-ENV:Reason></SOAP-ENV:Fault>`,
  );
}

function tag(xml: string, name: string): string | undefined {
  const m = new RegExp(`<(?:[\\w-]+:)?${name}(?:\\s[^>]*)?>([^<]*)</(?:[\\w-]+:)?${name}>`).exec(xml);
  return m?.[1];
}

function bodyOp(xml: string): string {
  const m = /<(?:[\w-]+:)?Body[^>]*>\s*<(?:[\w-]+:)?(\w+)/.exec(xml);
  return m?.[1] ?? '';
}

export async function startOnvifCameraSim(o: OnvifCameraSimOptions): Promise<OnvifCameraSim> {
  const endpoint = `urn:uuid:${randomUUID()}`;
  const requests: OnvifCameraSim['requests'] = [];
  let authFailures = 0;
  const seenNonces = new Set<string>();
  let port = 0;

  const checkAuth = (xml: string): boolean => {
    const user = tag(xml, 'Username');
    const digest = tag(xml, 'Password');
    const nonce = tag(xml, 'Nonce');
    const created = tag(xml, 'Created');
    if (!user || !digest || !nonce || !created || user !== o.username) return false;
    const deviceNow = Date.now() + (o.clockOffsetMs ?? 0);
    if (Math.abs(Date.parse(created) - deviceNow) > 60_000) return false; // replay window on device time
    if (seenNonces.has(nonce)) return false;
    const expect = createHash('sha1').update(Buffer.concat([Buffer.from(nonce, 'base64'), Buffer.from(created), Buffer.from(o.password)])).digest('base64');
    if (expect !== digest) return false;
    if (seenNonces.size > 10_000) seenNonces.clear();
    seenNonces.add(nonce);
    return true;
  };

  const host = (): string => `127.0.0.1:${port}`;

  const profileXml = (p: SimProfile): string =>
    `<trt:Profiles token="${p.token}" fixed="true"><tt:Name>${p.name}</tt:Name>` +
    `<tt:VideoSourceConfiguration token="VideoSourceConfig_1"><tt:Name>VideoSourceConfig_1</tt:Name><tt:UseCount>${o.profiles.length}</tt:UseCount><tt:SourceToken>VideoSource_1</tt:SourceToken><tt:Bounds x="0" y="0" width="${p.width}" height="${p.height}"/></tt:VideoSourceConfiguration>` +
    `<tt:VideoEncoderConfiguration token="VideoEncoder_${p.token}"><tt:Name>VideoEncoder_${p.token}</tt:Name><tt:UseCount>1</tt:UseCount><tt:Encoding>H264</tt:Encoding>` +
    `<tt:Resolution><tt:Width>${p.width}</tt:Width><tt:Height>${p.height}</tt:Height></tt:Resolution><tt:Quality>5</tt:Quality>` +
    `<tt:RateControl><tt:FrameRateLimit>${p.fps}</tt:FrameRateLimit><tt:EncodingInterval>1</tt:EncodingInterval><tt:BitrateLimit>1024</tt:BitrateLimit></tt:RateControl>` +
    `<tt:H264><tt:GovLength>${p.fps}</tt:GovLength><tt:H264Profile>Baseline</tt:H264Profile></tt:H264><tt:SessionTimeout>PT60S</tt:SessionTimeout></tt:VideoEncoderConfiguration>` +
    (p.ptz ? `<tt:PTZConfiguration token="PTZConfig_1"><tt:Name>PTZConfig_1</tt:Name><tt:UseCount>1</tt:UseCount><tt:NodeToken>PTZNode_1</tt:NodeToken></tt:PTZConfiguration>` : '') +
    `</trt:Profiles>`;

  const handle = (xml: string): { status: number; body: string } => {
    const op = bodyOp(xml);
    if (op === 'GetSystemDateAndTime') {
      requests.push({ op, authenticated: false });
      const d = new Date(Date.now() + (o.clockOffsetMs ?? 0));
      return {
        status: 200,
        body: envelope(
          `<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime><tt:DateTimeType>NTP</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>` +
            `<tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone><tt:UTCDateTime><tt:Time><tt:Hour>${d.getUTCHours()}</tt:Hour><tt:Minute>${d.getUTCMinutes()}</tt:Minute><tt:Second>${d.getUTCSeconds()}</tt:Second></tt:Time>` +
            `<tt:Date><tt:Year>${d.getUTCFullYear()}</tt:Year><tt:Month>${d.getUTCMonth() + 1}</tt:Month><tt:Day>${d.getUTCDate()}</tt:Day></tt:Date></tt:UTCDateTime></tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>`,
        ),
      };
    }
    const ok = checkAuth(xml);
    requests.push({ op, authenticated: ok });
    if (!ok) {
      authFailures++;
      // ONVIF Core 5.9.1: a WS-Security failure is HTTP 400 with ter:NotAuthorized
      return { status: 400, body: fault('Sender', 'ter:NotAuthorized', 'Sender not Authorized') };
    }
    switch (op) {
      case 'GetServices':
        return { status: 400, body: fault('Receiver', 'ter:ActionNotSupported', 'Optional Action Not Implemented') };
      case 'GetCapabilities':
        return {
          status: 200,
          body: envelope(
            `<tds:GetCapabilitiesResponse><tds:Capabilities>` +
              `<tt:Device><tt:XAddr>http://${host()}/onvif/device_service</tt:XAddr></tt:Device>` +
              `<tt:Media><tt:XAddr>http://${host()}/onvif/media_service</tt:XAddr><tt:StreamingCapabilities><tt:RTPMulticast>false</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media>` +
              (o.profiles.some((p) => p.ptz) ? `<tt:PTZ><tt:XAddr>http://${host()}/onvif/ptz_service</tt:XAddr></tt:PTZ>` : '') +
              `</tds:Capabilities></tds:GetCapabilitiesResponse>`,
          ),
        };
      case 'GetVideoSources':
        return {
          status: 200,
          body: envelope(`<trt:GetVideoSourcesResponse><trt:VideoSources token="VideoSource_1"><tt:Framerate>25</tt:Framerate><tt:Resolution><tt:Width>${o.profiles[0]!.width}</tt:Width><tt:Height>${o.profiles[0]!.height}</tt:Height></tt:Resolution></trt:VideoSources></trt:GetVideoSourcesResponse>`),
        };
      case 'GetProfiles':
        return { status: 200, body: envelope(`<trt:GetProfilesResponse>${o.profiles.map(profileXml).join('')}</trt:GetProfilesResponse>`) };
      case 'GetStreamUri': {
        const token = tag(xml, 'ProfileToken');
        const p = o.profiles.find((x) => x.token === token);
        if (!p) return { status: 400, body: fault('Sender', 'ter:NoProfile', 'The requested profile token does not exist') };
        return {
          status: 200,
          body: envelope(`<trt:GetStreamUriResponse><trt:MediaUri><tt:Uri>${p.streamUri.replace(/&/g, '&amp;')}</tt:Uri><tt:InvalidAfterConnect>false</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:GetStreamUriResponse>`),
        };
      }
      default:
        return { status: 400, body: fault('Receiver', 'ter:ActionNotSupported', `${op} not supported`) };
    }
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 256 * 1024) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => {
      const r = handle(Buffer.concat(chunks).toString('utf8'));
      res.writeHead(r.status, { 'Content-Type': 'application/soap+xml; charset=utf-8' });
      res.end(r.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as { port: number }).port;

  // WS-Discovery: answer a Probe for NetworkVideoTransmitter (or an untyped one) by unicast to the sender
  const udp: Socket = createSocket({ type: 'udp4', reuseAddr: true });
  udp.on('error', () => {});
  const onProbe = (msg: Buffer, rinfo: { address: string; port: number }): void => {
    const xml = msg.toString('utf8');
    if (!/<(?:[\w-]+:)?Probe[\s>]/.test(xml)) return;
    const messageId = tag(xml, 'MessageID') ?? '';
    const types = tag(xml, 'Types') ?? '';
    if (types && !/NetworkVideoTransmitter|Device/.test(types)) return;
    const scopes = [
      'onvif://www.onvif.org/type/video_encoder',
      'onvif://www.onvif.org/Profile/Streaming',
      `onvif://www.onvif.org/name/${encodeURIComponent(o.name ?? 'SimCam')}`,
      `onvif://www.onvif.org/hardware/${encodeURIComponent(o.hardware ?? 'SIM-1')}`,
      'onvif://www.onvif.org/location/robot%20mast',
    ];
    const answer =
      `<?xml version="1.0" encoding="UTF-8"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:d="http://schemas.xmlsoap.org/ws/2005/04/discovery" xmlns:dn="http://www.onvif.org/ver10/network/wsdl" xmlns:tds="http://www.onvif.org/ver10/device/wsdl">` +
      `<SOAP-ENV:Header><wsa:MessageID>uuid:${randomUUID()}</wsa:MessageID><wsa:RelatesTo>${messageId}</wsa:RelatesTo><wsa:To SOAP-ENV:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:To>` +
      `<wsa:Action SOAP-ENV:mustUnderstand="true">http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsa:Action></SOAP-ENV:Header>` +
      `<SOAP-ENV:Body><d:ProbeMatches><d:ProbeMatch><wsa:EndpointReference><wsa:Address>${endpoint}</wsa:Address></wsa:EndpointReference>` +
      `<d:Types>dn:NetworkVideoTransmitter tds:Device</d:Types><d:Scopes>${scopes.join(' ')}</d:Scopes>` +
      `<d:XAddrs>http://${host()}/onvif/device_service</d:XAddrs><d:MetadataVersion>10</d:MetadataVersion></d:ProbeMatch></d:ProbeMatches></SOAP-ENV:Body></SOAP-ENV:Envelope>`;
    udp.send(Buffer.from(answer), rinfo.port, rinfo.address);
  };
  udp.on('message', onProbe);
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
  const discoveryPort = udp.address().port;
  let mc: Socket | undefined;
  if (o.multicastPort) {
    mc = createSocket({ type: 'udp4', reuseAddr: true });
    mc.on('error', () => {});
    mc.on('message', onProbe);
    await new Promise<void>((resolve) => mc!.bind(o.multicastPort, resolve));
    mc.addMembership('239.255.255.250', '127.0.0.1');
  }

  let closed: Promise<void> | undefined;
  return {
    port,
    discoveryPort,
    endpoint,
    requests,
    get authFailures() {
      return authFailures;
    },
    close: () => {
      if (!closed) {
        closed = (async () => {
          udp.close();
          mc?.close();
          server.closeAllConnections();
          await new Promise<void>((resolve) => server.close(() => resolve()));
        })();
      }
      return closed;
    },
  };
}
