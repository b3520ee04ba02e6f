import t from 'tap';

const tap = t;
import fs from 'node:fs';
import { XC_REC, XL_REC } from '../../src/transport/xen-records.js';
import { XLHA_REC } from '../../src/transport/channel-records.js';
import { XLHA_DOM, XLHA_EV, XLHA_PLUG, XLHA_STREAM } from '../../src/backend/xen/shim.js';

/** #define XLHA_<group>_<NAME> <value>u from the shim's header. */
function headerConstants(prefix: string): Map<string, number> {
  const text = fs.readFileSync(new URL('../../../libxl-shim/xlha.h', import.meta.url), 'utf8');
  const out = new Map<string, number>();
  const re = new RegExp(`^#define ${prefix}([A-Z0-9_]+)\\s+(0x[0-9A-Fa-f]+|[0-9]+)u?\\b`, 'gm');
  for (const m of text.matchAll(re)) out.set(m[1]!, Number(m[2]!));
  return out;
}

function agree(t: Pick<typeof tap, 'ok' | 'equal'>, name: string, ts: Record<string, number>, c: Map<string, number>): void {
  t.ok(c.size > 0, `${name}: the header defines constants`);
  for (const [k, v] of Object.entries(ts)) t.equal(c.get(k), v, `${name} ${k} is 0x${v.toString(16)} in both`);
  for (const [k, v] of c) t.equal(ts[k], v, `${name} ${k} of the header exists in TypeScript with the same value`);
}

t.test('libxc record types agree between xlha.h and the TypeScript records (src/transport)', async (t) => {
  agree(t, 'libxc', XC_REC, headerConstants('XLHA_XC_REC_'));
});

t.test('libxl record types agree between xlha.h and the TypeScript records (src/transport)', async (t) => {
  agree(t, 'libxl', XL_REC, headerConstants('XLHA_XL_REC_'));
});

t.test('xl-ha channel frame types agree between xlha.h and the TypeScript records (src/transport)', async (t) => {
  agree(t, 'channel', XLHA_REC, headerConstants('XLHA_REC_'));
});

t.test('the shim API constants agree between xlha.h and the koffi binding (shim.ts)', async (t) => {
  agree(t, 'event', XLHA_EV, headerConstants('XLHA_EV_'));
  agree(t, 'stream', XLHA_STREAM, headerConstants('XLHA_STREAM_'));
  agree(t, 'dominfo flag', XLHA_DOM, headerConstants('XLHA_DOM_'));
  agree(t, 'plug action', XLHA_PLUG, headerConstants('XLHA_PLUG_'));
});
