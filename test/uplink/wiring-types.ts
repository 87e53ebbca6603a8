// Compile-time checks that the issue-8 pieces plug into the lead's app as documented (no runtime
// code): the recording service is the backfill's RecordingsAccess and its index the delivery-span
// writer's index; the reader fits the gap route; the ctl hook chains onto the control service.
import type { RecordingService } from '../../recordings/service.js';
import type { IndexDb } from '../../recordings/index-db.js';
import type { RecordingsAccess } from '../../runtime/uplink/backfill.js';
import type { RecordedIndex } from '../../runtime/uplink/routes.js';
import type { PangCommandHandler } from '../../runtime/pang/server.js';
import type { withBackfillCtl } from '../../runtime/uplink/ctl-commands.js';
import type { PangPublisher } from '../../runtime/egress/pang-publisher.js';
import type { PrioritizedLink } from '../../runtime/uplink/controller.js';
import type { LiveLinkView } from '../../runtime/uplink/backfill.js';

export type Checks = [
  RecordingService extends RecordingsAccess ? true : never,
  RecordingService['index'] extends IndexDb ? true : never,
  ReturnType<RecordingService['reader']> extends RecordedIndex ? true : never,
  ReturnType<typeof withBackfillCtl> extends PangCommandHandler ? true : never,
  PangPublisher extends PrioritizedLink ? true : never,
  PangPublisher extends LiveLinkView ? true : never,
];
export const checks: Checks = [true, true, true, true, true, true];
