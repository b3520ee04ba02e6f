/*
 * Tests of libxl-shim that run on any host, Xen or not: error paths without Xen, and the
 * event/reply handshake of a checkpointed save driven from a second thread the way
 * xc_domain_save drives it. (xlha.c is included so its internal functions can be exercised.)
 */
#include "../xlha.c"

#include <assert.h>

static int failures, passes;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("not ok - "); printf(__VA_ARGS__); printf("\n"); } \
                              else { passes++; printf("ok - "); printf(__VA_ARGS__); printf("\n"); } } while (0)

/* ---- a fake save thread: calls the callbacks the way libxenguest does ---------------------- */
struct fake { xlha_save *s; int results[8]; int n; volatile int gate; };
static int seen[16];
static int nseen;
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_event(void *opaque, int ev)
{
    (void)opaque;
    pthread_mutex_lock(&seen_lock);
    seen[nseen++] = ev;
    pthread_mutex_unlock(&seen_lock);
}

static void *save_thread(void *arg)
{
    struct fake *f = arg;
    f->results[f->n++] = xlha__cb_suspend(f->s);
    f->results[f->n++] = xlha__cb_postcopy(f->s);
    f->results[f->n] = xlha__cb_checkpoint(f->s);
    __atomic_store_n(&f->n, f->n + 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&f->gate, __ATOMIC_ACQUIRE)) usleep(1000); /* the test aborts first */
    f->results[f->n++] = xlha__cb_suspend(f->s); /* after abort: answered 0 at once */
    return NULL;
}

static int pending_event(xlha_save *s)
{
    int ev;
    for (int i = 0; i < 2000; i++) {
        pthread_mutex_lock(&s->m);
        ev = s->has_reply ? 0 : s->pending;
        pthread_mutex_unlock(&s->m);
        if (ev) return ev;
        usleep(1000);
    }
    return 0;
}

int main(void)
{
    xlha_ctx *ctx = NULL;
    int rc;

    CHECK(xlha_version() == ((1 << 16) | 0), "version is 1.0");

    rc = xlha_open(&ctx);
    if (access("/dev/xen/privcmd", F_OK) != 0) {
        CHECK(rc == -ENOENT, "xlha_open without Xen fails with -ENOENT (got %d)", rc);
        CHECK(ctx && strstr(xlha_last_error(ctx), "not a Xen dom0"), "the error says this is not a Xen dom0: %s",
              ctx ? xlha_last_error(ctx) : "(null)");
        xlha_dominfo di;
        rc = xlha_domain_list(ctx, &di, 1);
        CHECK(rc == -ENODEV, "calls on an unconnected handle fail with -ENODEV (got %d)", rc);
        CHECK(strstr(xlha_last_error(ctx), "not connected to Xen") != NULL, "and say so: %s", xlha_last_error(ctx));
        CHECK(xlha_domain_config_json(ctx, 0) == NULL, "no configuration without Xen");
        xlha_save *sv = NULL;
        CHECK(xlha_save_new(ctx, 1, 3, XLHA_STREAM_REMUS, on_event, NULL, &sv) == -ENODEV && sv == NULL,
              "no save session without Xen");
    } else {
        printf("# running in a Xen dom0: xlha_open returned %d (%s)\n", rc, rc ? xlha_last_error(ctx) : "ok");
    }
    xlha_close(ctx);
    CHECK(strcmp(xlha_last_error(NULL), "out of memory") == 0, "a NULL handle has a message too");

    int fds[2];
    CHECK(xlha_pipe(fds) == 0 && write(fds[1], "x", 1) == 1, "xlha_pipe gives a working pipe");
    char ch = 0;
    CHECK(read(fds[0], &ch, 1) == 1 && ch == 'x', "what is written comes out the other end");
    CHECK((fcntl(fds[0], F_GETFD) & FD_CLOEXEC) && (fcntl(fds[1], F_GETFD) & FD_CLOEXEC), "both ends are close-on-exec");
    close(fds[0]);
    close(fds[1]);

    /* The handshake: events in order, each answered by the reply, abort answers 0. */
    xlha_save s;
    memset(&s, 0, sizeof(s));
    s.fn = on_event;
    pthread_mutex_init(&s.m, NULL);
    pthread_cond_init(&s.c, NULL);
    CHECK(xlha_save_reply(&s, 1) == -EAGAIN, "a reply with nothing pending is refused (-EAGAIN)");
    struct fake f = { .s = &s };
    pthread_t th;
    pthread_create(&th, NULL, save_thread, &f);
    CHECK(pending_event(&s) == XLHA_EV_SUSPEND, "the save thread waits at SUSPEND");
    CHECK(xlha_save_reply(&s, 1) == 0, "SUSPEND answered");
    CHECK(pending_event(&s) == XLHA_EV_POSTCOPY, "then waits at POSTCOPY");
    CHECK(xlha_save_reply(&s, 1) == 0, "POSTCOPY answered");
    CHECK(pending_event(&s) == XLHA_EV_CHECKPOINT, "then waits at CHECKPOINT");
    CHECK(xlha_save_reply(&s, 1) == 0 && xlha_save_reply(&s, 1) == -EAGAIN, "a second reply to one event is refused");
    for (int i = 0; i < 5000 && __atomic_load_n(&f.n, __ATOMIC_ACQUIRE) < 3; i++) usleep(1000); /* CHECKPOINT returned */
    xlha_save_abort(&s);
    __atomic_store_n(&f.gate, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    CHECK(f.n == 4 && f.results[0] == 1 && f.results[1] == 1 && f.results[2] == 1, "the callbacks returned the replies");
    CHECK(f.results[3] == 0, "after abort a callback returns 0 (ends xc_domain_save)");
    CHECK(nseen >= 3 && seen[0] == XLHA_EV_SUSPEND && seen[1] == XLHA_EV_POSTCOPY && seen[2] == XLHA_EV_CHECKPOINT,
          "the event function saw SUSPEND, POSTCOPY, CHECKPOINT in order");

    printf("%d passed, %d failed\n", passes, failures);
    return failures ? 1 : 0;
}
