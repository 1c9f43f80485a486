/*
 * server/cmd_normalize: `casevault normalize --kind KIND [--set intake.KEY=V]... IN OUT`.
 * Runs one file through the same sandboxed worker pool the server uses and
 * prints a one-line JSON summary on stdout: source format, output size,
 * upright source size, orientation applied and milliseconds spent in the
 * pool. A refusal prints {"code":..., "status":...} and exits 1. For
 * operators checking a file and for benches; it never touches a data dir.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "casevault/config.h"
#include "casevault/intake.h"
#include "casevault/util.h"
#include "cli.h"

struct nsets {
    const char *v[32];
    int n;
    int overflow;
};

static void collect(const char *value, void *arg)
{
    struct nsets *s = arg;
    if (s->n < 32)
        s->v[s->n++] = value;
    else
        s->overflow = 1;
}

struct fdsrc {
    int fd;
};

static ssize_t fd_read(void *arg, uint8_t *buf, size_t cap)
{
    struct fdsrc *f = arg;
    for (;;) {
        ssize_t n = read(f->fd, buf, cap);
        if (n < 0 && errno == EINTR)
            continue;
        return n > 0 ? n : -1;
    }
}

static int write_file(const char *path, const uint8_t *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    int bad = cv_write_all(fd, data, len) != CV_OK;
    return close(fd) != 0 || bad ? -1 : 0;
}

int cv_cmd_normalize(int argc, char **argv)
{
    const char *kind = NULL, *pos[2];
    int npos = 0, fd = -1, ret = CV_EXIT_FAIL;
    struct nsets sets = {0};
    struct cv_config cfg;
    struct cv_intake_pool *pool = NULL;
    struct cv_intake_image img = {0};
    char err[300];
    const struct cli_opt opts[] = {
        {"kind", 1, &kind, NULL, NULL, NULL},
        {"set", 1, NULL, NULL, collect, &sets},
        {NULL, 0, NULL, NULL, NULL, NULL},
    };
    int rc = cli_parse("normalize", argc, argv, opts, pos, 2, &npos);
    if (rc != CV_EXIT_OK)
        return rc;
    if (sets.overflow)
        return cli_usage("normalize", "at most 32 --set options");
    if (kind == NULL)
        return cli_usage("normalize", "--kind id_in_hand|business_license is required");
    unsigned box = cv_intake_kind_max_side(kind);
    if (box == 0)
        return cli_usage("normalize", "--kind must be id_in_hand or business_license");
    if (npos != 2)
        return cli_usage("normalize", "IN and OUT are required");
    cv_config_defaults(&cfg);
    for (int i = 0; i < sets.n; i++)
        if (cv_config_set_arg(&cfg, sets.v[i], err, sizeof err) != CV_OK)
            return cli_usage("normalize", err);
    if (cfg.decode_timeout_s == 0 || cfg.decode_memory_mb == 0)
        return cli_usage("normalize",
                         "intake.decode_timeout and intake.decode_memory_mb must be > 0");

    fd = open(pos[0], O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ret = cli_fail("normalize", pos[0], CV_E_IO);
        goto out;
    }
    struct cv_intake_pool_config pc = {
        .workers = cfg.workers,
        .queue_depth = cfg.queue_depth,
        .decode_timeout_s = cfg.decode_timeout_s,
        .decode_memory_mb = cfg.decode_memory_mb,
        .max_input_bytes = (size_t)cfg.max_body_bytes,
    };
    cv_status s = cv_intake_pool_new(&pc, &pool);
    if (s != CV_OK) {
        ret = cli_fail("normalize", "decoder pool", s);
        goto out;
    }
    struct cv_intake_limits lim = {cfg.max_megapixels, cfg.max_side_px, cfg.min_short_side_px, box};
    struct fdsrc src = {fd};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    s = cv_intake_pool_normalize_stream(pool, (size_t)st.st_size, fd_read, &src, &lim, &img);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    struct cv_intake_pool_stats ps;
    cv_intake_pool_stats(pool, &ps);
    if (s != CV_OK) {
        int http;
        const char *code;
        cv_status_http(s, &http, &code);
        printf("{\"code\":\"%s\",\"status\":%d,\"ms\":%.1f,\"worker_peak_kib\":%lu}\n", code, http,
               ms, ps.last_peak_kib);
        fprintf(stderr, "casevault normalize: %s: %s\n", pos[0], cv_status_str(s));
        ret = CV_EXIT_FAIL;
        goto out;
    }
    if (write_file(pos[1], img.data, img.len) != 0) {
        ret = cli_fail("normalize", pos[1], CV_E_IO);
        goto out;
    }
    printf("{\"format\":\"%s\",\"media_type\":\"%s\",\"width\":%u,\"height\":%u,"
           "\"source_width\":%u,\"source_height\":%u,\"orientation\":%d,\"bytes\":%zu,"
           "\"ms\":%.1f,\"worker_peak_kib\":%lu}\n",
           cv_image_format_name(img.source), img.media_type, img.width, img.height, img.src_width,
           img.src_height, img.orientation, img.len, ms, ps.last_peak_kib);
    ret = CV_EXIT_OK;
out:
    cv_intake_image_deinit(&img);
    cv_intake_pool_free(pool);
    if (fd >= 0)
        close(fd);
    return ret;
}
