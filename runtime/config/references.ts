// Cross-checks of a parsed config that no single key can make, and the one place channel names in
// references become ids. Pure: config in, problems (key path + what to do) or a resolved config out.
//
// Traps refused here, each of which used to pass --check-config and then fail for ever at run time:
//  - two upstreams publishing one remote track (Moth refuses the second as "track busy");
//  - a track reference (egress.upstream[].from, egress.whip[].tracks, egress.pull[].to, rtmp.streams,
//    recordings.tracks / sync.priority) naming a channel, source or track nothing configured writes;
//  - two writers of one local track (a driver and an RTMP stream or a pull).

import type { TrackRef } from '../engine/api.js';
import { channelIdFor, XID_RE } from '../engine/xid.js';
import type { Config } from './schema.js';

export interface ConfigProblem {
  path: Array<string | number>;
  message: string;
}

interface ChannelInfo {
  id: string;
  name: string | undefined;
  /** Tracks something in the config writes (`source/track` → the key path of the writer). */
  writers: Map<string, string>;
  /** Anyone may write any track into it (WHIP ingest's channel, a channel with no configured writer). */
  open: boolean;
}

export function pathText(path: ReadonlyArray<PropertyKey>): string {
  let s = '';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : s ? `.${String(p)}` : String(p);
  return s || '(root)';
}

/** The channels a config makes, by id and by name. */
class Catalog {
  readonly byId = new Map<string, ChannelInfo>();
  private readonly byName = new Map<string, ChannelInfo>();

  add(id: string, name: string | undefined): ChannelInfo {
    const found = this.byId.get(id);
    if (found) return found;
    const ch: ChannelInfo = { id, name, writers: new Map(), open: false };
    this.byId.set(id, ch);
    if (name) this.byName.set(name, ch);
    return ch;
  }

  find(idOrName: string): ChannelInfo | undefined {
    return this.byId.get(idOrName) ?? this.byName.get(idOrName);
  }

  label(ch: ChannelInfo): string {
    return ch.name ? `"${ch.name}" (${ch.id})` : ch.id;
  }

  names(): string {
    const all = [...this.byId.values()].map((c) => c.name ?? c.id);
    return all.length ? all.join(', ') : 'none (add one under channels:)';
  }
}

/** The channel WHIP ingest writes into: a configured one by name or id, else one derived from the name. */
export function ingestChannelId(config: Config): string {
  const want = config.egress.whipIngest.channel;
  const ch = (config.channels ?? []).find((c) => c.id === want || c.name === want);
  return ch ? ch.id : channelIdFor(want);
}

/**
 * A channel given by id or name, outside a running engine (CLI filters): a configured or ingest
 * channel by name or id, an xid as it is, else the id a channel of that name gets.
 */
export function channelIdOf(idOrName: string, config?: Config): string {
  if (config) {
    const ch = (config.channels ?? []).find((c) => c.id === idOrName || c.name === idOrName);
    if (ch) return ch.id;
    if (config.egress.whipIngest.channel === idOrName) return ingestChannelId(config);
  }
  return XID_RE.test(idOrName) ? idOrName : channelIdFor(idOrName);
}

function catalogOf(config: Config, problems: ConfigProblem[]): Catalog {
  const cat = new Catalog();
  const write = (ch: ChannelInfo, source: string, track: string, by: Array<string | number>) => {
    const key = `${source}/${track}`;
    const other = ch.writers.get(key);
    if (other) {
      problems.push({
        path: by,
        message: `track ${ch.name ?? ch.id}/${key} is already written by ${other}: a track has one publisher (the second is refused as busy); give this one another source or track name`,
      });
    } else ch.writers.set(key, pathText(by));
  };
  (config.channels ?? []).forEach((c, i) => {
    const ch = cat.add(c.id, c.name);
    c.sources.forEach((s, j) => write(ch, s.name, s.driver.track, ['channels', i, 'sources', j, 'driver', 'track']));
  });
  if (config.egress.whipIngest.enabled) cat.add(ingestChannelId(config), config.egress.whipIngest.channel).open = true;
  (config.rtmp?.streams ?? []).forEach((st, i) => {
    const ch = cat.find(st.channel);
    if (!ch) {
      problems.push({ path: ['rtmp', 'streams', i, 'channel'], message: `no channel "${st.channel}" is configured (channels: ${cat.names()}); the RTMP ingest writes into a configured channel` });
      return;
    }
    write(ch, st.source, st.track, ['rtmp', 'streams', i]);
  });
  config.egress.pull.forEach((p, i) => {
    const ch = cat.find(p.to.channel);
    if (!ch) {
      problems.push({ path: ['egress', 'pull', i, 'to'], message: `no channel "${p.to.channel}" is configured (channels: ${cat.names()}); a pull writes into a configured channel (by id or name)` });
      return;
    }
    write(ch, p.to.source, p.to.track, ['egress', 'pull', i, 'to']);
  });
  // A channel nothing in the config writes is left to remote publishers (pang /pub): any track goes.
  for (const ch of cat.byId.values()) if (ch.writers.size === 0) ch.open = true;
  return cat;
}

function checkRef(cat: Catalog, ref: TrackRef, path: Array<string | number>, what: string, problems: ConfigProblem[]): void {
  const ch = cat.find(ref.channel);
  if (!ch) {
    problems.push({ path, message: `${what} ${ref.channel}/${ref.source}/${ref.track} names no configured channel "${ref.channel}" (channels: ${cat.names()}); write <channel name or id>/<source>/<track>` });
    return;
  }
  if (ch.open || ch.writers.has(`${ref.source}/${ref.track}`)) return;
  const tracks = [...ch.writers.keys()];
  const want = `${ref.source}/${ref.track}`;
  const near = tracks.reduce((a, b) => (editDistance(b, want) < editDistance(a, want) ? b : a));
  problems.push({
    path,
    message: `${what} ${ref.channel}/${ref.source}/${ref.track}: nothing configured writes ${ref.source}/${ref.track} in channel ${cat.label(ch)} (it has ${tracks.join(', ')}); did you mean ${ch.name ?? ch.id}/${near}?`,
  });
}

/** Levenshtein distance, for "did you mean" (labels are ≤ 129 chars). */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

/** Every cross-key trap of the config; an empty list means it may run. */
export function crossCheck(config: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const cat = catalogOf(config, problems);
  config.egress.upstream.forEach((u, i) => checkRef(cat, u.from, ['egress', 'upstream', i, 'from'], 'from', problems));
  config.egress.whip.forEach((w, i) => w.tracks.forEach((t, j) => checkRef(cat, t, ['egress', 'whip', i, 'tracks', j], 'track', problems)));

  // Two upstreams on one remote track: the second is refused as busy for ever.
  const remote = new Map<string, number>();
  config.egress.upstream.forEach((u, i) => {
    const server = u.url.replace(/\/+$/, '').toLowerCase();
    const key = `${server} ${u.channel ?? `instant:${u.instant}`} ${u.source}/${u.track}`;
    const first = remote.get(key);
    if (first === undefined) {
      remote.set(key, i);
      return;
    }
    problems.push({
      path: ['egress', 'upstream', i, 'track'],
      message: `publishes to the same remote track as egress.upstream[${first}] (${u.channel ?? `instant ${u.instant}`}, ${u.source}/${u.track} on ${server}): the server refuses the second publisher as busy; set track: (it defaults to the local track's name) or source: to tell them apart`,
    });
  });

  const patterns = (list: string[], path: Array<string | number>) =>
    list.forEach((p, i) => {
      const c = p.split('/')[0]!;
      if (c !== '*' && !cat.find(c)) problems.push({ path: [...path, i], message: `pattern ${p} names no configured channel "${c}" (channels: ${cat.names()}); use * or a channel's name or id` });
    });
  patterns(config.recordings.tracks, ['recordings', 'tracks']);
  if (config.recordings.sync) patterns(config.recordings.sync.priority, ['recordings', 'sync', 'priority']);
  return problems;
}

/**
 * Channel names in references become ids (the engine, the recorder and the links address channels by
 * id). Call after crossCheck found nothing. Mutates and returns the config.
 */
export function resolveReferences(config: Config): Config {
  const problems: ConfigProblem[] = [];
  const cat = catalogOf(config, problems);
  const id = (c: string) => cat.find(c)?.id ?? c;
  const ref = (r: TrackRef): TrackRef => ({ ...r, channel: id(r.channel) });
  const pattern = (p: string) => {
    const [c, ...rest] = p.split('/');
    return c === '*' ? p : [id(c!), ...rest].join('/');
  };
  for (const u of config.egress.upstream) u.from = ref(u.from);
  for (const w of config.egress.whip) w.tracks = w.tracks.map(ref);
  for (const p of config.egress.pull) p.to = ref(p.to);
  if (config.rtmp) for (const st of config.rtmp.streams) st.channel = id(st.channel);
  config.recordings.tracks = config.recordings.tracks.map(pattern);
  if (config.recordings.sync) config.recordings.sync.priority = config.recordings.sync.priority.map(pattern);
  return config;
}
