/** Layout of the vCPU control block shared between host and vCPU thread. */
export const CTL = {
  STATE: 0,
  DOORBELL: 1,
  /** Generation of the input stream: batches of an older generation are dropped (a secondary re-aligned to a checkpoint). */
  RX_GEN: 2,
} as const;
export const RUN = { RUNNING: 0, PAUSE_REQ: 1, PAUSED: 2, STOP: 3, STOPPED: 4 } as const;
/** The name of a vCPU's thread (its comm, at most 15 characters). */
export const VCPU_THREAD_NAME = 'sim-vcpu';
