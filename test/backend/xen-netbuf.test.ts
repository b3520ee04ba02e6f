/**
 * The Xen backend's network buffering (src/backend/xen/netbuf.ts) without Xen: its ip/tc set-up
 * through a recording runner, and its use of sch_plug against a model of the kernel's qdisc
 * (net/sched/sch_plug.c), checked for the one property that matters: no packet leaves before
 * the backup acknowledged a checkpoint taken after the packet was sent.
 */
import t from 'tap';
import { XenNetPlug, setVifsLink, vifsOf, type PlugControl } from '../../src/backend/xen/netbuf.js';
import { XLHA_PLUG } from '../../src/backend/xen/shim.js';

/** sch_plug as the kernel implements it; a packet is its epoch tag. */
class PlugModel implements PlugControl {
  queue: number[] = [];
  released: { epoch: number; ackedAt: number }[] = [];
  throttled = true; // a new plug holds
  indefinite = false;
  current = 0;
  last = 0;
  toRelease = 0;
  acked = 0; // set by the test: the newest acknowledged checkpoint
  ops: string[] = [];
  fail: string | null = null;

  plug(ifname: string, action: number): void {
    if (this.fail) throw new Error(this.fail);
    this.ops.push(`${ifname}:${action}`);
    if (action === XLHA_PLUG.BUFFER) {
      this.last = this.current;
      this.current = 0;
      if (this.indefinite) this.throttled = true;
      this.indefinite = false;
    } else if (action === XLHA_PLUG.RELEASE_ONE) {
      this.toRelease += this.last;
      this.last = 0;
      this.throttled = false;
    } else if (action === XLHA_PLUG.RELEASE_ALL) {
      this.indefinite = true;
      this.toRelease = this.last = this.current = 0;
      this.throttled = false;
    }
    this.drain();
  }
  qdiscBacklog(): number {
    return this.queue.length * 100;
  }
  entered = 0;
  qdiscEnqueued(): number {
    return this.entered * 100;
  }
  send(epoch: number): void {
    this.entered++;
    if (!this.indefinite) this.current++;
    this.queue.push(epoch);
    this.drain();
  }
  private drain(): void {
    while (this.queue.length && !this.throttled) {
      if (!this.indefinite) {
        if (!this.toRelease) {
          this.throttled = true;
          break;
        }
        this.toRelease--;
      }
      this.released.push({ epoch: this.queue.shift()!, ackedAt: this.acked });
    }
  }
}

const okRunner = (log: string[]) => async (cmd: string, args: string[]) => {
  log.push(`${cmd} ${args.join(' ')}`);
};

t.test('vifsOf reads the nics of libxl JSON', async (t) => {
  t.same(vifsOf(7, JSON.stringify({ nics: [{ devid: 0 }, { devid: 2, ifname: 'web0' }] })), [
    { vif: 'vif7.0', ifb: 'xlhab7.0' },
    { vif: 'web0', ifb: 'xlhab7.2' },
  ]);
  t.same(vifsOf(7, JSON.stringify({ c_info: {} })), [], 'no nics, nothing to buffer');
  t.throws(() => vifsOf(7, '{'), /libxl configuration of domain 7 is not JSON/);
});

t.test('set-up: an IFB with a plug per vif, every protocol of the vif redirected to it', async (t) => {
  const log: string[] = [];
  const m = new PlugModel();
  const p = new XenNetPlug([{ vif: 'lo', ifb: 'xlhab1.0' }], m, okRunner(log), 4096);
  await p.startBuffering();
  const cmds = log.filter((c) => !c.startsWith('modprobe'));
  t.same(cmds, [
    'ip link add name xlhab1.0 type ifb',
    'sysctl -q -w net/ipv6/conf/xlhab1.0/disable_ipv6=1',
    'ip link set dev xlhab1.0 up',
    'tc qdisc add dev xlhab1.0 root plug limit 4096',
    'tc qdisc add dev lo ingress',
    'tc filter add dev lo parent ffff: protocol all prio 10 matchall action mirred egress redirect dev xlhab1.0',
  ]);
  t.same(m.ops, [`xlhab1.0:${XLHA_PLUG.RELEASE_ALL}`], 'nothing is held before the first checkpoint');
  log.length = 0;
  await p.close();
  t.same(log, ['tc qdisc del dev lo ingress', 'ip link del dev xlhab1.0'], 'close removes the redirect and the IFB');
});

t.test('a set-up that fails says what failed, offers -n, and undoes what it made', async (t) => {
  const log: string[] = [];
  const run = async (cmd: string, args: string[]) => {
    log.push(`${cmd} ${args.join(' ')}`);
    if (cmd === 'tc' && args.includes('plug')) throw new Error(`tc ${args.join(' ')} failed: Error: Specified qdisc kind is unknown.`);
  };
  const p = new XenNetPlug([{ vif: 'lo', ifb: 'xlhab1.0' }], new PlugModel(), run);
  await t.rejects(p.startBuffering(), /network buffering on xen: tc qdisc add dev xlhab1.0 root plug .* qdisc kind is unknown.*-n/);
  t.ok(log.includes('ip link del dev xlhab1.0'), 'the IFB it created is deleted');
  await t.rejects(
    new XenNetPlug([{ vif: 'vif99.0', ifb: 'xlhab99.0' }], new PlugModel(), okRunner([])).startBuffering(),
    /vif99\.0 is not in dom0/,
    'a vif that is not there is named',
  );
});

t.test('with checkpoints in flight, no packet leaves before a covering checkpoint is acknowledged', async (t) => {
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let run = 0; run < 50; run++) {
    const m = new PlugModel();
    const p = new XenNetPlug([{ vif: 'lo', ifb: 'ifb' }], m, okRunner([]));
    await p.startBuffering();
    const maxInFlight = 1 + Math.floor(rnd() * 4);
    let epoch = 0; // checkpoints taken
    const inFlight: number[] = [];
    for (let step = 0; step < 200; step++) {
      const r = rnd();
      if (r < 0.5) m.send(epoch + 1); // output of the epoch the next checkpoint covers
      else if (r < 0.75 && inFlight.length < maxInFlight) {
        epoch++;
        p.barrier(epoch); // postsuspend
        inFlight.push(epoch);
      } else if (inFlight.length) {
        const e = inFlight.shift()!;
        m.acked = e;
        p.release(e); // commit
      }
    }
    const early = m.released.filter((x) => x.epoch > 1 && x.ackedAt < x.epoch);
    t.same(early, [], `run ${run} (up to ${maxInFlight} in flight): nothing released before its checkpoint's ack`);
    // Liveness: once everything is acknowledged and one more checkpoint commits, all of it is out.
    while (inFlight.length) {
      const e = inFlight.shift()!;
      m.acked = e;
      p.release(e);
    }
    epoch++;
    p.barrier(epoch);
    m.acked = epoch;
    p.release(epoch);
    epoch++;
    p.barrier(epoch);
    m.acked = epoch;
    p.release(epoch);
    if (m.queue.length) t.fail(`run ${run}: ${m.queue.length} packets still held after every checkpoint was acknowledged`);
  }
});

t.test('a plug that fails while protected fails the checkpoint', async (t) => {
  const m = new PlugModel();
  const p = new XenNetPlug([{ vif: 'lo', ifb: 'ifb' }], m, okRunner([]));
  await p.startBuffering();
  m.fail = 'plug buffer on ifb failed: No such device';
  t.throws(() => p.barrier(1), /No such device/);
  m.fail = null;
  p.releaseAll();
  t.equal(m.ops.at(-1), `ifb:${XLHA_PLUG.RELEASE_ALL}`, 'releaseAll still lets everything out');
});

t.test('output events: the first packet held in an epoch raises one event, read from the plug; a checkpoint that placed no barrier raises it again', async (t) => {
  const m = new PlugModel();
  const p = new XenNetPlug([{ vif: 'lo', ifb: 'ifb' }], m, okRunner([]));
  await p.startBuffering();
  let events = 0;
  const sub = p.onOutputPending(() => events++);
  t.teardown(() => sub.dispose());
  p.barrier(1); // checkpoint 1: holding from here on
  p.poll();
  t.equal(events, 0, 'nothing sent: no event');
  m.send(2);
  p.poll();
  m.send(2);
  p.poll();
  t.equal(events, 1, 'two packets of the open epoch: one event');
  p.barrier(2); // closes them (checkpoint 1 was not released: no barrier placed, the output stays open)
  p.poll();
  t.equal(events, 2, 'the checkpoint placed no barrier, so the held output raises the event again');
  m.acked = 1;
  p.release(1);
  p.barrier(3); // now a barrier is placed: everything so far is covered
  p.poll();
  t.equal(events, 2, 'covered by a barrier: no event');
  m.send(4);
  p.poll();
  t.equal(events, 3, 'the next epoch\'s first packet raises the next one');
  sub.dispose();
  m.send(4);
  p.barrier(4);
  p.poll();
  t.equal(events, 3, 'no listener, no event (and no polling)');
});

t.test('the poller runs only while a listener is subscribed', async (t) => {
  const m = new PlugModel();
  let queries = 0;
  const counting: PlugControl = { plug: (i, a) => m.plug(i, a), qdiscBacklog: () => m.qdiscBacklog(), qdiscEnqueued: () => (queries++, m.qdiscEnqueued()) };
  const p = new XenNetPlug([{ vif: 'lo', ifb: 'ifb' }], counting, okRunner([]));
  await p.startBuffering();
  p.barrier(1);
  await new Promise((r) => setTimeout(r, 30));
  t.equal(queries, 0, 'remus (no listener) never queries');
  let fired = 0;
  const sub = p.onOutputPending(() => fired++);
  m.send(2);
  await new Promise((r) => setTimeout(r, 40));
  t.equal(fired, 1, 'the poller saw the packet');
  const q = queries;
  t.ok(q > 0);
  sub.dispose();
  await new Promise((r) => setTimeout(r, 30));
  t.equal(queries, q, 'no query after the last listener left');
  p.releaseAll();
});

t.test('fencing takes every vif down (and up again), and names the ones that failed', async (t) => {
  const vifs = vifsOf(7, JSON.stringify({ nics: [{ devid: 0 }, { devid: 1, ifname: 'web-eth1' }] }));
  const ran: string[] = [];
  const ok = async (cmd: string, args: string[]) => void ran.push([cmd, ...args].join(' '));
  await setVifsLink(vifs, false, ok);
  t.same(ran, ['ip link set dev vif7.0 down', 'ip link set dev web-eth1 down']);
  ran.length = 0;
  await setVifsLink(vifs, true, ok);
  t.same(ran, ['ip link set dev vif7.0 up', 'ip link set dev web-eth1 up']);
  ran.length = 0;
  const failFirst = async (cmd: string, args: string[]) => {
    ran.push(args[3]!);
    if (args[3] === 'vif7.0') throw new Error('ip link set dev vif7.0 down failed: Cannot find device "vif7.0"');
  };
  await t.rejects(setVifsLink(vifs, false, failFirst), /taking down the vifs failed: ip link set dev vif7\.0 down failed: Cannot find device/);
  t.same(ran, ['vif7.0', 'web-eth1'], 'a vif that fails does not keep the others up');
});
