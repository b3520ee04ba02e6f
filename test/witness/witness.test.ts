/** The witness's decisions against a real etcd (src/witness/witness.ts). */
import t from 'tap';
import { FencedError, Witness, WitnessUnreachableError, parseWitnessEndpoints } from '../../src/witness/witness.js';
import { startEtcd } from '../helpers/etcd.js';
import { freePort } from '../../src/demo/hosts.js';

const UUID = '5a9c7e52-6c45-4f0b-9b2f-1f1a6c2b3d4e';

t.test('claim, then of the primary going unprotected and the backup going active exactly one wins', async (t) => {
  const etcd = await startEtcd(t);
  const w = new Witness([`http://${etcd.endpoint}`]);
  t.teardown(() => w.close());
  const c = await w.claim(UUID, 'a', 'b');
  t.same(c.record, { host: 'a', state: 'protected', backup: 'b' });
  t.same((await w.claim(UUID, 'a', 'b')).record.host, 'a', 'the owner claims again (a reconnect)');
  await t.rejects(w.claim(UUID, 'c', 'b'), FencedError, 'another host cannot claim it');
  // both race for it
  const results = await Promise.allSettled([
    w.takeFrom(UUID, 'a', 'b', { host: 'a', state: 'unprotected' }),
    w.takeFrom(UUID, 'a', 'b', { host: 'b', state: 'active' }),
  ]);
  const won = results.filter((r) => r.status === 'fulfilled');
  t.equal(won.length, 1, 'exactly one swap wins');
  const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
  t.type(lost.reason, FencedError, 'the other is fenced');
  const token = (won[0] as PromiseFulfilledResult<number>).value;
  t.equal((await w.owner(UUID))!.revision, token, 'the fencing token is the owner key revision');
  if (results[1]!.status === 'fulfilled') await t.rejects(w.claim(UUID, 'a', 'b'), FencedError, 'the primary cannot reclaim a domain its backup took');
  else t.equal((await w.claim(UUID, 'a', 'b')).record.state, 'protected', 'the primary that ran alone protects again');
});

t.test('in either order, the second swap is fenced', async (t) => {
  const etcd = await startEtcd(t);
  const w = new Witness([`http://${etcd.endpoint}`]);
  t.teardown(() => w.close());
  await w.claim(UUID, 'a', 'b');
  const token = await w.takeFrom(UUID, 'a', 'b', { host: 'b', state: 'active' });
  await t.rejects(w.takeFrom(UUID, 'a', 'b', { host: 'a', state: 'unprotected' }), /is active by host b/, 'backup first: the primary is fenced');
  t.equal(await w.takeFrom(UUID, 'a', 'b', { host: 'b', state: 'active' }), token, 'a retry of the winner gets the same token');
  const u2 = '6a9c7e52-6c45-4f0b-9b2f-1f1a6c2b3d4e';
  await w.claim(u2, 'a', 'b');
  await w.takeFrom(u2, 'a', 'b', { host: 'a', state: 'unprotected' });
  await t.rejects(w.takeFrom(u2, 'a', 'b', { host: 'b', state: 'active' }), /is unprotected by host a/, 'primary first: the backup is fenced');
});

t.test('a backup takes over only a domain still protected by that primary, for itself', async (t) => {
  const etcd = await startEtcd(t);
  const w = new Witness([`http://${etcd.endpoint}`]);
  t.teardown(() => w.close());
  await t.rejects(w.takeFrom(UUID, 'a', 'b', { host: 'b', state: 'active' }), /has no owner on the witness/, 'nothing to take');
  await w.claim(UUID, 'a', 'c');
  await t.rejects(w.takeFrom(UUID, 'a', 'b', { host: 'b', state: 'active' }), /protected by host a \(backup c\)/, 'not a backup of it');
  await w.release(UUID, 'a');
  t.equal(await w.owner(UUID), null, 'a clean stop leaves no owner');
  await w.claim(UUID, 'a', 'b');
  const b0 = await w.beatRevision(UUID);
  await w.beat(UUID, 'a', 1);
  t.ok((await w.beatRevision(UUID)) > b0, 'a beat moves the beat revision');
});

t.test('an unreachable witness is an error within the deadline, never a wait', async (t) => {
  const port = await freePort();
  const w = new Witness([`http://127.0.0.1:${port}`], 300);
  t.teardown(() => w.close());
  const t0 = Date.now();
  await t.rejects(w.owner(UUID), WitnessUnreachableError);
  t.ok(Date.now() - t0 < 2000, `answered in ${Date.now() - t0} ms`);
  t.same(parseWitnessEndpoints('10.0.0.1:2379, https://w:2379'), ['http://10.0.0.1:2379', 'https://w:2379']);
  t.throws(() => parseWitnessEndpoints('nope'), /is not host:port/);
});
