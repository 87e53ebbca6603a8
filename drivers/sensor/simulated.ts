// A simulated robot sensor: IMU, odometry or GPS records as JSON at a fixed rate, deterministic
// (a function of the record index), so tests can check every value that arrives.

import { z } from 'zod';
import { captureClockUs, type DriverOutput, type SourceDriver, type TrackSpec } from '../../runtime/engine/api.js';

export const simulatedSensorSchema = z
  .object({
    kind: z.literal('simulated'),
    track: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).default('data'),
    sensor: z.enum(['imu', 'odometry', 'gps']).default('imu'),
    rateHz: z.number().min(0.1).max(1000).default(50),
  })
  .strict();
export type SimulatedSensorConfig = z.infer<typeof simulatedSensorSchema>;

export function simulatedRecord(sensor: SimulatedSensorConfig['sensor'], seq: number, rateHz: number): Record<string, unknown> {
  const t = seq / rateHz;
  const r = (x: number) => Math.round(x * 1e6) / 1e6;
  switch (sensor) {
    case 'imu':
      return {
        seq,
        accel: { x: r(0.2 * Math.sin(t)), y: r(0.1 * Math.cos(t)), z: r(9.80665 + 0.05 * Math.sin(3 * t)) },
        gyro: { x: r(0.01 * Math.sin(2 * t)), y: r(0.01 * Math.cos(2 * t)), z: r(0.1 * Math.sin(0.5 * t)) },
      };
    case 'odometry':
      return { seq, x: r(5 * Math.cos(0.1 * t)), y: r(5 * Math.sin(0.1 * t)), theta: r((0.1 * t) % (2 * Math.PI)), v: 0.5 };
    case 'gps':
      return { seq, lat: r(37.5665 + 0.0001 * Math.sin(0.01 * t)), lon: r(126.978 + 0.0001 * Math.cos(0.01 * t)), fix: 3, sats: 9 };
  }
}

export class SimulatedSensorDriver implements SourceDriver {
  readonly kind = 'simulated';
  private seq = 0;
  private bytes = 0;

  constructor(private readonly cfg: SimulatedSensorConfig) {}

  describe(): TrackSpec[] {
    return [{ track: this.cfg.track, mime: 'application/json' }];
  }

  run(out: DriverOutput, signal: AbortSignal): Promise<void> {
    out.setMime(this.cfg.track, 'application/json');
    const periodMs = 1000 / this.cfg.rateHz;
    const start = performance.now();
    const first = this.seq;
    return new Promise<void>((resolve) => {
      // Catch up from elapsed time so the rate holds even when timers run late, but never emit
      // more than a second's worth at once after a stall (bounded burst).
      const tick = () => {
        const due = first + Math.floor((performance.now() - start) / periodMs) + 1;
        const burstCap = Math.max(1, Math.ceil(this.cfg.rateHz));
        let n = 0;
        while (this.seq < due && n++ < burstCap) {
          const data = Buffer.from(JSON.stringify(simulatedRecord(this.cfg.sensor, this.seq, this.cfg.rateHz)));
          this.seq++;
          this.bytes += data.length;
          out.write(this.cfg.track, { ts: captureClockUs(), wallclock: Date.now(), key: true, data });
        }
        if (this.seq < due) this.seq = due;
      };
      const timer = setInterval(tick, Math.max(1, periodMs));
      signal.addEventListener(
        'abort',
        () => {
          clearInterval(timer);
          resolve();
        },
        { once: true },
      );
    });
  }

  stats() {
    return { records: this.seq, bytes: this.bytes };
  }
}
