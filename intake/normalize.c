/*
 * intake/normalize: decode one untrusted image, make it upright, shrink it
 * to the document kind's box and re-encode it as a metadata-free sRGB JPEG
 * q85. Runs only inside a sandboxed worker (sandbox.c): it must never be
 * called on attacker bytes in the server process.
 *
 * Decoders: JPEG through libjpeg-turbo directly (we need its DCT-domain
 * scaling, which gd never uses, and its warning codes: libgd only prints
 * the first libjpeg warning as text, so it cannot tell a truncated file
 * (JWRN_JPEG_EOF, case C02) from a harmless one (C01)); CMYK/YCCK JPEGs are
 * converted with exactly libgd's formula (Adobe APP14 = inverted inks, case
 * C04). PNG, WebP, GIF (first frame) and BMP through libgd; TIFF (first page)
 * through libtiff's RGBA reader (gd's TIFF paths handle Orientation 5-8
 * inconsistently); HEIC and AVIF through libheif. Everything ends up in one 8-bit RGB
 * raster; alpha is composited onto white on the way in.
 *
 * DESIGN NOTES
 * 1. Dimensions are checked from the headers (sniff.c, libheif handle)
 *    before any decoder allocates pixels.
 * 2. Orientation is applied exactly once: EXIF IFD0 Orientation for JPEG,
 *    PNG, WebP, TIFF (XMP ignored); HEIF/AVIF: libheif applies irot/imir/
 *    clap, except when the file carries an EXIF Orientation tag: then the
 *    raster is decoded untransformed and EXIF is applied (DESIGN §8: EXIF
 *    wins over a disagreeing irot; when they agree the result is the same).
 * 3. Resampling is our own separable filter (Lanczos-3 widened by the
 *    scale factor, fixed point), because libgd's bilinear/bicubic scalers
 *    alias on large reductions (5-12 dB PSNR below vips, STACK-NOTES §6).
 *    Reduction runs in the stored orientation (fewer pixels to rotate);
 *    the longest-side box is the same for both orientations.
 * 4. The encoder is libjpeg-turbo with JFIF APP0 only: no COM (gd always
 *    writes one), no EXIF/XMP/ICC. The output is always JPEG (DESIGN §8
 *    allows PNG for transparent sources; we flatten onto white instead, so
 *    every document has one media type and cases C09/C10 read as black on
 *    white).
 * 5. Embedded ICC profiles are ignored, as libgd does: pixels are taken as
 *    sRGB. Display-P3 and Adobe RGB photos come out slightly duller; a
 *    conversion needs lcms2 (liblcms2-dev is not installed here).
 * 6. Source formats: the CMYK/YCCK formula is libgd's; 16-bit PNG/TIFF are
 *    reduced to 8 bits by the decoders; animated GIF gives its first frame,
 *    animated WebP is refused (CV_E_UNSUPPORTED_MEDIA_TYPE).
 */
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <gd.h>
#include <jpeglib.h>
#include <jerror.h>
#include <libheif/heif.h>
#include <tiffio.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "casevault/intake.h"

#define OUT_QUALITY 85

struct rgb {
    uint8_t *px; /* w*h*3, row-major */
    unsigned w, h;
    /* The picture's true extent in pixels when it is less than w x h: a
     * DCT-scaled JPEG side of 1203 px at 1/2 decodes to 602 pixels holding
     * 601.5 pixels' worth of picture. 0: exactly w (h). */
    double ew, eh;
};

static void rgb_free(struct rgb *r)
{
    free(r->px);
    r->px = NULL;
}

#define HUGE_PAGE (2u << 20)

/*
 * Large rasters are fresh memory in a one-shot worker: every 4 KiB page
 * faults once (a third of the time on a 12 MP JPEG was page faults). Ask for
 * transparent huge pages (the kernel here runs THP in "madvise" mode):
 * measured on IMG_20180725_163423.jpg, 97k -> 3k page faults and 20% less
 * CPU. free() releases the block as usual.
 */
static void *big_alloc(size_t n)
{
    if (n < 4 * HUGE_PAGE)
        return malloc(n);
    size_t rounded = (n + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    void *p = aligned_alloc(HUGE_PAGE, rounded);
    if (p != NULL)
        (void)madvise(p, rounded, MADV_HUGEPAGE);
    return p;
}

static cv_status rgb_alloc(struct rgb *r, unsigned w, unsigned h)
{
    r->w = w;
    r->h = h;
    r->ew = r->eh = 0.0;
    r->px = big_alloc((size_t)w * h * 3);
    return r->px ? CV_OK : CV_E_NOMEM;
}

void cv_intake_image_deinit(struct cv_intake_image *img)
{
    if (img == NULL)
        return;
    free(img->data);
    memset(img, 0, sizeof *img);
}

/* ---- resampling ---- */

/* Fixed-point weights: 14 bits, so that each fits an int16 and the AVX2
 * kernel can multiply-add two taps per instruction (pmaddwd); the sum of
 * |w| * 255 stays far below 2^31. */
#define PREC 14

struct taps {
    int *start; /* first source index per output index */
    int *cnt;   /* taps used per output index (<= n, never past the edge) */
    int n;      /* tap stride per output index */
    int32_t *w; /* n weights per output index */
};

static double sinc(double x)
{
    if (x == 0.0)
        return 1.0;
    x *= 3.14159265358979323846;
    return sin(x) / x;
}

static double lanczos3(double x)
{
    if (x <= -3.0 || x >= 3.0)
        return 0.0;
    return sinc(x) * sinc(x / 3.0);
}

/* Free and clear (a second call, or one on a failed taps_make, is a no-op). */
static void taps_free(struct taps *t)
{
    free(t->start);
    free(t->cnt);
    free(t->w);
    t->start = t->cnt = NULL;
    t->w = NULL;
}

/*
 * Lanczos-3 taps for in -> out pixels (out <= in), kernel widened by the
 * scale (area-aware). extent: how many of the in pixels the picture really
 * spans (in, or a little less for a DCT-scaled JPEG, see struct rgb); the
 * output pixels are spread over that extent, taps stay inside [0, in).
 */
static cv_status taps_make(unsigned in, double extent, unsigned out, struct taps *t)
{
    double scale = (extent > 0.0 ? extent : (double)in) / out;
    double fs = scale > 1.0 ? scale : 1.0;
    double support = 3.0 * fs;
    int n = (int)ceil(support) * 2 + 1;
    double *tmp = malloc(sizeof(double) * (size_t)n);
    t->start = malloc(sizeof(int) * out);
    t->cnt = malloc(sizeof(int) * out);
    t->w = calloc((size_t)out * (size_t)n, sizeof(int32_t));
    t->n = n;
    if (!tmp || !t->start || !t->cnt || !t->w) {
        free(tmp);
        taps_free(t);
        return CV_E_NOMEM;
    }
    for (unsigned i = 0; i < out; i++) {
        double c = (i + 0.5) * scale;
        int lo = (int)floor(c - support);
        int hi = (int)ceil(c + support);
        if (lo < 0)
            lo = 0;
        if (hi > (int)in)
            hi = (int)in;
        if (hi - lo > n)
            hi = lo + n;
        double sum = 0.0;
        for (int k = 0; k < hi - lo; k++) {
            tmp[k] = lanczos3((lo + k + 0.5 - c) / fs);
            sum += tmp[k];
        }
        t->start[i] = lo;
        t->cnt[i] = hi - lo;
        int32_t *w = t->w + (size_t)i * n;
        int32_t acc = 0;
        for (int k = 0; k < hi - lo; k++) {
            w[k] = (int32_t)lround(tmp[k] / sum * (1 << PREC));
            acc += w[k];
        }
        /* put the rounding residue on the centre tap so weights sum exactly to 1 */
        int mid = (int)c - lo;
        if (mid < 0)
            mid = 0;
        if (mid >= hi - lo)
            mid = hi - lo - 1;
        w[mid] += (1 << PREC) - acc;
    }
    free(tmp);
    return CV_OK;
}

static inline uint8_t clamp8(int32_t v)
{
    v >>= PREC;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/*
 * One vertical pass src (w x h) -> dst (w x oh): every output row is a
 * weighted sum of whole source rows, so the inner loop runs over w*3
 * contiguous bytes and vectorises.
 */
#define STRIP 128

/*
 * One output row from n consecutive source rows at base (rowlen bytes
 * each, back to back): d[i] = clamp((sum over k < n of w[k] *
 * base[k * rowlen + i] + 2^(PREC-1)) >> PREC). Exact integer arithmetic,
 * so every version below gives the same bytes.
 */
static void resample_row_c(const uint8_t *base, const int32_t *w, int n, size_t rowlen, uint8_t *d,
                           size_t i)
{
    /* strips of STRIP bytes: the accumulators stay in registers/L1 across taps */
    for (; i + STRIP <= rowlen; i += STRIP) {
        int32_t acc[STRIP];
        for (int j = 0; j < STRIP; j++)
            acc[j] = 1 << (PREC - 1);
        for (int k = 0; k < n; k++) {
            const uint8_t *s = base + (size_t)k * rowlen + i;
            int32_t wk = w[k];
            for (int j = 0; j < STRIP; j++)
                acc[j] += wk * s[j];
        }
        for (int j = 0; j < STRIP; j++)
            d[i + j] = clamp8(acc[j]);
    }
    for (; i < rowlen; i++) {
        int32_t acc = 1 << (PREC - 1);
        for (int k = 0; k < n; k++)
            acc += w[k] * base[(size_t)k * rowlen + i];
        d[i] = clamp8(acc);
    }
}

#if defined(__x86_64__)
/*
 * AVX2: 16 output bytes at a time, taps taken in pairs. The two rows'
 * bytes are widened to int16 and interleaved, so one vpmaddwd computes
 * p[k] * w[k] + p[k+1] * w[k+1] for 8 pixels into int32 (the classic
 * 8-bit resampling kernel, as in Pillow-SIMD). Twice the work per
 * instruction of the int32 multiply the compiler makes of resample_row_c
 * (the resize was a fifth of an upload's CPU time, bench/intake).
 */
__attribute__((target("avx2"))) static void resample_row_avx2(const uint8_t *base, const int32_t *w,
                                                              int n, size_t rowlen, uint8_t *d)
{
    size_t i = 0;
    const __m256i round = _mm256_set1_epi32(1 << (PREC - 1));
    for (; i + 16 <= rowlen; i += 16) {
        __m256i lo = round, hi = round;
        int k = 0;
        for (; k + 1 < n; k += 2) {
            __m256i a = _mm256_cvtepu8_epi16(
                _mm_loadu_si128((const __m128i *)(base + (size_t)k * rowlen + i)));
            __m256i b = _mm256_cvtepu8_epi16(
                _mm_loadu_si128((const __m128i *)(base + (size_t)(k + 1) * rowlen + i)));
            __m256i wp = _mm256_set1_epi32(
                (int32_t)(((uint32_t)w[k + 1] << 16) | ((uint32_t)w[k] & 0xffffu)));
            lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(a, b), wp));
            hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(a, b), wp));
        }
        if (k < n) { /* odd tap count: the last row paired with weight 0 */
            __m256i a = _mm256_cvtepu8_epi16(
                _mm_loadu_si128((const __m128i *)(base + (size_t)k * rowlen + i)));
            __m256i wp = _mm256_set1_epi32((int32_t)((uint32_t)w[k] & 0xffffu));
            lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(a, a), wp));
            hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(a, a), wp));
        }
        /* lo: pixels 0-3 | 8-11, hi: 4-7 | 12-15; packs restores 0..15 per lane */
        __m256i v = _mm256_packs_epi32(_mm256_srai_epi32(lo, PREC), _mm256_srai_epi32(hi, PREC));
        v = _mm256_packus_epi16(v, v); /* lane 0: bytes 0-7 twice, lane 1: 8-15 twice */
        v = _mm256_permute4x64_epi64(v, 0x08);
        _mm_storeu_si128((__m128i *)(d + i), _mm256_castsi256_si128(v));
    }
    resample_row_c(base, w, n, rowlen, d, i);
}
#endif

static void resample_row(const uint8_t *base, const int32_t *w, int n, size_t rowlen, uint8_t *d)
{
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) {
        resample_row_avx2(base, w, n, rowlen, d);
        return;
    }
#endif
    resample_row_c(base, w, n, rowlen, d, 0);
}

static void pass_rows(const uint8_t *src, size_t rowlen, const struct taps *t, unsigned y0,
                      unsigned y1, uint8_t *dst)
{
    for (unsigned y = y0; y < y1; y++)
        resample_row(src + (size_t)t->start[y] * rowlen, t->w + (size_t)y * t->n, t->cnt[y], rowlen,
                     dst + (size_t)y * rowlen);
}

struct pass_job {
    const uint8_t *src;
    size_t rowlen;
    const struct taps *t;
    unsigned y0, y1;
    uint8_t *dst;
};

static void *pass_thread(void *arg)
{
    struct pass_job *j = arg;
    pass_rows(j->src, j->rowlen, j->t, j->y0, j->y1, j->dst);
    return NULL;
}

/*
 * Output rows split over two threads (the worker's seccomp filter allows
 * threads); if the thread cannot start, this thread does all rows.
 */
static void pass_vertical(const uint8_t *src, size_t rowlen, const struct taps *t, unsigned oh,
                          uint8_t *dst)
{
    unsigned mid = oh / 2;
    struct pass_job j = {src, rowlen, t, mid, oh, dst};
    pthread_t th;
    int threaded = oh >= 64 && pthread_create(&th, NULL, pass_thread, &j) == 0;
    pass_rows(src, rowlen, t, 0, threaded ? mid : oh, dst);
    if (threaded)
        pthread_join(th, NULL);
}

/* ---- JPEG (libjpeg-turbo) ---- */

struct jerr {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    int truncated;
};

static void j_error_exit(j_common_ptr c)
{
    struct jerr *e = (struct jerr *)c->err;
    longjmp(e->jb, 1);
}

static void j_emit(j_common_ptr c, int level)
{
    struct jerr *e = (struct jerr *)c->err;
    if (level < 0) {
        /* Only "Premature end of JPEG file" means missing data (C02); other
         * warnings (C01's JWRN_NOT_SEQUENTIAL, corrupt segments that still
         * decode) are tolerated, as browsers do. */
        if (c->err->msg_code == JWRN_JPEG_EOF)
            e->truncated = 1;
        c->err->num_warnings++;
    }
}

static void j_output(j_common_ptr c)
{
    (void)c;
}

static void j_progress(j_common_ptr c)
{
    j_decompress_ptr d = (j_decompress_ptr)c;
    if (d->input_scan_number > CV_INTAKE_MAX_JPEG_SCANS)
        longjmp(((struct jerr *)c->err)->jb, 1);
}

/* libgd's CMYK conversion (gd_jpeg.c CMYKToRGB), kept identical (case C04). */
static void cmyk_row(const uint8_t *in, uint8_t *out, unsigned w, int inverted)
{
    for (unsigned x = 0; x < w; x++) {
        int c = in[4 * x], m = in[4 * x + 1], y = in[4 * x + 2], k = in[4 * x + 3];
        if (inverted) {
            c = 255 - c;
            m = 255 - m;
            y = 255 - y;
            k = 255 - k;
        }
        out[3 * x] = (uint8_t)((255 - c) * (255 - k) / 255);
        out[3 * x + 1] = (uint8_t)((255 - m) * (255 - k) / 255);
        out[3 * x + 2] = (uint8_t)((255 - y) * (255 - k) / 255);
    }
}

/*
 * DCT-domain pre-scale: only when the target is at most half the source,
 * to the smallest of 4/8, 2/8, 1/8 that still covers the box; the Lanczos
 * pass does the rest. Only these three: libjpeg-turbo has SIMD reduced
 * IDCTs for them, and the odd M/8 scalers cost quality (measured: 5/8 on a
 * 12 MP phone photo loses 5.4 dB PSNR against the 16-bit Lanczos
 * reference, 4/8 on an 18 MP one loses 0.1 dB).
 */
static unsigned jpeg_scale_num(unsigned w, unsigned h, unsigned box)
{
    unsigned long long longest = w > h ? w : h;
    if (box == 0 || (unsigned long long)box * 2 > longest)
        return 8;
    unsigned best = 8;
    static const unsigned cand[] = {4, 2, 1};
    for (size_t i = 0; i < 3; i++)
        if (longest * cand[i] >= (unsigned long long)box * 8)
            best = cand[i];
    return best;
}

/*
 * Decode a JPEG (DCT-scaled for box, see jpeg_scale_num). When oh is below
 * the decoded height, the vertical Lanczos pass runs while decoding: rows
 * go into a ring just deep enough for one output row's taps, and out is
 * the raster already resized to (decoded width) x oh. The full-size source
 * raster (37 MB for 12 MP) never exists, and its rows are resampled while
 * still in the cache. The result equals decode-then-pass_vertical.
 */
static cv_status decode_jpeg(const uint8_t *buf, size_t len, unsigned box, unsigned oh,
                             struct rgb *out)
{
    struct jpeg_decompress_struct d;
    struct jerr e;
    struct jpeg_progress_mgr prog;
    /* everything changed after setjmp and read after longjmp is volatile (C17 7.13.2.1) */
    volatile cv_status rc = CV_E_IMAGE_UNDECODABLE;
    uint8_t *volatile px = NULL;
    uint8_t *volatile row4 = NULL;
    uint8_t *volatile ring = NULL;
    struct taps ty = {0};
    volatile int created = 0, have_taps = 0;

    memset(&d, 0, sizeof d);
    memset(&e, 0, sizeof e);
    d.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = j_error_exit;
    e.pub.emit_message = j_emit;
    e.pub.output_message = j_output;
    if (setjmp(e.jb)) {
        rc = CV_E_IMAGE_UNDECODABLE;
        goto out;
    }
    jpeg_create_decompress(&d);
    created = 1;
    prog.progress_monitor = j_progress;
    d.progress = &prog;
    jpeg_mem_src(&d, buf, (unsigned long)len);
    if (jpeg_read_header(&d, TRUE) != JPEG_HEADER_OK)
        goto out;
    int cmyk = d.jpeg_color_space == JCS_CMYK || d.jpeg_color_space == JCS_YCCK;
    d.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    d.scale_num = jpeg_scale_num(d.image_width, d.image_height, box);
    d.scale_denom = 8;
    if (!jpeg_start_decompress(&d))
        goto out;
    unsigned w = d.output_width, h = d.output_height;
    size_t rowlen = (size_t)w * 3;
    int stream = oh > 0 && oh < h;
    /* stream: a window of 2 * depth rows holding source rows base.. ; when
     * full, its last depth rows move to the front (one extra copy of each
     * row, and every output row's taps stay contiguous for resample_row) */
    unsigned depth = 0, base = 0, y = 0; /* window rows; its first source row; next output row */
    if (stream) {
        if (taps_make(h, (double)d.image_height * d.scale_num / d.scale_denom, oh, &ty) != CV_OK) {
            rc = CV_E_NOMEM;
            goto out;
        }
        have_taps = 1;
        depth = (unsigned)ty.n;
        ring = malloc(rowlen * 2 * depth);
    }
    px = big_alloc(rowlen * (stream ? oh : h));
    if (px == NULL || (stream && ring == NULL) ||
        (cmyk && (row4 = malloc((size_t)w * 4)) == NULL)) {
        rc = CV_E_NOMEM;
        goto out;
    }
    while (d.output_scanline < h) {
        unsigned sy = d.output_scanline;
        if (stream && sy - base == 2 * depth) {
            memcpy(ring, ring + rowlen * depth, rowlen * depth);
            base += depth;
        }
        uint8_t *dst = stream ? ring + (size_t)(sy - base) * rowlen : px + (size_t)sy * rowlen;
        JSAMPROW r = cmyk ? row4 : dst;
        if (jpeg_read_scanlines(&d, &r, 1) != 1)
            goto out;
        if (cmyk)
            cmyk_row(row4, dst, w, d.saw_Adobe_marker);
        /* every output row whose taps end at this row; they start at or
         * after base: a row's taps span at most depth rows, and the window
         * keeps the last depth rows at least */
        while (stream && y < oh && (unsigned)(ty.start[y] + ty.cnt[y]) <= sy + 1) {
            resample_row(ring + (size_t)((unsigned)ty.start[y] - base) * rowlen,
                         ty.w + (size_t)y * ty.n, ty.cnt[y], rowlen, px + (size_t)y * rowlen);
            y++;
        }
    }
    if (stream && y != oh)
        goto out; /* unreachable: the last row's taps end at h */
    jpeg_finish_decompress(&d);
    if (e.truncated) {
        rc = CV_E_IMAGE_TRUNCATED;
        goto out;
    }
    out->px = px;
    out->w = w;
    out->h = stream ? oh : h;
    out->ew = (double)d.image_width * d.scale_num / d.scale_denom;
    out->eh = stream ? 0.0 : (double)d.image_height * d.scale_num / d.scale_denom;
    px = NULL;
    rc = CV_OK;
out:
    if (created)
        jpeg_destroy_decompress(&d);
    if (e.truncated && rc == CV_E_IMAGE_UNDECODABLE)
        rc = CV_E_IMAGE_TRUNCATED;
    if (have_taps)
        taps_free(&ty);
    free(ring);
    free(row4);
    free(px);
    return rc;
}

/* ---- libgd formats ---- */

static void gd_quiet(int priority, const char *format, va_list args)
{
    (void)priority;
    (void)format;
    (void)args;
}

/* Composite c (0..255) with gd alpha a (0 opaque .. 127 transparent) onto white. */
static uint8_t on_white(int c, int a)
{
    return (uint8_t)((c * (127 - a) + 255 * a + 63) / 127);
}

static cv_status decode_gd(enum cv_image_format f, const uint8_t *buf, size_t len, struct rgb *out)
{
    cv_status rc = CV_E_IMAGE_UNDECODABLE;
    gdImagePtr im = NULL;
    struct rgb img = {0};
    if (len > INT_MAX)
        return CV_E_IMAGE_TOO_LARGE;
    gdSetErrorMethod(gd_quiet);
    void *p = (void *)(uintptr_t)buf; /* gd's loaders take non-const but only read */
    switch (f) {
    case CV_IMG_PNG: im = gdImageCreateFromPngPtr((int)len, p); break;
    case CV_IMG_WEBP: im = gdImageCreateFromWebpPtr((int)len, p); break;
    case CV_IMG_GIF: im = gdImageCreateFromGifPtr((int)len, p); break;
    case CV_IMG_BMP: im = gdImageCreateFromBmpPtr((int)len, p); break;
    case CV_IMG_JPEG:
    case CV_IMG_TIFF:
    case CV_IMG_HEIF:
    case CV_IMG_AVIF:
    case CV_IMG_UNKNOWN: break;
    }
    if (im == NULL)
        goto out;
    unsigned w = (unsigned)gdImageSX(im), h = (unsigned)gdImageSY(im);
    if (w == 0 || h == 0)
        goto out;
    rc = rgb_alloc(&img, w, h);
    if (rc != CV_OK)
        goto out;
    for (unsigned y = 0; y < h; y++) {
        uint8_t *d = img.px + (size_t)y * w * 3;
        for (unsigned x = 0; x < w; x++, d += 3) {
            int r, g, b, a;
            if (gdImageTrueColor(im)) {
                int c = im->tpixels[y][x];
                r = gdTrueColorGetRed(c);
                g = gdTrueColorGetGreen(c);
                b = gdTrueColorGetBlue(c);
                a = gdTrueColorGetAlpha(c);
            } else {
                int i = im->pixels[y][x];
                r = im->red[i];
                g = im->green[i];
                b = im->blue[i];
                a = i == im->transparent ? gdAlphaTransparent : im->alpha[i];
            }
            d[0] = on_white(r, a);
            d[1] = on_white(g, a);
            d[2] = on_white(b, a);
        }
    }
    *out = img;
    img.px = NULL;
    rc = CV_OK;
out:
    if (im)
        gdImageDestroy(im);
    rgb_free(&img);
    return rc;
}

/* ---- TIFF (libtiff's RGBA reader, first directory only) ---- */

struct tmem {
    const uint8_t *b;
    toff_t len, pos;
};

static tmsize_t t_read(thandle_t h, void *buf, tmsize_t n)
{
    struct tmem *m = (struct tmem *)h;
    if (n < 0)
        return -1;
    toff_t left = m->pos < m->len ? m->len - m->pos : 0;
    toff_t k = (toff_t)n < left ? (toff_t)n : left;
    memcpy(buf, m->b + m->pos, (size_t)k);
    m->pos += k;
    return (tmsize_t)k;
}

static tmsize_t t_write(thandle_t h, void *buf, tmsize_t n)
{
    (void)h;
    (void)buf;
    (void)n;
    return -1;
}

static toff_t t_seek(thandle_t h, toff_t off, int whence)
{
    struct tmem *m = (struct tmem *)h;
    toff_t base = whence == SEEK_CUR ? m->pos : whence == SEEK_END ? m->len : 0;
    if (off > UINT64_MAX - base)
        return (toff_t)-1;
    m->pos = base + off;
    return m->pos;
}

static int t_close(thandle_t h)
{
    (void)h;
    return 0;
}

static toff_t t_size(thandle_t h)
{
    return ((struct tmem *)h)->len;
}

static int t_map(thandle_t h, void **base, toff_t *size)
{
    (void)h;
    (void)base;
    (void)size;
    return 0; /* no mapping: libtiff reads through t_read */
}

static void t_unmap(thandle_t h, void *base, toff_t size)
{
    (void)h;
    (void)base;
    (void)size;
}

/*
 * libtiff applies Orientation 2-4 itself when asked for ORIENTATION_TOPLEFT,
 * and for 5-8 only the flip of 1-4 (tif_getimage.c setorientation treats
 * LEFTTOP as TOPLEFT, RIGHTTOP as TOPRIGHT, ...). normalize() undoes that
 * flip and then applies the full orientation, so it happens exactly once.
 * The RGBA raster is premultiplied: compositing on white is c + 255 - a.
 */
static cv_status decode_tiff(const uint8_t *buf, size_t len, const struct cv_intake_limits *lim,
                             struct rgb *out)
{
    cv_status rc = CV_E_IMAGE_UNDECODABLE;
    struct tmem m = {buf, len, 0};
    uint32_t *raster = NULL;
    struct rgb img = {0};
    uint32_t w = 0, h = 0;
    TIFFSetErrorHandler(NULL);
    TIFFSetWarningHandler(NULL);
    TIFF *t = TIFFClientOpen("upload", "rm", (thandle_t)&m, t_read, t_write, t_seek, t_close,
                             t_size, t_map, t_unmap);
    if (t == NULL)
        goto out;
    if (!TIFFGetField(t, TIFFTAG_IMAGEWIDTH, &w) || !TIFFGetField(t, TIFFTAG_IMAGELENGTH, &h))
        goto out;
    rc = cv_intake_check_size(w, h, lim);
    if (rc != CV_OK)
        goto out;
    rc = CV_E_NOMEM;
    raster = malloc((size_t)w * h * 4);
    if (raster == NULL || rgb_alloc(&img, w, h) != CV_OK)
        goto out;
    rc = CV_E_IMAGE_UNDECODABLE;
    if (!TIFFReadRGBAImageOriented(t, w, h, raster, ORIENTATION_TOPLEFT, 1))
        goto out;
    for (size_t i = 0; i < (size_t)w * h; i++) {
        uint32_t v = raster[i];
        unsigned a = TIFFGetA(v), add = 255 - a;
        unsigned r = TIFFGetR(v) + add, g = TIFFGetG(v) + add, b = TIFFGetB(v) + add;
        img.px[3 * i] = (uint8_t)(r > 255 ? 255 : r);
        img.px[3 * i + 1] = (uint8_t)(g > 255 ? 255 : g);
        img.px[3 * i + 2] = (uint8_t)(b > 255 ? 255 : b);
    }
    *out = img;
    img.px = NULL;
    rc = CV_OK;
out:
    if (t)
        TIFFClose(t);
    free(raster);
    rgb_free(&img);
    return rc;
}

/* ---- HEIF / AVIF (libheif) ---- */

/* EXIF Orientation of the primary image's Exif item (ISO/IEC 23008-12 A.2.1), 0 if none. */
static int heif_exif_orientation(struct heif_image_handle *h)
{
    heif_item_id ids[4];
    int n = heif_image_handle_get_list_of_metadata_block_IDs(h, "Exif", ids, 4);
    for (int i = 0; i < n; i++) {
        size_t sz = heif_image_handle_get_metadata_size(h, ids[i]);
        if (sz < 4 || sz > 16u << 20)
            continue;
        uint8_t *m = malloc(sz);
        if (m == NULL)
            return 0;
        int o = 0;
        if (heif_image_handle_get_metadata(h, ids[i], m).code == heif_error_Ok) {
            uint32_t off = (uint32_t)m[0] << 24 | (uint32_t)m[1] << 16 | (uint32_t)m[2] << 8 | m[3];
            if (off <= sz - 4)
                o = cv_intake_exif_orientation(m + 4 + off, sz - 4 - off);
        }
        free(m);
        if (o)
            return o;
    }
    return 0;
}

static cv_status decode_heif(const uint8_t *buf, size_t len, const struct cv_intake_limits *lim,
                             struct rgb *out, int *orientation)
{
    cv_status rc = CV_E_IMAGE_UNDECODABLE;
    struct heif_context *ctx = heif_context_alloc();
    struct heif_image_handle *h = NULL;
    struct heif_image *im = NULL;
    struct heif_decoding_options *opt = NULL;
    struct rgb img = {0};
    if (ctx == NULL)
        return CV_E_NOMEM;
    if (heif_context_read_from_memory_without_copy(ctx, buf, len, NULL).code != heif_error_Ok)
        goto out;
    if (heif_context_get_primary_image_handle(ctx, &h).code != heif_error_Ok)
        goto out;
    int hw = heif_image_handle_get_width(h), hh = heif_image_handle_get_height(h);
    if (hw <= 0 || hh <= 0)
        goto out;
    rc = cv_intake_check_size((unsigned)hw, (unsigned)hh, lim);
    if (rc != CV_OK)
        goto out;
    rc = CV_E_IMAGE_UNDECODABLE;
    int exif_o = heif_exif_orientation(h);
    int alpha = heif_image_handle_has_alpha_channel(h);
    opt = heif_decoding_options_alloc();
    if (opt == NULL) {
        rc = CV_E_NOMEM;
        goto out;
    }
    opt->ignore_transformations = exif_o != 0;
    opt->convert_hdr_to_8bit = 1;
    if (heif_decode_image(h, &im, heif_colorspace_RGB,
                          alpha ? heif_chroma_interleaved_RGBA : heif_chroma_interleaved_RGB, opt)
            .code != heif_error_Ok)
        goto out;
    int stride = 0;
    const uint8_t *pl = heif_image_get_plane_readonly(im, heif_channel_interleaved, &stride);
    int iw = heif_image_get_width(im, heif_channel_interleaved);
    int ih = heif_image_get_height(im, heif_channel_interleaved);
    if (pl == NULL || iw <= 0 || ih <= 0 || stride < iw * (alpha ? 4 : 3))
        goto out;
    rc = cv_intake_check_size((unsigned)iw, (unsigned)ih, lim);
    if (rc != CV_OK)
        goto out;
    rc = rgb_alloc(&img, (unsigned)iw, (unsigned)ih);
    if (rc != CV_OK)
        goto out;
    for (int y = 0; y < ih; y++) {
        const uint8_t *s = pl + (size_t)y * (size_t)stride;
        uint8_t *d = img.px + (size_t)y * img.w * 3;
        if (!alpha) {
            memcpy(d, s, (size_t)iw * 3);
            continue;
        }
        for (int x = 0; x < iw; x++, s += 4, d += 3) {
            unsigned a = s[3];
            for (int k = 0; k < 3; k++)
                d[k] = (uint8_t)((s[k] * a + 255 * (255 - a) + 127) / 255);
        }
    }
    *out = img;
    img.px = NULL;
    *orientation = exif_o;
    rc = CV_OK;
out:
    rgb_free(&img);
    if (im)
        heif_image_release(im);
    if (opt)
        heif_decoding_options_free(opt);
    if (h)
        heif_image_handle_release(h);
    heif_context_free(ctx);
    return rc;
}

/* ---- resampling: the rest ---- */

/*
 * Transpose an RGB raster w x h -> h x w, in 32x32 tiles for the cache.
 * Pixels move as 4-byte words (one load, one store instead of a 2-byte and
 * a 1-byte move): the extra byte read is the next pixel's, and the extra
 * byte written lands on the destination pixel of source row y + 1, which
 * is written after this one (tiles go down the source in row order). The
 * last source row moves 3 bytes at a time, so nothing outside either
 * buffer is touched. A fifth less time per upload in the transposes.
 */
static void transpose(const uint8_t *src, unsigned w, unsigned h, uint8_t *dst)
{
    for (unsigned by = 0; by < h; by += 32) {
        for (unsigned bx = 0; bx < w; bx += 32) {
            for (unsigned y = by; y < by + 32 && y < h; y++) {
                const uint8_t *s = src + ((size_t)y * w + bx) * 3;
                uint8_t *d = dst + ((size_t)bx * h + y) * 3;
                size_t step = (size_t)h * 3;
                unsigned xe = bx + 32 < w ? bx + 32 : w;
                if (y + 1 < h) {
                    for (unsigned x = bx; x < xe; x++, s += 3, d += step) {
                        uint32_t v;
                        memcpy(&v, s, 4);
                        memcpy(d, &v, 4);
                    }
                } else {
                    for (unsigned x = bx; x < xe; x++, s += 3, d += step)
                        memcpy(d, s, 3);
                }
            }
        }
    }
}

/*
 * Separable resize: vertical pass, transpose, vertical pass (the horizontal
 * one, now over contiguous rows), transpose back. The two transposes cost
 * less than a horizontal pass that gathers interleaved RGB taps and does
 * not vectorise. A pass whose size does not change is skipped (a JPEG
 * arrives already resized vertically, see decode_jpeg).
 * Consumes src: its pixels are freed after the first pass (so the source
 * raster and the second-pass buffers are never all alive at once).
 */
static cv_status resize(struct rgb *src, unsigned ow, unsigned oh, struct rgb *dst)
{
    cv_status rc = CV_E_NOMEM;
    struct taps tx = {0}, ty = {0};
    uint8_t *a = NULL, *b = NULL;
    struct rgb res = {0};
    unsigned sw = src->w;
    if (src->h == oh) {
        a = src->px; /* a: w x oh */
        src->px = NULL;
    } else {
        if (taps_make(src->h, src->eh, oh, &ty) != CV_OK ||
            (a = big_alloc((size_t)sw * oh * 3)) == NULL)
            goto out;
        pass_vertical(src->px, (size_t)sw * 3, &ty, oh, a);
    }
    rgb_free(src);
    if (sw == ow) {
        res.px = a;
        res.w = ow;
        res.h = oh;
        a = NULL;
    } else {
        /* each buffer allocated after the previous one is freed: lower peak */
        if (taps_make(sw, src->ew, ow, &tx) != CV_OK ||
            (b = big_alloc((size_t)sw * oh * 3)) == NULL)
            goto out;
        transpose(a, sw, oh, b); /* b: oh x w (rows = x) */
        free(a);
        a = big_alloc((size_t)oh * ow * 3);
        if (a == NULL || rgb_alloc(&res, ow, oh) != CV_OK)
            goto out;
        pass_vertical(b, (size_t)oh * 3, &tx, ow, a); /* a: oh x ow */
        free(b);
        b = NULL;
        transpose(a, oh, ow, res.px); /* res: ow x oh */
    }
    *dst = res;
    res.px = NULL;
    rc = CV_OK;
out:
    free(a);
    free(b);
    rgb_free(&res);
    taps_free(&tx);
    taps_free(&ty);
    return rc;
}

static cv_status orient(struct rgb *img, int o)
{
    if (o < 2 || o > 8)
        return CV_OK;
    unsigned dw = o >= 5 ? img->h : img->w, dh = o >= 5 ? img->w : img->h;
    struct rgb r;
    if (rgb_alloc(&r, dw, dh) != CV_OK)
        return CV_E_NOMEM;
    for (unsigned y = 0; y < dh; y++) {
        uint8_t *d = r.px + (size_t)y * dw * 3;
        for (unsigned x = 0; x < dw; x++, d += 3) {
            unsigned sx, sy;
            cv_intake_orient_src(o, img->w, img->h, x, y, &sx, &sy);
            memcpy(d, img->px + ((size_t)sy * img->w + sx) * 3, 3);
        }
    }
    rgb_free(img);
    *img = r;
    return CV_OK;
}

/* ---- JPEG encoder ---- */

struct memdest {
    unsigned char *mem;
    unsigned long sz;
};

static cv_status encode_jpeg(const struct rgb *img, uint8_t **data, size_t *len)
{
    struct jpeg_compress_struct c;
    struct jerr e;
    volatile cv_status rc = CV_E_INTERNAL;
    volatile int created = 0;
    /* libjpeg writes the buffer pointer behind our back: keep it in memory
     * that setjmp/longjmp cannot clobber */
    struct memdest *md = calloc(1, sizeof *md);
    if (md == NULL)
        return CV_E_NOMEM;
    memset(&c, 0, sizeof c);
    memset(&e, 0, sizeof e);
    c.err = jpeg_std_error(&e.pub);
    e.pub.error_exit = j_error_exit;
    e.pub.output_message = j_output;
    if (setjmp(e.jb))
        goto out;
    jpeg_create_compress(&c);
    created = 1;
    jpeg_mem_dest(&c, &md->mem, &md->sz);
    c.image_width = img->w;
    c.image_height = img->h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, OUT_QUALITY, TRUE);
    c.write_JFIF_header = TRUE;
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW r = img->px + (size_t)c.next_scanline * img->w * 3;
        jpeg_write_scanlines(&c, &r, 1);
    }
    jpeg_finish_compress(&c);
    *data = md->mem;
    *len = md->sz;
    md->mem = NULL;
    rc = CV_OK;
out:
    if (created)
        jpeg_destroy_compress(&c);
    free(md->mem);
    free(md);
    return rc;
}

/* ---- pipeline ---- */

static void fit_box(unsigned w, unsigned h, unsigned box, unsigned *ow, unsigned *oh)
{
    unsigned longest = w > h ? w : h;
    if (box == 0 || longest <= box) {
        *ow = w;
        *oh = h;
        return;
    }
    double s = (double)box / longest;
    unsigned long a = (unsigned long)lround(w * s), b = (unsigned long)lround(h * s);
    *ow = w >= h ? box : (unsigned)(a ? a : 1);
    *oh = h > w ? box : (unsigned)(b ? b : 1);
}

cv_status cv_intake_normalize(const uint8_t *buf, size_t len, const struct cv_intake_limits *lim,
                              struct cv_intake_image *out)
{
    cv_status rc;
    struct cv_intake_sniffed s;
    struct rgb img = {0}, small = {0};
    int o = 0;
    unsigned uw, uh, ow, oh;
    uint8_t *data = NULL;
    size_t dlen = 0;

    rc = cv_intake_sniff(buf, len, &s);
    if (rc != CV_OK)
        goto out;
    if (s.format != CV_IMG_HEIF && s.format != CV_IMG_AVIF) {
        rc = cv_intake_check_size(s.width, s.height, lim);
        if (rc != CV_OK)
            goto out;
    }
    if (s.format == CV_IMG_JPEG && s.jpeg_scans > CV_INTAKE_MAX_JPEG_SCANS) {
        rc = CV_E_IMAGE_UNDECODABLE;
        goto out;
    }
    switch (s.format) {
    case CV_IMG_JPEG:
        /* the box from the stored size (the raster may come DCT-scaled) */
        fit_box(s.width, s.height, lim->max_out_side_px, &ow, &oh);
        rc = decode_jpeg(buf, len, lim->max_out_side_px, oh, &img);
        break;
    case CV_IMG_HEIF:
    case CV_IMG_AVIF: rc = decode_heif(buf, len, lim, &img, &o); break;
    case CV_IMG_PNG:
    case CV_IMG_WEBP:
    case CV_IMG_GIF:
    case CV_IMG_BMP: rc = decode_gd(s.format, buf, len, &img); break;
    case CV_IMG_TIFF: rc = decode_tiff(buf, len, lim, &img); break;
    case CV_IMG_UNKNOWN: rc = CV_E_UNSUPPORTED_MEDIA_TYPE; break;
    }
    if (rc != CV_OK)
        goto out;
    if (s.format != CV_IMG_HEIF && s.format != CV_IMG_AVIF)
        o = cv_intake_orientation_of(s.format, buf, len);
    /* upright source size: header size (the JPEG raster may be DCT-scaled) */
    if (s.format == CV_IMG_HEIF || s.format == CV_IMG_AVIF) {
        uw = img.w;
        uh = img.h;
    } else {
        uw = s.width;
        uh = s.height;
        if (s.format != CV_IMG_JPEG && (img.w != s.width || img.h != s.height)) {
            /* a decoder that disagrees with the header (e.g. GIF frame vs screen) wins */
            uw = img.w;
            uh = img.h;
        }
    }
    if (o >= 5) {
        unsigned t = uw;
        uw = uh;
        uh = t;
    }
    rc = cv_intake_check_size(uw, uh, lim);
    if (rc != CV_OK)
        goto out;
    /* the box is computed from the stored source size, not the DCT-scaled raster */
    if (s.format == CV_IMG_JPEG)
        fit_box(s.width, s.height, lim->max_out_side_px, &ow, &oh);
    else
        fit_box(img.w, img.h, lim->max_out_side_px, &ow, &oh);
    if (ow > img.w || oh > img.h) { /* never enlarge a DCT-scaled raster */
        ow = ow > img.w ? img.w : ow;
        oh = oh > img.h ? img.h : oh;
    }
    if (ow != img.w || oh != img.h) {
        rc = resize(&img, ow, oh, &small);
        if (rc != CV_OK)
            goto out;
        rgb_free(&img);
        img = small;
        small.px = NULL;
    }
    if (s.format == CV_IMG_TIFF && o >= 5)
        rc = orient(&img, o - 4); /* undo libtiff's partial flip, see decode_tiff */
    if (rc == CV_OK && !(s.format == CV_IMG_TIFF && o >= 2 && o <= 4))
        rc = orient(&img, o);
    if (rc != CV_OK)
        goto out;
    rc = encode_jpeg(&img, &data, &dlen);
    if (rc != CV_OK)
        goto out;
    memset(out, 0, sizeof *out);
    out->data = data;
    out->len = dlen;
    out->media_type = "image/jpeg";
    out->width = img.w;
    out->height = img.h;
    out->src_width = uw;
    out->src_height = uh;
    out->source = s.format;
    out->orientation = (s.format == CV_IMG_HEIF || s.format == CV_IMG_AVIF) ? o : (o ? o : 1);
    data = NULL;
    rc = CV_OK;
out:
    free(data);
    rgb_free(&img);
    rgb_free(&small);
    return rc;
}
