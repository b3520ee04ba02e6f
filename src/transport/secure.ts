/**
 * The replication link's security: TLS 1.3 with a pre-shared key per pair of hosts
 * (src/security/peers.ts), in psk_dhe_ke mode (the key authenticates, an X25519 exchange gives
 * each session its own keys: forward secrecy). Both ends prove the key; a peer without it
 * never gets a byte of xl-ha protocol through. TLS's record layer (AES-GCM) makes a
 * tampered, reordered, dropped or replayed record end the connection; every session has fresh
 * randoms and exchange, so a recorded session cannot be replayed.
 *
 * Why a PSK rather than mutual TLS with pinned certificates: see docs/security.md (no
 * certificate to mint, expire or pin, an identity that is the host name the allow-list names,
 * and the same TLS record protection).
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'winston';
import { connectTcp } from './channel.js';
import { PeerKeyError, type PeerEntry, type PeerKeys } from '../security/peers.js';

/**
 * For measuring what encryption costs, and nothing else: with XLHA_PLAINTEXT_LOOPBACK=1 the
 * link runs without TLS, and only between loopback addresses (the bench's hosts). A pairing
 * is still required; the daemon logs a warning at start. Not a setting: no cfg key, no flag.
 */
export function plaintextLoopback(): boolean {
  return process.env.XLHA_PLAINTEXT_LOOPBACK === '1';
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || /^::ffff:127\./.test(host);
}


/** AES-128-GCM first (hardware AES on every x86-64 dom0), ChaCha20 for the others. */
export const TLS_CIPHERS = 'TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384';
const TLS_BASE = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', ciphers: TLS_CIPHERS } as const;
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/** Connects to a backup and authenticates both ways with the pair's key. */
export async function connectSecure(to: { host: string; port: number }, keys: PeerKeys, timeoutMs = 5000): Promise<{ socket: net.Socket; peer: PeerEntry }> {
  const peer = keys.forAddress(to); // throws PeerKeyError: nothing is sent without a key
  const where = `${to.host}:${to.port}`;
  if (plaintextLoopback()) {
    if (!isLoopback(to.host)) throw new Error(`XLHA_PLAINTEXT_LOOPBACK is for loopback measurements only: ${where} is not a loopback address`);
    return { socket: await connectTcp(to, timeoutMs), peer };
  }
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      ...TLS_BASE,
      host: to.host,
      port: to.port,
      pskCallback: () => ({ identity: keys.hostName, psk: peer.key }),
      checkServerIdentity: () => undefined, // no certificate: the PSK authenticates the backup
    });
    let tcpUp = false;
    socket.once('connect', () => (tcpUp = true));
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connecting to ${where} timed out after ${timeoutMs} ms${tcpUp ? ' in the TLS handshake' : ''}`));
    }, timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve({ socket, peer });
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      if (!tcpUp) reject(new Error(`cannot connect to ${where}: ${err.message}`));
      else reject(new Error(`the backup at ${where} did not authenticate with the key of ${peer.peer} (${peer.file}), or refused ours: ${err.code ?? err.message}. Are both hosts paired with the same key (xl-ha keygen / xl-ha pair)?`));
    });
    // a connection closed before the handshake ends without an error event on some versions
    socket.once('close', () => {
      clearTimeout(timer);
      reject(new Error(`the backup at ${where} closed the connection during the TLS handshake (is host ${keys.hostName} paired with it, with the same key?)`));
    });
  });
}

/**
 * A server for replication streams that hands on only authenticated connections, each with
 * the pairing its peer proved. A refused one is logged with its address and the reason.
 */
/** Errors of the connection itself, not of the peer's credentials. */
const NETWORK_ERRORS = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH']);

export function secureServer(keys: PeerKeys, log: Logger, onPeer: (socket: net.Socket, peer: PeerEntry) => void): net.Server {
  if (plaintextLoopback()) return plainServer(keys, log, onPeer);
  const proved = new WeakMap<tls.TLSSocket, PeerEntry>();
  const refused = new WeakMap<tls.TLSSocket, string>();
  const server = tls.createServer({
    ...TLS_BASE,
    handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
    pskCallback: (socket: tls.TLSSocket, identity: string) => {
      try {
        const e = keys.load(identity);
        proved.set(socket, e);
        return e.key;
      } catch (err) {
        refused.set(socket, err instanceof PeerKeyError ? err.message : String(err));
        return null;
      }
    },
  });
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    const peer = proved.get(socket);
    if (!peer) {
      socket.destroy(); // cannot happen: a PSK handshake completes only with a key we returned
      return;
    }
    onPeer(socket, peer);
  });
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
    const from = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    const why =
      refused.get(socket) ??
      (err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT'
        ? `no TLS handshake within ${HANDSHAKE_TIMEOUT_MS} ms`
        : NETWORK_ERRORS.has(err.code ?? '')
          ? `the connection broke during the TLS handshake: ${err.code} (a network fault, or the peer went away)`
          : `TLS handshake failed: ${err.code ?? err.message} (not an xl-ha peer, or a wrong pre-shared key)`);
    log.warn('replication connection refused: not authenticated', { from, reason: why });
    socket.destroy();
  });
  return server;
}

/** XLHA_PLAINTEXT_LOOPBACK: the peer is this host's only pairing, and must come from loopback. */
function plainServer(keys: PeerKeys, log: Logger, onPeer: (socket: net.Socket, peer: PeerEntry) => void): net.Server {
  log.warn('replication WITHOUT encryption or authentication (XLHA_PLAINTEXT_LOOPBACK=1, for measurements on loopback only)');
  return net.createServer((socket) => {
    const from = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    const all = keys.checkAll();
    if (!isLoopback(socket.remoteAddress ?? '') || all.length !== 1) {
      log.warn('replication connection refused: not authenticated', { from, reason: all.length !== 1 ? `plaintext needs exactly one pairing, this host has ${all.length}` : 'plaintext is for loopback peers only' });
      socket.destroy();
      return;
    }
    onPeer(socket, all[0]!);
  });
}
