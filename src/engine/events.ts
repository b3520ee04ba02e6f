/**
 * Typed events from devices to the mode. A device reports what it sees of the guest's I/O
 * (output about to leave, the two copies' outputs differing, a client input arriving); the
 * mode decides what that means (kemari: a sync is due; colo: a checkpoint now). Neither side
 * knows the other: both hold only the bus the engine made for one protection.
 *
 * Listeners run synchronously, in subscription order, on the emitter's turn: an `output-pending`
 * raised while the guest is being suspended is seen before that checkpoint's barrier. A
 * listener that throws is reported to the bus's error handler and the others still run.
 */

/** Something to let go of; `dispose()` is idempotent. */
export interface Disposable {
  dispose(): void;
}

export interface DeviceEventMap {
  /** The first output of the open epoch is held: the guest is about to emit (kemari's trigger). */
  'output-pending': { device: string; at: number };
  /** The secondary's output differs from the primary's (colo's trigger). */
  'outputs-diverged': { device: string; conn: number; detail: string };
  /** A client input reached the guest (llm logs them). */
  'input-arrived': { device: string; bytes: number };
}

export type DeviceEventKind = keyof DeviceEventMap;

export type DeviceEventListener<K extends DeviceEventKind> = (ev: DeviceEventMap[K]) => void;

export class DeviceEvents {
  private readonly listeners: { [K in DeviceEventKind]: Set<DeviceEventListener<K>> } = {
    'output-pending': new Set(),
    'outputs-diverged': new Set(),
    'input-arrived': new Set(),
  };
  /** How many of each kind were emitted (status and tests). */
  readonly counts: Record<DeviceEventKind, number> = { 'output-pending': 0, 'outputs-diverged': 0, 'input-arrived': 0 };

  constructor(private readonly onListenerError: (err: Error, kind: DeviceEventKind) => void = () => {}) {}

  on<K extends DeviceEventKind>(kind: K, listener: DeviceEventListener<K>): Disposable {
    const set = this.listeners[kind] as Set<DeviceEventListener<K>>;
    const own = (ev: DeviceEventMap[K]) => listener(ev); // the same function may subscribe twice
    set.add(own);
    return { dispose: () => void set.delete(own) };
  }

  emit<K extends DeviceEventKind>(kind: K, ev: DeviceEventMap[K]): void {
    this.counts[kind]++;
    for (const l of this.listeners[kind] as Set<DeviceEventListener<K>>) {
      try {
        l(ev);
      } catch (err) {
        this.onListenerError(err as Error, kind);
      }
    }
  }

  /** Subscribers of `kind` (tests: every subscription was disposed). */
  listenerCount(kind: DeviceEventKind): number {
    return this.listeners[kind].size;
  }
}
