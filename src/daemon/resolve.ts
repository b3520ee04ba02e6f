/**
 * Where a running domain's ha settings come from. xl keeps none of a cfg's `ha*` keys for a
 * running domain (verified on Xen 4.17, ../shared/xen-lab.md), so the daemon finds them, in
 * this order (design.md):
 *
 *   1. its own record, by uuid (src/daemon/records.ts): a domain started or protected through
 *      xl-ha, or protected before a daemon restart;
 *   2. xl's `xl` userdata, the cfg text xl keeps after `xl config-update`;
 *   3. the cfg search path (`config_dirs` in xl-ha.conf, default /etc/xen, /etc/xen/auto): the
 *      cfg whose `name` is the domain's.
 *
 * The first step that has an answer decides. Two different cfgs with the domain's name, or a
 * cfg whose memory or vcpus disagree with what libxl holds for the domain, or a cfg whose ha
 * keys are invalid, is an *alert*: the domain stays unprotected and the daemon says exactly
 * why, never a guess. A domain without `ha` is simply not protected.
 */
import { transferNotImplemented } from '../transport/transfer.js';
import fs from 'node:fs';
import path from 'node:path';
import type { DomainConfig } from '../config/domain.js';
import { ConfigError, type HaConfig } from '../config/domain.js';
import { domainConfigWithDefaults, type PluginConfig } from '../config/plugin.js';
import { parseXlCfg } from '../config/xlcfg.js';
import type { DomainInfo } from '../backend/types.js';
import { DomainRecordError, type DomainRecords, type RecordVia } from './records.js';
import type { ProtectOptions } from './protect.js';

/** A file in a config dir bigger than this is not a domain cfg (and is not read). */
export const CFG_MAX_BYTES = 1 << 20;

export type Resolution =
  | { kind: 'protect'; via: RecordVia; source: string; options: Omit<ProtectOptions, 'domain'> }
  /** Not an ha domain: nothing to do. */
  | { kind: 'none'; reason: string }
  /** The domain stays unprotected and the admin is told why (loudly). */
  | { kind: 'alert'; reason: string };

export interface ResolveContext {
  records: DomainRecords;
  /** xl's `xl` userdata of the domain (the cfg text after `xl config-update`), null when none. */
  userdata(info: DomainInfo): Promise<string | null>;
  /** What libxl holds for the domain (memory, vcpus) for the mismatch check. */
  libxlConfig(info: DomainInfo): Promise<Pick<DomainConfig, 'memoryMiB' | 'vcpus'>>;
  configDirs: readonly string[];
  plugin?: PluginConfig;
}

/** The protect options a cfg's ha keys stand for (the cfg's own choice of -n/-d: allowUnsafe). */
export function protectOptionsFromHa(ha: HaConfig): Omit<ProtectOptions, 'domain'> {
  return {
    mode: ha.mode,
    peer: { host: ha.peer.host, port: ha.peer.port },
    intervalMs: ha.intervalMs,
    ...(ha.minGapMs !== undefined ? { minGapMs: ha.minGapMs } : {}),
    ...(ha.maxIntervalMs !== undefined ? { maxIntervalMs: ha.maxIntervalMs } : {}),
    netbuf: ha.netbuf,
    disk: ha.disk,
    blackhole: false,
    heartbeatMs: ha.heartbeatMs,
    failoverTimeoutMs: ha.failoverTimeoutMs,
    ...(ha.bufferLimitMiB !== undefined ? { bufferLimitMiB: ha.bufferLimitMiB } : {}),
    ...(ha.onBufferFull !== undefined ? { onBufferFull: ha.onBufferFull } : {}),
    ...(ha.transfer !== 'full' ? { transfer: ha.transfer } : {}),
    ...(ha.fgbiBlockBytes !== undefined ? { fgbiBlockBytes: ha.fgbiBlockBytes } : {}),
    ...(ha.fgbiShadowMiB !== undefined ? { fgbiShadowMiB: ha.fgbiShadowMiB } : {}),
    allowUnsafe: true, // ha_netbuf/ha_disk off is the cfg's explicit choice
  };
}

/** A cfg's text read as the daemon reads it: its ha settings, or why they cannot be used. */
function fromCfgText(text: string, source: string, plugin: PluginConfig | undefined): { ok: true; name: string | undefined; domain: DomainConfig; ha: HaConfig | null } | { ok: false; error: string } {
  try {
    const parsed = domainConfigWithDefaults(parseXlCfg(text, source), plugin);
    const notYet = parsed.ha ? transferNotImplemented(parsed.ha.transfer) : null;
    if (notYet) return { ok: false, error: `${source}: ${notYet}` };
    return { ok: true, name: parsed.domain.name, domain: parsed.domain, ha: parsed.ha };
  } catch (err) {
    return { ok: false, error: err instanceof ConfigError ? err.message : `${source}: ${(err as Error).message}` };
  }
}

/** Only `name = ...` of a cfg, or undefined (a file that is no cfg, or has no name). */
function cfgName(text: string, source: string): string | undefined {
  try {
    const v = parseXlCfg(text, source).entries.get('name')?.value;
    return typeof v === 'string' ? v : undefined;
  } catch {
    return undefined; // not an xl cfg (xl.conf is one, scripts are not): not a candidate
  }
}

/** Regular files directly in each dir (as xendomains reads /etc/xen/auto), by real path, first seen first. */
function cfgCandidates(dirs: readonly string[]): { file: string; real: string }[] {
  const out: { file: string; real: string }[] = [];
  const seen = new Set<string>();
  for (const dir of dirs) {
    let names: string[];
    try {
      names = fs.readdirSync(dir).sort();
    } catch {
      continue; // a config dir that does not exist holds no cfg
    }
    for (const n of names) {
      if (n.startsWith('.') || n.endsWith('~') || n.endsWith('.dpkg-old') || n.endsWith('.dpkg-dist')) continue;
      const file = path.join(dir, n);
      let real: string;
      try {
        real = fs.realpathSync(file);
        const st = fs.statSync(real);
        if (!st.isFile() || st.size > CFG_MAX_BYTES) continue;
      } catch {
        continue;
      }
      // /etc/xen/auto usually links to cfgs in /etc/xen: one file, not two
      if (seen.has(real)) continue;
      seen.add(real);
      out.push({ file, real });
    }
  }
  return out;
}

/** The disagreement between a cfg and libxl's view of the running domain, or null. */
function mismatch(domain: DomainConfig, held: Pick<DomainConfig, 'memoryMiB' | 'vcpus'>): string | null {
  const d: string[] = [];
  if (domain.memoryMiB !== held.memoryMiB) d.push(`memory = ${domain.memoryMiB} in the cfg, ${held.memoryMiB} MiB in libxl`);
  if (domain.vcpus !== held.vcpus) d.push(`vcpus = ${domain.vcpus} in the cfg, ${held.vcpus} in libxl`);
  return d.length ? d.join(', ') : null;
}

export async function resolveDomain(info: DomainInfo, ctx: ResolveContext): Promise<Resolution> {
  // 1. our own record
  try {
    const rec = ctx.records.get(info.uuid);
    if (rec) return { kind: 'protect', via: rec.via, source: `${rec.source} (record ${path.join(ctx.records.dir, `${info.uuid}.json`)})`, options: rec.options };
  } catch (err) {
    if (err instanceof DomainRecordError) return { kind: 'alert', reason: err.message };
    throw err;
  }
  // 2. xl's userdata
  const text = await ctx.userdata(info).catch(() => null);
  if (text !== null) {
    const source = `xl userdata of domain ${info.name}`;
    const r = fromCfgText(text, source, ctx.plugin);
    if (!r.ok) return { kind: 'alert', reason: r.error };
    if (!r.ha) return { kind: 'none', reason: `${source} has no ha key` };
    const m = mismatch(r.domain, await ctx.libxlConfig(info));
    if (m) return { kind: 'alert', reason: `${source} does not describe the running domain ${info.name}: ${m}` };
    return { kind: 'protect', via: 'userdata', source, options: protectOptionsFromHa(r.ha) };
  }
  // 3. the cfg search path
  const hits: { file: string; text: string }[] = [];
  for (const c of cfgCandidates(ctx.configDirs)) {
    let t: string;
    try {
      t = fs.readFileSync(c.real, 'utf8');
    } catch {
      continue;
    }
    if (cfgName(t, c.file) === info.name) hits.push({ file: c.file, text: t });
  }
  if (hits.length === 0) return { kind: 'none', reason: `no xl-ha record, no xl userdata, and no cfg named ${info.name} in ${ctx.configDirs.join(', ') || '(no config_dirs)'}` };
  if (hits.length > 1) {
    return { kind: 'alert', reason: `${hits.length} cfgs are named ${info.name}: ${hits.map((h) => h.file).join(', ')}; which one created the domain is unknown, so it is not protected (keep one, or protect it with xl-ha remus)` };
  }
  const hit = hits[0]!;
  const r = fromCfgText(hit.text, hit.file, ctx.plugin);
  if (!r.ok) return { kind: 'alert', reason: r.error };
  if (!r.ha) return { kind: 'none', reason: `${hit.file} has no ha key` };
  const m = mismatch(r.domain, await ctx.libxlConfig(info));
  if (m) return { kind: 'alert', reason: `${hit.file} does not describe the running domain ${info.name}: ${m}; it may have been edited since the domain was created, so it is not protected (xl-ha remus protects it by hand)` };
  return { kind: 'protect', via: 'config_dirs', source: hit.file, options: protectOptionsFromHa(r.ha) };
}
