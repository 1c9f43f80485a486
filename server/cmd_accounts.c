/*
 * server/cmd_accounts: `casevault accounts import --data DIR FILE.jsonl`
 * upserts real-name records, one JSON object per line (idempotent: an equal
 * record is left alone). Every bad line is reported on stderr with its
 * number and reason (never its values); the counts go to stdout at the end;
 * the exit status is 1 if any line failed.
 *
 * Also, in debug builds only, the TEST-ONLY `_test-document-add` command.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "casevault/account.h"
#include "casevault/audit.h"
#include "casevault/blobstore.h"
#include "casevault/case.h"
#include "casevault/datadir.h"
#include "casevault/db.h"
#include "cli.h"

#define IMPORT_LINE_MAX (64 * 1024) /* bytes of one record line */
#define IMPORT_BATCH    256         /* records per write transaction */

struct import_counts {
    unsigned long created, updated, unchanged, failed;
};

static int accounts_import(int argc, char **argv)
{
    const char *data = NULL;
    const char *pos[1];
    int npos = 0;
    struct cv_datadir *dd = NULL;
    struct cv_account_record *rec = NULL;
    struct import_counts n = {0, 0, 0, 0};
    FILE *f = NULL;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    unsigned long lineno = 0;
    unsigned in_batch = 0;
    int in_txn = 0;
    cv_status st = CV_OK;
    const struct cli_opt opts[] = {
        {"data", 1, &data, NULL, NULL, NULL},
        {NULL, 0, NULL, NULL, NULL, NULL},
    };
    int rc = cli_parse("accounts import", argc, argv, opts, pos, 1, &npos);
    if (rc != CV_EXIT_OK)
        return rc;
    if (npos != 1)
        return cli_usage("accounts import", "FILE.jsonl (or - for stdin) is required");
    if (data == NULL)
        return cli_usage("accounts import", "--data DIR is required");
    f = strcmp(pos[0], "-") == 0 ? stdin : fopen(pos[0], "r");
    if (f == NULL) {
        fprintf(stderr, "casevault accounts import: cannot open %s\n", pos[0]);
        return CV_EXIT_FAIL;
    }
    if ((rc = cli_open_datadir("accounts import", data, &dd)) != CV_EXIT_OK)
        goto out;
    if ((rec = cv_account_record_new()) == NULL) {
        rc = cli_fail("accounts import", "out of memory", CV_E_NOMEM);
        goto out;
    }
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        const char *field = NULL, *why = NULL;
        json_error_t jerr;
        enum cv_upsert_result result = CV_UPSERT_UNCHANGED;
        int blank = 1;
        for (ssize_t i = 0; i < len && blank; i++)
            blank = line[i] == ' ' || line[i] == '\t' || line[i] == '\n' || line[i] == '\r';
        if (blank)
            goto wipe;
        if (len > IMPORT_LINE_MAX) {
            fprintf(stderr, "line %lu: longer than %d bytes\n", lineno, IMPORT_LINE_MAX);
            n.failed++;
            goto wipe;
        }
        json_t *j = json_loadb(line, (size_t)len, JSON_REJECT_DUPLICATES, &jerr);
        if (j == NULL) {
            /* jansson's text names a position, never the line's content */
            fprintf(stderr, "line %lu: not valid JSON (column %d)\n", lineno, jerr.column);
            n.failed++;
            goto wipe;
        }
        st = cv_account_record_from_json(j, NULL, rec, &field, &why);
        json_decref(j);
        if (st != CV_OK) {
            if (st == CV_E_INVALID_FIELD)
                fprintf(stderr, "line %lu: %s %s\n", lineno, field, why);
            else
                fprintf(stderr, "line %lu: %s\n", lineno, cv_status_str(st));
            n.failed++;
            st = CV_OK;
            goto wipe;
        }
        if (!in_txn) {
            if ((st = cv_db_begin(dd->db)) != CV_OK)
                break;
            in_txn = 1;
        }
        if ((st = cv_account_upsert(dd->db, dd->kr, rec, &result)) != CV_OK)
            break;
        if (result != CV_UPSERT_UNCHANGED) {
            json_t *details = json_pack(
                "{s:s,s:s,s:b,s:b,s:I}", "result", cv_account_upsert_str(result), "type",
                cv_account_type_str(rec->type), "real_name_verified", rec->real_name_verified,
                "mfa_bound", rec->mfa_bound, "line", (json_int_t)lineno);
            struct cv_audit_event ev = {.action = "account.upsert",
                                        .actor_id = "cli",
                                        .actor_role = "operator",
                                        .object_id = rec->account_id,
                                        .client = "cli",
                                        .details = details};
            st = cv_audit_append(dd->db, &ev, NULL);
            json_decref(details);
            if (st != CV_OK)
                break;
        }
        if (result == CV_UPSERT_CREATED)
            n.created++;
        else if (result == CV_UPSERT_UPDATED)
            n.updated++;
        else
            n.unchanged++;
        if (++in_batch >= IMPORT_BATCH) {
            in_txn = 0;
            in_batch = 0;
            if ((st = cv_db_commit(dd->db)) != CV_OK)
                break;
        }
    wipe:
        sodium_memzero(line, cap);
        memset(rec, 0, sizeof *rec);
    }
    if (line != NULL)
        sodium_memzero(line, cap);
    if (st != CV_OK) {
        if (in_txn)
            cv_db_rollback(dd->db);
        in_txn = 0;
        fprintf(stderr, "line %lu: %s; records of this batch were not stored\n", lineno,
                cv_status_str(st));
        rc = CV_EXIT_FAIL;
    } else if (in_txn) {
        in_txn = 0;
        if ((st = cv_db_commit(dd->db)) != CV_OK) {
            fprintf(stderr, "commit failed: %s\n", cv_status_str(st));
            rc = CV_EXIT_FAIL;
        }
    }
    if (ferror(f)) {
        fprintf(stderr, "casevault accounts import: read error\n");
        rc = CV_EXIT_FAIL;
    }
    printf("created %lu, updated %lu, unchanged %lu, failed %lu\n", n.created, n.updated,
           n.unchanged, n.failed);
    fflush(stdout);
    if (n.failed > 0)
        rc = CV_EXIT_FAIL;
out:
    free(line);
    cv_account_record_free(rec);
    cv_datadir_free(dd);
    if (f != NULL && f != stdin)
        fclose(f);
    return rc;
}

int cv_cmd_accounts(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "import") == 0)
        return accounts_import(argc - 1, argv + 1);
    return cli_usage("accounts", "expected: accounts import --data DIR FILE.jsonl");
}

#ifdef CV_TEST_HOOKS
/* TEST-ONLY: store a file as a blob (put, finish, commit; the row is
 * recorded by the caller's transaction). Out: *w, *info, hex SHA-256. */
static cv_status put_file_blob(struct cv_datadir *dd, const char *path, struct cv_blob_writer **w,
                               struct cv_blob_info *info, char hex[65])
{
    cv_status rc = CV_E_IO;
    FILE *f = fopen(path, "rb");
    char buf[65536];
    if (f == NULL)
        return CV_E_NOT_FOUND;
    if ((rc = cv_blob_put_begin(dd->bs, w)) != CV_OK)
        goto out;
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        if ((rc = cv_blob_put_write(*w, buf, n)) != CV_OK)
            goto out;
    if (ferror(f)) {
        rc = CV_E_IO;
        goto out;
    }
    if ((rc = cv_blob_put_finish(*w, info)) != CV_OK || (rc = cv_blob_put_commit(*w)) != CV_OK)
        goto out;
    cv_hex_encode(info->sha256, 32, hex);
    rc = CV_OK;
out:
    fclose(f);
    return rc;
}

/*
 * TEST-ONLY (compiled into debug builds only): insert a document row through
 * cv_case_document_add, as the upload code does, so lifecycle tests can run
 * before uploads exist. Without --original/--normalized the blob ids and
 * hashes are invented; with both, the files are stored as real encrypted
 * blobs (their rows recorded in the same transaction), which exports need.
 * Prints the document id. Never part of a release build.
 */
int cv_cmd_test_document_add(int argc, char **argv)
{
    const char *data = NULL, *case_id = NULL, *kind = NULL, *file_name = NULL;
    const char *original = NULL, *normalized = NULL;
    const char *pos[1];
    int npos = 0;
    struct cv_datadir *dd = NULL;
    struct cv_blob_writer *ow = NULL, *nw = NULL;
    struct cv_blob_info oi, ni;
    uint8_t h[32];
    char oh[65], nh[65], ob[40], nb[40], doc_id[CV_ULID_LEN + 1], sup[CV_ULID_LEN + 1];
    const struct cli_opt opts[] = {
        {"data", 1, &data, NULL, NULL, NULL},
        {"case", 1, &case_id, NULL, NULL, NULL},
        {"kind", 1, &kind, NULL, NULL, NULL},
        {"file-name", 1, &file_name, NULL, NULL, NULL},
        {"original", 1, &original, NULL, NULL, NULL},
        {"normalized", 1, &normalized, NULL, NULL, NULL},
        {NULL, 0, NULL, NULL, NULL, NULL},
    };
    int rc = cli_parse("_test-document-add", argc, argv, opts, pos, 0, &npos);
    if (rc != CV_EXIT_OK)
        return rc;
    if (case_id == NULL || kind == NULL)
        return cli_usage("_test-document-add", "--case ID and --kind KIND are required");
    if ((original == NULL) != (normalized == NULL))
        return cli_usage("_test-document-add", "--original and --normalized go together");
    if ((rc = cli_open_datadir("_test-document-add", data, &dd)) != CV_EXIT_OK)
        return rc;
    int64_t osize = 123456;
    cv_status st = CV_OK;
    if (original != NULL) {
        st = put_file_blob(dd, original, &ow, &oi, oh);
        if (st == CV_OK)
            st = put_file_blob(dd, normalized, &nw, &ni, nh);
        if (st == CV_OK) {
            snprintf(ob, sizeof ob, "%s", oi.id);
            snprintf(nb, sizeof nb, "%s", ni.id);
            osize = (int64_t)oi.size;
        }
    } else {
        randombytes_buf(h, sizeof h);
        cv_hex_encode(h, sizeof h, oh);
        randombytes_buf(h, sizeof h);
        cv_hex_encode(h, sizeof h, nh);
        snprintf(ob, sizeof ob, "test-%.16s-o", oh);
        snprintf(nb, sizeof nb, "test-%.16s-n", nh);
    }
    struct cv_document_new doc = {.kind = kind,
                                  .original_blob_id = ob,
                                  .normalized_blob_id = nb,
                                  .source_format = "jpeg",
                                  .original_size = osize,
                                  .original_sha256 = oh,
                                  .normalized_sha256 = nh,
                                  .width = 1600,
                                  .height = 1200,
                                  .orientation_applied = 1,
                                  .file_name = file_name};
    if (st == CV_OK)
        st = cv_db_begin(dd->db);
    if (st == CV_OK) {
        if (original != NULL) {
            st = cv_blob_record(dd->bs, &oi);
            if (st == CV_OK)
                st = cv_blob_record(dd->bs, &ni);
        }
        if (st == CV_OK)
            st = cv_case_document_add(dd->db, dd->kr, case_id, &doc, doc_id, sup);
        json_t *details = json_pack("{s:s,s:s,s:b}", "kind", kind, "sha256", nh, "test_hook", 1);
        if (st == CV_OK && sup[0])
            json_object_set_new(details, "superseded_id", json_string(sup));
        st = cli_audit_commit(dd, st, "document.upload", case_id, doc_id, details);
    }
    if (st == CV_OK) {
        cv_blob_put_done(ow);
        cv_blob_put_done(nw);
    } else {
        cv_blob_put_abort(ow);
        cv_blob_put_abort(nw);
    }
    cv_datadir_free(dd);
    if (st != CV_OK)
        return cli_fail("_test-document-add", "cannot add the document", st);
    printf("%s\n", doc_id);
    return CV_EXIT_OK;
}
#endif
