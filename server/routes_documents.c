/*
 * server/routes_documents: document uploads and the staff view of stored
 * documents (DESIGN §7, §8).
 *
 * PUT  /v1/cases/{id}/documents/{kind}   raw body (applicant)
 * POST /v1/cases/{id}/documents          multipart/form-data, fields kind, file
 * GET  /v1/cases/{id}/documents/{doc}/content[?variant=original]
 *
 * Upload pipeline, per request (memory does not grow with the file):
 *   stream_begin: case accepts uploads? kind known and required? then a
 *     staging blob (cv_blob_put_begin); multipart: an MHD_PostProcessor.
 *   stream_data: every file byte is hashed and encrypted into the staging
 *     blob as it arrives (cv_blob_put_write); nothing else is buffered but
 *     the kind field (<= 32 bytes) and the client file name (<= 1 KiB).
 *   handler: finish + commit the original blob; stream it back decrypted
 *     into a sandboxed decoder worker (cv_intake_pool_normalize_stream);
 *     the normalized JPEG goes into a second blob; one transaction records
 *     both blobs, the document row and the document.upload audit entry.
 *   Any failure aborts both blobs (staging file or published file removed)
 *   and writes no row. A refusal of the image itself (empty, unsupported,
 *   too large/small, undecodable, truncated) appends document.refused with
 *   the SHA-256 and size of what arrived (case C02); refusals decided
 *   before the body (409, 400, 413) append nothing.
 *
 * DESIGN NOTES
 * 1. The client's file name (multipart filename, or Content-Disposition on
 *    PUT: filename* (RFC 8187) over filename) is metadata only: invalid
 *    UTF-8 and control characters become U+FFFD, it is put in Unicode NFC,
 *    cut to 255 bytes on a character boundary keeping a short extension,
 *    sealed in documents.file_name_enc, and never used for a path.
 * 2. The MHD post processor takes the multipart filename as the bytes
 *    between the first two double quotes (a raw `"` or a backslash escape
 *    inside cuts the name short, case C14a/c) and does not read filename*.
 *    So the raw body is also scanned line by line (2 KiB of each line
 *    kept, nothing else buffered) for the part headers, and the
 *    Content-Disposition of the part named "file" is read with the same
 *    parser as on PUT; MHD's filename is the fallback. Part data and
 *    fields still come only from MHD. Part headers must end in CRLF for
 *    MHD: a body framed with bare LF yields no fields and is refused as
 *    malformed_multipart (case C22).
 * 3. server.max_body_bytes counts file bytes: a multipart body may carry up
 *    to 16 KiB of framing beyond it (server/http.c), the file part itself is
 *    capped here (case C23).
 * 4. The content view streams chunked (size unknown to MHD), so the blob
 *    reader reaches its end check (size and SHA-256) before the last chunk;
 *    a failure there cuts the stream without the terminating chunk.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sodium.h>
#include <utf8proc.h>

#include "casevault/util.h"
#include "casevault/audit.h"
#include "casevault/blobstore.h"
#include "casevault/case.h"
#include "casevault/db.h"
#include "casevault/intake.h"
#include "routes.h"

#define KIND_MAX      24   /* bytes of a kind value, NUL included */
#define RAW_NAME_MAX  1024 /* bytes of a client file name kept before cleaning */
#define FILE_NAME_MAX 255  /* bytes of the recorded name */
#define EXT_MAX       16   /* longest extension (dot included) kept when cutting */

struct upload {
    struct MHD_PostProcessor *pp; /* multipart only */
    struct cv_blob_writer *w;     /* the original, streaming in */
    uint64_t file_bytes;
    unsigned long long file_cap;
    char kind[KIND_MAX];
    size_t kind_len;
    int kind_bad;  /* kind field longer than KIND_MAX - 1 */
    int file_seen; /* multipart: a part named "file" began */
    int file_dup;  /* a second file part */
    char raw_name[RAW_NAME_MAX];
    size_t raw_name_len;
    int have_name;
    int cd_name; /* the name came from our own reading of the part header */
    /* multipart part-header scanner (DESIGN NOTE 2) */
    char delim[80]; /* "--" + boundary */
    size_t delim_len;
    char line[2048]; /* first bytes of the current line */
    size_t line_len;
    int in_headers;
    cv_status err; /* first error inside the post processor iterator */
};

static void upload_free(struct upload *up)
{
    if (up == NULL)
        return;
    if (up->pp)
        MHD_destroy_post_processor(up->pp);
    cv_blob_put_abort(up->w);
    free(up);
}

void cv_documents_stream_abort(struct cv_request *req)
{
    upload_free(req->stream_ctx);
    req->stream_ctx = NULL;
}

/* ---- client file names ---- */

static void name_set(struct upload *up, const char *s, size_t n)
{
    if (n > RAW_NAME_MAX)
        n = RAW_NAME_MAX;
    memcpy(up->raw_name, s, n);
    up->raw_name_len = n;
    up->have_name = 1;
}

/*
 * clean_file_name - DESIGN NOTE 1. In: raw[len] (any bytes). Out: out[cap]
 * (cap > FILE_NAME_MAX), valid NFC UTF-8 of at most FILE_NAME_MAX bytes.
 * Returns 1 when the name is not empty.
 */
static int clean_file_name(const char *raw, size_t len, char *out, size_t cap)
{
    /* Each input byte becomes at most 3 bytes (U+FFFD). */
    size_t bcap = len * 3 + 1, n = 0;
    uint8_t *buf = malloc(bcap);
    utf8proc_uint8_t *nfc = NULL;
    int ok = 0;
    if (buf == NULL)
        return 0;
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k =
            utf8proc_iterate((const utf8proc_uint8_t *)raw + i, (utf8proc_ssize_t)(len - i), &cp);
        if (k <= 0) {
            cp = 0xFFFD;
            k = 1;
        }
        if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0))
            cp = 0xFFFD;
        n += (size_t)utf8proc_encode_char(cp, buf + n);
        i += (size_t)k;
    }
    buf[n] = 0;
    nfc = utf8proc_NFC(buf);
    if (nfc == NULL)
        goto out;
    size_t m = strlen((char *)nfc);
    if (m > FILE_NAME_MAX) {
        /* Keep a short extension, cut the stem on a character boundary. */
        const char *dot = strrchr((char *)nfc, '.');
        size_t ext = dot && (size_t)((const char *)nfc + m - dot) <= EXT_MAX
                         ? (size_t)((const char *)nfc + m - dot)
                         : 0;
        size_t stem = FILE_NAME_MAX - ext;
        while (stem > 0 && (nfc[stem] & 0xC0) == 0x80)
            stem--;
        memmove(nfc + stem, nfc + m - ext, ext);
        m = stem + ext;
        nfc[m] = 0;
    }
    if (m == 0 || m >= cap)
        goto out;
    memcpy(out, nfc, m + 1);
    ok = 1;
out:
    free(nfc);
    free(buf);
    return ok;
}

/*
 * disposition_name - the file name of a Content-Disposition header value
 * (RFC 6266): filename* (RFC 8187, UTF-8 or ISO-8859-1) wins over filename
 * (quoted-string with backslash escapes, or a token). Writes the raw bytes
 * into up (cleaned later).
 */
static void disposition_name(struct upload *up, const char *v)
{
    char tmp[RAW_NAME_MAX];
    size_t n = 0;
    const char *p = strcasestr(v, "filename*=");
    if (p != NULL) {
        p += 10;
        int latin1 = strncasecmp(p, "iso-8859-1'", 11) == 0;
        const char *q = strchr(p, '\'');
        if (q && (latin1 || strncasecmp(p, "utf-8'", 6) == 0) && (q = strchr(q + 1, '\''))) {
            for (q++; *q && *q != ';' && *q != ' ' && n + 2 < sizeof tmp; q++) {
                int c = (unsigned char)*q;
                if (c == '%' && cv_hex_digit(q[1]) >= 0 && cv_hex_digit(q[2]) >= 0) {
                    c = cv_hex_digit(q[1]) * 16 + cv_hex_digit(q[2]);
                    q += 2;
                }
                if (latin1 && c >= 0x80) {
                    tmp[n++] = (char)(0xC0 | (c >> 6));
                    tmp[n++] = (char)(0x80 | (c & 0x3F));
                } else {
                    tmp[n++] = (char)c;
                }
            }
            if (n > 0) {
                name_set(up, tmp, n);
                return;
            }
        }
    }
    for (p = v; (p = strcasestr(p, "filename")) != NULL; p += 8) {
        const char *q = p + 8;
        while (*q == ' ')
            q++;
        if (*q != '=')
            continue;
        q++;
        while (*q == ' ')
            q++;
        if (*q == '"') {
            const char *open = q + 1, *e = open;
            for (; *e && *e != '"'; e++)
                if (*e == '\\' && e[1])
                    e++;
            /* A raw quote inside the name (filename="id"card.jpg", case
             * C14a): the value then runs to the last quote before ';' or
             * the end. */
            const char *after = *e ? e + 1 : e;
            while (*after == ' ')
                after++;
            if (*e == '"' && *after != '\0' && *after != ';') {
                const char *last = strrchr(after, '"');
                if (last != NULL)
                    e = last;
            }
            for (q = open; q < e && *q && n < sizeof tmp; q++) {
                if (*q == '\\' && q + 1 < e)
                    q++;
                tmp[n++] = *q;
            }
        } else {
            for (; *q && *q != ';' && *q != ' ' && n < sizeof tmp; q++)
                tmp[n++] = *q;
        }
        if (n > 0)
            name_set(up, tmp, n);
        return;
    }
}

/* ---- request checks shared by both upload routes ---- */

static int kind_required(const struct cv_case_info *c, const char *kind)
{
    unsigned n = 0;
    const char *const *k = cv_case_required_kinds(c->applicant_type, &n);
    for (unsigned i = 0; i < n; i++)
        if (strcmp(k[i], kind) == 0)
            return 1;
    return 0;
}

static void reply_kind(struct cv_request *req, const struct cv_case_info *c)
{
    unsigned n = 0;
    const char *const *k = cv_case_required_kinds(c ? c->applicant_type : "", &n);
    char list[CV_KIND_LIST_MAX] = "";
    for (unsigned i = 0; i < n; i++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", l ? ", " : "", k[i]);
    }
    cv_reply_problem(req, CV_E_INVALID_FIELD, json_pack("{s:s}", "field", "kind"),
                     "kind must be a document kind this case requires%s%s", n ? ": " : "", list);
}

/* Refusals that need no body: bad case id, case not accepting uploads, and
 * (PUT) a kind the case does not require. Replies itself; 0 = refused. */
static int upload_precheck(struct cv_request *req, const char *kind, struct cv_case_info *c)
{
    const char *id = cv_req_param(req, "id");
    if (id == NULL || !cv_ulid_valid(id)) {
        cv_reply_problem(req, CV_E_NOT_FOUND, NULL, "no such case");
        return 0;
    }
    cv_status st = cv_case_get(req->srv->dd->db, 0, id, c);
    if (st != CV_OK) {
        cv_reply_problem(req, st, NULL, st == CV_E_NOT_FOUND ? "no such case" : NULL);
        return 0;
    }
    if (!cv_case_uploads_allowed(c->status)) {
        cv_reply_problem(req, CV_E_INVALID_TRANSITION, NULL,
                         "the case is %s and accepts no uploads", cv_case_status_str(c->status));
        return 0;
    }
    if (kind != NULL && !kind_required(c, kind)) {
        reply_kind(req, c);
        return 0;
    }
    return 1;
}

static cv_status upload_new(struct cv_request *req, int need_writer, struct upload **out)
{
    struct upload *up = calloc(1, sizeof *up);
    cv_status st;
    if (up == NULL)
        return CV_E_NOMEM;
    up->file_cap = req->srv->cfg.max_body_bytes;
    if (need_writer && (st = cv_blob_put_begin(req->srv->dd->bs, &up->w)) != CV_OK) {
        free(up);
        return st;
    }
    *out = up;
    return CV_OK;
}

/* ---- PUT (raw body) ---- */

cv_status cv_documents_put_begin(struct cv_request *req)
{
    struct cv_case_info c;
    struct upload *up = NULL;
    const char *kind = cv_req_param(req, "kind");
    if (!upload_precheck(req, kind, &c))
        return CV_E_INVALID_FIELD; /* already answered */
    cv_status st = upload_new(req, 1, &up);
    if (st != CV_OK)
        return st;
    snprintf(up->kind, sizeof up->kind, "%s", kind);
    const char *cd = cv_req_header(req, "Content-Disposition");
    if (cd != NULL)
        disposition_name(up, cd);
    req->stream_ctx = up;
    return CV_OK;
}

cv_status cv_documents_put_data(struct cv_request *req, const char *data, size_t len)
{
    struct upload *up = req->stream_ctx;
    up->file_bytes += len;
    if (up->file_bytes > up->file_cap) { /* the HTTP layer's cap has multipart slack */
        snprintf(req->failed_detail, sizeof req->failed_detail,
                 "the file may be at most %llu bytes", up->file_cap);
        return CV_E_PAYLOAD_TOO_LARGE;
    }
    return cv_blob_put_write(up->w, data, len);
}

/* ---- POST (multipart/form-data) ---- */

static enum MHD_Result post_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *filename, const char *content_type,
                                 const char *transfer_encoding, const char *data, uint64_t off,
                                 size_t size)
{
    (void)kind;
    (void)content_type;
    (void)transfer_encoding;
    struct upload *up = cls;
    if (up->err != CV_OK)
        return MHD_NO;
    if (key == NULL)
        return MHD_YES;
    if (strcmp(key, "kind") == 0) {
        if (off != up->kind_len || up->kind_len + size >= KIND_MAX) {
            up->kind_bad = 1;
            return MHD_YES;
        }
        memcpy(up->kind + up->kind_len, data, size);
        up->kind_len += size;
        up->kind[up->kind_len] = 0;
        return MHD_YES;
    }
    if (strcmp(key, "file") != 0)
        return MHD_YES; /* other fields are ignored, never buffered */
    if (off == 0 && up->file_seen && up->file_bytes > 0) {
        up->file_dup = 1;
        up->err = CV_E_MALFORMED_MULTIPART;
        return MHD_NO;
    }
    if (!up->file_seen) {
        up->file_seen = 1;
        if (filename != NULL && !up->cd_name)
            name_set(up, filename, strlen(filename));
    }
    if (size == 0)
        return MHD_YES;
    up->file_bytes += size;
    if (up->file_bytes > up->file_cap) {
        up->err = CV_E_PAYLOAD_TOO_LARGE;
        return MHD_NO;
    }
    cv_status st = cv_blob_put_write(up->w, data, size);
    if (st != CV_OK) {
        up->err = st;
        return MHD_NO;
    }
    return MHD_YES;
}

/* One complete line of the multipart body (CR stripped): a delimiter
 * starts a part's headers, an empty line ends them; the Content-Disposition
 * of the part named "file" gives the file name (filename*, escapes). */
static void scan_line(struct upload *up, const char *l, size_t n)
{
    if (n >= up->delim_len && memcmp(l, up->delim, up->delim_len) == 0) {
        up->in_headers = 1;
        return;
    }
    if (!up->in_headers)
        return;
    if (n == 0) {
        up->in_headers = 0;
        return;
    }
    char h[sizeof up->line + 1];
    memcpy(h, l, n);
    h[n] = 0;
    if (strncasecmp(h, "content-disposition:", 20) != 0)
        return;
    const char *p = h + 20;
    int is_file = 0;
    while ((p = strcasestr(p, "name=")) != NULL) {
        if (p > h && (p[-1] == ' ' || p[-1] == ';') &&
            (strncmp(p + 5, "\"file\"", 6) == 0 ||
             (strncmp(p + 5, "file", 4) == 0 && (p[9] == ';' || p[9] == ' ' || p[9] == 0))))
            is_file = 1;
        p += 5;
    }
    if (is_file && !up->cd_name) {
        up->have_name = 0;
        disposition_name(up, h + 20);
        up->cd_name = up->have_name;
    }
}

static void scan_multipart(struct upload *up, const char *data, size_t len)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;
        size_t room = sizeof up->line - up->line_len;
        memcpy(up->line + up->line_len, data, take < room ? take : room);
        up->line_len += take < room ? take : room;
        if (nl == NULL)
            return;
        size_t n = up->line_len;
        if (n > 0 && up->line[n - 1] == '\r')
            n--;
        scan_line(up, up->line, n);
        up->line_len = 0;
        data = nl + 1;
        len -= take + 1;
    }
}

/* The boundary parameter of a multipart Content-Type (quoted or token). */
static void set_delim(struct upload *up, const char *ct)
{
    const char *b = strcasestr(ct, "boundary=");
    if (b == NULL)
        return;
    b += 9;
    int quoted = *b == '"';
    b += quoted;
    size_t n = quoted ? strcspn(b, "\"") : strcspn(b, "; \t");
    if (n == 0 || n + 2 >= sizeof up->delim)
        return;
    up->delim[0] = up->delim[1] = '-';
    memcpy(up->delim + 2, b, n);
    up->delim_len = n + 2;
}

cv_status cv_documents_post_begin(struct cv_request *req)
{
    struct cv_case_info c;
    struct upload *up = NULL;
    const char *ct = cv_req_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (ct == NULL || strncasecmp(ct, "multipart/form-data", 19) != 0) {
        cv_reply_problem(req, CV_E_UNSUPPORTED_MEDIA_TYPE, NULL,
                         "send multipart/form-data with the fields kind and file, or PUT the "
                         "raw file to /v1/cases/{id}/documents/{kind}");
        return CV_E_UNSUPPORTED_MEDIA_TYPE;
    }
    if (!upload_precheck(req, NULL, &c))
        return CV_E_INVALID_FIELD;
    cv_status st = upload_new(req, 1, &up);
    if (st != CV_OK)
        return st;
    set_delim(up, ct);
    up->pp = MHD_create_post_processor(req->conn, 65536, post_iter, up);
    if (up->pp == NULL) {
        upload_free(up);
        cv_reply_problem(req, CV_E_MALFORMED_MULTIPART, NULL,
                         "the multipart boundary is missing or invalid");
        return CV_E_MALFORMED_MULTIPART;
    }
    req->stream_ctx = up;
    return CV_OK;
}

cv_status cv_documents_post_data(struct cv_request *req, const char *data, size_t len)
{
    struct upload *up = req->stream_ctx;
    if (up->delim_len > 0)
        scan_multipart(up, data, len);
    if (MHD_post_process(up->pp, data, len) != MHD_YES) {
        if (up->err == CV_E_PAYLOAD_TOO_LARGE)
            snprintf(req->failed_detail, sizeof req->failed_detail,
                     "the file may be at most %llu bytes", up->file_cap);
        return up->err != CV_OK ? up->err : CV_E_MALFORMED_MULTIPART;
    }
    return CV_OK;
}

/* ---- the handler: normalize, store, record ---- */

struct blob_src {
    struct cv_blob_reader *r;
};

static ssize_t read_blob(void *arg, uint8_t *buf, size_t cap)
{
    struct blob_src *s = arg;
    size_t got = 0;
    if (cv_blob_get_read(s->r, buf, cap, &got) != CV_OK || got == 0)
        return -1;
    return (ssize_t)got;
}

static void audit_refused(struct cv_request *req, const char *case_id, const char *kind,
                          const struct cv_blob_info *oi, cv_status why)
{
    struct cv_datadir *dd = req->srv->dd;
    char hex[CV_SHA256_LEN * 2 + 1];
    int http = 0;
    const char *code = NULL;
    cv_status_http(why, &http, &code);
    cv_hex_encode(oi->sha256, CV_SHA256_LEN, hex);
    json_t *d = json_pack("{s:s,s:s,s:I,s:s}", "kind", kind, "sha256", hex, "size",
                          (json_int_t)oi->size, "code", code ? code : "");
    struct cv_audit_event ev = {.action = "document.refused",
                                .actor_id = req->who.token_id,
                                .actor_role = cv_role_str(req->who.role),
                                .case_id = case_id,
                                .request_id = req->id,
                                .client = req->client,
                                .outcome = "refused",
                                .details = d};
    if (cv_db_begin(dd->db) == CV_OK) {
        if (cv_audit_append(dd->db, &ev, NULL) == CV_OK)
            cv_db_commit(dd->db);
        else
            cv_db_rollback(dd->db);
    }
    json_decref(d);
}

static int image_refusal(cv_status st)
{
    return st == CV_E_UNSUPPORTED_MEDIA_TYPE || st == CV_E_IMAGE_TOO_LARGE ||
           st == CV_E_IMAGE_TOO_SMALL || st == CV_E_IMAGE_UNDECODABLE ||
           st == CV_E_IMAGE_TRUNCATED || st == CV_E_EMPTY_FILE;
}

static void upload_finish(struct cv_request *req)
{
    struct upload *up = req->stream_ctx;
    struct cv_datadir *dd = req->srv->dd;
    const struct cv_config *cfg = &req->srv->cfg;
    const char *case_id = cv_req_param(req, "id");
    struct cv_blob_writer *nw = NULL;
    struct cv_blob_reader *rd = NULL;
    struct cv_blob_info oi, ni;
    struct cv_intake_image img = {0};
    struct cv_case_info c;
    char name[FILE_NAME_MAX + 1] = "";
    char doc_id[CV_ULID_LEN + 1], sup[CV_ULID_LEN + 1];
    char ohex[CV_SHA256_LEN * 2 + 1], nhex[CV_SHA256_LEN * 2 + 1];
    int have_oi = 0, in_txn = 0;
    cv_status st;

    if (up->pp != NULL) {
        MHD_destroy_post_processor(up->pp);
        up->pp = NULL;
        if (up->err != CV_OK) {
            st = up->err;
            goto fail;
        }
        if (up->kind_bad || up->kind_len == 0 || !up->file_seen) {
            cv_reply_problem(req, CV_E_MALFORMED_MULTIPART,
                             json_pack("{s:s}", "field", up->file_seen ? "kind" : "file"),
                             "the form needs one field kind and one file part named file "
                             "(parts framed with CRLF)");
            goto out;
        }
    }
    if (cv_intake_kind_max_side(up->kind) == 0 || cv_case_get(dd->db, 0, case_id, &c) != CV_OK ||
        !kind_required(&c, up->kind)) {
        reply_kind(req, NULL);
        goto out;
    }
    if ((st = cv_blob_put_finish(up->w, &oi)) != CV_OK)
        goto fail;
    have_oi = 1;
    if (up->file_bytes == 0) {
        st = CV_E_EMPTY_FILE;
        goto fail;
    }
    if ((st = cv_blob_put_commit(up->w)) != CV_OK)
        goto fail;
    /* Stream the original back, decrypted, into a sandboxed worker. */
    if ((st = cv_blob_get_open_info(dd->bs, &oi, &rd)) != CV_OK)
        goto fail;
    struct blob_src src = {rd};
    struct cv_intake_limits lim = {.max_megapixels = cfg->max_megapixels,
                                   .max_side_px = cfg->max_side_px,
                                   .min_short_side_px = cfg->min_short_side_px,
                                   .max_out_side_px = cv_intake_kind_max_side(up->kind)};
    st = cv_intake_pool_normalize_stream(req->srv->pool, (size_t)oi.size, read_blob, &src, &lim,
                                         &img);
    cv_blob_get_close(rd);
    rd = NULL;
    if (st != CV_OK)
        goto fail;
    if ((st = cv_blob_put_begin(dd->bs, &nw)) != CV_OK ||
        (st = cv_blob_put_write(nw, img.data, img.len)) != CV_OK ||
        (st = cv_blob_put_finish(nw, &ni)) != CV_OK || (st = cv_blob_put_commit(nw)) != CV_OK)
        goto fail;
    if (up->have_name)
        clean_file_name(up->raw_name, up->raw_name_len, name, sizeof name);
    cv_hex_encode(oi.sha256, CV_SHA256_LEN, ohex);
    cv_hex_encode(ni.sha256, CV_SHA256_LEN, nhex);
    struct cv_document_new doc = {
        .kind = up->kind,
        .original_blob_id = oi.id,
        .normalized_blob_id = ni.id,
        .source_format = cv_image_format_name(img.source),
        .original_size = (int64_t)oi.size,
        .original_sha256 = ohex,
        .normalized_sha256 = nhex,
        .width = img.width,
        .height = img.height,
        /* 0: libheif applied the container's transform; the pixels are upright. */
        .orientation_applied = img.orientation >= 1 && img.orientation <= 8 ? img.orientation : 1,
        .file_name = name[0] ? name : NULL,
    };
    if ((st = cv_db_begin(dd->db)) != CV_OK)
        goto fail;
    in_txn = 1;
    if ((st = cv_blob_record(dd->bs, &oi)) != CV_OK ||
        (st = cv_blob_record(dd->bs, &ni)) != CV_OK ||
        (st = cv_case_document_add(dd->db, dd->kr, case_id, &doc, doc_id, sup)) != CV_OK)
        goto fail;
    json_t *det = json_pack("{s:s,s:s,s:s,s:I,s:s,s:I,s:I}", "kind", up->kind, "sha256", ohex,
                            "normalized_sha256", nhex, "size", (json_int_t)oi.size, "source_format",
                            doc.source_format, "width", (json_int_t)img.width, "height",
                            (json_int_t)img.height);
    if (sup[0])
        json_object_set_new(det, "superseded_id", json_string(sup));
    struct cv_case_actor a = cv_request_actor(req);
    struct cv_audit_event ev = {.action = "document.upload",
                                .actor_id = a.id,
                                .actor_role = a.role,
                                .case_id = case_id,
                                .object_id = doc_id,
                                .request_id = req->id,
                                .client = req->client,
                                .details = det};
    st = cv_audit_append(dd->db, &ev, NULL);
    json_decref(det);
    if (st != CV_OK || (st = cv_db_commit(dd->db)) != CV_OK)
        goto fail;
    in_txn = 0;
    cv_blob_put_done(up->w);
    up->w = NULL;
    cv_blob_put_done(nw);
    nw = NULL;
    json_t *j = json_object();
    json_object_set_new(j, "id", json_string(doc_id));
    json_object_set_new(j, "case_id", json_string(case_id));
    json_object_set_new(j, "kind", json_string(up->kind));
    json_object_set_new(j, "sha256", json_string(ohex));
    json_object_set_new(j, "size", json_integer((json_int_t)oi.size));
    json_object_set_new(j, "source_format", json_string(doc.source_format));
    json_object_set_new(j, "normalized_sha256", json_string(nhex));
    json_object_set_new(j, "media_type", json_string(img.media_type));
    json_object_set_new(j, "width", json_integer(img.width));
    json_object_set_new(j, "height", json_integer(img.height));
    json_object_set_new(j, "orientation_applied", json_integer(doc.orientation_applied));
    json_object_set_new(j, "file_name", name[0] ? json_string(name) : json_null());
    json_object_set_new(j, "superseded_id", sup[0] ? json_string(sup) : json_null());
    char loc[160];
    snprintf(loc, sizeof loc, "/v1/cases/%s/documents/%s/content", case_id, doc_id);
    cv_reply_header(req, "Location", loc);
    cv_reply_json(req, 201, j);
    goto out;
fail:
    if (in_txn)
        cv_db_rollback(dd->db);
    cv_blob_get_close(rd);
    cv_blob_put_abort(nw);
    nw = NULL;
    cv_blob_put_abort(up->w);
    up->w = NULL;
    if (have_oi && image_refusal(st))
        audit_refused(req, case_id, up->kind, &oi, st);
    if (st == CV_E_BUSY) {
        cv_reply_header(req, "Retry-After", "2");
        cv_reply_problem(req, st, NULL, "all image decoders are busy; retry in a few seconds");
    } else if (st == CV_E_PAYLOAD_TOO_LARGE) {
        cv_reply_problem(req, st, NULL, "the file may be at most %llu bytes", up->file_cap);
    } else if (st == CV_E_INVALID_FIELD) {
        reply_kind(req, NULL);
    } else if (st == CV_E_INVALID_TRANSITION) {
        cv_reply_problem(req, st, NULL, "the case accepts no upload of this kind now");
    } else {
        cv_reply_problem(req, st, NULL, NULL);
    }
out:
    cv_intake_image_deinit(&img);
    cv_blob_put_abort(nw);
    upload_free(up);
    req->stream_ctx = NULL;
}

void cv_route_documents_put(struct cv_request *req)
{
    upload_finish(req);
}

void cv_route_documents_post(struct cv_request *req)
{
    upload_finish(req);
}

/* ---- GET .../documents/{doc}/content ---- */

struct content {
    struct cv_blob_reader *r;
};

static ssize_t content_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct content *c = cls;
    size_t got = 0;
    if (cv_blob_get_read(c->r, buf, max, &got) != CV_OK)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    if (got == 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    return (ssize_t)got;
}

static void content_free(void *cls)
{
    struct content *c = cls;
    cv_blob_get_close(c->r);
    free(c);
}

static const char *media_type_of(const char *source_format)
{
    static const struct {
        const char *f, *t;
    } m[] = {{"jpeg", "image/jpeg"}, {"png", "image/png"},   {"webp", "image/webp"},
             {"heif", "image/heic"}, {"avif", "image/avif"}, {"tiff", "image/tiff"},
             {"bmp", "image/bmp"},   {"gif", "image/gif"}};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (strcmp(m[i].f, source_format) == 0)
            return m[i].t;
    return "application/octet-stream";
}

void cv_route_documents_content(struct cv_request *req)
{
    struct cv_datadir *dd = req->srv->dd;
    const char *case_id = cv_req_param(req, "id");
    const char *doc_id = cv_req_param(req, "doc");
    const char *variant = cv_req_query(req, "variant");
    struct cv_document_info d;
    struct cv_blob_info bi;
    struct content *c = NULL;
    int original = 0;
    cv_status st;

    if (variant != NULL && strcmp(variant, "original") == 0) {
        original = 1;
    } else if (variant != NULL && strcmp(variant, "normalized") != 0) {
        cv_reply_problem(req, CV_E_INVALID_FIELD, json_pack("{s:s}", "field", "variant"),
                         "variant must be normalized or original");
        return;
    }
    if (original && req->who.role != CV_ROLE_AUDITOR) {
        cv_reply_problem(req, CV_E_FORBIDDEN, NULL, "only auditors may read the original file");
        return;
    }
    if (case_id == NULL || doc_id == NULL || !cv_ulid_valid(case_id) || !cv_ulid_valid(doc_id) ||
        cv_case_document_get(dd->db, 0, case_id, doc_id, &d) != CV_OK) {
        cv_reply_problem(req, CV_E_NOT_FOUND, NULL, "no such document");
        return;
    }
    if ((c = calloc(1, sizeof *c)) == NULL) {
        cv_reply_problem(req, CV_E_NOMEM, NULL, NULL);
        return;
    }
    const char *blob = original ? d.original_blob_id : d.normalized_blob_id;
    if ((st = cv_blob_lookup(dd->bs, blob, &bi)) != CV_OK ||
        (st = cv_blob_get_open_info(dd->bs, &bi, &c->r)) != CV_OK) {
        cv_reply_problem(req, CV_E_INTERNAL, NULL, "the stored document cannot be read");
        goto fail;
    }
    /* The read is audited before a byte leaves. */
    json_t *det =
        json_pack("{s:s,s:s,s:s}", "variant", original ? "original" : "normalized", "kind", d.kind,
                  "sha256", original ? d.original_sha256 : d.normalized_sha256);
    struct cv_audit_event ev = {.action = "document.view",
                                .actor_id = req->who.token_id,
                                .actor_role = cv_role_str(req->who.role),
                                .case_id = case_id,
                                .object_id = doc_id,
                                .request_id = req->id,
                                .client = req->client,
                                .details = det};
    st = cv_db_begin(dd->db);
    if (st == CV_OK) {
        st = cv_audit_append(dd->db, &ev, NULL);
        if (st == CV_OK)
            st = cv_db_commit(dd->db);
        else
            cv_db_rollback(dd->db);
    }
    json_decref(det);
    if (st != CV_OK) {
        cv_reply_problem(req, st, NULL, NULL);
        goto fail;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 65536, content_read, c, content_free);
    if (resp == NULL) {
        cv_reply_problem(req, CV_E_NOMEM, NULL, NULL);
        goto fail;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            original ? media_type_of(d.source_format) : "image/jpeg");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-SHA256",
                            original ? d.original_sha256 : d.normalized_sha256);
    cv_reply_response(req, 200, resp);
    return;
fail:
    content_free(c);
}
