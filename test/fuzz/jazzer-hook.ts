/**
 * Preloaded (`node --import`) into the Jazzer.js process by run.ts when the installed addon
 * does not load on this system (jazzer-addon.ts): has Node's CommonJS loader open the patched
 * copy named by XLHA_JAZZER_ADDON in place of @jazzer.js/fuzzer's prebuilt addon.
 */
import Module from 'node:module';
import path from 'node:path';

type NodeLoader = (module: unknown, filename: string) => unknown;
const extensions = (Module as unknown as { _extensions: Record<string, NodeLoader> })._extensions;
const replacement = process.env.XLHA_JAZZER_ADDON;
const load = extensions['.node']!;
if (replacement) {
  const wanted = `fuzzer-${process.platform}-${process.arch}.node`;
  extensions['.node'] = (module, filename) => load(module, path.basename(filename) === wanted && filename.includes(`${path.sep}@jazzer.js${path.sep}`) ? replacement : filename);
}
