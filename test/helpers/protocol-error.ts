import { ProtocolError } from '../../src/transport/framing.js';

/** Runs `fn` and expects a ProtocolError with `code` whose message contains every one of `parts`. */
export function expectProtocolError(fn: () => unknown, code: string, ...parts: string[]): { ok: boolean; message: string } {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof ProtocolError)) return { ok: false, message: `not a ProtocolError: ${String(err)}` };
    const missing = parts.filter((p) => !err.message.includes(p));
    if (err.code !== code || missing.length > 0) {
      return { ok: false, message: `got ${err.code} "${err.message}", wanted ${code} with ${JSON.stringify(parts)}` };
    }
    return { ok: true, message: err.message };
  }
  return { ok: false, message: 'no error thrown' };
}
