/**
 * The `kv` guest's service protocol, spoken between clients and the guest over the virtual
 * NIC. Each message is a frame `length u32 LE | payload`.
 *
 * Request payload:  clientId u32 | seq u32 | op u8 | keyLen u8 | valLen u16 | key | value
 * Response payload: clientId u32 | seq u32 | status u8 | 0 u8 | valLen u16 | value
 *
 * A client is one logical stream with one request outstanding; it numbers requests 1, 2, …
 * and retries the same (clientId, seq) after a lost connection. The guest keeps, in guest
 * memory, the last sequence number and response of every client, so a retry is answered from
 * that record and a write is applied exactly once — the same way a guest TCP stack
 * recognises a retransmission, since its state is checkpointed with the guest.
 */
export const KV_OP = { GET: 1, PUT: 2, PING: 3, STAT: 4 } as const;
export const KV_STATUS = { OK: 0, NOT_FOUND: 1, BAD_REQUEST: 2, FULL: 3, BUSY: 4 } as const;
export const KV_MAX_KEY = 56;
export const KV_MAX_VALUE = 192;
export const KV_MAX_FRAME = 1024;

export interface KvRequest {
  clientId: number;
  seq: number;
  op: number;
  key: Uint8Array;
  value: Uint8Array;
}

export interface KvResponse {
  clientId: number;
  seq: number;
  status: number;
  value: Uint8Array;
}

export function encodeRequest(r: KvRequest): Buffer {
  const b = Buffer.alloc(4 + 12 + r.key.length + r.value.length);
  b.writeUInt32LE(b.length - 4, 0);
  b.writeUInt32LE(r.clientId >>> 0, 4);
  b.writeUInt32LE(r.seq >>> 0, 8);
  b[12] = r.op;
  b[13] = r.key.length;
  b.writeUInt16LE(r.value.length, 14);
  b.set(r.key, 16);
  b.set(r.value, 16 + r.key.length);
  return b;
}

/** Decodes a request payload (without its length prefix); null when malformed. */
export function decodeRequest(p: Uint8Array): KvRequest | null {
  if (p.length < 12) return null;
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const keyLen = p[9]!;
  const valLen = dv.getUint16(10, true);
  if (p.length !== 12 + keyLen + valLen) return null;
  return {
    clientId: dv.getUint32(0, true),
    seq: dv.getUint32(4, true),
    op: p[8]!,
    key: p.subarray(12, 12 + keyLen),
    value: p.subarray(12 + keyLen),
  };
}

export function encodeResponsePayload(r: KvResponse): Uint8Array {
  const b = new Uint8Array(12 + r.value.length);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, r.clientId >>> 0, true);
  dv.setUint32(4, r.seq >>> 0, true);
  b[8] = r.status;
  dv.setUint16(10, r.value.length, true);
  b.set(r.value, 12);
  return b;
}

export function decodeResponse(p: Uint8Array): KvResponse | null {
  if (p.length < 12) return null;
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const valLen = dv.getUint16(10, true);
  if (p.length !== 12 + valLen) return null;
  return { clientId: dv.getUint32(0, true), seq: dv.getUint32(4, true), status: p[8]!, value: p.subarray(12) };
}

/** Splits a byte stream into length-prefixed frames. */
export class FrameSplitter {
  private buf: Buffer = Buffer.alloc(0);
  constructor(private readonly maxFrame = KV_MAX_FRAME) {}
  /** Returns complete payloads; throws on a frame longer than the limit. */
  push(chunk: Buffer): Buffer[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: Buffer[] = [];
    let off = 0;
    while (this.buf.length - off >= 4) {
      const len = this.buf.readUInt32LE(off);
      if (len > this.maxFrame) throw new Error(`frame of ${len} bytes exceeds ${this.maxFrame}`);
      if (this.buf.length - off - 4 < len) break;
      out.push(this.buf.subarray(off + 4, off + 4 + len));
      off += 4 + len;
    }
    this.buf = off === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(off);
    return out;
  }
}

export function frame(payload: Uint8Array): Buffer {
  const b = Buffer.alloc(4 + payload.length);
  b.writeUInt32LE(payload.length, 0);
  b.set(payload, 4);
  return b;
}
