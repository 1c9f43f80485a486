/*
 * bench/export setup (not a test): create a data dir holding one personal
 * case with NDOCS documents whose original and normalized blobs are DOC_MB
 * MiB of random bytes each (incompressible, like JPEG), through the storage
 * API as the upload path does, and write the same plaintext files to
 * PLAIN_DIR so `tar cf -` can be timed over identical bytes.
 * Usage: bench_export DATA_DIR PLAIN_DIR NDOCS DOC_MB   (prints the case id)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <sodium.h>

#include "casevault/account.h"
#include "casevault/audit.h"
#include "casevault/blobstore.h"
#include "casevault/case.h"
#include "casevault/datadir.h"
#include "casevault/db.h"

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        cv_status st_ = (x);                                                                       \
        if (st_ != CV_OK) {                                                                        \
            fprintf(stderr, "bench_export: %s: %s\n", #x, cv_status_str(st_));                     \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static void put_blob(struct cv_datadir *dd, const char *plain_path, size_t mb,
                     struct cv_blob_writer **w, struct cv_blob_info *info)
{
    static uint8_t buf[1 << 20];
    FILE *f = fopen(plain_path, "wb");
    if (f == NULL) {
        perror(plain_path);
        exit(1);
    }
    CHECK(cv_blob_put_begin(dd->bs, w));
    for (size_t i = 0; i < mb; i++) {
        randombytes_buf(buf, sizeof buf);
        CHECK(cv_blob_put_write(*w, buf, sizeof buf));
        if (fwrite(buf, 1, sizeof buf, f) != sizeof buf) {
            perror(plain_path);
            exit(1);
        }
    }
    fclose(f);
    CHECK(cv_blob_put_finish(*w, info));
    CHECK(cv_blob_put_commit(*w));
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: bench_export DATA_DIR PLAIN_DIR NDOCS DOC_MB\n");
        return 2;
    }
    if (sodium_init() < 0)
        return 1;
    unsigned ndocs = (unsigned)atoi(argv[3]);
    size_t mb = (size_t)atoi(argv[4]);
    struct cv_datadir *dd = NULL;
    CHECK(cv_datadir_init(argv[1]));
    CHECK(cv_datadir_open(argv[1], 2, &dd));
    mkdir(argv[2], 0700);

    json_error_t e;
    json_t *j = json_loads("{\"account_id\":\"p1\",\"type\":\"personal\",\"real_name_verified\":"
                           "true,\"name\":\"测试 甲\",\"id_type\":\"cn_resident_id\",\"id_number\":"
                           "\"110105199003071239\",\"mobile\":\"13800138000\",\"mfa_bound\":true}",
                           0, &e);
    struct cv_account_record *r = cv_account_record_new();
    const char *fld = NULL, *why = NULL;
    enum cv_upsert_result res;
    CHECK(cv_account_record_from_json(j, NULL, r, &fld, &why));
    json_decref(j);
    CHECK(cv_db_begin(dd->db));
    CHECK(cv_account_upsert(dd->db, dd->kr, r, &res));
    CHECK(cv_db_commit(dd->db));
    cv_account_record_free(r);

    struct cv_case_application *a = cv_case_application_new();
    strcpy(a->account_id, "p1");
    strcpy(a->applicant_type, "personal");
    strcpy(a->name, "测试 甲");
    strcpy(a->id_type, "cn_resident_id");
    strcpy(a->id_number, "110105199003071239");
    strcpy(a->mobile, "13800138000");
    strcpy(a->contact_mobile, "13700137000");
    struct cv_case_policy pol = {.now_ms = cv_now_ms(),
                                 .token_ttl_ms = 86400000,
                                 .max_failed = 5,
                                 .failure_window_ms = 3600000};
    struct cv_case_actor actor = {"cli", "operator", NULL, "cli"};
    char case_id[CV_ULID_LEN + 1], token[CV_TOKEN_TEXT_LEN + 1];
    int64_t retry = 0;
    CHECK(cv_db_begin(dd->db));
    CHECK(cv_case_open(dd->db, dd->kr, a, &pol, &actor, case_id, token, &retry));
    CHECK(cv_db_commit(dd->db));
    cv_case_application_free(a);
    sodium_memzero(token, sizeof token);

    for (unsigned i = 0; i < ndocs; i++) {
        struct cv_blob_writer *ow = NULL, *nw = NULL;
        struct cv_blob_info oi, ni;
        char op[4096], np[4096], oh[65], nh[65], fname[64], doc_id[CV_ULID_LEN + 1],
            sup[CV_ULID_LEN + 1];
        snprintf(fname, sizeof fname, "photo_%03u.jpg", i);
        snprintf(op, sizeof op, "%s/original_%03u.jpg", argv[2], i);
        snprintf(np, sizeof np, "%s/normalized_%03u.jpg", argv[2], i);
        put_blob(dd, op, mb, &ow, &oi);
        put_blob(dd, np, mb, &nw, &ni);
        cv_hex_encode(oi.sha256, 32, oh);
        cv_hex_encode(ni.sha256, 32, nh);
        struct cv_document_new doc = {.kind = "id_in_hand",
                                      .original_blob_id = oi.id,
                                      .normalized_blob_id = ni.id,
                                      .source_format = "jpeg",
                                      .original_size = (int64_t)oi.size,
                                      .original_sha256 = oh,
                                      .normalized_sha256 = nh,
                                      .width = 2048,
                                      .height = 1536,
                                      .orientation_applied = 1,
                                      .file_name = fname};
        CHECK(cv_db_begin(dd->db));
        CHECK(cv_blob_record(dd->bs, &oi));
        CHECK(cv_blob_record(dd->bs, &ni));
        CHECK(cv_case_document_add(dd->db, dd->kr, case_id, &doc, doc_id, sup));
        json_t *det = json_pack("{s:s,s:s}", "kind", "id_in_hand", "sha256", nh);
        struct cv_audit_event ev = {.action = "document.upload",
                                    .actor_id = "cli",
                                    .actor_role = "operator",
                                    .case_id = case_id,
                                    .object_id = doc_id,
                                    .client = "cli",
                                    .details = det};
        CHECK(cv_audit_append(dd->db, &ev, NULL));
        json_decref(det);
        CHECK(cv_db_commit(dd->db));
        cv_blob_put_done(ow);
        cv_blob_put_done(nw);
    }
    cv_datadir_free(dd);
    printf("%s\n", case_id);
    return 0;
}
