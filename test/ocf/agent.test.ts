/**
 * The Pacemaker resource agent ocf:xl-ha:domain (ocf/domain, docs/pacemaker.md), run as
 * Pacemaker runs it: the action as its only argument, the parameters as OCF_RESKEY_*, and an
 * OCF_ROOT without resource-agents' ocf-shellfuncs. Its meta-data is parsed as XML; its
 * monitor's answer for each state the daemon reports is checked against a stub xl-ha; start,
 * monitor, reload-agent and stop run against two real sim host processes on loopback, with a
 * failover to the backup after the primary is killed.
 */
import t from 'tap';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { SimHostProcess, freePort, kvCfg, pairSimHosts } from '../../src/demo/hosts.js';

const AGENT = fileURLToPath(new URL('../../../ocf/domain', import.meta.url));
const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-ocf-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

/** An OCF root without lib/heartbeat/ocf-shellfuncs: the agent must define what it needs. */
const OCF_ROOT = path.join(dir, 'ocf-root');
fs.mkdirSync(path.join(OCF_ROOT, 'resource.d', 'xl-ha'), { recursive: true });

/** The xl-ha command as installed: the built CLI (without the test runner's NODE_OPTIONS). */
const XLHA = path.join(dir, 'xl-ha');
fs.writeFileSync(XLHA, `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`, { mode: 0o755 });

type Env = Record<string, string>;
interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** A hermetic environment: PATH with node, no NODE_OPTIONS, no default control socket of the user's. */
function baseEnv(run: string): Env {
  fs.mkdirSync(run, { recursive: true });
  return {
    PATH: `${path.dirname(process.execPath)}:/usr/sbin:/usr/bin:/sbin:/bin`,
    HOME: dir,
    TMPDIR: dir,
    OCF_ROOT,
    HA_RSCTMP: run,
    XLHA_CONTROL: path.join(dir, 'no-daemon-here.sock'),
    OCF_RESOURCE_INSTANCE: 'test-domain',
  };
}

function agent(action: string | string[], env: Env, timeoutMs = 60_000): Promise<Run> {
  const args = Array.isArray(action) ? action : [action];
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile(AGENT, args, { env, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0;
      resolve({ code, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

const show = (r: Run) => `exit ${r.code} after ${r.ms} ms; stderr: ${r.stderr.trim().slice(0, 600)}`;

// ---------------------------------------------------------------------------------------------
// A small XML parser: well-formedness (one root, matched tags, quoted attributes, known
// entities), enough to read the meta-data as a cluster manager does.

interface XmlNode {
  name: string;
  attrs: Record<string, string>;
  children: XmlNode[];
  text: string;
}

function parseXml(src: string): XmlNode {
  let i = 0;
  const fail = (why: string): never => {
    throw new Error(`not well-formed XML: ${why} at offset ${i} (${JSON.stringify(src.slice(i, i + 40))})`);
  };
  const decode = (s: string): string =>
    s.replace(/&([^;\s&<]*);?/g, (m, e: string) => {
      const known: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
      if (!m.endsWith(';')) fail(`unterminated entity ${m}`);
      if (e in known) return known[e]!;
      if (/^#[0-9]+$/.test(e)) return String.fromCodePoint(Number(e.slice(1)));
      if (/^#x[0-9a-fA-F]+$/.test(e)) return String.fromCodePoint(parseInt(e.slice(2), 16));
      return fail(`unknown entity &${e};`);
    });
  const ws = () => {
    while (i < src.length && /\s/.test(src[i]!)) i++;
  };
  const misc = (allowDecl: boolean) => {
    for (;;) {
      ws();
      if (src.startsWith('<?xml', i)) {
        if (!allowDecl || i !== 0) fail('XML declaration not at the start');
        const e = src.indexOf('?>', i);
        if (e < 0) fail('unterminated declaration');
        i = e + 2;
      } else if (src.startsWith('<!--', i)) {
        const e = src.indexOf('-->', i);
        if (e < 0) fail('unterminated comment');
        i = e + 3;
      } else if (src.startsWith('<!DOCTYPE', i)) {
        const e = src.indexOf('>', i);
        if (e < 0) fail('unterminated DOCTYPE');
        i = e + 1;
      } else return;
      allowDecl = false;
    }
  };
  const name = (): string => {
    const m = /^[A-Za-z_][A-Za-z0-9_.:-]*/.exec(src.slice(i));
    if (!m) fail('expected a name');
    i += m![0].length;
    return m![0];
  };
  const element = (): XmlNode => {
    if (src[i] !== '<') fail('expected <');
    i++;
    const node: XmlNode = { name: name(), attrs: {}, children: [], text: '' };
    for (;;) {
      const before = i;
      ws();
      if (src.startsWith('/>', i)) {
        i += 2;
        return node;
      }
      if (src[i] === '>') {
        i++;
        break;
      }
      if (i === before) fail('expected whitespace before an attribute');
      const a = name();
      ws();
      if (src[i] !== '=') fail(`attribute ${a} without =`);
      i++;
      ws();
      const q = src[i];
      if (q !== '"' && q !== "'") fail(`attribute ${a} not quoted`);
      const e = src.indexOf(q!, i + 1);
      if (e < 0) fail(`unterminated attribute ${a}`);
      const v = src.slice(i + 1, e);
      if (v.includes('<')) fail(`< in attribute ${a}`);
      if (a in node.attrs) fail(`duplicate attribute ${a}`);
      node.attrs[a] = decode(v);
      i = e + 1;
    }
    for (;;) {
      if (i >= src.length) fail(`unclosed <${node.name}>`);
      if (src.startsWith('</', i)) {
        i += 2;
        const n = name();
        if (n !== node.name) fail(`</${n}> closes <${node.name}>`);
        ws();
        if (src[i] !== '>') fail('expected >');
        i++;
        return node;
      }
      if (src.startsWith('<!--', i)) {
        const e = src.indexOf('-->', i);
        if (e < 0) fail('unterminated comment');
        i = e + 3;
        continue;
      }
      if (src[i] === '<') {
        node.children.push(element());
        continue;
      }
      const e = src.indexOf('<', i);
      const raw = src.slice(i, e < 0 ? src.length : e);
      if (raw.includes('>') && raw.includes(']]>')) fail(']]> in text');
      node.text += decode(raw);
      i += raw.length;
    }
  };
  misc(true);
  const root = element();
  misc(false);
  if (i !== src.length) fail('content after the root element');
  return root;
}

const kids = (n: XmlNode | undefined, name: string) => (n ? n.children.filter((c) => c.name === name) : []);
const kid = (n: XmlNode | undefined, name: string) => kids(n, name)[0];

// ---------------------------------------------------------------------------------------------

const PARAMS = ['domain', 'peer', 'mode', 'interval', 'protect_options', 'config', 'control', 'xlha', 'reprotect', 'shutdown_timeout'];

t.test('meta-data is well-formed OCF 1.1 XML declaring every parameter the agent reads and every action it performs', async (t) => {
  const bare = baseEnv(path.join(dir, 'run-md'));
  const r = await agent('meta-data', bare);
  t.equal(r.code, 0, show(r));
  let root: XmlNode | undefined;
  try {
    root = parseXml(r.stdout);
  } catch (err) {
    t.fail((err as Error).message);
  }
  t.equal(root?.name, 'resource-agent');
  t.equal(root?.attrs.name, 'domain', 'named as its file (ocf:xl-ha:domain)');
  t.equal(kid(root, 'version')?.text.trim(), '1.1', 'OCF API version');
  t.ok(kid(root, 'longdesc')?.text.trim(), 'a longdesc');
  t.ok(kid(root, 'shortdesc')?.text.trim(), 'a shortdesc');

  const params = kids(kid(root, 'parameters'), 'parameter');
  t.same(params.map((p) => p.attrs.name).sort(), [...PARAMS].sort(), 'the parameters');
  for (const p of params) {
    const name = p.attrs.name;
    t.ok(kid(p, 'longdesc')?.attrs.lang && kid(p, 'longdesc')?.text.trim(), `${name}: longdesc with lang`);
    t.ok(kid(p, 'shortdesc')?.attrs.lang && kid(p, 'shortdesc')?.text.trim(), `${name}: shortdesc with lang`);
    t.match(kid(p, 'content')?.attrs.type ?? '', /^(string|integer|boolean)$/, `${name}: content type`);
  }
  const byName = (n: string) => params.find((p) => p.attrs.name === n);
  t.equal(byName('domain')?.attrs.required, '1', 'domain is required');
  t.equal(byName('domain')?.attrs.unique, '1', 'domain is unique: one resource per domain');
  t.equal(byName('peer')?.attrs.required, '1', 'peer is required');
  t.equal(kid(byName('mode'), 'content')?.attrs.default, 'remus');
  t.equal(kid(byName('xlha'), 'content')?.attrs.default, 'xl-ha');

  // every OCF_RESKEY_<param> the script reads is declared (the CRM_meta_* ones come from Pacemaker)
  const src = fs.readFileSync(AGENT, 'utf8');
  const read = new Set([...src.matchAll(/OCF_RESKEY_([A-Za-z0-9_]+)/g)].map((m) => m[1]!).filter((n) => !n.startsWith('CRM_meta_')));
  t.same([...read].sort(), [...PARAMS].sort(), 'the script reads exactly the declared parameters');

  const actions = kids(kid(root, 'actions'), 'action');
  const names = actions.map((a) => a.attrs.name);
  for (const a of ['start', 'stop', 'monitor', 'validate-all', 'meta-data', 'reload-agent']) t.ok(names.includes(a), `action ${a} is declared`);
  for (const a of actions) t.match(a.attrs.timeout ?? '', /^[0-9]+s$/, `${a.attrs.name}: a timeout`);
  t.match(actions.find((a) => a.attrs.name === 'monitor')?.attrs.interval ?? '', /^[0-9]+s$/, 'monitor: an interval');
  t.notOk(names.includes('promote') || names.includes('demote'), 'a primitive, not a promotable clone (docs/pacemaker.md says why)');

  const unset = { ...bare } as Env;
  delete unset.OCF_ROOT;
  const r2 = await agent('meta-data', unset);
  t.equal(r2.code, 0, 'without OCF_ROOT too');
  t.equal(r2.stdout, r.stdout);
});

t.test('usage: no action is OCF_ERR_ARGS, an unknown one OCF_ERR_UNIMPLEMENTED', async (t) => {
  const env = baseEnv(path.join(dir, 'run-usage'));
  const [none, unknown, two] = await Promise.all([agent([], env), agent('migrate_to', env), agent(['start', 'now'], env)]);
  t.equal(none.code, 2, show(none));
  t.match(none.stderr, /usage: .*\{start\|stop\|monitor\|validate-all\|reload-agent\|meta-data\}/);
  t.equal(unknown.code, 3, show(unknown));
  t.equal(two.code, 2, 'more than one argument');
});

t.test('validate-all names the bad parameter: OCF_ERR_CONFIGURED for a wrong value, OCF_ERR_INSTALLED for what this node lacks', async (t) => {
  const env = baseEnv(path.join(dir, 'run-validate'));
  const cfg = (name: string, text: string) => {
    const f = path.join(dir, name);
    fs.writeFileSync(f, text);
    return f;
  };
  const good = cfg('good.cfg', 'name = "vm1"\nmemory = 8\n');
  const good2 = cfg('good-single-quotes.cfg', "# a comment\nname='vm1'\nha_interval_ms = 10\n");
  const other = cfg('other.cfg', 'name = "vm2"\nmemory = 8\n');
  const withHa = cfg('ha.cfg', 'name = "vm1"\nmemory = 8\nha = "remus"\nha_peer = "b"\n');
  const ok: Env = { ...env, OCF_RESKEY_domain: 'vm1', OCF_RESKEY_peer: 'backup.example:7720', OCF_RESKEY_xlha: XLHA };
  const cases: [string, Env, number, RegExp][] = [
    ['valid', { ...ok }, 0, /^$/],
    ['valid, with a peer map, kemari and a config', { ...ok, OCF_RESKEY_peer: 'xen1=10.0.0.1, xen2=[fd00::2]:7721', OCF_RESKEY_mode: 'kemari', OCF_RESKEY_interval: '0', OCF_RESKEY_config: good }, 0, /^$/],
    ['valid, single-quoted name', { ...ok, OCF_RESKEY_config: good2 }, 0, /^$/],
    ['no domain', { ...ok, OCF_RESKEY_domain: '' }, 6, /parameter domain is missing/],
    ['bad domain', { ...ok, OCF_RESKEY_domain: 'vm 1;rm' }, 6, /domain="vm 1;rm" is not a domain name/],
    ['domid', { ...ok, OCF_RESKEY_domain: '7' }, 6, /domain="7" is not valid: give the domain's name/],
    ['Domain-0', { ...ok, OCF_RESKEY_domain: 'Domain-0' }, 6, /Domain-0/],
    ['no peer', { ...ok, OCF_RESKEY_peer: '' }, 6, /parameter peer is missing/],
    ['bad port', { ...ok, OCF_RESKEY_peer: 'backup:99999' }, 6, /peer: "backup:99999" is not valid/],
    ['bare IPv6', { ...ok, OCF_RESKEY_peer: 'fd00::2' }, 6, /peer: "fd00::2" is not valid: .*IPv6 as \[addr\]:port/],
    ['bad map entry', { ...ok, OCF_RESKEY_peer: 'xen1=10.0.0.1 xen2=' }, 6, /peer: entry "xen2=" is not valid/],
    ['mixed list', { ...ok, OCF_RESKEY_peer: 'xen1=10.0.0.1 10.0.0.2' }, 6, /several entries must each be NODE=host\[:port\]/],
    ['bad mode', { ...ok, OCF_RESKEY_mode: 'llm' }, 6, /mode="llm" is not valid: expected remus, kemari or colo/],
    ['interval not a number', { ...ok, OCF_RESKEY_interval: 'fast' }, 6, /interval="fast" is not valid for mode remus: expected milliseconds from 1 to 60000/],
    ['interval out of range for colo', { ...ok, OCF_RESKEY_mode: 'colo', OCF_RESKEY_interval: '5' }, 6, /from 10 to 600000 .*--max-interval/],
    ['protect_options with a shell character', { ...ok, OCF_RESKEY_protect_options: '-d; reboot' }, 6, /protect_options=.* only letters, digits/],
    ['reprotect not a boolean', { ...ok, OCF_RESKEY_reprotect: 'sometimes' }, 6, /reprotect="sometimes" is not valid/],
    ['shutdown_timeout not a number', { ...ok, OCF_RESKEY_shutdown_timeout: '1m' }, 6, /shutdown_timeout="1m"/],
    ['relative config', { ...ok, OCF_RESKEY_config: 'vm1.cfg' }, 6, /config="vm1.cfg" is not valid: expected an absolute path/],
    ['config for another domain', { ...ok, OCF_RESKEY_config: other }, 6, /names domain "vm2", not "vm1"/],
    ['config with ha =', { ...ok, OCF_RESKEY_config: withHa }, 6, /sets ha = \(line 3\): the agent protects the domain itself/],
    ['config missing on this node', { ...ok, OCF_RESKEY_config: path.join(dir, 'nowhere.cfg') }, 5, /nowhere\.cfg does not exist or cannot be read on this node/],
    ['xl-ha not installed', { ...ok, OCF_RESKEY_xlha: path.join(dir, 'no-such-xl-ha') }, 5, /the xl-ha command ".*no-such-xl-ha" is not installed/],
  ];
  const results = await Promise.all(cases.map(([, e]) => agent('validate-all', e)));
  for (const [i, [what, , code, msg]] of cases.entries()) {
    const r = results[i]!;
    t.equal(r.code, code, `${what}: exit ${code} (${show(r)})`);
    if (code !== 0) t.match(r.stderr, new RegExp(`ocf-exit-reason:.*${msg.source}`), `${what}: the exit reason names it`);
    else t.notMatch(r.stderr, /ocf-exit-reason/, `${what}: no exit reason`);
  }
  // start and monitor refuse the same way; a probe of a node without xl-ha finds nothing running
  const [start, probe, recurring] = await Promise.all([
    agent('start', { ...ok, OCF_RESKEY_mode: 'llm' }),
    agent('monitor', { ...ok, OCF_RESKEY_xlha: path.join(dir, 'no-such-xl-ha') }),
    agent('monitor', { ...ok, OCF_RESKEY_xlha: path.join(dir, 'no-such-xl-ha'), OCF_RESKEY_CRM_meta_interval: '10000' }),
  ]);
  t.equal(start.code, 6, `start with a bad mode: ${show(start)}`);
  t.equal(probe.code, 7, `a probe where xl-ha is not installed: not running (${show(probe)})`);
  t.equal(recurring.code, 5, `a recurring monitor where xl-ha is not installed: OCF_ERR_INSTALLED (${show(recurring)})`);
});

t.test('ocf-shellfuncs is sourced when the OCF root has it', async (t) => {
  const root = path.join(dir, 'ocf-root-with-lib');
  const lib = path.join(root, 'lib', 'heartbeat');
  fs.mkdirSync(lib, { recursive: true });
  const logged = path.join(dir, 'shellfuncs.log');
  fs.writeFileSync(
    path.join(lib, 'ocf-shellfuncs'),
    [
      'OCF_SUCCESS=0; OCF_ERR_GENERIC=1; OCF_ERR_ARGS=2; OCF_ERR_UNIMPLEMENTED=3; OCF_ERR_PERM=4; OCF_ERR_INSTALLED=5; OCF_ERR_CONFIGURED=6; OCF_NOT_RUNNING=7',
      `ocf_log() { echo "log $*" >> "${logged}"; }`,
      `ocf_exit_reason() { echo "reason $*" >> "${logged}"; }`,
      '',
    ].join('\n'),
  );
  const env = { ...baseEnv(path.join(dir, 'run-lib')), OCF_ROOT: root, OCF_RESKEY_domain: 'vm1', OCF_RESKEY_peer: 'b' };
  const r = await agent('validate-all', { ...env, OCF_RESKEY_mode: 'nope' });
  t.equal(r.code, 6);
  t.match(fs.readFileSync(logged, 'utf8'), /reason parameter mode="nope" is not valid/, "its ocf_exit_reason was used");
});

// ---------------------------------------------------------------------------------------------
// monitor against a stub xl-ha: what it answers for each state the daemon can report

const STUB = path.join(dir, 'xl-ha-stub');
fs.writeFileSync(
  STUB,
  `#!/bin/sh
echo "$*" >> "$STUB_DIR/calls"
case "$*" in
*"status --json")
  if [ -f "$STUB_DIR/down" ]; then cat "$STUB_DIR/down" >&2; exit 1; fi
  cat "$STUB_DIR/status.json" ;;
*"list --json")
  n=$(grep -c "list --json" "$STUB_DIR/calls")
  if [ -f "$STUB_DIR/destroyed" ]; then echo "[]"
  elif [ -f "$STUB_DIR/created" ] && [ -f "$STUB_DIR/list-created.json" ]; then cat "$STUB_DIR/list-created.json"
  elif [ -f "$STUB_DIR/list-switch-at" ] && [ "$n" -ge "$(cat "$STUB_DIR/list-switch-at")" ]; then cat "$STUB_DIR/list-2.json"
  else cat "$STUB_DIR/list.json"; fi ;;
"remus "*|*" remus "*|"kemari "*|*" kemari "*|"colo "*|*" colo "*)
  if [ -f "$STUB_DIR/protect-error" ]; then cat "$STUB_DIR/protect-error" >&2; exit "$(cat "$STUB_DIR/protect-rc" 2>/dev/null || echo 1)"; fi
  echo "domain vm1 protected" ;;
*"create "*) touch "$STUB_DIR/created"; echo "domain vm1 created (domid 5)" ;;
*"destroy "*) touch "$STUB_DIR/destroyed"; echo "domain vm1 destroyed" ;;
*"stop "*) echo "protection of vm1 stopped" ;;
*"failover "*)
  if [ -f "$STUB_DIR/failover-error" ]; then cat "$STUB_DIR/failover-error" >&2; exit 1; fi
  echo "domain vm1 now runs on this host from checkpoint 9" ;;
*) echo "xl-ha: stub: unexpected command: $*" >&2; exit 1 ;;
esac
`,
  { mode: 0o755 },
);

interface StubCase {
  host?: string;
  list?: Record<string, unknown>[];
  /** The list once `create` ran. */
  listCreated?: Record<string, unknown>[];
  /** The list from the n-th `list` call on. */
  listLater?: { at: number; list: Record<string, unknown>[] };
  protections?: Record<string, unknown>[];
  replicas?: Record<string, unknown>[];
  down?: string;
  protectError?: string;
  protectRc?: number;
  failoverError?: string;
}

function stub(name: string, c: StubCase): { env: Env; calls: () => string[] } {
  const sd = path.join(dir, 'stub', name);
  fs.mkdirSync(sd, { recursive: true });
  fs.writeFileSync(path.join(sd, 'status.json'), JSON.stringify({ host: c.host ?? 'ha1', backend: 'sim', protections: c.protections ?? [], replicas: c.replicas ?? [] }) + '\n');
  fs.writeFileSync(path.join(sd, 'list.json'), JSON.stringify(c.list ?? []) + '\n');
  if (c.down) fs.writeFileSync(path.join(sd, 'down'), c.down + '\n');
  if (c.protectError) fs.writeFileSync(path.join(sd, 'protect-error'), c.protectError + '\n');
  if (c.protectRc !== undefined) fs.writeFileSync(path.join(sd, 'protect-rc'), String(c.protectRc));
  if (c.failoverError) fs.writeFileSync(path.join(sd, 'failover-error'), c.failoverError + '\n');
  if (c.listCreated) fs.writeFileSync(path.join(sd, 'list-created.json'), JSON.stringify(c.listCreated) + '\n');
  if (c.listLater) {
    fs.writeFileSync(path.join(sd, 'list-2.json'), JSON.stringify(c.listLater.list) + '\n');
    fs.writeFileSync(path.join(sd, 'list-switch-at'), String(c.listLater.at));
  }
  const env: Env = {
    ...baseEnv(path.join(sd, 'run')),
    STUB_DIR: sd,
    OCF_RESKEY_domain: 'vm1',
    OCF_RESKEY_peer: 'ha1=127.0.0.1:7720 ha2=127.0.0.1:7721',
    OCF_RESKEY_interval: '20',
    OCF_RESKEY_xlha: STUB,
    OCF_RESKEY_CRM_meta_interval: '10000',
  };
  const calls = () => {
    try {
      return fs.readFileSync(path.join(sd, 'calls'), 'utf8').trim().split('\n');
    } catch {
      return [];
    }
  };
  return { env, calls };
}

const running = (state = 'running') => [{ domid: 3, name: 'vm1', uuid: 'u', memoryMiB: 8, vcpus: 1, state }];
const prot = (state: string, extra: Record<string, unknown> = {}) => [{ role: 'primary', domain: 'vm1', domid: 3, mode: 'remus', state, peer: '127.0.0.1:7721', ...extra }];
const OCF11: Env = { OCF_RA_VERSION_MAJOR: '1', OCF_RA_VERSION_MINOR: '1' };

/** Whether `cond` holds within `ms`. */
async function eventually(cond: () => boolean | Promise<boolean>, ms = 10_000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

t.test('monitor maps each state xl-ha reports to an OCF code', async (t) => {
  const cases: [string, StubCase, Env, number, RegExp | null][] = [
    ['running and protected', { list: running(), protections: prot('protected') }, {}, 0, null],
    ['paused (a checkpoint, or waiting for the witness) and protected', { list: running('paused'), protections: prot('protected') }, {}, 0, null],
    ['reconnecting to its backup, OCF 1.0', { list: running(), protections: prot('reconnecting', { reconnect: { lastError: 'connection refused' } }) }, {}, 0, null],
    ['reconnecting to its backup, OCF 1.1 (Pacemaker 2.1+): degraded', { list: running(), protections: prot('reconnecting', { reconnect: { lastError: 'connection refused' } }) }, OCF11, 190, null],
    ['fenced by the witness', { list: running('paused'), protections: prot('fenced', { error: 'domain u belongs to host ha2' }) }, {}, 1, /copy of vm1 was fenced/],
    ['fenced, the copy already destroyed', { list: [], protections: prot('fenced') }, {}, 1, /fenced/],
    ['a parked replica here (the sim lists it as replica)', { list: running('replica'), replicas: [{ role: 'backup', domain: 'vm1', state: 'replicating', primary: 'ha2', domid: 3, epoch: 9 }] }, {}, 7, null],
    ['a parked replica here (xen names it <name>--incoming)', { list: [{ domid: 4, name: 'vm1--incoming', state: 'paused' }], replicas: [{ role: 'backup', domain: 'vm1', state: 'replicating', primary: 'ha2' }] }, {}, 7, null],
    ['an activated replica since destroyed', { list: [], replicas: [{ role: 'backup', domain: 'vm1', state: 'active', primary: 'ha2' }] }, {}, 7, null],
    ['not here at all', { list: [{ domid: 1, name: 'other', state: 'running' }] }, {}, 7, null],
    ['shut down', { list: running('shutdown'), protections: prot('protected') }, {}, 1, /vm1 is shutdown here/],
    ['no daemon: nothing runs under xl-ha here (recurring)', { down: 'xl-ha: no xl-ha daemon is running on control socket /run/xl-ha/control.sock (start one with "xl-ha daemon")' }, {}, 7, null],
    ['no daemon: probe', { down: 'xl-ha: no xl-ha daemon is running on control socket /run/xl-ha/control.sock (start one with "xl-ha daemon")' }, { OCF_RESKEY_CRM_meta_interval: '0' }, 7, null],
    ['a daemon that does not answer', { down: 'xl-ha: the xl-ha daemon at /run/xl-ha/control.sock did not answer within 60000 ms' }, {}, 1, /cannot ask the xl-ha daemon about vm1: the xl-ha daemon at .* did not answer/],
    ['protected, reprotect off', { list: running(), protections: prot('protected') }, { OCF_RESKEY_reprotect: 'false' }, 0, null],
  ];
  const stubs = cases.map(([name, c], i) => stub(`m${i}`, c));
  const results = await Promise.all(cases.map(([, , extra], i) => agent('monitor', { ...stubs[i]!.env, ...extra })));
  for (const [i, [what, , , code, msg]] of cases.entries()) {
    const r = results[i]!;
    t.equal(r.code, code, `${what}: ${code} (${show(r)})`);
    if (msg) t.match(r.stderr, msg, `${what}: says why`);
    t.notOk(stubs[i]!.calls().some((c) => /(^| )(remus|kemari|colo) /.test(c)), `${what}: no protection attempted`);
  }
});

t.test('monitor protects again, in the background, a domain that runs here without protection; a refusal by the witness fails it', async (t) => {
  const plain = stub('re-plain', { list: running() });
  const byNode = stub('re-node', { host: 'xen-a-xlha', list: running(), protections: prot('stopped') });
  const off = stub('re-off', { list: running() });
  const refused = stub('re-refused', { list: running(), protectError: 'xl-ha: domain u belongs to host ha2 (active, revision 7) on the witness: this host must not run it' });
  const [a, b, c, d, e] = await Promise.all([
    agent('monitor', plain.env),
    agent('monitor', { ...byNode.env, ...OCF11, OCF_RESKEY_CRM_meta_on_node: 'ha1' }),
    agent('monitor', { ...off.env, OCF_RESKEY_reprotect: 'no' }),
    agent('monitor', refused.env),
    agent('monitor', { ...plain.env, OCF_RESKEY_peer: 'ha1=127.0.0.1:7720' }),
  ]);
  t.equal(a.code, 0, `unprotected, OCF 1.0: success (${show(a)})`);
  t.match(a.stderr, /vm1 runs here UNPROTECTED/, 'and a warning');
  t.ok(await eventually(() => plain.calls().some((x) => x === 'remus -i 20 vm1 127.0.0.1:7721')), `xl-ha remus -i 20 vm1 <the other node> was run (${plain.calls().join(' | ')})`);
  t.equal(b.code, 190, `unprotected, OCF 1.1: degraded (${show(b)})`);
  t.ok(await eventually(() => byNode.calls().some((x) => x === 'remus -i 20 vm1 127.0.0.1:7721')), `the Pacemaker node name picks the entry too (${byNode.calls().join(' | ')})`);
  t.equal(c.code, 0);
  await new Promise((r) => setTimeout(r, 300));
  t.notOk(off.calls().some((x) => x.includes('remus')), 'reprotect=no: no protection attempted');
  t.equal(d.code, 0, 'the first monitor only starts the attempt');
  t.equal(e.code, 0, `no entry for another node: runs unprotected (${show(e)})`);
  t.ok(await eventually(() => fs.existsSync(path.join(dir, 'stub', 're-refused', 'run', 'xl-ha-domain-vm1.err'))), 'the refusal was recorded');
  const again = await agent('monitor', refused.env);
  t.equal(again.code, 1, `next monitor: the witness says another host owns it: failed (${show(again)})`);
  t.match(again.stderr, /vm1 must not run here: domain u belongs to host ha2/);
});

t.test('start: what it does for each state, and no second running copy when the backup or the witness has the domain', async (t) => {
  const cfg = path.join(dir, 'stub-vm1.cfg');
  fs.writeFileSync(cfg, 'name = "vm1"\nmemory = 8\n');
  const withCfg = { OCF_RESKEY_config: cfg, OCF_RESKEY_CRM_meta_timeout: '20000' };
  const cases: [string, StubCase, number, RegExp, (calls: string[]) => boolean][] = [
    [
      'nothing here: created from config, then protected to the other node',
      { listCreated: running() },
      0,
      /creating it from .*stub-vm1\.cfg/,
      (c) => c.indexOf('create ' + cfg) >= 0 && c.indexOf('remus -i 20 vm1 127.0.0.1:7721') > c.indexOf('create ' + cfg),
    ],
    [
      'created, but the backup runs the domain already (it failed over there): destroyed again',
      { listCreated: running(), protectError: 'xl-ha: backup refused protection: domain vm1 already runs on host ha2 (it failed over here)' },
      1,
      /ocf-exit-reason:vm1 must not run here: backup refused protection: domain vm1 already runs on host ha2 .*the copy just created was destroyed/,
      (c) => c.includes('destroy vm1'),
    ],
    [
      'created, but the witness gives the domain to another host: destroyed again',
      { listCreated: running(), protectError: 'xl-ha: domain u belongs to host ha2 (active, revision 4) on the witness: this host must not run it' },
      1,
      /vm1 must not run here: domain u belongs to host ha2/,
      (c) => c.includes('destroy vm1'),
    ],
    [
      'created, the backup does not answer: runs unprotected',
      { listCreated: running(), protectError: 'xl-ha: cannot connect to 127.0.0.1:7721: connect ECONNREFUSED 127.0.0.1:7721' },
      0,
      /vm1 runs here UNPROTECTED: protection to 127\.0\.0\.1:7721 failed: cannot connect/,
      (c) => !c.includes('destroy vm1'),
    ],
    [
      'xl-ha refuses the protection options: OCF_ERR_CONFIGURED',
      { listCreated: running(), protectError: 'xl-ha: remus: unknown option --bogus', protectRc: 2 },
      6,
      /xl-ha remus refused its arguments .*unknown option --bogus/,
      () => true,
    ],
    [
      'a replica that replicates: activated with xl-ha failover',
      { list: running('replica'), listLater: { at: 3, list: running() }, replicas: [{ role: 'backup', domain: 'vm1', state: 'replicating', primary: 'ha2', epoch: 9 }] },
      0,
      /holds its replica \(replicating, checkpoint 9, from ha2\): activating it/,
      (c) => c.includes('failover vm1') && !c.some((x) => x.startsWith('create')),
    ],
    [
      'a replica whose primary is alive: not activated',
      { list: running('replica'), replicas: [{ role: 'backup', domain: 'vm1', state: 'replicating', primary: 'ha2', epoch: 9 }], failoverError: 'xl-ha: the primary of vm1 (ha2) is connected and was heard from 20 ms ago: refusing to fail over while it is alive (split brain); use --force if it is really dead' },
      1,
      /not activating the replica of vm1: its primary ha2 still runs it/,
      (c) => !c.some((x) => x.includes('--force')),
    ],
    [
      'a replica being dropped after a clean stop: waits for it, then creates',
      { list: running('replica'), listLater: { at: 3, list: [] }, listCreated: running(), replicas: [{ role: 'backup', domain: 'vm1', state: 'stopped', primary: 'ha2' }] },
      0,
      /its replica here is being dropped/,
      (c) => c.includes('create ' + cfg) && !c.includes('failover vm1'),
    ],
    [
      'this copy was fenced: refuses until stopped',
      { list: running('paused'), protections: prot('fenced') },
      1,
      /copy of vm1 was fenced .*stop it/,
      (c) => !c.some((x) => / remus |^remus /.test(x)),
    ],
  ];
  const stubs = cases.map(([, c], i) => stub(`s${i}`, c));
  const results = await Promise.all(cases.map((_, i) => agent('start', { ...stubs[i]!.env, ...withCfg })));
  for (const [i, [what, , code, msg, callsOk]] of cases.entries()) {
    const r = results[i]!;
    t.equal(r.code, code, `${what}: ${code} (${show(r)})`);
    t.match(r.stderr, msg, `${what}: says so`);
    t.ok(callsOk(stubs[i]!.calls()), `${what}: xl-ha was asked the right things (${stubs[i]!.calls().join(' | ')})`);
  }
});

t.test('stop: protection ends before the domain is destroyed; a replica here is left alone; a bad protection parameter does not fail it', async (t) => {
  const primary = stub('stop-primary', { list: running(), protections: prot('protected') });
  const replica = stub('stop-replica', { list: running('replica'), replicas: [{ role: 'backup', domain: 'vm1', state: 'replicating', primary: 'ha2' }] });
  const badParams = stub('stop-bad', { list: [] });
  const [a, b, c] = await Promise.all([
    agent('stop', primary.env),
    agent('stop', replica.env),
    agent('stop', { ...badParams.env, OCF_RESKEY_mode: 'llm', OCF_RESKEY_interval: 'x', OCF_RESKEY_peer: '' }),
  ]);
  t.equal(a.code, 0, show(a));
  const calls = primary.calls();
  t.ok(calls.indexOf('stop vm1') >= 0 && calls.indexOf('stop vm1') < calls.indexOf('destroy vm1'), `xl-ha stop, then xl-ha destroy (${calls.join(' | ')})`);
  t.equal(b.code, 0, show(b));
  t.notOk(replica.calls().some((x) => /^(stop|destroy) /.test(x)), `the replica (another node's backup) is not touched (${replica.calls().join(' | ')})`);
  t.equal(c.code, 0, `a bad mode, interval or peer does not fail a stop, which would get the node fenced (${show(c)})`);
});

// ---------------------------------------------------------------------------------------------
// Two real sim hosts

t.test('start, monitor, reload-agent and stop on two sim hosts; after the primary dies, start on the backup activates the replica', async (t) => {
  const hostsDir = path.join(dir, 'hosts');
  const [p1, p2, service] = await Promise.all([freePort(), freePort(), freePort()]);
  const ha1 = new SimHostProcess('ha1', hostsDir, p1);
  const ha2 = new SimHostProcess('ha2', hostsDir, p2);
  pairSimHosts(ha1, ha2);
  t.teardown(() => Promise.all([ha1.stop(), ha2.stop()]));
  let mark = Date.now();
  const lap = (what: string) => {
    t.comment(`${what}: ${Date.now() - mark} ms`);
    mark = Date.now();
  };
  await Promise.all([ha1.start(), ha2.start()]);

  const cfg = path.join(dir, 'vm1.cfg');
  fs.writeFileSync(cfg, kvCfg({ name: 'vm1', memoryMiB: 8, servicePort: service }) + '\n');
  const common: Env = {
    OCF_RESKEY_domain: 'vm1',
    OCF_RESKEY_config: cfg,
    OCF_RESKEY_peer: `ha1=127.0.0.1:${p1} ha2=127.0.0.1:${p2}`,
    OCF_RESKEY_interval: '20',
    // a long failover timeout: the backup does not take over by itself, so that start does it
    OCF_RESKEY_protect_options: '--failover-timeout-ms 60000',
    OCF_RESKEY_xlha: XLHA,
  };
  const on = (h: SimHostProcess, extra: Env = {}): Env => ({ ...baseEnv(path.join(dir, `run-${h.name}`)), ...common, OCF_RESKEY_control: h.control, ...extra });
  const recurring = { OCF_RESKEY_CRM_meta_interval: '10000' };
  type St = { host: string; protections: { domain: string; state: string; peer: string; intervalMs?: number }[]; replicas: { domain: string; state: string; epoch: number }[] };
  const status = (h: SimHostProcess) => h.request<St>({ cmd: 'status' });
  const listed = async (h: SimHostProcess) => (await h.request<{ name: string; state: string }[]>({ cmd: 'list' })).find((d) => d.name === 'vm1')?.state;

  lap('hosts up');

  // probes before anything runs; bad input against the real daemons
  const [probe1, probe2, noDaemon, noSource] = await Promise.all([
    agent('monitor', on(ha1)),
    agent('monitor', on(ha2)),
    agent('start', on(ha1, { OCF_RESKEY_control: path.join(dir, 'nobody.sock') })),
    agent('start', on(ha2, { OCF_RESKEY_domain: 'vm9', OCF_RESKEY_config: '' })),
  ]);
  t.equal(probe1.code, 7, `probe on ha1: not running (${show(probe1)})`);
  t.equal(probe2.code, 7, `probe on ha2: not running (${show(probe2)})`);
  t.equal(noDaemon.code, 1, `start without a daemon: OCF_ERR_GENERIC (${show(noDaemon)})`);
  t.match(noDaemon.stderr, /ocf-exit-reason:cannot start vm1: no xl-ha daemon is running on control socket .*nobody\.sock/);
  t.equal(noSource.code, 1, `start of a domain with neither replica nor config: OCF_ERR_GENERIC (${show(noSource)})`);
  t.match(noSource.stderr, /vm9 does not run on this node, this node holds no replica of it, and no config is given/);
  lap('probes, bad input');

  // start on ha1: created from the config, protected to ha2
  let r = await agent('start', on(ha1));
  t.equal(r.code, 0, `start on ha1 (${show(r)})`);
  let s = await status(ha1);
  t.same(
    s.protections.map((p) => [p.domain, p.state, p.peer, p.intervalMs]),
    [['vm1', 'protected', `127.0.0.1:${p2}`, 20]],
    'vm1 runs on ha1, protected by remus at 20 ms to ha2 (the other entry of peer)',
  );
  t.equal(await listed(ha1), 'running');
  t.equal(await listed(ha2), 'replica', 'ha2 holds the replica');
  const [m1, m2, again1] = await Promise.all([agent('monitor', on(ha1, recurring)), agent('monitor', on(ha2, recurring)), agent('start', on(ha1))]);
  t.equal(m1.code, 0, `monitor on ha1: running (${show(m1)})`);
  t.equal(m2.code, 7, `monitor on ha2, which holds the replica: not running (${show(m2)})`);
  t.equal(again1.code, 0, `start again: idempotent (${show(again1)})`);
  t.same((await status(ha1)).protections.map((p) => p.state), ['protected'], 'still one protection');

  lap('started, monitored');
  // reload-agent: new protection parameters, the domain keeps running
  const before = (await ha1.request<{ name: string; domid: number }[]>({ cmd: 'list' })).find((d) => d.name === 'vm1')?.domid;
  r = await agent('reload-agent', on(ha1, { OCF_RESKEY_interval: '40' }));
  t.equal(r.code, 0, `reload-agent with interval=40 (${show(r)})`);
  s = await status(ha1);
  t.same(s.protections.map((p) => [p.state, p.intervalMs]), [['protected', 40]], 'protected again at 40 ms');
  t.equal((await ha1.request<{ name: string; domid: number }[]>({ cmd: 'list' })).find((d) => d.name === 'vm1')?.domid, before, 'the same domain, not a new one');

  lap('reloaded');
  // stop on ha1: protection ends cleanly (ha2 drops the replica), the domain is destroyed
  r = await agent('stop', on(ha1));
  t.equal(r.code, 0, `stop on ha1 (${show(r)})`);
  t.equal(await listed(ha1), undefined, 'vm1 is gone from ha1');
  t.ok(await eventually(async () => (await listed(ha2)) === undefined, 5000), 'ha2 dropped its replica');
  const [s1, s2, again] = await Promise.all([agent('monitor', on(ha1, recurring)), agent('monitor', on(ha2, recurring)), agent('stop', on(ha1))]);
  t.equal(s1.code, 7, `monitor on ha1 after stop: not running (${show(s1)})`);
  t.equal(s2.code, 7, `monitor on ha2: not running (${show(s2)})`);
  t.equal(again.code, 0, `stop again: idempotent (${show(again)})`);

  lap('stopped');

  // failover: start on ha1 again, kill it, start on ha2
  r = await agent('start', on(ha1));
  t.equal(r.code, 0, `start on ha1 (${show(r)})`);
  t.equal(await listed(ha2), 'replica');
  await new Promise((res) => setTimeout(res, 300)); // a few checkpoints
  const epoch = (await status(ha2)).replicas.find((x) => x.domain === 'vm1')?.epoch ?? 0;
  t.ok(epoch > 1, `ha2 applied checkpoints (${epoch})`);
  ha1.kill();
  await ha1.proc.catch(() => {});
  t.equal((await status(ha2)).replicas.find((x) => x.domain === 'vm1')?.state, 'replicating', 'ha2 has not taken over by itself (60 s failover timeout)');
  lap('ha1 killed');
  r = await agent('start', on(ha2));
  t.equal(r.code, 0, `start on ha2 (${show(r)})`);
  lap('started on ha2');
  t.equal(await listed(ha2), 'running', 'the replica runs on ha2');
  t.equal((await status(ha2)).replicas.find((x) => x.domain === 'vm1')?.state, 'active', 'activated from its checkpoint');
  const serves = await new Promise<boolean>((resolve) => {
    const c = net.connect({ host: '127.0.0.1', port: service });
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  t.ok(serves, 'the guest serves on its address, from ha2');
  const [m3, m3deg] = await Promise.all([agent('monitor', on(ha2, recurring)), agent('monitor', on(ha2, { ...recurring, ...OCF11 }))]);
  t.equal(m3.code, 0, `monitor on ha2: running (${show(m3)})`);
  t.equal(m3deg.code, 190, `under OCF 1.1: degraded, its backup ha1 is dead (${show(m3deg)})`);

  // ha1 comes back: monitor on ha2 protects vm1 again, to ha1
  await ha1.start();
  lap('ha1 restarted');
  const m4 = await agent('monitor', on(ha2, recurring));
  t.equal(m4.code, 0, `monitor on ha2 (${show(m4)})`);
  let back = false;
  const deadline = Date.now() + 15_000;
  for (let n = 1; !back && Date.now() < deadline; n++) {
    const p = (await status(ha2)).protections.find((x) => x.domain === 'vm1');
    back = p?.state === 'protected' && p.peer === `127.0.0.1:${p1}`;
    if (!back) {
      await new Promise((res) => setTimeout(res, 100));
      if (n % 20 === 0) await agent('monitor', on(ha2, recurring)); // a later monitor tries again
    }
  }
  t.ok(back, `vm1 is protected again, from ha2 to ha1\n${ha2.tail(10)}`);
  lap('protected again');
  const [m5, m6] = await Promise.all([agent('monitor', on(ha2, { ...recurring, ...OCF11 })), agent('monitor', on(ha1, recurring))]);
  t.equal(m5.code, 0, `monitor on ha2: running and protected, not degraded (${show(m5)})`);
  t.equal(m6.code, 7, `monitor on ha1, which now holds the replica: not running (${show(m6)})`);

  lap('monitored');
  r = await agent('stop', on(ha2));
  t.equal(r.code, 0, `stop on ha2 (${show(r)})`);
  const m7 = await agent('monitor', on(ha2, recurring));
  t.equal(m7.code, 7, `monitor on ha2 after stop (${show(m7)})`);
  t.equal(await listed(ha2), undefined, 'vm1 is gone from ha2');
});
