/**
 * Fuzz target: an xl domain configuration file (src/config/xlcfg.ts parseXlCfg), then the
 * domain and ha settings read from it (src/config/domain.ts domainConfigFromCfg), as
 * `xl-ha create` and the daemon's `create` request read a user's file.
 *
 * Input: the file's text (UTF-8).
 * Clean: XlCfgError (XlCfgSyntaxError is one) naming file:line, and ConfigError. A config that
 * is accepted must hold what ParsedDomainConfig says.
 */
import { DISK_FORMAT_IDS } from '../../../src/config/disk.js';
import { parseXlCfg, XlCfgError, XlCfgSyntaxError, type XlValue } from '../../../src/config/xlcfg.js';
import { ConfigError, domainConfigFromCfg, DOMAIN_NAME_PATTERN, LIMITS } from '../../../src/config/domain.js';
import { isModeId } from '../../../src/engine/modes/ids.js';
import { attempt, expect, type CleanRule } from './_check.js';

const NAME = 'xlcfg';
const SOURCE = 'fuzz.cfg';
export const sync = true;

const within = (v: unknown, r: { min: number; max: number }) => typeof v === 'number' && Number.isInteger(v) && v >= r.min && v <= r.max;

export function fuzz(data: Buffer): void {
  const text = data.toString('utf8');
  const parsed = attempt(NAME, 'parseXlCfg', () => parseXlCfg(text, SOURCE), { classes: [XlCfgError] });
  if (!parsed.ok) {
    const e = parsed.error as XlCfgError;
    expect(NAME, e.message.startsWith(`${SOURCE}:`) && e.line >= 1, `an xl.cfg error that does not say where: ${e.message.slice(0, 200)}`);
    if (e instanceof XlCfgSyntaxError) expect(NAME, e.column >= 1, `a syntax error without a column: ${e.message.slice(0, 200)}`);
    return;
  }
  // the grammar in xlcfg.ts: KEY := [A-Za-z_][A-Za-z0-9_.]*; a value is a string, a finite
  // number or a list of values (lists nest)
  const wellFormed = (v: XlValue): boolean => typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v)) || (Array.isArray(v) && v.every(wellFormed));
  for (const [key, entry] of parsed.value.entries) {
    expect(NAME, /^[A-Za-z_][A-Za-z0-9_.]*$/.test(key) && entry.line >= 1, `parsed a key "${key.slice(0, 80)}" at line ${entry.line}`);
    expect(NAME, wellFormed(entry.value), `key ${key} holds a value that is not a string, a finite number or a list of them`);
  }
  const rule: CleanRule = { classes: [ConfigError] };
  const cfg = attempt(NAME, 'domainConfigFromCfg', () => domainConfigFromCfg(parsed.value), rule);
  if (!cfg.ok) {
    const e = cfg.error as ConfigError;
    expect(NAME, e.errors.length >= 1 && e.errors.every((i) => i.message.length >= 10), 'a ConfigError without issues that say something');
    return;
  }
  const { domain, ha } = cfg.value;
  expect(NAME, DOMAIN_NAME_PATTERN.test(domain.name), `accepted the domain name ${JSON.stringify(domain.name)}`);
  expect(NAME, within(domain.memoryMiB, LIMITS.memoryMiB) && within(domain.vcpus, LIMITS.vcpus), 'accepted memory or vcpus out of range');
  expect(
    NAME,
    domain.disks.every((d) => (d.target !== '' || d.devtype === 'cdrom') && d.vdev !== '' && (DISK_FORMAT_IDS as readonly string[]).includes(d.format) && (d.access === 'rw' || d.access === 'ro')),
    'accepted a disk without target or vdev, or with a format or access outside the vocabulary',
  );
  if (ha) {
    expect(NAME, isModeId(ha.mode), `accepted ha = ${ha.mode}`);
    expect(NAME, within(ha.peer.port, LIMITS.port) && ha.peer.host.length > 0, 'accepted a peer without host or port');
    expect(NAME, ha.failoverTimeoutMs > ha.heartbeatMs, 'accepted a failover timeout shorter than the heartbeat');
  }
}
