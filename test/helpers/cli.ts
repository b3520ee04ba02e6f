/** Command-line parsing helpers shared by the CLI tests. */
import { parseArgs, UsageError } from '../../src/cli/args.js';

/** The globals every command gets when none are given. */
export const DEFAULT_GLOBALS = { backend: 'auto', verbose: 0 };

/** Parse, expecting a UsageError; return it. */
export function usageError(argv: string[]): UsageError {
  try {
    parseArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) return err;
    throw err;
  }
  throw new Error(`expected a UsageError for ${JSON.stringify(argv)}`);
}
