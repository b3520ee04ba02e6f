/** The daemon's log to syslog and the journal: one line per entry, the entry's level as its priority. */
import t from 'tap';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import winston from 'winston';
import { SystemLogTransport, systemLogCommand } from '../../src/util/log-sink.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlha-logsink-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

t.test('the commands and prefixes: logger --prio-prefix with facility daemon, systemd-cat with the level', async (t) => {
  const s = systemLogCommand('syslog');
  t.same([s.cmd, ...s.args], ['logger', '--prio-prefix', '-t', 'xl-ha']);
  t.equal(s.prefix('error'), '<27>', 'daemon.err');
  t.equal(s.prefix('warn'), '<28>');
  t.equal(s.prefix('info'), '<30>');
  t.equal(s.prefix('debug'), '<31>');
  const j = systemLogCommand('journal');
  t.same([j.cmd, ...j.args], ['systemd-cat', '-t', 'xl-ha']);
  t.equal(j.prefix('error'), '<3>');
  t.equal(j.prefix('info'), '<6>');
});

t.test('each entry reaches the child as one prefixed line', async (t) => {
  const out = path.join(dir, 'lines');
  const calls: string[][] = [];
  const fake = ((cmd: string, args: string[], o: object) => {
    calls.push([cmd, ...args]);
    return spawn('sh', ['-c', `cat > '${out}'`], o);
  }) as unknown as typeof spawn;
  const tr = new SystemLogTransport('syslog', { spawnFn: fake });
  const log = winston.createLogger({ level: 'debug', format: winston.format.printf((i) => `${String(i.message)} domain=${String(i.domain)}`), transports: [tr] });
  log.error('backup lost', { domain: 'web' });
  log.info('two\nlines', { domain: 'db' });
  log.debug('detail', { domain: 'x' });
  await new Promise((r) => setTimeout(r, 100));
  tr.close();
  await new Promise((r) => setTimeout(r, 300));
  t.same(calls, [['logger', '--prio-prefix', '-t', 'xl-ha']]);
  t.same(fs.readFileSync(out, 'utf8').split('\n'), ['<27>backup lost domain=web', '<30>two | lines domain=db', '<31>detail domain=x', '']);
});

t.test('a tool that cannot run: entries go to stderr, with a warning', async (t) => {
  const fake = ((_c: string, _a: string[], o: object) => spawn('/nonexistent/logger', [], o)) as unknown as typeof spawn;
  const tr = new SystemLogTransport('journal', { spawnFn: fake });
  await new Promise((r) => setTimeout(r, 200));
  const written: string[] = [];
  const orig = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string) => (written.push(String(s)), true)) as typeof process.stderr.write;
  try {
    tr.log({ level: 'warn', message: 'still here', [Symbol.for('message')]: 'still here' }, () => {});
  } finally {
    process.stderr.write = orig;
  }
  t.same(written, ['still here\n']);
});
