/*
 * intake/sniff: the image type from magic bytes and the dimensions from the
 * headers, before any decoder sees the data; EXIF orientation from IFD0.
 * Never trusts a filename or a Content-Type, never allocates, never reads
 * past len: every offset is checked before use. This is our own small parser
 * on purpose (STACK-NOTES §3): libexif parses MakerNotes unconditionally and
 * gd has no header-only API.
 */
#include <string.h>

#include "casevault/util.h"
#include "casevault/intake.h"

static unsigned be16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}
static unsigned le16(const uint8_t *p)
{
    return (unsigned)p[1] << 8 | p[0];
}
static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

const char *cv_image_format_name(enum cv_image_format f)
{
    switch (f) {
    case CV_IMG_JPEG: return "jpeg";
    case CV_IMG_PNG: return "png";
    case CV_IMG_WEBP: return "webp";
    case CV_IMG_HEIF: return "heif";
    case CV_IMG_AVIF: return "avif";
    case CV_IMG_TIFF: return "tiff";
    case CV_IMG_BMP: return "bmp";
    case CV_IMG_GIF: return "gif";
    case CV_IMG_UNKNOWN: break;
    }
    return "unknown";
}

unsigned cv_intake_kind_max_side(const char *kind)
{
    if (kind == NULL)
        return 0;
    if (strcmp(kind, "id_in_hand") == 0)
        return 2048;
    if (strcmp(kind, "business_license") == 0)
        return 3000;
    return 0;
}

/* ISO BMFF ftyp: major brand at 8, compatible brands from 16 to the box end. */
static enum cv_image_format sniff_ftyp(const uint8_t *buf, size_t len)
{
    if (len < 16 || memcmp(buf + 4, "ftyp", 4) != 0)
        return CV_IMG_UNKNOWN;
    size_t box = be32(buf);
    if (box < 16 || box > len)
        box = len < 256 ? len : 256;
    int heif = 0, avif = 0;
    for (size_t off = 8; off + 4 <= box; off += 4) {
        if (off == 12)
            continue; /* minor version */
        const uint8_t *b = buf + off;
        if (!memcmp(b, "avif", 4) || !memcmp(b, "avis", 4))
            avif = 1;
        else if (!memcmp(b, "heic", 4) || !memcmp(b, "heix", 4) || !memcmp(b, "heim", 4) ||
                 !memcmp(b, "heis", 4) || !memcmp(b, "hevc", 4) || !memcmp(b, "hevx", 4) ||
                 !memcmp(b, "mif1", 4) || !memcmp(b, "msf1", 4) || !memcmp(b, "miaf", 4))
            heif = 1;
    }
    /* The major brand decides when both appear (an AVIF lists mif1 too). */
    if (!memcmp(buf + 8, "avif", 4) || !memcmp(buf + 8, "avis", 4))
        return CV_IMG_AVIF;
    if (!memcmp(buf + 8, "heic", 4) || !memcmp(buf + 8, "heix", 4))
        return CV_IMG_HEIF;
    return avif ? CV_IMG_AVIF : heif ? CV_IMG_HEIF : CV_IMG_UNKNOWN;
}

enum cv_image_format cv_intake_sniff_type(const uint8_t *buf, size_t len)
{
    if (buf == NULL)
        return CV_IMG_UNKNOWN;
    if (len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF)
        return CV_IMG_JPEG;
    if (len >= 8 && memcmp(buf, "\x89PNG\r\n\x1a\n", 8) == 0)
        return CV_IMG_PNG;
    if (len >= 12 && memcmp(buf, "RIFF", 4) == 0 && memcmp(buf + 8, "WEBP", 4) == 0)
        return CV_IMG_WEBP;
    if (len >= 6 && (memcmp(buf, "GIF87a", 6) == 0 || memcmp(buf, "GIF89a", 6) == 0))
        return CV_IMG_GIF;
    if (len >= 4 && (memcmp(buf, "II*\0", 4) == 0 || memcmp(buf, "MM\0*", 4) == 0))
        return CV_IMG_TIFF;
    if (len >= 18 && buf[0] == 'B' && buf[1] == 'M')
        return CV_IMG_BMP;
    return sniff_ftyp(buf, len);
}

/*
 * JPEG: walk marker segments to the first SOFn (ITU T.81 B.2), then count
 * SOS markers of the first image, skipping entropy-coded data (0xFF00
 * stuffing and RSTn are not markers). Stops at EOI, so an MPO's second
 * image is not counted.
 */
static cv_status sniff_jpeg(const uint8_t *b, size_t len, struct cv_intake_sniffed *o)
{
    size_t p = 2;
    unsigned w = 0, h = 0, scans = 0;
    int have_sof = 0;
    while (p + 4 <= len) {
        if (b[p] != 0xFF) {
            p++; /* garbage between segments: libjpeg skips it with a warning */
            continue;
        }
        unsigned m = b[p + 1];
        if (m == 0xFF) {
            p++;
            continue;
        }
        if (m == 0xD9)
            break;
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {
            p += 2;
            continue;
        }
        size_t seg = be16(b + p + 2);
        if (seg < 2 || p + 2 + seg > len) {
            /* a cut or corrupt segment after the frame header: the decoder
             * decides (truncation is JWRN_JPEG_EOF, other damage may decode) */
            if (have_sof) {
                scans += m == 0xDA;
                break;
            }
            return CV_E_IMAGE_UNDECODABLE;
        }
        if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC && !have_sof) {
            if (seg < 8)
                return CV_E_IMAGE_UNDECODABLE;
            h = be16(b + p + 5);
            w = be16(b + p + 7);
            have_sof = 1;
        }
        p += 2 + seg;
        if (m == 0xDA) {
            scans++;
            /* entropy-coded data up to the next real marker */
            while (p + 1 < len) {
                if (b[p] == 0xFF && b[p + 1] != 0x00 && !(b[p + 1] >= 0xD0 && b[p + 1] <= 0xD7) &&
                    b[p + 1] != 0xFF)
                    break;
                p++;
            }
        }
    }
    if (!have_sof)
        return CV_E_IMAGE_UNDECODABLE;
    o->width = w;
    o->height = h;
    o->jpeg_scans = scans;
    return CV_OK;
}

static cv_status sniff_png(const uint8_t *b, size_t len, struct cv_intake_sniffed *o)
{
    if (len < 33 || memcmp(b + 12, "IHDR", 4) != 0 || be32(b + 8) != 13)
        return CV_E_IMAGE_UNDECODABLE;
    o->width = be32(b + 16);
    o->height = be32(b + 20);
    return CV_OK;
}

/* WebP container (RFC 9649): VP8 key frame, VP8L header or VP8X canvas. */
static cv_status sniff_webp(const uint8_t *b, size_t len, struct cv_intake_sniffed *o)
{
    if (len < 30)
        return CV_E_IMAGE_UNDECODABLE;
    const uint8_t *c = b + 12;
    if (!memcmp(c, "VP8X", 4)) {
        o->animated = (c[8] & 0x02) != 0;
        o->width = 1 + (c[12] | c[13] << 8 | (unsigned)c[14] << 16);
        o->height = 1 + (c[15] | c[16] << 8 | (unsigned)c[17] << 16);
        return CV_OK;
    }
    if (!memcmp(c, "VP8L", 4)) {
        if (c[8] != 0x2F)
            return CV_E_IMAGE_UNDECODABLE;
        uint32_t v = le32(c + 9);
        o->width = 1 + (v & 0x3FFF);
        o->height = 1 + ((v >> 14) & 0x3FFF);
        return CV_OK;
    }
    if (!memcmp(c, "VP8 ", 4)) {
        if (c[11] != 0x9D || c[12] != 0x01 || c[13] != 0x2A)
            return CV_E_IMAGE_UNDECODABLE;
        o->width = le16(c + 14) & 0x3FFF;
        o->height = le16(c + 16) & 0x3FFF;
        return CV_OK;
    }
    return CV_E_IMAGE_UNDECODABLE;
}

/* GIF89a: logical screen, optional global table, extensions, first image descriptor. */
static cv_status sniff_gif(const uint8_t *b, size_t len, struct cv_intake_sniffed *o)
{
    if (len < 13)
        return CV_E_IMAGE_UNDECODABLE;
    size_t p = 13;
    if (b[10] & 0x80)
        p += 3u * (1u << ((b[10] & 7) + 1));
    while (p < len) {
        if (b[p] == 0x2C) {
            if (p + 10 > len)
                return CV_E_IMAGE_UNDECODABLE;
            o->width = le16(b + p + 5);
            o->height = le16(b + p + 7);
            return CV_OK;
        }
        if (b[p] != 0x21 || p + 2 > len)
            return CV_E_IMAGE_UNDECODABLE;
        p += 2; /* introducer, label, then sub-blocks */
        while (p < len && b[p] != 0)
            p += 1u + b[p];
        p++;
    }
    return CV_E_IMAGE_UNDECODABLE;
}

static cv_status sniff_bmp(const uint8_t *b, size_t len, struct cv_intake_sniffed *o)
{
    if (len < 26)
        return CV_E_IMAGE_UNDECODABLE;
    uint32_t hs = le32(b + 14);
    if (hs == 12) { /* OS/2 1.x BITMAPCOREHEADER */
        o->width = le16(b + 18);
        o->height = le16(b + 20);
        return CV_OK;
    }
    int32_t w = (int32_t)le32(b + 18), h = (int32_t)le32(b + 22);
    if (hs < 40 || w <= 0 || h == 0 || h == INT32_MIN)
        return CV_E_IMAGE_UNDECODABLE;
    o->width = (unsigned)w;
    o->height = (unsigned)(h < 0 ? -h : h);
    return CV_OK;
}

/* Walk one TIFF IFD; calls back for each entry. Returns 0 if malformed. */
struct tiff {
    const uint8_t *b;
    size_t len;
    int le;
};
static unsigned t16(const struct tiff *t, size_t off)
{
    return t->le ? le16(t->b + off) : be16(t->b + off);
}
static uint32_t t32(const struct tiff *t, size_t off)
{
    return t->le ? le32(t->b + off) : be32(t->b + off);
}

/* Value of a SHORT or LONG tag in IFD0, or -1 if absent/malformed. */
static long tiff_ifd0_tag(const struct tiff *t, unsigned tag)
{
    if (t->len < 8)
        return -1;
    size_t ifd = t32(t, 4);
    if (ifd < 8 || ifd + 2 > t->len)
        return -1;
    unsigned n = t16(t, ifd);
    for (unsigned i = 0; i < n; i++) {
        size_t e = ifd + 2 + 12u * i;
        if (e + 12 > t->len)
            return -1;
        if (t16(t, e) != tag)
            continue;
        unsigned type = t16(t, e + 2);
        if (t32(t, e + 4) < 1)
            return -1;
        if (type == 3)
            return (long)t16(t, e + 8);
        if (type == 4)
            return (long)t32(t, e + 8);
        return -1;
    }
    return -1;
}

static int tiff_open(struct tiff *t, const uint8_t *b, size_t len)
{
    if (len < 8)
        return 0;
    t->b = b;
    t->len = len;
    if (!memcmp(b, "II*\0", 4))
        t->le = 1;
    else if (!memcmp(b, "MM\0*", 4))
        t->le = 0;
    else
        return 0;
    return 1;
}

static cv_status sniff_tiff(const uint8_t *b, size_t len, struct cv_intake_sniffed *o)
{
    struct tiff t;
    if (!tiff_open(&t, b, len))
        return CV_E_IMAGE_UNDECODABLE;
    long w = tiff_ifd0_tag(&t, 256), h = tiff_ifd0_tag(&t, 257);
    if (w <= 0 || h <= 0)
        return CV_E_IMAGE_UNDECODABLE;
    o->width = (unsigned)w;
    o->height = (unsigned)h;
    return CV_OK;
}

cv_status cv_intake_sniff(const uint8_t *buf, size_t len, struct cv_intake_sniffed *out)
{
    struct cv_intake_sniffed s = {0};
    cv_status rc = CV_E_UNSUPPORTED_MEDIA_TYPE;
    s.format = cv_intake_sniff_type(buf, len);
    switch (s.format) {
    case CV_IMG_JPEG: rc = sniff_jpeg(buf, len, &s); break;
    case CV_IMG_PNG: rc = sniff_png(buf, len, &s); break;
    case CV_IMG_WEBP: rc = sniff_webp(buf, len, &s); break;
    case CV_IMG_GIF: rc = sniff_gif(buf, len, &s); break;
    case CV_IMG_BMP: rc = sniff_bmp(buf, len, &s); break;
    case CV_IMG_TIFF: rc = sniff_tiff(buf, len, &s); break;
    case CV_IMG_HEIF:
    case CV_IMG_AVIF: rc = CV_OK; break;
    case CV_IMG_UNKNOWN: rc = CV_E_UNSUPPORTED_MEDIA_TYPE; break;
    }
    if (rc != CV_OK)
        goto out;
    if (s.animated) {
        rc = CV_E_UNSUPPORTED_MEDIA_TYPE; /* animated WebP: not a document photo */
        goto out;
    }
    *out = s;
    rc = CV_OK;
out:
    return rc;
}

cv_status cv_intake_check_size(unsigned w, unsigned h, const struct cv_intake_limits *lim)
{
    if (w == 0 || h == 0)
        return CV_E_IMAGE_UNDECODABLE;
    if (w > lim->max_side_px || h > lim->max_side_px ||
        (unsigned long long)w * h > (unsigned long long)lim->max_megapixels * 1000000ull)
        return CV_E_IMAGE_TOO_LARGE;
    if ((w < h ? w : h) < lim->min_short_side_px)
        return CV_E_IMAGE_TOO_SMALL;
    return CV_OK;
}

int cv_intake_exif_orientation(const uint8_t *b, size_t len)
{
    if (b == NULL)
        return 0;
    if (len >= 6 && memcmp(b, "Exif\0\0", 6) == 0) {
        b += 6;
        len -= 6;
    }
    struct tiff t;
    if (!tiff_open(&t, b, len))
        return 0;
    long v = tiff_ifd0_tag(&t, 0x0112);
    return v >= 1 && v <= 8 ? (int)v : 0;
}

static int jpeg_orientation(const uint8_t *b, size_t len)
{
    size_t p = 2;
    while (p + 4 <= len && b[p] == 0xFF) {
        unsigned m = b[p + 1];
        if (m == 0xDA || m == 0xD9)
            break;
        size_t seg = be16(b + p + 2);
        if (seg < 2 || p + 2 + seg > len)
            break;
        if (m == 0xE1 && seg >= 8 && memcmp(b + p + 4, "Exif\0\0", 6) == 0)
            return cv_intake_exif_orientation(b + p + 4, seg - 2);
        p += 2 + seg;
    }
    return 0;
}

/*
 * ImageMagick's legacy PNG tEXt "Raw profile type exif": "\nexif\n  <len>\n"
 * then hex digits of an "Exif\0\0"+TIFF blob. Only the first 4 KiB of the
 * blob are decoded: IFD0 sits at its start.
 */
static int png_raw_profile_orientation(const uint8_t *t, size_t n)
{
    static const char key[] = "Raw profile type exif";
    uint8_t blob[4096];
    size_t k = sizeof key; /* includes the NUL separator */
    if (n < k || memcmp(t, key, k) != 0)
        return 0;
    size_t p = k, lines = 0;
    while (p < n && lines < 3) /* "\n", "exif\n", "   <len>\n" */
        lines += t[p++] == '\n';
    size_t m = 0;
    int hi = -1;
    for (; p < n && m < sizeof blob; p++) {
        int v = cv_hex_digit(t[p]);
        if (v < 0)
            continue;
        if (hi < 0) {
            hi = v;
        } else {
            blob[m++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    return cv_intake_exif_orientation(blob, m);
}

static int png_orientation(const uint8_t *b, size_t len)
{
    size_t p = 8;
    int raw = 0;
    while (p + 12 <= len) {
        size_t n = be32(b + p);
        if (n > len - p - 12)
            break;
        if (!memcmp(b + p + 4, "eXIf", 4))
            return cv_intake_exif_orientation(b + p + 8, n);
        if (!memcmp(b + p + 4, "tEXt", 4) && raw == 0)
            raw = png_raw_profile_orientation(b + p + 8, n);
        if (!memcmp(b + p + 4, "IEND", 4))
            break;
        p += 12 + n;
    }
    return raw; /* a standard eXIf chunk, if any, wins */
}

static int webp_orientation(const uint8_t *b, size_t len)
{
    size_t p = 12;
    while (p + 8 <= len) {
        size_t n = le32(b + p + 4);
        if (n > len - p - 8)
            break;
        if (!memcmp(b + p, "EXIF", 4))
            return cv_intake_exif_orientation(b + p + 8, n);
        p += 8 + n + (n & 1);
    }
    return 0;
}

int cv_intake_orientation_of(enum cv_image_format f, const uint8_t *buf, size_t len)
{
    switch (f) {
    case CV_IMG_JPEG: return jpeg_orientation(buf, len);
    case CV_IMG_PNG: return png_orientation(buf, len);
    case CV_IMG_WEBP: return webp_orientation(buf, len);
    case CV_IMG_TIFF: return cv_intake_exif_orientation(buf, len);
    case CV_IMG_HEIF:
    case CV_IMG_AVIF:
    case CV_IMG_BMP:
    case CV_IMG_GIF:
    case CV_IMG_UNKNOWN: break;
    }
    return 0;
}

void cv_intake_orient_src(int o, unsigned sw, unsigned sh, unsigned dx, unsigned dy, unsigned *sx,
                          unsigned *sy)
{
    switch (o) {
    case 2: *sx = sw - 1 - dx, *sy = dy; break;          /* mirror horizontal */
    case 3: *sx = sw - 1 - dx, *sy = sh - 1 - dy; break; /* rotate 180 */
    case 4: *sx = dx, *sy = sh - 1 - dy; break;          /* mirror vertical */
    case 5: *sx = dy, *sy = dx; break;                   /* transpose */
    case 6: *sx = dy, *sy = sh - 1 - dx; break;          /* rotate 90 CW */
    case 7: *sx = sw - 1 - dy, *sy = sh - 1 - dx; break; /* transverse */
    case 8: *sx = sw - 1 - dy, *sy = dx; break;          /* rotate 90 CCW */
    default: *sx = dx, *sy = dy; break;
    }
}
