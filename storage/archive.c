/*
 * storage/archive: libarchive glue for deterministic output and strict input.
 *
 * DESIGN NOTES
 * 1. archive_write_set_bytes_per_block(a, 0) makes libarchive unbuffered, so
 *    every archive_write_* call reaches the sink at once and memory stays one
 *    entry header plus the caller's piece (STACK-NOTES §4).
 * 2. libarchive returns ARCHIVE_WARN for harmless conditions; it is success
 *    here. A short count from archive_write_data is an error: libarchive
 *    silently drops bytes past the declared size.
 * 3. Names are handed over as UTF-8 (archive_entry_update_pathname_utf8) and
 *    zip runs with hdrcharset=UTF-8, so the EFS flag is set for non-ASCII
 *    names in the local and central headers whatever the locale (case C26).
 * 4. libarchive 3.6.2 converts names through the thread's LC_CTYPE, and its
 *    pax writer crashes (NULL name in an error message) when a UTF-8 name
 *    cannot be converted. casevault's main() sets LC_CTYPE to C.UTF-8 before
 *    any thread starts; the writer refuses to start under any other codeset.
 * 5. Zip DOS times come from localtime(): every entry is given the mtime it
 *    should show in UTC, and callers run with TZ=UTC (the CLI sets it).
 */
#include <langinfo.h>
#include <stdlib.h>
#include <string.h>

#include <archive.h>
#include <archive_entry.h>

#include "casevault/archive.h"

struct cv_archive_writer {
    struct archive *a;
    enum cv_archive_format format;
    cv_archive_sink_fn sink;
    void *arg;
    cv_status sink_rc;
    uint64_t remaining;
    int in_file;
};

static la_ssize_t write_cb(struct archive *a, void *cd, const void *buf, size_t len)
{
    (void)a;
    struct cv_archive_writer *w = cd;
    if (w->sink_rc != CV_OK)
        return -1;
    w->sink_rc = w->sink(w->arg, buf, len);
    return w->sink_rc == CV_OK ? (la_ssize_t)len : -1;
}

static cv_status lerr(struct cv_archive_writer *w)
{
    return w->sink_rc != CV_OK ? w->sink_rc : CV_E_ARCHIVE_FORMAT;
}

cv_status cv_archive_writer_new(enum cv_archive_format format, cv_archive_sink_fn sink, void *arg,
                                struct cv_archive_writer **out)
{
    cv_status rc = CV_E_NOMEM;
    struct cv_archive_writer *w = NULL;
    if (strcmp(nl_langinfo(CODESET), "UTF-8") != 0)
        return CV_E_ARCHIVE_FORMAT; /* DESIGN NOTES 4 */
    w = calloc(1, sizeof *w);
    if (w == NULL)
        goto out;
    w->format = format;
    w->sink = sink;
    w->arg = arg;
    if ((w->a = archive_write_new()) == NULL)
        goto out;
    rc = CV_E_ARCHIVE_FORMAT;
    if (format == CV_ARCHIVE_ZIP) {
        if (archive_write_set_format_zip(w->a) != ARCHIVE_OK ||
            archive_write_set_options(w->a, "zip:hdrcharset=UTF-8") < ARCHIVE_WARN)
            goto out;
    } else if (archive_write_set_format_pax_restricted(w->a) != ARCHIVE_OK) {
        goto out;
    }
    if (archive_write_add_filter_none(w->a) != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(w->a, 0) != ARCHIVE_OK ||
        archive_write_set_bytes_in_last_block(w->a, 1) != ARCHIVE_OK)
        goto out;
    if (archive_write_open2(w->a, w, NULL, write_cb, NULL, NULL) != ARCHIVE_OK) {
        rc = lerr(w);
        goto out;
    }
    *out = w;
    w = NULL;
    rc = CV_OK;
out:
    cv_archive_writer_free(w);
    return rc;
}

static struct archive_entry *make_entry(const char *name, int64_t mtime, int dir, uint64_t size)
{
    struct archive_entry *e = archive_entry_new();
    if (e == NULL)
        return NULL;
    archive_entry_update_pathname_utf8(e, name);
    archive_entry_set_filetype(e, dir ? AE_IFDIR : AE_IFREG);
    archive_entry_set_perm(e, dir ? 0755 : 0644);
    archive_entry_set_mtime(e, (time_t)mtime, 0);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
    archive_entry_set_uname(e, "");
    archive_entry_set_gname(e, "");
    if (!dir)
        archive_entry_set_size(e, (la_int64_t)size);
    return e;
}

cv_status cv_archive_add_dir(struct cv_archive_writer *w, const char *name, int64_t mtime)
{
    if (w->in_file)
        return CV_E_ARG;
    struct archive_entry *e = make_entry(name, mtime, 1, 0);
    if (e == NULL)
        return CV_E_NOMEM;
    int r = archive_write_header(w->a, e);
    archive_entry_free(e);
    return r >= ARCHIVE_WARN ? CV_OK : lerr(w);
}

cv_status cv_archive_begin_file(struct cv_archive_writer *w, const char *name, uint64_t size,
                                int64_t mtime, int compress)
{
    if (w->in_file)
        return CV_E_ARG;
    if (w->format == CV_ARCHIVE_ZIP) {
        int r = compress ? archive_write_zip_set_compression_deflate(w->a)
                         : archive_write_zip_set_compression_store(w->a);
        if (r < ARCHIVE_WARN)
            return CV_E_ARCHIVE_FORMAT;
    }
    struct archive_entry *e = make_entry(name, mtime, 0, size);
    if (e == NULL)
        return CV_E_NOMEM;
    int r = archive_write_header(w->a, e);
    archive_entry_free(e);
    if (r < ARCHIVE_WARN)
        return lerr(w);
    w->in_file = 1;
    w->remaining = size;
    return CV_OK;
}

cv_status cv_archive_write(struct cv_archive_writer *w, const void *data, size_t len)
{
    const char *p = data;
    if (!w->in_file || len > w->remaining)
        return CV_E_ARCHIVE_FORMAT;
    while (len > 0) {
        la_ssize_t n = archive_write_data(w->a, p, len);
        if (n <= 0)
            return lerr(w);
        p += n;
        len -= (size_t)n;
        w->remaining -= (uint64_t)n;
    }
    return CV_OK;
}

cv_status cv_archive_end_file(struct cv_archive_writer *w)
{
    if (!w->in_file || w->remaining != 0)
        return CV_E_ARCHIVE_FORMAT;
    w->in_file = 0;
    return archive_write_finish_entry(w->a) >= ARCHIVE_WARN ? CV_OK : lerr(w);
}

cv_status cv_archive_add_buffer(struct cv_archive_writer *w, const char *name, const void *data,
                                size_t len, int64_t mtime, int compress)
{
    cv_status rc = cv_archive_begin_file(w, name, len, mtime, compress);
    if (rc == CV_OK && len > 0)
        rc = cv_archive_write(w, data, len);
    if (rc == CV_OK)
        rc = cv_archive_end_file(w);
    return rc;
}

cv_status cv_archive_writer_finish(struct cv_archive_writer *w)
{
    if (w->in_file)
        return CV_E_ARCHIVE_FORMAT;
    return archive_write_close(w->a) >= ARCHIVE_WARN ? CV_OK : lerr(w);
}

void cv_archive_writer_free(struct cv_archive_writer *w)
{
    if (w == NULL)
        return;
    if (w->a)
        archive_write_free(w->a);
    free(w);
}

/* ---- reading ---- */

struct cv_archive_reader {
    struct archive *a;
    uint64_t max_entry;
};

int cv_archive_name_safe(const char *name)
{
    if (name == NULL || name[0] == '\0' || name[0] == '/')
        return 0;
    const char *seg = name;
    for (const char *p = name;; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '/' || c == '\0') {
            size_t n = (size_t)(p - seg);
            if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
                return c == '\0' && n == 0 && p > name && p[-1] == '/' ? 1 : 0;
            if (c == '\0')
                return 1;
            seg = p + 1;
            continue;
        }
        if (c < 0x20 || c == 0x7f || c == '\\' || c == ':')
            return 0;
    }
}

cv_status cv_archive_reader_open_fd(int fd, int seekable, uint64_t max_entry,
                                    struct cv_archive_reader **out)
{
    cv_status rc = CV_E_NOMEM;
    struct cv_archive_reader *r = calloc(1, sizeof *r);
    if (r == NULL || (r->a = archive_read_new()) == NULL)
        goto out;
    r->max_entry = max_entry;
    rc = CV_E_ARCHIVE_FORMAT;
    /* Only what we write; never *_all (STACK-NOTES §4). */
    archive_read_support_filter_none(r->a);
    archive_read_support_format_tar(r->a);
    if (seekable)
        archive_read_support_format_zip_seekable(r->a);
    else
        archive_read_support_format_zip_streamable(r->a);
    archive_read_set_options(r->a, "hdrcharset=UTF-8");
    if (archive_read_open_fd(r->a, fd, 65536) != ARCHIVE_OK)
        goto out;
    *out = r;
    r = NULL;
    rc = CV_OK;
out:
    cv_archive_reader_free(r);
    return rc;
}

cv_status cv_archive_next(struct cv_archive_reader *r, const char **name, uint64_t *size)
{
    struct archive_entry *e = NULL;
    for (;;) {
        int st = archive_read_next_header(r->a, &e);
        if (st == ARCHIVE_EOF)
            return CV_E_NOT_FOUND;
        if (st < ARCHIVE_WARN)
            return CV_E_ARCHIVE_FORMAT;
        const char *n = archive_entry_pathname_utf8(e);
        if (n == NULL)
            n = archive_entry_pathname(e);
        *name = n ? n : "";
        if (!cv_archive_name_safe(n) || archive_entry_hardlink(e) != NULL ||
            archive_entry_symlink(e) != NULL)
            return CV_E_UNSAFE_ARCHIVE_ENTRY;
        mode_t t = archive_entry_filetype(e);
        if (t == AE_IFDIR)
            continue;
        if (t != AE_IFREG)
            return CV_E_UNSAFE_ARCHIVE_ENTRY;
        if (archive_entry_size_is_set(e) && (uint64_t)archive_entry_size(e) > r->max_entry)
            return CV_E_UNSAFE_ARCHIVE_ENTRY;
        *size = archive_entry_size_is_set(e) ? (uint64_t)archive_entry_size(e) : 0;
        return CV_OK;
    }
}

cv_status cv_archive_read(struct cv_archive_reader *r, void *buf, size_t cap, size_t *got)
{
    la_ssize_t n = archive_read_data(r->a, buf, cap);
    if (n < 0)
        return CV_E_ARCHIVE_FORMAT;
    *got = (size_t)n;
    return CV_OK;
}

void cv_archive_reader_free(struct cv_archive_reader *r)
{
    if (r == NULL)
        return;
    if (r->a)
        archive_read_free(r->a);
    free(r);
}
