/**
 * The tools' argument check: a known option passes, anything else is named and refused before
 * a minute of bench runs starts; `--help` prints the usage.
 */
import t from 'tap';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync, spawnSync } from 'node:child_process';
import { checkToolArgs, toolUsage, type ToolOption } from '../../src/util/tool-args.js';

const OPTS: ToolOption[] = [
  { name: '--modes', value: 'required', help: 'which modes' },
  { name: '--scale', value: 'optional', help: 'series' },
  { name: '--json', value: 'none', help: 'json' },
];

t.test('known options and their values pass', async (t) => {
  t.same(checkToolArgs([], OPTS), { ok: true, help: false });
  t.same(checkToolArgs(['--modes', 'remus,kemari', '--json'], OPTS), { ok: true, help: false });
  t.same(checkToolArgs(['--modes=remus', '--scale', 'domains', '--json'], OPTS), { ok: true, help: false });
  t.same(checkToolArgs(['--scale', '--json'], OPTS), { ok: true, help: false }, 'an optional value is not taken from the next option');
  t.same(checkToolArgs(['--scale=dirty'], OPTS), { ok: true, help: false });
  t.same(checkToolArgs(['--json', '--help'], OPTS), { ok: true, help: true });
  t.same(checkToolArgs(['-h'], OPTS), { ok: true, help: true });
});

t.test('an unknown word names itself and what is accepted', async (t) => {
  const r = checkToolArgs(['--scael', 'domains'], OPTS);
  t.equal(r.ok, false);
  if (!r.ok) t.equal(r.error, 'unknown option "--scael": accepted are --modes, --scale, --json, --help');
  const s = checkToolArgs(['--scale', 'domains', 'memory'], OPTS);
  t.equal(s.ok, false);
  if (!s.ok) t.match(s.error, /^unexpected argument "memory"/);
  const v = checkToolArgs(['--json=1'], OPTS);
  t.equal(v.ok, false);
  if (!v.ok) t.equal(v.error, '--json takes no value (got "--json=1")');
  const m = checkToolArgs(['--modes'], OPTS);
  t.equal(m.ok, false);
  if (!m.ok) t.equal(m.error, '--modes needs a value');
  const m2 = checkToolArgs(['--modes', '--json'], OPTS);
  t.equal(m2.ok, false, 'a required value is not taken from the next option');
});

t.test('the usage lists every option', async (t) => {
  const u = toolUsage('usage: x', OPTS);
  t.match(u, /^usage: x\n/);
  t.match(u, /--modes V +which modes/);
  t.match(u, /--scale \[V\] +series/);
  t.match(u, /--json +json/);
  t.match(u, /--help +this text/);
});

t.test('the bench and the demo refuse a bad argument at once and print their usage on --help', async (t) => {
  const here = path.dirname(fileURLToPath(import.meta.url));
  for (const tool of ['bench', 'demo']) {
    const entry = path.resolve(here, `../../src/${tool}/main.js`);
    const bad = spawnSync(process.execPath, [entry, '--nosuch'], { encoding: 'utf8', timeout: 20_000 });
    t.equal(bad.status, 2, `${tool} --nosuch exits 2`);
    t.match(bad.stderr, new RegExp(`^${tool}: unknown option "--nosuch": accepted are `), `${tool} names the option`);
    t.equal(bad.stdout, '', `${tool} started nothing`);
    const help = execFileSync(process.execPath, [entry, '--help'], { encoding: 'utf8', timeout: 20_000 });
    t.match(help, new RegExp(`^usage: npm run ${tool} -- \\[options\\]`), `${tool} --help`);
    t.match(help, /--json/);
  }
});
