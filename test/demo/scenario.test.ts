/**
 * The pieces of the demo's and the bench's scenario that decide what a run may report: the
 * protection-held check, the node options hosts start with, and the hosts' CPU reading. The
 * scenario itself runs in test/failover/multiprocess.test.ts.
 */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { protectionFailures } from '../../src/demo/scenario.js';
import { XL_HA_ENTRY, hostCpu, shippedNodeFlags } from '../../src/demo/hosts.js';
import type { ProtectionStatusJson } from '../../src/daemon/status-types.js';

const st = (o: Partial<ProtectionStatusJson>): ProtectionStatusJson => ({ domain: 'kv', state: 'protected', committed: 10, resyncs: 0, resumed: 0, ...o });

t.test('protection held: protected at both ends, no resync, no resumption, the committed count growing', async (t) => {
  t.same(protectionFailures('kv', st({}), st({ committed: 50 })), []);
});

t.test('protection did not hold: each way it fails is named', async (t) => {
  t.match(protectionFailures('kv', st({}), st({ state: 'reconnecting', committed: 50, error: 'backup lost' })), [/^kv: engine state reconnecting at the end of the protected window \(backup lost\)$/]);
  t.match(protectionFailures('kv', st({ state: 'starting' }), st({ committed: 50 })), [/^kv: engine state starting at the start/]);
  t.match(protectionFailures('kv', st({}), st({ committed: 50, resyncs: 1 })), [/^kv: 1 full resync/]);
  t.match(protectionFailures('kv', st({}), st({ committed: 50, resumed: 1 })), [/^kv: protection was lost and resumed 1 time/]);
  t.match(protectionFailures('kv', st({}), st({ committed: 10 })), [/^kv: the committed count did not grow \(10 → 10\)$/]);
  t.match(protectionFailures('kv', st({}), undefined), [/^kv: no protection in the primary's status at the end/]);
  // an engine that declared its backup dead and runs on unprotected: not a result
  t.equal(protectionFailures('kv', st({}), st({ state: 'lost', committed: 12 })).length, 1);
});

t.test("hosts start with the node options on the shipped entry's #! line", async (t) => {
  t.same(shippedNodeFlags(), ['--max-semi-space-size=64'], 'the built xl-ha.cjs');
  t.match(fs.readFileSync(XL_HA_ENTRY, 'utf8').split('\n', 1)[0], /^#!\/usr\/bin\/env -S node /);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-entry-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const entry = (first: string) => {
    const p = path.join(dir, 'e.cjs');
    fs.writeFileSync(p, `${first}\n"use strict";\n`);
    return p;
  };
  t.same(shippedNodeFlags(entry('#!/usr/bin/env node')), []);
  t.same(shippedNodeFlags(entry('#!/usr/bin/env -S node --a=1 --b')), ['--a=1', '--b']);
  t.throws(() => shippedNodeFlags(entry('#!/usr/local/bin/node --a')), /expected a first line "#!\/usr\/bin\/env -S node \[options\]"/);
});

t.test("a host's CPU time is read from /proc, its vCPU threads apart", { skip: process.platform !== 'linux' && 'Linux only' }, async (t) => {
  // spin for 100 ms of this process's CPU time as the kernel counts it for getrusage (not wall
  // time: on a loaded machine 100 ms of wall time may be 30 ms of CPU), then /proc must agree
  // within its 10 ms ticks
  const a = hostCpu(process.pid)!;
  const start = process.cpuUsage();
  const cpuMs = () => {
    const d = process.cpuUsage(start);
    return (d.user + d.system) / 1000;
  };
  for (const giveUp = Date.now() + 30_000; cpuMs() < 100 && Date.now() < giveUp; );
  const spun = cpuMs();
  const b = hostCpu(process.pid)!;
  t.ok(spun >= 100, `spun for ${spun.toFixed(1)} ms of CPU`);
  t.ok(b.totalMs - a.totalMs >= spun - 30, `/proc counted the spinning (${a.totalMs} → ${b.totalMs} ms for ${spun.toFixed(1)} ms of CPU)`);
  t.equal(b.vcpuMs, 0, 'this process runs no vCPU thread');
  t.equal(hostCpu(2 ** 22 + 1), null, 'a process that is not there');
});
