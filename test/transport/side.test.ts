import t from 'tap';
import net from 'node:net';
import { Channel } from '../../src/transport/channel.js';
import { ProtocolError, type Frame } from '../../src/transport/framing.js';
import { XLHA_REC, decodeSide, encodeSide } from '../../src/transport/channel-records.js';
import { SideChannel, type SideMessage } from '../../src/transport/side.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Two channels over loopback; every frame each one receives goes to its `take`. */
async function ends(t: { teardown(fn: () => void): void }) {
  let give!: (c: Channel) => void;
  const accepted = new Promise<Channel>((r) => (give = r));
  const server = net.createServer({ pauseOnConnect: true }, (sock) => give(Channel.accept(sock)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const sock = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  const a = new Channel(sock);
  const b = await accepted;
  t.teardown(() => {
    a.dispose();
    b.dispose();
    server.close();
  });
  return { a, b };
}

function route(ch: Channel, side: SideChannel, errors: Error[]): void {
  ch.onFrame((f: Frame) => {
    if (f.type === XLHA_REC.SIDE || f.type === XLHA_REC.SIDE_ACK) side.take(f.type, f.body).catch((e: Error) => errors.push(e));
  });
}

t.test('side frames arrive in order, intact, and each send resolves at its acknowledgement', async (t) => {
  const { a, b } = await ends(t);
  const got: SideMessage[] = [];
  const errors: Error[] = [];
  const sa = new SideChannel(a);
  const sb = new SideChannel(b, (m) => void got.push({ ...m, payload: Buffer.from(m.payload) }));
  route(a, sa, errors);
  route(b, sb, errors);
  const sent = Array.from({ length: 50 }, (_, i) => Buffer.from(`input ${i} `.repeat(i + 1)));
  await Promise.all(sent.map((p, i) => sa.send(7 + (i % 3), p)));
  t.equal(got.length, 50, 'all 50 arrived');
  t.ok(got.every((m, i) => m.seq === i + 1 && m.kind === 7 + (i % 3) && m.payload.equals(sent[i]!)), 'in order, with their kind and bytes');
  t.same(sa.stats, { sent: 50, acked: 50, received: 0 });
  t.same(errors, []);
});

t.test('a send is not acknowledged before the receiver has handled it', async (t) => {
  const { a, b } = await ends(t);
  let release!: () => void;
  const handled = new Promise<void>((r) => (release = r));
  const sa = new SideChannel(a);
  const sb = new SideChannel(b, () => handled);
  route(a, sa, []);
  route(b, sb, []);
  let acked = false;
  const p = sa.send(1, Buffer.from('x')).then(() => (acked = true));
  await sleep(100);
  t.notOk(acked, 'not acknowledged while the receiver is still handling it');
  release();
  await p;
  t.ok(acked);
});

t.test('a tampered, replayed or reordered side frame is a protocol error and is never handed on', async (t) => {
  const good = encodeSide({ seq: 1, kind: 2, payload: Buffer.from('mirrored input') });
  const tampered = Buffer.from(good);
  tampered[30] ^= 0x01;
  t.throws(() => decodeSide(tampered), { code: 'ECHECKSUM', message: /side frame 1: crc32 mismatch/ }, 'a flipped payload bit fails the CRC');
  const kindChanged = Buffer.from(good);
  kindChanged.writeUInt32LE(3, 8);
  t.throws(() => decodeSide(kindChanged), { code: 'ECHECKSUM' }, 'the CRC covers the kind too');
  t.throws(() => decodeSide(good.subarray(0, 10)), ProtocolError, 'a truncated frame');

  const { a, b } = await ends(t);
  const got: number[] = [];
  const sb = new SideChannel(b, (m) => void got.push(m.seq));
  await sb.take(XLHA_REC.SIDE, encodeSide({ seq: 1, kind: 2, payload: Buffer.from('one') }));
  await t.rejects(sb.take(XLHA_REC.SIDE, encodeSide({ seq: 1, kind: 2, payload: Buffer.from('one') })), { code: 'EBADSEQ', message: /side frame 1 out of sequence: expected 2/ }, 'a replay');
  await t.rejects(sb.take(XLHA_REC.SIDE, encodeSide({ seq: 3, kind: 2, payload: Buffer.from('three') })), { code: 'EBADSEQ', message: /expected 2/ }, 'a gap (reordered or lost)');
  await t.rejects(sb.take(XLHA_REC.SIDE, tampered), { code: 'ECHECKSUM' });
  t.same(got, [1], 'only the good frame was handed on');
  const sa = new SideChannel(a);
  await t.rejects(sa.take(XLHA_REC.SIDE_ACK, Buffer.from(new Uint8Array(16).fill(0).map((_, i) => (i === 0 ? 5 : 0)))), { code: 'EBADSEQ', message: /acknowledges a side frame never sent/ });
});

t.test('a session that takes no side frames refuses them, naming the kind', async (t) => {
  const { b } = await ends(t);
  const sb = new SideChannel(b);
  await t.rejects(sb.take(XLHA_REC.SIDE, encodeSide({ seq: 1, kind: 9, payload: Buffer.alloc(0) })), { code: 'EBADTYPE', message: /side frame kind 9 is not taken/ });
});

t.test('pending sends reject when the link ends', async (t) => {
  const { a } = await ends(t);
  const sa = new SideChannel(a);
  const p = sa.send(1, Buffer.from('never acknowledged'));
  sa.close(new Error('link lost'));
  await t.rejects(p, /link lost/);
  await t.rejects(sa.send(1, Buffer.from('after')), /link lost/, 'and later sends too');
});
