import t from 'tap';
import { COLO_SIDE, decodeColoInput, decodeColoOutput, encodeColoInput, encodeColoOutput } from '../../src/transport/colo-records.js';

t.test('colo INPUT and OUTPUT side payloads round-trip', async (t) => {
  const inputs = [5, 6, 7].map((index, i) => ({ index, conn: 3 + i, data: Buffer.from('x'.repeat(i * 5 + 1)) }));
  const back = decodeColoInput(encodeColoInput(inputs));
  t.same(back.map((i) => [i.index, i.conn, Buffer.from(i.data).toString()]), inputs.map((i) => [i.index, i.conn, i.data.toString()]));
  const out = { epoch: 12, packets: [{ conn: 1, data: Buffer.from('hello') }, { conn: 9, data: Buffer.alloc(0) }] };
  const o = decodeColoOutput(encodeColoOutput(out));
  t.equal(o.epoch, 12);
  t.same(o.packets.map((p) => [p.conn, Buffer.from(p.data).toString()]), [[1, 'hello'], [9, '']]);
  t.not(COLO_SIDE.INPUT, COLO_SIDE.OUTPUT);
});

t.test('malformed colo payloads are refused with an error naming what is wrong', async (t) => {
  const good = encodeColoInput([{ index: 1, conn: 1, data: Buffer.from('abc') }]);
  t.throws(() => decodeColoInput(good.subarray(0, 4)), { code: 'ETRUNC' }, 'shorter than its header');
  t.throws(() => decodeColoInput(good.subarray(0, good.length - 8)), { code: 'ETRUNC', message: /colo INPUT: entry 0 claims 3 bytes past the end/ }, 'an entry cut short');
  t.throws(() => decodeColoInput(Buffer.concat([good, Buffer.alloc(8)])), { code: 'ETRAILING' }, 'trailing bytes');
  const gap = encodeColoInput([
    { index: 1, conn: 1, data: Buffer.from('a') },
    { index: 3, conn: 1, data: Buffer.from('b') },
  ]);
  t.throws(() => decodeColoInput(gap), { code: 'EBADSEQ', message: /input 3 follows 1/ }, 'inputs out of order');
  const lying = encodeColoOutput({ epoch: 1, packets: [{ conn: 1, data: Buffer.from('abcdefgh') }] });
  lying.writeUInt32LE(1000, 16 + 4); // claims 1000 bytes
  t.throws(() => decodeColoOutput(lying), { code: 'ETRUNC', message: /claims 1000 bytes past the end/ });
});
