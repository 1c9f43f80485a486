/*
 * intake: type sniffing (sniff.c), normalization (normalize.c) and the
 * sandboxed decoder pool (sandbox.c) for uploaded document photos.
 *
 * The type of an upload is what its bytes say (JPEG, PNG, WebP, HEIC/HEIF,
 * AVIF, TIFF, BMP, GIF), never its filename or Content-Type. Dimensions come
 * from the headers and are checked against the limits before any pixel
 * buffer exists. The normalized image is an sRGB baseline JPEG, quality 85,
 * upright (orientation applied exactly once, DESIGN §8), longest side at
 * most the kind's maximum, never enlarged, with no EXIF, XMP, ICC or comment
 * segment. Transparent sources are composited onto white (we always answer
 * JPEG, so a reviewer never sees a "black on black" document, cases C09 and
 * C10).
 *
 * Untrusted pixels are only ever decoded inside a pool worker process
 * (cv_intake_pool_*). cv_intake_normalize() is the in-process decoder that
 * the worker runs; the server must not call it directly.
 */
#ifndef CASEVAULT_INTAKE_H
#define CASEVAULT_INTAKE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "casevault/status.h"

enum cv_image_format {
    CV_IMG_UNKNOWN = 0,
    CV_IMG_JPEG,
    CV_IMG_PNG,
    CV_IMG_WEBP,
    CV_IMG_HEIF,
    CV_IMG_AVIF,
    CV_IMG_TIFF,
    CV_IMG_BMP,
    CV_IMG_GIF,
};

/* cv_image_format_name - "jpeg", "png", "webp", "heif", "avif", "tiff", "bmp", "gif" or "unknown"
 * (static). */
const char *cv_image_format_name(enum cv_image_format f);

/*
 * Limits of one normalization. Pixel counts are in pixels, sides in pixels.
 * max_megapixels and max_side_px bound the *source* (checked from the
 * header, config intake.max_megapixels / intake.max_side); min_short_side_px
 * refuses a source whose shorter side is smaller (intake.min_short_side,
 * 0 = no minimum); max_out_side_px is the longest side of the output (the
 * document kind's maximum: cv_intake_kind_max_side).
 */
struct cv_intake_limits {
    unsigned max_megapixels;
    unsigned max_side_px;
    unsigned min_short_side_px;
    unsigned max_out_side_px;
};

/*
 * cv_intake_kind_max_side - longest output side for a document kind:
 * "id_in_hand" 2048, "business_license" 3000 (DESIGN §8); 0 for any other
 * string (the caller answers CV_E_INVALID_FIELD).
 */
unsigned cv_intake_kind_max_side(const char *kind);

/* What the headers say, before any decode. */
struct cv_intake_sniffed {
    enum cv_image_format format;
    unsigned width;      /* stored raster width in pixels (0 if not read yet: HEIF/AVIF) */
    unsigned height;     /* stored raster height in pixels */
    unsigned jpeg_scans; /* JPEG: number of SOS markers of the first image */
    int animated;        /* WebP: animation flag of VP8X */
};

/*
 * cv_intake_sniff_type - the format from magic bytes only.
 * In: buf[len] (the first bytes of an upload; 64 are enough). Out: the
 * format, CV_IMG_UNKNOWN when the bytes are none of the accepted types.
 * Pure function, thread-safe, reads no more than len bytes.
 */
enum cv_image_format cv_intake_sniff_type(const uint8_t *buf, size_t len);

/*
 * cv_intake_sniff - format plus stored dimensions from the headers (JPEG
 * SOFn, PNG IHDR, WebP VP8/VP8L/VP8X, TIFF IFD0, BMP info header, GIF first
 * image descriptor). HEIF/AVIF dimensions need libheif and are read by
 * cv_intake_normalize inside the worker (width = height = 0 here).
 * Errors: CV_E_UNSUPPORTED_MEDIA_TYPE (unknown type, animated WebP),
 * CV_E_IMAGE_UNDECODABLE (recognised type whose header is cut or invalid).
 * Output written only on success. Thread-safe, no allocation.
 */
cv_status cv_intake_sniff(const uint8_t *buf, size_t len, struct cv_intake_sniffed *out);

/*
 * cv_intake_check_size - apply the limits to header dimensions w x h
 * (pixels). Errors: CV_E_IMAGE_TOO_LARGE (w*h > max_megapixels*1e6 or a side
 * > max_side_px, or w or h == 0), CV_E_IMAGE_TOO_SMALL (min(w,h) <
 * min_short_side_px).
 */
cv_status cv_intake_check_size(unsigned w, unsigned h, const struct cv_intake_limits *lim);

/* Most JPEG scans accepted (progressive scan-count CPU bombs, libjpeg-turbo#252). */
#define CV_INTAKE_MAX_JPEG_SCANS 100

/*
 * cv_intake_exif_orientation - EXIF Orientation (tag 0x0112) from IFD0 only
 * (never IFD1, never XMP) of a TIFF-structured blob (starting "II*\0" or
 * "MM\0*"; an "Exif\0\0" prefix is skipped). Returns 1..8, or 0 when the
 * blob has no valid Orientation entry. Bounds-checked, no allocation.
 */
int cv_intake_exif_orientation(const uint8_t *tiff, size_t len);

/*
 * cv_intake_orientation_of - the EXIF orientation stored in an image file
 * of the given format: JPEG APP1 "Exif", PNG eXIf chunk, WebP EXIF chunk,
 * TIFF IFD0 of the file itself. 0 if none (treat as 1). HEIF is handled
 * through libheif in normalize.c.
 */
int cv_intake_orientation_of(enum cv_image_format f, const uint8_t *buf, size_t len);

/*
 * cv_intake_orient_src - orientation math (EXIF 2.32 §4.6.4, TIFF 6.0
 * Orientation). For a stored raster of sw x sh pixels and orientation o
 * (1..8; anything else is 1), the upright image is dw x dh (swapped for
 * 5..8) and its pixel (dx, dy) comes from stored pixel (*sx, *sy).
 */
void cv_intake_orient_src(int o, unsigned sw, unsigned sh, unsigned dx, unsigned dy, unsigned *sx,
                          unsigned *sy);

/* A normalized image. data is malloc'd; free with cv_intake_image_deinit. */
struct cv_intake_image {
    uint8_t *data;
    size_t len;
    const char *media_type; /* "image/jpeg" (static) */
    unsigned width, height; /* output pixels */
    unsigned src_width;     /* upright source size, before downscaling */
    unsigned src_height;
    enum cv_image_format source; /* sniffed source format */
    int orientation;             /* EXIF orientation applied (1..8), or 0 when libheif
                                    applied the HEIF container's irot/imir/clap */
};

/* cv_intake_image_deinit - free data and zero the struct; NULL-safe. */
void cv_intake_image_deinit(struct cv_intake_image *img);

/*
 * cv_intake_normalize - decode, orient, downscale and re-encode one image
 * IN THIS PROCESS. Only the sandbox worker calls this (and unit tests on
 * trusted inputs): decoders run on attacker bytes.
 * In: buf[len] original bytes (borrowed), limits. Out: *out on success
 * (caller owns out->data). Errors: CV_E_UNSUPPORTED_MEDIA_TYPE,
 * CV_E_IMAGE_TOO_LARGE, CV_E_IMAGE_TOO_SMALL, CV_E_IMAGE_TRUNCATED (JPEG
 * premature end, libjpeg JWRN_JPEG_EOF), CV_E_IMAGE_UNDECODABLE, CV_E_NOMEM.
 * Not thread-safe (libgd's error handler is process-global).
 */
cv_status cv_intake_normalize(const uint8_t *buf, size_t len, const struct cv_intake_limits *lim,
                              struct cv_intake_image *out);

/* ---- sandboxed decoder pool (sandbox.c) ---- */

struct cv_intake_pool;

struct cv_intake_pool_config {
    unsigned workers;          /* worker processes; 0 = online CPU cores */
    unsigned queue_depth;      /* callers allowed to wait for a worker; more -> CV_E_BUSY */
    unsigned decode_timeout_s; /* wall-clock deadline of one job, also RLIMIT_CPU */
    unsigned decode_memory_mb; /* RLIMIT_AS headroom of a worker in MiB */
    size_t
        max_input_bytes; /* largest original accepted (intake jobs above: CV_E_PAYLOAD_TOO_LARGE) */
};

/*
 * cv_intake_pool_new - start the decoder pool: one clean helper process
 * (fork of the caller, which must not hold keys yet: call this before the
 * keyring is loaded) that pre-forks cfg->workers one-shot workers. Each
 * worker runs under RLIMIT_AS, RLIMIT_CPU and a seccomp filter that allows
 * no open, socket, exec or fork. Out: *out (free with cv_intake_pool_free).
 * Errors: CV_E_IO (fork/socketpair), CV_E_NOMEM, CV_E_ARG.
 * Call before starting threads that fork-unsafe state could break.
 */
cv_status cv_intake_pool_new(const struct cv_intake_pool_config *cfg, struct cv_intake_pool **out);

/* cv_intake_pool_free - kill the workers and the helper, free the pool; NULL-safe. */
void cv_intake_pool_free(struct cv_intake_pool *pool);

/*
 * Source of an original: called until it has produced len bytes in total;
 * returns bytes written into buf (<= cap, > 0) or -1 on error.
 */
typedef ssize_t (*cv_intake_read_fn)(void *arg, uint8_t *buf, size_t cap);

/*
 * cv_intake_pool_normalize_stream - run one original through a worker.
 * In: len bytes delivered by read(arg) in pieces of at most 64 KiB (so the
 * caller never needs the whole file in memory: the worker holds the one
 * copy), lim. Out: *out on success (caller owns out->data).
 * Errors: those of cv_intake_normalize; CV_E_IMAGE_UNDECODABLE also when the
 * worker crashed, hung past decode_timeout_s or broke the protocol (the
 * worker is replaced); CV_E_BUSY when queue_depth callers already wait;
 * CV_E_PAYLOAD_TOO_LARGE (len > max_input_bytes); CV_E_IO when read failed.
 * Thread-safe: call from any number of threads.
 */
cv_status cv_intake_pool_normalize_stream(struct cv_intake_pool *pool, size_t len,
                                          cv_intake_read_fn read, void *arg,
                                          const struct cv_intake_limits *lim,
                                          struct cv_intake_image *out);

/* cv_intake_pool_normalize - the same with the original in memory (borrowed). */
cv_status cv_intake_pool_normalize(struct cv_intake_pool *pool, const uint8_t *buf, size_t len,
                                   const struct cv_intake_limits *lim, struct cv_intake_image *out);

/* Counters since cv_intake_pool_new (for metrics and benches). */
struct cv_intake_pool_stats {
    unsigned long long jobs;      /* jobs handed to a worker */
    unsigned long long ok;        /* of which normalized */
    unsigned long long crashed;   /* worker died or broke the protocol */
    unsigned long long timed_out; /* worker killed at decode_timeout */
    unsigned long long busy;      /* refused with CV_E_BUSY (never reached a worker) */
    unsigned long last_peak_kib;  /* peak RSS of the last job's worker, KiB (0 if it died) */
    unsigned long max_peak_kib;   /* largest peak RSS of any worker so far, KiB */
};

/* cv_intake_pool_stats - copy the counters into *out. Thread-safe. */
void cv_intake_pool_stats(struct cv_intake_pool *pool, struct cv_intake_pool_stats *out);

/*
 * cv_intake_pool_worker_pids - test and metrics hook: up to cap pids of
 * idle workers. Returns the count written.
 */
size_t cv_intake_pool_worker_pids(struct cv_intake_pool *pool, pid_t *pids, size_t cap);

#endif
