/**
 * The NBD server: against real clients (qemu-io, qemu-img and nbdinfo from Debian's qemu-utils
 * and libnbd-bin, skipped with the reason when they are not installed), and against a raw
 * socket that breaks the protocol on purpose.
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { NBD_CMD, NBD_CMD_FLAG_FUA, NBD_ERR, NBD_FLAG_C_FIXED_NEWSTYLE, NBD_FLAG_CAN_MULTI_CONN, NBD_FLAG_HAS_FLAGS, NBD_FLAG_SEND_FLUSH, NBD_FLAG_SEND_FUA, NBD_FLAG_SEND_TRIM, NBD_FLAG_SEND_WRITE_ZEROES, NBD_INFO, NBD_OPT, NBD_REP } from '../../src/disk/nbd/protocol.js';
import { NbdServer } from '../../src/disk/nbd/server.js';
import { mulberry32 } from '../../src/util/prng.js';
import { RawClient, missingTool, serveImage, settlesWithin } from '../helpers/nbd.js';
import { recordingLogger } from '../helpers/log.js';

const run = promisify(execFile);
const MiB = 1 << 20;
const noQemu = missingTool('qemu-io', 'qemu-utils');
const noNbdinfo = missingTool('nbdinfo', 'libnbd-bin');

function pattern(seed: number, n: number): Buffer {
  const r = mulberry32(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}

/** Waits until a log line matching `re` is there (the server logs as it closes a connection). */
async function logged(lines: { message: string }[], re: RegExp, ms = 2000): Promise<string> {
  const end = Date.now() + ms;
  for (;;) {
    const hit = lines.find((l) => re.test(l.message));
    if (hit) return hit.message;
    if (Date.now() > end) throw new Error(`no log line matches ${re}; lines: ${lines.map((l) => l.message).join(' | ')}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test('qemu-io writes patterns through the server, reads them back, and the image holds exactly those bytes', { skip: noQemu }, async (t) => {
  const size = 4 * MiB;
  const s = await serveImage(size);
  t.teardown(() => s.close());
  const expected = Buffer.alloc(size);
  const writes: [number, number, number][] = [
    [0, 4096, 0xa1],
    [12288, 65536, 0xb2],
    [70000, 3000, 0xc3], // unaligned, overlaps the previous one
    [size - 512, 512, 0xd4], // the last sector
    [MiB, 2 * MiB, 0xe5], // larger than one socket read
  ];
  const cmds = writes.flatMap(([off, len, p]) => ['-c', `write -P ${p} ${off} ${len}`]);
  cmds.push(...writes.slice(2).flatMap(([off, len, p]) => ['-c', `read -P ${p} ${off} ${len}`]));
  for (const [off, len, p] of writes) expected.fill(p, off, off + len);
  const out = await run('qemu-io', ['-f', 'raw', s.uri, ...cmds]);
  t.notMatch(out.stdout + out.stderr, /Pattern verification failed|error|failed/i, 'qemu-io verified every pattern it read back');
  t.equal(Buffer.compare(fs.readFileSync(s.image), expected), 0, 'the image file is byte for byte what was written');
  t.equal(s.server.stats.errorReplies, 0);
});

t.test('qemu-io over TCP loopback: a write with FUA, write-zeroes, discard and flush all succeed', { skip: noQemu }, async (t) => {
  const s = await serveImage(MiB, { fill: Buffer.alloc(MiB, 0x77) });
  t.teardown(() => s.close());
  const port = await s.server.listenTcp();
  const out = await run('qemu-io', ['-f', 'raw', `nbd://127.0.0.1:${port}/vm`, '-c', 'write -f -P 0x11 0 8192', '-c', 'write -z 8192 8192', '-c', 'discard 16384 4096', '-c', 'flush', '-c', 'read -P 0x11 0 8192', '-c', 'read -P 0 8192 8192']);
  t.notMatch(out.stdout + out.stderr, /Pattern verification failed|error|failed/i);
  const img = fs.readFileSync(s.image);
  t.ok(img.subarray(0, 8192).every((b) => b === 0x11), 'the FUA write is on the image');
  t.ok(img.subarray(8192, 16384).every((b) => b === 0), 'write-zeroes zeroed its range');
  t.ok(img.subarray(16384, MiB).every((b) => b === 0x77), 'discard is advisory: the bytes it named stay as they were, and nothing else changed');
});

t.test('qemu-img convert reads the whole export, byte for byte', { skip: noQemu }, async (t) => {
  const size = 5 * MiB + 4096;
  const fill = pattern(7, size);
  const s = await serveImage(size, { fill });
  t.teardown(() => s.close());
  const copy = path.join(s.dir, 'copy.img');
  await run('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', s.uri, copy]);
  t.equal(Buffer.compare(fs.readFileSync(copy), fill), 0);
});

t.test('nbdinfo lists the export (NBD_OPT_LIST) and reads its size, flags and block sizes (NBD_OPT_INFO)', { skip: noNbdinfo }, async (t) => {
  const s = await serveImage(3 * MiB);
  t.teardown(() => s.close());
  const { stdout } = await run('nbdinfo', ['--list', '--json', `nbd+unix:///?socket=${s.socket}`]);
  const info = JSON.parse(stdout) as { exports: Record<string, unknown>[] };
  t.equal(info.exports.length, 1);
  const e = info.exports[0]!;
  t.equal(e['export-name'], 'vm');
  t.equal(e['export-size'], 3 * MiB);
  t.match(e, { can_flush: true, can_fua: true, can_trim: true, can_zero: true, can_multi_conn: true, is_read_only: false });
  t.equal(e['block_size_preferred'], 4096);
  t.equal(e['block_size_maximum'], 32 * MiB);
});

t.test('the raw handshake: NBD_OPT_GO reports the size and the transmission flags', async (t) => {
  const s = await serveImage(MiB);
  t.teardown(() => s.close());
  const c = await RawClient.connect(s.socket);
  t.teardown(() => c.end());
  const { sizeBytes, flags } = await c.go();
  t.equal(sizeBytes, MiB);
  t.equal(flags, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_CAN_MULTI_CONN);
  const w = await c.call(NBD_CMD.WRITE, 4096, 4, { data: Buffer.from('abcd'), flags: NBD_CMD_FLAG_FUA });
  t.equal(w.error, 0);
  const r = await c.call(NBD_CMD.READ, 4096, 4);
  t.equal(r.data?.toString(), 'abcd');
});

t.test('NBD_OPT_EXPORT_NAME enters transmission with the size, flags and 124 zero bytes when NO_ZEROES was not asked for', async (t) => {
  const s = await serveImage(MiB);
  t.teardown(() => s.close());
  const c = await RawClient.connect(s.socket);
  t.teardown(() => c.end());
  await c.greeting();
  c.clientFlags(NBD_FLAG_C_FIXED_NEWSTYLE);
  c.option(NBD_OPT.EXPORT_NAME, Buffer.from('vm'));
  const r = await c.reader.read(134);
  t.equal(Number(r.readBigUInt64BE(0)), MiB);
  t.ok(r.readUInt16BE(8) & NBD_FLAG_HAS_FLAGS);
  t.ok(r.subarray(10).every((b) => b === 0));
  t.equal((await c.call(NBD_CMD.FLUSH, 0, 0)).error, 0);
});

t.test('option haggling: each wrong option gets its error reply and the handshake goes on', async (t) => {
  const s = await serveImage(MiB);
  t.teardown(() => s.close());
  const c = await RawClient.connect(s.socket);
  t.teardown(() => c.end());
  await c.greeting();
  c.clientFlags();
  c.option(NBD_OPT.LIST, Buffer.from('x'));
  t.match(await c.optionReply(), { opt: NBD_OPT.LIST, type: NBD_REP.ERR_INVALID }, 'NBD_OPT_LIST with data');
  c.option(NBD_OPT.STRUCTURED_REPLY);
  t.match(await c.optionReply(), { type: NBD_REP.ERR_UNSUP }, 'structured replies are not offered');
  c.option(NBD_OPT.STARTTLS);
  t.match(await c.optionReply(), { type: NBD_REP.ERR_UNSUP }, 'nor TLS');
  c.option(77);
  t.match(await c.optionReply(), { opt: 77, type: NBD_REP.ERR_UNSUP }, 'an unknown option');
  const bad = Buffer.alloc(10);
  bad.writeUInt32BE(1000, 0); // a name longer than the data
  c.option(NBD_OPT.GO, bad);
  const inv = await c.optionReply();
  t.equal(inv.type, NBD_REP.ERR_INVALID);
  t.match(inv.data.toString(), /names an export of 1000 bytes in 10 bytes/);
  const name = Buffer.from('nope');
  const unknown = Buffer.alloc(4 + name.length + 2);
  unknown.writeUInt32BE(name.length, 0);
  name.copy(unknown, 4);
  c.option(NBD_OPT.INFO, unknown);
  const unk = await c.optionReply();
  t.equal(unk.type, NBD_REP.ERR_UNKNOWN);
  t.match(unk.data.toString(), /export "nope" does not exist \(exports: "vm"\)/);
  c.option(NBD_OPT.LIST, Buffer.alloc(0), undefined, 100_000);
  c.sock.write(Buffer.alloc(100_000));
  const big = await c.optionReply();
  t.equal(big.type, NBD_REP.ERR_TOO_BIG, 'option data past 64 KiB is skipped and refused');
  // NBD_OPT_INFO with NBD_INFO_NAME and NBD_INFO_BLOCK_SIZE, then the list
  const vm = Buffer.from('vm');
  const info = Buffer.alloc(4 + 2 + 2 + 4);
  info.writeUInt32BE(2, 0);
  vm.copy(info, 4);
  info.writeUInt16BE(2, 6);
  info.writeUInt16BE(NBD_INFO.NAME, 8);
  info.writeUInt16BE(NBD_INFO.BLOCK_SIZE, 10);
  c.option(NBD_OPT.INFO, info);
  const infos = await c.optionReplies();
  t.same(infos.map((r) => [r.type, r.type === NBD_REP.INFO ? r.data.readUInt16BE(0) : -1]), [[NBD_REP.INFO, NBD_INFO.EXPORT], [NBD_REP.INFO, NBD_INFO.NAME], [NBD_REP.INFO, NBD_INFO.BLOCK_SIZE], [NBD_REP.ACK, -1]]);
  const bs = infos[2]!.data;
  t.same([bs.readUInt32BE(2), bs.readUInt32BE(6), bs.readUInt32BE(10)], [1, 4096, 32 * MiB]);
  c.option(NBD_OPT.LIST);
  const list = await c.optionReplies();
  t.equal(list.length, 2);
  t.equal(list[0]!.type, NBD_REP.SERVER);
  t.equal(list[0]!.data.subarray(4, 4 + list[0]!.data.readUInt32BE(0)).toString(), 'vm');
  c.option(NBD_OPT.ABORT);
  t.match(await c.optionReply(), { opt: NBD_OPT.ABORT, type: NBD_REP.ACK });
  await c.closed;
  t.equal(s.server.stats.protocolErrors, 0, 'none of these broke the protocol');
});

t.test('handshake errors close only that connection, each with a log line naming what was wrong', async (t) => {
  const s = await serveImage(MiB);
  t.teardown(() => s.close());
  const cases: { what: string; send: (c: RawClient) => void; log: RegExp }[] = [
    { what: 'unknown client flags', send: (c) => c.clientFlags(0x80), log: /client flags 0x00000080 set bits the server does not know/ },
    { what: 'a bad option magic', send: (c) => (c.clientFlags(), c.option(NBD_OPT.GO, Buffer.alloc(6), 0x1234n)), log: /option magic 0x0000000000001234, expected 0x49484156454f5054/ },
    { what: 'NBD_OPT_EXPORT_NAME of an unknown export', send: (c) => (c.clientFlags(), c.option(NBD_OPT.EXPORT_NAME, Buffer.from('other'))), log: /export "other", which does not exist/ },
    { what: 'an option of 16 MiB', send: (c) => (c.clientFlags(), c.option(NBD_OPT.GO, Buffer.alloc(0), undefined, 16 * MiB)), log: /NBD_OPT_GO with 16777216 bytes of data/ },
    { what: 'a non-fixed client asking for GO', send: (c) => (c.clientFlags(0), c.option(NBD_OPT.GO, Buffer.alloc(6))), log: /NBD_OPT_GO from a client that did not ask for fixed newstyle/ },
  ];
  for (const k of cases) {
    const c = await RawClient.connect(s.socket);
    await c.greeting();
    k.send(c);
    t.ok(await settlesWithin(c.closed, 2000), `${k.what}: the connection is closed`);
    t.match(await logged(s.lines, k.log), /; connection closed$/, `${k.what}: logged`);
  }
  t.equal(s.server.stats.protocolErrors, cases.length);
  const ok = await RawClient.connect(s.socket);
  t.teardown(() => ok.end());
  await ok.go();
  t.equal((await ok.call(NBD_CMD.READ, 0, 512)).error, 0, 'the server still serves a well-behaved client');
});

t.test('transmission: wrong requests get the NBD error the specification names, and the connection serves on', async (t) => {
  const size = MiB;
  const s = await serveImage(size);
  t.teardown(() => s.close());
  const c = await RawClient.connect(s.socket);
  t.teardown(() => c.end());
  await c.go();
  t.equal((await c.call(NBD_CMD.READ, size - 512, 1024)).error, NBD_ERR.EINVAL, 'a read past the end: EINVAL');
  t.equal((await c.call(NBD_CMD.READ, 2n ** 64n - 512n, 1024)).error, NBD_ERR.EINVAL, 'a read whose offset + length overflows 64 bits: EINVAL');
  t.equal((await c.call(NBD_CMD.WRITE, size - 2, 4, { data: Buffer.from('WXYZ') })).error, NBD_ERR.ENOSPC, 'a write past the end: ENOSPC (its data consumed)');
  t.equal((await c.call(NBD_CMD.WRITE_ZEROES, size, 4096)).error, NBD_ERR.ENOSPC, 'write-zeroes past the end: ENOSPC');
  t.equal((await c.call(NBD_CMD.TRIM, size, 4096)).error, NBD_ERR.EINVAL, 'a trim past the end: EINVAL');
  t.equal((await c.call(9, 0, 0)).error, NBD_ERR.EINVAL, 'an unknown command: EINVAL');
  t.equal((await c.call(NBD_CMD.WRITE, 0, 1, { data: Buffer.from('q'), flags: 0x40 })).error, NBD_ERR.EINVAL, 'an unknown command flag: EINVAL');
  t.equal((await c.call(NBD_CMD.READ, 0, 64 * MiB)).error, NBD_ERR.EINVAL, 'a read longer than the maximum payload: EINVAL, nothing allocated');
  const r = await c.call(NBD_CMD.READ, 0, 4);
  t.equal(r.error, 0, 'then an ordinary request is served');
  t.same(r.data, Buffer.alloc(4), 'and the refused write left nothing');
  t.equal(fs.readFileSync(s.image).subarray(size - 2).toString('hex'), '0000', 'the write past the end wrote nothing');
  t.equal(s.server.stats.errorReplies, 8);
  t.match(await logged(s.lines, /refused with ENOSPC/), /2 bytes|4 bytes at offset 1048574 pass the end of the 1048576-byte export/);
  t.ok(s.lines.some((l) => /command 9 is not a command this server knows/.test(l.message)), 'the unknown command is logged by number');
});

t.test('transmission breakage (bad magic, a huge write, a truncated header) closes that connection and others are served on', async (t) => {
  const s = await serveImage(MiB);
  t.teardown(() => s.close());
  const other = await RawClient.connect(s.socket);
  t.teardown(() => other.end());
  await other.go();
  const cases: { what: string; send: (c: RawClient) => void; log: RegExp }[] = [
    { what: 'a bad request magic', send: (c) => c.request(NBD_CMD.READ, 0, 512, { magic: 0xdeadbeef }), log: /request magic 0xdeadbeef, expected 0x25609513; connection closed/ },
    { what: 'a 4 GiB write', send: (c) => c.request(NBD_CMD.WRITE, 0, 0xffffffff), log: /NBD_CMD_WRITE of 4294967295 bytes is longer than the maximum payload of 33554432 \(its data is not read\); connection closed/ },
    { what: 'a truncated header', send: (c) => (c.sock.write(Buffer.alloc(10, 1)), c.sock.end()), log: /closed the connection in the middle of a message: the connection ended after 10 of 28 bytes/ },
    { what: 'a write whose data is cut short', send: (c) => (c.request(NBD_CMD.WRITE, 0, 4096, { data: Buffer.alloc(100) }), c.sock.end()), log: /after 100 of 4096 bytes/ },
  ];
  for (const k of cases) {
    const c = await RawClient.connect(s.socket);
    await c.go();
    k.send(c);
    t.ok(await settlesWithin(c.closed, 2000), `${k.what}: that connection is closed`);
    await logged(s.lines, k.log);
    t.pass(`${k.what}: logged`);
    const r = await other.call(NBD_CMD.READ, 0, 512);
    t.equal(r.error, 0, `${k.what}: the other client is still served`);
  }
  t.same(fs.readFileSync(s.image), Buffer.alloc(MiB), 'nothing reached the image');
  t.equal(s.server.stats.protocolErrors, cases.length);
});

t.test('connections past the limit are closed as they arrive; a handshake left unfinished is dropped after its timeout', async (t) => {
  const s = await serveImage(MiB, { server: { maxConnections: 2, handshakeTimeoutMs: 200 } });
  t.teardown(() => s.close());
  const a = await RawClient.connect(s.socket);
  const b = await RawClient.connect(s.socket);
  t.teardown(() => (a.end(), b.end()));
  await a.go();
  await b.greeting(); // b never finishes
  const c = await RawClient.connect(s.socket);
  t.ok(await settlesWithin(c.closed, 1000), 'the third connection is closed at once');
  await logged(s.lines, /NBD connection refused/);
  t.ok(await settlesWithin(b.closed, 2000), 'the unfinished handshake is dropped');
  await logged(s.lines, /handshake not finished in time/);
  t.equal((await a.call(NBD_CMD.READ, 0, 512)).error, 0, 'the finished one is served on');
});

t.test('the server refuses two exports of the same name, and a unix socket path that is not a socket', async (t) => {
  const { log } = recordingLogger();
  const s = await serveImage(MiB);
  t.teardown(() => s.close());
  t.throws(() => new NbdServer({ exports: [s.disk, s.disk], log }), /NBD export name "vm" is given twice/);
  const server = new NbdServer({ exports: [s.disk], log });
  await t.rejects(server.listenUnix(s.image), /cannot serve NBD on .*vm\.img: it exists and is not a socket/);
  await server.close();
});
