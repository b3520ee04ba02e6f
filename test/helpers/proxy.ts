/** A forwarder the test controls (src/chaos/proxy.ts), closed at the end of the test. */
import type { Test } from 'tap';
import { FaultProxy } from '../../src/chaos/proxy.js';

export async function partitionable(t: Test, to: () => number): Promise<FaultProxy> {
  const p = await new FaultProxy(to).start();
  t.teardown(() => p.close());
  return p;
}
