import t from 'tap';
import {
  formatXlValue,
  parseXlCfg,
  xlCfgFromObject,
  XlCfgError,
  XlCfgSyntaxError,
} from '../../src/config/xlcfg.js';

/** The assertion methods the helpers need (shared by the root and subtests). */
type Asserts = Pick<typeof t, 'ok' | 'equal' | 'match' | 'fail'>;

/** Parse and return a plain object of key -> value. */
function values(text: string): Record<string, unknown> {
  return Object.fromEntries([...parseXlCfg(text).entries].map(([k, e]) => [k, e.value]));
}

/** Expect a syntax error at line:column whose message matches `re`. */
function syntaxError(t: Asserts, text: string, line: number, column: number, re: RegExp): void {
  try {
    parseXlCfg(text, 'vm.cfg');
  } catch (err) {
    t.ok(err instanceof XlCfgSyntaxError, 'is an XlCfgSyntaxError');
    t.ok(err instanceof XlCfgError, 'is also an XlCfgError');
    const e = err as XlCfgSyntaxError;
    t.equal(e.line, line, 'line');
    t.equal(e.column, column, 'column');
    t.equal(e.source, 'vm.cfg');
    t.ok(e.message.startsWith(`vm.cfg:${line}:${column}: `), `message names vm.cfg:${line}:${column} (${e.message})`);
    t.match(e.message, re);
    return;
  }
  t.fail(`expected a syntax error for ${JSON.stringify(text)}`);
}

t.test('double- and single-quoted strings are parsed with escapes', async (t) => {
  t.same(values(`a = "hello world"\nb = 'single'\nc = "q\\"x\\\\y\\nz\\tw"\nd = 'it\\'s'\ne = ""`), {
    a: 'hello world',
    b: 'single',
    c: 'q"x\\y\nz\tw',
    d: "it's",
    e: '',
  });
});

t.test('a quote of the other kind needs no escape inside a string', async (t) => {
  t.same(values(`a = "it's"\nb = 'say "hi"'`), { a: "it's", b: 'say "hi"' });
});

t.test('integers, signed integers, hex and decimals are numbers', async (t) => {
  t.same(values('a = 512\nb = -3\nc = +7\nd = 0x1F\ne = -0x10\nf = 1.5\ng = 0\nh = -0'), {
    a: 512,
    b: -3,
    c: 7,
    d: 31,
    e: -16,
    f: 1.5,
    g: 0,
    h: 0,
  });
  t.ok(Object.is(values('a = -0').a, 0), '-0 is normalised to 0');
});

t.test('lists hold strings and numbers, may be empty and may have a trailing comma', async (t) => {
  t.same(values(`a = [ 'x', "y", 3, 0x10 ]\nb = []\nc = [1,]\nd = [ "only" ]`), {
    a: ['x', 'y', 3, 16],
    b: [],
    c: [1],
    d: ['only'],
  });
});

t.test('lists may span lines and contain comments', async (t) => {
  const cfg = parseXlCfg(
    [
      'disk = [',
      "  '/srv/a.img,raw,xvda,rw',   # system disk",
      '  # a whole-line comment inside the list',
      "  '/srv/b.img,raw,xvdb,ro',",
      ']',
      'memory = 256',
    ].join('\n'),
  );
  t.same(cfg.entries.get('disk'), { value: ['/srv/a.img,raw,xvda,rw', '/srv/b.img,raw,xvdb,ro'], line: 1, column: 1 });
  t.equal(cfg.entries.get('memory')?.line, 6, 'line numbers keep counting after a multi-line list');
});

t.test('comments run to the end of the line and may follow a value', async (t) => {
  const cfg = parseXlCfg('# header\n\nname = "vm1" # the name\n   # indented comment\nmemory = 128#tight');
  t.same([...cfg.entries.keys()], ['name', 'memory']);
  t.equal(cfg.entries.get('name')?.line, 3);
  t.equal(cfg.entries.get('memory')?.value, 128);
});

t.test('a # inside a quoted string is not a comment', async (t) => {
  t.same(values('a = "x # y" # real comment'), { a: 'x # y' });
});

t.test('semicolons separate statements on one line', async (t) => {
  const cfg = parseXlCfg('name = "vm1"; memory = 512;vcpus=2;\n;;\nha = "remus" ;');
  t.same(values('name = "vm1"; memory = 512;vcpus=2;\n;;\nha = "remus" ;'), { name: 'vm1', memory: 512, vcpus: 2, ha: 'remus' });
  t.equal(cfg.entries.get('vcpus')?.line, 1);
  t.equal(cfg.entries.get('vcpus')?.column, 28);
  t.equal(cfg.entries.get('ha')?.line, 3);
});

t.test('whitespace, CRLF line ends and a byte order mark are tolerated', async (t) => {
  t.same(values('\uFEFF  name\t=\t"vm1"  \r\nmemory=64\r\n'), { name: 'vm1', memory: 64 });
});

t.test('an empty file or one with only comments has no entries', async (t) => {
  t.equal(parseXlCfg('').entries.size, 0);
  t.equal(parseXlCfg('# nothing\n\n  # here\n').entries.size, 0);
});

t.test('a duplicated key keeps the later value and is recorded', async (t) => {
  const cfg = parseXlCfg('memory = 128\nname = "a"\nmemory = 256\n', 'vm.cfg');
  t.equal(cfg.entries.get('memory')?.value, 256);
  t.equal(cfg.entries.get('memory')?.line, 3);
  t.same(cfg.duplicates, [{ key: 'memory', previousLine: 1, line: 3 }]);
  t.same([...cfg.entries.keys()], ['name', 'memory'], 'iteration order follows the winning definition');
});

t.test('the source name defaults to a placeholder and is kept', async (t) => {
  t.equal(parseXlCfg('a = 1').source, '<config>');
  t.equal(parseXlCfg('a = 1', '/etc/xen/vm.cfg').source, '/etc/xen/vm.cfg');
});

t.test('keys may contain underscores, digits and dots but not start with a digit', async (t) => {
  t.same(values('_x = 1\nha_interval_ms2 = 2\ndevice.model = "x"'), { _x: 1, ha_interval_ms2: 2, 'device.model': 'x' });
  syntaxError(t, '2x = 1', 1, 1, /expected a key name/);
});

t.test('a missing = after a key is a syntax error naming the key', async (t) => {
  syntaxError(t, 'name = "a"\nmemory 512', 2, 8, /expected '=' or '\+=' after key "memory", got '5'/);
  syntaxError(t, 'memory', 1, 7, /expected '=' or '\+=' after key "memory", got end of file/);
});

t.test('a missing value is a syntax error', async (t) => {
  syntaxError(t, 'memory =\nvcpus = 1', 1, 9, /expected a quoted string, a number or a \[list\] for key "memory", got end of line/);
  syntaxError(t, 'memory = ;', 1, 10, /for key "memory", got ';'/);
});

t.test('an unquoted word is rejected with a hint to quote it', async (t) => {
  syntaxError(t, 'name = vm1', 1, 8, /got bare word "vm1" \(strings must be quoted\)/);
  syntaxError(t, 'disk = [ /srv/a.img ]', 1, 10, /in the list for key "disk", got '\/'/);
});

t.test('numbers with units or stray characters are rejected', async (t) => {
  syntaxError(t, 'memory = 512M', 1, 10, /invalid number "512M" for key "memory"/);
  syntaxError(t, 'x = 1.2.3', 1, 5, /invalid number "1\.2\.3"/);
  syntaxError(t, 'x = 0xZZ', 1, 5, /invalid number "0xZZ"/);
  syntaxError(t, 'x = -', 1, 5, /expected a quoted string, a number or a \[list\] for key "x"/);
  syntaxError(t, 'x = 99999999999999999999', 1, 5, /too large/);
});

t.test('garbage after a value is a syntax error', async (t) => {
  syntaxError(t, 'a = 1 2', 1, 7, /unexpected '2' after the value of "a": expected end of line, ';' or a '#' comment/);
  syntaxError(t, 'a = "x" "y"', 1, 9, /after the value of "a"/);
});

t.test('unterminated strings are reported where they start', async (t) => {
  syntaxError(t, 'a = 1\nname = "vm1\nmemory = 2', 2, 8, /unterminated string for key "name"/);
  syntaxError(t, "name = 'vm1", 1, 8, /unterminated string/);
});

t.test('invalid escapes are reported at the backslash', async (t) => {
  syntaxError(t, 'a = "x\\qy"', 1, 7, /invalid escape sequence "\\q" in string for key "a"/);
});

t.test('malformed lists are syntax errors with positions', async (t) => {
  syntaxError(t, 'a = [1 2]', 1, 8, /expected ',' or ']' in the list for key "a", got '2'/);
  syntaxError(t, 'a = [1,,2]', 1, 8, /unexpected ','/);
  syntaxError(t, 'a = [,]', 1, 6, /unexpected ','/);
  syntaxError(t, 'a = [[1] [2]]', 1, 10, /expected ',' or ']' in the list for key "a", got '\['/);
  syntaxError(t, `a = ${'['.repeat(300)}`, 1, 261, /lists nested more than 256 deep/);
  syntaxError(t, 'a = [ "x",\n "y"\n', 3, 1, /unterminated list for key "a" \(opened at line 1\)/);
  syntaxError(t, 'a = [ "x",\n "y"', 2, 5, /unterminated list/);
});

t.test('XlCfgError without a column names file:line only', async (t) => {
  const e = new XlCfgError('vm.cfg', 3, `expected '=' after key "memory"`);
  t.equal(e.message, `vm.cfg:3: expected '=' after key "memory"`);
  t.equal(e.column, undefined);
  const s = new XlCfgSyntaxError('vm.cfg', 3, 8, 'boom');
  t.equal(s.message, 'vm.cfg:3:8: boom');
  t.equal(s.detail, 'boom');
});

t.test('formatXlValue renders values as they would be written', async (t) => {
  t.equal(formatXlValue('fast'), '"fast"');
  t.equal(formatXlValue(5), '5');
  t.equal(formatXlValue(['a', 1]), '["a", 1]');
});

t.test('xlCfgFromObject builds a cfg without line numbers', async (t) => {
  const cfg = xlCfgFromObject({ name: 'vm1', disk: ['x'] }, 'obj');
  t.equal(cfg.source, 'obj');
  t.same(cfg.entries.get('disk'), { value: ['x'], line: 0 });
});

// --- what xl's own reader (libxlu_cfg_l.l, libxlu_cfg_y.y) accepts -------------------

t.test('lists may hold lists, as vnuma does', async (t) => {
  const v = values(`vnuma = [ [ "pnode=0", "size=512", "vcpus=0-1", "vdistances=10,20" ],\n          [ "pnode=1", "size=512", "vcpus=2-3", "vdistances=20,10" ] ]\nempty = [ [], [[]] ]`);
  t.same(v.vnuma, [
    ['pnode=0', 'size=512', 'vcpus=0-1', 'vdistances=10,20'],
    ['pnode=1', 'size=512', 'vcpus=2-3', 'vdistances=20,10'],
  ]);
  t.same(v.empty, [[], [[]]]);
  t.equal(formatXlValue(v.vnuma as string[][]), '[["pnode=0", "size=512", "vcpus=0-1", "vdistances=10,20"], ["pnode=1", "size=512", "vcpus=2-3", "vdistances=20,10"]]');
});

t.test('+= appends to an earlier string or list of the same key', async (t) => {
  const cfg = parseXlCfg('extra = "console=hvc0"\nextra += " root=/dev/xvda1"\ndisk = [ "/a,,xvda" ]\ndisk += [ "/b,,xvdb" ]\nnew += "x"\nn = 0x10\nn += 1\n', 'vm.cfg');
  t.equal(cfg.entries.get('extra')?.value, 'console=hvc0 root=/dev/xvda1');
  t.equal(cfg.entries.get('extra')?.appended, true);
  t.equal(cfg.entries.get('extra')?.line, 2, 'the entry is at the += line');
  t.same(cfg.entries.get('disk')?.value, ['/a,,xvda', '/b,,xvdb']);
  t.equal(cfg.entries.get('new')?.value, 'x', '+= without an earlier value is the value');
  t.equal(cfg.entries.get('n')?.value, '0x101', 'numbers join as their text, as in xl (which keeps every value as text)');
  t.same(cfg.duplicates, [], '+= is not a duplicate');
  t.equal(parseXlCfg('a = 1').entries.get('a')?.appended, undefined);
});

t.test('+= cannot add a list to a string or a string to a list', async (t) => {
  syntaxError(t, 'a = "x"\na += [ "y" ]', 2, 3, /cannot add a \[list\] to the single value of "a" \(line 1\)/);
  syntaxError(t, 'a = [ "x" ]\na += "y"', 2, 3, /cannot add a single value to the \[list\] of "a" \(line 1\)/);
});

t.test('a leading 0 makes an integer octal, as C reads it in xl', async (t) => {
  t.same(values('a = 010\nb = 0\nc = -017\nd = 00'), { a: 8, b: 0, c: -15, d: 0 });
});

t.test("xl's number tokens that are not numbers here are kept as their text", async (t) => {
  t.same(values('a = 09\nb = 12abc\nc = 0x\nd = 1e5\ne = [ 08, 7ff ]'), { a: '09', b: '12abc', c: '0x', d: '1e5', e: ['08', '7ff'] });
});

t.test("xl's escapes: \\a \\b \\f \\v besides \\n \\r \\t, and its dropped octal escape", async (t) => {
  t.same(values('a = "1\\a2\\b3\\f4\\v5"\nb = "x\\012y"\nc = \'p\\0123q\''), { a: '1\x072\b3\f4\v5', b: 'xy', c: 'pq' });
  syntaxError(t, 'a = "\\01"', 1, 6, /invalid octal escape "\\01" .*xl needs two more digits/);
  syntaxError(t, 'a = "\\x41"', 1, 6, /invalid escape sequence "\\x" in string for key "a": expected one of .*\(xl refuses \\x escapes\)/);
});

t.test('a file xl accepts is accepted: the xl.cfg(5) and xl examples', async (t) => {
  const text = [
    '# =====================================================================',
    '# Example PV Linux guest configuration',
    '# =====================================================================',
    'name = "example.pv"',
    'type = "pv"',
    'kernel = "/boot/vmlinuz"',
    'extra = "root=/dev/xvda1"',
    'ramdisk = "/boot/initrd.gz"',
    'memory = 128',
    'maxmem = 512',
    'vcpus = 2',
    'cpus = ["2", "3"]',
    'vif = [ \'\' ]',
    "disk = [ '/dev/vg/guest-volume,raw,xvda,rw' ]",
    'on_crash = "coredump-restart"',
    'device_model_args = [ "-d", "guest_errors" ]',
    'extra += " console=hvc0"',
    '',
  ].join('\n');
  const cfg = parseXlCfg(text, 'example.pv.cfg');
  t.equal(cfg.entries.get('extra')?.value, 'root=/dev/xvda1 console=hvc0');
  t.same(cfg.entries.get('cpus')?.value, ['2', '3']);
});
