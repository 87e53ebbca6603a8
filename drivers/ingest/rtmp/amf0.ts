// AMF0 (Action Message Format 0) encoder/decoder for RTMP command and data messages.
// Pure: no I/O. Spec: Adobe "AMF0 File Format Specification" (amf0-file-format-specification.pdf).
// Every hostile length is checked against the bytes actually present before anything is allocated.

export type Amf0Value =
  | number
  | boolean
  | string
  | null
  | undefined
  | Date
  | Amf0Value[]
  | Amf0Object;

/** Objects decode with a null prototype so a "__proto__" key is plain data. */
export interface Amf0Object {
  [key: string]: Amf0Value;
}

export const AMF0 = {
  number: 0x00,
  boolean: 0x01,
  string: 0x02,
  object: 0x03,
  movieclip: 0x04,
  null: 0x05,
  undefined: 0x06,
  reference: 0x07,
  ecmaArray: 0x08,
  objectEnd: 0x09,
  strictArray: 0x0a,
  date: 0x0b,
  longString: 0x0c,
  unsupported: 0x0d,
  xmlDocument: 0x0f,
  typedObject: 0x10,
  avmplus: 0x11,
} as const;

/** Typed decode failure. `offset` is where in the buffer the bad byte is. */
export class Amf0Error extends Error {
  readonly code = 'RTMP_AMF0_INVALID';
  constructor(message: string, readonly offset: number) {
    super(`RTMP_AMF0_INVALID: ${message} at offset ${offset}`);
    this.name = 'Amf0Error';
  }
}

// Command objects are at most a few levels deep; a hostile nest must not blow the JS stack.
const MAX_DEPTH = 32;

class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}
  need(n: number): void {
    if (n < 0 || this.pos + n > this.buf.length) throw new Amf0Error(`truncated: need ${n} bytes, have ${this.buf.length - this.pos}`, this.pos);
  }
  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  f64(): number {
    this.need(8);
    const v = this.buf.readDoubleBE(this.pos);
    this.pos += 8;
    return v;
  }
  utf8(len: number): string {
    this.need(len);
    const s = this.buf.toString('utf8', this.pos, this.pos + len);
    this.pos += len;
    return s;
  }
}

function newObject(): Amf0Object {
  return Object.create(null) as Amf0Object;
}

function readProperties(r: Reader, depth: number, into: Amf0Object): void {
  for (;;) {
    const keyLen = r.u16();
    if (keyLen === 0) {
      const marker = r.u8();
      if (marker === AMF0.objectEnd) return;
      // An empty key is legal only before the end marker; anything else is a broken object.
      throw new Amf0Error(`empty property name followed by marker 0x${marker.toString(16)}`, r.pos - 1);
    }
    const key = r.utf8(keyLen);
    into[key] = readValue(r, depth + 1);
  }
}

function readValue(r: Reader, depth: number): Amf0Value {
  if (depth > MAX_DEPTH) throw new Amf0Error(`nesting deeper than ${MAX_DEPTH}`, r.pos);
  const at = r.pos;
  const marker = r.u8();
  switch (marker) {
    case AMF0.number:
      return r.f64();
    case AMF0.boolean:
      return r.u8() !== 0;
    case AMF0.string:
      return r.utf8(r.u16());
    case AMF0.longString:
    case AMF0.xmlDocument:
      return r.utf8(r.u32());
    case AMF0.object: {
      const o = newObject();
      readProperties(r, depth, o);
      return o;
    }
    case AMF0.typedObject: {
      r.utf8(r.u16()); // class name: not needed by RTMP commands
      const o = newObject();
      readProperties(r, depth, o);
      return o;
    }
    case AMF0.ecmaArray: {
      r.u32(); // associative count is advisory only (encoders get it wrong); the end marker rules
      const o = newObject();
      readProperties(r, depth, o);
      return o;
    }
    case AMF0.strictArray: {
      const count = r.u32();
      // Each element takes at least one byte: a count beyond the remaining bytes is a lie.
      if (count > r.buf.length - r.pos) throw new Amf0Error(`strict array of ${count} elements in ${r.buf.length - r.pos} bytes`, at);
      const out: Amf0Value[] = [];
      for (let i = 0; i < count; i++) out.push(readValue(r, depth + 1));
      return out;
    }
    case AMF0.date: {
      const ms = r.f64();
      r.u16(); // time zone: reserved, always 0
      return new Date(ms);
    }
    case AMF0.null:
      return null;
    case AMF0.undefined:
    case AMF0.unsupported:
      return undefined;
    default:
      throw new Amf0Error(`unsupported marker 0x${marker.toString(16)}`, at);
  }
}

/** Decode every value in `buf` (a command message is a sequence of values). */
export function decodeAmf0(buf: Buffer): Amf0Value[] {
  const r = new Reader(buf);
  const out: Amf0Value[] = [];
  while (r.pos < buf.length) out.push(readValue(r, 0));
  return out;
}

/** Decode one value at `offset`; returns the value and the offset after it. */
export function decodeAmf0Value(buf: Buffer, offset = 0): { value: Amf0Value; next: number } {
  const r = new Reader(buf);
  r.pos = offset;
  const value = readValue(r, 0);
  return { value, next: r.pos };
}

// ---------------------------------------------------------------------------------------------
// Encoding

function encString(s: string, parts: Buffer[]): void {
  const body = Buffer.from(s, 'utf8');
  if (body.length <= 0xffff) {
    const h = Buffer.allocUnsafe(3);
    h[0] = AMF0.string;
    h.writeUInt16BE(body.length, 1);
    parts.push(h, body);
  } else {
    const h = Buffer.allocUnsafe(5);
    h[0] = AMF0.longString;
    h.writeUInt32BE(body.length, 1);
    parts.push(h, body);
  }
}

function encKey(k: string, parts: Buffer[]): void {
  const body = Buffer.from(k, 'utf8');
  if (body.length > 0xffff) throw new RangeError('AMF0 property name longer than 65535 bytes');
  const h = Buffer.allocUnsafe(2);
  h.writeUInt16BE(body.length, 0);
  parts.push(h, body);
}

function encValue(v: Amf0Value, parts: Buffer[], depth: number): void {
  if (depth > MAX_DEPTH) throw new RangeError(`AMF0 value nested deeper than ${MAX_DEPTH}`);
  if (v === null) {
    parts.push(Buffer.from([AMF0.null]));
  } else if (v === undefined) {
    parts.push(Buffer.from([AMF0.undefined]));
  } else if (typeof v === 'number') {
    const b = Buffer.allocUnsafe(9);
    b[0] = AMF0.number;
    b.writeDoubleBE(v, 1);
    parts.push(b);
  } else if (typeof v === 'boolean') {
    parts.push(Buffer.from([AMF0.boolean, v ? 1 : 0]));
  } else if (typeof v === 'string') {
    encString(v, parts);
  } else if (v instanceof Date) {
    const b = Buffer.alloc(11);
    b[0] = AMF0.date;
    b.writeDoubleBE(v.getTime(), 1);
    parts.push(b);
  } else if (Array.isArray(v)) {
    const h = Buffer.allocUnsafe(5);
    h[0] = AMF0.strictArray;
    h.writeUInt32BE(v.length, 1);
    parts.push(h);
    for (const e of v) encValue(e, parts, depth + 1);
  } else {
    parts.push(Buffer.from([AMF0.object]));
    for (const k of Object.keys(v)) {
      encKey(k, parts);
      encValue(v[k], parts, depth + 1);
    }
    parts.push(Buffer.from([0, 0, AMF0.objectEnd]));
  }
}

/** Encode values back to back (a command: name, transaction id, command object, args…). */
export function encodeAmf0(...values: Amf0Value[]): Buffer {
  const parts: Buffer[] = [];
  for (const v of values) encValue(v, parts, 0);
  return Buffer.concat(parts);
}

/** Encode an object as an ECMA array (onMetaData uses this form). */
export function encodeAmf0EcmaArray(o: Amf0Object): Buffer {
  const parts: Buffer[] = [];
  const h = Buffer.allocUnsafe(5);
  h[0] = AMF0.ecmaArray;
  h.writeUInt32BE(Object.keys(o).length, 1);
  parts.push(h);
  for (const k of Object.keys(o)) {
    encKey(k, parts);
    encValue(o[k], parts, 1);
  }
  parts.push(Buffer.from([0, 0, AMF0.objectEnd]));
  return Buffer.concat(parts);
}
