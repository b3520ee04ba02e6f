import t from 'tap';
import { createRole, RoleSetupError, SecondaryRole } from '../../src/failover/roles.js';
import type { BackendFeatures } from '../../src/backend/types.js';
import { silentLogger } from '../../src/util/log.js';

const all: BackendFeatures = { outputBuffering: true, outputEvents: true, ingressTap: true, runnableReplica: true, diskReplication: true, maxInFlight: 8 };

t.test('the backup plays the role of the HELLO mode, or names what it cannot do', async (t) => {
  t.equal(createRole('remus', all, 'sim', 'b').name, 'replica');
  t.equal(createRole('kemari', all, 'sim', 'b').name, 'replica');
  t.type(createRole('colo', all, 'sim', 'b'), SecondaryRole);
  t.throws(() => createRole('colo', { ...all, runnableReplica: false }, 'xen', 'b2'), new RoleSetupError('mode colo needs a replica that runs as the secondary, which the xen backend on host b2 cannot provide'));
  t.throws(() => createRole('llm', all, 'sim', 'b'), /mode llm is not implemented yet by the backup on host b/);
});

t.test("colo's secondary refuses a replica that cannot run, and side frames that are not input", async (t) => {
  const role = new SecondaryRole();
  const replica = { name: 'vm', lastEpoch: 0 } as unknown as Parameters<SecondaryRole['start']>[0]['replica'];
  t.throws(() => role.start({ replica, sendSide: async () => {}, log: silentLogger() }), /the replica of vm cannot run as colo's secondary/);
  t.throws(() => role.onSide({ seq: 1, kind: 2, payload: Buffer.alloc(0) }), /side frame kind 2 from the primary is not an input/);
});
