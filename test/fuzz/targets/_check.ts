/**
 * What the fuzz targets count as a clean refusal, and how they report anything else.
 *
 * A parser of outside input may return, or throw its own error class with a message that names
 * the problem. Anything else it does is a finding, reported by throwing a {@link Finding} out
 * of the target's `fuzz` function (Jazzer.js then saves the input as a crash):
 *  - a throw of a non-Error, or of an Error of another class: above all TypeError and
 *    RangeError from the parser's own code (a property read on null, a Buffer read out of
 *    range), which is a bug, not a refusal;
 *  - a clean-looking error with no message worth the name;
 *  - an answer that breaks the parser's own contract (the targets check a few: the same bytes
 *    cut differently give the same frames, a decoded record encodes back to itself, ...);
 *  - a hang, caught by Jazzer.js's per-input --timeout (and by the corpus replay's clock).
 */

/** An input that made a parser misbehave; the message says how, and the cause is the original. */
export class Finding extends Error {
  constructor(target: string, what: string, cause?: unknown) {
    super(`${target}: ${what}${cause === undefined ? '' : `\n  caused by: ${describe(cause)}`}`, cause === undefined ? undefined : { cause });
    this.name = 'Finding';
  }
}

/** An error class a parser throws on purpose. */
export type ErrorClass = abstract new (...args: any[]) => Error;

/** A thrown value for a message: its class, message and the top of its stack. */
export function describe(err: unknown): string {
  if (!(err instanceof Error)) {
    let text: string;
    try {
      text = String(err);
    } catch {
      text = '(cannot be shown)';
    }
    return `a thrown ${err === null ? 'null' : typeof err}: ${text.slice(0, 200)}`;
  }
  const frames = (err.stack ?? '').split('\n').filter((l) => /^\s+at /.test(l)).slice(0, 6);
  return `${err.constructor?.name ?? err.name}: ${err.message.slice(0, 500)}${frames.length ? '\n' + frames.join('\n') : ''}`;
}

/** The class of `err` is exactly Error (the refusals that use plain Error, with a fixed prefix). */
export function isPlainError(err: unknown): err is Error {
  return err instanceof Error && Object.getPrototypeOf(err) === Error.prototype;
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: Error };

export interface CleanRule {
  /** The error classes this parser throws on purpose. */
  classes?: readonly ErrorClass[];
  /** Or: a plain Error whose message matches this (e.g. /^HELLO: /). */
  plain?: RegExp;
}

/** Whether `err` is a clean refusal under `rule`: its class and a message that says something. */
export function isClean(err: unknown, rule: CleanRule): err is Error {
  if (!(err instanceof Error)) return false;
  const classOk = (rule.classes ?? []).some((k) => err instanceof k) || (rule.plain !== undefined && isPlainError(err) && rule.plain.test(err.message));
  return classOk && typeof err.message === 'string' && err.message.trim().length >= 10;
}

/**
 * Runs one parser call: its value, or the clean error it refused with. Anything else becomes a
 * {@link Finding} naming the target and the call.
 */
export function attempt<T>(target: string, call: string, f: () => T, rule: CleanRule): Outcome<T> {
  try {
    return { ok: true, value: f() };
  } catch (err) {
    if (isClean(err, rule)) return { ok: false, error: err };
    throw new Finding(target, `${call} threw something other than a clean error`, err);
  }
}

/** The async form of {@link attempt}. */
export async function attemptAsync<T>(target: string, call: string, f: () => Promise<T>, rule: CleanRule): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await f() };
  } catch (err) {
    if (isClean(err, rule)) return { ok: false, error: err };
    throw new Finding(target, `${call} threw something other than a clean error`, err);
  }
}

/** Throws a {@link Finding} unless `cond`. */
export function expect(target: string, cond: boolean, what: string): asserts cond {
  if (!cond) throw new Finding(target, what);
}

/**
 * Known open bugs, in code this fuzzing may not change (see docs/fuzzing.md, findings): a target
 * reports them like any other finding, unless XLHA_FUZZ_SKIP_KNOWN=1 (`npm run fuzz --
 * --skip-known`), which lets a long run explore past them. Each is named once when first passed.
 */
const skipKnown = process.env.XLHA_FUZZ_SKIP_KNOWN === '1';
const knownSeen = new Set<string>();
export function passKnown(id: string, detail: string): boolean {
  if (!skipKnown) return false;
  if (!knownSeen.has(id)) {
    knownSeen.add(id);
    console.error(`fuzz: known open bug ${id} passed over (first time): ${detail.slice(0, 200)}`);
  }
  return true;
}

/**
 * Messages of engine errors (TypeError, RangeError, Node's ERR_*), for errors that reach us only
 * as text (the control socket's answers). {@link engineErrorIn} tells them from a clean error
 * that quotes the input.
 */
export const ENGINE_ERROR_TEXT = /Cannot read properties of (?:undefined|null)|Cannot set properties of (?:undefined|null)|\S+ is not a function|\S+ is not iterable|\S+ is not a constructor|Cannot convert (?:object|undefined|null|a Symbol value|a BigInt value) to|Cannot destructure|Maximum call stack size exceeded|Invalid array length|Invalid string length|The value of "[^"]+" is out of range|Attempt to access memory outside buffer bounds|ERR_OUT_OF_RANGE|ERR_INVALID_ARG_TYPE|ERR_BUFFER_OUT_OF_BOUNDS|Do not know how to serialize a BigInt/;

/** The engine error text in `message`, unless it is only `input` quoted back. */
export function engineErrorIn(message: string, input: string): string | undefined {
  const m = ENGINE_ERROR_TEXT.exec(message);
  if (!m) return undefined;
  return input.includes(m[0]) ? undefined : m[0];
}

/**
 * Chunk boundaries for the differential checks: how to cut `n` bytes, from one control byte.
 * 0: not cut; otherwise fixed steps of 1..63 bytes, or (bit 6) steps from a small generator.
 */
export function cuts(ctl: number, n: number): number[] {
  const out: number[] = [];
  const step = ctl & 0x3f;
  if (step === 0) return out;
  let x = ctl * 2654435761 >>> 0;
  for (let at = 0; ; ) {
    let s = step;
    if (ctl & 0x40) {
      x = (x * 1103515245 + 12345) >>> 0;
      s = 1 + ((x >>> 16) % (step * 8));
    }
    at += s;
    if (at >= n) break;
    out.push(at);
  }
  return out;
}

/** `buf` cut at `points` (increasing), as views. */
export function split(buf: Buffer, points: readonly number[]): Buffer[] {
  const parts: Buffer[] = [];
  let at = 0;
  for (const p of points) {
    parts.push(buf.subarray(at, p));
    at = p;
  }
  parts.push(buf.subarray(at));
  return parts;
}
