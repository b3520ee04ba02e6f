/**
 * Fuzz target: the daemon's control socket (src/daemon/daemon.ts Daemon.answer: one JSON
 * request per line; its `protect` options are src/daemon/protect.ts parseProtectOptions).
 *
 * Input: up to 4 request lines, separated by newlines, answered in turn by one daemon, as its
 * socket does. The daemon runs on a stub backend that has no domains and creates none, so no
 * request gets past validation into real work (nothing connects anywhere, nothing is started).
 * Clean: every line gets an answer (the promise never rejects) that serialises to one JSON
 * line, {ok: true, result} or {ok: false, error} with an error that says something and is
 * not an engine error in disguise (TypeError text: "Cannot read properties of ...", ...).
 * The `protect` options are also given to parseProtectOptions directly: a plain Error whose
 * message starts "protect: " is clean.
 */
import os from 'node:os';
import path from 'node:path';
import { Daemon } from '../../../src/daemon/daemon.js';
import type { ControlResponse } from '../../../src/daemon/control.js';
import { parseProtectOptions } from '../../../src/daemon/protect.js';
import { PeerKeys } from '../../../src/security/peers.js';
import { silentLogger } from '../../../src/util/log.js';
import { DomainNotFoundError, type HypervisorBackend } from '../../../src/backend/types.js';
import { attempt, engineErrorIn, expect, Finding, passKnown } from './_check.js';

const NAME = 'control';
export const sync = false;
const MAX_LINES = 4;

const refuse = async (): Promise<never> => {
  throw new Error('the fuzz backend has no domains and creates none');
};

/** A backend with no domains, that creates none: every request stops at its validation. */
function stubBackend(): HypervisorBackend {
  return {
    kind: 'sim',
    features: { outputBuffering: true, outputEvents: true, ingressTap: true, runnableReplica: true, diskReplication: true, maxInFlight: 2 },
    listDomains: async () => [],
    findDomain: async (ref) => {
      throw new DomainNotFoundError(ref);
    },
    getDomainConfig: refuse,
    createDomain: refuse,
    destroyDomain: refuse,
    pause: refuse,
    unpause: refuse,
    openSave: refuse,
    createReplica: refuse,
    onDomainEvent: () => () => {},
    dispose: async () => {},
  };
}

const log = silentLogger();
const dir = path.join(os.tmpdir(), 'xl-ha-fuzz-control-nonexistent');

function newDaemon(): { answer(line: string): Promise<ControlResponse> } {
  const d = new Daemon({ backend: stubBackend(), hostName: 'h', stateDir: dir, controlPath: path.join(dir, 'c.sock'), keys: new PeerKeys(path.join(dir, 'keys'), 'h'), log });
  return d as unknown as { answer(line: string): Promise<ControlResponse> };
}

export async function fuzz(data: Buffer): Promise<void> {
  const lines = data.toString('utf8').split('\n').slice(0, MAX_LINES);
  const daemon = newDaemon();
  for (const [i, line] of lines.entries()) {
    let resp: ControlResponse;
    try {
      resp = await daemon.answer(line);
    } catch (err) {
      throw new Finding(NAME, `line ${i}: the daemon's answer rejected instead of answering`, err);
    }
    let text: string;
    try {
      text = JSON.stringify(resp);
    } catch (err) {
      throw new Finding(NAME, `line ${i}: the answer does not serialise to JSON (the daemon would throw writing it)`, err);
    }
    expect(NAME, typeof text === 'string' && !text.includes('\n'), `line ${i}: the answer is not one JSON line`);
    if (resp.ok) continue;
    expect(NAME, typeof resp.error === 'string' && resp.error.trim().length >= 5, `line ${i}: an error answer that says nothing: ${text.slice(0, 200)}`);
    // open: daemon.ts dispatch calls String() on request fields (text, source, domain), which
    // throws a TypeError for an object whose toString and valueOf are not functions
    const knownOpen = resp.error === 'Cannot convert object to primitive value' && passKnown('control/string-of-object-field', line);
    expect(NAME, knownOpen || engineErrorIn(resp.error, line) === undefined, `line ${i}: the answer is an engine error in disguise: ${resp.error.slice(0, 300)}`);

    let req: unknown;
    try {
      req = JSON.parse(line);
    } catch {
      continue;
    }
    if (typeof req === 'object' && req !== null && (req as { cmd?: unknown }).cmd === 'protect') {
      attempt(NAME, 'parseProtectOptions', () => parseProtectOptions((req as { options?: unknown }).options), { plain: /^protect: / });
    }
  }
}
