/* Unit tests: storage/merkle (RFC 6962 / RFC 9162 §2.1 roots, inclusion and
 * consistency proofs, verification, the compact-range stack).
 *
 * Published vectors: the 8-leaf reference tree used by the certificate-
 * transparency implementations, as in transparency-dev/merkle
 * proof/verify_test.go (github.com/transparency-dev/merkle, the Go
 * successor of google/certificate-transparency-go merkletree tests): its
 * leaves, the roots of sizes 1..8, inclusion proofs (leaf 1-based there,
 * 0-based here) and consistency proofs. Every (index, size) and (old, new)
 * pair up to 64 leaves is checked against a plain recursive transcription
 * of the RFC 9162 §2.1 definitions written below. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "casevault/merkle.h"
#include "casevault/util.h"

typedef uint8_t hash_t[32];

static void unhex(const char *h, uint8_t *out, size_t n)
{
    assert_int_equal(strlen(h), 2 * n);
    assert_int_equal(cv_hex_decode(h, out, n), CV_OK);
}

static const char *ct_leaves[8] = {
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
};

static const char *ct_roots[9] = {
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

struct vec {
    uint64_t a, b; /* inclusion: index, size; consistency: old, new */
    size_t n;
    const char *h[3];
};

static const struct vec ct_inclusion[] = {
    {0,
     8,
     3,
     {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
    {5,
     8,
     3,
     {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
    {2, 3, 1, {"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
    {1,
     5,
     3,
     {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
    {0, 1, 0, {NULL}},
};

static const struct vec ct_consistency[] = {
    {1, 1, 0, {NULL}},
    {1,
     8,
     3,
     {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
    {6,
     8,
     3,
     {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
    {2,
     5,
     2,
     {"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
    {6,
     7,
     3,
     {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
};

/* ---- the plain recursive reference (RFC 9162 §2.1, over leaf hashes) ---- */

static uint64_t ref_k(uint64_t n)
{
    uint64_t k = 1;
    while (k * 2 < n)
        k *= 2;
    return k;
}

static void ref_mth(hash_t *d, uint64_t n, uint8_t out[32])
{
    if (n == 0) {
        cv_sha256("", 0, out);
        return;
    }
    if (n == 1) {
        memcpy(out, d[0], 32);
        return;
    }
    uint64_t k = ref_k(n);
    uint8_t l[32], r[32], buf[65];
    ref_mth(d, k, l);
    ref_mth(d + k, n - k, r);
    buf[0] = 1;
    memcpy(buf + 1, l, 32);
    memcpy(buf + 33, r, 32);
    cv_sha256(buf, 65, out);
}

static void ref_path(uint64_t m, hash_t *d, uint64_t n, hash_t *out, size_t *cnt)
{
    if (n <= 1)
        return;
    uint64_t k = ref_k(n);
    if (m < k) {
        ref_path(m, d, k, out, cnt);
        ref_mth(d + k, n - k, out[(*cnt)++]);
    } else {
        ref_path(m - k, d + k, n - k, out, cnt);
        ref_mth(d, k, out[(*cnt)++]);
    }
}

static void ref_subproof(uint64_t m, hash_t *d, uint64_t n, int b, hash_t *out, size_t *cnt)
{
    if (m == n) {
        if (!b)
            ref_mth(d, n, out[(*cnt)++]);
        return;
    }
    uint64_t k = ref_k(n);
    if (m <= k) {
        ref_subproof(m, d, k, b, out, cnt);
        ref_mth(d + k, n - k, out[(*cnt)++]);
    } else {
        ref_subproof(m - k, d + k, n - k, 0, out, cnt);
        ref_mth(d, k, out[(*cnt)++]);
    }
}

/* ---- an in-memory node source over leaf hashes ---- */

struct mem {
    hash_t *leaves;
    uint64_t n;
    unsigned reads;
};

static cv_status mem_node(void *ctx, unsigned level, uint64_t index, uint8_t out[32])
{
    struct mem *m = ctx;
    uint64_t start = index << level, len = UINT64_C(1) << level;
    m->reads++;
    if (start + len > m->n)
        return CV_E_NOT_FOUND;
    ref_mth(m->leaves + start, len, out);
    return CV_OK;
}

static hash_t ct[8];
static hash_t many[64];

static int setup(void **state)
{
    (void)state;
    for (int i = 0; i < 8; i++) {
        uint8_t b[16];
        size_t n = strlen(ct_leaves[i]) / 2;
        if (n)
            unhex(ct_leaves[i], b, n);
        cv_merkle_leaf_hash(b, n, ct[i]);
    }
    for (int i = 0; i < 64; i++) {
        uint8_t b[2] = {(uint8_t)i, (uint8_t)(i * 7)};
        cv_merkle_leaf_hash(b, sizeof b, many[i]);
    }
    return 0;
}

static void test_reference_roots(void **state)
{
    (void)state;
    struct mem m = {ct, 8, 0};
    struct cv_merkle_src src = {mem_node, &m};
    for (uint64_t n = 0; n <= 8; n++) {
        uint8_t want[32], got[32], ref[32];
        unhex(ct_roots[n], want, 32);
        assert_int_equal(cv_merkle_root(&src, n, got), CV_OK);
        assert_memory_equal(got, want, 32);
        ref_mth(ct, n, ref);
        assert_memory_equal(ref, want, 32); /* the test's reference agrees too */
    }
    /* Leaf and node prefixes. */
    uint8_t h[32], want[32];
    cv_merkle_leaf_hash("", 0, h);
    unhex(ct_roots[1], want, 32);
    assert_memory_equal(h, want, 32);
    cv_merkle_node_hash(ct[0], ct[1], h);
    unhex(ct_roots[2], want, 32);
    assert_memory_equal(h, want, 32);
}

static void test_reference_inclusion(void **state)
{
    (void)state;
    struct mem m = {ct, 8, 0};
    struct cv_merkle_src src = {mem_node, &m};
    for (size_t v = 0; v < sizeof ct_inclusion / sizeof ct_inclusion[0]; v++) {
        const struct vec *t = &ct_inclusion[v];
        hash_t want[3], got[CV_MERKLE_MAX_PROOF];
        uint8_t root[32];
        size_t n = 99;
        for (size_t i = 0; i < t->n; i++)
            unhex(t->h[i], want[i], 32);
        assert_int_equal(cv_merkle_inclusion_proof(&src, t->a, t->b, got, &n), CV_OK);
        assert_int_equal(n, t->n);
        for (size_t i = 0; i < n; i++)
            assert_memory_equal(got[i], want[i], 32);
        unhex(ct_roots[t->b], root, 32);
        assert_int_equal(
            cv_merkle_verify_inclusion(ct[t->a], t->a, t->b, (const uint8_t *)want, t->n, root),
            CV_OK);
    }
}

static void test_reference_consistency(void **state)
{
    (void)state;
    struct mem m = {ct, 8, 0};
    struct cv_merkle_src src = {mem_node, &m};
    for (size_t v = 0; v < sizeof ct_consistency / sizeof ct_consistency[0]; v++) {
        const struct vec *t = &ct_consistency[v];
        hash_t want[3], got[CV_MERKLE_MAX_PROOF];
        uint8_t r1[32], r2[32];
        size_t n = 99;
        for (size_t i = 0; i < t->n; i++)
            unhex(t->h[i], want[i], 32);
        assert_int_equal(cv_merkle_consistency_proof(&src, t->a, t->b, got, &n), CV_OK);
        assert_int_equal(n, t->n);
        for (size_t i = 0; i < n; i++)
            assert_memory_equal(got[i], want[i], 32);
        unhex(ct_roots[t->a], r1, 32);
        unhex(ct_roots[t->b], r2, 32);
        assert_int_equal(
            cv_merkle_verify_consistency(t->a, t->b, r1, r2, (const uint8_t *)want, t->n), CV_OK);
        if (t->a != t->b) /* swapped roots */
            assert_int_equal(
                cv_merkle_verify_consistency(t->a, t->b, r2, r1, (const uint8_t *)want, t->n),
                CV_E_PROOF_INVALID);
    }
}

static unsigned log2ceil(uint64_t n)
{
    unsigned l = 0;
    while ((UINT64_C(1) << l) < n)
        l++;
    return l;
}

/* Every (index, size) up to 64 leaves: same proof as the reference, it
 * verifies, and nothing near it does. */
static void test_all_inclusion_pairs(void **state)
{
    (void)state;
    struct mem m = {many, 64, 0};
    struct cv_merkle_src src = {mem_node, &m};
    for (uint64_t size = 1; size <= 64; size++) {
        uint8_t root[32], other[32];
        ref_mth(many, size, root);
        for (uint64_t idx = 0; idx < size; idx++) {
            hash_t got[CV_MERKLE_MAX_PROOF], ref[CV_MERKLE_MAX_PROOF];
            size_t n = 0, rn = 0;
            m.reads = 0;
            assert_int_equal(cv_merkle_inclusion_proof(&src, idx, size, got, &n), CV_OK);
            ref_path(idx, many, size, ref, &rn);
            assert_int_equal(n, rn);
            assert_true(n <= log2ceil(size));
            assert_true(m.reads <= 2 * log2ceil(size) + 1); /* O(log n) node reads */
            for (size_t i = 0; i < n; i++)
                assert_memory_equal(got[i], ref[i], 32);
            const uint8_t *p = (const uint8_t *)got;
            assert_int_equal(cv_merkle_verify_inclusion(many[idx], idx, size, p, n, root), CV_OK);
            assert_int_equal(cv_merkle_root_from_inclusion(many[idx], idx, size, p, n, other),
                             CV_OK);
            assert_memory_equal(other, root, 32);
            /* wrong leaf, wrong index */
            assert_int_not_equal(
                cv_merkle_verify_inclusion(many[(idx + 1) % 64], idx, size, p, n, root), CV_OK);
            if (size > 1)
                assert_int_not_equal(
                    cv_merkle_verify_inclusion(many[idx], (idx + 1) % size, size, p, n, root),
                    CV_OK);
            /* A wrong tree height (as in the Go probes: size * 2, size / 2).
             * size + 1 may legitimately verify: an inclusion proof binds the
             * leaf to the root, and the checkpoint binds the root to a size. */
            assert_int_not_equal(cv_merkle_verify_inclusion(many[idx], idx, size * 2, p, n, root),
                                 CV_OK);
            if (idx < size / 2)
                assert_int_not_equal(
                    cv_merkle_verify_inclusion(many[idx], idx, size / 2, p, n, root), CV_OK);
            /* too short, extra hash */
            if (n > 0)
                assert_int_equal(cv_merkle_verify_inclusion(many[idx], idx, size, p, n - 1, root),
                                 CV_E_PROOF_INVALID);
            memcpy(got[n], root, 32);
            assert_int_equal(cv_merkle_verify_inclusion(many[idx], idx, size, p, n + 1, root),
                             CV_E_PROOF_INVALID);
            /* swapped siblings, flipped bit */
            if (n > 1) {
                hash_t sw[CV_MERKLE_MAX_PROOF];
                memcpy(sw, got, sizeof sw);
                memcpy(sw[0], got[1], 32);
                memcpy(sw[1], got[0], 32);
                if (memcmp(got[0], got[1], 32) != 0)
                    assert_int_equal(cv_merkle_verify_inclusion(many[idx], idx, size,
                                                                (const uint8_t *)sw, n, root),
                                     CV_E_PROOF_INVALID);
            }
            for (size_t i = 0; i < n; i++) {
                got[i][0] ^= 8;
                assert_int_equal(cv_merkle_verify_inclusion(many[idx], idx, size, p, n, root),
                                 CV_E_PROOF_INVALID);
                got[i][0] ^= 8;
            }
        }
    }
}

static void test_all_consistency_pairs(void **state)
{
    (void)state;
    struct mem m = {many, 64, 0};
    struct cv_merkle_src src = {mem_node, &m};
    for (uint64_t b = 1; b <= 64; b++) {
        uint8_t rb[32];
        ref_mth(many, b, rb);
        for (uint64_t a = 1; a <= b; a++) {
            hash_t got[CV_MERKLE_MAX_PROOF], ref[CV_MERKLE_MAX_PROOF];
            size_t n = 0, rn = 0;
            uint8_t ra[32];
            ref_mth(many, a, ra);
            m.reads = 0;
            assert_int_equal(cv_merkle_consistency_proof(&src, a, b, got, &n), CV_OK);
            ref_subproof(a, many, b, 1, ref, &rn);
            assert_int_equal(n, rn);
            assert_true(m.reads <= 3 * log2ceil(b) + 2);
            for (size_t i = 0; i < n; i++)
                assert_memory_equal(got[i], ref[i], 32);
            const uint8_t *p = (const uint8_t *)got;
            assert_int_equal(cv_merkle_verify_consistency(a, b, ra, rb, p, n), CV_OK);
            if (a == b) {
                assert_int_equal(n, 0);
                continue;
            }
            /* wrong roots, wrong sizes, too short, extra, flipped */
            assert_int_equal(cv_merkle_verify_consistency(a, b, rb, ra, p, n), CV_E_PROOF_INVALID);
            assert_int_not_equal(cv_merkle_verify_consistency(a, b * 2, ra, rb, p, n), CV_OK);
            if (a > 1)
                assert_int_not_equal(cv_merkle_verify_consistency(a - 1, b, ra, rb, p, n), CV_OK);
            assert_int_equal(cv_merkle_verify_consistency(a, b, ra, rb, p, n - 1),
                             CV_E_PROOF_INVALID);
            memcpy(got[n], rb, 32);
            assert_int_equal(cv_merkle_verify_consistency(a, b, ra, rb, p, n + 1),
                             CV_E_PROOF_INVALID);
            for (size_t i = 0; i < n; i++) {
                got[i][0] ^= 16;
                assert_int_equal(cv_merkle_verify_consistency(a, b, ra, rb, p, n),
                                 CV_E_PROOF_INVALID);
                got[i][0] ^= 16;
            }
            if (n > 1 && memcmp(got[0], got[1], 32) != 0) {
                hash_t sw[CV_MERKLE_MAX_PROOF];
                memcpy(sw, got, sizeof sw);
                memcpy(sw[0], got[1], 32);
                memcpy(sw[1], got[0], 32);
                assert_int_equal(cv_merkle_verify_consistency(a, b, ra, rb, (const uint8_t *)sw, n),
                                 CV_E_PROOF_INVALID);
            }
        }
    }
}

static void test_bad_ranges(void **state)
{
    (void)state;
    struct mem m = {many, 64, 0};
    struct cv_merkle_src src = {mem_node, &m};
    hash_t p[CV_MERKLE_MAX_PROOF];
    size_t n = 0;
    uint8_t root[32];
    ref_mth(many, 8, root);
    /* size 0, index >= size, old > new, old 0 */
    assert_int_equal(cv_merkle_inclusion_proof(&src, 0, 0, p, &n), CV_E_RANGE);
    assert_int_equal(cv_merkle_inclusion_proof(&src, 8, 8, p, &n), CV_E_RANGE);
    assert_int_equal(cv_merkle_consistency_proof(&src, 0, 8, p, &n), CV_E_RANGE);
    assert_int_equal(cv_merkle_consistency_proof(&src, 9, 8, p, &n), CV_E_RANGE);
    assert_int_equal(cv_merkle_verify_inclusion(many[0], 0, 0, (const uint8_t *)p, 0, root),
                     CV_E_RANGE);
    assert_int_equal(cv_merkle_verify_inclusion(many[0], 8, 8, (const uint8_t *)p, 3, root),
                     CV_E_RANGE);
    assert_int_equal(cv_merkle_verify_consistency(0, 8, root, root, (const uint8_t *)p, 0),
                     CV_E_RANGE);
    assert_int_equal(cv_merkle_verify_consistency(9, 8, root, root, (const uint8_t *)p, 0),
                     CV_E_RANGE);
    /* equal sizes: empty proof and equal roots only */
    assert_int_equal(cv_merkle_verify_consistency(8, 8, root, root, (const uint8_t *)p, 0), CV_OK);
    assert_int_equal(cv_merkle_verify_consistency(8, 8, root, root, (const uint8_t *)p, 1),
                     CV_E_PROOF_INVALID);
    assert_int_equal(cv_merkle_verify_consistency(8, 8, root, many[0], (const uint8_t *)p, 0),
                     CV_E_PROOF_INVALID);
    /* a different size but an empty proof */
    assert_int_equal(cv_merkle_verify_consistency(4, 8, root, root, (const uint8_t *)p, 0),
                     CV_E_PROOF_INVALID);
    /* over-long proofs are refused before any hashing */
    assert_int_equal(cv_merkle_verify_inclusion(many[0], 0, 8, (const uint8_t *)p,
                                                CV_MERKLE_MAX_PROOF + 1, root),
                     CV_E_PROOF_INVALID);
    /* the source's error is passed on */
    struct mem small = {many, 3, 0};
    struct cv_merkle_src s2 = {mem_node, &small};
    assert_int_equal(cv_merkle_root(&s2, 8, root), CV_E_NOT_FOUND);
}

static void test_stack_matches_tree(void **state)
{
    (void)state;
    struct cv_merkle_stack s;
    cv_merkle_stack_init(&s);
    uint8_t root[32], ref[32], completed[63][32];
    cv_merkle_stack_root(&s, root);
    ref_mth(many, 0, ref);
    assert_memory_equal(root, ref, 32);
    for (uint64_t i = 0; i < 64; i++) {
        unsigned k = cv_merkle_stack_push(&s, many[i], completed);
        unsigned want = 0;
        for (uint64_t t = i; t & 1; t >>= 1)
            want++;
        assert_int_equal(k, want);
        for (unsigned l = 1; l <= k; l++) {
            uint64_t len = UINT64_C(1) << l;
            ref_mth(many + (i + 1 - len), len, ref);
            assert_memory_equal(completed[l - 1], ref, 32);
        }
        cv_merkle_stack_root(&s, root);
        ref_mth(many, i + 1, ref);
        assert_memory_equal(root, ref, 32);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_roots),       cmocka_unit_test(test_reference_inclusion),
        cmocka_unit_test(test_reference_consistency), cmocka_unit_test(test_all_inclusion_pairs),
        cmocka_unit_test(test_all_consistency_pairs), cmocka_unit_test(test_bad_ranges),
        cmocka_unit_test(test_stack_matches_tree),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
