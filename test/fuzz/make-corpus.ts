/**
 * Writes the fuzz targets' seed corpora (test/fuzz/corpus/<target>/) and dictionaries
 * (test/fuzz/corpus/<target>.dict): small real inputs, made with the project's own encoders
 * so that they are what a peer, a user or the CLI really sends. The files are committed; run
 * this again (node dist/test/fuzz/make-corpus.js) only when a format changes, and commit what
 * it writes. It checks that every seed is accepted where it should be.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeFrame } from '../../src/transport/framing.js';
import {
  encodeAck,
  encodeDiskWrites,
  encodeGoodbye,
  encodeHeartbeat,
  encodeHello,
  encodeHelloAck,
  encodeNack,
  encodeSeal,
  encodeSide,
  encodeSideAck,
  XLHA_REC,
} from '../../src/transport/channel-records.js';
import { COLO_SIDE, encodeColoInput, encodeColoOutput } from '../../src/transport/colo-records.js';
import { XenStreamParser, XenStreamWriter } from '../../src/transport/xenstream.js';
import {
  DOMAIN_TYPE,
  encodeCheckpointState,
  encodeDomainHeader,
  encodeImageHeader,
  encodeLibxlHeader,
  encodePageData,
  encodeVcpuBasic,
  PAGE_SIZE,
  PAGE_TYPE,
  REC_TYPE_OPTIONAL,
  XC_REC,
  XL_REC,
} from '../../src/transport/xen-records.js';
import { formatPeerFile, parsePeerFile } from '../../src/security/peers.js';
import { parseXlCfg } from '../../src/config/xlcfg.js';
import { domainConfigFromCfg } from '../../src/config/domain.js';
import { parseHello } from '../../src/transport/hello.js';
import { checkReplicaConfig } from '../../src/backend/xen/replica-policy.js';
import { DECODERS as CHANNEL_DECODERS } from './targets/channel-records.js';
import { DECODERS as XEN_DECODERS } from './targets/xen-records.js';
import { UNIT_SEPARATOR } from './targets/xen-stream.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** test/fuzz/corpus in the source tree (this file runs from dist/test/fuzz). */
export const CORPUS_ROOT = path.resolve(here, '..', '..', '..', 'test', 'fuzz', 'corpus');

const seeds = new Map<string, Map<string, Buffer>>();
function seed(target: string, name: string, bytes: Buffer | string): void {
  if (!seeds.has(target)) seeds.set(target, new Map());
  seeds.get(target)!.set(name, Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes, 'utf8'));
}
const dicts = new Map<string, string[]>();
/** A libFuzzer dictionary entry: printable ASCII as is, the rest as \xNN. */
function word(target: string, bytes: Buffer | string): void {
  const b = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes, 'utf8');
  let s = '';
  for (const c of b) s += c >= 0x20 && c < 0x7f && c !== 0x22 && c !== 0x5c ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`;
  if (!dicts.has(target)) dicts.set(target, []);
  const list = dicts.get(target)!;
  if (!list.includes(s)) list.push(s);
}
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0, 0);
  return b;
};
const page = (fill: number) => Buffer.alloc(PAGE_SIZE, fill);

// ---------------------------------------------------------------------------
// HELLO bodies, as src/daemon/protect.ts sends them

const UUID = '5a9c7e52-6c45-4f0b-9b2f-1f1a6c2b3d4e';
const helloRemusSim = {
  protocol: 2,
  host: 'hostA',
  mode: 'remus',
  uuid: UUID,
  domain: { name: 'web', uuid: UUID, memoryMiB: 64, vcpus: 1, disks: [], vifs: [], sim: { workload: 'kv', dirtyMiBPerSec: 8, seed: 1, service: { host: '127.0.0.1', port: 7000 } } },
  intervalMs: 25,
  heartbeatMs: 50,
  failoverTimeoutMs: 150,
  transfer: 'full',
  netbuf: true,
  disk: true,
  diskBytes: 16777216,
};
const helloColoSim = { ...helloRemusSim, mode: 'colo', domain: { ...helloRemusSim.domain, name: 'db-1', sim: { workload: 'kv', dirtyMiBPerSec: 2, seed: 7, nondeterminism: 0.05, service: { host: '::1', port: 7001 } } } };
const helloKemari = { ...helloRemusSim, mode: 'kemari', netbuf: false, disk: false, domain: { name: 'idle0', memoryMiB: 8, vcpus: 2, disks: [], vifs: [], sim: { workload: 'idle', dirtyMiBPerSec: 0, seed: 0 } } };
const libxlJson = {
  c_info: { type: 'pv', name: 'domu1', uuid: UUID },
  b_info: { max_vcpus: 1, max_memkb: 131072, target_memkb: 131072, 'type.pv': { kernel: '/xenlab/vmlinuz', ramdisk: '/xenlab/domu-initrd.cpio.gz', cmdline: 'console=hvc0' } },
  disks: [{ pdev_path: '/srv/xen/domu1.img', vdev: 'xvda', format: 'raw', readwrite: 1 }],
  nics: [{ devid: 0, mac: '00:16:3e:00:99:02', bridge: 'xenbr0', script: 'vif-bridge', backend_domid: 0 }],
};
const helloXen = { ...helloRemusSim, host: 'hostA', domain: { name: 'domu1', memoryMiB: 128, vcpus: 1, disks: [], vifs: [] }, backendConfig: JSON.stringify(libxlJson) };

for (const [name, h] of Object.entries({ 'remus-sim': helloRemusSim, 'colo-sim': helloColoSim, 'kemari-idle': helloKemari, 'remus-xen': helloXen })) {
  seed('hello', `${name}.json`, encodeHello(h));
  parseHello(h as unknown as Record<string, unknown>);
}
seed('hello', 'old-protocol.json', JSON.stringify({ ...helloRemusSim, protocol: 1 }));
for (const w of ['"protocol":', '"host":', '"mode":', '"uuid":', '"domain":', '"name":', '"memoryMiB":', '"vcpus":', '"sim":', '"workload":', '"dirtyMiBPerSec":', '"seed":', '"nondeterminism":', '"service":', '"port":', '"intervalMs":', '"heartbeatMs":', '"failoverTimeoutMs":', '"transfer":', '"netbuf":', '"disk":', '"diskBytes":', '"backendConfig":', '"disks":', '"vifs":', '"remus"', '"kemari"', '"colo"', '"llm"', '"kv"', '"memstress"', '"idle"', '"full"', 'null', 'true', 'false', '[]', '{}', '-1', '1e308', '0.5', '"__proto__"', '"constructor"', '""', '\\u0000']) word('hello', w);

// ---------------------------------------------------------------------------
// Xen streams, as a checkpointed save writes them

function firstCheckpoint(opts: { version?: 2 | 3; domainType?: number; withState?: boolean } = {}): Buffer {
  const w = new XenStreamWriter();
  const parts = [w.begin({ domainType: opts.domainType ?? DOMAIN_TYPE.XLHA_SIM, xenMajor: 4, xenMinor: 17, imageVersion: opts.version ?? 3 })];
  parts.push(w.pageData([0, 1, 2, 0x1234], Buffer.concat([page(0xaa), page(0x55)]), [PAGE_TYPE.NOTAB, PAGE_TYPE.XTAB, PAGE_TYPE.L1TAB | PAGE_TYPE.LPINTAB, PAGE_TYPE.XALLOC]));
  parts.push(w.vcpuBasic(0, Buffer.alloc(64, 1)));
  if (opts.domainType === DOMAIN_TYPE.X86_HVM) {
    parts.push(w.record(XC_REC.HVM_CONTEXT, Buffer.alloc(24, 2)), w.record(XC_REC.HVM_PARAMS, Buffer.alloc(16, 3)));
  }
  parts.push(w.record(XC_REC.X86_TSC_INFO, Buffer.alloc(24)), w.record((REC_TYPE_OPTIONAL | 0x77) >>> 0, Buffer.from('optional, skipped')));
  parts.push(w.checkpoint({ ...(opts.withState ? { checkpointState: 2 } : {}), libxlRecords: [{ type: XL_REC.EMULATOR_CONTEXT, body: Buffer.from('qemu state') }] }));
  return Buffer.concat(parts);
}
function nextCheckpoint(fill: number): Buffer {
  const w = new XenStreamWriter();
  w.begin({ domainType: DOMAIN_TYPE.XLHA_SIM, xenMajor: 4, xenMinor: 17 });
  return Buffer.concat([
    w.record(XC_REC.CHECKPOINT_DIRTY_PFN_LIST, Buffer.alloc(16)),
    w.pageData([1], page(fill)),
    w.vcpuBasic(0, Buffer.alloc(64, fill)),
    w.checkpoint({ checkpointState: 3 }),
  ]);
}
function endOfStream(): Buffer {
  const w = new XenStreamWriter();
  w.begin({ domainType: DOMAIN_TYPE.XLHA_SIM, xenMajor: 4, xenMinor: 17 });
  return Buffer.concat([w.pageData([3], page(9)), w.end({ libxlRecords: [{ type: XL_REC.EMULATOR_XENSTORE_DATA, body: Buffer.from('xenstore\0') }] })]);
}
const units = (...u: Buffer[]) => {
  const out: Buffer[] = [];
  u.forEach((x, i) => out.push(...(i ? [UNIT_SEPARATOR] : []), x));
  return Buffer.concat(out);
};
const stream3 = units(firstCheckpoint({ withState: true }), nextCheckpoint(0x11), endOfStream());
seed('xen-stream', 'v3-three-units', Buffer.concat([Buffer.from([0x00]), stream3]));
seed('xen-stream', 'v3-three-units-cut7', Buffer.concat([Buffer.from([0x07]), stream3]));
seed('xen-stream', 'v3-three-units-cut-random', Buffer.concat([Buffer.from([0x4d]), stream3]));
seed('xen-stream', 'v2-pv', Buffer.concat([Buffer.from([0x03]), units(firstCheckpoint({ version: 2, domainType: DOMAIN_TYPE.X86_PV }), nextCheckpoint(0x22))]));
seed('xen-stream', 'v3-hvm', Buffer.concat([Buffer.from([0x41]), firstCheckpoint({ domainType: DOMAIN_TYPE.X86_HVM })]));
for (const [name, s] of seeds.get('xen-stream')!) {
  const p = new XenStreamParser();
  for (const u of s.subarray(1).toString('latin1').split(UNIT_SEPARATOR.toString('latin1'))) p.parseCheckpoint(Buffer.from(u, 'latin1'));
  if (p.checkpointsParsed < 1) throw new Error(`seed ${name} parses no checkpoint`);
}
for (const w of [encodeLibxlHeader().subarray(0, 8), Buffer.from('XENF'), Buffer.alloc(8, 0xff), UNIT_SEPARATOR]) word('xen-stream', w);
for (const t of [...Object.values(XC_REC), ...Object.values(XL_REC), REC_TYPE_OPTIONAL]) word('xen-stream', u32(t));
for (const t of [DOMAIN_TYPE.X86_PV, DOMAIN_TYPE.X86_HVM, DOMAIN_TYPE.XLHA_SIM, 0xf0000000, 0xe0000000, 0x80000000]) word('xen-stream', u32(t));

// the record decoders one by one
const xen = (kind: (typeof XEN_DECODERS)[number], body: Buffer) => Buffer.concat([Buffer.from([XEN_DECODERS.indexOf(kind)]), body]);
seed('xen-records', 'libxl-header', xen('libxl-header', encodeLibxlHeader()));
seed('xen-records', 'image-header-v3', xen('image-header', encodeImageHeader()));
seed('xen-records', 'image-header-v2', xen('image-header', encodeImageHeader({ version: 2 })));
seed('xen-records', 'domain-header-hvm', xen('domain-header', encodeDomainHeader({ type: DOMAIN_TYPE.X86_HVM, xenMajor: 4, xenMinor: 17 })));
seed('xen-records', 'page-data', xen('page-data', encodePageData({ pfns: [5, 2 ** 40, 7], types: [PAGE_TYPE.NOTAB, PAGE_TYPE.XTAB, PAGE_TYPE.L4TAB], data: Buffer.concat([page(1), page(2)]) })));
seed('xen-records', 'page-data-no-data', xen('page-data', encodePageData({ pfns: [1, 2, 3], types: [PAGE_TYPE.XTAB, PAGE_TYPE.BROKEN, PAGE_TYPE.XALLOC], data: Buffer.alloc(0) })));
seed('xen-records', 'vcpu-basic', xen('vcpu-basic', encodeVcpuBasic(3, Buffer.alloc(32, 7))));
seed('xen-records', 'checkpoint-state', xen('checkpoint-state', encodeCheckpointState(1)));
for (const w of [encodeLibxlHeader().subarray(0, 8), Buffer.from('XENF'), Buffer.alloc(8, 0xff), u32(0x10000000), u32(0xf0000000), u32(0xd0000000), u32(1024), u32(0)]) word('xen-records', w);

// ---------------------------------------------------------------------------
// channel frames, as a primary and its backup exchange them

const seal = encodeSeal({ epoch: 1, contentBytes: 4096, contentFrames: 2, flags: 1, crc32: 0xdeadbeef });
const bodies: Record<string, Buffer> = {
  HELLO: encodeHello(helloRemusSim),
  HELLO_ACK: encodeHelloAck({ ok: true, host: 'hostB', replica: { domid: 3 } }),
  XEN_STREAM: firstCheckpoint(),
  CHECKPOINT_SEAL: seal,
  CHECKPOINT_ACK: encodeAck({ epoch: 1, applyMicros: 1234 }),
  CHECKPOINT_NACK: encodeNack({ epoch: 2, reason: 'seal crc32 mismatch' }),
  HEARTBEAT: encodeHeartbeat({ seq: 9, sentAtMs: 1_700_000_000_000, lastEpoch: 1 }),
  DISK_WRITES: encodeDiskWrites([{ offset: 0, data: Buffer.alloc(512, 1) }, { offset: 1 << 20, data: Buffer.from('tail') }]),
  GOODBYE: encodeGoodbye('protection stopped by the administrator'),
  SIDE: encodeSide({ seq: 1, kind: COLO_SIDE.INPUT, payload: encodeColoInput([{ index: 10, conn: 1, data: Buffer.from('PUT k v\n') }, { index: 11, conn: 2, data: Buffer.from('GET k\n') }]) }),
  SIDE_ACK: encodeSideAck({ seq: 1 }),
};
const chan = (kind: (typeof CHANNEL_DECODERS)[number], body: Buffer) => Buffer.concat([Buffer.from([CHANNEL_DECODERS.indexOf(kind)]), body]);
for (const [k, b] of Object.entries(bodies)) seed('channel-records', k.toLowerCase().replace(/_/g, '-'), chan(k as keyof typeof XLHA_REC, b));
seed('channel-records', 'heartbeat-no-epoch', chan('HEARTBEAT', encodeHeartbeat({ seq: 1, sentAtMs: 5, lastEpoch: null })));
seed('channel-records', 'colo-input', chan('COLO_INPUT', encodeColoInput([{ index: 0, conn: 3, data: Buffer.from('hello') }])));
seed('channel-records', 'colo-output', chan('COLO_OUTPUT', encodeColoOutput({ epoch: 4, packets: [{ conn: 3, data: Buffer.from('OK\n') }, { conn: 4, data: Buffer.alloc(0) }] })));
seed('channel-records', 'unknown-type', chan('UNKNOWN', Buffer.concat([u32(0x584c48ff), Buffer.from('x')])));
for (const t of Object.values(XLHA_REC)) word('channel-records', u32(t));
for (const w of [Buffer.alloc(8, 0xff), u32(0xffffffff), Buffer.from([0, 0, 0x20, 0]), Buffer.from('{"ok":true}'), Buffer.from([0xc3, 0x28])]) word('channel-records', w);

// a session's frames on the socket: control byte (how to cut), then the stream
const session = Buffer.concat([
  encodeFrame(XLHA_REC.HELLO, bodies.HELLO!),
  encodeFrame(XLHA_REC.HELLO_ACK, bodies.HELLO_ACK!),
  encodeFrame(XLHA_REC.XEN_STREAM, bodies.XEN_STREAM!),
  encodeFrame(XLHA_REC.DISK_WRITES, bodies.DISK_WRITES!),
  encodeFrame(XLHA_REC.CHECKPOINT_SEAL, seal),
  encodeFrame(XLHA_REC.CHECKPOINT_ACK, bodies.CHECKPOINT_ACK!),
  encodeFrame(XLHA_REC.HEARTBEAT, bodies.HEARTBEAT!),
  encodeFrame(XLHA_REC.GOODBYE, bodies.GOODBYE!),
]);
const sideTalk = Buffer.concat([
  encodeFrame(XLHA_REC.SIDE, bodies.SIDE!),
  encodeFrame(XLHA_REC.SIDE_ACK, bodies.SIDE_ACK!),
  encodeFrame(XLHA_REC.SIDE, encodeSide({ seq: 2, kind: COLO_SIDE.OUTPUT, payload: encodeColoOutput({ epoch: 1, packets: [{ conn: 1, data: Buffer.from('OK\n') }] }) })),
  encodeFrame(XLHA_REC.CHECKPOINT_NACK, bodies.CHECKPOINT_NACK!),
]);
seed('frame-reader', 'session', Buffer.concat([Buffer.from([0x00]), session]));
seed('frame-reader', 'session-cut5', Buffer.concat([Buffer.from([0x05]), session]));
seed('frame-reader', 'session-cut-random', Buffer.concat([Buffer.from([0x5f]), session]));
seed('frame-reader', 'colo-side-small-limit', Buffer.concat([Buffer.from([0x83]), sideTalk]));
seed('frame-reader', 'truncated', Buffer.concat([Buffer.from([0x02]), session.subarray(0, 200)]));
for (const t of Object.values(XLHA_REC)) word('frame-reader', u32(t));
for (const w of [u32(0xffffffff), u32(256), u32(257), u32(64 * 1024 * 1024 + 1), Buffer.alloc(8)]) word('frame-reader', w);

// ---------------------------------------------------------------------------
// xl.cfg files, as users write them

const cfgs: Record<string, string> = {
  'domu1-pv.cfg': `name     = "domu1"
type     = "pv"
kernel   = "/xenlab/vmlinuz"
ramdisk  = "/xenlab/domu-initrd.cpio.gz"
extra    = "console=hvc0 loglevel=4"
memory   = 128
maxmem   = 128
vcpus    = 1
on_crash = "preserve"
vif      = [ "bridge=xenbr0,mac=00:16:3e:00:99:02" ]
`,
  'remus.cfg': `# a PV guest protected by remus
name = "web"
uuid = "3F2504E0-4F89-11D3-9A0C-0305E82C3301"
memory = 512
vcpus = 2
disk = [ '/srv/xen/web.img,raw,xvda,rw',
         'format=raw, vdev=xvdb, access=ro, target=/srv/xen/data,with,commas.img', # trailing comment
       ]
vif = [ 'bridge=xenbr0' ]
ha = "remus"
ha_peer = "backup-host:7720"
ha_interval_ms = 40
ha_heartbeat_ms = 0x32
ha_failover_timeout_ms = "200"
ha_netbuf = "on"; ha_disk = 1
`,
  'kemari-ipv6.cfg': `name = 'db'
memory = 1024
ha = 'kemari'
ha_peer = '[fe80::1]:7721'
ha_kemari_min_gap_ms = 5
ha_netbuf = "yes"
ha_disk = "false"
ha_transfer = "full"
`,
  'colo-sim.cfg': `name = "kv0"
memory = 64
vcpus = 1
ha = "colo"
ha_peer = "10.0.0.2"
ha_colo_max_interval_ms = 2000
sim_workload = "kv"
sim_dirty_mibps = 1.5
sim_service = "127.0.0.1:7000"
sim_seed = 42
sim_nondeterminism = 0.01
`,
  'escapes.cfg': `\uFEFFname = "a\\"b\\\\c\\n"
extra = 'it\\'s \\t tabbed'
memory = +64
cpus = -1
weights = [ 1, 2.5, 0x10, "x" ]
`,
  'xl-grammar.cfg': `# what xl's own reader accepts besides the common forms
name = "vm2"
memory = 0400
extra = "console=hvc0"
extra += " quiet"
vnuma = [ [ "pnode=0", "size=512", "vcpus=0" ], [ "pnode=1" ] ]
cpus.soft = "0-3"
`,
  'errors.cfg': `ha_group = 'tier1'
name = vm1
memory = 512M
ha_peer = "x"
ha_intervall_ms = 5
disk = [ 'qcow2:/srv/a.img,xvda,w' ]
`,
};
for (const [name, text] of Object.entries(cfgs)) seed('xlcfg', name, text);
for (const name of ['domu1-pv.cfg', 'remus.cfg', 'kemari-ipv6.cfg', 'colo-sim.cfg']) domainConfigFromCfg(parseXlCfg(cfgs[name]!, name));
for (const w of ['name', 'uuid', 'memory', 'vcpus', 'disk', 'vif', 'ha', 'ha_peer', 'ha_interval_ms', 'ha_kemari_min_gap_ms', 'ha_colo_max_interval_ms', 'ha_transfer', 'ha_group', 'ha_netbuf', 'ha_disk', 'ha_heartbeat_ms', 'ha_failover_timeout_ms', 'ha_buffer_limit_mib', 'ha_on_buffer_full', 'sim_workload', 'sim_dirty_mibps', 'sim_service', 'sim_seed', 'sim_nondeterminism', ' = ', '"remus"', '"kemari"', '"colo"', '"llm"', '"throttle"', '"degrade"', 'target=', 'vdev=', 'access=', 'format=', 'raw', 'xvda', 'rw', 'ro', '0x', '[', ']', ',', '#', ';', '\\', "'", '"', '\n', '[::1]:', ':65536', '9007199254740993', '1.', '.5', '+=', '010', '09', 'vnuma', '[ [', '\\a', '\\v', 'a.b']) word('xlcfg', w);

// ---------------------------------------------------------------------------
// key files, as xl-ha keygen and pair write them

const key = Buffer.from('0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef', 'hex');
const peerFiles: Record<string, string> = {
  'keygen.key': formatPeerFile({ host: 'hostA', peer: 'hostB', key, address: { host: '10.0.0.2', port: 8003 }, allow: ['web', 'db-*'], disks: ['/srv/xen/*.img'], bridges: ['xenbr0'] }, 'Written by xl-ha keygen hostB.'),
  'pair-ipv6.key': formatPeerFile({ host: 'hostB', peer: 'hostA', key, address: { host: 'fe80::2', port: 7720 }, allow: ['*'], disks: [], bridges: ['*'] }, 'Written by xl-ha pair hostA.'),
  'minimal.key': `host = a\npeer = b\nkey = ${key.toString('hex').toUpperCase()}\n`,
  'quoted.key': `; comments both ways\n# here too\nhost = "a"\npeer = 'b.example'\nkey = ${key.toString('hex')}\nallow = web,db-? , cache*\ndisks = /dev/vg0/* /srv/xen/a+b@c:d.img\nbridges =\n`,
  'section.key': `host = a\npeer = b\nkey = ${key.toString('hex')}\n[extra]\nallow = x\n`,
};
for (const [name, text] of Object.entries(peerFiles)) seed('peer-file', name, text);
for (const name of ['keygen.key', 'pair-ipv6.key', 'minimal.key', 'quoted.key']) parsePeerFile(name, peerFiles[name]!);
for (const w of ['host', 'peer', 'key', 'address', 'allow', 'disks', 'bridges', ' = ', '\n', '[', ']', ';', '#', '"', "'", '*', '?', '..', '/', ',', '[]', '__proto__', 'constructor', 'true', 'false', 'null']) word('peer-file', w);

// ---------------------------------------------------------------------------
// control requests, as the CLI sends them (src/cli/main.ts)

const protectOptions = { domain: 'web', mode: 'remus', peer: { host: 'backup-host', port: 7720 }, intervalMs: 25, netbuf: true, disk: true, blackhole: false, heartbeatMs: 50, failoverTimeoutMs: 150 };
const control: Record<string, unknown[]> = {
  'ping-status-list': [{ cmd: 'ping' }, { cmd: 'status' }, { cmd: 'list' }],
  'protect-remus': [{ cmd: 'protect', options: protectOptions }],
  'protect-kemari-colo': [{ cmd: 'protect', options: { ...protectOptions, domain: 7, mode: 'kemari', minGapMs: 2, inFlight: 2, allowUnsafe: true } }, { cmd: 'protect', options: { ...protectOptions, mode: 'colo', maxIntervalMs: 5000, blackhole: true } }],
  'create': [{ cmd: 'create', text: cfgs['remus.cfg'], source: '/etc/xen/web.cfg' }],
  'create-plain': [{ cmd: 'create', text: cfgs['domu1-pv.cfg'], source: 'domu1.cfg' }],
  'stop-destroy-failover-digest': [{ cmd: 'stop', domain: 'web' }, { cmd: 'destroy', domain: 3 }, { cmd: 'failover', domain: 'web', force: true }, { cmd: 'digest', domain: 'web' }],
};
for (const [name, reqs] of Object.entries(control)) seed('control', `${name}.jsonl`, reqs.map((r) => JSON.stringify(r)).join('\n'));
seed('control', 'not-json.jsonl', 'ping\n{"cmd":1}\n[]\n');
for (const w of ['"cmd":', '"ping"', '"status"', '"list"', '"create"', '"destroy"', '"protect"', '"stop"', '"failover"', '"digest"', '"options":', '"domain":', '"text":', '"source":', '"force":', '"mode":', '"peer":', '"host":', '"port":', '"intervalMs":', '"netbuf":', '"disk":', '"blackhole":', '"heartbeatMs":', '"failoverTimeoutMs":', '"minGapMs":', '"maxIntervalMs":', '"inFlight":', '"allowUnsafe":', '"bufferLimitMiB":', '"onBufferFull":', '"remus"', '"kemari"', '"colo"', '"llm"', 'null', 'true', 'false', '[]', '{}', '{"toString":1}', '"__proto__"', '\n', '-1', '1e999']) word('control', w);

// ---------------------------------------------------------------------------
// the primary's libxl JSON (HELLO backendConfig)

const replica: Record<string, unknown> = {
  'domu1.json': libxlJson,
  'type-u.json': { ...libxlJson, b_info: { type_u: { pv: { kernel: '/boot/vmlinuz' } } }, disks: [{ pdev_path: '', vdev: 'xvdc', is_cdrom: 1 }] },
  'refused-pci.json': { ...libxlJson, pcidevs: [{ bus: 1 }] },
  'refused-bridge.json': { ...libxlJson, nics: [{ bridge: 'mgmt0' }] },
};
for (const [name, v] of Object.entries(replica)) seed('replica-config', name, JSON.stringify(v));
const policy = { peer: 'hostA', source: 'hostA.key', disks: ['/srv/xen/*.img', '/dev/vg0/*'], bridges: ['xenbr*'] };
checkReplicaConfig(JSON.stringify(libxlJson), policy, 'domu1');
for (const w of ['"c_info":', '"b_info":', '"type.pv":', '"type_u":', '"pv":', '"type":', '"driver_domain":', '"nics":', '"disks":', '"script":', '"bridge":', '"backend_domid":', '"backend_domname":', '"pdev_path":', '"bootloader":', '"device_model":', '"pcidevs":', '"vfbs":', '"usbdevs":', 'null', 'true', 'false', '[]', '{}', '[null]', '"vif-bridge"', '"/etc/xen/scripts/vif-route"', '"xenbr0"', '"/srv/xen/a.img"', '"../"']) word('replica-config', w);

// ---------------------------------------------------------------------------

function writeAll(): void {
  for (const [target, files] of seeds) {
    const dir = path.join(CORPUS_ROOT, target);
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    for (const [name, bytes] of files) fs.writeFileSync(path.join(dir, name), bytes);
    const words = dicts.get(target) ?? [];
    fs.writeFileSync(path.join(CORPUS_ROOT, `${target}.dict`), `# libFuzzer dictionary for the ${target} fuzz target (written by test/fuzz/make-corpus.ts)\n${words.map((w, i) => `w${i}="${w}"`).join('\n')}\n`);
    const size = [...files.values()].reduce((n, b) => n + b.length, 0);
    console.log(`${target}: ${files.size} seeds, ${size} bytes, ${words.length} dictionary words`);
  }
}

writeAll();
