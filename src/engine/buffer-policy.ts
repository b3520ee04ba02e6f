/**
 * What the primary does when the backup acknowledges slower than the guest produces output,
 * so that the output held for it grows past the limit. Defined once here for the engine, the
 * config (`ha_on_buffer_full`, `ha_buffer_limit_mib`), the CLI and the control socket.
 *
 * - `throttle` (default): the guest is paused until every checkpoint in flight is acknowledged
 *   (its held output then leaves) and runs on as soon as the backup has caught up. A backup
 *   that stops acknowledging altogether loses the link after the ack timeout, so the pause is
 *   bounded.
 * - `degrade`: protection ends with an alert, as if the backup were lost: the witness decides,
 *   and a released primary runs unprotected and reconnects with backoff.
 */
export type BufferFullPolicy = 'throttle' | 'degrade';
export const BUFFER_FULL_POLICIES: readonly BufferFullPolicy[] = ['throttle', 'degrade'];

/**
 * Held output allowed by default: 16 MiB, as the Xen backend's sch_plug limit per vif (Remus's
 * own netbuf default was 10 MB). A remus epoch of a guest at saturated client load on the sim
 * holds well under 1 MiB.
 */
export const DEFAULT_BUFFER_LIMIT_MIB = 16;
