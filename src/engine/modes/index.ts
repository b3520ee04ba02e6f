/** Mode ids are the same everywhere: config value, CLI word, file name, log field. */
import type { ModeId } from '../../backend/types.js';
import { ModeSetupError, type ModePolicy } from '../types.js';
import { RemusPolicy } from './remus.js';

export const MODE_IDS: readonly ModeId[] = ['remus', 'kemari', 'colo', 'llm'];

export interface ModeOptions {
  intervalMs: number;
}

export function createPolicy(mode: ModeId, opts: ModeOptions): ModePolicy {
  switch (mode) {
    case 'remus':
      return new RemusPolicy({ intervalMs: opts.intervalMs });
    case 'kemari':
    case 'colo':
    case 'llm':
      throw new ModeSetupError(`mode ${mode} is not implemented yet in this release of xl-ha; use remus`);
  }
}
