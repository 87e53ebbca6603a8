// --check-config refuses the traps that used to pass and then fail for ever at run time, each with
// the key path and what to do; names in references become ids; both spellings of an instant channel
// are accepted in egress and in control. Pure: parseConfig, no process.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ConfigError, parseConfig } from '../../runtime/config/load.js';
import { channelIdFor } from '../../runtime/engine/xid.js';
import { keepaliveMsFor } from '../../runtime/egress/config.js';

const MOTH = 'wss://moth.example:8277';
const robot = {
  name: 'robot',
  sources: [
    { name: 'base', driver: { kind: 'testpattern' } },
    { name: 'base', driver: { kind: 'simulated', track: 'imu' } },
  ],
};

function problems(data: unknown): string[] {
  try {
    parseConfig(data);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `a ConfigError, not ${String(err)}`);
    return err.problems;
  }
  return [];
}

function refused(data: unknown, path: string, ...says: RegExp[]): void {
  const ps = problems(data);
  const p = ps.find((x) => x.startsWith(`${path}:`));
  assert.ok(p, `a problem at ${path}; got:\n${ps.join('\n')}`);
  for (const re of says) assert.match(p, re);
}

test('the upstream remote source/track follow the local track: video + imu without track: are two remote tracks', () => {
  const cfg = parseConfig({
    channels: [robot],
    egress: { upstream: [{ url: MOTH, instant: 'r1', from: 'robot/base/video' }, { url: MOTH, instant: 'r1', from: 'robot/base/imu' }] },
  });
  assert.deepEqual(cfg.egress.upstream.map((u) => `${u.source}/${u.track}`), ['base/video', 'base/imu']);
  assert.equal(cfg.egress.upstream[1]!.from.channel, channelIdFor('robot'), 'the name became the id');
});

test('two upstreams on one remote track are refused with the path of the second and a fix', () => {
  refused(
    { channels: [robot], egress: { upstream: [{ url: MOTH, instant: 'r1', from: 'robot/base/video' }, { url: `${MOTH}/`, channel: 'instant', name: 'r1', from: 'robot/base/imu', track: 'video' }] } },
    'egress.upstream[1].track',
    /same remote track as egress\.upstream\[0\]/,
    /busy/,
    /set track:/,
  );
  // different servers or channels are different remote tracks
  assert.deepEqual(problems({ channels: [robot], egress: { upstream: [{ url: MOTH, instant: 'r1', from: 'robot/base/video' }, { url: MOTH, instant: 'r2', from: 'robot/base/video' }] } }), []);
});

test('a track reference that names nothing configured is refused, with what exists and a guess', () => {
  refused({ channels: [robot], egress: { upstream: [{ url: MOTH, instant: 'r1', from: 'robt/base/video' }] } }, 'egress.upstream[0].from', /no configured channel "robt"/, /channels: robot/);
  refused({ channels: [robot], egress: { upstream: [{ url: MOTH, instant: 'r1', from: 'robot/base/imu2' }] } }, 'egress.upstream[0].from', /base\/imu2/, /did you mean robot\/base\/imu\?/);
  refused({ channels: [robot], egress: { whip: [{ url: 'https://w.example/whip', tracks: ['robot/base/video', 'robot/front/video'] }] } }, 'egress.whip[0].tracks[1]', /did you mean robot\/base\/video/);
  refused({ channels: [robot], egress: { pull: [{ url: MOTH, instant: 'r1', to: 'nowhere/base/cmd' }] } }, 'egress.pull[0].to', /no channel "nowhere"/);
  refused({ channels: [robot], egress: { pull: [{ url: MOTH, instant: 'r1', to: 'robot/base/imu' }] } }, 'egress.pull[0].to', /already written by channels\[0\]\.sources\[1\]\.driver\.track/);
  refused({ channels: [robot], rtmp: { streams: [{ key: 'rtmp-key-1', channel: 'cam' }] } }, 'rtmp.streams[0].channel', /no channel "cam"/);
  refused({ channels: [robot], recordings: { tracks: ['robt/*/*'] } }, 'recordings.tracks[0]', /no configured channel "robt"/);
  // by name, by id, the WHIP ingest channel and a channel nothing configured writes (remote publishers) all pass
  const ok = parseConfig({
    channels: [robot, { name: 'remote' }],
    egress: {
      whipIngest: { enabled: true, token: 'ingest-token-0123456789' },
      upstream: [
        { url: MOTH, instant: 'r1', from: `${channelIdFor('robot')}/base/video` },
        { url: MOTH, instant: 'r1', from: 'remote/cam/video' },
        { url: MOTH, instant: 'r1', from: 'ingest/phone/video' },
      ],
      whip: [{ url: 'https://w.example/whip', tracks: ['robot/base/video', 'robot/base/imu'] }],
      pull: [{ url: MOTH, instant: 'r1', to: 'robot/ops/cmd', commands: true }],
    },
    recordings: { tracks: ['robot/*/*', '*/*/imu'] },
    server: { token: 'server-token-0123456789' },
  });
  assert.deepEqual(ok.egress.whip[0]!.tracks.map((t) => t.channel), [channelIdFor('robot'), channelIdFor('robot')], 'whip tracks by name became ids');
  assert.equal(ok.egress.pull[0]!.to.channel, channelIdFor('robot'), 'pull.to by name');
  assert.equal(ok.egress.upstream[2]!.from.channel, channelIdFor('ingest'));
  assert.deepEqual(ok.recordings.tracks, [`${channelIdFor('robot')}/*/*`, '*/*/imu']);
  assert.equal(ok.egress.pull[0]!.track, 'cmd', "the pulled remote track defaults to the local one's name");
});

test('keepalives longer than the timeout they keep alive are refused, with a value that works', () => {
  refused({ control: { motors: [{ kind: 'sabertooth', name: 'base', path: '/dev/ttyUSB0', deviceTimeoutMs: 500, keepaliveMs: 400 }] } }, 'control.motors[0].keepaliveMs', /deviceTimeoutMs 500/, /use 166/);
  refused(
    { control: { leaseMs: 300, motors: [{ kind: 'sabertooth', name: 'base', path: '/dev/ttyUSB0' }], joysticks: [{ path: '/dev/input/js0', motor: 'base', drive: { mode: 'arcade', throttle: { axis: 1 }, steer: { axis: 0 } }, refreshMs: 400 }] } },
    'control.joysticks[0].refreshMs',
    /dead-man lease \(control\.leaseMs 300\)/,
  );
  refused({ control: { upstream: { url: MOTH, instant: 'r1', keepaliveMs: 45_000 } } }, 'control.upstream.keepaliveMs', /idle timeout \(30000 ms\)/);
  assert.deepEqual(problems({ control: { motors: [{ kind: 'sabertooth', name: 'base', path: '/dev/ttyUSB0' }] } }), [], 'the shipped defaults pass');
  // pang links have no keepalive key: it follows the timeout they ask the server for
  assert.deepEqual([keepaliveMsFor(undefined), keepaliveMsFor(3600), keepaliveMsFor(10), keepaliveMsFor(1)], [20_000, 20_000, 5000, 500]);
});

test('keys shorter than their minimum: the path, the minimum and how to make one', () => {
  refused({ server: { token: 'short' } }, 'server.token', /at least 16 characters/, /openssl rand -hex/);
  refused({ channels: [robot], rtmp: { streams: [{ key: 'abc', channel: 'robot' }] } }, 'rtmp.streams[0].key', /at least 8 characters/, /openssl rand/);
  refused({ egress: { whipIngest: { enabled: true, token: 'tiny' } } }, 'egress.whipIngest.token', /at least 16 characters/);
});

test('an instant channel is spelled either way in egress and in control; a bare name is refused as Moth would', () => {
  const a = parseConfig({ channels: [robot], egress: { upstream: [{ url: MOTH, channel: 'instant', name: 'r1', from: 'robot/base/video' }] }, control: { upstream: { url: MOTH, instant: 'r1' } } });
  assert.equal(a.egress.upstream[0]!.instant, 'r1');
  assert.equal(a.egress.upstream[0]!.channel, undefined);
  assert.deepEqual([a.control.upstream!.channel, a.control.upstream!.name], ['instant', 'r1']);
  refused({ control: { upstream: { url: MOTH, channel: 'robot1' } } }, 'control.upstream.channel', /static channel id .*or "instant" with name/);
  refused({ channels: [robot], egress: { upstream: [{ url: MOTH, channel: 'robot1', from: 'robot/base/video' }] } }, 'egress.upstream[0].channel', /or "instant"/);
  refused({ channels: [robot], egress: { upstream: [{ url: MOTH, channel: 'instant', from: 'robot/base/video' }] } }, 'egress.upstream[0].name', /needs name:/);
  refused({ control: { upstream: { url: MOTH, channel: 'instant', instant: 'r1' } } }, 'control.upstream.instant', /give the channel once/);
});

test('fuzz: any input either parses or is refused as a ConfigError whose every problem starts with a key path', () => {
  const leaf = fc.oneof(fc.string({ maxLength: 12 }), fc.integer(), fc.boolean(), fc.constant(null), fc.constantFrom('robot/base/video', 'instant', MOTH, 'c0ffee00000000000000'));
  const keys = fc.constantFrom('server', 'channels', 'egress', 'upstream', 'from', 'track', 'url', 'instant', 'name', 'control', 'motors', 'rtmp', 'streams', 'key', 'token', 'keepaliveMs', 'sources', 'driver', 'kind');
  const value = fc.letrec((tie) => ({
    v: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('v'), { maxLength: 3 }), fc.dictionary(keys, tie('v'), { maxKeys: 4 })),
  })).v;
  fc.assert(
    fc.property(fc.dictionary(keys, value, { maxKeys: 4 }), (data) => {
      try {
        parseConfig(data);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        for (const p of err.problems) assert.match(p, /^(\(root\)|[A-Za-z]+)(\.[A-Za-z]+|\[\d+\])*: /);
      }
    }),
    { numRuns: 300 },
  );
});
