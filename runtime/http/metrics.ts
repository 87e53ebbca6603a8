// Prometheus text at /metrics, read from the same stats() the dashboard uses (prom-client).

import client from 'prom-client';
import type { Engine } from '../engine/engine.js';
import type { DriverSupervisor } from '../supervisor.js';
import type { AccessGate } from './access.js';
import type { ComponentHealth } from './health.js';

export interface MetricSources {
  engine: Engine;
  supervisors: () => DriverSupervisor[];
  pang?: () => { sessions: number; byRole: Record<string, number>; refused: Record<string, number> };
  /** Every component's health (GET /healthz). */
  health?: () => ComponentHealth[];
  access?: () => ReturnType<AccessGate['stats']>;
}

export function createMetrics(src: MetricSources): client.Registry {
  const reg = new client.Registry();
  client.collectDefaultMetrics({ register: reg, prefix: 'moth_edge_' });
  const trackLabels = ['channel', 'source', 'track'] as const;

  const counter = (name: string, help: string, labelNames: readonly string[], fill: (c: client.Counter<string>) => void) =>
    new client.Counter({
      name,
      help,
      labelNames,
      registers: [reg],
      collect() {
        this.reset();
        fill(this);
      },
    });
  const gauge = (name: string, help: string, labelNames: readonly string[], fill: (g: client.Gauge<string>) => void) =>
    new client.Gauge({
      name,
      help,
      labelNames,
      registers: [reg],
      collect() {
        this.reset();
        fill(this);
      },
    });

  const tracks = () => src.engine.listChannels().flatMap((ch) => ch.tracks().map((t) => t.stats()));
  const l = (t: { channel: string; source: string; track: string }) => ({ channel: t.channel, source: t.source, track: t.track });

  counter('moth_edge_track_frames_total', 'Frames published on a track', trackLabels, (c) => {
    for (const t of tracks()) c.inc(l(t), t.framesIn);
  });
  counter('moth_edge_track_bytes_total', 'Payload bytes published on a track', trackLabels, (c) => {
    for (const t of tracks()) c.inc(l(t), t.bytesIn);
  });
  counter('moth_edge_track_dropped_total', 'Frames dropped by consumers of a track, by reason', [...trackLabels, 'reason'], (c) => {
    for (const t of tracks()) for (const [reason, n] of Object.entries(t.drops)) c.inc({ ...l(t), reason }, n);
  });
  gauge('moth_edge_track_fps', 'Frames per second over the last second', trackLabels, (g) => {
    for (const t of tracks()) g.set(l(t), t.fps);
  });
  gauge('moth_edge_track_bitrate_bps', 'Bits per second over the last second', trackLabels, (g) => {
    for (const t of tracks()) g.set(l(t), t.bitrateBps);
  });
  gauge('moth_edge_track_consumers', 'Consumers of a track', trackLabels, (g) => {
    for (const t of tracks()) g.set(l(t), t.consumers.length);
  });
  gauge('moth_edge_buffer_bytes', 'Bytes buffered in the engine (GOP caches + queues)', [], (g) => {
    g.set(src.engine.budget.used);
  });
  gauge('moth_edge_buffer_ceiling_bytes', 'Engine memory ceiling', [], (g) => {
    g.set(src.engine.budget.ceiling);
  });
  counter('moth_edge_buffer_shed_total', 'Times the memory ceiling forced a shed', [], (c) => {
    c.inc(src.engine.budget.shedEvents);
  });
  gauge('moth_edge_driver_up', '1 when the driver is running and produced a frame', ['driver'], (g) => {
    for (const s of src.supervisors()) {
      const st = s.stats();
      g.set({ driver: s.name }, st.state === 'running' ? 1 : 0);
    }
  });
  counter('moth_edge_driver_restarts_total', 'Driver restarts', ['driver'], (c) => {
    for (const s of src.supervisors()) c.inc({ driver: s.name }, s.stats().restarts);
  });
  if (src.pang) {
    const pang = src.pang;
    gauge('moth_edge_pang_sessions', 'Open pang sessions by role', ['role'], (g) => {
      for (const [role, n] of Object.entries(pang().byRole)) g.set({ role }, n);
    });
    counter('moth_edge_pang_refused_total', 'Refused pang connections by close code', ['code'], (c) => {
      for (const [code, n] of Object.entries(pang().refused)) c.inc({ code }, n);
    });
  }
  if (src.health) {
    const health = src.health;
    gauge('moth_edge_component_up', '1 when the component (driver, PTZ head, motor, link, recordings) is up', ['component'], (g) => {
      for (const c of health()) g.set({ component: c.name }, c.up ? 1 : 0);
    });
  }
  if (src.access) {
    const access = src.access;
    counter('moth_edge_auth_failures_total', 'Wrong tokens or keys by door', ['door'], (c) => {
      for (const [door, d] of Object.entries(access().doors)) c.inc({ door }, d.wrong);
    });
    counter('moth_edge_auth_rate_limited_total', 'Requests refused because their address made too many failed authentications', ['door'], (c) => {
      for (const [door, d] of Object.entries(access().doors)) c.inc({ door }, d.limited);
    });
  }
  return reg;
}
