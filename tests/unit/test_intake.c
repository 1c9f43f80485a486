/*
 * Unit tests: intake sniffing (magic bytes, header dimensions, JPEG scan
 * count), limits, EXIF IFD0 orientation parsing, orientation math, and the
 * sandboxed pool (crash, hang, busy, bomb) on the quadrant reference picture
 * of ../shared/cases (skipped when absent).
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <pthread.h>

#include "casevault/intake.h"

#ifndef CASES_DIR
#define CASES_DIR "../shared/cases/inputs"
#endif

static const struct cv_intake_limits LIM = {80, 20000, 0, 2048};

static void test_sniff_type(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
        enum cv_image_format f;
    } v[] = {
        {"\xFF\xD8\xFF\xE0", 4, CV_IMG_JPEG},
        {"\x89PNG\r\n\x1a\n", 8, CV_IMG_PNG},
        {"RIFF\x10\0\0\0WEBPVP8 ", 16, CV_IMG_WEBP},
        {"GIF89a", 6, CV_IMG_GIF},
        {"GIF87a", 6, CV_IMG_GIF},
        {"II*\0\x08\0\0\0", 8, CV_IMG_TIFF},
        {"MM\0*\0\0\0\x08", 8, CV_IMG_TIFF},
        {"BM\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 18, CV_IMG_BMP},
        {"\0\0\0\x18"
         "ftypheic\0\0\0\0mif1heic",
         24, CV_IMG_HEIF},
        {"\0\0\0\x18"
         "ftypmif1\0\0\0\0mif1heic",
         24, CV_IMG_HEIF},
        {"\0\0\0\x18"
         "ftypavif\0\0\0\0mif1miaf",
         24, CV_IMG_AVIF},
        {"\0\0\0\x14"
         "ftypmif1\0\0\0\0avif",
         20, CV_IMG_AVIF},
        {"\0\0\0\x14"
         "ftypmp42\0\0\0\0isom",
         20, CV_IMG_UNKNOWN}, /* MP4 video */
        {"%PDF-1.7\n", 9, CV_IMG_UNKNOWN},
        {"\x89PNG\r\n", 6, CV_IMG_UNKNOWN}, /* cut signature */
        {"\xFF\xD8", 2, CV_IMG_UNKNOWN},
        {"", 0, CV_IMG_UNKNOWN},
        {"gd2\0", 4, CV_IMG_UNKNOWN}, /* GD2 is never an upload format */
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        assert_int_equal(cv_intake_sniff_type((const uint8_t *)v[i].bytes, v[i].len), v[i].f);
    assert_int_equal(cv_intake_sniff_type(NULL, 10), CV_IMG_UNKNOWN);
    assert_string_equal(cv_image_format_name(CV_IMG_AVIF), "avif");
    assert_string_equal(cv_image_format_name(CV_IMG_UNKNOWN), "unknown");
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8),
    p[3] = (uint8_t)v;
}

static void test_sniff_png_and_limits(void **state)
{
    (void)state;
    uint8_t png[33] = "\x89PNG\r\n\x1a\n";
    put_be32(png + 8, 13);
    memcpy(png + 12, "IHDR", 4);
    put_be32(png + 16, 46000);
    put_be32(png + 20, 46000);
    struct cv_intake_sniffed s;
    assert_int_equal(cv_intake_sniff(png, sizeof png, &s), CV_OK);
    assert_int_equal(s.format, CV_IMG_PNG);
    assert_int_equal(s.width, 46000);
    assert_int_equal(s.height, 46000);
    assert_int_equal(cv_intake_check_size(s.width, s.height, &LIM), CV_E_IMAGE_TOO_LARGE);
    /* sides: 20000 is allowed, 20001 is not */
    assert_int_equal(cv_intake_check_size(20000, 100, &LIM), CV_OK);
    assert_int_equal(cv_intake_check_size(20001, 100, &LIM), CV_E_IMAGE_TOO_LARGE);
    /* pixels: exactly 80 MP passes, one row more does not */
    assert_int_equal(cv_intake_check_size(10000, 8000, &LIM), CV_OK);
    assert_int_equal(cv_intake_check_size(10000, 8001, &LIM), CV_E_IMAGE_TOO_LARGE);
    struct cv_intake_limits small = LIM;
    small.min_short_side_px = 480;
    assert_int_equal(cv_intake_check_size(640, 479, &small), CV_E_IMAGE_TOO_SMALL);
    assert_int_equal(cv_intake_check_size(479, 640, &small), CV_E_IMAGE_TOO_SMALL);
    assert_int_equal(cv_intake_check_size(480, 640, &small), CV_OK);
    assert_int_equal(cv_intake_check_size(0, 640, &small), CV_E_IMAGE_UNDECODABLE);
    /* IHDR missing or cut */
    memcpy(png + 12, "IDAT", 4);
    assert_int_equal(cv_intake_sniff(png, sizeof png, &s), CV_E_IMAGE_UNDECODABLE);
    assert_int_equal(cv_intake_sniff(png, 20, &s), CV_E_IMAGE_UNDECODABLE);
    assert_int_equal(cv_intake_sniff((const uint8_t *)"%PDF-1.4", 8, &s),
                     CV_E_UNSUPPORTED_MEDIA_TYPE);
}

static void test_sniff_jpeg_scans(void **state)
{
    (void)state;
    /* SOI, SOF2 1000x700, three scans with stuffed FF00 and RST0 in the data, EOI,
     * then an MPO-style second image whose scans must not count */
    static const uint8_t j[] = {
        0xFF, 0xD8, 0xFF, 0xC2, 0x00, 0x0B, 0x08, 0x02, 0xBC, 0x03, 0xE8, 0x01, 0x01, 0x11,
        0x00, 0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00, 0x12, 0xFF, 0x00,
        0x34, 0xFF, 0xD0, 0x56, 0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00,
        0x78, 0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00, 0x9A, 0xFF, 0xD9,
        0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00, 0xFF, 0xD9,
    };
    struct cv_intake_sniffed s;
    assert_int_equal(cv_intake_sniff(j, sizeof j, &s), CV_OK);
    assert_int_equal(s.format, CV_IMG_JPEG);
    assert_int_equal(s.width, 1000);
    assert_int_equal(s.height, 700);
    assert_int_equal(s.jpeg_scans, 3);
    /* no frame header at all */
    static const uint8_t nosof[] = {0xFF, 0xD8, 0xFF, 0xFE, 0x00, 0x04, 'h', 'i', 0xFF, 0xD9};
    assert_int_equal(cv_intake_sniff(nosof, sizeof nosof, &s), CV_E_IMAGE_UNDECODABLE);
    /* a segment length running past the end before the frame header */
    static const uint8_t cut[] = {0xFF, 0xD8, 0xFF, 0xE1, 0x40, 0x00, 'E', 'x'};
    assert_int_equal(cv_intake_sniff(cut, sizeof cut, &s), CV_E_IMAGE_UNDECODABLE);
}

static void test_sniff_webp_gif_bmp(void **state)
{
    (void)state;
    struct cv_intake_sniffed s;
    uint8_t w[30] = "RIFF\0\0\0\0WEBPVP8X";
    w[20] = 0x02; /* animation flag */
    w[24] = 99;   /* canvas 100 x 50 */
    w[27] = 49;
    assert_int_equal(cv_intake_sniff(w, sizeof w, &s), CV_E_UNSUPPORTED_MEDIA_TYPE);
    w[20] = 0x08; /* EXIF flag only */
    assert_int_equal(cv_intake_sniff(w, sizeof w, &s), CV_OK);
    assert_int_equal(s.width, 100);
    assert_int_equal(s.height, 50);
    /* GIF: 32x32 screen, no global table, one extension, then a 9000x9622 frame */
    static const uint8_t g[] = {'G', 'I', 'F',  '8',  '9',  'a',  32,   0,    32, 0, 0,
                                0,   0,   0x21, 0xF9, 4,    0,    0,    0,    0,  0, 0x2C,
                                0,   0,   0,    0,    0x28, 0x23, 0x96, 0x25, 0};
    assert_int_equal(cv_intake_sniff(g, sizeof g, &s), CV_OK);
    assert_int_equal(s.width, 9000);
    assert_int_equal(s.height, 9622);
    assert_int_equal(cv_intake_check_size(s.width, s.height, &LIM), CV_E_IMAGE_TOO_LARGE);
    /* BMP: top-down (negative height) 127 x 64 */
    uint8_t b[54] = {'B', 'M'};
    b[14] = 40;
    b[18] = 127;
    int32_t h = -64;
    memcpy(b + 22, &h, 4);
    assert_int_equal(cv_intake_sniff(b, sizeof b, &s), CV_OK);
    assert_int_equal(s.width, 127);
    assert_int_equal(s.height, 64);
}

static void w16(uint8_t *t, int le, size_t off, unsigned v)
{
    if (le) {
        t[off] = (uint8_t)v;
        t[off + 1] = (uint8_t)(v >> 8);
    } else {
        t[off] = (uint8_t)(v >> 8);
        t[off + 1] = (uint8_t)v;
    }
}

static void w32(uint8_t *t, int le, size_t off, uint32_t v)
{
    w16(t, le, off + (le ? 0 : 2), v & 0xFFFF);
    w16(t, le, off + (le ? 2 : 0), v >> 16);
}

/* A TIFF blob with IFD0 {Orientation o0} (none if 0) and IFD1 {Orientation o1}. */
static size_t make_exif(uint8_t *b, int le, unsigned o0, unsigned o1, int prefix)
{
    size_t p = 0;
    if (prefix) {
        memcpy(b, "Exif\0\0", 6);
        p = 6;
    }
    uint8_t *t = b + p;
    memset(t, 0, 64);
    memcpy(t, le ? "II*\0" : "MM\0*", 4);
    w32(t, le, 4, 8);
    unsigned n0 = o0 ? 1 : 0;
    w16(t, le, 8, n0);
    if (o0) {
        w16(t, le, 10, 0x0112);
        w16(t, le, 12, 3);
        w32(t, le, 14, 1);
        w16(t, le, 18, o0);
    }
    w32(t, le, 10 + 12 * n0, o1 ? 30 : 0);
    if (o1) {
        w16(t, le, 30, 1);
        w16(t, le, 32, 0x0112);
        w16(t, le, 34, 3);
        w32(t, le, 36, 1);
        w16(t, le, 40, o1);
        w32(t, le, 44, 0);
    }
    return p + 48;
}

static void test_exif_orientation(void **state)
{
    (void)state;
    uint8_t b[128];
    for (int le = 0; le < 2; le++)
        for (unsigned o = 1; o <= 8; o++) {
            size_t n = make_exif(b, le, o, 0, le);
            assert_int_equal(cv_intake_exif_orientation(b, n), (int)o);
        }
    /* IFD1 (thumbnail) orientation is never used */
    size_t n = make_exif(b, 1, 0, 6, 0);
    assert_int_equal(cv_intake_exif_orientation(b, n), 0);
    n = make_exif(b, 0, 3, 6, 1);
    assert_int_equal(cv_intake_exif_orientation(b, n), 3);
    /* out of range values mean "none" */
    n = make_exif(b, 1, 9, 0, 0);
    assert_int_equal(cv_intake_exif_orientation(b, n), 0);
    n = make_exif(b, 1, 0xFFFF, 0, 0);
    assert_int_equal(cv_intake_exif_orientation(b, n), 0);
    /* cut in the middle of the entry, bogus IFD offset, garbage */
    n = make_exif(b, 1, 6, 0, 0);
    assert_int_equal(cv_intake_exif_orientation(b, 16), 0);
    b[4] = 0xF0;
    assert_int_equal(cv_intake_exif_orientation(b, n), 0);
    assert_int_equal(cv_intake_exif_orientation((const uint8_t *)"<x:xmpmeta>", 11), 0);
    assert_int_equal(cv_intake_exif_orientation(NULL, 0), 0);
    /* the same blob inside a JPEG APP1, and XMP-only JPEG (ignored) */
    uint8_t j[200] = {0xFF, 0xD8, 0xFF, 0xE1};
    size_t e = make_exif(j + 6, 1, 8, 0, 1);
    j[4] = (uint8_t)((e + 2) >> 8);
    j[5] = (uint8_t)(e + 2);
    j[6 + e] = 0xFF;
    j[7 + e] = 0xD9;
    assert_int_equal(cv_intake_orientation_of(CV_IMG_JPEG, j, 8 + e), 8);
    static const uint8_t xmp[] = {0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x20, 'h',  't', 't', 'p',
                                  ':',  '/',  '/',  'n',  's',  '.',  'a',  'd', 'o', 'b',
                                  'e',  '.',  'c',  'o',  'm',  '/',  'x',  'a', 'p', '/',
                                  '1',  '.',  '0',  '/',  0,    '6',  0xFF, 0xD9};
    assert_int_equal(cv_intake_orientation_of(CV_IMG_JPEG, xmp, sizeof xmp), 0);
}

static void test_orient_math(void **state)
{
    (void)state;
    /* Stored 3x2 raster, pixel id = y*3+x:  0 1 2 / 3 4 5. Expected upright rasters
     * (row-major) per EXIF 2.32 Orientation. */
    static const unsigned want[9][6] = {
        {0},
        {0, 1, 2, 3, 4, 5}, /* 1 */
        {2, 1, 0, 5, 4, 3}, /* 2 mirror */
        {5, 4, 3, 2, 1, 0}, /* 3 rotate 180 */
        {3, 4, 5, 0, 1, 2}, /* 4 flip */
        {0, 3, 1, 4, 2, 5}, /* 5 transpose (2x3) */
        {3, 0, 4, 1, 5, 2}, /* 6 rotate 90 CW */
        {5, 2, 4, 1, 3, 0}, /* 7 transverse */
        {2, 5, 1, 4, 0, 3}, /* 8 rotate 90 CCW */
    };
    for (int o = 1; o <= 8; o++) {
        unsigned dw = o >= 5 ? 2 : 3, dh = o >= 5 ? 3 : 2;
        for (unsigned y = 0; y < dh; y++)
            for (unsigned x = 0; x < dw; x++) {
                unsigned sx, sy;
                cv_intake_orient_src(o, 3, 2, x, y, &sx, &sy);
                assert_true(sx < 3 && sy < 2);
                assert_int_equal(sy * 3 + sx, want[o][y * dw + x]);
            }
    }
    /* case C06: orientation 6 on the quadrant picture: TL of the result is the stored BL */
    unsigned sx, sy;
    cv_intake_orient_src(6, 320, 240, 0, 0, &sx, &sy);
    assert_int_equal(sx, 0);
    assert_int_equal(sy, 239);
    /* out-of-range orientation is identity */
    cv_intake_orient_src(0, 320, 240, 5, 7, &sx, &sy);
    assert_int_equal(sx, 5);
    assert_int_equal(sy, 7);
    assert_int_equal(cv_intake_kind_max_side("id_in_hand"), 2048);
    assert_int_equal(cv_intake_kind_max_side("business_license"), 3000);
    assert_int_equal(cv_intake_kind_max_side("selfie"), 0);
    assert_int_equal(cv_intake_kind_max_side(NULL), 0);
}

/* ---- pool ---- */

static uint8_t *slurp(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", CASES_DIR, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n);
    if (b == NULL || fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static struct cv_intake_pool *mkpool(unsigned workers, unsigned queue, unsigned timeout)
{
    struct cv_intake_pool_config c = {workers, queue, timeout, 1024, 32u << 20};
    struct cv_intake_pool *p = NULL;
    assert_int_equal(cv_intake_pool_new(&c, &p), CV_OK);
    return p;
}

static void expect_quadrant(struct cv_intake_pool *p, const uint8_t *jpg, size_t len)
{
    struct cv_intake_image img;
    assert_int_equal(cv_intake_pool_normalize(p, jpg, len, &LIM, &img), CV_OK);
    assert_int_equal(img.width, 320);
    assert_int_equal(img.height, 240);
    assert_int_equal(img.source, CV_IMG_JPEG);
    assert_string_equal(img.media_type, "image/jpeg");
    assert_true(img.len > 100 && img.data[0] == 0xFF && img.data[1] == 0xD8);
    cv_intake_image_deinit(&img);
}

static void test_pool_crash_replaced(void **state)
{
    (void)state;
    size_t len;
    uint8_t *jpg = slurp("REF-quadrant-320x240.jpg", &len);
    if (jpg == NULL)
        skip();
    struct cv_intake_pool *p = mkpool(2, 4, 5);
    expect_quadrant(p, jpg, len);
    /* kill every idle worker: the next jobs get fresh ones and succeed */
    pid_t pids[8];
    size_t n = cv_intake_pool_worker_pids(p, pids, 8);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(kill(pids[i], SIGKILL), 0);
    usleep(50000);
    for (int i = 0; i < 3; i++)
        expect_quadrant(p, jpg, len);
    cv_intake_pool_free(p);
    free(jpg);
}

struct job {
    struct cv_intake_pool *p;
    const uint8_t *b;
    size_t len;
    cv_status rc;
    double secs;
};

static void *run_job(void *arg)
{
    struct job *j = arg;
    struct cv_intake_image img = {0};
    double t0 = now_s();
    j->rc = cv_intake_pool_normalize(j->p, j->b, j->len, &LIM, &img);
    j->secs = now_s() - t0;
    cv_intake_image_deinit(&img);
    return NULL;
}

/* The status line "Key:\tvalue" of /proc/PID/status, or "" if absent. */
static void proc_status(pid_t pid, const char *key, char *val, size_t cap)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    val[0] = 0;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            size_t n = strcspn(line + kl + 1, "\n");
            if (n >= cap)
                n = cap - 1;
            memcpy(val, line + kl + 1, n);
            val[n] = 0;
            break;
        }
    fclose(f);
}

static void test_pool_worker_sandboxed(void **state)
{
    (void)state;
    struct cv_intake_pool *p = mkpool(1, 0, 7);
    pid_t pid;
    assert_int_equal(cv_intake_pool_worker_pids(p, &pid, 1), 1);
    char v[128] = "";
    /* the worker installs its filter right after fork: wait up to 2 s */
    for (int i = 0; i < 200; i++) {
        proc_status(pid, "Seccomp", v, sizeof v);
        if (strchr(v, '2'))
            break;
        usleep(10000);
    }
    assert_non_null(strchr(v, '2')); /* SECCOMP_MODE_FILTER */
    proc_status(pid, "NoNewPrivs", v, sizeof v);
    assert_non_null(strchr(v, '1'));
    /* RLIMIT_CPU is decode_timeout (7 s) soft, +1 hard */
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/limits", (int)pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int seen = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long soft, hard;
        if (strncmp(line, "Max cpu time", 12) == 0 &&
            sscanf(line + 12, "%lu %lu", &soft, &hard) == 2) {
            assert_int_equal(soft, 7);
            assert_int_equal(hard, 8);
            seen |= 1;
        }
        if (strncmp(line, "Max open files", 14) == 0 &&
            sscanf(line + 14, "%lu %lu", &soft, &hard) == 2) {
            assert_int_equal(soft, 4);
            seen |= 2;
        }
        if (strncmp(line, "Max address space", 17) == 0) {
            assert_null(strstr(line, "unlimited"));
            seen |= 4;
        }
    }
    fclose(f);
    assert_int_equal(seen, 7);
    cv_intake_pool_free(p);
    /* the pool's processes are gone once it is freed */
    assert_true(kill(pid, 0) != 0); /* gone, not even a zombie */
}

static void test_pool_hang_and_busy(void **state)
{
    (void)state;
    size_t len;
    uint8_t *jpg = slurp("REF-quadrant-320x240.jpg", &len);
    if (jpg == NULL)
        skip();
    struct cv_intake_pool *p = mkpool(1, 0, 1);
    /* a hung worker (stopped): its job hits the 1 s deadline -> undecodable */
    pid_t pid;
    assert_int_equal(cv_intake_pool_worker_pids(p, &pid, 1), 1);
    assert_int_equal(kill(pid, SIGSTOP), 0);
    struct job j = {p, jpg, len, CV_OK, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, run_job, &j), 0);
    usleep(300000);
    /* meanwhile the only worker is taken and the queue is 0 -> busy at once */
    struct cv_intake_image img = {0};
    double t0 = now_s();
    assert_int_equal(cv_intake_pool_normalize(p, jpg, len, &LIM, &img), CV_E_BUSY);
    assert_true(now_s() - t0 < 0.5);
    pthread_join(th, NULL);
    assert_int_equal(j.rc, CV_E_IMAGE_UNDECODABLE);
    assert_true(j.secs >= 0.9 && j.secs < 3.0);
    /* the hung worker was replaced */
    expect_quadrant(p, jpg, len);
    cv_intake_pool_free(p);
    free(jpg);
}

static void test_pool_hang_spares_others(void **state)
{
    (void)state;
    size_t len;
    uint8_t *jpg = slurp("REF-quadrant-320x240.jpg", &len);
    if (jpg == NULL)
        skip();
    struct cv_intake_pool *p = mkpool(2, 4, 2);
    pid_t pids[2];
    assert_int_equal(cv_intake_pool_worker_pids(p, pids, 2), 2);
    assert_int_equal(kill(pids[0], SIGSTOP), 0); /* slot 0 takes the first job */
    struct job hung = {p, jpg, len, CV_OK, 0}, ok = {p, jpg, len, CV_E_INTERNAL, 0};
    pthread_t t1, t2;
    assert_int_equal(pthread_create(&t1, NULL, run_job, &hung), 0);
    usleep(200000);
    assert_int_equal(pthread_create(&t2, NULL, run_job, &ok), 0);
    pthread_join(t2, NULL);
    /* the healthy worker answered while the other one still hangs */
    assert_int_equal(ok.rc, CV_OK);
    assert_true(ok.secs < 1.5);
    pthread_join(t1, NULL);
    assert_int_equal(hung.rc, CV_E_IMAGE_UNDECODABLE);
    for (int i = 0; i < 3; i++)
        expect_quadrant(p, jpg, len);
    cv_intake_pool_free(p);
    free(jpg);
}

static void test_pool_memory_limit(void **state)
{
    (void)state;
    size_t big_len, len;
    uint8_t *big = slurp("../../corpus/large/canon-dslr.jpg", &big_len);
    uint8_t *jpg = slurp("REF-quadrant-320x240.jpg", &len);
    if (big == NULL || jpg == NULL) {
        free(big);
        free(jpg);
        skip();
    }
    /* 8 MiB of headroom cannot hold the 2592x1728 raster (13 MiB) */
    struct cv_intake_pool_config c = {1, 1, 20, 8, 32u << 20};
    struct cv_intake_pool *p = NULL;
    assert_int_equal(cv_intake_pool_new(&c, &p), CV_OK);
    struct cv_intake_image img = {0};
    assert_int_equal(cv_intake_pool_normalize(p, big, big_len, &LIM, &img), CV_E_IMAGE_UNDECODABLE);
    expect_quadrant(p, jpg, len); /* the next job gets a fresh worker */
    cv_intake_pool_free(p);
    free(big);
    free(jpg);
}

static void test_scan_bomb_refused(void **state)
{
    (void)state;
    /* SOF2 64x64 followed by 101 empty progressive scans: refused before decoding */
    static const uint8_t head[] = {0xFF, 0xD8, 0xFF, 0xC2, 0x00, 0x0B, 0x08, 0x00,
                                   0x40, 0x00, 0x40, 0x01, 0x01, 0x11, 0x00};
    static const uint8_t sos[] = {0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00};
    uint8_t buf[sizeof head + 101 * sizeof sos + 2];
    memcpy(buf, head, sizeof head);
    for (int i = 0; i < 101; i++)
        memcpy(buf + sizeof head + (size_t)i * sizeof sos, sos, sizeof sos);
    buf[sizeof buf - 2] = 0xFF;
    buf[sizeof buf - 1] = 0xD9;
    struct cv_intake_sniffed s;
    assert_int_equal(cv_intake_sniff(buf, sizeof buf, &s), CV_OK);
    assert_int_equal(s.jpeg_scans, 101);
    struct cv_intake_image img = {0};
    assert_int_equal(cv_intake_normalize(buf, sizeof buf, &LIM, &img), CV_E_IMAGE_UNDECODABLE);
}

static void test_pool_bomb_fast(void **state)
{
    (void)state;
    size_t len;
    uint8_t *png = slurp("C12b-png-20000x20000-zeros.png", &len);
    if (png == NULL)
        skip();
    struct cv_intake_pool *p = mkpool(1, 1, 10);
    struct cv_intake_image img = {0};
    double t0 = now_s();
    assert_int_equal(cv_intake_pool_normalize(p, png, len, &LIM, &img), CV_E_IMAGE_TOO_LARGE);
    assert_true(now_s() - t0 < 2.0);
    /* bad arguments and sizes */
    assert_int_equal(cv_intake_pool_normalize(p, png, 0, &LIM, &img), CV_E_UNSUPPORTED_MEDIA_TYPE);
    assert_int_equal(cv_intake_pool_normalize(p, png, 33u << 20, &LIM, &img),
                     CV_E_PAYLOAD_TOO_LARGE);
    assert_int_equal(cv_intake_pool_normalize(NULL, png, len, &LIM, &img), CV_E_ARG);
    assert_int_equal(cv_intake_pool_normalize(p, (const uint8_t *)"%PDF-1.4 hello", 14, &LIM, &img),
                     CV_E_UNSUPPORTED_MEDIA_TYPE);
    cv_intake_pool_free(p);
    cv_intake_pool_free(NULL);
    free(png);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sniff_type),
        cmocka_unit_test(test_sniff_png_and_limits),
        cmocka_unit_test(test_sniff_jpeg_scans),
        cmocka_unit_test(test_sniff_webp_gif_bmp),
        cmocka_unit_test(test_exif_orientation),
        cmocka_unit_test(test_orient_math),
        cmocka_unit_test(test_pool_crash_replaced),
        cmocka_unit_test(test_pool_hang_and_busy),
        cmocka_unit_test(test_pool_bomb_fast),
        cmocka_unit_test(test_pool_worker_sandboxed),
        cmocka_unit_test(test_pool_hang_spares_others),
        cmocka_unit_test(test_pool_memory_limit),
        cmocka_unit_test(test_scan_bomb_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
