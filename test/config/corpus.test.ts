/**
 * The cfg corpus (test/config/corpus/*.cfg): PV, PVH and HVM guests as people write them
 * for xl, every disk and vif syntax of the man pages, and xl's own syntax extensions; and
 * bad inputs (test/config/corpus/bad/*.cfg), each with its exact errors.
 *
 * Expectations are `#!` comment lines in each file:
 *   #! domain {json}      the DomainConfig has these fields (t.has)
 *   #! ha {json}|null     the HaConfig has these fields, or there is none
 *   #! disks [[vdev, target, format, access, devtype?], ...]   exactly these disks
 *   #! warning <text>     exactly these warnings, "file:line: message", in order
 *   #! error <text>       (bad/) exactly these errors, "file:line: message", in order
 */
import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseXlCfg, XlCfgError } from '../../src/config/xlcfg.js';
import { ConfigError, domainConfigFromCfg, formatIssue } from '../../src/config/domain.js';

const here = path.dirname(fileURLToPath(import.meta.url)); // dist/test/config
const corpus = path.resolve(here, '..', '..', '..', 'test', 'config', 'corpus');

function expectations(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const m of text.matchAll(/^#! (\w+) ?(.*)$/gm)) out.set(m[1]!, [...(out.get(m[1]!) ?? []), m[2]!]);
  return out;
}

function cfgFiles(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.cfg'))
    .sort();
}

const good = cfgFiles(corpus);
const bad = cfgFiles(path.join(corpus, 'bad'));

t.test('the corpus is varied', async (t) => {
  t.ok(good.length >= 12, `${good.length} valid configs`);
  t.ok(bad.length >= 20, `${bad.length} bad configs`);
  const all = good.map((f) => fs.readFileSync(path.join(corpus, f), 'utf8')).join('\n');
  for (const re of [/type\s*=\s*["']pv["']/, /type\s*=\s*["']pvh["']/, /builder\s*=\s*"hvm"/, /type\s*=\s*'hvm'/, /bootloader/, /\+=/, /vnuma/, /tap:aio:/, /phy:/, /,hdc:cdrom,r/, /target=/]) {
    t.match(all, re, `some config has ${re}`);
  }
});

for (const file of good) {
  t.test(`corpus/${file} is valid`, async (t) => {
    const text = fs.readFileSync(path.join(corpus, file), 'utf8');
    const want = expectations(text);
    t.notOk(want.has('error'), 'a valid config expects no error');
    let r: ReturnType<typeof domainConfigFromCfg>;
    try {
      r = domainConfigFromCfg(parseXlCfg(text, file));
    } catch (err) {
      t.fail(`refused: ${(err as Error).message}`);
      return;
    }
    for (const d of want.get('domain') ?? []) t.has(r.domain, JSON.parse(d), 'domain');
    for (const h of want.get('ha') ?? []) {
      const ha = JSON.parse(h) as object | null;
      if (ha === null) t.equal(r.ha, null, 'no ha');
      else t.has(r.ha, ha, 'ha');
    }
    for (const d of want.get('disks') ?? []) {
      t.same(
        r.domain.disks.map((x) => [x.vdev, x.target, x.format, x.access, ...(x.devtype ? [x.devtype] : [])]),
        JSON.parse(d),
        'disks',
      );
    }
    t.same(
      r.warnings.map((w) => formatIssue(w, file)),
      want.get('warning') ?? [],
      'warnings',
    );
  });
}

for (const file of bad) {
  t.test(`corpus/bad/${file} is refused with its exact errors`, async (t) => {
    const text = fs.readFileSync(path.join(corpus, 'bad', file), 'utf8');
    const want = expectations(text).get('error') ?? [];
    t.ok(want.length > 0, 'the file says which errors it expects');
    let got: string[] = [];
    try {
      domainConfigFromCfg(parseXlCfg(text, file));
      t.fail('accepted');
    } catch (err) {
      if (err instanceof XlCfgError) got = [err.message];
      else if (err instanceof ConfigError) {
        got = err.errors.map((i) => formatIssue(i, file));
        t.equal(err.message, got.length === 1 ? got[0] : `${file}: ${got.length} configuration errors:\n${got.join('\n')}`, 'the ConfigError message lists them all');
      } else throw err;
    }
    t.same(got, want, 'errors');
    for (const line of got) t.match(line, new RegExp(`^${file.replace(/\./g, '\\.')}:\\d+(:\\d+)?: `), 'each names file:line');
  });
}
