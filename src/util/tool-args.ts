/**
 * The argument check of the repository's own tools (`npm run demo`, `npm run bench`): every
 * word must be a known option, a known option's value, or `--help`. An unknown word is an
 * error that names it and lists what is accepted (a typo such as `--scael` would otherwise
 * run the whole default bench for minutes and report figures for what was not asked).
 */

export interface ToolOption {
  /** `--name`. */
  name: string;
  /** `none`: a flag; `required`: `--name V` or `--name=V`; `optional`: the next word is its value unless it starts with `--`. */
  value: 'none' | 'required' | 'optional';
  /** One line for `--help`. */
  help: string;
}

export type ToolArgsResult = { ok: true; help: boolean } | { ok: false; error: string };

/** Checks `argv` against `options`; `--help`/`-h` anywhere asks for the usage. */
export function checkToolArgs(argv: readonly string[], options: readonly ToolOption[]): ToolArgsResult {
  let help = false;
  const known = options.map((o) => o.name).join(', ');
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help' || a === '-h') {
      help = true;
      continue;
    }
    const eq = a.indexOf('=');
    const name = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const opt = options.find((o) => o.name === name);
    if (!opt) {
      const what = a.startsWith('-') ? 'unknown option' : 'unexpected argument';
      return { ok: false, error: `${what} ${JSON.stringify(a)}: accepted are ${known}, --help` };
    }
    if (eq > 0 && name !== a) {
      if (opt.value === 'none') return { ok: false, error: `${opt.name} takes no value (got ${JSON.stringify(a)})` };
      continue;
    }
    if (opt.value === 'required') {
      const v = argv[i + 1];
      if (v === undefined || v.startsWith('--')) return { ok: false, error: `${opt.name} needs a value` };
      i++;
    } else if (opt.value === 'optional') {
      const v = argv[i + 1];
      if (v !== undefined && !v.startsWith('--')) i++;
    }
  }
  return { ok: true, help };
}

/** The usage text: a first line, then one line per option. */
export function toolUsage(first: string, options: readonly ToolOption[]): string {
  const left = (o: ToolOption) => (o.value === 'none' ? o.name : o.value === 'required' ? `${o.name} V` : `${o.name} [V]`);
  const w = Math.max(...options.map((o) => left(o).length), 6);
  return [first, ...options.map((o) => `  ${left(o).padEnd(w)}  ${o.help}`), `  ${'--help'.padEnd(w)}  this text`].join('\n') + '\n';
}

/**
 * For an entry point: exit 2 with `<tool>: <error>` on a bad argument, print the usage and exit
 * 0 on `--help`.
 */
export function enforceToolArgs(tool: string, first: string, argv: readonly string[], options: readonly ToolOption[]): void {
  const r = checkToolArgs(argv, options);
  if (!r.ok) {
    process.stderr.write(`${tool}: ${r.error}\n`);
    process.exit(2);
  }
  if (r.help) {
    process.stdout.write(toolUsage(first, options));
    process.exit(0);
  }
}
