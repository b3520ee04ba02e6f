/**
 * The fence-command hook (`--fence-command CMD`): an admin's own fencing, run with the witness's
 * decision, e.g. an IPMI power-off of the old primary, or `xl destroy` of a fenced local copy.
 *
 *   XLHA_EVENT=activate  on the backup, after it won the domain on the witness and before it
 *                        activates; a non-zero exit (or no exit within 60 s) keeps the replica
 *                        halted, as STONITH does: no activation without a fence
 *   XLHA_EVENT=fenced    on a primary that lost the domain to its backup, after it paused it
 *
 * with XLHA_DOMAIN, XLHA_UUID, XLHA_PEER (the other host), XLHA_FENCING_TOKEN (the witness
 * revision of the decision, when there is one). It runs through /bin/sh, as hooks do.
 */
import { execa } from 'execa';

export const FENCE_TIMEOUT_MS = 60_000;

export interface FenceEvent {
  event: 'activate' | 'fenced';
  domain: string;
  uuid: string;
  peer: string;
  token: number | null;
}

/** Runs the command; throws with its exit status and the end of its output when it fails. */
export async function runFenceCommand(cmd: string, e: FenceEvent, timeoutMs = FENCE_TIMEOUT_MS): Promise<void> {
  const r = await execa(cmd, {
    shell: '/bin/sh',
    reject: false,
    timeout: timeoutMs,
    stdin: 'ignore',
    all: true,
    env: { XLHA_EVENT: e.event, XLHA_DOMAIN: e.domain, XLHA_UUID: e.uuid, XLHA_PEER: e.peer, XLHA_FENCING_TOKEN: e.token === null ? '' : String(e.token) },
  });
  if (r.timedOut) throw new Error(`fence command "${cmd}" did not finish within ${timeoutMs} ms`);
  if (r.exitCode !== 0) throw new Error(`fence command "${cmd}" exited with ${r.exitCode ?? r.signal}: ${String(r.all ?? '').trim().split('\n').slice(-3).join(' / ')}`);
}
