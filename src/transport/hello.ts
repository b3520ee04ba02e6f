/**
 * The HELLO handshake body: what the backup needs to build a replica and to watch the
 * primary. It arrives from the network, so every field is checked before use.
 */
import type { DomainConfig } from '../config/domain.js';
import { isModeId, MODE_IDS, type ModeId } from '../engine/modes/ids.js';
import { isValidBlockBytes, type FgbiParams } from './fgbi.js';
import { parseTransfer, transferStages, type TransferId, type TransferSettings } from './transfer.js';

export const PROTOCOL_VERSION = 2;

/**
 * Passes over the guest's memory a precopy makes before its final copy (the first checkpoint):
 * libxc's default precopy policy stops and copies after 5 iterations (xc_sr_save.c,
 * SPP_MAX_ITERATIONS), and the sim's precopy makes at most as many rounds.
 */
export const PRECOPY_MAX_PASSES = 5;

/**
 * What one checkpoint's content may total before its SEAL, for a guest of `memoryMiB` with
 * `diskBytes` of disk: the precopy's passes and the final copy, each at most the whole memory (1%
 * on top for the records' own bytes), the disk's initial copy and an epoch's writes, and 64 MiB.
 * The primary never sends more (a precopy stops after PRECOPY_MAX_PASSES), so a peer past it
 * broke the protocol; one definition for both sides, so that their bounds agree.
 */
export function maxSealContentBytes(memoryMiB: number, diskBytes = 0): number {
  return Math.ceil((PRECOPY_MAX_PASSES + 1) * memoryMiB * 1048576 * 1.01) + 2 * diskBytes + (64 << 20);
}

/** {@link maxSealContentBytes} in words, for error messages and docs. */
export const SEAL_CONTENT_BOUND_TEXT = `${PRECOPY_MAX_PASSES + 1} x memory (+1%) + 2 x disk + 64 MiB`;

export interface HelloBody {
  protocol: number;
  host: string;
  mode: ModeId;
  uuid: string;
  domain: DomainConfig;
  intervalMs: number;
  heartbeatMs: number;
  failoverTimeoutMs: number;
  /** The checkpoint transfer (src/transport/transfer.ts); absent in an older primary's HELLO: full. */
  transfer: TransferId;
  /** With fgbi: the block size and the bound of each side's shadow. */
  fgbi?: FgbiParams;
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

/** The transfer a HELLO asks for. */
export function helloTransfer(h: Pick<HelloBody, 'transfer' | 'fgbi'>): TransferSettings {
  return { id: h.transfer, ...(h.fgbi ? { fgbi: h.fgbi } : {}) };
}

function parseHelloTransfer(o: Record<string, unknown>): Pick<HelloBody, 'transfer' | 'fgbi'> {
  if (o.transfer === undefined) return { transfer: 'full' };
  if (typeof o.transfer !== 'string') fail('transfer', o.transfer, 'full, or a comma list of fgbi and compress');
  const t = parseTransfer(o.transfer);
  if (!t.ok) fail('transfer', o.transfer, t.reason.replace(/^.*; expected /, ''));
  if (!transferStages(t.id).includes('fgbi')) {
    if (o.fgbi !== undefined) fail('fgbi', o.fgbi, `no fgbi parameters with transfer ${t.id}`);
    return { transfer: t.id };
  }
  const f = o.fgbi as Record<string, unknown> | undefined;
  if (!f || typeof f !== 'object' || Array.isArray(f)) fail('fgbi', f, 'an object {blockBytes, shadowCapBytes}');
  if (typeof f.blockBytes !== 'number' || !isValidBlockBytes(f.blockBytes)) fail('fgbi.blockBytes', f.blockBytes, 'a power of two from 16 to 2048');
  const cap = f.shadowCapBytes;
  if (typeof cap !== 'number' || !Number.isInteger(cap) || cap < 0 || cap > Number.MAX_SAFE_INTEGER) fail('fgbi.shadowCapBytes', cap, 'a non-negative integer (bytes)');
  return { transfer: t.id, fgbi: { blockBytes: f.blockBytes, shadowCapBytes: cap } };
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
  const uuidRe = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
  const domainUuid = d.uuid;
  if (domainUuid !== undefined && (typeof domainUuid !== 'string' || !uuidRe.test(domainUuid))) fail('domain.uuid', domainUuid, 'a uuid');
  // Only the fields checked here are kept: the backup builds its replica from this domain.
  let sim: DomainConfig['sim'] | undefined;
  if (d.sim !== undefined) {
    const s = d.sim as Record<string, unknown>;
    if (typeof s !== 'object' || s === null || Array.isArray(s)) fail('domain.sim', s, 'an object');
    if (!['kv', 'memstress', 'idle'].includes(s.workload as string)) fail('domain.sim.workload', s.workload, 'kv, memstress or idle');
    if (typeof s.dirtyMiBPerSec !== 'number' || !(s.dirtyMiBPerSec >= 0 && s.dirtyMiBPerSec <= 4096)) fail('domain.sim.dirtyMiBPerSec', s.dirtyMiBPerSec, 'a number from 0 to 4096');
    // the range of sim_seed (src/config/domain.ts LIMITS.simSeed): an unsigned 32-bit seed
    if (typeof s.seed !== 'number' || !Number.isInteger(s.seed) || s.seed < 0 || s.seed > 0xffff_ffff) fail('domain.sim.seed', s.seed, 'an integer from 0 to 4294967295');
    if (s.nondeterminism !== undefined && !(typeof s.nondeterminism === 'number' && s.nondeterminism >= 0 && s.nondeterminism <= 1)) {
      fail('domain.sim.nondeterminism', s.nondeterminism, 'a number from 0 to 1');
    }
    sim = { workload: s.workload as NonNullable<DomainConfig['sim']>['workload'], dirtyMiBPerSec: s.dirtyMiBPerSec, seed: s.seed };
    if (s.nondeterminism !== undefined) sim.nondeterminism = s.nondeterminism as number;
    if (s.service !== undefined) {
      const v = s.service as Record<string, unknown>;
      if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('domain.sim.service', v, 'an object {host, port}');
      if (typeof v.host !== 'string' || !/^[A-Za-z0-9.:\-[\]]{1,255}$/.test(v.host)) fail('domain.sim.service.host', v.host, 'a host');
      if (typeof v.port !== 'number' || !Number.isInteger(v.port) || v.port < 1 || v.port > 65535) fail('domain.sim.service.port', v.port, 'an integer from 1 to 65535');
      sim.service = { host: v.host, port: v.port };
    }
  }
  const domain: DomainConfig = {
    name,
    ...(typeof domainUuid === 'string' ? { uuid: domainUuid.toLowerCase() } : {}),
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
    ...parseHelloTransfer(o),
    netbuf: o.netbuf === true,
    disk: o.disk === true,
    ...(o.diskBytes !== undefined ? { diskBytes: int(o, 'diskBytes', 0, Number.MAX_SAFE_INTEGER) } : {}),
    ...(o.backendConfig !== undefined ? { backendConfig: str(o, 'backendConfig', /^[\s\S]{1,1048576}$/, 'a configuration of at most 1 MiB') } : {}),
  };
}
