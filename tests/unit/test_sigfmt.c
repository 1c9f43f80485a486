/* Unit tests: storage/minisign and storage/age, checked for interop against
 * Debian's minisign and age command-line tools (installed by scripts/deps). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "casevault/age.h"
#include "casevault/datadir.h"
#include "casevault/minisign.h"
#include "fixture.h"

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    fclose(fp);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    buf[n] = '\0';
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

static void test_minisign_interop(void **state)
{
    struct fx *f = *state;
    char path[300], sigp[320], pubp[300], cmd[1200], tc[600];
    const char *msg =
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  case.json\n";
    char *sig = NULL;
    size_t publen = 0;
    snprintf(path, sizeof path, "%s/MANIFEST.sha256", f->dir);
    snprintf(sigp, sizeof sigp, "%s.minisig", path);
    snprintf(pubp, sizeof pubp, "%s/keys/casevault.pub", f->root);
    write_file(path, msg, strlen(msg));
    assert_int_equal(cv_minisign_sign(f->dd->kr, msg, strlen(msg), "case 01ABC as_of 7", &sig),
                     CV_OK);
    write_file(sigp, sig, strlen(sig));
    char *pub = read_file(pubp, &publen);
    char mine[256];
    assert_int_equal(cv_minisign_pubkey_text(f->dd->kr, mine, sizeof mine), CV_OK);
    assert_string_equal(pub, mine);
    snprintf(cmd, sizeof cmd, "minisign -Vm '%s' -p '%s' >/dev/null 2>&1", path, pubp);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(cv_minisign_verify(pub, sig, msg, strlen(msg), tc, sizeof tc), CV_OK);
    assert_string_equal(tc, "case 01ABC as_of 7");
    /* Tampered message: both minisign and our verifier refuse. */
    write_file(path, "x", 1);
    assert_int_not_equal(system(cmd), 0);
    assert_int_equal(cv_minisign_verify(pub, sig, "x", 1, NULL, 0), CV_E_SIGNATURE_INVALID);
    /* Tampered trusted comment. */
    char *t = strstr(sig, "as_of 7");
    t[6] = '8';
    assert_int_equal(cv_minisign_verify(pub, sig, msg, strlen(msg), NULL, 0),
                     CV_E_SIGNATURE_INVALID);
    assert_int_equal(cv_minisign_verify(pub, "garbage", msg, strlen(msg), NULL, 0), CV_E_ARG);
    char *bad = NULL;
    assert_int_equal(cv_minisign_sign(f->dd->kr, msg, 1, "two\nlines", &bad), CV_E_ARG);
    free(sig);
    free(pub);
}

struct sinkbuf {
    FILE *fp;
};

static cv_status to_file(void *arg, const uint8_t *data, size_t len)
{
    struct sinkbuf *s = arg;
    return fwrite(data, 1, len, s->fp) == len ? CV_OK : CV_E_IO;
}

static void test_age_interop(void **state)
{
    struct fx *f = *state;
    char key[300], cmd[1200], enc[300], dec[300], line[256], recip[128] = "";
    snprintf(key, sizeof key, "%s/age.key", f->dir);
    snprintf(cmd, sizeof cmd, "age-keygen -o '%s' 2>/dev/null", key);
    assert_int_equal(system(cmd), 0);
    FILE *kf = fopen(key, "r");
    assert_non_null(kf);
    while (fgets(line, sizeof line, kf))
        if (sscanf(line, "# public key: %127s", recip) == 1)
            break;
    fclose(kf);
    uint8_t pk[32];
    assert_int_equal(cv_age_recipient_parse(recip, pk), CV_OK);
    static const size_t sizes[] = {0, 1, 65535, 65536, 65537, 131072, 300000};
    uint8_t *data = malloc(300000);
    randombytes_buf(data, 300000);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        snprintf(enc, sizeof enc, "%s/out%zu.age", f->dir, i);
        snprintf(dec, sizeof dec, "%s/out%zu.bin", f->dir, i);
        struct sinkbuf sb = {fopen(enc, "wb")};
        struct cv_age_writer *w = NULL;
        assert_int_equal(cv_age_writer_new(pk, to_file, &sb, &w), CV_OK);
        /* Feed in odd pieces to exercise chunk boundaries. */
        size_t off = 0, step = 7777;
        while (off < sizes[i]) {
            size_t n = sizes[i] - off < step ? sizes[i] - off : step;
            assert_int_equal(cv_age_writer_write(w, data + off, n), CV_OK);
            off += n;
            step = step * 3 % 70001 + 1;
        }
        assert_int_equal(cv_age_writer_finish(w), CV_OK);
        cv_age_writer_free(w);
        fclose(sb.fp);
        snprintf(cmd, sizeof cmd, "age -d -i '%s' '%s' > '%s'", key, enc, dec);
        assert_int_equal(system(cmd), 0);
        size_t got = 0;
        char *back = read_file(dec, &got);
        assert_int_equal(got, sizes[i]);
        assert_memory_equal(back, data, sizes[i]);
        free(back);
        if (sizes[i] == 131072) {
            /* Cut the final chunk off: age must refuse. */
            snprintf(cmd, sizeof cmd,
                     "truncate -s -1000 '%s' && ! age -d -i '%s' -o /dev/null '%s' 2>/dev/null",
                     enc, key, enc);
            assert_int_equal(system(cmd), 0);
        }
    }
    free(data);
    /* Malformed recipients. */
    char bad[128];
    snprintf(bad, sizeof bad, "%s", recip);
    bad[10] = bad[10] == 'q' ? 'p' : 'q';
    assert_int_equal(cv_age_recipient_parse(bad, pk), CV_E_INVALID_FIELD);
    assert_int_equal(cv_age_recipient_parse("age1", pk), CV_E_INVALID_FIELD);
    assert_int_equal(cv_age_recipient_parse("", pk), CV_E_INVALID_FIELD);
    assert_int_equal(cv_age_recipient_parse(NULL, pk), CV_E_INVALID_FIELD);
    snprintf(bad, sizeof bad, "AGE1%s", recip + 4);
    assert_int_equal(cv_age_recipient_parse(bad, pk), CV_E_INVALID_FIELD);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_minisign_interop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_age_interop, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
