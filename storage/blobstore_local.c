/*
 * storage/blobstore_local: the local-files backend of the blob store. It
 * moves ciphertext only (storage/blobstore.c encrypts before any byte gets
 * here) and never touches anything outside DATA/tmp and DATA/blobs.
 *
 * DESIGN NOTES
 * 1. Staging: DATA/tmp/<id>.blob, created O_EXCL 0600, with an exclusive
 *    flock held from creation until the put is released or discarded (the
 *    inode keeps the lock across the rename). Sweeps skip locked files.
 * 2. Publish: fsync the file (stage_sync), create blobs/xx/yy (fsyncing each
 *    parent whose entry changed), rename with RENAME_NOREPLACE, fsync
 *    blobs/xx/yy. Only then may a row name the blob.
 * 3. Placement: xx/yy are the first two bytes, in hex, of SHA-256(id): ULIDs
 *    start with a timestamp, so their own prefix would pile up in one folder.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "casevault/blobstore.h"
#include "casevault/util.h"

struct local {
    char blobs[PATH_MAX];
    char tmp[PATH_MAX];
};

struct stage {
    struct local *be;
    int fd;
    uint64_t written, flushed; /* bytes written; bytes handed to writeback */
    int published;
    char id[CV_ULID_LEN + 1];
    char tmp_path[PATH_MAX];
    char dir[PATH_MAX];
    char path[PATH_MAX];
};

struct rd {
    int fd;
};

/* blobs/xx/yy and blobs/xx/yy/<id> for id. */
static cv_status place(const struct local *be, const char *id, char *dir, char *path)
{
    uint8_t h[CV_SHA256_LEN];
    char hex[5];
    cv_sha256(id, strlen(id), h);
    cv_hex_encode(h, 2, hex);
    if (snprintf(dir, PATH_MAX, "%s/%.2s/%.2s", be->blobs, hex, hex + 2) >= PATH_MAX ||
        snprintf(path, PATH_MAX, "%s/%s", dir, id) >= PATH_MAX)
        return CV_E_LIMIT;
    return CV_OK;
}

static cv_status l_stage_open(void *bev, const char *id, void **h)
{
    struct local *be = bev;
    struct stage *s = calloc(1, sizeof *s);
    cv_status rc = CV_E_NOMEM;
    if (s == NULL)
        return rc;
    s->be = be;
    s->fd = -1;
    memcpy(s->id, id, CV_ULID_LEN + 1);
    if (snprintf(s->tmp_path, sizeof s->tmp_path, "%s/%s.blob", be->tmp, id) >=
            (int)sizeof s->tmp_path ||
        (rc = place(be, id, s->dir, s->path)) != CV_OK) {
        rc = CV_E_LIMIT;
        goto out;
    }
    rc = CV_E_IO;
    s->fd = open(s->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (s->fd < 0)
        goto out;
    if (flock(s->fd, LOCK_EX | LOCK_NB) != 0)
        goto out;
    *h = s;
    s = NULL;
    rc = CV_OK;
out:
    if (s != NULL) {
        if (s->fd >= 0) {
            close(s->fd);
            unlink(s->tmp_path);
        }
        free(s);
    }
    return rc;
}

#define WRITEBACK_STEP (8u << 20)

static cv_status l_stage_write(void *h, const void *buf, size_t len)
{
    struct stage *s = h;
    cv_status rc = cv_write_all(s->fd, buf, len);
    if (rc != CV_OK)
        return rc;
    s->written += len;
    /* Start writeback every few MB so the final fsync has little left to do
     * and dirty pages do not pile up (advisory: errors surface at fsync). */
    if (s->written - s->flushed >= WRITEBACK_STEP) {
        sync_file_range(s->fd, (off_t)s->flushed, (off_t)(s->written - s->flushed),
                        SYNC_FILE_RANGE_WRITE);
        s->flushed = s->written;
    }
    return CV_OK;
}

static cv_status l_stage_sync(void *h)
{
    struct stage *s = h;
    return fsync(s->fd) == 0 ? CV_OK : CV_E_IO;
}

/* mkdir path (0700) if missing; fsync parent when it was created. */
static cv_status ensure_dir(const char *path, const char *parent)
{
    if (mkdir(path, 0700) == 0)
        return cv_fsync_dir(parent);
    return errno == EEXIST ? CV_OK : CV_E_IO;
}

static cv_status l_stage_publish(void *h)
{
    struct stage *s = h;
    char mid[PATH_MAX];
    cv_status rc;
    snprintf(mid, sizeof mid, "%s", s->dir);
    *strrchr(mid, '/') = '\0';
    if ((rc = ensure_dir(mid, s->be->blobs)) != CV_OK || (rc = ensure_dir(s->dir, mid)) != CV_OK)
        return rc;
    if (renameat2(AT_FDCWD, s->tmp_path, AT_FDCWD, s->path, RENAME_NOREPLACE) != 0)
        return errno == EEXIST ? CV_E_EXISTS : CV_E_IO;
    s->published = 1;
    return cv_fsync_dir(s->dir);
}

static void l_stage_release(void *h)
{
    struct stage *s = h;
    close(s->fd); /* drops the flock: the blob is no longer in flight */
    free(s);
}

static void l_stage_discard(void *h)
{
    struct stage *s = h;
    unlink(s->published ? s->path : s->tmp_path);
    close(s->fd);
    free(s);
}

static cv_status l_open(void *bev, const char *id, void **h, uint64_t *stored)
{
    struct local *be = bev;
    char dir[PATH_MAX], path[PATH_MAX];
    struct stat sb;
    struct rd *r;
    cv_status rc = place(be, id, dir, path);
    if (rc != CV_OK)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? CV_E_NOT_FOUND : CV_E_IO;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (r = malloc(sizeof *r)) == NULL) {
        close(fd);
        return CV_E_IO;
    }
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    r->fd = fd;
    *h = r;
    *stored = (uint64_t)sb.st_size;
    return CV_OK;
}

static cv_status l_read(void *h, void *buf, size_t cap, size_t *got)
{
    struct rd *r = h;
    for (;;) {
        ssize_t n = read(r->fd, buf, cap);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return CV_E_IO;
        *got = (size_t)n;
        return CV_OK;
    }
}

static void l_close(void *h)
{
    struct rd *r = h;
    close(r->fd);
    free(r);
}

static cv_status l_stat(void *bev, const char *id, uint64_t *stored)
{
    char dir[PATH_MAX], path[PATH_MAX];
    struct stat sb;
    cv_status rc = place(bev, id, dir, path);
    if (rc != CV_OK)
        return rc;
    if (lstat(path, &sb) != 0)
        return errno == ENOENT ? CV_E_NOT_FOUND : CV_E_IO;
    *stored = (uint64_t)sb.st_size;
    return CV_OK;
}

static cv_status l_remove(void *bev, const char *id)
{
    char dir[PATH_MAX], path[PATH_MAX];
    cv_status rc = place(bev, id, dir, path);
    if (rc != CV_OK)
        return rc;
    if (unlink(path) != 0)
        return errno == ENOENT ? CV_E_NOT_FOUND : CV_E_IO;
    return cv_fsync_dir(dir);
}

static int is_hex2(const char *s)
{
    return strlen(s) == 2 && strspn(s, "0123456789abcdef") == 2;
}

/* 1 if a live process holds the file's lock (a put in flight). */
static int locked(int dfd, const char *name)
{
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    int busy = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    return busy;
}

static cv_status l_list(void *bev, int (*fn)(const char *id, int in_flight, void *arg), void *arg)
{
    struct local *be = bev;
    char p1[PATH_MAX], p2[PATH_MAX];
    cv_status rc = CV_E_IO;
    DIR *d0 = opendir(be->blobs), *d1 = NULL, *d2 = NULL;
    struct dirent *e0, *e1, *e2;
    int stop = 0;
    if (d0 == NULL)
        return CV_E_IO;
    while (!stop && (e0 = readdir(d0)) != NULL) {
        if (!is_hex2(e0->d_name))
            continue;
        if (cv_path_join(p1, sizeof p1, be->blobs, e0->d_name) != CV_OK ||
            (d1 = opendir(p1)) == NULL)
            continue;
        while (!stop && (e1 = readdir(d1)) != NULL) {
            if (!is_hex2(e1->d_name))
                continue;
            if (cv_path_join(p2, sizeof p2, p1, e1->d_name) != CV_OK || (d2 = opendir(p2)) == NULL)
                continue;
            while (!stop && (e2 = readdir(d2)) != NULL) {
                if (!cv_ulid_valid(e2->d_name))
                    continue;
                stop = fn(e2->d_name, locked(dirfd(d2), e2->d_name), arg) != 0;
            }
            closedir(d2);
        }
        closedir(d1);
    }
    rc = CV_OK;
    closedir(d0);
    return rc;
}

static void l_free(void *bev)
{
    free(bev);
}

static const struct cv_blobstore_ops local_ops = {
    .name = "local",
    .stage_open = l_stage_open,
    .stage_write = l_stage_write,
    .stage_sync = l_stage_sync,
    .stage_publish = l_stage_publish,
    .stage_discard = l_stage_discard,
    .stage_release = l_stage_release,
    .open = l_open,
    .read = l_read,
    .close = l_close,
    .stat = l_stat,
    .remove = l_remove,
    .list = l_list,
    .free = l_free,
};

cv_status cv_blobstore_open_local(const char *blobs_dir, const char *tmp_dir, struct cv_db *db,
                                  struct cv_keyring *kr, struct cv_blobstore **out)
{
    struct local *be = calloc(1, sizeof *be);
    struct stat sb;
    cv_status rc = CV_E_NOMEM;
    if (be == NULL)
        return rc;
    rc = CV_E_LIMIT;
    if (snprintf(be->blobs, sizeof be->blobs, "%s", blobs_dir) >= (int)sizeof be->blobs ||
        snprintf(be->tmp, sizeof be->tmp, "%s", tmp_dir) >= (int)sizeof be->tmp)
        goto out;
    rc = CV_E_IO;
    if (stat(be->blobs, &sb) != 0 || !S_ISDIR(sb.st_mode) || stat(be->tmp, &sb) != 0 ||
        !S_ISDIR(sb.st_mode))
        goto out;
    if ((rc = cv_blobstore_new(&local_ops, be, db, kr, out)) != CV_OK)
        goto out;
    be = NULL;
    rc = CV_OK;
out:
    free(be);
    return rc;
}
