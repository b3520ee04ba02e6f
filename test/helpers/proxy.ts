/** A TCP forwarder the test controls: `cut()` is a network partition (connections die, new ones are refused), `heal()` ends it. */
import net from 'node:net';
import type { Test } from 'tap';

export interface Partitionable {
  port: number;
  cut(): void;
  heal(): void;
}

export async function partitionable(t: Test, to: () => number): Promise<Partitionable> {
  const conns = new Set<net.Socket>();
  let down = false;
  const server = net.createServer((c) => {
    if (down) {
      c.destroy();
      return;
    }
    const s = net.connect(to(), '127.0.0.1');
    conns.add(c);
    conns.add(s);
    c.pipe(s);
    s.pipe(c);
    const end = () => {
      c.destroy();
      s.destroy();
      conns.delete(c);
      conns.delete(s);
    };
    c.on('error', end).on('close', end);
    s.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => {
    for (const c of conns) c.destroy();
    server.close();
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    cut() {
      down = true;
      for (const c of conns) c.destroy();
      conns.clear();
    },
    heal() {
      down = false;
    },
  };
}
