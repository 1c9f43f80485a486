/*
 * storage/verify_export: the offline check of a case archive (DESIGN §6),
 * what `casevault verify-export` runs on an auditor's machine. It trusts
 * only the two public keys it is given, never anything in the archive, and
 * reads the archive once, in order, hashing every member as it streams
 * (only the small text members are kept, each capped). It names every
 * failure: the member, the manifest line, the entry index.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "casevault/archive.h"
#include "casevault/checkpoint.h"
#include "casevault/export.h"
#include "casevault/merkle.h"
#include "casevault/minisign.h"
#include "casevault/util.h"

#define VERIFY_TEXT_MAX    (64u << 20) /* bytes of a kept text member */
#define VERIFY_MEMBERS_MAX 200000
#define VERIFY_ENTRY_MAX   (UINT64_C(1) << 40)

enum keep { K_NONE, K_MANIFEST, K_SIG, K_CHECKPOINT, K_ENTRIES, K_PROOFS, K_N };

struct seen {
    char *name;
    char sha256[65];
    int listed;
};

struct vstate {
    cv_export_report_fn report;
    void *arg;
    cv_status first;
    char *text[K_N];
    size_t text_len[K_N];
    struct seen *seen;
    size_t nseen, capseen;
};

static void fail(struct vstate *v, cv_status st, const char *check, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fail(struct vstate *v, cv_status st, const char *check, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (v->first == CV_OK)
        v->first = st;
    v->report(v->arg, check, 0, msg);
}

static void pass(struct vstate *v, const char *check, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void pass(struct vstate *v, const char *check, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    v->report(v->arg, check, 1, msg);
}

static enum keep keep_of(const char *name)
{
    if (strcmp(name, "MANIFEST.sha256") == 0)
        return K_MANIFEST;
    if (strcmp(name, "MANIFEST.sha256.minisig") == 0)
        return K_SIG;
    if (strcmp(name, "audit/checkpoint") == 0)
        return K_CHECKPOINT;
    if (strcmp(name, "audit/entries.jsonl") == 0)
        return K_ENTRIES;
    if (strcmp(name, "audit/proofs.json") == 0)
        return K_PROOFS;
    return K_NONE;
}

/* Read the whole archive: hash every member, keep the text ones. */
static cv_status read_archive(struct vstate *v, int fd, int seekable)
{
    cv_status rc = CV_E_INTERNAL;
    struct cv_archive_reader *r = NULL;
    uint8_t *buf = malloc(65536);
    char *text = NULL;
    struct cv_sha256 *h = NULL;
    const char *name = NULL;
    if (buf == NULL)
        return CV_E_NOMEM;
    if ((rc = cv_archive_reader_open_fd(fd, seekable, VERIFY_ENTRY_MAX, &r)) != CV_OK) {
        fail(v, CV_E_MANIFEST_MISMATCH, "archive", "not a tar or zip archive");
        goto out;
    }
    for (;;) {
        uint64_t size = 0;
        rc = cv_archive_next(r, &name, &size);
        if (rc == CV_E_NOT_FOUND)
            break;
        if (rc != CV_OK) {
            fail(v, CV_E_MANIFEST_MISMATCH, "archive", "%s%s%s", cv_status_str(rc),
                 name ? " at member " : " after the last complete member", name ? name : "");
            goto out;
        }
        enum keep k = keep_of(name);
        if (k != K_NONE && (size > VERIFY_TEXT_MAX || v->text[k] != NULL)) {
            fail(v, CV_E_MANIFEST_MISMATCH, "archive", "%s: %s", name,
                 v->text[k] ? "present twice" : "too large");
            rc = CV_E_MANIFEST_MISMATCH;
            goto out;
        }
        for (size_t i = 0; i < v->nseen; i++)
            if (strcmp(v->seen[i].name, name) == 0) {
                fail(v, CV_E_MANIFEST_MISMATCH, "archive", "%s: present twice", name);
                rc = CV_E_MANIFEST_MISMATCH;
                goto out;
            }
        if (v->nseen == v->capseen) {
            size_t nc = v->capseen ? v->capseen * 2 : 32;
            struct seen *ns = nc > VERIFY_MEMBERS_MAX ? NULL : realloc(v->seen, nc * sizeof *ns);
            if (ns == NULL) {
                rc = CV_E_NOMEM;
                goto out;
            }
            v->seen = ns;
            v->capseen = nc;
        }
        struct seen *s = &v->seen[v->nseen];
        memset(s, 0, sizeof *s);
        if ((s->name = strdup(name)) == NULL) {
            rc = CV_E_NOMEM;
            goto out;
        }
        v->nseen++;
        /* a zip read from a pipe may not know the size up front (0): grow */
        size_t tcap = (size_t)size + 1;
        if (k != K_NONE && (text = malloc(tcap)) == NULL) {
            rc = CV_E_NOMEM;
            goto out;
        }
        if ((h = cv_sha256_new()) == NULL) {
            rc = CV_E_NOMEM;
            goto out;
        }
        size_t off = 0;
        for (;;) {
            size_t got = 0;
            if ((rc = cv_archive_read(r, buf, 65536, &got)) != CV_OK) {
                fail(v, CV_E_MANIFEST_MISMATCH, "archive", "%s: data cut short or corrupt", name);
                goto out;
            }
            if (got == 0)
                break;
            cv_sha256_update(h, buf, got);
            if (text != NULL) {
                if (off + got > VERIFY_TEXT_MAX) {
                    fail(v, CV_E_MANIFEST_MISMATCH, "archive", "%s: too large", name);
                    rc = CV_E_MANIFEST_MISMATCH;
                    goto out;
                }
                if (off + got + 1 > tcap) {
                    size_t nc = tcap * 2 > off + got + 1 ? tcap * 2 : off + got + 1;
                    char *nt = realloc(text, nc);
                    if (nt == NULL) {
                        rc = CV_E_NOMEM;
                        goto out;
                    }
                    text = nt;
                    tcap = nc;
                }
                memcpy(text + off, buf, got);
            }
            off += got;
        }
        if (off < size) {
            fail(v, CV_E_MANIFEST_MISMATCH, "archive",
                 "%s: cut short (%zu of %llu bytes); the stream ends there", name, off,
                 (unsigned long long)size);
            rc = CV_E_MANIFEST_MISMATCH;
            goto out;
        }
        uint8_t d[32];
        cv_sha256_final(h, d);
        h = NULL;
        cv_hex_encode(d, 32, s->sha256);
        if (text != NULL) {
            text[off] = '\0';
            v->text[k] = text;
            v->text_len[k] = off;
            text = NULL;
        }
    }
    pass(v, "archive", "%zu files read to the end", v->nseen);
    rc = CV_OK;
out:
    cv_sha256_free(h);
    free(text);
    free(buf);
    cv_archive_reader_free(r);
    return rc;
}

static struct seen *find_seen(struct vstate *v, const char *name)
{
    for (size_t i = 0; i < v->nseen; i++)
        if (strcmp(v->seen[i].name, name) == 0)
            return &v->seen[i];
    return NULL;
}

static void check_manifest(struct vstate *v)
{
    const char *m = v->text[K_MANIFEST];
    unsigned bad = 0, lines = 0;
    if (m == NULL) {
        fail(v, CV_E_MANIFEST_MISMATCH, "manifest", "MANIFEST.sha256 is missing");
        return;
    }
    if (strlen(m) != v->text_len[K_MANIFEST]) {
        fail(v, CV_E_MANIFEST_MISMATCH, "manifest", "MANIFEST.sha256 holds a NUL byte");
        return;
    }
    const char *p = m;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        lines++;
        char name[1024];
        if (len < 67 || len - 66 >= sizeof name || p[64] != ' ' || p[65] != ' ') {
            fail(v, CV_E_MANIFEST_MISMATCH, "manifest", "MANIFEST.sha256 line %u is malformed",
                 lines);
            bad++;
        } else {
            char hex[65];
            memcpy(hex, p, 64);
            hex[64] = '\0';
            memcpy(name, p + 66, len - 66);
            name[len - 66] = '\0';
            struct seen *s = find_seen(v, name);
            if (s == NULL) {
                fail(v, CV_E_MANIFEST_MISMATCH, "manifest",
                     "%s: listed in MANIFEST.sha256 but missing", name);
                bad++;
            } else if (s->listed) {
                fail(v, CV_E_MANIFEST_MISMATCH, "manifest", "%s: listed twice", name);
                bad++;
            } else {
                s->listed = 1;
                if (strcmp(s->sha256, hex) != 0) {
                    fail(v, CV_E_MANIFEST_MISMATCH, "manifest",
                         "%s: SHA-256 differs from MANIFEST.sha256", name);
                    bad++;
                }
            }
        }
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    for (size_t i = 0; i < v->nseen; i++) {
        struct seen *s = &v->seen[i];
        if (!s->listed && strcmp(s->name, "MANIFEST.sha256") != 0 &&
            strcmp(s->name, "MANIFEST.sha256.minisig") != 0) {
            fail(v, CV_E_MANIFEST_MISMATCH, "manifest", "%s: present but not in MANIFEST.sha256",
                 s->name);
            bad++;
        }
    }
    if (bad == 0)
        pass(v, "manifest", "%u files match MANIFEST.sha256, no unlisted file", lines);
}

/* Parse "casevault export case=<id> as_of=<N>". */
static int parse_comment(const char *c, char case_id[CV_ULID_LEN + 1], uint64_t *n)
{
    char id[64];
    unsigned long long x = 0;
    int used = 0;
    if (sscanf(c, "casevault export case=%63s as_of=%llu%n", id, &x, &used) != 2 ||
        c[used] != '\0' || !cv_ulid_valid(id))
        return 0;
    memcpy(case_id, id, CV_ULID_LEN + 1);
    *n = x;
    return 1;
}

static int check_signature(struct vstate *v, const char *pubkey, char case_id[CV_ULID_LEN + 1],
                           uint64_t *n)
{
    char trusted[1024];
    if (v->text[K_SIG] == NULL) {
        fail(v, CV_E_SIGNATURE_INVALID, "signature", "MANIFEST.sha256.minisig is missing");
        return 0;
    }
    if (v->text[K_MANIFEST] == NULL) {
        fail(v, CV_E_SIGNATURE_INVALID, "signature", "nothing signed: MANIFEST.sha256 is missing");
        return 0;
    }
    cv_status st = cv_minisign_verify(pubkey, v->text[K_SIG], v->text[K_MANIFEST],
                                      v->text_len[K_MANIFEST], trusted, sizeof trusted);
    if (st != CV_OK) {
        fail(v, CV_E_SIGNATURE_INVALID, "signature",
             "MANIFEST.sha256.minisig does not verify with the given public key (%s)",
             cv_status_str(st));
        return 0;
    }
    if (!parse_comment(trusted, case_id, n)) {
        fail(v, CV_E_SIGNATURE_INVALID, "signature",
             "the signed trusted comment does not name a case and a tree size");
        return 0;
    }
    pass(v, "signature", "minisign signature over MANIFEST.sha256 verifies (case %s, as_of %llu)",
         case_id, (unsigned long long)*n);
    return 1;
}

static int check_checkpoint(struct vstate *v, const char *vkey, struct cv_checkpoint *cp)
{
    if (v->text[K_CHECKPOINT] == NULL) {
        fail(v, CV_E_SIGNATURE_INVALID, "checkpoint", "audit/checkpoint is missing");
        return 0;
    }
    cv_status st = cv_checkpoint_verify(v->text[K_CHECKPOINT], v->text_len[K_CHECKPOINT], vkey, cp);
    if (st != CV_OK) {
        fail(v, CV_E_SIGNATURE_INVALID, "checkpoint",
             "audit/checkpoint: signed note does not verify with the given verifier key (%s)",
             cv_status_str(st));
        return 0;
    }
    pass(v, "checkpoint", "audit/checkpoint signed by %s, tree size %llu", cp->origin,
         (unsigned long long)cp->size);
    return 1;
}

static int b64_hash(json_t *j, uint8_t out[32])
{
    const char *s = json_string_value(j);
    size_t len = 0;
    return s != NULL && strlen(s) == 44 &&
           sodium_base642bin(out, 32, s, 44, NULL, &len, NULL, sodium_base64_VARIANT_ORIGINAL) ==
               0 &&
           len == 32;
}

static void check_proofs(struct vstate *v, const struct cv_checkpoint *cp, const char *case_id)
{
    json_t *pj = NULL;
    uint8_t *hashes = NULL;
    unsigned bad = 0;
    size_t count = 0;
    if (v->text[K_ENTRIES] == NULL || v->text[K_PROOFS] == NULL) {
        fail(v, CV_E_PROOF_INVALID, "proofs", "%s is missing",
             v->text[K_ENTRIES] ? "audit/proofs.json" : "audit/entries.jsonl");
        return;
    }
    json_error_t err;
    pj = json_loadb(v->text[K_PROOFS], v->text_len[K_PROOFS], JSON_REJECT_DUPLICATES, &err);
    json_t *arr = json_object_get(pj, "proofs");
    json_t *ts = json_object_get(pj, "tree_size");
    if (!json_is_array(arr) || !json_is_integer(ts)) {
        fail(v, CV_E_PROOF_INVALID, "proofs", "audit/proofs.json is malformed");
        goto out;
    }
    if ((uint64_t)json_integer_value(ts) != cp->size) {
        fail(v, CV_E_PROOF_INVALID, "proofs",
             "audit/proofs.json is for tree size %lld, the checkpoint for %llu",
             (long long)json_integer_value(ts), (unsigned long long)cp->size);
        bad++;
    }
    if ((hashes = malloc(CV_MERKLE_MAX_PROOF * 32)) == NULL) {
        fail(v, CV_E_NOMEM, "proofs", "out of memory");
        goto out;
    }
    const char *p = v->text[K_ENTRIES];
    const char *end = p + v->text_len[K_ENTRIES];
    uint64_t prev = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL) {
            fail(v, CV_E_PROOF_INVALID, "proofs", "audit/entries.jsonl: line %zu has no newline",
                 count + 1);
            bad++;
            break;
        }
        size_t len = (size_t)(nl - p);
        json_t *e = json_loadb(p, len, JSON_REJECT_DUPLICATES, &err);
        json_t *pr = json_array_get(arr, count);
        json_t *seqj = json_object_get(e, "seq");
        const char *cid = json_string_value(json_object_get(e, "case_id"));
        count++;
        if (e == NULL || !json_is_integer(seqj)) {
            fail(v, CV_E_PROOF_INVALID, "proofs", "audit/entries.jsonl line %zu is not an entry",
                 count);
            bad++;
        } else if (cid == NULL || (case_id[0] && strcmp(cid, case_id) != 0)) {
            fail(v, CV_E_PROOF_INVALID, "proofs", "entry %lld is not about case %s",
                 (long long)json_integer_value(seqj), case_id);
            bad++;
        } else if (pr == NULL) {
            fail(v, CV_E_PROOF_INVALID, "proofs", "entry %lld has no proof in audit/proofs.json",
                 (long long)json_integer_value(seqj));
            bad++;
        } else {
            uint64_t seq = (uint64_t)json_integer_value(seqj);
            json_t *hl = json_object_get(pr, "hashes");
            uint8_t leaf[32], claimed[32];
            size_t n = json_array_size(hl);
            int ok = json_is_integer(json_object_get(pr, "index")) &&
                     (uint64_t)json_integer_value(json_object_get(pr, "index")) == seq &&
                     json_is_array(hl) && n <= CV_MERKLE_MAX_PROOF && (count == 1 || seq > prev);
            for (size_t i = 0; ok && i < n; i++)
                ok = b64_hash(json_array_get(hl, i), hashes + 32 * i);
            cv_merkle_leaf_hash(p, len, leaf);
            if (ok && b64_hash(json_object_get(pr, "leaf_hash"), claimed) &&
                memcmp(claimed, leaf, 32) != 0)
                ok = 0;
            if (!ok) {
                fail(v, CV_E_PROOF_INVALID, "proofs",
                     "proof of entry %llu is malformed or does not match the entry",
                     (unsigned long long)seq);
                bad++;
            } else if (cv_merkle_verify_inclusion(leaf, seq, cp->size, hashes, n, cp->root) !=
                       CV_OK) {
                fail(v, CV_E_PROOF_INVALID, "proofs",
                     "entry %llu: inclusion proof does not lead to the checkpoint's root",
                     (unsigned long long)seq);
                bad++;
            }
            prev = seq;
        }
        json_decref(e);
        p = nl + 1;
    }
    if (json_array_size(arr) != count) {
        fail(v, CV_E_PROOF_INVALID, "proofs", "audit/proofs.json holds %zu proofs for %zu entries",
             json_array_size(arr), count);
        bad++;
    }
    if (count == 0) {
        fail(v, CV_E_PROOF_INVALID, "proofs", "audit/entries.jsonl is empty");
        bad++;
    }
    if (bad == 0)
        pass(v, "proofs", "%zu entries proven included in the checkpoint's tree", count);
out:
    free(hashes);
    json_decref(pj);
}

cv_status cv_export_verify_fd(int fd, int seekable, const char *pubkey_text, const char *vkey_text,
                              cv_export_report_fn report, void *arg)
{
    struct vstate v;
    memset(&v, 0, sizeof v);
    v.report = report;
    v.arg = arg;
    v.first = CV_OK;
    cv_status st = read_archive(&v, fd, seekable);
    if (st == CV_E_NOMEM) {
        fail(&v, CV_E_NOMEM, "archive", "out of memory");
    }
    check_manifest(&v);
    char case_id[CV_ULID_LEN + 1] = "";
    uint64_t n = 0;
    int sig_ok = check_signature(&v, pubkey_text, case_id, &n);
    struct cv_checkpoint cp;
    memset(&cp, 0, sizeof cp);
    if (check_checkpoint(&v, vkey_text, &cp)) {
        if (sig_ok && cp.size != n)
            fail(&v, CV_E_SIGNATURE_INVALID, "checkpoint",
                 "audit/checkpoint is for tree size %llu, the signed manifest for %llu",
                 (unsigned long long)cp.size, (unsigned long long)n);
        check_proofs(&v, &cp, case_id);
    } else {
        fail(&v, CV_E_PROOF_INVALID, "proofs", "not checked: no verified checkpoint");
    }
    for (int k = 0; k < K_N; k++)
        free(v.text[k]);
    for (size_t i = 0; i < v.nseen; i++)
        free(v.seen[i].name);
    free(v.seen);
    return v.first;
}
