import t from 'tap';
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { decodeSeal, encodeSeal } from '../../src/transport/channel-records.js';
import { CheckpointDigest } from '../../src/transport/digest.js';
import { expectProtocolError } from '../helpers/protocol-error.js';

t.test('the checkpoint digest produces seals that verify and rejects torn or corrupt content', async (t) => {
  const bodies = [randomBytes(100), randomBytes(9000), Buffer.alloc(0)];
  const tx = new CheckpointDigest();
  for (const b of bodies) tx.update(b);
  const seal = tx.seal(5);
  t.equal(seal.contentBytes, 9100);
  t.equal(seal.contentFrames, 3);
  t.equal(seal.crc32, crc32(Buffer.concat(bodies)), 'CRC-32 of the bodies, as one');
  t.equal(tx.contentBytes, 0, 'sealing resets the accumulator');
  const wire = decodeSeal(encodeSeal(seal));

  const rx = new CheckpointDigest();
  for (const b of bodies) rx.update(b);
  t.doesNotThrow(() => rx.verify(wire));

  rx.update(bodies[0]!);
  let r = expectProtocolError(() => rx.verify(wire), 'EBADLEN', 'checkpoint 5', 'announces 3 content frame(s), received 1');
  t.ok(r.ok, r.message);
  rx.update(bodies[0]!);
  rx.update(bodies[1]!);
  rx.update(Buffer.alloc(5));
  r = expectProtocolError(() => rx.verify(wire), 'EBADLEN', 'seal announces 9100 content bytes, received 9105');
  t.ok(r.ok, r.message);
  const corrupt = bodies.map((b) => Buffer.from(b));
  corrupt[1]![10]! ^= 1;
  for (const b of corrupt) rx.update(b);
  r = expectProtocolError(() => rx.verify(wire), 'ECHECKSUM', 'checkpoint 5: crc32 mismatch');
  t.ok(r.ok, r.message);
});
