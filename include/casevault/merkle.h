/*
 * storage/merkle: the pure RFC 6962 / RFC 9162 §2.1 Merkle tree math.
 *
 * Hashes are SHA-256: leaf hash = SHA-256(0x00 || leaf bytes), interior node
 * hash = SHA-256(0x01 || left || right), the empty tree's root = SHA-256("").
 * The tree over n leaves splits at k, the largest power of two below n
 * (RFC 9162 §2.1.1), so every subtree the algorithms touch is either a
 * "perfect" subtree of 2^level leaves starting at index * 2^level, or is
 * built from a few of them. Proof generation therefore only asks a node
 * source (struct cv_merkle_src) for perfect subtree hashes: a test keeps
 * them in memory, storage/audit reads them from SQLite. Verification needs
 * nothing but the proof, so the offline verifiers (casevault audit verify,
 * casevault verify-export) call the cv_merkle_verify_* functions directly.
 *
 * Nothing here touches a database, a file or a key. Every function is
 * thread-safe (the source callback must be too if shared).
 */
#ifndef CASEVAULT_MERKLE_H
#define CASEVAULT_MERKLE_H

#include <stddef.h>
#include <stdint.h>

#include "casevault/status.h"

#define CV_MERKLE_HASH      32 /* bytes of every hash */
#define CV_MERKLE_MAX_PROOF 64 /* hashes in any proof of a tree below 2^63 leaves */
#define CV_MERKLE_MAX_SIZE  (UINT64_C(1) << 62) /* largest tree size accepted */

/*
 * A source of perfect subtree hashes. node(ctx, level, index, out) writes
 * the hash of the subtree over leaves [index * 2^level, (index + 1) * 2^level)
 * (level 0 = the leaf hash of leaf `index`). It returns CV_OK, or an error
 * that the caller passes on unchanged.
 */
struct cv_merkle_src {
    cv_status (*node)(void *ctx, unsigned level, uint64_t index, uint8_t out[CV_MERKLE_HASH]);
    void *ctx;
};

/* cv_merkle_leaf_hash - SHA-256(0x00 || data[len]) (RFC 9162 §2.1.1). */
void cv_merkle_leaf_hash(const void *data, size_t len, uint8_t out[CV_MERKLE_HASH]);

/* cv_merkle_node_hash - SHA-256(0x01 || left || right). out may alias either input. */
void cv_merkle_node_hash(const uint8_t left[CV_MERKLE_HASH], const uint8_t right[CV_MERKLE_HASH],
                         uint8_t out[CV_MERKLE_HASH]);

/* cv_merkle_empty_root - the root of the empty tree, SHA-256 of no bytes. */
void cv_merkle_empty_root(uint8_t out[CV_MERKLE_HASH]);

/*
 * cv_merkle_root - MTH of the first `size` leaves (RFC 9162 §2.1.1), from
 * at most 63 perfect subtree hashes (one per set bit of size).
 * Errors: CV_E_RANGE (size > CV_MERKLE_MAX_SIZE), or the source's error.
 */
cv_status cv_merkle_root(const struct cv_merkle_src *src, uint64_t size,
                         uint8_t out[CV_MERKLE_HASH]);

/*
 * cv_merkle_inclusion_proof - PATH(index, D[size]) of RFC 9162 §2.1.3.1,
 * deepest sibling first. Out: proof[CV_MERKLE_MAX_PROOF][32] and *n
 * (0 when size == 1). Source reads: O(log size).
 * Errors: CV_E_RANGE (size == 0, index >= size, size too large), or the
 * source's error.
 */
cv_status cv_merkle_inclusion_proof(const struct cv_merkle_src *src, uint64_t index, uint64_t size,
                                    uint8_t proof[][CV_MERKLE_HASH], size_t *n);

/*
 * cv_merkle_consistency_proof - PROOF(old, D[new]) of RFC 9162 §2.1.4.1.
 * Out: proof[CV_MERKLE_MAX_PROOF][32] and *n (0 when old == new).
 * Errors: CV_E_RANGE (old == 0, old > new, new too large), or the source's.
 */
cv_status cv_merkle_consistency_proof(const struct cv_merkle_src *src, uint64_t old_size,
                                      uint64_t new_size, uint8_t proof[][CV_MERKLE_HASH],
                                      size_t *n);

/*
 * cv_merkle_root_from_inclusion - the root that an inclusion proof implies
 * (RFC 9162 §2.1.3.2 steps 1-5). In: leaf hash, index, size, proof (n
 * hashes of 32 bytes, concatenated).
 * Out: root. Errors: CV_E_RANGE (size 0, index >= size), CV_E_PROOF_INVALID
 * (too many or too few hashes for this index and size).
 */
cv_status cv_merkle_root_from_inclusion(const uint8_t leaf[CV_MERKLE_HASH], uint64_t index,
                                        uint64_t size, const uint8_t *proof, size_t n,
                                        uint8_t root[CV_MERKLE_HASH]);

/*
 * cv_merkle_verify_inclusion - RFC 9162 §2.1.3.2: CV_OK if leaf is leaf
 * `index` of the tree of `size` leaves whose root is `root`.
 * Errors: CV_E_RANGE (size 0, index >= size), CV_E_PROOF_INVALID.
 */
cv_status cv_merkle_verify_inclusion(const uint8_t leaf[CV_MERKLE_HASH], uint64_t index,
                                     uint64_t size, const uint8_t *proof, size_t n,
                                     const uint8_t root[CV_MERKLE_HASH]);

/*
 * cv_merkle_verify_consistency - RFC 9162 §2.1.4.2: CV_OK if the tree of
 * old_size leaves with root old_root is a prefix of the tree of new_size
 * leaves with root new_root. old == new needs an empty proof and equal
 * roots. Errors: CV_E_RANGE (old_size == 0 or old_size > new_size),
 * CV_E_PROOF_INVALID.
 */
cv_status cv_merkle_verify_consistency(uint64_t old_size, uint64_t new_size,
                                       const uint8_t old_root[CV_MERKLE_HASH],
                                       const uint8_t new_root[CV_MERKLE_HASH], const uint8_t *proof,
                                       size_t n);

/*
 * struct cv_merkle_stack - a compact range over leaves [0, size): the roots
 * of the perfect subtrees of size's binary decomposition, largest first.
 * Appending leaves to it yields each newly completed perfect subtree, so a
 * log can store them, and a verifier can recompute a whole log in one pass
 * with O(log n) memory. Embed it (cv_merkle_stack_init); no allocation.
 */
struct cv_merkle_stack {
    uint64_t size;
    unsigned depth; /* popcount(size) */
    uint8_t hash[64][CV_MERKLE_HASH];
};

void cv_merkle_stack_init(struct cv_merkle_stack *s);

/*
 * cv_merkle_stack_push - append one leaf hash. Out: completed[k][32], the
 * hashes of the perfect subtrees of levels 1..k that end at this leaf, where
 * k (the return value) is the number of trailing one bits of the leaf's
 * index. completed must hold 63 hashes.
 */
unsigned cv_merkle_stack_push(struct cv_merkle_stack *s, const uint8_t leaf[CV_MERKLE_HASH],
                              uint8_t completed[][CV_MERKLE_HASH]);

/* cv_merkle_stack_root - root of the leaves pushed so far (empty root if none). */
void cv_merkle_stack_root(const struct cv_merkle_stack *s, uint8_t out[CV_MERKLE_HASH]);

#endif
