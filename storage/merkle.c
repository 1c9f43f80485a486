/*
 * storage/merkle: RFC 6962 / RFC 9162 §2.1 tree hashes, proof generation
 * from a perfect-subtree source, and proof verification. Pure computation:
 * no I/O, no allocation, no keys. It must never accept a proof that the
 * RFC's verification algorithm would reject (extra or missing hashes
 * included), because auditors rely on these functions offline.
 */
#include <string.h>

#include "casevault/merkle.h"
#include "casevault/util.h"

void cv_merkle_leaf_hash(const void *data, size_t len, uint8_t out[CV_MERKLE_HASH])
{
    uint8_t small[1 + 512];
    if (len <= 512) {
        /* One-shot for the common (short entry) case. */
        small[0] = 0x00;
        if (len)
            memcpy(small + 1, data, len);
        cv_sha256(small, len + 1, out);
        return;
    }
    struct cv_sha256 *h = cv_sha256_new();
    const uint8_t prefix = 0x00;
    if (h == NULL) {
        /* Allocation failure: a hash that cannot match any real one. */
        memset(out, 0, CV_MERKLE_HASH);
        return;
    }
    cv_sha256_update(h, &prefix, 1);
    cv_sha256_update(h, data, len);
    cv_sha256_final(h, out);
}

void cv_merkle_node_hash(const uint8_t left[CV_MERKLE_HASH], const uint8_t right[CV_MERKLE_HASH],
                         uint8_t out[CV_MERKLE_HASH])
{
    uint8_t buf[1 + 2 * CV_MERKLE_HASH];
    buf[0] = 0x01;
    memcpy(buf + 1, left, CV_MERKLE_HASH);
    memcpy(buf + 1 + CV_MERKLE_HASH, right, CV_MERKLE_HASH);
    cv_sha256(buf, sizeof buf, out);
}

void cv_merkle_empty_root(uint8_t out[CV_MERKLE_HASH])
{
    cv_sha256("", 0, out);
}

/* Largest power of two strictly below n (n >= 2). */
static uint64_t split(uint64_t n)
{
    return UINT64_C(1) << (63 - __builtin_clzll(n - 1));
}

static int is_pow2(uint64_t n)
{
    return n != 0 && (n & (n - 1)) == 0;
}

/*
 * MTH of leaves [start, start + n), n >= 1. Every range the RFC recursion
 * reaches has start aligned to the next power of two >= n, so a perfect
 * range is always one node of the source.
 */
static cv_status range_hash(const struct cv_merkle_src *src, uint64_t start, uint64_t n,
                            uint8_t out[CV_MERKLE_HASH])
{
    if (is_pow2(n)) {
        unsigned level = (unsigned)__builtin_ctzll(n);
        return src->node(src->ctx, level, start >> level, out);
    }
    uint64_t k = split(n);
    uint8_t l[CV_MERKLE_HASH], r[CV_MERKLE_HASH];
    cv_status rc = range_hash(src, start, k, l);
    if (rc == CV_OK)
        rc = range_hash(src, start + k, n - k, r);
    if (rc == CV_OK)
        cv_merkle_node_hash(l, r, out);
    return rc;
}

cv_status cv_merkle_root(const struct cv_merkle_src *src, uint64_t size,
                         uint8_t out[CV_MERKLE_HASH])
{
    if (size > CV_MERKLE_MAX_SIZE)
        return CV_E_RANGE;
    if (size == 0) {
        cv_merkle_empty_root(out);
        return CV_OK;
    }
    return range_hash(src, 0, size, out);
}

struct acc {
    uint8_t (*proof)[CV_MERKLE_HASH];
    size_t n;
};

static cv_status add_range(const struct cv_merkle_src *src, struct acc *a, uint64_t start,
                           uint64_t n)
{
    if (a->n >= CV_MERKLE_MAX_PROOF)
        return CV_E_RANGE;
    cv_status rc = range_hash(src, start, n, a->proof[a->n]);
    if (rc == CV_OK)
        a->n++;
    return rc;
}

/* PATH(m, D[start : start + n]) */
static cv_status path(const struct cv_merkle_src *src, struct acc *a, uint64_t m, uint64_t start,
                      uint64_t n)
{
    if (n <= 1)
        return CV_OK;
    uint64_t k = split(n);
    cv_status rc;
    if (m < k) {
        if ((rc = path(src, a, m, start, k)) != CV_OK)
            return rc;
        return add_range(src, a, start + k, n - k);
    }
    if ((rc = path(src, a, m - k, start + k, n - k)) != CV_OK)
        return rc;
    return add_range(src, a, start, k);
}

cv_status cv_merkle_inclusion_proof(const struct cv_merkle_src *src, uint64_t index, uint64_t size,
                                    uint8_t proof[][CV_MERKLE_HASH], size_t *n)
{
    if (size == 0 || index >= size || size > CV_MERKLE_MAX_SIZE)
        return CV_E_RANGE;
    struct acc a = {proof, 0};
    cv_status rc = path(src, &a, index, 0, size);
    if (rc != CV_OK)
        return rc;
    *n = a.n;
    return CV_OK;
}

/* SUBPROOF(m, D[start : start + n], b) */
static cv_status subproof(const struct cv_merkle_src *src, struct acc *a, uint64_t m,
                          uint64_t start, uint64_t n, int b)
{
    if (m == n)
        return b ? CV_OK : add_range(src, a, start, n);
    uint64_t k = split(n);
    cv_status rc;
    if (m <= k) {
        if ((rc = subproof(src, a, m, start, k, b)) != CV_OK)
            return rc;
        return add_range(src, a, start + k, n - k);
    }
    if ((rc = subproof(src, a, m - k, start + k, n - k, 0)) != CV_OK)
        return rc;
    return add_range(src, a, start, k);
}

cv_status cv_merkle_consistency_proof(const struct cv_merkle_src *src, uint64_t old_size,
                                      uint64_t new_size, uint8_t proof[][CV_MERKLE_HASH], size_t *n)
{
    if (old_size == 0 || old_size > new_size || new_size > CV_MERKLE_MAX_SIZE)
        return CV_E_RANGE;
    struct acc a = {proof, 0};
    cv_status rc = subproof(src, &a, old_size, 0, new_size, 1);
    if (rc != CV_OK)
        return rc;
    *n = a.n;
    return CV_OK;
}

cv_status cv_merkle_root_from_inclusion(const uint8_t leaf[CV_MERKLE_HASH], uint64_t index,
                                        uint64_t size, const uint8_t *proof, size_t n,
                                        uint8_t root[CV_MERKLE_HASH])
{
    if (size == 0 || index >= size || size > CV_MERKLE_MAX_SIZE)
        return CV_E_RANGE;
    if (n > CV_MERKLE_MAX_PROOF)
        return CV_E_PROOF_INVALID;
    uint64_t fn = index, sn = size - 1;
    uint8_t r[CV_MERKLE_HASH];
    memcpy(r, leaf, CV_MERKLE_HASH);
    for (size_t i = 0; i < n; i++) {
        if (sn == 0)
            return CV_E_PROOF_INVALID; /* extra hashes */
        if ((fn & 1) || fn == sn) {
            cv_merkle_node_hash(proof + 32 * i, r, r);
            if (!(fn & 1))
                while (!(fn & 1) && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
        } else {
            cv_merkle_node_hash(r, proof + 32 * i, r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0)
        return CV_E_PROOF_INVALID; /* too few hashes */
    memcpy(root, r, CV_MERKLE_HASH);
    return CV_OK;
}

static int hash_eq(const uint8_t a[CV_MERKLE_HASH], const uint8_t b[CV_MERKLE_HASH])
{
    /* Public data: a plain compare is fine, but keep it branch-free anyway. */
    uint8_t d = 0;
    for (size_t i = 0; i < CV_MERKLE_HASH; i++)
        d |= (uint8_t)(a[i] ^ b[i]);
    return d == 0;
}

cv_status cv_merkle_verify_inclusion(const uint8_t leaf[CV_MERKLE_HASH], uint64_t index,
                                     uint64_t size, const uint8_t *proof, size_t n,
                                     const uint8_t root[CV_MERKLE_HASH])
{
    uint8_t got[CV_MERKLE_HASH];
    cv_status rc = cv_merkle_root_from_inclusion(leaf, index, size, proof, n, got);
    if (rc != CV_OK)
        return rc;
    return hash_eq(got, root) ? CV_OK : CV_E_PROOF_INVALID;
}

cv_status cv_merkle_verify_consistency(uint64_t old_size, uint64_t new_size,
                                       const uint8_t old_root[CV_MERKLE_HASH],
                                       const uint8_t new_root[CV_MERKLE_HASH], const uint8_t *proof,
                                       size_t n)
{
    if (old_size == 0 || old_size > new_size || new_size > CV_MERKLE_MAX_SIZE)
        return CV_E_RANGE;
    if (n > CV_MERKLE_MAX_PROOF)
        return CV_E_PROOF_INVALID;
    if (old_size == new_size)
        return n == 0 && hash_eq(old_root, new_root) ? CV_OK : CV_E_PROOF_INVALID;
    if (n == 0)
        return CV_E_PROOF_INVALID;
    /* RFC 9162 §2.1.4.2: a power-of-two old tree is its own first node. */
    const uint8_t *first = proof;
    size_t i = 1;
    if (is_pow2(old_size)) {
        first = old_root;
        i = 0;
    }
    uint64_t fn = old_size - 1, sn = new_size - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    uint8_t fr[CV_MERKLE_HASH], sr[CV_MERKLE_HASH];
    memcpy(fr, first, CV_MERKLE_HASH);
    memcpy(sr, first, CV_MERKLE_HASH);
    for (; i < n; i++) {
        const uint8_t *c = proof + 32 * i;
        if (sn == 0)
            return CV_E_PROOF_INVALID;
        if ((fn & 1) || fn == sn) {
            cv_merkle_node_hash(c, fr, fr);
            cv_merkle_node_hash(c, sr, sr);
            if (!(fn & 1))
                while (!(fn & 1) && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
        } else {
            cv_merkle_node_hash(sr, c, sr);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0 || !hash_eq(fr, old_root) || !hash_eq(sr, new_root))
        return CV_E_PROOF_INVALID;
    return CV_OK;
}

void cv_merkle_stack_init(struct cv_merkle_stack *s)
{
    memset(s, 0, sizeof *s);
}

unsigned cv_merkle_stack_push(struct cv_merkle_stack *s, const uint8_t leaf[CV_MERKLE_HASH],
                              uint8_t completed[][CV_MERKLE_HASH])
{
    uint64_t t = s->size;
    unsigned k = 0;
    memcpy(s->hash[s->depth++], leaf, CV_MERKLE_HASH);
    while (t & 1) {
        cv_merkle_node_hash(s->hash[s->depth - 2], s->hash[s->depth - 1], s->hash[s->depth - 2]);
        s->depth--;
        memcpy(completed[k++], s->hash[s->depth - 1], CV_MERKLE_HASH);
        t >>= 1;
    }
    s->size++;
    return k;
}

void cv_merkle_stack_root(const struct cv_merkle_stack *s, uint8_t out[CV_MERKLE_HASH])
{
    if (s->depth == 0) {
        cv_merkle_empty_root(out);
        return;
    }
    uint8_t r[CV_MERKLE_HASH];
    memcpy(r, s->hash[s->depth - 1], CV_MERKLE_HASH);
    for (unsigned i = s->depth - 1; i-- > 0;)
        cv_merkle_node_hash(s->hash[i], r, r);
    memcpy(out, r, CV_MERKLE_HASH);
}
