/*
 * storage/archive: deterministic tar and zip streams through libarchive,
 * and a strict reader for archives casevault wrote (exports, backups).
 *
 * Writer: pax-restricted tar (ustar, pax headers only for long or non-ASCII
 * names) or zip (data descriptors, Zip64 when needed, UTF-8 flag for
 * non-ASCII names whatever the process locale); every entry gets the
 * caller's mtime, uid/gid 0 with empty owner names, mode 0644 (files) or
 * 0755 (directories), nothing else (no atime/ctime, xattrs or ACLs), so the
 * same inputs give the same bytes. Output goes to a sink callback as it is
 * produced (libarchive unbuffered): memory is independent of entry sizes.
 *
 * Reader: accepts only regular files and directories with relative names
 * without "..", backslashes, drive letters or NUL, and refuses anything else
 * with CV_E_UNSAFE_ARCHIVE_ENTRY before the entry's data is read.
 */
#ifndef CASEVAULT_ARCHIVE_H
#define CASEVAULT_ARCHIVE_H

#include <stddef.h>
#include <stdint.h>

#include "casevault/status.h"

enum cv_archive_format { CV_ARCHIVE_TAR, CV_ARCHIVE_ZIP };

/* Receives output bytes; a non-CV_OK return aborts the archive. */
typedef cv_status (*cv_archive_sink_fn)(void *arg, const uint8_t *data, size_t len);

struct cv_archive_writer;

/*
 * cv_archive_writer_new - start an archive of `format` writing to sink.
 * The process's LC_CTYPE must be UTF-8 (casevault's main sets C.UTF-8).
 * Out: *out (free with cv_archive_writer_free). Errors: CV_E_NOMEM,
 * CV_E_ARCHIVE_FORMAT (libarchive refused the settings, or LC_CTYPE is
 * not UTF-8).
 */
cv_status cv_archive_writer_new(enum cv_archive_format format, cv_archive_sink_fn sink, void *arg,
                                struct cv_archive_writer **out);

/*
 * cv_archive_add_dir - a directory entry (name without trailing '/').
 * mtime in seconds since the epoch. Errors: CV_E_ARCHIVE_FORMAT, sink errors.
 */
cv_status cv_archive_add_dir(struct cv_archive_writer *w, const char *name, int64_t mtime);

/*
 * cv_archive_begin_file - start a regular file of exactly `size` bytes
 * (UTF-8 name, stored as given; the caller makes it NFC and safe).
 * compress: zip only, 1 = deflate (text), 0 = store (images, already
 * compressed). Follow with cv_archive_write calls totalling `size` bytes,
 * then cv_archive_end_file. Errors: CV_E_ARCHIVE_FORMAT, sink errors.
 */
cv_status cv_archive_begin_file(struct cv_archive_writer *w, const char *name, uint64_t size,
                                int64_t mtime, int compress);

/* cv_archive_write - the next len bytes of the current file. A write past
 * the declared size is CV_E_ARCHIVE_FORMAT (nothing is silently dropped). */
cv_status cv_archive_write(struct cv_archive_writer *w, const void *data, size_t len);

/* cv_archive_end_file - close the current file; CV_E_ARCHIVE_FORMAT if
 * fewer bytes than declared were written. */
cv_status cv_archive_end_file(struct cv_archive_writer *w);

/* cv_archive_add_buffer - begin_file + write + end_file for a small buffer. */
cv_status cv_archive_add_buffer(struct cv_archive_writer *w, const char *name, const void *data,
                                size_t len, int64_t mtime, int compress);

/* cv_archive_writer_finish - write the trailer / central directory. */
cv_status cv_archive_writer_finish(struct cv_archive_writer *w);

/* cv_archive_writer_free - free (after finish, or to abandon). NULL is a no-op. */
void cv_archive_writer_free(struct cv_archive_writer *w);

/* ---- reading ---- */

struct cv_archive_reader;

/*
 * cv_archive_reader_open_fd - read a tar or zip (auto-detected, no
 * compression filters) from fd, which may be a pipe (zip is then read in
 * streaming mode, trusting local headers). The fd stays the caller's.
 * max_entry caps each entry's size in bytes. Errors: CV_E_NOMEM,
 * CV_E_ARCHIVE_FORMAT.
 */
cv_status cv_archive_reader_open_fd(int fd, int seekable, uint64_t max_entry,
                                    struct cv_archive_reader **out);

/*
 * cv_archive_next - advance to the next regular file. Directories are
 * skipped. Out: *name (valid until the next call), *size (bytes).
 * Errors: CV_E_NOT_FOUND at the end, CV_E_UNSAFE_ARCHIVE_ENTRY (link,
 * device, absolute or ".." name, backslash, drive letter, over max_entry;
 * *name is then set for the message), CV_E_ARCHIVE_FORMAT (corrupt).
 */
cv_status cv_archive_next(struct cv_archive_reader *r, const char **name, uint64_t *size);

/*
 * cv_archive_read - up to cap bytes of the current entry's data into buf.
 * Out: *got (0 at the entry's end). Errors: CV_E_ARCHIVE_FORMAT.
 */
cv_status cv_archive_read(struct cv_archive_reader *r, void *buf, size_t cap, size_t *got);

/* cv_archive_reader_free - NULL is a no-op. */
void cv_archive_reader_free(struct cv_archive_reader *r);

/* cv_archive_name_safe - 1 if name is a relative, clean UTF-8 path as the
 * reader accepts it (no "..", ".", empty segment, '\\', ':', control bytes). */
int cv_archive_name_safe(const char *name);

#endif
