/**
 * Reading a config costs time linear in its size: the daemon validates `create` requests
 * of up to 1 MiB on its event loop (docs/fuzzing.md, finding 6). Each input is read at
 * 64 KiB and at 256 KiB: four times the input may take about four times as long (not
 * sixteen), and never seconds.
 */
import t from 'tap';
import { parseXlCfg } from '../../src/config/xlcfg.js';
import { domainConfigFromCfg, suggest } from '../../src/config/domain.js';
import { parsePluginConfig } from '../../src/config/plugin.js';
import { parseVifSpec } from '../../src/config/vif.js';

const BUDGET_MS = 3000; // shared cores; the 256 KiB inputs take 10 to 500 ms here

function timed(fn: () => void): number {
  const t0 = performance.now();
  try {
    fn();
  } catch {
    // refusing is fine; only the time counts
  }
  return performance.now() - t0;
}

const cfg = (body: (n: number) => string) => (n: number) => () => domainConfigFromCfg(parseXlCfg(`name = "a"\nmemory = 8\n${body(n)}`, 'big.cfg'));

const CASES: Record<string, (n: number) => () => void> = {
  'a long misspelt vif parameter': cfg((n) => `vif = [ "${'b'.repeat(n)}=1" ]`),
  'many unknown vif parameters': cfg((n) => `vif = [ "${'x=1,'.repeat(n / 4)}" ]`),
  'a long misspelt ha_ key': cfg((n) => `ha_${'x'.repeat(n)} = 1`),
  'a chain of disk prefixes': cfg((n) => `disk = [ "${'tap:'.repeat(n / 4)}/a,xvda" ]`),
  'many disk flags': cfg((n) => `disk = [ "${'cdrom,'.repeat(n / 6)}vdev=xvda" ]`),
  'blanks and commas in a disk spec': cfg((n) => `disk = [ "${' ,'.repeat(n / 2)}" ]`),
  'a long disk format': cfg((n) => `disk = [ "/a,${'q'.repeat(n)},xvda" ]`),
  'many += of a list': cfg((n) => 'x += [ 1 ]\n'.repeat(n / 11)),
  'a long misspelt xl-ha.conf key': (n) => () => parsePluginConfig(`[daemon]\n${'k'.repeat(n)} = 1\n`, 'big.conf'),
};

for (const [what, make] of Object.entries(CASES)) {
  t.test(`${what}: read in linear time`, async (t) => {
    const small = timed(make(64 * 1024)); // also warms the code up
    const big = timed(make(256 * 1024));
    t.ok(big < BUDGET_MS, `256 KiB in ${big.toFixed(0)} ms`);
    t.ok(big < 8 * small + 100, `4 x the input, ${(big / Math.max(small, 0.01)).toFixed(1)} x the time (${small.toFixed(0)} ms, then ${big.toFixed(0)} ms)`);
  });
}

t.test('a word far longer than every candidate gets no suggestion, at no cost', async (t) => {
  t.equal(suggest('x'.repeat(100_000), ['bridge', 'mac']), undefined);
  t.equal(suggest('brdige', ['bridge', 'mac']), 'bridge', 'a swap of two letters is one edit');
  t.equal(suggest('foo', ['colo', 'vdev']), undefined, 'short words need a close match');
});

t.test('unknown vif parameters are summed up after ten warnings', async (t) => {
  const { warnings } = parseVifSpec(Array.from({ length: 50 }, (_, i) => `k${i}=1`).join(','));
  t.equal(warnings.length, 11);
  t.match(warnings[9], /^unknown vif parameter "k9=1"/);
  t.equal(warnings[10], 'and 40 more unknown vif parameters from "k10=1" on: xl ignores them too');
});
