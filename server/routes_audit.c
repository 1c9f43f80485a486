/*
 * server/routes_audit: the auditor's view of the audit log (DESIGN §5, §7):
 * the latest signed checkpoint (text/plain signed note), inclusion and
 * consistency proofs (JSON, standard base64 hashes as in the checkpoint),
 * and the entries themselves, paged, as their exact leaf bytes. Every
 * answer is computed from one read snapshot of the database; nothing here
 * caches the tree size, because CLI processes append concurrently.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "casevault/audit.h"
#include "routes.h"

#define ENTRIES_PAGE_DEFAULT 100
#define ENTRIES_PAGE_MAX     1000

static json_t *b64(const uint8_t *h)
{
    char s[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
    sodium_bin2base64(s, sizeof s, h, 32, sodium_base64_VARIANT_ORIGINAL);
    return json_string(s);
}

static json_t *b64_list(const struct cv_audit_proof *p)
{
    json_t *a = json_array();
    for (size_t i = 0; i < p->n; i++)
        json_array_append_new(a, b64(p->hashes[i]));
    return a;
}

/*
 * A query parameter as a decimal integer 0..CV_MERKLE_MAX_SIZE. Returns 1
 * and *out, 0 if absent (when !required the caller uses its default), or -1
 * after replying 400 invalid_field naming the parameter.
 */
static int query_u64(struct cv_request *req, const char *name, int required, uint64_t *out)
{
    const char *v = cv_req_query(req, name);
    if (v == NULL) {
        if (!required)
            return 0;
        json_t *ext = json_pack("{s:s}", "field", name);
        cv_reply_problem(req, CV_E_INVALID_FIELD, ext, "query parameter '%s' is required", name);
        return -1;
    }
    uint64_t x = 0;
    if (cv_parse_u64(v, &x) != CV_OK || x > CV_MERKLE_MAX_SIZE) {
        json_t *ext = json_pack("{s:s}", "field", name);
        cv_reply_problem(req, CV_E_INVALID_FIELD, ext,
                         "query parameter '%s' must be a non-negative decimal integer", name);
        return -1;
    }
    *out = x;
    return 1;
}

/* Reply 400 out_of_range explaining that `what` (= value) exceeds the tree. */
static void beyond_tree(struct cv_request *req, const char *what, uint64_t value)
{
    uint64_t size = 0;
    if (cv_audit_size(req->srv->dd->db, &size) != CV_OK) {
        cv_reply_problem(req, CV_E_DB, NULL, NULL);
        return;
    }
    json_t *ext = json_pack("{s:s, s:I}", "field", what, "tree_size", (json_int_t)size);
    cv_reply_problem(req, CV_E_RANGE, ext, "%s %llu is beyond the tree, which has %llu entries",
                     what, (unsigned long long)value, (unsigned long long)size);
}

void cv_route_audit_checkpoint(struct cv_request *req)
{
    struct cv_datadir *dd = req->srv->dd;
    char *note = NULL;
    uint64_t size = 0;
    int has = query_u64(req, "size", 0, &size);
    if (has < 0)
        return;
    cv_status st;
    if (has) {
        st = cv_audit_checkpoint_at(dd->db, dd->kr, size, &note);
        if (st == CV_E_RANGE) {
            beyond_tree(req, "size", size);
            return;
        }
    } else {
        /* A fresh checkpoint if the tree grew and the interval has passed,
         * then the latest one (signing the current size if none exists). */
        st = cv_audit_checkpoint_tick(dd->db, dd->kr,
                                      (int64_t)req->srv->cfg.checkpoint_interval_s * 1000, NULL);
        if (st == CV_OK)
            st = cv_audit_checkpoint_latest(dd->db, &note, NULL);
        if (st == CV_E_NOT_FOUND) {
            uint64_t cur = 0;
            st = cv_audit_size(dd->db, &cur);
            if (st == CV_OK)
                st = cv_audit_checkpoint_at(dd->db, dd->kr, cur, &note);
        }
    }
    if (st != CV_OK) {
        cv_reply_problem(req, st, NULL, NULL);
        return;
    }
    cv_reply_text(req, 200, "text/plain; charset=utf-8", note, strlen(note));
    free(note);
}

void cv_route_audit_inclusion(struct cv_request *req)
{
    uint64_t index = 0, size = 0;
    if (query_u64(req, "index", 1, &index) < 0 || query_u64(req, "size", 1, &size) < 0)
        return;
    if (size == 0) {
        json_t *ext = json_pack("{s:s}", "field", "size");
        cv_reply_problem(req, CV_E_RANGE, ext, "size must be at least 1");
        return;
    }
    if (index >= size) {
        json_t *ext = json_pack("{s:s}", "field", "index");
        cv_reply_problem(req, CV_E_RANGE, ext, "index %llu must be below size %llu",
                         (unsigned long long)index, (unsigned long long)size);
        return;
    }
    struct cv_audit_proof *p = malloc(sizeof *p);
    if (p == NULL) {
        cv_reply_problem(req, CV_E_NOMEM, NULL, NULL);
        return;
    }
    cv_status st = cv_audit_inclusion_proof(req->srv->dd->db, index, size, p);
    if (st == CV_E_RANGE) {
        beyond_tree(req, "size", size);
    } else if (st != CV_OK) {
        cv_reply_problem(req, st, NULL, NULL);
    } else {
        json_t *j = json_pack("{s:I, s:I, s:o, s:o, s:o}", "index", (json_int_t)index, "size",
                              (json_int_t)size, "leaf_hash", b64(p->leaf), "root_hash",
                              b64(p->root), "proof", b64_list(p));
        cv_reply_json(req, 200, j);
    }
    free(p);
}

void cv_route_audit_consistency(struct cv_request *req)
{
    uint64_t old_size = 0, new_size = 0;
    if (query_u64(req, "old", 1, &old_size) < 0 || query_u64(req, "new", 1, &new_size) < 0)
        return;
    if (old_size == 0) {
        json_t *ext = json_pack("{s:s}", "field", "old");
        cv_reply_problem(req, CV_E_RANGE, ext, "old must be at least 1");
        return;
    }
    if (old_size > new_size) {
        json_t *ext = json_pack("{s:s}", "field", "old");
        cv_reply_problem(req, CV_E_RANGE, ext, "old %llu must not exceed new %llu",
                         (unsigned long long)old_size, (unsigned long long)new_size);
        return;
    }
    struct cv_audit_proof *p = malloc(sizeof *p);
    if (p == NULL) {
        cv_reply_problem(req, CV_E_NOMEM, NULL, NULL);
        return;
    }
    cv_status st = cv_audit_consistency_proof(req->srv->dd->db, old_size, new_size, p);
    if (st == CV_E_RANGE) {
        beyond_tree(req, "new", new_size);
    } else if (st != CV_OK) {
        cv_reply_problem(req, st, NULL, NULL);
    } else {
        json_t *j = json_pack("{s:I, s:I, s:o, s:o, s:o}", "old", (json_int_t)old_size, "new",
                              (json_int_t)new_size, "old_root", b64(p->old_root), "new_root",
                              b64(p->root), "proof", b64_list(p));
        cv_reply_json(req, 200, j);
    }
    free(p);
}

static int entry_cb(void *arg, uint64_t seq, const char *entry, size_t len, const uint8_t leaf[32])
{
    json_t *o = json_pack("{s:I, s:s%, s:o}", "seq", (json_int_t)seq, "entry", entry, len,
                          "leaf_hash", b64(leaf));
    json_array_append_new(arg, o);
    return 0;
}

void cv_route_audit_entries(struct cv_request *req)
{
    uint64_t start = 0, end = 0, tree = 0;
    int has_start = query_u64(req, "start", 0, &start);
    if (has_start < 0)
        return;
    int has_end = query_u64(req, "end", 0, &end);
    if (has_end < 0)
        return;
    if (!has_end)
        end = start + ENTRIES_PAGE_DEFAULT;
    if (end < start) {
        json_t *ext = json_pack("{s:s}", "field", "end");
        cv_reply_problem(req, CV_E_RANGE, ext, "end %llu must not be below start %llu",
                         (unsigned long long)end, (unsigned long long)start);
        return;
    }
    if (end - start > ENTRIES_PAGE_MAX)
        end = start + ENTRIES_PAGE_MAX;
    json_t *arr = json_array();
    cv_status st = cv_audit_entries(req->srv->dd->db, start, end, entry_cb, arr, &tree);
    if (st == CV_E_RANGE) {
        json_decref(arr);
        beyond_tree(req, "start", start);
        return;
    }
    if (st != CV_OK) {
        json_decref(arr);
        cv_reply_problem(req, st, NULL, NULL);
        return;
    }
    if (end > tree)
        end = tree;
    json_t *j = json_pack("{s:I, s:I, s:I, s:o, s:o}", "start", (json_int_t)start, "end",
                          (json_int_t)end, "tree_size", (json_int_t)tree, "entries", arr, "next",
                          end < tree ? json_integer((json_int_t)end) : json_null());
    cv_reply_json(req, 200, j);
}
