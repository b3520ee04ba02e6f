/*
 * xlha.h — libxl-shim: the thin C layer between xl-ha's daemon (TypeScript, through koffi)
 * and Xen's libxl / libxenguest / xenstore (Xen 4.17).
 *
 * The shim holds no policy: it wraps what the checkpoint engine needs and nothing else.
 * Conventions:
 *   - public names xlha_, internal xlha__;
 *   - functions return 0 (or a count / id >= 0) on success and a negative errno on failure;
 *     the message of the last failure on a handle is xlha_last_error(ctx);
 *   - the caller owns memory it passes in; strings the shim returns are freed with xlha_free;
 *   - no Node headers: any FFI (or a C program) can use it.
 *
 * Threads. xlha_save_run and xlha_restore_run block for as long as replication lasts; call
 * them from a worker thread (koffi's .async()). While xlha_save_run runs, libxenguest calls
 * back at each phase of a checkpoint; the shim turns each callback into an event delivered to
 * the caller's xlha_event_fn and then waits, on its own thread, until the caller answers with
 * xlha_save_reply(). The caller's event function must return at once (it runs on the save
 * thread); nothing ever blocks the caller's event loop.
 *
 * Wire constants below must agree with src/transport/channel-records.ts and xen-records.ts and docs/protocol.md; a test
 * (test/shim/constants.test.ts) checks that they do.
 */
#ifndef XLHA_H
#define XLHA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Xen migration stream v2: libxc record types ---------------------------------------- */
#define XLHA_XC_REC_END                       0x00000000u
#define XLHA_XC_REC_PAGE_DATA                 0x00000001u
#define XLHA_XC_REC_X86_PV_INFO               0x00000002u
#define XLHA_XC_REC_X86_PV_P2M_FRAMES         0x00000003u
#define XLHA_XC_REC_X86_PV_VCPU_BASIC         0x00000004u
#define XLHA_XC_REC_X86_PV_VCPU_EXTENDED      0x00000005u
#define XLHA_XC_REC_X86_PV_VCPU_XSAVE         0x00000006u
#define XLHA_XC_REC_SHARED_INFO               0x00000007u
#define XLHA_XC_REC_X86_TSC_INFO              0x00000008u
#define XLHA_XC_REC_HVM_CONTEXT               0x00000009u
#define XLHA_XC_REC_HVM_PARAMS                0x0000000Au
#define XLHA_XC_REC_TOOLSTACK                 0x0000000Bu
#define XLHA_XC_REC_X86_PV_VCPU_MSRS          0x0000000Cu
#define XLHA_XC_REC_VERIFY                    0x0000000Du
#define XLHA_XC_REC_CHECKPOINT                0x0000000Eu
#define XLHA_XC_REC_CHECKPOINT_DIRTY_PFN_LIST 0x0000000Fu
#define XLHA_XC_REC_STATIC_DATA_END           0x00000010u
#define XLHA_XC_REC_X86_CPUID_POLICY          0x00000011u
#define XLHA_XC_REC_X86_MSR_POLICY            0x00000012u

/* ---- libxl record types -------------------------------------------------------------------- */
#define XLHA_XL_REC_END                       0x00000000u
#define XLHA_XL_REC_LIBXC_CONTEXT             0x00000001u
#define XLHA_XL_REC_EMULATOR_XENSTORE_DATA    0x00000002u
#define XLHA_XL_REC_EMULATOR_CONTEXT          0x00000003u
#define XLHA_XL_REC_CHECKPOINT_END            0x00000004u
#define XLHA_XL_REC_CHECKPOINT_STATE          0x00000005u

/* ---- xl-ha channel frames -------------------------------------------------------------------- */
#define XLHA_REC_HELLO                        0x584C4801u
#define XLHA_REC_HELLO_ACK                    0x584C4802u
#define XLHA_REC_XEN_STREAM                   0x584C4810u
#define XLHA_REC_CHECKPOINT_SEAL              0x584C4811u
#define XLHA_REC_CHECKPOINT_ACK               0x584C4812u
#define XLHA_REC_CHECKPOINT_NACK              0x584C4813u
#define XLHA_REC_XEN_STREAM_Z                 0x584C4814u /* compressed XEN_STREAM chunk (docs/protocol.md 5.8) */
#define XLHA_REC_HEARTBEAT                    0x584C4820u
#define XLHA_REC_DISK_WRITES                  0x584C4830u
#define XLHA_REC_GOODBYE                      0x584C4840u
#define XLHA_REC_SIDE                         0x584C4850u
#define XLHA_REC_SIDE_ACK                     0x584C4851u

/* ---- stream types (xc_stream_type_t / libxl checkpointed_stream) ------------------------------ */
#define XLHA_STREAM_PLAIN 0
#define XLHA_STREAM_REMUS 1
#define XLHA_STREAM_COLO  2

/* ---- events of a checkpointed save (one per libxenguest callback) ----------------------------- */
#define XLHA_EV_SUSPEND          1 /* suspend the guest now; reply 1 when suspended, 0 to fail */
#define XLHA_EV_POSTCOPY         2 /* the checkpoint is written; resume the guest; reply 1 / 0 */
#define XLHA_EV_CHECKPOINT       3 /* reply 1 to take another checkpoint, 0 to end */
#define XLHA_EV_WAIT_CHECKPOINT  4 /* COLO: reply 1 to go on, 0 to end */
#define XLHA_EV_DONE             5 /* xc_domain_save returned (no reply expected) */

typedef struct xlha_ctx xlha_ctx;
typedef struct xlha_save xlha_save;

/* One domain, as the engine needs to know it. */
typedef struct xlha_dominfo {
    uint32_t domid;
    char name[64];
    uint8_t uuid[16];
    uint64_t memory_kb;     /* current */
    uint64_t max_memory_kb;
    uint32_t vcpus;         /* online */
    uint32_t flags;         /* XLHA_DOM_* */
} xlha_dominfo;

#define XLHA_DOM_RUNNING  0x01u
#define XLHA_DOM_BLOCKED  0x02u
#define XLHA_DOM_PAUSED   0x04u
#define XLHA_DOM_SHUTDOWN 0x08u
#define XLHA_DOM_DYING    0x10u
#define XLHA_DOM_PV       0x20u
#define XLHA_DOM_HVM      0x40u

typedef void (*xlha_event_fn)(void *opaque, int event);

/* Shim and ABI version: (major << 16) | minor. */
int xlha_version(void);

/* Opens libxl, libxc and xenstore. *out is set even on failure (to read the error), or NULL
 * when out of memory. Fails with -ENOENT when this is not a Xen dom0 (no /dev/xen/privcmd),
 * -EACCES when not privileged. */
int xlha_open(xlha_ctx **out);
void xlha_close(xlha_ctx *ctx);
const char *xlha_last_error(const xlha_ctx *ctx);
void xlha_free(void *p);

/* Fills up to `max` entries of `out`; returns the number of domains (may exceed `max`). */
int xlha_domain_list(xlha_ctx *ctx, xlha_dominfo *out, int max);
int xlha_domain_info(xlha_ctx *ctx, uint32_t domid, xlha_dominfo *out);
/* Returns the domid (>= 0) of the domain called `name`, or -ENOENT. */
int xlha_domain_by_name(xlha_ctx *ctx, const char *name);
int xlha_domain_pause(xlha_ctx *ctx, uint32_t domid);
/* Xen's watchdog for the calling domain (dom0 here: SCHEDOP_watchdog, as xenwatchdogd uses).
 * id 0 arms a new one and returns its id (> 0); a known id with timeout_s > 0 kicks it; with
 * timeout_s 0 it is disarmed. If it is not kicked within timeout_s, Xen shuts the domain
 * down with reason watchdog: for dom0 the whole host reboots. -ENOSPC when Xen's watchdogs
 * for this domain are all taken (two per domain). */
int xlha_watchdog(xlha_ctx *ctx, uint32_t id, uint32_t timeout_s);
int xlha_domain_unpause(xlha_ctx *ctx, uint32_t domid);
int xlha_domain_destroy(xlha_ctx *ctx, uint32_t domid);
/* Renames a domain (the replica is built as <name>--incoming, as xl does, and takes the
 * name on failover). */
int xlha_domain_rename(xlha_ctx *ctx, uint32_t domid, const char *old_name, const char *new_name);
/* Suspends the guest (PV: through its suspend protocol) without saving it. */
int xlha_domain_suspend(xlha_ctx *ctx, uint32_t domid);
/* Resumes a suspended guest; fast = 1 is the co-operative resume Remus uses. */
int xlha_domain_resume(xlha_ctx *ctx, uint32_t domid, int fast);
/* libxl's stored configuration of the domain as JSON (free with xlha_free), or NULL. */
char *xlha_domain_config_json(xlha_ctx *ctx, uint32_t domid);

/* Checkpointed save (primary). xlha_save_new prepares a session writing the libxc stream to
 * `io_fd`; xlha_save_run runs xc_domain_save and returns when it ends (0 after a graceful end,
 * negative errno otherwise); events arrive through `fn`; the pending one is answered with
 * xlha_save_reply. xlha_save_free after xlha_save_run returned. The calling thread is named
 * "xlha-save" while it runs (per-thread CPU accounting), and gets its old name back after. */
int xlha_save_new(xlha_ctx *ctx, uint32_t domid, int io_fd, int stream_type,
                  xlha_event_fn fn, void *opaque, xlha_save **out);
int xlha_save_run(xlha_save *s);
/* Answers the pending event; -EAGAIN when none is pending. */
int xlha_save_reply(xlha_save *s, int value);
/* Ends the session from outside: the pending and every later event is answered 0. */
void xlha_save_abort(xlha_save *s);
void xlha_save_free(xlha_save *s);

/* Checkpointed restore (backup): builds a new domain from `config_json` (libxl's JSON) and
 * the libxl stream read from `io_fd`; returns when the stream ends. With a checkpointed
 * stream, the end of the stream after a complete checkpoint is a failover: the domain is
 * resumed from that checkpoint and its domid (>= 0) is returned. The calling thread is named
 * "xlha-restore" while it runs. */
int xlha_restore_run(xlha_ctx *ctx, const char *config_json, int io_fd, int stream_type);

/* Largest pipe buffer xlha_pipe asks for (F_SETPIPE_SZ; it falls back by halves). */
#define XLHA_PIPE_BYTES (8 * 1024 * 1024)

/* A pipe (O_CLOEXEC) for the stream between libxenguest and the caller: fds[0] reads,
 * fds[1] writes. Its buffer is grown towards XLHA_PIPE_BYTES so that a whole checkpoint fits
 * and libxenguest does not wait for the caller's reads while the guest is suspended. */
int xlha_pipe(int *fds);

/* Waits until the pipe whose write end is `fd` holds no byte (FIONREAD), up to timeout_ms:
 * 0 once it is empty, -ETIMEDOUT, or -errno. On the backup, the last bytes of a checkpoint are
 * libxl's CHECKPOINT_END record, which libxl reads only after libxenguest's checkpoint
 * callback has run, that is after the checkpoint's buffered records were applied: an empty
 * pipe means libxenguest has taken the checkpoint. Blocking: call it off the event loop. */
int xlha_pipe_wait_drained(int fd, int timeout_ms);

/* xenstore watch on @introduceDomain and @releaseDomain. xlha_watch_wait blocks up to
 * timeout_ms; it returns 1 and copies the fired path into `path` (NUL-terminated), 0 on
 * timeout, negative errno on failure. */
int xlha_watch_domains(xlha_ctx *ctx);
int xlha_watch_wait(xlha_ctx *ctx, int timeout_ms, char *path, int path_len);

/* ---- net output buffering (sch_plug) ------------------------------------------------------ *
 * The guest's output leaves dom0 through an IFB to which its vif's ingress is redirected; a
 * `plug` qdisc at the IFB's root holds it per epoch (xl-ha sets the IFB, the redirect and the
 * qdisc up with ip/tc once; these calls drive the qdisc per checkpoint, over rtnetlink, in
 * microseconds). They need no Xen context: errors are written to err (errlen bytes).
 *
 * sch_plug keeps two epochs: BUFFER closes the current epoch (its packets wait behind a barrier)
 * and opens a new one; RELEASE_ONE lets the packets of the closed epoch go; RELEASE_ALL lets
 * everything go and stops holding until the next BUFFER; LIMIT sets the queue limit in bytes
 * (packets beyond it are dropped). */
#define XLHA_PLUG_BUFFER      0
#define XLHA_PLUG_RELEASE_ONE 1
#define XLHA_PLUG_RELEASE_ALL 2
#define XLHA_PLUG_LIMIT       3

/* Changes the plug qdisc at the root of `ifname`. 0 or negative errno. */
int xlha_plug(const char *ifname, int action, uint32_t limit, char *err, int errlen);

/* Bytes (>= 0) queued in the root qdisc of `ifname`, or negative errno. */
long long xlha_qdisc_backlog(const char *ifname, char *err, int errlen);

/* Bytes (>= 0) that ever entered the root qdisc of `ifname` and were not dropped (let out plus
 * queued): it grows when the guest sends (kemari's output event), or negative errno. */
long long xlha_qdisc_enqueued(const char *ifname, char *err, int errlen);

#ifdef __cplusplus
}
#endif
#endif /* XLHA_H */
