/* Unit tests: storage/checkpoint (C2SP signed notes, verifier keys,
 * tlog-checkpoint texts).
 *
 * Vectors: golang.org/x/mod/sumdb/note note_test.go / example_test.go
 * (the "PeterNeumann" and "EnochRoot" keys; the same vectors are used by
 * the C2SP signed-note implementations), and the example of
 * c2sp.org/signed-note ("example.com/foo"). Ed25519 is deterministic, so
 * signing the Go example text with the Go example seed must reproduce the
 * published note byte for byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "casevault/checkpoint.h"

#define DASH "\xE2\x80\x94"

static const char *peter_skey_b64 = "AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
static const char *peter_vkey =
    "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
static const char *enoch_vkey = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
static const char *go_text = "If you think cryptography is the answer to your problem,\n"
                             "then you don't know what your problem is.\n";
static const char *peter_sig =
    DASH " PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqd"
         "ngotpRZb6KE6RyyBwJnAM=\n";
static const char *enoch_sig =
    DASH " EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWL"
         "ox33WWd1RvMc+QQ=\n";

static void peter_keys(uint8_t pk[32], uint8_t sk[64])
{
    uint8_t blob[33];
    size_t n = 0;
    assert_int_equal(sodium_base642bin(blob, sizeof blob, peter_skey_b64, strlen(peter_skey_b64),
                                       NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL),
                     0);
    assert_int_equal(n, 33);
    assert_int_equal(blob[0], 1);
    crypto_sign_seed_keypair(pk, sk, blob + 1);
}

static char *cat(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *s = malloc(n);
    snprintf(s, n, "%s%s%s", a, b, c);
    return s;
}

static void test_go_vector_sign_and_vkey(void **state)
{
    (void)state;
    uint8_t pk[32], sk[64], sig[64];
    char vkey[CV_NOTE_VKEY_MAX];
    peter_keys(pk, sk);
    assert_int_equal(cv_note_key_id("PeterNeumann", pk), 0xc74f20a3u);
    assert_int_equal(cv_note_vkey("PeterNeumann", pk, vkey, sizeof vkey), CV_OK);
    assert_string_equal(vkey, peter_vkey);
    crypto_sign_detached(sig, NULL, (const uint8_t *)go_text, strlen(go_text), sk);
    char *note = NULL;
    assert_int_equal(cv_note_assemble(go_text, "PeterNeumann", 0xc74f20a3u, sig, &note), CV_OK);
    char *want = cat(go_text, "\n", peter_sig);
    assert_string_equal(note, want);
    size_t tl = 0;
    assert_int_equal(cv_note_verify(note, strlen(note), peter_vkey, &tl), CV_OK);
    assert_int_equal(tl, strlen(go_text));
    free(note);
    free(want);
}

static void test_go_vector_verify(void **state)
{
    (void)state;
    size_t tl = 0;
    char *both = NULL;
    {
        char *head = cat(go_text, "\n", peter_sig);
        both = cat(head, enoch_sig, "");
        free(head);
    }
    assert_int_equal(cv_note_verify(both, strlen(both), peter_vkey, &tl), CV_OK);
    assert_int_equal(cv_note_verify(both, strlen(both), enoch_vkey, &tl), CV_OK);
    assert_int_equal(tl, strlen(go_text));
    /* Only Peter signed: Enoch's key finds no signature of its own. */
    char *one = cat(go_text, "\n", peter_sig);
    assert_int_equal(cv_note_verify(one, strlen(one), enoch_vkey, &tl), CV_E_SIGNATURE_INVALID);
    /* An altered body is refused. */
    char *bad = strdup(one);
    bad[3] ^= 0x20;
    assert_int_equal(cv_note_verify(bad, strlen(bad), peter_vkey, &tl), CV_E_SIGNATURE_INVALID);
    /* An altered signature byte is refused. */
    free(bad);
    bad = strdup(one);
    char *b64 = strstr(bad, "x08go/") + 20;
    *b64 = *b64 == 'A' ? 'B' : 'A';
    assert_int_equal(cv_note_verify(bad, strlen(bad), peter_vkey, &tl), CV_E_SIGNATURE_INVALID);
    /* No blank line, no signature, a text without final newline. */
    assert_int_equal(cv_note_verify(go_text, strlen(go_text), peter_vkey, &tl),
                     CV_E_SIGNATURE_INVALID);
    char *nosig = cat(go_text, "\n", "");
    assert_int_equal(cv_note_verify(nosig, strlen(nosig), peter_vkey, &tl), CV_E_SIGNATURE_INVALID);
    /* A hyphen instead of the em dash is not a signature line. */
    char *hyphen = cat(go_text, "\n- PeterNeumann ", strstr(peter_sig, "x08go"));
    assert_int_equal(cv_note_verify(hyphen, strlen(hyphen), peter_vkey, &tl),
                     CV_E_SIGNATURE_INVALID);
    /* Control characters are refused. */
    char *ctl = strdup(one);
    ctl[5] = '\t';
    assert_int_equal(cv_note_verify(ctl, strlen(ctl), peter_vkey, &tl), CV_E_SIGNATURE_INVALID);
    /* A bad verifier key is an argument error. */
    assert_int_equal(cv_note_verify(one, strlen(one), "PeterNeumann+c74f20a4+ARpc", &tl), CV_E_ARG);
    free(ctl);
    free(hyphen);
    free(nosig);
    free(bad);
    free(one);
    free(both);
}

static void test_spec_example(void **state)
{
    (void)state;
    /* c2sp.org/signed-note example key and note. */
    const char *vkey = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
    const char *note = "This is an example message.\n\n" DASH
                       " example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1E"
                       "RYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
    char name[CV_NOTE_NAME_MAX + 1];
    uint32_t id;
    uint8_t pk[32];
    size_t tl;
    assert_int_equal(cv_note_vkey_parse(vkey, name, &id, pk), CV_OK);
    assert_string_equal(name, "example.com/foo");
    assert_int_equal(id, 0x530d903au);
    assert_int_equal(cv_note_verify(note, strlen(note), vkey, &tl), CV_OK);
    assert_int_equal(tl, strlen("This is an example message.\n"));
}

static void test_vkey_manglings_refused(void **state)
{
    (void)state;
    char name[CV_NOTE_NAME_MAX + 1];
    uint32_t id;
    uint8_t pk[32];
    char buf[200];
    size_t n = strlen(peter_vkey);
    assert_int_equal(cv_note_vkey_parse(peter_vkey, name, &id, pk), CV_OK);
    snprintf(buf, sizeof buf, "%s\n", peter_vkey);
    assert_int_equal(cv_note_vkey_parse(buf, name, &id, pk), CV_OK);
    /* Every proper substring and every single-character change is refused. */
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j <= n; j++) {
            if (i == 0 && j == n)
                continue;
            snprintf(buf, sizeof buf, "%.*s", (int)(j - i), peter_vkey + i);
            assert_int_not_equal(cv_note_vkey_parse(buf, name, &id, pk), CV_OK);
        }
        snprintf(buf, sizeof buf, "%s", peter_vkey);
        buf[i] = (char)(buf[i] + 1);
        assert_int_not_equal(cv_note_vkey_parse(buf, name, &id, pk), CV_OK);
    }
}

static void test_checkpoint_text(void **state)
{
    (void)state;
    uint8_t root[32], pk[32], sk[64], sig[64];
    char body[300], vkey[CV_NOTE_VKEY_MAX];
    size_t len = 0;
    struct cv_checkpoint c;
    for (int i = 0; i < 32; i++)
        root[i] = (uint8_t)i;
    assert_int_equal(cv_checkpoint_body("example.com/log", 20852163, root, body, sizeof body, &len),
                     CV_OK);
    assert_string_equal(
        body, "example.com/log\n20852163\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n");
    assert_int_equal(cv_checkpoint_parse(body, len, &c), CV_OK);
    assert_string_equal(c.origin, "example.com/log");
    assert_int_equal(c.size, 20852163);
    assert_memory_equal(c.root, root, 32);
    /* Bad origins, bad sizes, bad roots. */
    assert_int_equal(cv_checkpoint_body("has space", 1, root, body, sizeof body, &len), CV_E_ARG);
    assert_int_equal(cv_checkpoint_body("a+b", 1, root, body, sizeof body, &len), CV_E_ARG);
    assert_int_equal(cv_checkpoint_body("", 1, root, body, sizeof body, &len), CV_E_ARG);
    const char *bad[] = {
        "o\n012\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "o\n-1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n",
        "o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
        "o\n1\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n",
        "o\n1\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(cv_checkpoint_parse(bad[i], strlen(bad[i]), &c), CV_E_ARG);
    /* Signed checkpoint: verifies under its own origin's key only. */
    peter_keys(pk, sk);
    assert_int_equal(cv_checkpoint_body("casevault/test", 5, root, body, sizeof body, &len), CV_OK);
    crypto_sign_detached(sig, NULL, (const uint8_t *)body, len, sk);
    char *note = NULL;
    assert_int_equal(
        cv_note_assemble(body, "casevault/test", cv_note_key_id("casevault/test", pk), sig, &note),
        CV_OK);
    assert_int_equal(cv_note_vkey("casevault/test", pk, vkey, sizeof vkey), CV_OK);
    assert_int_equal(cv_checkpoint_verify(note, strlen(note), vkey, &c), CV_OK);
    assert_int_equal(c.size, 5);
    /* Same key, another name: the signature line is unknown to that key. */
    assert_int_equal(cv_note_vkey("casevault/other", pk, vkey, sizeof vkey), CV_OK);
    assert_int_equal(cv_checkpoint_verify(note, strlen(note), vkey, &c), CV_E_SIGNATURE_INVALID);
    /* Size changed in the body: refused. */
    assert_int_equal(cv_note_vkey("casevault/test", pk, vkey, sizeof vkey), CV_OK);
    char *p = strstr(note, "\n5\n");
    p[1] = '6';
    assert_int_equal(cv_checkpoint_verify(note, strlen(note), vkey, &c), CV_E_SIGNATURE_INVALID);
    free(note);
}

/* Every single-byte change of a valid signed checkpoint is refused (under
 * ASan: and never read out of bounds), and so is every truncation. */
static void test_mutated_notes_refused(void **state)
{
    (void)state;
    uint8_t root[32], pk[32], sk[64], sig[64];
    char body[300], vkey[CV_NOTE_VKEY_MAX];
    size_t len = 0, tl = 0;
    struct cv_checkpoint c;
    memset(root, 0xab, sizeof root);
    peter_keys(pk, sk);
    assert_int_equal(cv_checkpoint_body("casevault/x", 77, root, body, sizeof body, &len), CV_OK);
    crypto_sign_detached(sig, NULL, (const uint8_t *)body, len, sk);
    char *note = NULL;
    assert_int_equal(
        cv_note_assemble(body, "casevault/x", cv_note_key_id("casevault/x", pk), sig, &note),
        CV_OK);
    assert_int_equal(cv_note_vkey("casevault/x", pk, vkey, sizeof vkey), CV_OK);
    size_t n = strlen(note);
    assert_int_equal(cv_checkpoint_verify(note, n, vkey, &c), CV_OK);
    const uint8_t deltas[] = {0x01, 0x20, 0x80, 0xff};
    for (size_t i = 0; i < n; i++) {
        for (size_t d = 0; d < sizeof deltas; d++) {
            char *m = malloc(n);
            memcpy(m, note, n);
            m[i] = (char)(m[i] ^ deltas[d]);
            cv_status st = cv_checkpoint_verify(m, n, vkey, &c);
            /* The only harmless change would be none at all. */
            assert_int_equal(st, CV_E_SIGNATURE_INVALID);
            free(m);
        }
    }
    for (size_t cut = 0; cut < n; cut++) {
        char *m = malloc(cut ? cut : 1);
        memcpy(m, note, cut);
        assert_int_not_equal(cv_note_verify(m, cut, vkey, &tl), CV_OK);
        free(m);
    }
    /* A second, unknown signature line is ignored; 17 lines are too many. */
    size_t cap = n + 17 * 120;
    char *more = malloc(cap);
    snprintf(more, cap, "%s" DASH " someone.else/key AAAAAAAAAAAAAAAA\n", note);
    assert_int_equal(cv_checkpoint_verify(more, strlen(more), vkey, &c), CV_OK);
    snprintf(more, cap, "%s", note);
    for (int i = 0; i < 16; i++)
        strcat(more, DASH " someone.else/key AAAAAAAAAAAAAAAA\n");
    assert_int_equal(cv_checkpoint_verify(more, strlen(more), vkey, &c), CV_E_SIGNATURE_INVALID);
    free(more);
    free(note);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_go_vector_sign_and_vkey),
        cmocka_unit_test(test_go_vector_verify),
        cmocka_unit_test(test_spec_example),
        cmocka_unit_test(test_vkey_manglings_refused),
        cmocka_unit_test(test_checkpoint_text),
        cmocka_unit_test(test_mutated_notes_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
