/**
 * The client side of a daemon's control socket: one JSON request per line, one JSON answer.
 * Kept apart from the daemon so that client commands (`xl-ha remus`, `status`, ...) load
 * nothing else: under the lab's emulation every module loaded costs the command's start-up.
 */
import net from 'node:net';

export type ControlRequest = { cmd: string; [k: string]: unknown };
export type ControlResponse = { ok: true; result: unknown } | { ok: false; error: string; code?: string };

/** Sends one request to a daemon's control socket. */
export function controlRequest(controlPath: string, req: ControlRequest, timeoutMs = 60000): Promise<ControlResponse> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(controlPath);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`the xl-ha daemon at ${controlPath} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'));
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        sock.end();
        try {
          resolve(JSON.parse(buf.slice(0, nl)) as ControlResponse);
        } catch (err) {
          reject(new Error(`bad answer from the daemon: ${(err as Error).message}`));
        }
      }
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        new Error(
          err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
            ? `no xl-ha daemon is running on control socket ${controlPath} (start one with "xl-ha daemon")`
            : `cannot reach the xl-ha daemon at ${controlPath}: ${err.message}`,
        ),
      );
    });
  });
}
