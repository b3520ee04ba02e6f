/** Layout of the vCPU control block shared between host and vCPU thread. */
export const CTL = { STATE: 0, DOORBELL: 1 } as const;
export const RUN = { RUNNING: 0, PAUSE_REQ: 1, PAUSED: 2, STOP: 3, STOPPED: 4 } as const;
