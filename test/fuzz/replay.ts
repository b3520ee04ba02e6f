/**
 * Runs inputs through a fuzz target without the fuzzer: to reproduce a finding, or to replay a
 * whole corpus (run.ts --coverage runs this under c8).
 *
 *   node dist/test/fuzz/replay.js [--quiet] <target> <file|dir>...
 *
 * Prints each input that fails (or, without --quiet, every input) and exits 1 if any did.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

export type FuzzFn = (data: Buffer) => unknown;

export async function loadTarget(target: string): Promise<FuzzFn> {
  const mod = (await import(pathToFileURL(path.join(here, 'targets', `${target}.js`)).href)) as { fuzz?: FuzzFn };
  if (typeof mod.fuzz !== 'function') throw new Error(`fuzz target ${target} exports no fuzz function`);
  return mod.fuzz;
}

/** The files in `p` (a file, or a directory: its regular files, sorted), as paths. */
export function inputsOf(p: string): string[] {
  if (!fs.existsSync(p)) return [];
  if (!fs.statSync(p).isDirectory()) return [p];
  return fs
    .readdirSync(p)
    .sort()
    .map((f) => path.join(p, f))
    .filter((f) => fs.statSync(f).isFile() && !f.endsWith('.md'));
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const quiet = args[0] === '--quiet';
  if (quiet) args.shift();
  const [target, ...paths] = args;
  if (!target || paths.length === 0) {
    console.error('usage: node dist/test/fuzz/replay.js [--quiet] <target> <file|dir>...');
    process.exit(2);
  }
  const fuzz = await loadTarget(target);
  let failed = 0;
  let n = 0;
  const started = performance.now();
  for (const file of paths.flatMap(inputsOf)) {
    n++;
    const t0 = performance.now();
    try {
      await fuzz(fs.readFileSync(file));
      if (!quiet) console.log(`ok    ${file} (${(performance.now() - t0).toFixed(1)} ms)`);
    } catch (err) {
      failed++;
      console.log(`FAIL  ${file}\n${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    }
  }
  console.log(`${target}: ${n} inputs in ${((performance.now() - started) / 1000).toFixed(1)} s, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
