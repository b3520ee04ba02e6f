/**
 * resource-agents' own conformance check, `ocf-tester`, run against ocf:xl-ha:domain on two sim
 * host processes: meta-data valid against ra-api-1.dtd (with xmllint), readable by nobody,
 * validate-all, the probe of a stopped resource (also with every binary "missing"), start,
 * monitor, start of a started resource, stop of a stopped one, and the optional actions it
 * does not implement answered with OCF_ERR_UNIMPLEMENTED.
 *
 * Debian's ocf-tester (resource-agents 4.12) checks meta-data against ra-api-1.dtd, which is
 * OCF 1.0's: it has neither the `reload-agent` action nor the `reloadable` parameter attribute,
 * which OCF 1.1 added (the agent declares 1.1 and marks its reloadable parameters, so that
 * Pacemaker reloads them in place instead of restarting the domain). The test runs the
 * installed ocf-tester with its data directory pointed at a copy of that DTD extended by those
 * two, and checks that the unextended DTD rejects nothing else.
 *
 * It needs Debian's resource-agents and libxml2-utils, which .ci/run installs; without them the
 * test is skipped with a reason (never passed).
 */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { SimHostProcess, freePort, kvCfg, pairSimHosts } from '../../src/demo/hosts.js';

const OCF_TESTER = '/usr/sbin/ocf-tester';
const DTD = '/usr/share/resource-agents/ra-api-1.dtd';
const missing = [OCF_TESTER, '/usr/bin/xmllint', DTD, '/usr/lib/ocf/lib/heartbeat/ocf-shellfuncs'].filter((f) => !fs.existsSync(f));
const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const AGENT_SRC = fileURLToPath(new URL('../../../ocf/domain', import.meta.url));

t.test('ocf-tester passes the agent on two sim hosts', { skip: missing.length ? `resource-agents' ocf-tester is not installed here (missing ${missing.join(', ')}; apt-get install resource-agents libxml2-utils)` : false }, async (t) => {
  // ocf-tester checks that nobody can read the agent: a directory every user may enter
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-ocft-'));
  fs.chmodSync(dir, 0o755);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const agent = path.join(dir, 'domain');
  fs.copyFileSync(AGENT_SRC, agent);
  fs.chmodSync(agent, 0o755);
  // ocf-tester, reading its DTD from a data directory that adds OCF 1.1's reloadable
  const data = path.join(dir, 'share');
  fs.mkdirSync(path.join(data, 'resource-agents'), { recursive: true });
  const dtd = fs.readFileSync(DTD, 'utf8');
  t.match(dtd, /\|reload\|/, 'the DTD enumerates the action names');
  fs.writeFileSync(path.join(data, 'resource-agents', 'ra-api-1.dtd'), dtd.replace('|reload|', '|reload|reload-agent|') + '\n<!-- OCF 1.1 -->\n<!ATTLIST parameter reloadable (0|1) "0">\n');
  const tester = path.join(dir, 'ocf-tester');
  const testerSrc = fs.readFileSync(OCF_TESTER, 'utf8');
  t.match(testerSrc, /^DATADIR=\/usr\/share$/m, 'ocf-tester reads its DTD from DATADIR');
  fs.writeFileSync(tester, testerSrc.replace(/^DATADIR=\/usr\/share$/m, `DATADIR=${data}`), { mode: 0o755 });
  // against the unextended DTD, reloadable is the only thing wrong
  const lint = await new Promise<string>((resolve) => {
    const c = execFile('sh', ['-c', `cd /usr/share/resource-agents && "${agent}" meta-data | xmllint --noout --valid - 2>&1 >/dev/null; true`], { env: { PATH: '/usr/bin:/bin' } }, (_e, stdout) => resolve(stdout));
    c.stdin?.end();
  });
  const complaints = lint.split('\n').filter((l) => /validity error/.test(l));
  t.ok(
    complaints.length > 0 && complaints.every((l) => /No declaration for attribute reloadable of element parameter|Value "reload-agent" for attribute name of action is not among the enumerated set/.test(l)),
    `OCF 1.0's DTD objects only to reloadable and reload-agent:\n${lint.slice(0, 2000)}`,
  );

  const xlha = path.join(dir, 'xl-ha');
  fs.writeFileSync(xlha, `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`, { mode: 0o755 });

  const [p1, p2, service] = await Promise.all([freePort(), freePort(), freePort()]);
  const hosts = path.join(dir, 'hosts');
  const ha1 = new SimHostProcess('ha1', hosts, p1);
  const ha2 = new SimHostProcess('ha2', hosts, p2);
  pairSimHosts(ha1, ha2);
  t.teardown(() => Promise.all([ha1.stop(), ha2.stop()]));
  await Promise.all([ha1.start(), ha2.start()]);
  const cfg = path.join(dir, 'vm1.cfg');
  fs.writeFileSync(cfg, kvCfg({ name: 'vm1', memoryMiB: 8, servicePort: service }) + '\n');

  const run = path.join(dir, 'run');
  fs.mkdirSync(run);
  const env = {
    PATH: `${path.dirname(process.execPath)}:/usr/sbin:/usr/bin:/sbin:/bin`,
    HOME: dir,
    TMPDIR: dir,
    OCF_ROOT: '/usr/lib/ocf',
    HA_RSCTMP: run,
  };
  const args = ['-v', '-n', 'vm1', '-o', 'domain=vm1', '-o', `config=${cfg}`, '-o', `peer=ha1=127.0.0.1:${p1} ha2=127.0.0.1:${p2}`, '-o', 'interval=20', '-o', `control=${ha1.control}`, '-o', `xlha=${xlha}`, agent];
  const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
    execFile(tester, args, { env, timeout: 240_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
  t.equal(r.code, 0, `ocf-tester exits 0:\n${r.out.slice(-4000)}`);
  t.match(r.out, /passed all tests/, 'and says the agent passed all its tests');
  t.notMatch(r.out, /\* rc=\d+: /, 'no failed assertion');
  // what ran was real: the start protected vm1 to ha2, and the last stop left nothing behind
  t.match(r.out, /Testing: start/);
  const list = await ha1.request<{ name: string }[]>({ cmd: 'list' });
  t.same(list.map((d) => d.name), [], 'vm1 is stopped on ha1 at the end');
  const replicas = (await ha2.request<{ replicas: unknown[] }>({ cmd: 'status' })).replicas;
  t.same(replicas, [], 'and ha2 holds no replica of it');
});
