/**
 * Fuzz target: a pairing's key file (src/security/peers.ts parsePeerFile: ini, then every
 * field checked), read at every connection from the keys directory or from a file a user
 * hands to `xl-ha pair`.
 *
 * Input: the file's text (UTF-8).
 * Clean: PeerKeyError. An entry that is accepted must hold what PeerEntry says.
 */
import { isPeerName, parsePeerFile, PeerKeyError } from '../../../src/security/peers.js';
import { attempt, expect } from './_check.js';

const NAME = 'peer-file';
const FILE = '/etc/xen/xl-ha/peers/fuzz.key';
export const sync = true;

export function fuzz(data: Buffer): void {
  const r = attempt(NAME, 'parsePeerFile', () => parsePeerFile(FILE, data.toString('utf8')), { classes: [PeerKeyError] });
  if (!r.ok) {
    expect(NAME, r.error.message.includes(FILE), `a key file error that does not name the file: ${r.error.message.slice(0, 200)}`);
    return;
  }
  const e = r.value;
  expect(NAME, isPeerName(e.host) && isPeerName(e.peer), 'accepted a host or peer that is not a host name');
  expect(NAME, e.key.length === 32, `accepted a key of ${e.key.length} bytes`);
  const strings = (l: unknown) => Array.isArray(l) && l.every((x) => typeof x === 'string' && x.length > 0);
  expect(NAME, strings(e.allow) && strings(e.disks) && strings(e.bridges), 'allow, disks or bridges is not a list of patterns');
  expect(NAME, e.disks.every((d) => d.startsWith('/') && !d.split('/').includes('..')), 'accepted a disk pattern that is not an absolute path without ..');
  if (e.address) expect(NAME, typeof e.address.host === 'string' && e.address.host.length > 0 && Number.isInteger(e.address.port), 'accepted an address without host or port');
}
