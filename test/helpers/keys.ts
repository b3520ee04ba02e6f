/** Two hosts' keys directories under `dir`, paired as keygen + pair would pair them. */
import path from 'node:path';
import { pairLocally, PeerKeys } from '../../src/security/peers.js';

export function pairedKeys(dir: string, a = 'p', b = 'b'): Record<string, PeerKeys> {
  const ka = new PeerKeys(path.join(dir, `${a}-peers`), a);
  const kb = new PeerKeys(path.join(dir, `${b}-peers`), b);
  pairLocally(ka, kb);
  return { [a]: ka, [b]: kb };
}
