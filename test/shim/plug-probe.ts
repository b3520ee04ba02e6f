/**
 * Run by shim.test.ts (and the Xen lab) inside a network namespace of its own:
 *   ip netns exec <ns> node dist/test/shim/plug-probe.js
 * Exercises libxl-shim's rtnetlink plug control on real interfaces and prints one JSON line of
 * observations; the caller asserts on them. XLHA_SHIM points at the libxlha.so to test.
 */
import dgram from 'node:dgram';
import fs from 'node:fs';
import { execa } from 'execa';
import { Shim, ShimError, XLHA_PLUG } from '../../src/backend/xen/shim.js';

const out: Record<string, unknown> = {};
const sh = (cmd: string, args: string[]) => execa(cmd, args, { reject: false, stdin: 'ignore' });
const errOf = (f: () => unknown): { errno?: number; message: string } | null => {
  try {
    f();
    return null;
  } catch (e) {
    return { errno: e instanceof ShimError ? e.errno : undefined, message: (e as Error).message };
  }
};

// IPv6 autoconfiguration would add router solicitations to the counted queue.
for (const k of ['all', 'default']) {
  try {
    fs.writeFileSync(`/proc/sys/net/ipv6/conf/${k}/disable_ipv6`, '1');
  } catch {
    /* no IPv6 in this kernel */
  }
}
const shim = Shim.load();
out.noSuchInterface = errOf(() => shim.plug('xlha-nope0', XLHA_PLUG.BUFFER));
out.badAction = errOf(() => shim.plug('lo', 7));
await sh('ip', ['link', 'set', 'lo', 'up']);
await sh('tc', ['qdisc', 'add', 'dev', 'lo', 'root', 'pfifo', 'limit', '10']);
try {
  out.pfifoBacklog = shim.qdiscBacklog('lo');
  out.pfifoEnqueued = shim.qdiscEnqueued('lo');
} catch (e) {
  out.pfifoBacklog = (e as Error).message;
}
out.loQdisc = (await sh('tc', ['qdisc', 'show', 'dev', 'lo'])).stdout.trim();
out.plugOnPfifo = errOf(() => shim.plug('lo', XLHA_PLUG.BUFFER));

// Real sch_plug semantics, where the kernel has it: datagrams to a static neighbour behind va.
const veth = await sh('ip', ['link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb']);
const add = veth.exitCode === 0 ? await sh('tc', ['qdisc', 'add', 'dev', 'va', 'root', 'plug', 'limit', '1000000']) : veth;
const setupVa = async () => {
  for (const a of [
    ['addr', 'add', '10.77.0.1/24', 'dev', 'va'],
    ['link', 'set', 'va', 'up'],
    ['link', 'set', 'vb', 'up'],
    ['neigh', 'replace', '10.77.0.9', 'lladdr', '02:00:00:00:00:09', 'dev', 'va', 'nud', 'permanent'],
  ]) await sh('ip', a);
};
const sock = dgram.createSocket('udp4');
const send = (n: number) =>
  Promise.all(Array.from({ length: n }, () => new Promise<void>((r) => sock.send(Buffer.alloc(100), 9, '10.77.0.9', () => r()))));
const settle = () => new Promise((r) => setTimeout(r, 100));
if (add.exitCode !== 0) {
  out.plug = { unavailable: (add.stderr || add.stdout).trim() };
  // The backlog query still gets a real non-zero answer: a token bucket at 8 bit/s holds packets.
  if (veth.exitCode === 0 && (await sh('tc', ['qdisc', 'add', 'dev', 'va', 'root', 'tbf', 'rate', '8bit', 'burst', '1600', 'latency', '60s'])).exitCode === 0) {
    await setupVa();
    const before = shim.qdiscEnqueued('va');
    await send(30);
    await settle();
    out.tbfBacklog = shim.qdiscBacklog('va');
    out.tbfEnqueued = shim.qdiscEnqueued('va') - before;
  }
} else {
  await setupVa();
  const steps: Record<string, number> = {};
  const base = shim.qdiscEnqueued('va'); // what the interface sent on coming up, if anything
  await send(3);
  await settle();
  steps.afterAdd3 = shim.qdiscBacklog('va'); // a new plug holds everything
  steps.enqueuedAfterAdd3 = shim.qdiscEnqueued('va') - base;
  shim.plug('va', XLHA_PLUG.RELEASE_ALL);
  await settle();
  steps.afterReleaseAll = shim.qdiscBacklog('va');
  await send(2);
  await settle();
  steps.passThrough2 = shim.qdiscBacklog('va');
  shim.plug('va', XLHA_PLUG.BUFFER); // barrier 1: holding again
  await send(3);
  await settle();
  steps.epoch1Held3 = shim.qdiscBacklog('va');
  shim.plug('va', XLHA_PLUG.BUFFER); // barrier 2: closes epoch 1's 3 packets
  await send(2);
  await settle();
  steps.epoch2Held2 = shim.qdiscBacklog('va');
  shim.plug('va', XLHA_PLUG.RELEASE_ONE); // epoch 1 goes, epoch 2 stays
  await settle();
  steps.afterReleaseOne = shim.qdiscBacklog('va');
  steps.enqueuedAfterReleaseOne = shim.qdiscEnqueued('va') - base; // released bytes still count: they entered
  shim.plug('va', XLHA_PLUG.RELEASE_ALL);
  await settle();
  steps.afterReleaseAllEnd = shim.qdiscBacklog('va');
  out.plug = { packetBytes: 100 + 8 + 20 + 14, steps };
}
sock.close();
process.stdout.write(JSON.stringify(out) + '\n');
