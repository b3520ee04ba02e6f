/**
 * A wait that someone else can end early: `wait()` resolves true when `wake()` is called, false
 * when `timeoutMs` passes first, and rejects with the signal's reason on abort. One waiter at a
 * time (a mode's nextCheckpoint); a wake with no waiter is not remembered.
 */
export class Wakeup {
  private waiter: ((woken: boolean) => void) | null = null;

  wake(): void {
    this.waiter?.(true);
  }

  wait(signal: AbortSignal, timeoutMs = Infinity): Promise<boolean> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        this.waiter = null;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
      };
      const onAbort = () => {
        done();
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          done();
          resolve(false);
        }, Math.max(0, timeoutMs));
      }
      this.waiter = (woken) => {
        done();
        resolve(woken);
      };
    });
  }
}
