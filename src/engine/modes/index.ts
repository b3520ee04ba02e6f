/**
 * The modes. Each is a file named by its id; a mode this release cannot run fails here, at
 * setup, with a message naming it (as libxl's libxl_no_colo.c does), never inside the loop.
 */
import { ModeSetupError, type Mode } from '../types.js';
import type { ModeId } from './ids.js';
import { RemusMode } from './remus.js';
import { KemariMode } from './kemari.js';
import { ColoMode } from './colo.js';
import { DEFAULT_COLO_MAX_INTERVAL_MS, DEFAULT_KEMARI_MIN_GAP_MS } from '../../config/domain.js';

export { MODE_IDS, isModeId, type ModeId } from './ids.js';

export interface ModeOptions {
  intervalMs: number;
  /** kemari: events within this gap coalesce into one sync (default 2). */
  minGapMs?: number;
  /** colo: a checkpoint at the latest this long after the previous one (default 5000). */
  maxIntervalMs?: number;
}

export function createMode(mode: ModeId, opts: ModeOptions): Mode {
  switch (mode) {
    case 'remus':
      return new RemusMode({ intervalMs: opts.intervalMs });
    case 'kemari':
      return new KemariMode({ minGapMs: opts.minGapMs ?? DEFAULT_KEMARI_MIN_GAP_MS });
    case 'colo':
      return new ColoMode({ maxIntervalMs: opts.maxIntervalMs ?? DEFAULT_COLO_MAX_INTERVAL_MS });
    case 'llm':
      throw new ModeSetupError(`mode ${mode} is not implemented yet in this release of xl-ha; use remus, kemari or colo`);
  }
}
