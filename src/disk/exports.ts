/**
 * The disks this daemon serves over NBD: one {@link NbdServer} per disk, on a unix socket under
 * the daemon's runtime directory, with one export, an {@link NbdDisk} in front of the real image
 * or LV. hooks/block-ha asks for it at the disk's `add` (before the domain runs), connects dom0's
 * kernel NBD client to it and hands blkback the /dev/nbdN; at `remove` it disconnects the client
 * first, then the export is dropped. A protection of the domain then replicates the disk through
 * the same NbdDisk (its DiskTap), so the export outlives any one protection: it lives as long as
 * the domain's disk (docs/disk-replication.md).
 *
 * Who owns what: this registry owns each server and disk; a save session only borrows the disk
 * as its tap (start/stop), and never closes it.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../util/log.js';
import { NbdDisk } from './nbd-disk.js';
import { NbdServer } from './nbd/server.js';

/** A disk served for dom0's kernel NBD client. */
export interface ServedDisk {
  domid: number;
  devid: number;
  /** The image or LV behind the export. */
  target: string;
  /** The unix socket `nbd-client -unix` connects to. */
  socket: string;
  /** The export's name (`nbd-client -N`). */
  exportName: string;
  sizeBytes: number;
  disk: NbdDisk;
  server: NbdServer;
  since: string;
}

/** Status of one served disk (no live objects). */
export type ServedDiskStatus = Omit<ServedDisk, 'disk' | 'server'> & { connections: number; writes: number };

/** The export name of disk `devid` of domain `domid`. */
export function exportNameOf(domid: number, devid: number): string {
  return `xlha-${domid}-${devid}`;
}

export class DiskExports {
  private readonly served = new Map<string, ServedDisk>();
  /** Serves being set up, so that two hotplug calls for one disk do not race. */
  private readonly pending = new Map<string, Promise<ServedDisk>>();

  constructor(private readonly o: { dir: string; log: Logger; epochCapBytes?: number }) {}

  /** Where the sockets are. */
  get dir(): string {
    return this.o.dir;
  }

  private key(domid: number, devid: number): string {
    return `${domid}/${devid}`;
  }

  /**
   * Serves disk `devid` of domain `domid` from `target`, an absolute path to a regular file or a
   * block device. Asking again for the same disk and target returns the export already served
   * (a hook run twice); another target for it is an error that names both.
   */
  async serve(domid: number, devid: number, target: string): Promise<ServedDisk> {
    if (!path.isAbsolute(target) || target.includes('\0') || target.split('/').includes('..')) {
      throw new Error(`disk ${devid} of domain ${domid}: target ${JSON.stringify(target)} is not an absolute path without ".."`);
    }
    const k = this.key(domid, devid);
    const inFlight = this.pending.get(k);
    if (inFlight) await inFlight.catch(() => {});
    const have = this.served.get(k);
    if (have) {
      if (have.target === target) return have;
      throw new Error(`disk ${devid} of domain ${domid} is already served from ${have.target}, not ${target}: remove it first`);
    }
    const p = this.start(domid, devid, target);
    this.pending.set(k, p);
    try {
      return await p;
    } finally {
      this.pending.delete(k);
    }
  }

  private async start(domid: number, devid: number, target: string): Promise<ServedDisk> {
    let st: fs.Stats;
    try {
      st = fs.statSync(target);
    } catch (err) {
      throw new Error(`disk ${devid} of domain ${domid}: cannot serve ${target}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    if (!st.isFile() && !st.isBlockDevice()) throw new Error(`disk ${devid} of domain ${domid}: ${target} is neither a regular file nor a block device`);
    fs.mkdirSync(this.o.dir, { recursive: true, mode: 0o700 });
    const exportName = exportNameOf(domid, devid);
    const socket = path.join(this.o.dir, `${domid}.${devid}.sock`);
    const log = this.o.log.child({ module: 'nbd', domid, devid });
    const disk = new NbdDisk({ path: target, name: exportName, log, ...(this.o.epochCapBytes !== undefined ? { epochCapBytes: this.o.epochCapBytes } : {}) });
    const server = new NbdServer({ exports: [disk], log });
    try {
      await server.listenUnix(socket);
      fs.chmodSync(socket, 0o600);
    } catch (err) {
      await server.close().catch(() => {});
      disk.close();
      throw new Error(`disk ${devid} of domain ${domid}: cannot listen on ${socket}: ${(err as Error).message}`);
    }
    const s: ServedDisk = { domid, devid, target, socket, exportName, sizeBytes: disk.sizeBytes, disk, server, since: new Date().toISOString() };
    this.served.set(this.key(domid, devid), s);
    this.o.log.info('disk served over NBD for blkback', { domid, devid, target, socket, export: exportName, sizeBytes: disk.sizeBytes });
    return s;
  }

  get(domid: number, devid: number): ServedDisk | undefined {
    return this.served.get(this.key(domid, devid));
  }

  /** The disks served for a domain. */
  ofDomain(domid: number): ServedDisk[] {
    return [...this.served.values()].filter((s) => s.domid === domid);
  }

  /** Stops serving a disk (after its kernel client disconnected). False when it was not served. */
  async drop(domid: number, devid: number): Promise<boolean> {
    const k = this.key(domid, devid);
    const s = this.served.get(k);
    if (!s) return false;
    this.served.delete(k);
    if (s.server.openConnections > 0) this.o.log.warn('disk export dropped with its NBD client still connected: the guest\'s disk fails', { domid, devid, connections: s.server.openConnections });
    await s.server.close().catch(() => {});
    s.disk.close();
    try {
      fs.unlinkSync(s.socket);
    } catch {
      /* already gone */
    }
    this.o.log.info('disk export dropped', { domid, devid, target: s.target });
    return true;
  }

  /** Every export of a domain that is gone. */
  async dropDomain(domid: number): Promise<void> {
    for (const s of this.ofDomain(domid)) await this.drop(s.domid, s.devid);
  }

  status(): ServedDiskStatus[] {
    return [...this.served.values()].map((s) => ({
      domid: s.domid,
      devid: s.devid,
      target: s.target,
      socket: s.socket,
      exportName: s.exportName,
      sizeBytes: s.sizeBytes,
      connections: s.server.openConnections,
      writes: s.disk.stats.writes,
      since: s.since,
    }));
  }

  async dispose(): Promise<void> {
    const inUse = [...this.served.values()].filter((s) => s.server.openConnections > 0);
    if (inUse.length) {
      // the kernel client of each has no server after this: its guest's disk I/O fails
      // (docs/disk-replication.md, limits: the daemon holds the disk)
      this.o.log.error('DISK I/O WILL FAIL: the daemon stops while it serves block-ha disks in use; their domains get I/O errors until they are re-created', {
        disks: inUse.map((s) => `domain ${s.domid} disk ${s.devid} (${s.target})`).join(', '),
      });
    }
    for (const s of [...this.served.values()]) await this.drop(s.domid, s.devid);
  }
}
