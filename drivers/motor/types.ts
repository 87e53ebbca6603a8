// The one motor controller contract (Sabertooth packetized serial, line protocol firmware).

import type { DriverStats } from '../../runtime/engine/api.js';
import type { LinkEvent, LinkSnapshot } from '../link/link-state.js';

export interface MotorSpeeds {
  /** -1 = full reverse, +1 = full forward (channel 1 / left side). */
  left: number;
  /** -1 = full reverse, +1 = full forward (channel 2 / right side). */
  right: number;
}

export interface MotorStatus {
  online: boolean;
  /** Last speeds sent to the controller. */
  speeds: MotorSpeeds;
  /** Battery / supply voltage, when the controller reports it. */
  voltage?: number;
  /** Motor current in A, when the controller reports it. */
  current?: number;
  /** Fault codes the controller reported (empty when none or not reported). */
  faults: string[];
  /** Milliseconds since the controller last answered, when it answers at all. */
  lastReplyAgoMs?: number;
}

export interface MotorDriver {
  readonly kind: 'sabertooth' | 'line';
  readonly name: string;
  drive(s: MotorSpeeds): Promise<void>;
  stop(): Promise<void>;
  status(): Promise<MotorStatus>;
  /** The serial link now. */
  linkStatus(): LinkSnapshot;
  /** Every change of the link; on up the driver has already sent Stop (`stopped` true). */
  onLinkChange(cb: (e: LinkEvent) => void): void;
  stats(): DriverStats;
  /** Idempotent, never throws. Sends a stop first when the link is up. */
  close(): Promise<void>;
}
