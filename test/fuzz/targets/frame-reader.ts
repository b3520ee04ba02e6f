/**
 * Fuzz target: the channel frame reader (src/transport/reader.ts, framing.ts), fed what a peer
 * sends on the replication socket, then each frame it completes through the channel decoders.
 *
 * Input: byte 0 is a control byte, the rest is the byte stream.
 *   control bits 0..6: how the second reader gets the stream cut (see _check.ts cuts()):
 *                      the two readers must give the same frames and the same error;
 *   control bit 7:     a small frame limit (256 bytes) instead of the 64 MiB default, and the
 *                      second reader copies control frames (its `release` option).
 * Clean: ProtocolError (FrameReaderError is one).
 */
import { FrameReader, FrameReaderError, type Frame } from '../../../src/transport/reader.js';
import { frameParts, ProtocolError } from '../../../src/transport/framing.js';
import { decodeChannelFrame } from '../../../src/transport/channel-records.js';
import { attempt, cuts, expect, split, type CleanRule } from './_check.js';

const NAME = 'frame-reader';
const CLEAN: CleanRule = { classes: [ProtocolError] };
export const sync = true;

interface Run {
  frames: Frame[];
  error?: ProtocolError;
}

function read(parts: readonly Buffer[], maxFrameBytes: number | undefined, release: boolean): Run {
  const released: Buffer[] = [];
  const r = new FrameReader({ ...(maxFrameBytes !== undefined ? { maxFrameBytes } : {}), ...(release ? { release: (b: Buffer) => released.push(b) } : {}) });
  const frames: Frame[] = [];
  for (const p of parts) {
    const got = attempt(NAME, 'FrameReader.push', () => r.push(p), CLEAN);
    if (!got.ok) {
      const err = got.error as ProtocolError;
      if (err instanceof FrameReaderError) frames.push(...err.frames);
      // a dead reader keeps failing the same way
      const again = attempt(NAME, 'FrameReader.push after an error', () => r.push(Buffer.alloc(0)), CLEAN);
      expect(NAME, !again.ok && again.error === err, 'a reader that failed accepted more input');
      return { frames, error: err };
    }
    frames.push(...got.value);
  }
  const end = attempt(NAME, 'FrameReader.finish', () => r.finish(), CLEAN);
  if (!end.ok) return { frames, error: end.error as ProtocolError };
  expect(NAME, r.bufferedBytes === 0, `finish() accepted with ${r.bufferedBytes} bytes still buffered`);
  return { frames };
}

export function fuzz(data: Buffer): void {
  if (data.length === 0) return;
  const ctl = data[0]!;
  const stream = data.subarray(1);
  const max = ctl & 0x80 ? 256 : undefined;
  const whole = read([stream], max, false);
  const cut = read(split(stream, cuts(ctl, stream.length)), max, (ctl & 0x80) !== 0);

  // the cut makes no difference
  expect(NAME, whole.frames.length === cut.frames.length, `${whole.frames.length} frames in one push, ${cut.frames.length} when cut`);
  let bytes = 0;
  for (let i = 0; i < whole.frames.length; i++) {
    const a = whole.frames[i]!;
    const b = cut.frames[i]!;
    expect(NAME, a.type === b.type && a.body.equals(b.body), `frame ${i} differs when the stream is cut`);
    expect(NAME, Buffer.concat(frameParts(b) as Buffer[]).equals(b.body), `frame ${i}: its parts do not join to its body`);
    bytes += 8 + a.body.length;
  }
  expect(NAME, bytes <= stream.length, `frames hold ${bytes} bytes of a ${stream.length}-byte stream`);
  expect(NAME, (whole.error === undefined) === (cut.error === undefined), `one push ${whole.error ? 'fails' : 'succeeds'}, cut ${cut.error ? 'fails' : 'succeeds'}`);
  if (whole.error && cut.error) {
    expect(NAME, whole.error.code === cut.error.code && whole.error.message === cut.error.message, `errors differ: "${whole.error.message}" vs "${cut.error.message}"`);
  }

  // what the peer's frames decode to
  for (const f of whole.frames) {
    attempt(NAME, 'decodeChannelFrame', () => decodeChannelFrame(f), CLEAN);
  }
}
