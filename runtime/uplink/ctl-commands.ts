// The local pang ctl request `backfill_range` (runtime/pang/ctl.ts CTL_BACKFILL_RANGE): a command
// hook for the pang server that answers range requests from the backfill service and hands every
// other text to the next hook (the control service). Thin: parsing is parseCtl + parseRangeRequest.
import { ctlError, ctlReply, CTL_BACKFILL_RANGE, parseCtl } from '../pang/ctl.js';
import type { PangCommandHandler } from '../pang/server.js';
import type { BackfillService } from './backfill.js';

export function withBackfillCtl(backfill: () => BackfillService | null, next: PangCommandHandler | undefined): PangCommandHandler {
  return {
    async onText(sessionId: string, text: string): Promise<string | undefined> {
      if (text.startsWith('{') && text.includes(CTL_BACKFILL_RANGE)) {
        const p = parseCtl(text);
        if (p.ok && p.req.type === CTL_BACKFILL_RANGE) {
          const bf = backfill();
          if (!bf) return ctlError('backfill is not enabled (no recordings or no backfill upstream)', p.req);
          try {
            return ctlReply(p.req, CTL_BACKFILL_RANGE, bf.handleCtl(p.req.data, p.req.req_id));
          } catch (err) {
            return ctlError((err as Error).message, p.req);
          }
        }
      }
      return next ? next.onText(sessionId, text) : undefined;
    },
    onSessionClosed(sessionId: string): void {
      next?.onSessionClosed(sessionId);
    },
  };
}
