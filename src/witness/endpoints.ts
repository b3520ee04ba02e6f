/** Parsing `--witness` (no etcd client loaded for it). */
export function parseWitnessEndpoints(text: string): string[] {
  const list = text.split(',').map((s) => s.trim()).filter(Boolean);
  if (!list.length) throw new Error('a witness is one or more etcd endpoints, host:port, comma-separated');
  for (const e of list) {
    if (!/^(https?:\/\/)?[A-Za-z0-9.\-[\]:]+:\d{1,5}$/.test(e)) throw new Error(`witness endpoint ${JSON.stringify(e)} is not host:port (or http[s]://host:port)`);
  }
  return list.map((e) => (/^https?:\/\//.test(e) ? e : `http://${e}`));
}
