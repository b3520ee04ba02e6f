/**
 * The checkpoint transfer: a chain of stages at the link, applied to the Xen stream bytes of
 * every checkpoint (XEN_STREAM content; disk writes pass as they are). The primary's link runs
 * each stage's encoder in chain order on what it sends; the backup runs the decoders in reverse
 * order on a sealed, verified checkpoint before it parses and applies it. The seal covers the
 * bytes as they travel (encoded).
 *
 * `ha_transfer` is `full` (no stage) or a comma list of stages, in any order, each once: `fgbi`
 * (changed sub-page blocks, src/transport/fgbi.ts) and `compress` (zstd-1 over each XEN_STREAM
 * body, src/transport/compress.ts: the body goes as one XEN_STREAM_Z chunk). The chain order is
 * fixed, fgbi before compress: blocks are found on the pages, then what is left is compressed.
 *
 * Lifecycle: one encoder per link and one decoder per backup session (a connection): a
 * reconnection starts both empty, with a FULL first checkpoint.
 */
import { FgbiDecoder, FgbiEncoder, FGBI_BLOCK_BYTES, FGBI_DEFAULT_SHADOW_MIB, type FgbiParams } from './fgbi.js';
import { CHUNK_HEADER_BYTES, codecName, decodeChunk, defaultCodec, encodeChunk, CODEC, type ChunkCodec } from './compress.js';
import { XLHA_REC } from './channel-records.js';
import { ProtocolError } from './framing.js';
import { TimeSlicer } from '../util/slicer.js';

export const TRANSFER_STAGE_IDS = ['fgbi', 'compress'] as const;
export type TransferStageId = (typeof TRANSFER_STAGE_IDS)[number];
/** The words of `ha_transfer`. */
export const TRANSFER_WORDS = ['full', ...TRANSFER_STAGE_IDS] as const;
/** Stages this release runs. */
export const IMPLEMENTED_STAGES: readonly TransferStageId[] = ['fgbi', 'compress'];

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
  return s ? `ha_transfer "${s}" is not implemented yet in this release; accepted: full, ${IMPLEMENTED_STAGES.join(', ')}` : null;
}

/**
 * Refuses what cannot run: a stage not in this release, or a stage (fgbi, compress) on a backend where it is not
 * verified (`fgbi` false in the backend's features), naming the stage and the backend.
 */
export function checkTransferRuns(t: TransferSettings, backend: { kind: string; features: { fgbi?: boolean; compress?: boolean } }): void {
  const missing = transferNotImplemented(t.id);
  if (missing) throw new TransferUnavailableError(missing);
  for (const s of transferStages(t.id)) {
    if (s === 'fgbi' && !backend.features.fgbi) {
      throw new TransferUnavailableError(
        `ha_transfer "${t.id}": fgbi is not available on the ${backend.kind} backend: rebuilding its pages into the stream handed to libxc is not verified on real Xen yet; use full`,
      );
    }
    if (s === 'compress' && !backend.features.compress) {
      throw new TransferUnavailableError(
        `ha_transfer "${t.id}": compress is not available on the ${backend.kind} backend: a decompressed stream handed to libxc (and the first checkpoint held until its seal instead of streamed into it) is not verified on real Xen yet; use full`,
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
  /** compress: stream bytes into the stage and chunk bytes out (headers included), chunks sent raw. */
  compressIn?: number;
  compressOut?: number;
  rawChunks?: number;
}

/** One content frame of a checkpoint's Xen stream, as the link sends it or the backup got it. */
export interface StreamFrame {
  /** XLHA_REC.XEN_STREAM, or XEN_STREAM_Z with compress. */
  type: number;
  parts: readonly Buffer[];
}

/** What the backup takes of one checkpoint: a compressed chunk claiming more is refused before any allocation. */
export interface DecodeLimits {
  /** The most one chunk may decompress to (the channel's frame limit). */
  maxChunkBytes: number;
  /** The most the checkpoint's stream may decompress to in all (the backup's held-checkpoint limit). */
  maxCheckpointBytes: number;
  /** Where `maxCheckpointBytes` comes from, for the error. */
  checkpointLimitSource: string;
}


/** The primary's chain: `encode` each XEN_STREAM body, `startFull` before each FULL checkpoint's content. */
export class TransferEncoder {
  private readonly fgbi: FgbiEncoder | null;
  private readonly codec: ChunkCodec | null;
  private readonly cstats = { compressIn: 0, compressOut: 0, rawChunks: 0 };

  constructor(readonly settings: TransferSettings) {
    const stages = transferStages(settings.id);
    this.fgbi = stages.includes('fgbi') ? new FgbiEncoder(settings.fgbi!) : null;
    this.codec = stages.includes('compress') ? defaultCodec() : null;
  }

  /** One XEN_STREAM body through the chain: the frame to send (XEN_STREAM_Z with compress). */
  encode(body: Buffer | readonly Buffer[]): StreamFrame {
    const parts = this.fgbi ? this.fgbi.encode(body) : Buffer.isBuffer(body) ? [body] : [...(body as readonly Buffer[])];
    if (!this.codec) return { type: XLHA_REC.XEN_STREAM, parts };
    // compress, on what fgbi left: the frame body as one chunk (packed, or raw when that is no smaller)
    const raw = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    const c = encodeChunk(raw, this.codec);
    this.cstats.compressIn += raw.length;
    this.cstats.compressOut += c.length;
    if (c.codec === CODEC.RAW) this.cstats.rawChunks++;
    return { type: XLHA_REC.XEN_STREAM_Z, parts: c.parts };
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
    const c = this.codec ? { ...this.cstats } : {};
    if (!f) return { id: this.settings.id, ...c };
    return {
      id: this.settings.id,
      ...c,
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
  private readonly codec: ChunkCodec | null;

  constructor(readonly settings: TransferSettings) {
    const stages = transferStages(settings.id);
    this.fgbi = stages.includes('fgbi') ? new FgbiDecoder(settings.fgbi!) : null;
    this.codec = stages.includes('compress') ? defaultCodec() : null;
  }

  /** The frame type this session's Xen stream comes in. */
  get streamType(): number {
    return this.codec ? XLHA_REC.XEN_STREAM_Z : XLHA_REC.XEN_STREAM;
  }

  /**
   * A sealed, verified checkpoint's stream frames back to a plain Xen stream: each chunk
   * decompressed (compress), then the pages rebuilt (fgbi). Throws a ProtocolError for malformed
   * content, naming the frame and the field (a chunk claiming more than `limits` allow is refused
   * before anything is allocated for it); nothing changes until `commit`.
   */
  async decode(frames: readonly StreamFrame[], full: boolean, limits: DecodeLimits): Promise<{ parts: readonly Buffer[]; commit(): void }> {
    const parts: Buffer[] = [];
    if (this.codec) {
      let total = 0;
      const slicer = new TimeSlicer();
      for (let i = 0; i < frames.length; i++) {
        const f = frames[i]!;
        if (f.type !== XLHA_REC.XEN_STREAM_Z) {
          throw new ProtocolError('EBADTYPE', `compress: stream frame ${i} of the checkpoint is type 0x${f.type.toString(16)}; with compress agreed in HELLO every Xen stream frame is XEN_STREAM_Z (0x${XLHA_REC.XEN_STREAM_Z.toString(16)})`);
        }
        const wire = f.parts.length === 1 ? f.parts[0]! : Buffer.concat(f.parts as Buffer[]);
        if (wire.length >= CHUNK_HEADER_BYTES) {
          const rawLength = wire.readUInt32LE(4);
          const left = limits.maxCheckpointBytes - total;
          if (rawLength > limits.maxChunkBytes || rawLength > left) {
            throw new ProtocolError(
              'ETOOBIG',
              `compress: XEN_STREAM_Z frame ${i} (${codecName(wire[0]!)}) declares rawLength ${rawLength}; this backup accepts a chunk of at most ${limits.maxChunkBytes} bytes ` +
                `and a checkpoint of at most ${limits.maxCheckpointBytes} bytes decompressed (${limits.checkpointLimitSource}), ${total} of them already taken`,
            );
          }
        }
        const raw = decodeChunk(wire, Math.min(limits.maxChunkBytes, limits.maxCheckpointBytes - total), [this.codec]);
        total += raw.length;
        parts.push(raw);
        await slicer.maybeYield(); // heartbeats go on (src/util/slicer.ts)
      }
    } else {
      for (let i = 0; i < frames.length; i++) {
        const f = frames[i]!;
        if (f.type !== XLHA_REC.XEN_STREAM) throw new ProtocolError('EBADTYPE', `stream frame ${i} of the checkpoint is type 0x${f.type.toString(16)}, but compress was not agreed in HELLO`);
        parts.push(...f.parts);
      }
    }
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
