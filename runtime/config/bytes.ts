import { z } from 'zod';

const UNITS: Record<string, number> = {
  b: 1, k: 1e3, kb: 1e3, kib: 1024, m: 1e6, mb: 1e6, mib: 1024 ** 2, g: 1e9, gb: 1e9, gib: 1024 ** 3,
};

/** "64MiB", "512 kB", 1048576 → bytes. Returns NaN for anything else. */
export function parseBytes(v: unknown): number {
  if (typeof v === 'number') return Number.isFinite(v) ? v : NaN;
  if (typeof v !== 'string') return NaN;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v);
  if (!m) return NaN;
  const unit = UNITS[(m[2] || 'b').toLowerCase()];
  return unit ? Math.round(Number(m[1]) * unit) : NaN;
}

/** A byte size in config: a number of bytes or a string with a unit (KiB, MB, …). */
export function byteSize(min: number, max: number) {
  return z
    .union([z.number(), z.string()])
    .transform((v, ctx) => {
      const n = parseBytes(v);
      if (!Number.isFinite(n) || n < min || n > max) {
        ctx.addIssue({
          code: 'custom',
          message: `expected a byte size between ${min} and ${max} bytes (e.g. "64MiB")`,
        });
        return z.NEVER;
      }
      return n;
    });
}
