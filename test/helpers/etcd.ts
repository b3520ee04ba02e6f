/** An etcd of the test's own on loopback (src/chaos/etcd.ts), stopped at the end of the test. */
import type { Test } from 'tap';
import { startEtcd as start, type LocalEtcd } from '../../src/chaos/etcd.js';

export type TestEtcd = LocalEtcd;

export async function startEtcd(t: Test): Promise<TestEtcd> {
  const e = await start();
  t.teardown(() => e.stop());
  return e;
}
