// Compile-time checks that the lead's types plug into egress as documented (no runtime code).
import type { EgressLog } from '../../runtime/egress/pang-link.js';
import type { TrackPublishing } from '../../runtime/egress/pang-puller.js';
import type { Component } from '../../runtime/app.js';
import type { EgressService } from '../../runtime/egress/service.js';
import type { Engine } from '../../runtime/engine/engine.js';
import type { Logger } from '../../runtime/log.js';
import type { PangTranscoder } from '../../runtime/pang/server.js';
import type { TranscodeService } from '../../runtime/transcode/service.js';
import type { TrackSource } from '../../runtime/engine/api.js';

export type Checks = [
  Logger extends EgressLog ? true : never,
  Engine extends TrackSource & TrackPublishing ? true : never,
  EgressService extends Component ? true : never,
  TranscodeService extends PangTranscoder ? true : never,
];
export const checks: Checks = [true, true, true, true];
