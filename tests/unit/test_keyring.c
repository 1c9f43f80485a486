/* Unit tests: storage/keyring (wrap/unwrap, associated data, missing and
 * loose key files, signatures) and storage/token (create, authenticate,
 * revoke, expiry). */
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

#include "casevault/datadir.h"
#include "casevault/db.h"
#include "casevault/keyring.h"
#include "casevault/token.h"
#include "fixture.h"

static void test_wrap_unwrap(void **state)
{
    struct fx *f = *state;
    uint8_t key[32], back[32], wrapped[CV_WRAPPED_BYTES];
    char kid[CV_KEY_ID_LEN + 1], active[CV_KEY_ID_LEN + 1];
    randombytes_buf(key, sizeof key);
    assert_int_equal(cv_keyring_wrap(f->dd->kr, "blob/A", key, kid, wrapped), CV_OK);
    cv_keyring_active_kek(f->dd->kr, active);
    assert_string_equal(kid, active);
    assert_true(cv_keyring_has_kek(f->dd->kr, kid));
    assert_false(cv_keyring_has_kek(f->dd->kr, "0000000000000000"));
    assert_int_equal(cv_keyring_unwrap(f->dd->kr, "blob/A", kid, wrapped, back), CV_OK);
    assert_memory_equal(key, back, 32);
    /* Another record's associated data, a flipped bit, an unknown KEK: refused. */
    assert_int_equal(cv_keyring_unwrap(f->dd->kr, "blob/B", kid, wrapped, back), CV_E_CRYPTO);
    wrapped[40] ^= 1;
    assert_int_equal(cv_keyring_unwrap(f->dd->kr, "blob/A", kid, wrapped, back), CV_E_CRYPTO);
    assert_int_equal(cv_keyring_unwrap(f->dd->kr, "blob/A", "0000000000000000", wrapped, back),
                     CV_E_KEY_MISSING);
}

static void test_keyed_hash_and_sign(void **state)
{
    struct fx *f = *state;
    uint8_t a[32], b[32], c[32], sig[64], pk[32], kid[8];
    assert_int_equal(cv_keyring_keyed_hash(f->dd->kr, CV_KEY_BLIND, "x", "v", 1, a), CV_OK);
    assert_int_equal(cv_keyring_keyed_hash(f->dd->kr, CV_KEY_BLIND, "x", "v", 1, b), CV_OK);
    assert_int_equal(cv_keyring_keyed_hash(f->dd->kr, CV_KEY_BLIND, "y", "v", 1, c), CV_OK);
    assert_memory_equal(a, b, 32);
    assert_memory_not_equal(a, c, 32);
    assert_int_equal(cv_keyring_keyed_hash(f->dd->kr, CV_KEY_TOKEN, "x", "v", 1, c), CV_OK);
    assert_memory_not_equal(a, c, 32);
    assert_int_equal(cv_keyring_sign(f->dd->kr, "msg", 3, sig), CV_OK);
    cv_keyring_sign_pk(f->dd->kr, pk, kid);
    assert_int_equal(crypto_sign_verify_detached(sig, (const uint8_t *)"msg", 3, pk), 0);
    assert_int_not_equal(crypto_sign_verify_detached(sig, (const uint8_t *)"msG", 3, pk), 0);
}

static void test_reopen_same_derived_keys(void **state)
{
    struct fx *f = *state;
    uint8_t a[32], b[32];
    struct cv_datadir *dd2 = NULL;
    assert_int_equal(cv_keyring_keyed_hash(f->dd->kr, CV_KEY_TOKEN, "t", "1", 1, a), CV_OK);
    assert_int_equal(cv_datadir_open(f->root, 1, &dd2), CV_OK);
    assert_int_equal(cv_keyring_keyed_hash(dd2->kr, CV_KEY_TOKEN, "t", "1", 1, b), CV_OK);
    assert_memory_equal(a, b, 32);
    cv_datadir_free(dd2);
}

static void test_key_file_problems(void **state)
{
    struct fx *f = *state;
    char active[CV_KEY_ID_LEN + 1], path[300], moved[300];
    struct cv_datadir *dd2 = NULL;
    cv_keyring_active_kek(f->dd->kr, active);
    snprintf(path, sizeof path, "%s/keys/%s.kek", f->root, active);
    snprintf(moved, sizeof moved, "%s/%s.kek.away", f->dir, active);
    /* A key file readable by others is refused. */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(cv_datadir_open(f->root, 1, &dd2), CV_E_KEY_INVALID);
    assert_int_equal(chmod(path, 0600), 0);
    /* A missing active KEK is reported as such. */
    assert_int_equal(rename(path, moved), 0);
    assert_int_equal(cv_datadir_open(f->root, 1, &dd2), CV_E_KEY_MISSING);
    assert_int_equal(rename(moved, path), 0);
    assert_int_equal(cv_datadir_open(f->root, 1, &dd2), CV_OK);
    cv_datadir_free(dd2);
}

static void test_tokens(void **state)
{
    struct fx *f = *state;
    char text[CV_TOKEN_TEXT_LEN + 1], id[CV_ULID_LEN + 1], cid[CV_ULID_LEN + 1];
    char text2[CV_TOKEN_TEXT_LEN + 1], id2[CV_ULID_LEN + 1];
    struct cv_principal who;
    struct cv_db *db = f->dd->db;
    assert_int_equal(cv_db_begin(db), CV_OK);
    assert_int_equal(cv_token_create(db, f->dd->kr, CV_ROLE_REVIEWER, "rev-1", NULL, 0, text, id),
                     CV_OK);
    assert_int_equal(
        cv_token_create(db, f->dd->kr, CV_ROLE_REVIEWER, "bad name", NULL, 0, text2, id2),
        CV_E_ARG);
    assert_int_equal(cv_token_create(db, f->dd->kr, CV_ROLE_APPLICANT, "case", NULL, 0, text2, id2),
                     CV_E_ARG);
    cv_ulid_new(cid);
    /* Already expired applicant token. */
    assert_int_equal(
        cv_token_create(db, f->dd->kr, CV_ROLE_APPLICANT, "case", cid, 1000, text2, id2), CV_OK);
    assert_int_equal(cv_db_commit(db), CV_OK);
    assert_int_equal(strlen(text), 43);
    assert_int_equal(cv_token_authenticate(db, f->dd->kr, text, &who), CV_OK);
    assert_int_equal(who.role, CV_ROLE_REVIEWER);
    assert_string_equal(who.token_id, id);
    assert_string_equal(who.name, "rev-1");
    assert_string_equal(who.case_id, "");
    assert_int_equal(cv_token_authenticate(db, f->dd->kr, text2, &who), CV_E_UNAUTHORIZED);
    assert_int_equal(cv_token_authenticate(db, f->dd->kr, "", &who), CV_E_UNAUTHORIZED);
    assert_int_equal(cv_token_authenticate(db, f->dd->kr, "not-base64!", &who), CV_E_UNAUTHORIZED);
    char forged[CV_TOKEN_TEXT_LEN + 1];
    memcpy(forged, text, sizeof forged);
    forged[0] = forged[0] == 'A' ? 'B' : 'A';
    assert_int_equal(cv_token_authenticate(db, f->dd->kr, forged, &who), CV_E_UNAUTHORIZED);
    /* The database holds no token text. */
    char cmd[400];
    snprintf(cmd, sizeof cmd, "grep -c -a -F '%s' %s/casevault.db* >/dev/null", text, f->root);
    assert_int_not_equal(system(cmd), 0);
    assert_int_equal(cv_db_begin(db), CV_OK);
    assert_int_equal(cv_token_revoke(db, id), CV_OK);
    assert_int_equal(cv_token_revoke(db, id), CV_E_NOT_FOUND);
    assert_int_equal(cv_db_commit(db), CV_OK);
    assert_int_equal(cv_token_authenticate(db, f->dd->kr, text, &who), CV_E_UNAUTHORIZED);
    enum cv_role r;
    assert_int_equal(cv_role_parse("auditor", &r), CV_OK);
    assert_int_equal(r, CV_ROLE_AUDITOR);
    assert_int_equal(cv_role_parse("root", &r), CV_E_ARG);
    assert_string_equal(cv_role_str(CV_ROLE_BACKUP), "backup");
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_wrap_unwrap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keyed_hash_and_sign, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_same_derived_keys, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_file_problems, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tokens, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
