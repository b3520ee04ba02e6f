/**
 * Properties (fast-check) of every parser that takes outside input: whatever arrives, each
 * returns a value or throws its own clean error that names the problem. Never another kind
 * of exception (a TypeError or RangeError is a parser bug), never a hang. The seeds are
 * fixed so that a failure can be replayed (XLHA_FUZZ_RUNS=20000 for a longer run).
 */
import t from 'tap';
import fc from 'fast-check';
import { FrameReader } from '../../src/transport/reader.js';
import { ProtocolError, encodeFrameHeader, paddedLength } from '../../src/transport/framing.js';
import { XenStreamParser } from '../../src/transport/xenstream.js';
import { parseHello } from '../../src/transport/hello.js';
import * as records from '../../src/transport/channel-records.js';
import { parseXlCfg, XlCfgError } from '../../src/config/xlcfg.js';
import { ConfigError, domainConfigFromCfg } from '../../src/config/domain.js';
import { PeerKeyError, parsePeerFile } from '../../src/security/peers.js';
import { checkReplicaConfig } from '../../src/backend/xen/replica-policy.js';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Daemon } from '../../src/daemon/daemon.js';
import { SimBackend } from '../../src/backend/sim/host.js';
import { PeerKeys } from '../../src/security/peers.js';
import { silentLogger } from '../../src/util/log.js';

const RUNS = Number(process.env.XLHA_FUZZ_RUNS ?? 400);
const opts = (seed: number) => ({ numRuns: RUNS, seed });

/** The error is one of `kinds` and says something; anything else fails the property. */
function clean(err: unknown, kinds: (new (...a: never[]) => Error)[]): boolean {
  if (!(err instanceof Error) || !kinds.some((k) => err instanceof k)) throw err;
  return err.message.length > 10;
}

/** Runs `f`: true when it returns, else whether it threw a {@link clean} error of `kinds`. */
function accepts(f: () => unknown, kinds: (new (...a: never[]) => Error)[]): boolean {
  try {
    f();
    return true;
  } catch (err) {
    return clean(err, kinds);
  }
}

t.test('the frame reader: arbitrary bytes in arbitrary chunks give frames or a ProtocolError', async (t) => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }), (chunks) => {
      const r = new FrameReader({ maxFrameBytes: 1 << 16 });
      return accepts(() => {
        for (const c of chunks) r.push(Buffer.from(c));
      }, [ProtocolError]);
    }),
    opts(1),
  );
  t.pass('no other exception');
});

t.test('the frame reader: a valid stream cut anywhere gives back the same frames', async (t) => {
  const frame = fc.record({ type: fc.constantFrom(records.XLHA_REC.XEN_STREAM, records.XLHA_REC.HEARTBEAT), body: fc.uint8Array({ maxLength: 200 }) });
  fc.assert(
    fc.property(fc.array(frame, { minLength: 1, maxLength: 8 }), fc.array(fc.nat(2000), { maxLength: 10 }), (frames, cuts) => {
      const parts: Buffer[] = [];
      for (const f of frames) {
        parts.push(encodeFrameHeader(f.type, f.body.length), Buffer.from(f.body), Buffer.alloc(paddedLength(f.body.length) - f.body.length));
      }
      const all = Buffer.concat(parts);
      const points = [...new Set(cuts.map((c) => c % (all.length + 1)))].sort((a, b) => a - b);
      const r = new FrameReader();
      const got: { type: number; body: Buffer }[] = [];
      let at = 0;
      for (const p of [...points, all.length]) {
        for (const f of r.push(all.subarray(at, p))) got.push({ type: f.type, body: Buffer.from(f.body) });
        at = p;
      }
      return got.length === frames.length && got.every((g, i) => g.type === frames[i]!.type && g.body.equals(Buffer.from(frames[i]!.body)));
    }),
    opts(2),
  );
  t.pass('framing is independent of how reads cut the stream');
});

t.test('channel records: every decoder takes any body and returns or throws a ProtocolError', async (t) => {
  const decoders = Object.entries(records).filter(([k, v]) => k.startsWith('decode') && typeof v === 'function' && k !== 'decodeChannelFrame') as [string, (b: Buffer) => unknown][];
  t.ok(decoders.length >= 8, `${decoders.length} decoders: ${decoders.map(([k]) => k).join(', ')}`);
  for (const [name, decode] of decoders) {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (b) => accepts(() => decode(Buffer.from(b)), [ProtocolError])),
      opts(3),
    );
    t.pass(name);
  }
});

t.test('HELLO: any JSON value is a HELLO or an error naming the field', async (t) => {
  fc.assert(
    fc.property(fc.jsonValue(), (v) => {
      try {
        parseHello(v as Record<string, unknown>);
        return true;
      } catch (err) {
        if (!(err instanceof Error) || err instanceof TypeError || err instanceof RangeError) throw err;
        return /^HELLO: /.test(err.message);
      }
    }),
    opts(4),
  );
  // and a valid-looking one with one field mangled
  const base = { protocol: 2, host: 'a', mode: 'remus', uuid: '5a9c7e52-6c45-4f0b-9b2f-1f1a6c2b3d4e', domain: { name: 'd', memoryMiB: 8, vcpus: 1 }, intervalMs: 25, heartbeatMs: 50, failoverTimeoutMs: 150, transfer: 'full' };
  fc.assert(
    fc.property(fc.constantFrom(...Object.keys(base)), fc.jsonValue(), (k, v) => {
      try {
        parseHello({ ...base, [k]: v });
        return true;
      } catch (err) {
        if (!(err instanceof Error) || err instanceof TypeError) throw err;
        return err.message.startsWith('HELLO: ');
      }
    }),
    opts(5),
  );
  t.pass('no TypeError from any HELLO');
});

t.test('the Xen stream parser: arbitrary bytes are a ProtocolError, not a crash', async (t) => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 256 }), { minLength: 1, maxLength: 4 }), (parts) => {
      const p = new XenStreamParser();
      return accepts(() => p.parseCheckpoint(parts.map((x) => Buffer.from(x))), [ProtocolError]);
    }),
    opts(6),
  );
  t.pass('no other exception');
});

t.test('xl.cfg: any text is a config or an error naming where', async (t) => {
  const cfgish = fc.array(
    fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.constantFrom('name = "x"', 'memory = 128', 'ha = "remus"', 'ha_peer = "h:1"', 'vif = [ "bridge=xenbr0" ]', 'disk = [ "phy:/dev/vg/x,xvda,w" ]', '#', '"', '[', ']', '=', ',', 'ha_interval_ms = 0', 'ha_group = "g"'),
    ),
    { maxLength: 12 },
  );
  fc.assert(
    fc.property(cfgish, (lines) => accepts(() => domainConfigFromCfg(parseXlCfg(lines.join('\n'), 'fuzz.cfg')), [XlCfgError, ConfigError])),
    opts(7),
  );
  t.pass('no other exception');
});

t.test('key files and replica configurations: any text is accepted or refused by name', async (t) => {
  fc.assert(
    fc.property(fc.array(fc.oneof(fc.string({ maxLength: 50 }), fc.constantFrom('host = a', 'peer = b', `key = ${'ab'.repeat(32)}`, 'allow = *', 'disks = /x/*', '[s]', 'address = h:1')), { maxLength: 8 }), (lines) => accepts(() => parsePeerFile('fuzz.key', lines.join('\n')), [PeerKeyError])),
    opts(8),
  );
  const policy = { peer: 'a', source: 'f', disks: ['/srv/*'], bridges: ['xenbr0'] };
  fc.assert(
    fc.property(fc.jsonValue(), (v) => {
      try {
        checkReplicaConfig(JSON.stringify(v), policy, 'd');
        return true;
      } catch (err) {
        if (!(err instanceof Error) || err instanceof TypeError || err instanceof RangeError) throw err;
        return /configuration of d/.test(err.message);
      }
    }),
    opts(9),
  );
  t.pass('no other exception');
});

t.test('the control socket: any line gets one JSON answer, and the daemon keeps answering', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-fuzz-'));
  const d = new Daemon({ backend: new SimBackend({ hostName: 'h', stateDir: path.join(dir, 's') }), hostName: 'h', stateDir: path.join(dir, 's'), controlPath: path.join(dir, 'c.sock'), keys: new PeerKeys(path.join(dir, 'k'), 'h'), log: silentLogger() });
  await d.start();
  t.teardown(async () => {
    await d.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const sock = net.connect(path.join(dir, 'c.sock'));
  await new Promise((r) => sock.once('connect', r));
  let buf = '';
  const answers: string[] = [];
  sock.on('data', (c) => {
    buf += c.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      answers.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  });
  const line = fc.oneof(
    fc.string({ maxLength: 80 }).map((x) => x.replace(/\n/g, ' ')),
    fc.jsonValue().map((v) => JSON.stringify(v)),
    fc.record({ cmd: fc.constantFrom('ping', 'status', 'list', 'stop', 'destroy', 'failover', 'protect', 'create', 'digest', 'frob'), domain: fc.jsonValue(), options: fc.jsonValue(), text: fc.string({ maxLength: 60 }) }).map((v) => JSON.stringify(v)),
  );
  const lines = fc.sample(line, { numRuns: Math.min(RUNS, 400), seed: 10 });
  for (const l of lines) sock.write(l + '\n');
  const deadline = Date.now() + 20_000;
  while (answers.length < lines.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  sock.destroy();
  t.equal(answers.length, lines.length, 'one answer per line');
  const parsed = answers.map((a) => JSON.parse(a) as { ok: boolean; error?: string });
  t.ok(parsed.every((a) => a.ok === true || (typeof a.error === 'string' && a.error.length > 5)), 'each is ok, or an error that says something');
  const crashes = parsed.filter((a) => /TypeError|RangeError|Cannot read prop|is not a function|is not iterable/.test(a.error ?? ''));
  t.same(crashes.map((a) => a.error).slice(0, 5), [], 'no error is a crash in disguise');
  const again = await import('../../src/daemon/control.js').then((m) => m.controlRequest(path.join(dir, 'c.sock'), { cmd: 'ping' }));
  t.equal(again.ok, true, 'the daemon still answers');
});
