/**
 * Mode ids, defined once. They are the same everywhere: the `ha` config value, the CLI word,
 * the file name under src/engine/modes/, the HELLO's `mode` field and the log field `mode`.
 */
export const MODE_IDS = ['remus', 'kemari', 'colo', 'llm'] as const;
export type ModeId = (typeof MODE_IDS)[number];

export function isModeId(v: unknown): v is ModeId {
  return typeof v === 'string' && (MODE_IDS as readonly string[]).includes(v);
}
