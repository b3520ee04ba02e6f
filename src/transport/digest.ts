/**
 * The checkpoint content digest, on the xl-ha channel layer: the byte count,
 * frame count and CRC-32 of a checkpoint's content frames (XEN_STREAM,
 * DISK_WRITES) that its CHECKPOINT_SEAL carries (channel-records.ts). The
 * primary computes it, the backup verifies it. See docs/protocol.md.
 */

import { crc32 } from 'node:zlib';
import type { Seal } from './channel-records.js';
import { ProtocolError } from './framing.js';

// ---------------------------------------------------------------------------
// Checkpoint content digest (the seal's byte count, frame count and hash)

/**
 * Accumulates the content frames (XEN_STREAM, DISK_WRITES) of one checkpoint
 * and produces or verifies its seal. The primary calls {@link update} for each
 * content body it sends then {@link seal}; the backup calls {@link update} for
 * each one it receives then {@link verify} on the SEAL. Both reset the
 * accumulator for the next checkpoint.
 */
export class CheckpointDigest {
  private crc = 0;
  private bytes = 0;
  private frames = 0;

  /** Content bytes accumulated since the last reset. */
  get contentBytes(): number {
    return this.bytes;
  }

  /** Content frames accumulated since the last reset. */
  get contentFrames(): number {
    return this.frames;
  }

  /** Add one content frame body (or the parts it is written from, in order). */
  update(body: Uint8Array | readonly Uint8Array[]): void {
    for (const part of body instanceof Uint8Array ? [body] : body) {
      this.crc = crc32(part, this.crc);
      this.bytes += part.length;
    }
    this.frames++;
  }

  /** Forget everything accumulated (e.g. after discarding a checkpoint). */
  reset(): void {
    this.crc = 0;
    this.bytes = 0;
    this.frames = 0;
  }

  /** Finish: the seal for `epoch`, then reset. */
  seal(epoch: number, flags = 0): Seal {
    const s = { epoch, contentBytes: this.bytes, contentFrames: this.frames, flags, crc32: this.crc >>> 0 };
    this.reset();
    return s;
  }

  /**
   * Finish and compare with a received seal, then reset. Throws a
   * ProtocolError (EBADLEN for a byte/frame count mismatch, i.e. a torn
   * checkpoint; ECHECKSUM for a checksum mismatch) naming the epoch.
   */
  verify(seal: Seal): void {
    const ours = this.seal(seal.epoch);
    if (ours.contentFrames !== seal.contentFrames) {
      throw new ProtocolError(
        'EBADLEN',
        `checkpoint ${seal.epoch}: seal announces ${seal.contentFrames} content frame(s), received ${ours.contentFrames}`,
      );
    }
    if (ours.contentBytes !== seal.contentBytes) {
      throw new ProtocolError(
        'EBADLEN',
        `checkpoint ${seal.epoch}: seal announces ${seal.contentBytes} content bytes, received ${ours.contentBytes}`,
      );
    }
    if (ours.crc32 !== seal.crc32 >>> 0) {
      const hex = (v: number) => (v >>> 0).toString(16).padStart(8, '0');
      throw new ProtocolError('ECHECKSUM', `checkpoint ${seal.epoch}: crc32 mismatch (seal ${hex(seal.crc32)}, content ${hex(ours.crc32)})`);
    }
  }
}
