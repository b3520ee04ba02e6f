/**
 * Makes Jazzer.js's native fuzzer (libFuzzer in a Node addon) load on Debian 12.
 *
 * @jazzer.js/fuzzer 4.0.0 is the only release that ships its addon inside the npm package (the
 * older ones download it from GitHub at install time, which this workplace cannot reach), and
 * its linux-x64 build was linked against glibc 2.38 and GCC 13's libstdc++. Debian 12 has
 * glibc 2.36 and GCC 12's libstdc++, so the addon fails to load with
 *   version `GLIBC_2.38' not found   (for __isoc23_strtol, __isoc23_strtoul)
 *   version `GLIBCXX_3.4.32' not found (for std::ios_base_library_init())
 * Those are the only three symbols that need the newer versions:
 *  - __isoc23_strtol/strtoul are C23's strtol/strtoul (they also take a "0b" prefix). They are
 *    bound to the C17 functions instead.
 *  - std::ios_base_library_init() is never called: GCC 13's <iostream> only references it so
 *    that the link needs a libstdc++ that initialises the standard streams itself. No
 *    relocation refers to it; its version need is made weak and the symbol left unbound.
 * The patch goes to a copy (node_modules/.cache/xl-ha-fuzz/), never to the installed file, and
 * jazzer-hook.ts has Node load the copy in its place. Where the addon loads as it is (a newer
 * distribution), nothing is patched.
 */
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);

/** The versions the patch knows how to do without, per library. */
const TOO_NEW: Record<string, string[]> = { 'libc.so.6': ['GLIBC_2.38'], 'libstdc++.so.6': ['GLIBCXX_3.4.32'] };
/** The C23 functions of glibc 2.38 and the C17 ones they are bound to (the name's suffix). */
const ISOC23 = '__isoc23_';
/** Symbols with a too-new version that no relocation uses: left unbound. */
const UNUSED = new Set(['_ZSt21ios_base_library_initv']);

const SHT_DYNSYM = 11;
const SHT_GNU_VERNEED = 0x6ffffffe;
const SHT_GNU_VERSYM = 0x6fffffff;
const VER_FLG_WEAK = 0x2;

/** The addon file @jazzer.js/fuzzer loads on this platform. */
export function addonPath(): string {
  const pkg = path.dirname(require.resolve('@jazzer.js/fuzzer/package.json'));
  return path.join(pkg, 'prebuilds', `fuzzer-${process.platform}-${process.arch}.node`);
}

/** Why `file` does not load in a fresh node, or null when it does. */
export function loadError(file: string): string | null {
  const r = spawnSync(process.execPath, ['-e', 'process.dlopen({ exports: {} }, process.argv[1])', file], { encoding: 'utf8' });
  if (r.status === 0) return null;
  const line = (r.stderr || '').split('\n').find((l) => /Error:/.test(l));
  return (line ?? r.stderr ?? `exit ${r.status}`).trim();
}

/**
 * Rewrites an ELF64 little-endian shared object so that it needs none of the versions in
 * {@link TOO_NEW}: their need entries become weak, the C23 functions are bound to the C17
 * ones, and anything else that needs them is an error (not patched).
 * Returns the patched bytes and what was changed.
 */
export function patchElf(input: Buffer): { bytes: Buffer; changes: string[] } {
  const b = Buffer.from(input);
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2 || b[5] !== 1) throw new Error('not an ELF64 little-endian file');
  const shoff = Number(b.readBigUInt64LE(0x28));
  const shentsize = b.readUInt16LE(0x3a);
  const shnum = b.readUInt16LE(0x3c);
  const secs = Array.from({ length: shnum }, (_, i) => {
    const o = shoff + i * shentsize;
    return { type: b.readUInt32LE(o + 4), offset: Number(b.readBigUInt64LE(o + 0x18)), size: Number(b.readBigUInt64LE(o + 0x20)), link: b.readUInt32LE(o + 0x28) };
  });
  const dynsym = secs.find((s) => s.type === SHT_DYNSYM);
  const versym = secs.find((s) => s.type === SHT_GNU_VERSYM);
  const verneed = secs.find((s) => s.type === SHT_GNU_VERNEED);
  if (!dynsym || !versym || !verneed) throw new Error('no dynamic symbols or symbol versions');
  const dynstr = secs[dynsym.link]!;
  const str = (off: number): string => {
    const s = dynstr.offset + off;
    return b.toString('latin1', s, b.indexOf(0, s));
  };
  const changes: string[] = [];
  const tooNew = new Map<number, string>(); // version index -> name
  const base = new Map<string, number>(); // library -> index of its oldest version seen (for rebinding)
  for (let vn = verneed.offset; ; ) {
    const cnt = b.readUInt16LE(vn + 2);
    const file = str(b.readUInt32LE(vn + 4));
    for (let k = 0, a = vn + b.readUInt32LE(vn + 8); k < cnt; k++) {
      const name = str(b.readUInt32LE(a + 8));
      const idx = b.readUInt16LE(a + 6);
      if (TOO_NEW[file]?.includes(name)) {
        tooNew.set(idx, `${name} (${file})`);
        b.writeUInt16LE(b.readUInt16LE(a + 4) | VER_FLG_WEAK, a + 4);
        changes.push(`version need ${name} of ${file} made weak`);
      }
      if (file === 'libc.so.6' && name === 'GLIBC_2.2.5') base.set(file, idx);
      const next = b.readUInt32LE(a + 12);
      if (!next) break;
      a += next;
    }
    const next = b.readUInt32LE(vn + 12);
    if (!next) break;
    vn += next;
  }
  const libcBase = base.get('libc.so.6');
  for (let i = 0; i < dynsym.size / 24; i++) {
    const v = b.readUInt16LE(versym.offset + 2 * i) & 0x7fff;
    const version = tooNew.get(v);
    if (version === undefined) continue;
    const so = dynsym.offset + 24 * i;
    const name = str(b.readUInt32LE(so));
    if (UNUSED.has(name)) {
      changes.push(`${name}@${version} left unbound (never called)`);
    } else if (name.startsWith(ISOC23) && libcBase !== undefined) {
      b.writeUInt32LE(b.readUInt32LE(so) + ISOC23.length, so); // the name's own suffix: strtol
      b.writeUInt16LE(libcBase, versym.offset + 2 * i);
      changes.push(`${name}@${version} bound to ${name.slice(ISOC23.length)}@GLIBC_2.2.5`);
    } else {
      throw new Error(`${name} needs ${version}: not a symbol this patch can rebind`);
    }
  }
  if (changes.length === 0) throw new Error('nothing to patch: the addon needs none of the versions this patch knows');
  return { bytes: b, changes };
}

export interface AddonChoice {
  /** The file to load instead of the installed addon, or null: the installed one loads. */
  replacement: string | null;
  notes: string[];
}

/**
 * Whether the installed addon loads; if not because of the versions above, a patched copy
 * (made once, kept in node_modules/.cache) that does. Throws, saying why, when neither loads.
 */
export function chooseAddon(root: string): AddonChoice {
  const orig = addonPath();
  const why = loadError(orig);
  if (why === null) return { replacement: null, notes: [] };
  if (!/version `(GLIBC_|GLIBCXX_)[0-9.]+' not found/.test(why)) throw new Error(`the Jazzer.js addon ${orig} does not load: ${why}`);
  const bytes = fs.readFileSync(orig);
  const hash = crypto.createHash('sha256').update(bytes).digest('hex').slice(0, 16);
  const dir = path.join(root, 'node_modules', '.cache', 'xl-ha-fuzz');
  const copy = path.join(dir, `fuzzer-${process.platform}-${process.arch}-${hash}.node`);
  const notes = [`the Jazzer.js addon does not load here (${why.replace(/^Error: /, '')})`];
  if (!fs.existsSync(copy)) {
    const { bytes: patched, changes } = patchElf(bytes);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(`${copy}.tmp`, patched);
    fs.renameSync(`${copy}.tmp`, copy);
    notes.push(...changes);
  }
  const still = loadError(copy);
  if (still !== null) throw new Error(`the patched Jazzer.js addon ${copy} does not load either: ${still}`);
  notes.push(`loading the patched copy ${path.relative(root, copy)}`);
  return { replacement: copy, notes };
}
