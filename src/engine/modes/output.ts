/**
 * The devices of the modes whose output leaves after the ack of the checkpoint that covers it
 * (remus, kemari): netbuf holds the network output, disk replicates the writes. What the
 * backend cannot do fails here, at setup, with the option that turns it off.
 */
import { NetbufDevice } from '../../devices/netbuf.js';
import { DiskReplicationDevice } from '../../devices/disk.js';
import { ModeSetupError, type CheckpointDevice, type ModeSetupContext } from '../types.js';
import type { ModeId } from './ids.js';

export function ackedOutputDevices(mode: ModeId, ctx: ModeSetupContext): CheckpointDevice[] {
  const { features, backendKind } = ctx;
  if (ctx.netbuf && !features.outputBuffering) {
    throw new ModeSetupError(`${mode}: network buffering is not available on the ${backendKind} backend; use -n to protect without it (unsafe)`);
  }
  if (ctx.disk && !features.diskReplication) {
    throw new ModeSetupError(`${mode}: disk replication is not available on the ${backendKind} backend; use -d to protect without it`);
  }
  const devices: CheckpointDevice[] = [];
  if (ctx.netbuf) devices.push(new NetbufDevice());
  if (ctx.disk) devices.push(new DiskReplicationDevice());
  return devices;
}

/** `--in-flight N` where given, else what the backend allows. */
export function inFlightOf(ctx: ModeSetupContext): number {
  return ctx.inFlight ?? ctx.features.maxInFlight;
}
