/**
 * The HELLO handshake body: what the backup needs to build a replica and to watch the
 * primary. It arrives from the network, so every field is checked before use.
 */
import type { DomainConfig } from '../config/domain.js';
import { isModeId, MODE_IDS, type ModeId } from '../engine/modes/ids.js';

export const PROTOCOL_VERSION = 2;

export interface HelloBody {
  protocol: number;
  host: string;
  mode: ModeId;
  uuid: string;
  domain: DomainConfig;
  intervalMs: number;
  heartbeatMs: number;
  failoverTimeoutMs: number;
  transfer: 'full';
  netbuf: boolean;
  disk: boolean;
  diskBytes?: number;
  /** The primary backend's own configuration of the domain (xen: libxl JSON). */
  backendConfig?: string;
}

function fail(field: string, v: unknown, want: string): never {
  throw new Error(`HELLO: field ${field} = ${JSON.stringify(v)} is not valid: expected ${want}`);
}

function int(o: Record<string, unknown>, k: string, min: number, max: number): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail(k, v, `an integer from ${min} to ${max}`);
  return v;
}

function str(o: Record<string, unknown>, k: string, re: RegExp, want: string): string {
  const v = o[k];
  if (typeof v !== 'string' || !re.test(v)) fail(k, v, want);
  return v;
}

export function parseHello(o: Record<string, unknown>): HelloBody {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new Error(`HELLO: the body is ${o === null ? 'null' : Array.isArray(o) ? 'an array' : `a ${typeof o}`}, not a JSON object`);
  const protocol = int(o, 'protocol', 0, 0xffff);
  if (protocol !== PROTOCOL_VERSION) throw new Error(`HELLO: protocol version ${protocol} is not supported (this backup speaks ${PROTOCOL_VERSION})`);
  const mode = o.mode;
  if (!isModeId(mode)) fail('mode', mode, `one of ${MODE_IDS.join(', ')}`);
  const d = o.domain as Record<string, unknown> | undefined;
  if (!d || typeof d !== 'object' || Array.isArray(d)) fail('domain', d, 'an object');
  const name = str(d, 'name', /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'a domain name');
  const memoryMiB = int(d, 'memoryMiB', 1, 1 << 20);
  const vcpus = int(d, 'vcpus', 1, 128);
  const sim = d.sim as DomainConfig['sim'] | undefined;
  if (sim !== undefined) {
    if (typeof sim !== 'object' || sim === null) fail('domain.sim', sim, 'an object');
    if (!['kv', 'memstress', 'idle'].includes(sim.workload)) fail('domain.sim.workload', sim.workload, 'kv, memstress or idle');
    if (typeof sim.dirtyMiBPerSec !== 'number' || !(sim.dirtyMiBPerSec >= 0 && sim.dirtyMiBPerSec <= 4096)) fail('domain.sim.dirtyMiBPerSec', sim.dirtyMiBPerSec, 'a number from 0 to 4096');
    if (typeof sim.seed !== 'number' || !Number.isInteger(sim.seed)) fail('domain.sim.seed', sim.seed, 'an integer');
    if (sim.nondeterminism !== undefined && !(typeof sim.nondeterminism === 'number' && sim.nondeterminism >= 0 && sim.nondeterminism <= 1)) {
      fail('domain.sim.nondeterminism', sim.nondeterminism, 'a number from 0 to 1');
    }
    if (sim.service !== undefined) {
      const s = sim.service as unknown as Record<string, unknown>;
      str(s, 'host', /^[A-Za-z0-9.:\-[\]]{1,255}$/, 'a host');
      int(s, 'port', 1, 65535);
    }
  }
  const domain: DomainConfig = {
    ...(d as unknown as DomainConfig),
    name,
    memoryMiB,
    vcpus,
    disks: [],
    vifs: [],
    ...(sim ? { sim } : {}),
  };
  const heartbeatMs = int(o, 'heartbeatMs', 1, 60000);
  const failoverTimeoutMs = int(o, 'failoverTimeoutMs', heartbeatMs + 1, 600000);
  return {
    protocol,
    host: str(o, 'host', /^.{1,255}$/, 'a host name'),
    mode,
    uuid: str(o, 'uuid', /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, 'a uuid'),
    domain,
    intervalMs: int(o, 'intervalMs', 1, 60000),
    heartbeatMs,
    failoverTimeoutMs,
    transfer: 'full',
    netbuf: o.netbuf === true,
    disk: o.disk === true,
    ...(o.diskBytes !== undefined ? { diskBytes: int(o, 'diskBytes', 0, Number.MAX_SAFE_INTEGER) } : {}),
    ...(o.backendConfig !== undefined ? { backendConfig: str(o, 'backendConfig', /^[\s\S]{1,1048576}$/, 'a configuration of at most 1 MiB') } : {}),
  };
}
