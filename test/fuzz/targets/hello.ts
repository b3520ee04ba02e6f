/**
 * Fuzz target: the HELLO a backup receives from a primary (src/transport/channel-records.ts
 * decodeHello, then src/transport/hello.ts parseHello), as src/failover/backup.ts reads it.
 *
 * Input: the HELLO frame's body (UTF-8 JSON).
 * Clean: a ProtocolError from decodeHello; a plain Error whose message starts "HELLO: " from
 * parseHello. A HELLO that is accepted must be what HelloBody says it is: the backup builds
 * a replica from its domain, so a field that passed unchecked is a finding too.
 */
import { ProtocolError } from '../../../src/transport/framing.js';
import { decodeHello } from '../../../src/transport/channel-records.js';
import { parseHello, PROTOCOL_VERSION, type HelloBody } from '../../../src/transport/hello.js';
import { isModeId } from '../../../src/engine/modes/ids.js';
import { LIMITS } from '../../../src/config/domain.js';
import { attempt, expect, type CleanRule } from './_check.js';

const NAME = 'hello';
export const sync = true;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const int = (v: unknown, min: number, max: number) => typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

/** What HelloBody promises, checked field by field. Returns the first field that breaks it. */
export function helloViolation(h: HelloBody): string | undefined {
  if (h.protocol !== PROTOCOL_VERSION) return 'protocol';
  if (typeof h.host !== 'string' || h.host.length === 0) return 'host';
  if (!isModeId(h.mode)) return 'mode';
  if (typeof h.uuid !== 'string' || !UUID.test(h.uuid)) return 'uuid';
  if (!int(h.intervalMs, 1, 60000) || !int(h.heartbeatMs, 1, 60000) || !int(h.failoverTimeoutMs, h.heartbeatMs + 1, 600000)) return 'timing';
  if (typeof h.netbuf !== 'boolean' || typeof h.disk !== 'boolean') return 'netbuf/disk';
  if (h.diskBytes !== undefined && !int(h.diskBytes, 0, Number.MAX_SAFE_INTEGER)) return 'diskBytes';
  if (h.backendConfig !== undefined && typeof h.backendConfig !== 'string') return 'backendConfig';
  const d = h.domain as unknown as Record<string, unknown>;
  if (typeof d !== 'object' || d === null) return 'domain';
  if (typeof d.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(d.name)) return 'domain.name';
  if (!int(d.memoryMiB, 1, 1 << 20)) return 'domain.memoryMiB';
  if (!int(d.vcpus, 1, 128)) return 'domain.vcpus';
  if (!Array.isArray(d.disks) || !Array.isArray(d.vifs)) return 'domain.disks/vifs';
  if (d.uuid !== undefined && (typeof d.uuid !== 'string' || !UUID.test(d.uuid))) return 'domain.uuid';
  if (d.sim !== undefined) {
    const s = d.sim as Record<string, unknown>;
    if (typeof s !== 'object' || s === null) return 'domain.sim';
    if (!['kv', 'memstress', 'idle'].includes(s.workload as string)) return 'domain.sim.workload';
    if (typeof s.dirtyMiBPerSec !== 'number' || !(s.dirtyMiBPerSec >= 0 && s.dirtyMiBPerSec <= 4096)) return 'domain.sim.dirtyMiBPerSec';
    if (!int(s.seed, LIMITS.simSeed.min, LIMITS.simSeed.max)) return 'domain.sim.seed';
    if (s.nondeterminism !== undefined && !(typeof s.nondeterminism === 'number' && s.nondeterminism >= 0 && s.nondeterminism <= 1)) return 'domain.sim.nondeterminism';
    if (s.service !== undefined) {
      const v = s.service as Record<string, unknown>;
      if (typeof v !== 'object' || v === null || typeof v.host !== 'string' || !int(v.port, 1, 65535)) return 'domain.sim.service';
    }
  }
  return undefined;
}

export function fuzz(data: Buffer): void {
  const body = attempt(NAME, 'decodeHello', () => decodeHello(data), { classes: [ProtocolError] });
  if (!body.ok) return;
  const rule: CleanRule = { plain: /^HELLO: / };
  const hello = attempt(NAME, 'parseHello', () => parseHello(body.value), rule);
  if (!hello.ok) return;
  const bad = helloViolation(hello.value);
  expect(NAME, bad === undefined, `parseHello accepted a HELLO whose ${bad} is not what HelloBody says: ${JSON.stringify((hello.value as unknown as Record<string, unknown>)[bad?.split('.')[0] ?? ''])?.slice(0, 200)}`);
}
