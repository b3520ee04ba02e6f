import t from 'tap';
import { xlCfgFromObject, type XlValue } from '../../src/config/xlcfg.js';
import { ConfigError, domainConfigFromCfg } from '../../src/config/domain.js';
import { checkTransferRuns, fgbiParams, parseTransfer, transferNotImplemented } from '../../src/transport/transfer.js';

const BASE = { name: 'vm1', memory: 512, ha: 'remus', ha_peer: 'b' } as const;

function fromObj(obj: Record<string, XlValue>) {
  return domainConfigFromCfg(xlCfgFromObject(obj, 'vm.cfg'));
}

function errorOf(obj: Record<string, XlValue>): ConfigError {
  try {
    fromObj(obj);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('no ConfigError');
}

t.test('ha_transfer takes full, fgbi, compress and their comma list in any order, in canonical form', async (t) => {
  t.equal(fromObj({ ...BASE }).ha!.transfer, 'full', 'full by default');
  t.equal(fromObj({ ...BASE, ha_transfer: 'full' }).ha!.transfer, 'full');
  t.equal(fromObj({ ...BASE, ha_transfer: 'fgbi' }).ha!.transfer, 'fgbi');
  t.equal(fromObj({ ...BASE, ha_transfer: 'compress' }).ha!.transfer, 'compress');
  t.equal(fromObj({ ...BASE, ha_transfer: 'fgbi,compress' }).ha!.transfer, 'fgbi,compress');
  t.equal(fromObj({ ...BASE, ha_transfer: 'compress, fgbi' }).ha!.transfer, 'fgbi,compress', 'order-independent, fgbi first in the chain');
});

t.test('a bad ha_transfer list names the key, the value and what is wrong', async (t) => {
  const cases: [string, string][] = [
    ['fgbi,fgbi', 'fgbi is listed twice'],
    ['full,fgbi', 'full sends whole pages and cannot be combined with fgbi'],
    ['fgbi,zip', '"zip" is not a transfer'],
    ['fgbi,', 'an empty item is not a transfer'],
  ];
  for (const [v, why] of cases) {
    const e = errorOf({ ...BASE, ha_transfer: v });
    t.equal(e.errors.length, 1, `${v}: one issue`);
    t.equal(e.key, 'ha_transfer');
    t.ok(e.message.includes(`ha_transfer = "${v}" is not valid: ${why}`), `${v}: ${e.message}`);
    t.ok(e.message.includes('expected full, or a comma list of fgbi and compress'), `${v}: says what is accepted`);
  }
  const n = errorOf({ ...BASE, ha_transfer: 3 });
  t.match(n.message, /ha_transfer = 3 is not valid: expected a quoted string/);
});

t.test('ha_fgbi_block_bytes is a power of two from 16 to 2048, ha_fgbi_shadow_mib 1 to 65536', async (t) => {
  const ok = fromObj({ ...BASE, ha_transfer: 'fgbi', ha_fgbi_block_bytes: 128, ha_fgbi_shadow_mib: 8 }).ha!;
  t.same([ok.fgbiBlockBytes, ok.fgbiShadowMiB], [128, 8]);
  for (const b of [16, 2048]) t.equal(fromObj({ ...BASE, ha_transfer: 'fgbi', ha_fgbi_block_bytes: b }).ha!.fgbiBlockBytes, b, `${b} is accepted`);
  for (const b of [8, 4096, 100, 0, -64]) {
    const e = errorOf({ ...BASE, ha_transfer: 'fgbi', ha_fgbi_block_bytes: b });
    t.ok(e.message.includes(`ha_fgbi_block_bytes = ${b} is not valid: expected a power of two from 16 to 2048 (bytes)`), `${b}: ${e.message}`);
  }
  const s = errorOf({ ...BASE, ha_transfer: 'fgbi', ha_fgbi_shadow_mib: 0 });
  t.ok(s.message.includes('ha_fgbi_shadow_mib = 0 is not valid: expected an integer from 1 to 65536 (MiB)'), s.message);
});

t.test("fgbi's keys without fgbi are refused rather than ignored", async (t) => {
  const e = errorOf({ ...BASE, ha_fgbi_block_bytes: 64 });
  t.equal(e.key, 'ha_fgbi_block_bytes');
  t.ok(e.message.includes('ha_fgbi_block_bytes is used only when ha_transfer includes fgbi, not with ha_transfer = "full"'), e.message);
  t.ok(fromObj({ ...BASE, ha_transfer: 'fgbi,compress', ha_fgbi_shadow_mib: 4 }).ha, 'with fgbi among others they apply');
});

t.test('compress and fgbi,compress run in this release; the Xen backend refuses each stage by name', async (t) => {
  for (const id of ['full', 'fgbi', 'compress', 'fgbi,compress'] as const) t.equal(transferNotImplemented(id), null, `${id} is implemented`);
  t.same(parseTransfer(' fgbi '), { ok: true, id: 'fgbi', stages: ['fgbi'] }, 'spaces around items are allowed');
  const sim = { kind: 'sim', features: { fgbi: true, compress: true } };
  const xen = { kind: 'xen', features: {} };
  const fgbi = fgbiParams(undefined, undefined);
  for (const id of ['compress', 'fgbi,compress', 'fgbi'] as const) {
    const s = { id, ...(id.includes('fgbi') ? { fgbi } : {}) };
    t.doesNotThrow(() => checkTransferRuns(s, sim), `${id} runs on sim`);
    t.throws(() => checkTransferRuns(s, xen), new RegExp(`ha_transfer "${id}": ${id.startsWith('fgbi') ? 'fgbi' : 'compress'} is not available on the xen backend: .*; use full`), `${id} is refused on xen, naming the stage`);
  }
  t.doesNotThrow(() => checkTransferRuns({ id: 'full' }, xen), 'full runs on xen');
});
