/*
 * xlha.c — libxl-shim implementation (see xlha.h). Xen 4.17, libxl latest API.
 */
#define _GNU_SOURCE
#include "xlha.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <time.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <linux/gen_stats.h>

#include <libxl.h>
#include <libxl_utils.h>
#include <xenctrl.h>
#include <xenguest.h>
#include <xenstore.h>
#include <xentoollog.h>

#define XLHA_VERSION ((1 << 16) | 0)

struct xlha_ctx {
    libxl_ctx *xl;
    xc_interface *xch;
    struct xs_handle *xs;
    xentoollog_logger_stdiostream *log;
    pthread_mutex_t err_lock;
    char err[512];
};

struct xlha_save {
    xlha_ctx *ctx;
    uint32_t domid;
    int fd;
    int stream_type;
    xlha_event_fn fn;
    void *opaque;
    pthread_mutex_t m;
    pthread_cond_t c;
    int pending;   /* event awaiting a reply, 0 if none */
    int has_reply;
    int reply;
    int aborted;
};

/* ---- errors ---------------------------------------------------------------------------------- */

static int xlha__fail(xlha_ctx *ctx, int err, const char *fmt, ...)
{
    if (ctx) {
        va_list ap;
        pthread_mutex_lock(&ctx->err_lock);
        va_start(ap, fmt);
        vsnprintf(ctx->err, sizeof(ctx->err), fmt, ap);
        va_end(ap);
        pthread_mutex_unlock(&ctx->err_lock);
    }
    return -(err > 0 ? err : EIO);
}

/* libxl's ERROR_* codes as errno values. */
static int xlha__errno(int libxl_rc)
{
    switch (libxl_rc) {
    case ERROR_NOMEM: return ENOMEM;
    case ERROR_INVAL: return EINVAL;
    case ERROR_DOMAIN_NOTFOUND: return ESRCH;
    case ERROR_NOPARAVIRT: return EOPNOTSUPP;
    case ERROR_NOT_READY: return EAGAIN;
    case ERROR_OSEVENT_REG_FAIL: return EIO;
    case ERROR_TIMEDOUT: return ETIMEDOUT;
    case ERROR_NOTFOUND: return ENOENT;
    default: return EIO;
    }
}

static int xlha__libxl_fail(xlha_ctx *ctx, int rc, const char *what, uint32_t domid)
{
    return xlha__fail(ctx, xlha__errno(rc), "%s of domain %u failed: libxl %s (%d)",
                      what, domid, libxl_error_to_string(rc), rc);
}

int xlha_version(void) { return XLHA_VERSION; }

const char *xlha_last_error(const xlha_ctx *ctx)
{
    return ctx ? ctx->err : "out of memory";
}

void xlha_free(void *p) { free(p); }

/* ---- context ----------------------------------------------------------------------------------- */

int xlha_open(xlha_ctx **out)
{
    xlha_ctx *ctx = calloc(1, sizeof(*ctx));
    int rc;

    *out = ctx;
    if (!ctx) return -ENOMEM;
    pthread_mutex_init(&ctx->err_lock, NULL);
    if (access("/dev/xen/privcmd", F_OK) != 0) {
        rc = xlha__fail(ctx, ENOENT, "this host is not a Xen dom0: /dev/xen/privcmd is missing "
                                     "(boot Xen, or load the xen-privcmd module)");
        goto out;
    }
    if (access("/dev/xen/privcmd", R_OK | W_OK) != 0) {
        rc = xlha__fail(ctx, EACCES, "no access to /dev/xen/privcmd: xl-ha must run as root in dom0");
        goto out;
    }
    ctx->log = xtl_createlogger_stdiostream(stderr, XTL_ERROR, 0);
    if (!ctx->log) {
        rc = xlha__fail(ctx, ENOMEM, "cannot create the Xen tool logger");
        goto out;
    }
    rc = libxl_ctx_alloc(&ctx->xl, LIBXL_VERSION, 0, (xentoollog_logger *)ctx->log);
    if (rc) {
        rc = xlha__fail(ctx, xlha__errno(rc), "libxl_ctx_alloc failed: libxl %s (%d)",
                        libxl_error_to_string(rc), rc);
        goto out;
    }
    ctx->xch = xc_interface_open((xentoollog_logger *)ctx->log, (xentoollog_logger *)ctx->log, 0);
    if (!ctx->xch) {
        rc = xlha__fail(ctx, errno, "xc_interface_open failed: %s", strerror(errno));
        goto out;
    }
    ctx->xs = xs_open(0);
    if (!ctx->xs) {
        rc = xlha__fail(ctx, errno, "cannot connect to xenstore: %s (is xenstored running?)",
                        strerror(errno));
        goto out;
    }
    rc = 0;
out:
    return rc;
}

void xlha_close(xlha_ctx *ctx)
{
    if (!ctx) return;
    if (ctx->xs) xs_close(ctx->xs);
    if (ctx->xch) xc_interface_close(ctx->xch);
    if (ctx->xl) libxl_ctx_free(ctx->xl);
    if (ctx->log) xtl_logger_destroy((xentoollog_logger *)ctx->log);
    pthread_mutex_destroy(&ctx->err_lock);
    free(ctx);
}

static int xlha__need(xlha_ctx *ctx)
{
    if (!ctx || !ctx->xl) return xlha__fail(ctx, ENODEV, "the shim is not connected to Xen");
    return 0;
}

/* ---- domains ----------------------------------------------------------------------------------- */

static void xlha__fill(xlha_ctx *ctx, const libxl_dominfo *di, xlha_dominfo *out)
{
    char *name = libxl_domid_to_name(ctx->xl, di->domid);

    memset(out, 0, sizeof(*out));
    out->domid = di->domid;
    if (name) snprintf(out->name, sizeof(out->name), "%s", name);
    free(name);
    memcpy(out->uuid, libxl_uuid_bytearray_const(&di->uuid), 16);
    out->memory_kb = di->current_memkb;
    out->max_memory_kb = di->max_memkb;
    out->vcpus = di->vcpu_online;
    out->flags = (di->running ? XLHA_DOM_RUNNING : 0) | (di->blocked ? XLHA_DOM_BLOCKED : 0) |
                 (di->paused ? XLHA_DOM_PAUSED : 0) | (di->shutdown ? XLHA_DOM_SHUTDOWN : 0) |
                 (di->dying ? XLHA_DOM_DYING : 0) |
                 (di->domain_type == LIBXL_DOMAIN_TYPE_PV ? XLHA_DOM_PV : 0) |
                 (di->domain_type == LIBXL_DOMAIN_TYPE_HVM ? XLHA_DOM_HVM : 0);
}

int xlha_domain_list(xlha_ctx *ctx, xlha_dominfo *out, int max)
{
    int n = 0, i, rc = xlha__need(ctx);
    libxl_dominfo *all;

    if (rc) return rc;
    all = libxl_list_domain(ctx->xl, &n);
    if (!all) return xlha__fail(ctx, EIO, "libxl_list_domain failed");
    for (i = 0; i < n && i < max; i++) xlha__fill(ctx, &all[i], &out[i]);
    libxl_dominfo_list_free(all, n);
    return n;
}

int xlha_domain_info(xlha_ctx *ctx, uint32_t domid, xlha_dominfo *out)
{
    libxl_dominfo di;
    int rc = xlha__need(ctx);

    if (rc) return rc;
    libxl_dominfo_init(&di);
    rc = libxl_domain_info(ctx->xl, &di, domid);
    if (rc) {
        rc = rc == ERROR_DOMAIN_NOTFOUND ? xlha__fail(ctx, ESRCH, "domain %u does not exist", domid)
                                         : xlha__libxl_fail(ctx, rc, "libxl_domain_info", domid);
        goto out;
    }
    xlha__fill(ctx, &di, out);
out:
    libxl_dominfo_dispose(&di);
    return rc;
}

int xlha_domain_by_name(xlha_ctx *ctx, const char *name)
{
    uint32_t domid;
    int rc = xlha__need(ctx);

    if (rc) return rc;
    if (libxl_name_to_domid(ctx->xl, name, &domid))
        return xlha__fail(ctx, ENOENT, "no domain named \"%s\"", name);
    return (int)domid;
}

int xlha_domain_pause(xlha_ctx *ctx, uint32_t domid)
{
    int rc = xlha__need(ctx);
    if (rc) return rc;
    rc = libxl_domain_pause(ctx->xl, domid, NULL);
    return rc ? xlha__libxl_fail(ctx, rc, "pause", domid) : 0;
}

int xlha_watchdog(xlha_ctx *ctx, uint32_t id, uint32_t timeout_s)
{
    int rc = xlha__need(ctx);
    if (rc) return rc;
    errno = 0;
    rc = xc_watchdog(ctx->xch, id, timeout_s);
    if (rc >= 0) return rc;
    int err = errno ? errno : EIO;
    if (id == 0) {
        if (err == EEXIST) err = ENOSPC;
        return xlha__fail(ctx, err, "arming the Xen watchdog failed: %s%s", strerror(err),
                          err == ENOSPC ? " (both of Xen's watchdogs for dom0 are taken: is xenwatchdogd running?)" : "");
    }
    return xlha__fail(ctx, err, "%s the Xen watchdog %u failed: %s", timeout_s ? "kicking" : "disarming", id, strerror(err));
}

int xlha_domain_unpause(xlha_ctx *ctx, uint32_t domid)
{
    int rc = xlha__need(ctx);
    if (rc) return rc;
    rc = libxl_domain_unpause(ctx->xl, domid, NULL);
    return rc ? xlha__libxl_fail(ctx, rc, "unpause", domid) : 0;
}

int xlha_domain_destroy(xlha_ctx *ctx, uint32_t domid)
{
    int rc = xlha__need(ctx);
    if (rc) return rc;
    rc = libxl_domain_destroy(ctx->xl, domid, NULL);
    return rc ? xlha__libxl_fail(ctx, rc, "destroy", domid) : 0;
}

int xlha_domain_suspend(xlha_ctx *ctx, uint32_t domid)
{
    int rc = xlha__need(ctx);
    if (rc) return rc;
    rc = libxl_domain_suspend_only(ctx->xl, domid, NULL);
    return rc ? xlha__libxl_fail(ctx, rc, "suspend", domid) : 0;
}

int xlha_domain_resume(xlha_ctx *ctx, uint32_t domid, int fast)
{
    int rc = xlha__need(ctx);
    if (rc) return rc;
    rc = libxl_domain_resume(ctx->xl, domid, fast ? 1 : 0, NULL);
    return rc ? xlha__libxl_fail(ctx, rc, "resume", domid) : 0;
}

int xlha_domain_rename(xlha_ctx *ctx, uint32_t domid, const char *old_name, const char *new_name)
{
    int rc = xlha__need(ctx);
    if (rc) return rc;
    rc = libxl_domain_rename(ctx->xl, domid, old_name, new_name);
    return rc ? xlha__libxl_fail(ctx, rc, "rename", domid) : 0;
}

char *xlha_domain_config_json(xlha_ctx *ctx, uint32_t domid)
{
    libxl_domain_config cfg;
    char *json = NULL;
    int rc;

    if (xlha__need(ctx)) return NULL;
    libxl_domain_config_init(&cfg);
    rc = libxl_retrieve_domain_configuration(ctx->xl, domid, &cfg, NULL);
    if (rc) {
        xlha__libxl_fail(ctx, rc, "libxl_retrieve_domain_configuration", domid);
        goto out;
    }
    json = libxl_domain_config_to_json(ctx->xl, &cfg);
    if (!json) xlha__fail(ctx, ENOMEM, "cannot encode the configuration of domain %u", domid);
out:
    libxl_domain_config_dispose(&cfg);
    return json;
}

/* ---- checkpointed save ------------------------------------------------------------------------- */

/* Delivers `ev` and waits, on the save thread, for the caller's reply. */
static int xlha__event(xlha_save *s, int ev)
{
    int r;

    pthread_mutex_lock(&s->m);
    if (s->aborted) {
        pthread_mutex_unlock(&s->m);
        return 0;
    }
    s->pending = ev;
    s->has_reply = 0;
    pthread_mutex_unlock(&s->m);
    s->fn(s->opaque, ev);
    pthread_mutex_lock(&s->m);
    while (!s->has_reply && !s->aborted) pthread_cond_wait(&s->c, &s->m);
    r = s->aborted ? 0 : s->reply;
    s->pending = 0;
    pthread_mutex_unlock(&s->m);
    return r;
}

static int xlha__cb_suspend(void *data) { return xlha__event(data, XLHA_EV_SUSPEND); }
static int xlha__cb_postcopy(void *data) { return xlha__event(data, XLHA_EV_POSTCOPY); }
static int xlha__cb_checkpoint(void *data) { return xlha__event(data, XLHA_EV_CHECKPOINT); }
static int xlha__cb_wait_checkpoint(void *data) { return xlha__event(data, XLHA_EV_WAIT_CHECKPOINT); }
static int xlha__cb_logdirty(uint32_t domid, unsigned enable, void *data)
{
    (void)domid; (void)enable; (void)data;
    return 0; /* PV guests have no device model to switch */
}

int xlha_save_new(xlha_ctx *ctx, uint32_t domid, int io_fd, int stream_type,
                  xlha_event_fn fn, void *opaque, xlha_save **out)
{
    xlha_save *s;
    int rc = xlha__need(ctx);

    *out = NULL;
    if (rc) return rc;
    if (stream_type != XLHA_STREAM_REMUS && stream_type != XLHA_STREAM_COLO)
        return xlha__fail(ctx, EINVAL, "stream type %d is not a checkpointed stream", stream_type);
    if (!fn) return xlha__fail(ctx, EINVAL, "no event function given");
    s = calloc(1, sizeof(*s));
    if (!s) return xlha__fail(ctx, ENOMEM, "out of memory");
    s->ctx = ctx;
    s->domid = domid;
    s->fd = io_fd;
    s->stream_type = stream_type;
    s->fn = fn;
    s->opaque = opaque;
    pthread_mutex_init(&s->m, NULL);
    pthread_cond_init(&s->c, NULL);
    *out = s;
    return 0;
}

/* Names the calling thread (a libuv worker lent to us for a long call) for the length of that call,
 * so per-thread CPU accounting can tell it apart; the old name goes back in `old`. */
static void xlha__thread_name(const char *name, char old[16])
{
    if (old) {
        memset(old, 0, 16);
        if (prctl(PR_GET_NAME, old, 0, 0, 0)) old[0] = 0;
    }
    if (name && name[0]) prctl(PR_SET_NAME, name, 0, 0, 0);
}

int xlha_save_run(xlha_save *s)
{
    char old_name[16];
    struct save_callbacks cb;
    int rc;

    memset(&cb, 0, sizeof(cb));
    cb.suspend = xlha__cb_suspend;
    cb.postcopy = xlha__cb_postcopy;
    cb.checkpoint = xlha__cb_checkpoint;
    if (s->stream_type == XLHA_STREAM_COLO) cb.wait_checkpoint = xlha__cb_wait_checkpoint;
    cb.switch_qemu_logdirty = xlha__cb_logdirty;
    cb.data = s;
    xlha__thread_name("xlha-save", old_name);
    rc = xc_domain_save(s->ctx->xch, s->fd, s->domid, XCFLAGS_LIVE, &cb,
                        s->stream_type == XLHA_STREAM_COLO ? XC_STREAM_COLO : XC_STREAM_REMUS, -1);
    if (rc) rc = xlha__fail(s->ctx, errno ? errno : EIO, "xc_domain_save of domain %u failed: %s",
                            s->domid, strerror(errno ? errno : EIO));
    xlha__thread_name(old_name, NULL);
    s->fn(s->opaque, XLHA_EV_DONE);
    return rc;
}

int xlha_save_reply(xlha_save *s, int value)
{
    int rc = 0;

    pthread_mutex_lock(&s->m);
    if (!s->pending || s->has_reply) {
        rc = -EAGAIN;
    } else {
        s->reply = value;
        s->has_reply = 1;
        pthread_cond_signal(&s->c);
    }
    pthread_mutex_unlock(&s->m);
    return rc;
}

void xlha_save_abort(xlha_save *s)
{
    pthread_mutex_lock(&s->m);
    s->aborted = 1;
    pthread_cond_broadcast(&s->c);
    pthread_mutex_unlock(&s->m);
}

void xlha_save_free(xlha_save *s)
{
    if (!s) return;
    pthread_mutex_destroy(&s->m);
    pthread_cond_destroy(&s->c);
    free(s);
}

/* ---- checkpointed restore ---------------------------------------------------------------------- */

int xlha_restore_run(xlha_ctx *ctx, const char *config_json, int io_fd, int stream_type)
{
    libxl_domain_config cfg;
    libxl_domain_restore_params params;
    uint32_t domid = INVALID_DOMID;
    char old_name[16];
    int rc = xlha__need(ctx);

    if (rc) return rc;
    libxl_domain_config_init(&cfg);
    libxl_domain_restore_params_init(&params);
    rc = libxl_domain_config_from_json(ctx->xl, &cfg, config_json);
    if (rc) {
        rc = xlha__fail(ctx, EINVAL, "the domain configuration is not valid libxl JSON (libxl %s)",
                        libxl_error_to_string(rc));
        goto out;
    }
    params.checkpointed_stream = stream_type;
    params.stream_version = 2;
    xlha__thread_name("xlha-restore", old_name);
    rc = libxl_domain_create_restore(ctx->xl, &cfg, &domid, io_fd, -1, &params, NULL, NULL);
    xlha__thread_name(old_name, NULL);
    if (rc) {
        rc = xlha__fail(ctx, xlha__errno(rc), "restore of %s failed: libxl %s (%d)",
                        cfg.c_info.name ? cfg.c_info.name : "domain", libxl_error_to_string(rc), rc);
        goto out;
    }
    rc = (int)domid;
out:
    libxl_domain_restore_params_dispose(&params);
    libxl_domain_config_dispose(&cfg);
    return rc;
}

int xlha_pipe(int *fds)
{
    int size;

    if (pipe2(fds, O_CLOEXEC)) return -errno;
    /* A checkpoint is a few MB: with the default 64 KiB, libxenguest stalls on every 16 pages
     * until the daemon's event loop reads. Grow the pipe as far as the kernel lets us. */
    for (size = XLHA_PIPE_BYTES; size >= 65536; size /= 2)
        if (fcntl(fds[1], F_SETPIPE_SZ, size) >= 0) break;
    return 0;
}

int xlha_pipe_wait_drained(int fd, int timeout_ms)
{
    struct timespec start, now, nap = { 0, 100 * 1000 };
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        int queued = 0;
        if (ioctl(fd, FIONREAD, &queued) < 0) return -errno;
        if (queued == 0) return 0;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (ms >= timeout_ms) return -ETIMEDOUT;
        /* 0.1 ms at first, then up to 2 ms: a checkpoint is applied in a few ms on hardware */
        nanosleep(&nap, NULL);
        if (nap.tv_nsec < 2 * 1000 * 1000) nap.tv_nsec *= 2;
    }
}

/* ---- xenstore watch ------------------------------------------------------------------------------ */

int xlha_watch_domains(xlha_ctx *ctx)
{
    int rc = xlha__need(ctx);
    if (rc) return rc;
    if (!xs_watch(ctx->xs, "@introduceDomain", "xlha") || !xs_watch(ctx->xs, "@releaseDomain", "xlha"))
        return xlha__fail(ctx, errno, "xenstore watch failed: %s", strerror(errno));
    return 0;
}

int xlha_watch_wait(xlha_ctx *ctx, int timeout_ms, char *path, int path_len)
{
    struct pollfd p;
    unsigned int n;
    char **ev;
    int rc = xlha__need(ctx);

    if (rc) return rc;
    p.fd = xs_fileno(ctx->xs);
    p.events = POLLIN;
    rc = poll(&p, 1, timeout_ms);
    if (rc < 0) return xlha__fail(ctx, errno, "poll on xenstore failed: %s", strerror(errno));
    if (rc == 0) return 0;
    ev = xs_read_watch(ctx->xs, &n);
    if (!ev) return xlha__fail(ctx, errno, "reading a xenstore watch failed: %s", strerror(errno));
    if (path && path_len > 0) snprintf(path, (size_t)path_len, "%s", ev[XS_WATCH_PATH]);
    free(ev);
    return 1;
}

/* ---- net output buffering (sch_plug over rtnetlink) ---------------------------------------------- */

static int xlha__neterr(char *err, int errlen, int e, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, (size_t)errlen, fmt, ap);
        va_end(ap);
    }
    return -(e > 0 ? e : EIO);
}

static int xlha__nl_open(void)
{
    struct sockaddr_nl sa;
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);

    if (fd < 0) return -errno;
    memset(&sa, 0, sizeof(sa));
    sa.nl_family = AF_NETLINK;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

/* The interface index of `ifname` and an rtnetlink socket (>= 0), or a negative errno with err set. */
static int xlha__nl_for(const char *ifname, unsigned int *ifindex, char *err, int errlen)
{
    int fd;

    *ifindex = ifname ? if_nametoindex(ifname) : 0;
    if (!*ifindex)
        return xlha__neterr(err, errlen, ENODEV, "no network interface named \"%s\"", ifname ? ifname : "");
    fd = xlha__nl_open();
    if (fd < 0) return xlha__neterr(err, errlen, -fd, "cannot open an rtnetlink socket: %s", strerror(-fd));
    return fd;
}

static void xlha__nl_attr(struct nlmsghdr *n, size_t cap, unsigned short type, const void *data, size_t len)
{
    struct rtattr *a = (struct rtattr *)((char *)n + NLMSG_ALIGN(n->nlmsg_len));
    size_t alen = RTA_LENGTH(len);

    if (NLMSG_ALIGN(n->nlmsg_len) + RTA_ALIGN(alen) > cap) return; /* cannot happen: fixed sizes */
    a->rta_type = type;
    a->rta_len = (unsigned short)alen;
    memcpy(RTA_DATA(a), data, len);
    n->nlmsg_len = (uint32_t)(NLMSG_ALIGN(n->nlmsg_len) + RTA_ALIGN(alen));
}

static const char *xlha__plug_action(int action)
{
    switch (action) {
    case XLHA_PLUG_BUFFER: return "buffer";
    case XLHA_PLUG_RELEASE_ONE: return "release one epoch";
    case XLHA_PLUG_RELEASE_ALL: return "release all";
    case XLHA_PLUG_LIMIT: return "set limit";
    default: return "?";
    }
}

int xlha_plug(const char *ifname, int action, uint32_t limit, char *err, int errlen)
{
    struct {
        struct nlmsghdr n;
        struct tcmsg t;
        char attrs[128];
    } req;
    struct tc_plug_qopt opt;
    char buf[1024];
    struct sockaddr_nl to;
    unsigned int ifindex;
    ssize_t got;
    int fd, rc;

    if (action < XLHA_PLUG_BUFFER || action > XLHA_PLUG_LIMIT)
        return xlha__neterr(err, errlen, EINVAL, "unknown plug action %d", action);
    fd = xlha__nl_for(ifname, &ifindex, err, errlen);
    if (fd < 0) return fd;

    memset(&req, 0, sizeof(req));
    req.n.nlmsg_len = NLMSG_LENGTH(sizeof(struct tcmsg));
    req.n.nlmsg_type = RTM_NEWQDISC;
    req.n.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK; /* no CREATE: change the qdisc in place */
    req.n.nlmsg_seq = 1;
    req.t.tcm_family = AF_UNSPEC;
    req.t.tcm_ifindex = (int)ifindex;
    req.t.tcm_parent = TC_H_ROOT;
    xlha__nl_attr(&req.n, sizeof(req), TCA_KIND, "plug", 5);
    memset(&opt, 0, sizeof(opt));
    opt.action = action;
    opt.limit = limit;
    xlha__nl_attr(&req.n, sizeof(req), TCA_OPTIONS, &opt, sizeof(opt));

    memset(&to, 0, sizeof(to));
    to.nl_family = AF_NETLINK;
    if (sendto(fd, &req, req.n.nlmsg_len, 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
        rc = xlha__neterr(err, errlen, errno, "plug %s on %s: sending to rtnetlink failed: %s",
                          xlha__plug_action(action), ifname, strerror(errno));
        goto out;
    }
    for (;;) {
        struct nlmsghdr *h;
        got = recv(fd, buf, sizeof(buf), 0);
        if (got < 0) {
            if (errno == EINTR) continue;
            rc = xlha__neterr(err, errlen, errno, "plug %s on %s: no answer from rtnetlink: %s",
                              xlha__plug_action(action), ifname, strerror(errno));
            goto out;
        }
        for (h = (struct nlmsghdr *)buf; NLMSG_OK(h, (unsigned int)got); h = NLMSG_NEXT(h, got)) {
            if (h->nlmsg_seq != 1 || h->nlmsg_type != NLMSG_ERROR) continue;
            {
                const struct nlmsgerr *e = NLMSG_DATA(h);
                if (e->error == 0) {
                    rc = 0;
                } else if (e->error == -EINVAL || e->error == -ENOENT || e->error == -EOPNOTSUPP) {
                    rc = xlha__neterr(err, errlen, -e->error,
                                      "plug %s on %s failed: %s (is its root qdisc a plug? "
                                      "needs the sch_plug module)",
                                      xlha__plug_action(action), ifname, strerror(-e->error));
                } else {
                    rc = xlha__neterr(err, errlen, -e->error, "plug %s on %s failed: %s",
                                      xlha__plug_action(action), ifname, strerror(-e->error));
                }
                goto out;
            }
        }
    }
out:
    close(fd);
    return rc;
}

/* Backlog bytes from one RTM_NEWQDISC message's attributes, or -1 when it has none. */
/* The root qdisc's queue backlog and the bytes it has let out (-1 each when the message lacks them). */
static void xlha__qdisc_msg_stats(struct nlmsghdr *h, long long *backlog, long long *sent)
{
    struct tcmsg *t = NLMSG_DATA(h);
    int len = (int)h->nlmsg_len - NLMSG_LENGTH(sizeof(*t));
    struct rtattr *a;
    long long old_backlog = -1, old_sent = -1;

    *backlog = -1;
    *sent = -1;
    for (a = (struct rtattr *)((char *)t + NLMSG_ALIGN(sizeof(*t))); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
        if (a->rta_type == TCA_STATS2) {
            int nlen = (int)RTA_PAYLOAD(a);
            struct rtattr *b;
            for (b = RTA_DATA(a); RTA_OK(b, nlen); b = RTA_NEXT(b, nlen)) {
                if (b->rta_type == TCA_STATS_QUEUE && RTA_PAYLOAD(b) >= sizeof(struct gnet_stats_queue)) {
                    struct gnet_stats_queue q;
                    memcpy(&q, RTA_DATA(b), sizeof(q));
                    *backlog = q.backlog;
                } else if (b->rta_type == TCA_STATS_BASIC && RTA_PAYLOAD(b) >= sizeof(struct gnet_stats_basic)) {
                    struct gnet_stats_basic bs;
                    memcpy(&bs, RTA_DATA(b), sizeof(bs));
                    *sent = (long long)bs.bytes;
                }
            }
        } else if (a->rta_type == TCA_STATS && RTA_PAYLOAD(a) >= sizeof(struct tc_stats)) {
            struct tc_stats st;
            memcpy(&st, RTA_DATA(a), sizeof(st));
            old_backlog = st.backlog;
            old_sent = (long long)st.bytes;
        }
    }
    if (*backlog < 0) *backlog = old_backlog;
    if (*sent < 0) *sent = old_sent;
}

/* Queries the root qdisc of `ifname`: its backlog and the bytes it let out. 0 or negative errno. */
static int xlha__qdisc_stats(const char *ifname, long long *backlog, long long *sent, char *err, int errlen)
{
    struct {
        struct nlmsghdr n;
        struct tcmsg t;
    } req;
    char buf[16384];
    struct sockaddr_nl to;
    unsigned int ifindex;
    int found = 0;
    ssize_t got;
    int fd, done = 0;

    fd = xlha__nl_for(ifname, &ifindex, err, errlen);
    if (fd < 0) return fd;
    memset(&req, 0, sizeof(req));
    req.n.nlmsg_len = NLMSG_LENGTH(sizeof(struct tcmsg));
    req.n.nlmsg_type = RTM_GETQDISC;
    req.n.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    req.n.nlmsg_seq = 2;
    req.t.tcm_family = AF_UNSPEC;
    req.t.tcm_ifindex = (int)ifindex;
    memset(&to, 0, sizeof(to));
    to.nl_family = AF_NETLINK;
    if (sendto(fd, &req, req.n.nlmsg_len, 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
        int e = errno;
        close(fd);
        return xlha__neterr(err, errlen, e, "qdisc query on %s: sending to rtnetlink failed: %s", ifname, strerror(e));
    }
    while (!done) {
        struct nlmsghdr *h;
        got = recv(fd, buf, sizeof(buf), 0);
        if (got < 0) {
            int e = errno;
            if (e == EINTR) continue;
            close(fd);
            return xlha__neterr(err, errlen, e, "qdisc query on %s: %s", ifname, strerror(e));
        }
        if (got == 0) break;
        for (h = (struct nlmsghdr *)buf; NLMSG_OK(h, (unsigned int)got); h = NLMSG_NEXT(h, got)) {
            if (h->nlmsg_type == NLMSG_DONE) { done = 1; break; }
            if (h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(h);
                close(fd);
                return xlha__neterr(err, errlen, -e->error, "qdisc query on %s failed: %s", ifname, strerror(-e->error));
            }
            if (h->nlmsg_type == RTM_NEWQDISC) {
                struct tcmsg *t = NLMSG_DATA(h);
                if ((unsigned int)t->tcm_ifindex == ifindex && t->tcm_parent == TC_H_ROOT && !found) {
                    xlha__qdisc_msg_stats(h, backlog, sent);
                    found = *backlog >= 0 && *sent >= 0;
                }
            }
        }
    }
    close(fd);
    if (!found) return xlha__neterr(err, errlen, ENOENT, "%s has no root qdisc with statistics", ifname);
    return 0;
}

long long xlha_qdisc_backlog(const char *ifname, char *err, int errlen)
{
    long long backlog, sent;
    int rc = xlha__qdisc_stats(ifname, &backlog, &sent, err, errlen);
    return rc < 0 ? rc : backlog;
}

long long xlha_qdisc_enqueued(const char *ifname, char *err, int errlen)
{
    long long backlog, sent;
    int rc = xlha__qdisc_stats(ifname, &backlog, &sent, err, errlen);
    return rc < 0 ? rc : backlog + sent;
}
