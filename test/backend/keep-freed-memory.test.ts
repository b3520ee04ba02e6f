import t from 'tap';
import { execFileSync } from 'node:child_process';
import { keepFreedMemory } from '../../src/backend/xen/shim.js';

const shimUrl = new URL('../../src/backend/xen/shim.js', import.meta.url).href;

/**
 * A child process that relays 1.8 MB per round through fresh 1 MiB buffers, as the daemons'
 * read slabs do (the last two rounds stay referenced, as checkpoints in flight), and prints its
 * minor page faults per round. With `tune`, it calls keepFreedMemory first.
 */
function faultsPerRound(tune: boolean): number {
  const script = `
    const { keepFreedMemory } = await import(${JSON.stringify(shimUrl)});
    if (${tune} && !keepFreedMemory()) throw new Error('mallopt refused');
    const fs = await import('node:fs');
    const faults = () => Number(fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')[7]);
    const N = 150, SIZE = 1800 * 1024;
    let slab = Buffer.allocUnsafe(1 << 20), off = 0;
    const held = [];
    const round = () => {
      const views = [];
      for (let need = SIZE; need > 0; ) {
        if (off === slab.length) { slab = Buffer.allocUnsafe(1 << 20); off = 0; }
        const n = Math.min(need, slab.length - off);
        slab.fill(7, off, off + n); // the kernel's read would write these pages
        views.push(slab.subarray(off, off + n)); off += n; need -= n;
      }
      held.push(views); if (held.length > 2) held.shift();
    };
    for (let i = 0; i < 20; i++) { round(); await new Promise((r) => setImmediate(r)); } // warm-up
    const f0 = faults();
    for (let i = 0; i < N; i++) { round(); await new Promise((r) => setImmediate(r)); }
    process.stdout.write(String((faults() - f0) / N));
  `;
  return Number(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }));
}

t.test('keepFreedMemory: glibc keeps freed read buffers, so a relay stops faulting fresh pages in', async (t) => {
  t.equal(keepFreedMemory(), true, 'glibc took the settings');
  t.equal(keepFreedMemory(), true, 'a second call says the same (the settings are per process)');
  const plain = faultsPerRound(false);
  const tuned = faultsPerRound(true);
  t.comment(`minor faults per 1.8 MB round: ${plain.toFixed(0)} with glibc's defaults, ${tuned.toFixed(0)} with keepFreedMemory`);
  t.ok(tuned < plain / 2, `fewer than half the faults (${tuned.toFixed(0)} vs ${plain.toFixed(0)})`);
});
