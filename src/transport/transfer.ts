/**
 * The checkpoint transfer: a chain of stages at the link, applied to the Xen stream bytes of
 * every checkpoint (XEN_STREAM content; disk writes pass as they are). The primary's link runs
 * each stage's encoder in chain order on what it sends; the backup runs the decoders in reverse
 * order on a sealed, verified checkpoint before it parses and applies it. The seal covers the
 * bytes as they travel (encoded).
 *
 * `ha_transfer` is `full` (no stage) or a comma list of stages, in any order, each once: `fgbi`
 * (changed sub-page blocks, src/transport/fgbi.ts) and `compress` (a page-stream compressor,
 * not in this release: refused). The chain order is fixed, fgbi before compress: blocks are
 * found on the pages, then what is left is compressed.
 *
 * Lifecycle: one encoder per link and one decoder per backup session (a connection): a
 * reconnection starts both empty, with a FULL first checkpoint.
 */
import { FgbiDecoder, FgbiEncoder, FGBI_BLOCK_BYTES, FGBI_DEFAULT_SHADOW_MIB, type FgbiParams } from './fgbi.js';

export const TRANSFER_STAGE_IDS = ['fgbi', 'compress'] as const;
export type TransferStageId = (typeof TRANSFER_STAGE_IDS)[number];
/** The words of `ha_transfer`. */
export const TRANSFER_WORDS = ['full', ...TRANSFER_STAGE_IDS] as const;
/** Stages this release runs. */
export const IMPLEMENTED_STAGES: readonly TransferStageId[] = ['fgbi'];

/** A transfer in canonical form: `full`, or its stages in chain order joined by `,`. */
export type TransferId = 'full' | 'fgbi' | 'compress' | 'fgbi,compress';

/** Why a transfer cannot run here (a stage not implemented, or not on this backend). */
export class TransferUnavailableError extends Error {
  readonly code = 'ETRANSFER';
}

/**
 * Parses a transfer list (`full`, `fgbi`, `compress,fgbi`, ...) into its canonical form, or
 * says what is wrong with it (the caller names the key or option).
 */
export function parseTransfer(v: string): { ok: true; id: TransferId; stages: TransferStageId[] } | { ok: false; reason: string } {
  const words = v.split(',').map((w) => w.trim());
  const accepted = `full, or a comma list of ${TRANSFER_STAGE_IDS.join(' and ')} (e.g. "fgbi,compress")`;
  for (const w of words) {
    if (!(TRANSFER_WORDS as readonly string[]).includes(w)) return { ok: false, reason: `${w === '' ? 'an empty item' : `"${w}"`} is not a transfer; expected ${accepted}` };
  }
  if (words.includes('full')) {
    if (words.length > 1) return { ok: false, reason: `full sends whole pages and cannot be combined with ${words.filter((w) => w !== 'full').join(', ')}; expected ${accepted}` };
    return { ok: true, id: 'full', stages: [] };
  }
  const seen = new Set<string>();
  for (const w of words) {
    if (seen.has(w)) return { ok: false, reason: `${w} is listed twice; expected ${accepted}` };
    seen.add(w);
  }
  const stages = TRANSFER_STAGE_IDS.filter((s) => seen.has(s));
  return { ok: true, id: stages.join(',') as TransferId, stages };
}

export function transferStages(id: TransferId): TransferStageId[] {
  return id === 'full' ? [] : (id.split(',') as TransferStageId[]);
}

/** What both ends agree on in HELLO. */
export interface TransferSettings {
  id: TransferId;
  /** With fgbi. */
  fgbi?: FgbiParams;
}

export const FULL_TRANSFER: TransferSettings = { id: 'full' };

/** fgbi's parameters from its two settings (each defaulted). */
export function fgbiParams(blockBytes: number | undefined, shadowMiB: number | undefined): FgbiParams {
  return { blockBytes: blockBytes ?? FGBI_BLOCK_BYTES.default, shadowCapBytes: (shadowMiB ?? FGBI_DEFAULT_SHADOW_MIB) * 1048576 };
}

/** Why this release cannot run `id` (a stage it parses but does not implement), or null. */
export function transferNotImplemented(id: TransferId): string | null {
  const s = transferStages(id).find((x) => !IMPLEMENTED_STAGES.includes(x));
  return s ? `ha_transfer "${s}" is not implemented yet in this release; accepted: full, fgbi` : null;
}

/**
 * Refuses what cannot run: a stage not in this release, or fgbi on a backend where it is not
 * verified (`fgbi` false in the backend's features), naming the stage and the backend.
 */
export function checkTransferRuns(t: TransferSettings, backend: { kind: string; features: { fgbi?: boolean } }): void {
  const missing = transferNotImplemented(t.id);
  if (missing) throw new TransferUnavailableError(missing);
  for (const s of transferStages(t.id)) {
    if (s === 'fgbi' && !backend.features.fgbi) {
      throw new TransferUnavailableError(
        `ha_transfer "fgbi" is not available on the ${backend.kind} backend: rebuilding its pages into the stream handed to libxc is not verified on real Xen yet; use full`,
      );
    }
  }
  if (transferStages(t.id).includes('fgbi') && !t.fgbi) throw new TransferUnavailableError('ha_transfer "fgbi" without its parameters (block size, shadow bound)');
}

/** Figures of a transfer for status (each side's shadow memory among them). */
export interface TransferStatus {
  id: TransferId;
  blockBytes?: number;
  /** Page bytes the shadow holds, and the memory it takes (slabs, free slots included). */
  shadowBytes?: number;
  shadowAllocatedBytes?: number;
  shadowPages?: number;
  shadowCapBytes?: number;
  /** Primary: pages sent as blocks, whole (changed whole), kept, refused a shadow at the cap. */
  deltaPages?: number;
  wholePages?: number;
  keptPages?: number;
  capRefusals?: number;
  /** Primary: shadows dropped by both sides as idle (FGBI_IDLE_CHECKPOINTS). */
  idleDrops?: number;
  /** Primary: PAGE_DATA bytes in, FGBI_PAGE_DATA bytes out. */
  bytesIn?: number;
  bytesOut?: number;
}

/** The primary's chain: `encode` each XEN_STREAM body, `startFull` before each FULL checkpoint's content. */
export class TransferEncoder {
  private readonly fgbi: FgbiEncoder | null;

  constructor(readonly settings: TransferSettings) {
    this.fgbi = transferStages(settings.id).includes('fgbi') ? new FgbiEncoder(settings.fgbi!) : null;
  }

  encode(body: Buffer | readonly Buffer[]): Buffer[] {
    // (compress would run here, on what fgbi left)
    return this.fgbi ? this.fgbi.encode(body) : Buffer.isBuffer(body) ? [body] : [...(body as readonly Buffer[])];
  }

  startFull(): void {
    this.fgbi?.startFull();
  }

  /** The checkpoint whose content went through `encode` is being sealed. */
  endCheckpoint(): void {
    this.fgbi?.endCheckpoint();
  }

  status(): TransferStatus {
    const f = this.fgbi;
    if (!f) return { id: this.settings.id };
    return {
      id: this.settings.id,
      blockBytes: f.params.blockBytes,
      shadowBytes: f.shadow.bytes,
      shadowAllocatedBytes: f.shadow.allocatedBytes,
      shadowPages: f.shadow.pages,
      shadowCapBytes: f.params.shadowCapBytes,
      deltaPages: f.stats.deltaPages,
      wholePages: f.stats.wholePages,
      keptPages: f.stats.keptPages,
      capRefusals: f.stats.capRefusals,
      idleDrops: f.stats.idleDrops,
      bytesIn: f.stats.bytesIn,
      bytesOut: f.stats.bytesOut,
    };
  }
}

/** The backup's chain, in reverse order: a sealed checkpoint's parts back to a plain Xen stream. */
export class TransferDecoder {
  private readonly fgbi: FgbiDecoder | null;

  constructor(readonly settings: TransferSettings) {
    this.fgbi = transferStages(settings.id).includes('fgbi') ? new FgbiDecoder(settings.fgbi!) : null;
  }

  /** Throws a ProtocolError for malformed content; nothing changes until `commit`. */
  decode(parts: readonly Buffer[], full: boolean): { parts: readonly Buffer[]; commit(): void } {
    // (compress would be undone here, before fgbi)
    return this.fgbi ? this.fgbi.decode(parts, full) : { parts, commit: () => {} };
  }

  status(): TransferStatus {
    const f = this.fgbi;
    if (!f) return { id: this.settings.id };
    return {
      id: this.settings.id,
      blockBytes: f.params.blockBytes,
      shadowBytes: f.shadow.bytes,
      shadowAllocatedBytes: f.shadow.allocatedBytes,
      shadowPages: f.shadow.pages,
      shadowCapBytes: f.params.shadowCapBytes,
    };
  }
}
