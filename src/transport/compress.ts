/**
 * The page-stream compressor of `ha_transfer = "compress"`: zstd at level 1 (libzstd through
 * zstd-napi), one synchronous call per XEN_STREAM chunk. Why zstd-1: docs/compression.md
 * (the measurements of src/bench/compressors.ts, picked by bytes saved per CPU millisecond).
 *
 * The transfer stage chain (src/transport/transfer.ts) calls it after fgbi; the chunk is the body
 * of one XEN_STREAM_Z frame (docs/protocol.md §5.8, docs/compression.md "Wire form"):
 *
 *   codec u8 | 0 u8 | 0 u16 | rawLength u32 LE | bytes
 *
 * `codec` is CODEC.RAW (bytes are the chunk as it is: it did not compress) or CODEC.ZSTD (bytes
 * are one zstd frame of exactly rawLength bytes). The integrity seal covers these bytes as sent,
 * so a tampered chunk is refused before anything is decompressed.
 *
 * Decompression is safe on hostile input: it writes into a buffer of exactly `rawLength` bytes
 * (which the caller bounds), never more; a frame that is not zstd, declares another size, uses a
 * dictionary, is truncated, corrupt, or followed by other bytes is refused with a ProtocolError
 * that says which.
 */
import { createRequire } from 'node:module';
import { ProtocolError } from './framing.js';

type ZstdBinding = typeof import('zstd-napi/binding.js');
const require = createRequire(import.meta.url);
// zstd-napi's low-level binding: compress2/decompress into buffers we size (its high-level
// Decompressor allocates what the frame header claims, which a hostile peer chooses).
const zstd = require('zstd-napi/binding') as ZstdBinding;

/** Codec ids of the wire form (one byte). */
export const CODEC = {
  /** Sent as it is: compressing would not have made it smaller. */
  RAW: 0,
  /** One zstd frame (RFC 8878) with its content size in the header. */
  ZSTD: 1,
} as const;
export type CodecId = (typeof CODEC)[keyof typeof CODEC];

export function codecName(id: number): string {
  return id === CODEC.RAW ? 'raw' : id === CODEC.ZSTD ? 'zstd' : `unknown codec ${id}`;
}

/** The zstd level of `ha_transfer = "compress"` (docs/compression.md: why 1). */
export const DEFAULT_ZSTD_LEVEL = 1;

/** Header of a chunk in the wire form: codec u8 | 0 u8 | 0 u16 | rawLength u32 LE. */
export const CHUNK_HEADER_BYTES = 8;

const ZSTD_MAGIC = 0xfd2fb528;

export interface ChunkCodec {
  readonly id: CodecId;
  readonly name: string;
  /**
   * The packed form of `raw`, or null when it would not be smaller than `raw` (incompressible
   * bytes, or a chunk too small to gain): the caller then sends the chunk raw.
   */
  compress(raw: Buffer): Buffer | null;
  /**
   * `packed` decompressed to exactly `rawLength` bytes (the caller checks rawLength against its
   * own limit first). Throws a ProtocolError naming what was wrong; never writes more than
   * `rawLength` bytes.
   */
  decompress(packed: Buffer, rawLength: number): Buffer;
}

export class ZstdCodec implements ChunkCodec {
  readonly id = CODEC.ZSTD;
  readonly name: string;
  private readonly cctx = new zstd.CCtx();
  private readonly dctx = new zstd.DCtx();

  constructor(readonly level = DEFAULT_ZSTD_LEVEL) {
    const b = zstd.cParamGetBounds(zstd.CParameter.compressionLevel);
    if (!Number.isInteger(level) || level < b.lowerBound || level > b.upperBound) {
      throw new RangeError(`zstd level ${level} is not valid: expected an integer from ${b.lowerBound} to ${b.upperBound}`);
    }
    this.name = `zstd-${level}`;
    this.cctx.setParameter(zstd.CParameter.compressionLevel, level);
    this.cctx.setParameter(zstd.CParameter.contentSizeFlag, 1);
    this.cctx.setParameter(zstd.CParameter.checksumFlag, 0); // the seal covers the chunk
  }

  compress(raw: Buffer): Buffer | null {
    // Room for one byte less than the input: a result that does not fit is no gain.
    if (raw.length === 0) return null;
    const out = Buffer.allocUnsafe(Math.min(zstd.compressBound(raw.length), raw.length - 1));
    let n: number;
    try {
      n = this.cctx.compress2(out, raw);
    } catch (err) {
      if (/too small/i.test((err as Error).message)) return null;
      throw err;
    }
    return n < raw.length ? out.subarray(0, n) : null;
  }

  decompress(packed: Buffer, rawLength: number): Buffer {
    if (!Number.isSafeInteger(rawLength) || rawLength < 0) {
      throw new RangeError(`zstd chunk: raw length ${rawLength} is not a byte count`);
    }
    if (packed.length < 4 || packed.readUInt32LE(0) !== ZSTD_MAGIC) {
      throw new ProtocolError('EBADVALUE', `zstd chunk: ${packed.length < 4 ? `${packed.length} bytes are too few for` : 'the bytes do not start with'} a zstd frame's magic number`);
    }
    let declared: number | null;
    let frameBytes: number;
    try {
      declared = zstd.getFrameContentSize(packed);
      frameBytes = zstd.findFrameCompressedSize(packed);
    } catch (err) {
      throw new ProtocolError('EBADVALUE', `zstd chunk of ${packed.length} bytes: not a whole zstd frame (${zstdReason(err)})`, { cause: err });
    }
    if (declared === null) throw new ProtocolError('EBADHDR', 'zstd chunk: the frame does not declare its content size');
    if (declared !== rawLength) {
      throw new ProtocolError('EBADLEN', `zstd chunk: the frame declares ${declared} bytes of content, the chunk header ${rawLength}`);
    }
    if (frameBytes !== packed.length) {
      throw new ProtocolError('ETRAILING', `zstd chunk: ${packed.length - frameBytes} bytes follow the zstd frame of ${frameBytes} bytes`);
    }
    if (zstd.getDictIDFromFrame(packed) !== 0) throw new ProtocolError('EBADHDR', 'zstd chunk: the frame needs a dictionary; chunks use none');
    const out = Buffer.allocUnsafe(rawLength);
    let n: number;
    try {
      n = this.dctx.decompress(out, packed);
    } catch (err) {
      throw new ProtocolError('EBADVALUE', `zstd chunk: corrupt frame (${zstdReason(err)})`, { cause: err });
    }
    if (n !== rawLength) throw new ProtocolError('EBADLEN', `zstd chunk: decompressed to ${n} bytes, expected ${rawLength}`);
    return out;
  }
}

function zstdReason(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The codec of `ha_transfer = "compress"`. */
export function defaultCodec(): ChunkCodec {
  return new ZstdCodec(DEFAULT_ZSTD_LEVEL);
}

/** One chunk in the wire form: the 8-byte header and the bytes (raw or packed), as parts. */
export interface EncodedChunk {
  codec: CodecId;
  rawLength: number;
  parts: [header: Buffer, bytes: Buffer];
  /** Header and bytes. */
  length: number;
}

/** A chunk in the wire form: packed when that is smaller, else raw. */
export function encodeChunk(raw: Buffer, codec: ChunkCodec = defaultCodec()): EncodedChunk {
  if (raw.length > 0xffff_ffff) throw new RangeError(`chunk of ${raw.length} bytes: the wire form holds at most 2^32-1`);
  const packed = codec.compress(raw);
  const id = packed ? codec.id : CODEC.RAW;
  const bytes = packed ?? raw;
  const header = Buffer.alloc(CHUNK_HEADER_BYTES);
  header[0] = id;
  header.writeUInt32LE(raw.length, 4);
  return { codec: id, rawLength: raw.length, parts: [header, bytes], length: CHUNK_HEADER_BYTES + bytes.length };
}

/**
 * The chunk back from its wire form (header and bytes in one buffer, already checked against
 * the seal). `maxRawLength` bounds what the header may claim (the stream's frame limit).
 */
export function decodeChunk(wire: Buffer, maxRawLength: number, codecs: readonly ChunkCodec[] = [defaultCodec()]): Buffer {
  if (wire.length < CHUNK_HEADER_BYTES) {
    throw new ProtocolError('ETRUNC', `compressed chunk of ${wire.length} bytes: shorter than its ${CHUNK_HEADER_BYTES}-byte header`);
  }
  const id = wire[0]!;
  if (wire[1] !== 0 || wire.readUInt16LE(2) !== 0) {
    throw new ProtocolError('EBADVALUE', `compressed chunk: header bytes 1..3 are ${wire.subarray(1, 4).toString('hex')}, expected zero`);
  }
  const rawLength = wire.readUInt32LE(4);
  if (rawLength > maxRawLength) {
    throw new ProtocolError('ETOOBIG', `compressed chunk: raw length ${rawLength} exceeds the limit of ${maxRawLength} bytes`);
  }
  const bytes = wire.subarray(CHUNK_HEADER_BYTES);
  if (id === CODEC.RAW) {
    if (bytes.length !== rawLength) throw new ProtocolError('EBADLEN', `raw chunk: ${bytes.length} bytes, the header says ${rawLength}`);
    return bytes;
  }
  const codec = codecs.find((c) => c.id === id);
  if (!codec) {
    throw new ProtocolError('EBADVALUE', `compressed chunk: ${codecName(id)}; this side decodes ${['raw', ...codecs.map((c) => codecName(c.id))].join(', ')}`);
  }
  if (bytes.length >= rawLength) {
    // A sender sends a chunk raw when packing does not make it smaller.
    throw new ProtocolError('EBADLEN', `${codecName(id)} chunk: ${bytes.length} packed bytes for ${rawLength} raw; a chunk that does not shrink is sent raw`);
  }
  return codec.decompress(bytes, rawLength);
}
