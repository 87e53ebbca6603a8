// TLS for the local server (`server.tls`): https and wss on the same port, so a token never crosses
// a LAN in clear. Either your own certificate and key (PEM files), or, with `generate: true`, a
// pair made on first start the way mkcert does it: a small local CA (ca.pem, 10 years; its key stays
// in ca-key.pem, mode 0600) and a server certificate signed by it (P-256, 397 days, names in
// subjectAltName) — install ca.pem once in a browser or OS and every certificate it issues for this
// robot is trusted. A generated certificate that is missing, about to expire (< 30 days) or lacks a
// configured name is issued again from the same CA on start. No openssl binary needed: the X.509
// DER is built here (pure) and signed with node:crypto.

import { X509Certificate, createHash, createPrivateKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { EdgeError } from '../engine/api.js';

const pemPath = z.string().min(1).max(4096).startsWith('/', 'an absolute path');

export const tlsConfigSchema = z
  .object({
    /** PEM certificate (chain) served for https/wss. */
    cert: pemPath,
    /** PEM private key of the certificate. Mode 0600, never logged. */
    key: pemPath,
    /** Make a local CA (ca.pem next to cert) and a certificate signed by it when missing or expiring. */
    generate: z.boolean().default(false),
    /** Names and addresses in a generated certificate; default: this host's name, name.local, its addresses, localhost. */
    hosts: z.array(z.string().regex(/^[A-Za-z0-9.:*-]{1,253}$/, 'a host name or IP address')).max(32).optional(),
  })
  .strict();
export type TlsConfig = z.infer<typeof tlsConfigSchema>;

export interface TlsMaterial {
  cert: string;
  key: string;
  /** The CA that signed a generated certificate (null for your own files). */
  caFile: string | null;
  /** base64 SHA-256 of the certificate's public key (Chromium's --ignore-certificate-errors-spki-list). */
  spkiSha256: string;
  generated: boolean;
}

/** Read the configured pair, generating it first when asked. Throws TLS_* EdgeErrors. */
export function loadTls(c: TlsConfig, now = Date.now()): TlsMaterial {
  let generated = false;
  const caFile = c.generate ? join(dirname(c.cert), 'ca.pem') : null;
  if (c.generate) {
    const hosts = c.hosts ?? defaultHosts();
    if (needsIssue(c.cert, c.key, hosts, now)) {
      issueFromLocalCa(c.cert, c.key, hosts, now);
      generated = true;
    }
  }
  let cert: string;
  let key: string;
  try {
    cert = readFileSync(c.cert, 'utf8');
    key = readFileSync(c.key, 'utf8');
  } catch (e) {
    throw new EdgeError('TLS_FILES_MISSING', `cannot read server.tls cert/key: ${(e as Error).message} (set server.tls.generate: true to make them)`);
  }
  let x: X509Certificate;
  try {
    x = new X509Certificate(cert);
    if (!x.checkPrivateKey(createPrivateKey(key))) throw new Error('the key does not belong to the certificate');
  } catch (e) {
    throw new EdgeError('TLS_BAD_PAIR', `server.tls: ${(e as Error).message}`);
  }
  return { cert, key, caFile, spkiSha256: spkiHash(x.publicKey), generated };
}

export function spkiHash(pub: KeyObject): string {
  return createHash('sha256').update(pub.export({ type: 'spki', format: 'der' })).digest('base64');
}

/** This host's names and addresses (what a LAN client may type). */
export function defaultHosts(): string[] {
  const h = hostname();
  const out = new Set<string>(['localhost', '127.0.0.1', '::1', h, `${h}.local`]);
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (!a.internal) out.add(a.address.replace(/%.*$/, ''));
  return [...out].filter((x) => /^[A-Za-z0-9.:*-]{1,253}$/.test(x));
}

const DAY = 86_400_000;

function needsIssue(certFile: string, keyFile: string, hosts: string[], now: number): boolean {
  if (!existsSync(certFile) || !existsSync(keyFile)) return true;
  try {
    const x = new X509Certificate(readFileSync(certFile));
    if (Date.parse(x.validTo) - now < 30 * DAY) return true;
    const san = (x.subjectAltName ?? '').split(', ');
    // IPv6 is printed expanded by OpenSSL: only names and IPv4 are compared.
    return hosts.some((h) => !h.includes(':') && !san.includes(isIp(h) ? `IP Address:${h}` : `DNS:${h}`));
  } catch {
    return true;
  }
}

function issueFromLocalCa(certFile: string, keyFile: string, hosts: string[], now: number): void {
  const dir = dirname(certFile);
  mkdirSync(dir, { recursive: true });
  mkdirSync(dirname(keyFile), { recursive: true });
  const caPem = join(dir, 'ca.pem');
  const caKeyPem = join(dir, 'ca-key.pem');
  let caCert: X509Certificate;
  let caKey: KeyObject;
  if (existsSync(caPem) && existsSync(caKeyPem)) {
    caCert = new X509Certificate(readFileSync(caPem));
    caKey = createPrivateKey(readFileSync(caKeyPem));
  } else {
    const kp = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const name = `moth-edge local CA (${hostname()}) ${new Date(now).toISOString().slice(0, 10)}`;
    const der = buildCertificate({ subject: name, issuer: name, subjectKey: kp.publicKey, issuerKey: kp.publicKey, signer: kp.privateKey, ca: true, notBefore: now - DAY, notAfter: now + 3650 * DAY });
    writeFileSync(caPem, pem('CERTIFICATE', der), { mode: 0o644 });
    writeFileSync(caKeyPem, kp.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
    caCert = new X509Certificate(readFileSync(caPem));
    caKey = kp.privateKey;
  }
  const kp = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const der = buildCertificate({
    subject: `moth-edge ${hostname()}`,
    issuer: subjectDer(caCert.raw),
    subjectKey: kp.publicKey,
    issuerKey: caCert.publicKey,
    signer: caKey,
    ca: false,
    hosts,
    notBefore: now - DAY,
    notAfter: now + 397 * DAY,
  });
  writeFileSync(certFile, pem('CERTIFICATE', der), { mode: 0o644 });
  writeFileSync(keyFile, kp.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, { mode: 0o600 });
}

// ---------------------------------------------------------------------------------------------
// Pure DER (X.690) for one X.509 v3 certificate signed with ECDSA P-256 / SHA-256.

function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let x = n; x > 0; x = Math.floor(x / 256)) bytes.unshift(x & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
const tlv = (tag: number, body: Buffer): Buffer => Buffer.concat([Buffer.from([tag]), len(body.length), body]);
const seq = (...parts: Buffer[]): Buffer => tlv(0x30, Buffer.concat(parts));
const set = (...parts: Buffer[]): Buffer => tlv(0x31, Buffer.concat(parts));
const octets = (b: Buffer): Buffer => tlv(0x04, b);
const bits = (b: Buffer): Buffer => tlv(0x03, Buffer.concat([Buffer.from([0]), b]));
const bool = (v: boolean): Buffer => tlv(0x01, Buffer.from([v ? 0xff : 0]));
const utf8 = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));
const explicit = (n: number, body: Buffer): Buffer => tlv(0xa0 + n, body);

function oid(dotted: string): Buffer {
  const p = dotted.split('.').map(Number);
  const out = [40 * p[0]! + p[1]!];
  for (const v of p.slice(2)) {
    const enc = [v & 0x7f];
    for (let x = Math.floor(v / 128); x > 0; x = Math.floor(x / 128)) enc.unshift((x & 0x7f) | 0x80);
    out.push(...enc);
  }
  return tlv(0x06, Buffer.from(out));
}

function int(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  const v = b.subarray(i);
  return tlv(0x02, v[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), v]) : v);
}

function time(ms: number): Buffer {
  const d = new Date(ms);
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z'; // YYYYMMDDHHMMSSZ
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(iso.slice(2), 'ascii')) : tlv(0x18, Buffer.from(iso, 'ascii'));
}

const name = (cn: string): Buffer => seq(set(seq(oid('2.5.4.3'), utf8(cn))));

function isIp(h: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(h) || h.includes(':');
}

function ipBytes(h: string): Buffer {
  if (!h.includes(':')) return Buffer.from(h.split('.').map(Number));
  const [head, tail] = h.split('::') as [string, string | undefined];
  const a = head ? head.split(':') : [];
  const b = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail === undefined ? a : [...a, ...Array(8 - a.length - b.length).fill('0'), ...b];
  return Buffer.concat(groups.map((g) => Buffer.from(g.padStart(4, '0'), 'hex')));
}

function keyId(pub: KeyObject): Buffer {
  // RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits (the last 65 bytes for P-256).
  const spki = pub.export({ type: 'spki', format: 'der' });
  return createHash('sha1').update(spki.subarray(spki.length - 65)).digest();
}

function ext(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(id), bool(true), octets(value)) : seq(oid(id), octets(value));
}

export interface CertificateSpec {
  subject: string;
  /** The issuer's common name, or its subject Name as DER (copied from the CA certificate). */
  issuer: string | Buffer;
  subjectKey: KeyObject;
  issuerKey: KeyObject;
  signer: KeyObject;
  ca: boolean;
  hosts?: string[];
  notBefore: number;
  notAfter: number;
}

/** A DER X.509 v3 certificate (ECDSA with SHA-256). */
export function buildCertificate(s: CertificateSpec): Buffer {
  const alg = seq(oid('1.2.840.10045.4.3.2'));
  const exts: Buffer[] = [
    ext('2.5.29.19', true, s.ca ? seq(bool(true), tlv(0x02, Buffer.from([0]))) : seq()),
    // keyUsage: CA keyCertSign + cRLSign; server digitalSignature
    ext('2.5.29.15', true, s.ca ? tlv(0x03, Buffer.from([1, 0x06])) : tlv(0x03, Buffer.from([7, 0x80]))),
    ext('2.5.29.14', false, octets(keyId(s.subjectKey))),
  ];
  if (!s.ca) {
    exts.push(ext('2.5.29.35', false, seq(tlv(0x80, keyId(s.issuerKey)))));
    exts.push(ext('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.1'))));
    const names = (s.hosts ?? []).map((h) => (isIp(h) ? tlv(0x87, ipBytes(h)) : tlv(0x82, Buffer.from(h, 'ascii'))));
    exts.push(ext('2.5.29.17', false, seq(...names)));
  }
  const tbs = seq(
    explicit(0, tlv(0x02, Buffer.from([2]))),
    int(Buffer.concat([Buffer.from([randomBytes(1)[0]! & 0x7f]), randomBytes(15)])),
    alg,
    typeof s.issuer === 'string' ? name(s.issuer) : s.issuer,
    seq(time(s.notBefore), time(s.notAfter)),
    name(s.subject),
    Buffer.from(s.subjectKey.export({ type: 'spki', format: 'der' })),
    explicit(3, seq(...exts)),
  );
  const sig = sign('sha256', tbs, s.signer);
  return seq(tbs, alg, bits(sig));
}

function pem(label: string, der: Buffer): string {
  return `-----BEGIN ${label}-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END ${label}-----\n`;
}

/** The elements of a DER SEQUENCE (or any constructed value) as whole TLVs. */
function children(der: Buffer): Buffer[] {
  const { start, end } = header(der, 0);
  const out: Buffer[] = [];
  for (let i = start; i < end; ) {
    const h = header(der, i);
    out.push(der.subarray(i, h.end));
    i = h.end;
  }
  return out;
}

function header(der: Buffer, at: number): { start: number; end: number } {
  let n = der[at + 1]!;
  let start = at + 2;
  if (n & 0x80) {
    const k = n & 0x7f;
    n = 0;
    for (let i = 0; i < k; i++) n = n * 256 + der[at + 2 + i]!;
    start += k;
  }
  return { start, end: start + n };
}

/** The subject Name (DER) of a certificate: the issuer field of every certificate it signs. */
export function subjectDer(certDer: Buffer): Buffer {
  const tbs = children(children(certDer)[0]!);
  // version [0], serial, signature, issuer, validity, subject
  return tbs[5]!;
}
