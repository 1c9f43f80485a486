/*
 * intake/sandbox: the pool of sandboxed decoder processes. Untrusted image
 * bytes are decoded only here, never in the server process. A worker that
 * crashes, hangs or blows its memory costs one request
 * (CV_E_IMAGE_UNDECODABLE), never the server or another request.
 *
 * DESIGN NOTES
 * 1. Process tree: cv_intake_pool_new() forks one helper ("zygote") from
 *    the caller while the caller holds no keys (serve must create the pool
 *    before loading the keyring; the CLI never loads keys). The zygote
 *    closes every other descriptor, initialises libheif and then only
 *    forks workers on request. Replacing a worker later therefore never
 *    copies the server's memory (keys, tokens, plaintext of other uploads)
 *    into a process that parses attacker bytes. We chose a zygote over
 *    fork+exec of our own binary so the pool works from any executable
 *    (unit tests, benches) and spawns in well under a millisecond.
 * 2. Workers are one-shot: a worker serves exactly one job, then it is
 *    killed and a fresh one is pre-forked. So no image, heap state or
 *    half-corrupted decoder survives into the next applicant's job, and
 *    RLIMIT_CPU (decode_timeout + 1 s) is a per-job limit.
 * 3. A worker runs with RLIMIT_AS = its mapped size at fork + decode_memory_mb
 *    (so the limit means "headroom", which also works under ASan's huge
 *    shadow mappings), RLIMIT_CPU, RLIMIT_FSIZE 0, RLIMIT_NOFILE 4,
 *    PR_SET_NO_NEW_PRIVS and a seccomp filter (libseccomp) allowing only
 *    memory management, read/write/close on descriptors it already has,
 *    threads (clone with CLONE_THREAD: dav1d/libde265 decode in threads),
 *    futex, clocks, signals to itself and exit. Everything else (open,
 *    socket, connect, execve, fork, ptrace, ...) fails with EPERM.
 * 4. The parent enforces a wall-clock deadline (decode_timeout) over the
 *    whole exchange with poll(); past it, the worker is SIGKILLed.
 * 5. Memory: the original is streamed to the worker in 64 KiB pieces; the
 *    worker holds the only full copy. The normalized image (a few hundred
 *    KiB) is returned in one malloc'd buffer.
 * 6. If the zygote itself dies, it is not restarted (a new one would be a
 *    fork of a process that holds keys by then): every later job fails with
 *    CV_E_IO and the server should report itself unready.
 * 7. Wire format on a private AF_UNIX stream socketpair: struct wire_req +
 *    len bytes, answered by struct wire_resp + len bytes. The parent
 *    accepts only intake statuses and a bounded length from a worker.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libheif/heif.h>
#include <seccomp.h>

#include "casevault/intake.h"
#include "casevault/util.h"

#define WIRE_MAGIC_REQ  0x31697663u /* "cvi1" */
#define WIRE_MAGIC_RESP 0x31727663u /* "cvr1" */
#define CHUNK           (64u * 1024u)
#define MAX_OUTPUT      (64u * 1024u * 1024u)

struct wire_req {
    uint32_t magic;
    uint32_t max_megapixels, max_side, min_short, max_out;
    uint32_t pad;
    uint64_t len;
};

struct wire_resp {
    uint32_t magic;
    int32_t status;
    uint32_t format, width, height, src_width, src_height;
    int32_t orientation;
    uint32_t peak_kib; /* worker's peak RSS (getrusage ru_maxrss) */
    uint64_t len;
};

struct slot {
    int fd; /* parent end of the worker's socket, -1 if none */
    pid_t pid;
    int busy;
};

struct cv_intake_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_mutex_t ctl_mu; /* serialises requests to the zygote */
    int ctl;
    pid_t zygote;
    struct cv_intake_pool_config cfg;
    unsigned n;
    struct slot *slots;
    unsigned waiting;
    struct cv_intake_pool_stats stats; /* under mu */
};

/* ---- small I/O helpers (blocking, EINTR-safe) ---- */

/* Exactly len bytes or -1 (error or end of data). */
static int read_exact(int fd, void *buf, size_t len)
{
    size_t got = 0;
    return cv_read_full(fd, buf, len, &got) == CV_OK && got == len ? 0 : -1;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for ev on fd until deadline (ms, CLOCK_MONOTONIC). 0 ready, -1 timeout/error/hangup. */
static int wait_fd(int fd, short ev, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0)
            return -1;
        struct pollfd p = {.fd = fd, .events = ev};
        int r = poll(&p, 1, left > 1000000 ? 1000000 : (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        if (p.revents & ev)
            return 0;
        return -1; /* POLLHUP/POLLERR without the event */
    }
}

static int send_deadline(int fd, const void *buf, size_t len, long long deadline)
{
    const uint8_t *p = buf;
    while (len > 0) {
        if (wait_fd(fd, POLLOUT, deadline) != 0)
            return -1;
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int recv_deadline(int fd, void *buf, size_t len, long long deadline)
{
    uint8_t *p = buf;
    while (len > 0) {
        if (wait_fd(fd, POLLIN, deadline) != 0)
            return -1;
        ssize_t n = recv(fd, p, len, MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ---- worker ---- */

static int install_seccomp(void)
{
    int rc = -1;
    scmp_filter_ctx f = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    if (f == NULL)
        return -1;
    static const int allow[] = {
        SCMP_SYS(read),
        SCMP_SYS(write),
        SCMP_SYS(readv),
        SCMP_SYS(writev),
        SCMP_SYS(close),
        SCMP_SYS(fstat),
        SCMP_SYS(newfstatat),
        SCMP_SYS(lseek),
        SCMP_SYS(mmap),
        SCMP_SYS(munmap),
        SCMP_SYS(mremap),
        SCMP_SYS(mprotect),
        SCMP_SYS(brk),
        SCMP_SYS(madvise),
        SCMP_SYS(futex),
        SCMP_SYS(exit),
        SCMP_SYS(exit_group),
        SCMP_SYS(rt_sigreturn),
        SCMP_SYS(rt_sigprocmask),
        SCMP_SYS(rt_sigaction),
        SCMP_SYS(sigaltstack),
        SCMP_SYS(getpid),
        SCMP_SYS(gettid),
        SCMP_SYS(clock_gettime),
        SCMP_SYS(clock_nanosleep),
        SCMP_SYS(nanosleep),
        SCMP_SYS(gettimeofday),
        SCMP_SYS(sched_yield),
        SCMP_SYS(sched_getaffinity),
        SCMP_SYS(set_robust_list),
        SCMP_SYS(rseq),
        SCMP_SYS(getrandom),
        SCMP_SYS(getrusage),
        SCMP_SYS(set_tid_address),
        SCMP_SYS(membarrier),
    };
    for (size_t i = 0; i < sizeof allow / sizeof allow[0]; i++)
        if (seccomp_rule_add(f, SCMP_ACT_ALLOW, allow[i], 0) != 0)
            goto out;
    /* threads only, never a new process */
    if (seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                         SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD)) != 0)
        goto out;
    /* clone3's flags live in memory the filter cannot inspect: glibc falls back to clone */
    if (seccomp_rule_add(f, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) != 0)
        goto out;
    /* abort() signals itself; any other kill target is refused */
    if (seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
                         SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid())) != 0)
        goto out;
    /* prlimit64(0, res, NULL, old): reading limits only (glibc's getrlimit) */
    if (seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 2, SCMP_A0(SCMP_CMP_EQ, 0),
                         SCMP_A2(SCMP_CMP_EQ, 0)) != 0)
        goto out;
    if (seccomp_load(f) != 0)
        goto out;
    rc = 0;
out:
    seccomp_release(f);
    return rc;
}

static unsigned long long vm_size_bytes(void)
{
    unsigned long long pages = 0;
    FILE *f = fopen("/proc/self/statm", "re");
    if (f) {
        if (fscanf(f, "%llu", &pages) != 1)
            pages = 0;
        fclose(f);
    }
    return pages * (unsigned long long)sysconf(_SC_PAGESIZE);
}

static void worker_limits(const struct cv_intake_pool_config *cfg)
{
    struct rlimit r;
    unsigned long long as =
        vm_size_bytes() + (unsigned long long)cfg->decode_memory_mb * 1048576ull;
    r.rlim_cur = r.rlim_max = (rlim_t)as;
    setrlimit(RLIMIT_AS, &r);
    r.rlim_cur = cfg->decode_timeout_s;
    r.rlim_max = cfg->decode_timeout_s + 1;
    setrlimit(RLIMIT_CPU, &r);
    r.rlim_cur = r.rlim_max = 0;
    setrlimit(RLIMIT_FSIZE, &r);
    setrlimit(RLIMIT_CORE, &r);
    r.rlim_cur = r.rlim_max = 4;
    setrlimit(RLIMIT_NOFILE, &r);
}

static void worker_reply(int fd, cv_status st, const struct cv_intake_image *img)
{
    struct wire_resp h = {.magic = WIRE_MAGIC_RESP, .status = (int32_t)st};
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0 && ru.ru_maxrss > 0)
        h.peak_kib = (uint32_t)ru.ru_maxrss;
    if (st == CV_OK) {
        h.format = (uint32_t)img->source;
        h.width = img->width;
        h.height = img->height;
        h.src_width = img->src_width;
        h.src_height = img->src_height;
        h.orientation = img->orientation;
        h.len = img->len;
    }
    if (cv_write_all(fd, &h, sizeof h) == CV_OK && st == CV_OK)
        (void)cv_write_all(fd, img->data, img->len);
}

/* Runs in the forked worker; never returns. fd is already descriptor 3. */
static void worker_main(const struct cv_intake_pool_config *cfg)
{
    const int fd = 3;
    struct wire_req rq;
    struct cv_intake_image img = {0};
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    worker_limits(cfg);
    if (install_seccomp() != 0)
        _exit(3);
    if (read_exact(fd, &rq, sizeof rq) != 0 || rq.magic != WIRE_MAGIC_REQ ||
        rq.len > cfg->max_input_bytes)
        _exit(4);
    uint8_t *buf = malloc(rq.len ? rq.len : 1);
    if (buf == NULL || read_exact(fd, buf, rq.len) != 0)
        _exit(5);
    struct cv_intake_limits lim = {rq.max_megapixels, rq.max_side, rq.min_short, rq.max_out};
    cv_status st = cv_intake_normalize(buf, rq.len, &lim, &img);
    free(buf);
    worker_reply(fd, st, &img);
    _exit(0);
}

/* ---- zygote ---- */

static int send_fd(int sock, int fd, pid_t pid)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = &pid, .iov_len = sizeof pid};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    memset(cbuf, 0, sizeof cbuf);
    if (fd >= 0) {
        m.msg_control = cbuf;
        m.msg_controllen = sizeof cbuf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    return sendmsg(sock, &m, MSG_NOSIGNAL) == (ssize_t)sizeof pid ? 0 : -1;
}

static int recv_fd(int sock, pid_t *pid)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = {.iov_base = pid, .iov_len = sizeof *pid};
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    ssize_t n;
    do
        n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof *pid)
        return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (c == NULL || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int)))
        return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

static void zygote_main(int ctl, pid_t parent, const struct cv_intake_pool_config *cfg)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(0);
    signal(SIGCHLD, SIG_IGN); /* workers are reaped by the kernel */
    signal(SIGPIPE, SIG_IGN);
    /* descriptors: 0-2 -> /dev/null, ctl -> 3, nothing else */
    int nul = open("/dev/null", O_RDWR);
    if (nul < 0 || dup2(ctl, 4) < 0)
        _exit(2);
    for (int i = 0; i < 3; i++)
        dup2(nul, i);
    if (dup2(4, 3) < 0)
        _exit(2);
    close_range(4, ~0u, 0);
    ctl = 3;
    heif_init(NULL);
    for (;;) {
        char c;
        ssize_t n = read(ctl, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* pool freed: wait for the workers it killed so none is left a zombie
             * (SIGCHLD is ignored, so wait() returns ECHILD once all are gone) */
            while (wait(NULL) > 0 || errno == EINTR)
                ;
            _exit(0);
        }
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
            (void)send_fd(ctl, -1, -1);
            continue;
        }
        pid_t pid = fork();
        if (pid == 0) {
            signal(SIGCHLD, SIG_DFL);
            if (dup3(sv[1], 3, 0) < 0)
                _exit(2);
            close_range(4, ~0u, 0);
            worker_main(cfg);
        }
        close(sv[1]);
        (void)send_fd(ctl, pid > 0 ? sv[0] : -1, pid);
        close(sv[0]);
    }
}

/* ---- pool ---- */

static void spawn(struct cv_intake_pool *p, struct slot *s)
{
    pid_t pid = -1;
    int fd = -1;
    pthread_mutex_lock(&p->ctl_mu);
    if (cv_write_all(p->ctl, "S", 1) == CV_OK)
        fd = recv_fd(p->ctl, &pid);
    pthread_mutex_unlock(&p->ctl_mu);
    s->fd = fd;
    s->pid = fd >= 0 ? pid : -1;
}

static void retire(struct slot *s)
{
    if (s->pid > 0)
        kill(s->pid, SIGKILL);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    s->pid = -1;
}

/* An idle worker's socket shows POLLIN/POLLHUP only if the worker died. */
static int slot_alive(const struct slot *s)
{
    if (s->fd < 0)
        return 0;
    struct pollfd pf = {.fd = s->fd, .events = POLLIN};
    return poll(&pf, 1, 0) == 0;
}

cv_status cv_intake_pool_new(const struct cv_intake_pool_config *cfg, struct cv_intake_pool **out)
{
    cv_status rc = CV_E_NOMEM;
    struct cv_intake_pool *p = NULL;
    int sv[2] = {-1, -1};
    if (cfg == NULL || out == NULL || cfg->decode_timeout_s == 0 || cfg->decode_memory_mb == 0)
        return CV_E_ARG;
    p = calloc(1, sizeof *p);
    if (p == NULL)
        goto out;
    p->cfg = *cfg;
    p->n = cfg->workers;
    if (p->n == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        p->n = c > 0 ? (unsigned)c : 1;
    }
    if (p->n > 256)
        p->n = 256;
    p->slots = calloc(p->n, sizeof *p->slots);
    if (p->slots == NULL)
        goto out;
    for (unsigned i = 0; i < p->n; i++)
        p->slots[i].fd = p->slots[i].pid = -1;
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->ctl_mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    rc = CV_E_IO;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        goto out;
    pid_t parent = getpid();
    p->zygote = fork();
    if (p->zygote < 0)
        goto out;
    if (p->zygote == 0) {
        close(sv[0]);
        zygote_main(sv[1], parent, &p->cfg);
        _exit(0);
    }
    close(sv[1]);
    sv[1] = -1;
    p->ctl = sv[0];
    sv[0] = -1;
    /* a wedged zygote must not block callers forever: spawn() then fails */
    struct timeval tv = {.tv_sec = 5};
    setsockopt(p->ctl, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(p->ctl, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    for (unsigned i = 0; i < p->n; i++) {
        spawn(p, &p->slots[i]);
        if (p->slots[i].fd < 0)
            goto out;
    }
    *out = p;
    p = NULL;
    rc = CV_OK;
out:
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    cv_intake_pool_free(p);
    return rc;
}

void cv_intake_pool_free(struct cv_intake_pool *p)
{
    if (p == NULL)
        return;
    if (p->slots) {
        for (unsigned i = 0; i < p->n; i++)
            retire(&p->slots[i]);
        free(p->slots);
    }
    if (p->zygote > 0) {
        if (p->ctl > 0)
            close(p->ctl); /* EOF: the zygote reaps its workers and exits */
        int exited = 0;
        for (int i = 0; i < 200 && !exited; i++) {
            exited = waitpid(p->zygote, NULL, WNOHANG) == p->zygote;
            if (!exited)
                usleep(10000);
        }
        if (!exited) {
            kill(p->zygote, SIGKILL);
            waitpid(p->zygote, NULL, 0);
        }
        pthread_mutex_destroy(&p->mu);
        pthread_mutex_destroy(&p->ctl_mu);
        pthread_cond_destroy(&p->cv);
    }
    free(p);
}

void cv_intake_pool_stats(struct cv_intake_pool *p, struct cv_intake_pool_stats *out)
{
    pthread_mutex_lock(&p->mu);
    *out = p->stats;
    pthread_mutex_unlock(&p->mu);
}

size_t cv_intake_pool_worker_pids(struct cv_intake_pool *p, pid_t *pids, size_t cap)
{
    size_t k = 0;
    pthread_mutex_lock(&p->mu);
    for (unsigned i = 0; i < p->n && k < cap; i++)
        if (!p->slots[i].busy && p->slots[i].pid > 0)
            pids[k++] = p->slots[i].pid;
    pthread_mutex_unlock(&p->mu);
    return k;
}

static int intake_status(int32_t st)
{
    return st == CV_OK || st == CV_E_UNSUPPORTED_MEDIA_TYPE || st == CV_E_IMAGE_TOO_LARGE ||
           st == CV_E_IMAGE_TOO_SMALL || st == CV_E_IMAGE_UNDECODABLE ||
           st == CV_E_IMAGE_TRUNCATED || st == CV_E_NOMEM;
}

/* One exchange with a fresh worker; any protocol failure is UNDECODABLE. */
static cv_status run_job(struct cv_intake_pool *p, struct slot *s, size_t len, cv_intake_read_fn rd,
                         void *arg, const struct cv_intake_limits *lim, struct cv_intake_image *out,
                         int *lost, unsigned long *peak_kib)
{
    cv_status rc = CV_E_IMAGE_UNDECODABLE;
    uint8_t *chunk = NULL, *data = NULL;
    long long deadline = now_ms() + (long long)p->cfg.decode_timeout_s * 1000;
    struct wire_req rq = {.magic = WIRE_MAGIC_REQ,
                          .max_megapixels = lim->max_megapixels,
                          .max_side = lim->max_side_px,
                          .min_short = lim->min_short_side_px,
                          .max_out = lim->max_out_side_px,
                          .len = len};
    struct wire_resp rs;
    if (send_deadline(s->fd, &rq, sizeof rq, deadline) != 0) {
        *lost = now_ms() >= deadline ? 2 : 1;
        goto out;
    }
    chunk = malloc(CHUNK);
    if (chunk == NULL) {
        rc = CV_E_NOMEM;
        goto out;
    }
    for (size_t done = 0; done < len;) {
        size_t want = len - done < CHUNK ? len - done : CHUNK;
        ssize_t n = rd(arg, chunk, want);
        if (n <= 0 || (size_t)n > want) {
            rc = CV_E_IO;
            goto out;
        }
        if (send_deadline(s->fd, chunk, (size_t)n, deadline) != 0) {
            *lost = now_ms() >= deadline ? 2 : 1;
            goto out;
        }
        done += (size_t)n;
    }
    if (recv_deadline(s->fd, &rs, sizeof rs, deadline) != 0 || rs.magic != WIRE_MAGIC_RESP ||
        !intake_status(rs.status)) {
        *lost = now_ms() >= deadline ? 2 : 1;
        goto out;
    }
    *peak_kib = rs.peak_kib;
    if (rs.status != CV_OK) {
        rc = rs.status == CV_E_NOMEM ? CV_E_IMAGE_UNDECODABLE : (cv_status)rs.status;
        goto out;
    }
    if (rs.len == 0 || rs.len > MAX_OUTPUT || rs.format == CV_IMG_UNKNOWN || rs.format > CV_IMG_GIF)
        goto out;
    data = malloc(rs.len);
    if (data == NULL) {
        rc = CV_E_NOMEM;
        goto out;
    }
    if (recv_deadline(s->fd, data, rs.len, deadline) != 0) {
        *lost = now_ms() >= deadline ? 2 : 1;
        goto out;
    }
    memset(out, 0, sizeof *out);
    out->data = data;
    out->len = rs.len;
    out->media_type = "image/jpeg";
    out->width = rs.width;
    out->height = rs.height;
    out->src_width = rs.src_width;
    out->src_height = rs.src_height;
    out->source = (enum cv_image_format)rs.format;
    out->orientation = rs.orientation;
    data = NULL;
    rc = CV_OK;
out:
    free(chunk);
    free(data);
    return rc;
}

cv_status cv_intake_pool_normalize_stream(struct cv_intake_pool *p, size_t len,
                                          cv_intake_read_fn rd, void *arg,
                                          const struct cv_intake_limits *lim,
                                          struct cv_intake_image *out)
{
    struct slot *s = NULL;
    if (p == NULL || rd == NULL || lim == NULL || out == NULL)
        return CV_E_ARG;
    if (len > p->cfg.max_input_bytes)
        return CV_E_PAYLOAD_TOO_LARGE;
    if (len == 0)
        return CV_E_UNSUPPORTED_MEDIA_TYPE;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        for (unsigned i = 0; i < p->n && s == NULL; i++)
            if (!p->slots[i].busy)
                s = &p->slots[i];
        if (s != NULL)
            break;
        if (p->waiting >= p->cfg.queue_depth) {
            p->stats.busy++;
            pthread_mutex_unlock(&p->mu);
            return CV_E_BUSY;
        }
        p->waiting++;
        pthread_cond_wait(&p->cv, &p->mu);
        p->waiting--;
    }
    s->busy = 1;
    pthread_mutex_unlock(&p->mu);

    if (!slot_alive(s)) { /* died while idle (killed, OOM killer): replace before use */
        retire(s);
        spawn(p, s);
    }
    int lost = 0; /* 1: worker died or broke the protocol, 2: deadline */
    unsigned long peak = 0;
    cv_status rc = s->fd >= 0 ? run_job(p, s, len, rd, arg, lim, out, &lost, &peak) : CV_E_IO;
    retire(s); /* one job per worker */
    spawn(p, s);

    pthread_mutex_lock(&p->mu);
    p->stats.jobs++;
    p->stats.ok += rc == CV_OK;
    p->stats.crashed += lost == 1;
    p->stats.timed_out += lost == 2;
    p->stats.last_peak_kib = peak;
    if (peak > p->stats.max_peak_kib)
        p->stats.max_peak_kib = peak;
    s->busy = 0;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return rc;
}

struct membuf {
    const uint8_t *p;
    size_t left;
};

static ssize_t mem_read(void *arg, uint8_t *buf, size_t cap)
{
    struct membuf *m = arg;
    size_t n = m->left < cap ? m->left : cap;
    if (n == 0)
        return -1;
    memcpy(buf, m->p, n);
    m->p += n;
    m->left -= n;
    return (ssize_t)n;
}

cv_status cv_intake_pool_normalize(struct cv_intake_pool *p, const uint8_t *buf, size_t len,
                                   const struct cv_intake_limits *lim, struct cv_intake_image *out)
{
    struct membuf m = {buf, len};
    return cv_intake_pool_normalize_stream(p, len, mem_read, &m, lim, out);
}
