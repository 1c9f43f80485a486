/* Unit tests: storage/audit on a real data dir (append inside transactions,
 * stored nodes against a recomputation, proofs from storage, origin and
 * verifier key, checkpoints, full verification and tamper detection). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>
#include <sqlite3.h>

#include "casevault/audit.h"
#include "casevault/datadir.h"
#include "casevault/db.h"
#include "casevault/keyring.h"
#include "casevault/util.h"
#include "fixture.h"

static void append_n(struct fx *f, int n, const char *action)
{
    for (int i = 0; i < n; i++) {
        json_t *d = json_pack("{s:i}", "i", i);
        struct cv_audit_event ev = {
            .action = action, .actor_id = "cli", .actor_role = "operator", .details = d};
        assert_int_equal(cv_db_begin(f->dd->db), CV_OK);
        assert_int_equal(cv_audit_append(f->dd->db, &ev, NULL), CV_OK);
        assert_int_equal(cv_db_commit(f->dd->db), CV_OK);
        json_decref(d);
    }
}

struct collect {
    uint8_t (*leaves)[32];
    uint64_t n;
};

static int collect_cb(void *arg, uint64_t seq, const char *entry, size_t len,
                      const uint8_t leaf[32])
{
    struct collect *c = arg;
    uint8_t h[32];
    cv_audit_leaf_hash(entry, len, h);
    assert_memory_equal(h, leaf, 32);
    assert_int_equal(seq, c->n);
    memcpy(c->leaves[c->n++], leaf, 32);
    return 0;
}

static void test_init_entry_origin_and_vkey(void **state)
{
    struct fx *f = *state;
    uint64_t size = 0;
    char origin[CV_NOTE_NAME_MAX + 1], want[200], vkey[CV_NOTE_VKEY_MAX], path[300];
    assert_int_equal(cv_audit_size(f->dd->db, &size), CV_OK);
    assert_int_equal(size, 1); /* instance.init */
    assert_int_equal(cv_audit_origin(f->dd->db, origin), CV_OK);
    snprintf(want, sizeof want, "casevault/%s", f->dd->instance_id);
    assert_string_equal(origin, want);
    assert_int_equal(cv_audit_vkey(f->dd->db, f->dd->kr, vkey), CV_OK);
    snprintf(path, sizeof path, "%s/keys/checkpoint.vkey", f->root);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(cv_file_read(path, 4096, &text, &len), CV_OK);
    snprintf(want, sizeof want, "%s\n", vkey);
    assert_string_equal(text, want);
    free(text);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644);
    /* The verifier key names our origin and our Ed25519 key. */
    char name[CV_NOTE_NAME_MAX + 1];
    uint32_t id;
    uint8_t pk[32], kpk[32], kid[8];
    assert_int_equal(cv_note_vkey_parse(vkey, name, &id, pk), CV_OK);
    cv_keyring_sign_pk(f->dd->kr, kpk, kid);
    assert_memory_equal(pk, kpk, 32);
    assert_string_equal(name, origin);
}

static void test_nodes_roots_and_proofs_from_storage(void **state)
{
    struct fx *f = *state;
    append_n(f, 40, "test.append");
    uint64_t size = 0;
    assert_int_equal(cv_audit_size(f->dd->db, &size), CV_OK);
    assert_int_equal(size, 41);
    uint8_t leaves[41][32];
    struct collect c = {leaves, 0};
    uint64_t ts = 0;
    assert_int_equal(cv_audit_entries(f->dd->db, 0, 1000, collect_cb, &c, &ts), CV_OK);
    assert_int_equal(c.n, 41);
    assert_int_equal(ts, 41);
    struct cv_merkle_stack st;
    cv_merkle_stack_init(&st);
    uint8_t completed[63][32], want[32], got[32];
    struct cv_audit_proof *p = malloc(sizeof *p);
    for (uint64_t n = 1; n <= 41; n++) {
        cv_merkle_stack_push(&st, leaves[n - 1], completed);
        cv_merkle_stack_root(&st, want);
        assert_int_equal(cv_audit_root(f->dd->db, n, got), CV_OK);
        assert_memory_equal(got, want, 32);
        for (uint64_t i = 0; i < n; i++) {
            assert_int_equal(cv_audit_inclusion_proof(f->dd->db, i, n, p), CV_OK);
            assert_memory_equal(p->root, want, 32);
            assert_memory_equal(p->leaf, leaves[i], 32);
            assert_int_equal(
                cv_merkle_verify_inclusion(leaves[i], i, n, &p->hashes[0][0], p->n, want), CV_OK);
        }
        for (uint64_t m = 1; m <= n; m++) {
            assert_int_equal(cv_audit_consistency_proof(f->dd->db, m, n, p), CV_OK);
            assert_int_equal(
                cv_merkle_verify_consistency(m, n, p->old_root, p->root, &p->hashes[0][0], p->n),
                CV_OK);
        }
    }
    /* Out of range. */
    assert_int_equal(cv_audit_root(f->dd->db, 42, got), CV_E_RANGE);
    assert_int_equal(cv_audit_inclusion_proof(f->dd->db, 41, 41, p), CV_E_RANGE);
    assert_int_equal(cv_audit_inclusion_proof(f->dd->db, 0, 42, p), CV_E_RANGE);
    assert_int_equal(cv_audit_inclusion_proof(f->dd->db, 0, 0, p), CV_E_RANGE);
    assert_int_equal(cv_audit_consistency_proof(f->dd->db, 0, 5, p), CV_E_RANGE);
    assert_int_equal(cv_audit_consistency_proof(f->dd->db, 6, 5, p), CV_E_RANGE);
    assert_int_equal(cv_audit_consistency_proof(f->dd->db, 5, 42, p), CV_E_RANGE);
    assert_int_equal(cv_audit_entries(f->dd->db, 42, 50, collect_cb, &c, NULL), CV_E_RANGE);
    assert_int_equal(cv_audit_entries(f->dd->db, 5, 4, collect_cb, &c, NULL), CV_E_RANGE);
    free(p);
}

static void test_rollback_leaves_no_entry(void **state)
{
    struct fx *f = *state;
    uint64_t before = 0, after = 0, seq = 0;
    assert_int_equal(cv_audit_size(f->dd->db, &before), CV_OK);
    struct cv_audit_event ev = {.action = "x.y", .actor_id = "cli", .actor_role = "operator"};
    assert_int_equal(cv_db_begin(f->dd->db), CV_OK);
    assert_int_equal(cv_audit_append(f->dd->db, &ev, &seq), CV_OK);
    assert_int_equal(seq, before);
    /* the transaction sees its own entry; readers do not, yet */
    uint64_t in_txn = 0, outside = 0;
    assert_int_equal(cv_audit_size_in_txn(f->dd->db, &in_txn), CV_OK);
    assert_int_equal(in_txn, before + 1);
    assert_int_equal(cv_audit_size(f->dd->db, &outside), CV_OK);
    assert_int_equal(outside, before);
    cv_db_rollback(f->dd->db);
    assert_int_equal(cv_audit_size(f->dd->db, &after), CV_OK);
    assert_int_equal(after, before);
    /* Bad events are refused. */
    struct cv_audit_event bad = {.action = NULL, .actor_id = "cli", .actor_role = "operator"};
    json_t *arr = json_array();
    struct cv_audit_event bad2 = {
        .action = "a", .actor_id = "cli", .actor_role = "operator", .details = arr};
    assert_int_equal(cv_db_begin(f->dd->db), CV_OK);
    assert_int_equal(cv_audit_append(f->dd->db, &bad, NULL), CV_E_ARG);
    assert_int_equal(cv_audit_append(f->dd->db, &bad2, NULL), CV_E_ARG);
    cv_db_rollback(f->dd->db);
    json_decref(arr);
}

static void test_checkpoints(void **state)
{
    struct fx *f = *state;
    int did = -1;
    char *note = NULL, vkey[CV_NOTE_VKEY_MAX];
    uint64_t size = 0;
    struct cv_checkpoint c;
    assert_int_equal(cv_audit_checkpoint_latest(f->dd->db, &note, &size), CV_E_NOT_FOUND);
    assert_int_equal(cv_audit_checkpoint_tick(f->dd->db, f->dd->kr, 1000, &did), CV_OK);
    assert_int_equal(did, 1);
    assert_int_equal(cv_audit_checkpoint_latest(f->dd->db, &note, &size), CV_OK);
    assert_int_equal(size, 1);
    assert_int_equal(cv_audit_vkey(f->dd->db, f->dd->kr, vkey), CV_OK);
    assert_int_equal(cv_checkpoint_verify(note, strlen(note), vkey, &c), CV_OK);
    assert_int_equal(c.size, 1);
    uint8_t root[32];
    assert_int_equal(cv_audit_root(f->dd->db, 1, root), CV_OK);
    assert_memory_equal(c.root, root, 32);
    free(note);
    /* Not grown: nothing to sign. Grown but within the interval: nothing. */
    assert_int_equal(cv_audit_checkpoint_tick(f->dd->db, f->dd->kr, 0, &did), CV_OK);
    assert_int_equal(did, 0);
    append_n(f, 3, "test.append");
    assert_int_equal(cv_audit_checkpoint_tick(f->dd->db, f->dd->kr, 3600 * 1000, &did), CV_OK);
    assert_int_equal(did, 0);
    assert_int_equal(cv_audit_checkpoint_tick(f->dd->db, f->dd->kr, 0, &did), CV_OK);
    assert_int_equal(did, 1);
    assert_int_equal(cv_audit_checkpoint_latest(f->dd->db, &note, &size), CV_OK);
    assert_int_equal(size, 4);
    free(note);
    /* On demand for an older size, stored once. */
    char *a = NULL, *b = NULL;
    assert_int_equal(cv_audit_checkpoint_at(f->dd->db, f->dd->kr, 2, &a), CV_OK);
    assert_int_equal(cv_audit_checkpoint_at(f->dd->db, f->dd->kr, 2, &b), CV_OK);
    assert_string_equal(a, b);
    assert_int_equal(cv_checkpoint_verify(a, strlen(a), vkey, &c), CV_OK);
    assert_int_equal(c.size, 2);
    free(a);
    free(b);
    assert_int_equal(cv_audit_checkpoint_at(f->dd->db, f->dd->kr, 5, &a), CV_E_RANGE);
    /* The latest is still the largest size. */
    assert_int_equal(cv_audit_checkpoint_latest(f->dd->db, &note, &size), CV_OK);
    assert_int_equal(size, 4);
    free(note);
    struct cv_audit_report rep;
    uint8_t pk[32], kid[8];
    cv_keyring_sign_pk(f->dd->kr, pk, kid);
    assert_int_equal(cv_audit_verify(f->dd->db, pk, &rep), CV_OK);
    assert_int_equal(rep.entries, 4);
    assert_int_equal(rep.checkpoints, 3);
}

static void test_origin_change(void **state)
{
    struct fx *f = *state;
    char eff[CV_NOTE_NAME_MAX + 1], vkey[CV_NOTE_VKEY_MAX], path[300];
    uint64_t size = 0;
    assert_int_equal(cv_audit_set_origin(f->dd->db, f->dd->kr, f->dd->keys, "bad origin", "cli",
                                         "operator", eff),
                     CV_E_CONFIG);
    assert_int_equal(
        cv_audit_set_origin(f->dd->db, f->dd->kr, f->dd->keys, "a+b", "cli", "operator", eff),
        CV_E_CONFIG);
    assert_int_equal(cv_audit_set_origin(f->dd->db, f->dd->kr, f->dd->keys, "example.org/audit",
                                         "cli", "operator", eff),
                     CV_OK);
    assert_string_equal(eff, "example.org/audit");
    assert_int_equal(cv_audit_size(f->dd->db, &size), CV_OK);
    assert_int_equal(size, 2); /* instance.init, audit.origin */
    /* Same origin again: no new entry. */
    assert_int_equal(cv_audit_set_origin(f->dd->db, f->dd->kr, f->dd->keys, "example.org/audit",
                                         "cli", "operator", eff),
                     CV_OK);
    assert_int_equal(cv_audit_size(f->dd->db, &size), CV_OK);
    assert_int_equal(size, 2);
    assert_int_equal(cv_audit_vkey(f->dd->db, f->dd->kr, vkey), CV_OK);
    assert_true(strncmp(vkey, "example.org/audit+", 18) == 0);
    snprintf(path, sizeof path, "%s/keys/checkpoint.vkey", f->root);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(cv_file_read(path, 4096, &text, &len), CV_OK);
    assert_true(strncmp(text, vkey, strlen(vkey)) == 0);
    free(text);
    /* Back to the default. */
    assert_int_equal(
        cv_audit_set_origin(f->dd->db, f->dd->kr, f->dd->keys, "", "cli", "operator", eff), CV_OK);
    assert_true(strncmp(eff, "casevault/", 10) == 0);
    assert_int_equal(cv_audit_size(f->dd->db, &size), CV_OK);
    assert_int_equal(size, 3);
}

static void sql(struct fx *f, const char *q)
{
    sqlite3 *c = NULL;
    char path[300];
    snprintf(path, sizeof path, "%s/casevault.db", f->root);
    assert_int_equal(sqlite3_open(path, &c), SQLITE_OK);
    sqlite3_busy_timeout(c, 5000);
    char *err = NULL;
    int rc = sqlite3_exec(c, q, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fprintf(stderr, "sql: %s\n", err);
    assert_int_equal(rc, SQLITE_OK);
    sqlite3_close(c);
}

static void test_verify_detects_tampering(void **state)
{
    struct fx *f = *state;
    struct cv_audit_report rep;
    uint8_t pk[32], kid[8];
    int did;
    cv_keyring_sign_pk(f->dd->kr, pk, kid);
    append_n(f, 20, "test.append");
    assert_int_equal(cv_audit_checkpoint_tick(f->dd->db, f->dd->kr, 0, &did), CV_OK);
    assert_int_equal(cv_audit_verify(f->dd->db, pk, &rep), CV_OK);
    assert_int_equal(rep.entries, 21);
    assert_int_equal(rep.checkpoints, 1);
    assert_string_equal(rep.problem, "");

    /* 1. Edit one entry's text directly in SQLite. */
    sql(f, "UPDATE audit_entries SET entry = replace(entry, '\"i\":6', '\"i\":7') WHERE seq = 7");
    assert_int_equal(cv_audit_verify(f->dd->db, pk, &rep), CV_E_AUDIT_MISMATCH);
    assert_true(rep.has_bad_index);
    assert_int_equal(rep.bad_index, 7);
    assert_non_null(strstr(rep.problem, "entry 7"));
    /* Signing on top of a tampered leaf hash is refused too (below). */

    /* 2. Also fix its leaf hash and subtrees consistently: only the
     * checkpoint's root can tell. Recompute with the library itself. */
    {
        sqlite3 *c = NULL;
        char path[300];
        snprintf(path, sizeof path, "%s/casevault.db", f->root);
        assert_int_equal(sqlite3_open(path, &c), SQLITE_OK);
        sqlite3_stmt *st = NULL;
        assert_int_equal(
            sqlite3_prepare_v2(c, "SELECT entry FROM audit_entries ORDER BY seq", -1, &st, NULL),
            SQLITE_OK);
        struct cv_merkle_stack s;
        cv_merkle_stack_init(&s);
        uint8_t leaves[21][32], subs[21][63][32];
        unsigned ks[21];
        int n = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            cv_audit_leaf_hash(sqlite3_column_text(st, 0), (size_t)sqlite3_column_bytes(st, 0),
                               leaves[n]);
            ks[n] = cv_merkle_stack_push(&s, leaves[n], subs[n]);
            n++;
        }
        sqlite3_finalize(st);
        assert_int_equal(n, 21);
        assert_int_equal(sqlite3_prepare_v2(c,
                                            "UPDATE audit_entries SET leaf_hash=?, subtrees=? "
                                            "WHERE seq=?",
                                            -1, &st, NULL),
                         SQLITE_OK);
        for (int i = 0; i < n; i++) {
            sqlite3_bind_blob(st, 1, leaves[i], 32, SQLITE_STATIC);
            sqlite3_bind_blob(st, 2, subs[i], (int)(ks[i] * 32), SQLITE_STATIC);
            if (ks[i] == 0)
                sqlite3_bind_zeroblob(st, 2, 0);
            sqlite3_bind_int(st, 3, i);
            assert_int_equal(sqlite3_step(st), SQLITE_DONE);
            sqlite3_reset(st);
        }
        sqlite3_finalize(st);
        sqlite3_close(c);
    }
    assert_int_equal(cv_audit_verify(f->dd->db, pk, &rep), CV_E_AUDIT_MISMATCH);
    assert_true(rep.has_bad_index);
    assert_int_equal(rep.bad_index, 0); /* first index no checkpoint vouches for */
    assert_non_null(strstr(rep.problem, "checkpoint of size 21"));
    /* The log refuses to sign a new checkpoint inconsistent with the old. */
    append_n(f, 1, "test.append");
    assert_int_equal(cv_audit_checkpoint_tick(f->dd->db, f->dd->kr, 0, &did), CV_E_AUDIT_MISMATCH);
}

static void test_verify_detects_removal_and_bad_signature(void **state)
{
    struct fx *f = *state;
    struct cv_audit_report rep;
    uint8_t pk[32], kid[8];
    int did;
    cv_keyring_sign_pk(f->dd->kr, pk, kid);
    append_n(f, 6, "test.append");
    assert_int_equal(cv_audit_checkpoint_tick(f->dd->db, f->dd->kr, 0, &did), CV_OK);
    /* A forged signature byte in the stored note. */
    sql(f, "UPDATE audit_checkpoints SET note = replace(note, '\n7\n', '\n8\n')");
    assert_int_equal(cv_audit_verify(f->dd->db, pk, &rep), CV_E_AUDIT_MISMATCH);
    assert_non_null(strstr(rep.problem, "signature does not verify"));
    sql(f, "UPDATE audit_checkpoints SET note = replace(note, '\n8\n', '\n7\n')");
    assert_int_equal(cv_audit_verify(f->dd->db, pk, &rep), CV_OK);
    /* A removed middle entry, then a removed last entry. */
    sql(f, "DELETE FROM audit_entries WHERE seq = 6");
    assert_int_equal(cv_audit_verify(f->dd->db, pk, &rep), CV_E_AUDIT_MISMATCH);
    assert_int_equal(rep.bad_index, 6);
    assert_non_null(strstr(rep.problem, "checkpoint of size 7"));
    sql(f, "DELETE FROM audit_entries WHERE seq = 3");
    assert_int_equal(cv_audit_verify(f->dd->db, pk, &rep), CV_E_AUDIT_MISMATCH);
    assert_int_equal(rep.bad_index, 3);
    assert_non_null(strstr(rep.problem, "entry 3 is missing"));
}

static void test_verify_detects_wrong_seq(void **state)
{
    struct fx *f = *state;
    struct cv_audit_report rep;
    uint8_t pk[32], kid[8], leaf[32];
    cv_keyring_sign_pk(f->dd->kr, pk, kid);
    append_n(f, 4, "test.append");
    /* Entry 2 claims to be entry 9; its leaf hash is made to match. */
    sqlite3 *c = NULL;
    char path[300];
    snprintf(path, sizeof path, "%s/casevault.db", f->root);
    assert_int_equal(sqlite3_open(path, &c), SQLITE_OK);
    assert_int_equal(sqlite3_exec(c,
                                  "UPDATE audit_entries SET entry = replace(entry, '\"seq\":2,', "
                                  "'\"seq\":9,') WHERE seq = 2",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(c, "SELECT entry FROM audit_entries WHERE seq = 2", -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_non_null(strstr((const char *)sqlite3_column_text(st, 0), "\"seq\":9,"));
    cv_audit_leaf_hash(sqlite3_column_text(st, 0), (size_t)sqlite3_column_bytes(st, 0), leaf);
    sqlite3_finalize(st);
    assert_int_equal(
        sqlite3_prepare_v2(c, "UPDATE audit_entries SET leaf_hash=? WHERE seq=2", -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_blob(st, 1, leaf, 32, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(c);
    assert_int_equal(cv_audit_verify(f->dd->db, pk, &rep), CV_E_AUDIT_MISMATCH);
    assert_int_equal(rep.bad_index, 2);
    assert_non_null(strstr(rep.problem, "naming seq 2"));
}

static void test_verify_names_the_subtree_of_a_rehashed_entry(void **state)
{
    struct fx *f = *state;
    struct cv_audit_report rep;
    uint8_t pk[32], kid[8], leaf[32];
    cv_keyring_sign_pk(f->dd->kr, pk, kid);
    append_n(f, 7, "test.append"); /* 8 entries */
    /* Rewrite entry 4 and its leaf hash, not the subtree rows 5 and 7. */
    sqlite3 *c = NULL;
    char path[300];
    snprintf(path, sizeof path, "%s/casevault.db", f->root);
    assert_int_equal(sqlite3_open(path, &c), SQLITE_OK);
    assert_int_equal(sqlite3_exec(c,
                                  "UPDATE audit_entries SET entry = replace(entry, "
                                  "'\"operator\"', '\"admin\"') WHERE seq = 4",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(c, "SELECT entry FROM audit_entries WHERE seq = 4", -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    cv_audit_leaf_hash(sqlite3_column_text(st, 0), (size_t)sqlite3_column_bytes(st, 0), leaf);
    sqlite3_finalize(st);
    assert_int_equal(
        sqlite3_prepare_v2(c, "UPDATE audit_entries SET leaf_hash=? WHERE seq=4", -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_blob(st, 1, leaf, 32, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(c);
    assert_int_equal(cv_audit_verify(f->dd->db, pk, &rep), CV_E_AUDIT_MISMATCH);
    assert_int_equal(rep.bad_index, 4);
    assert_non_null(strstr(rep.problem, "entries 4..5"));
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_init_entry_origin_and_vkey, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nodes_roots_and_proofs_from_storage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback_leaves_no_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_origin_change, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_detects_tampering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_detects_removal_and_bad_signature, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_verify_detects_wrong_seq, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_names_the_subtree_of_a_rehashed_entry, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
