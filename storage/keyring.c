/*
 * storage/keyring: loads master keys and the signing key from DATA/keys,
 * unwraps the field root key from the database, and performs every
 * operation that needs key bytes. Key bytes never leave this file except
 * through the documented output buffers.
 *
 * DESIGN NOTES
 * 1. Every key sits in its own sodium_malloc region (guard pages, mlock,
 *    MADV_DONTDUMP) and is PROT_NONE except inside `with_keys` windows, which
 *    hold kr->lock; so no thread can re-protect a key another one reads.
 * 2. Wrapping: XChaCha20-Poly1305-IETF, random 24-byte nonce, associated data
 *    "<ad>/<kek_id>", so a wrapped key cannot move to another record or be
 *    claimed by another KEK.
 * 3. Derived keys: crypto_kdf_derive_from_key(subkey id = purpose, context
 *    "cvfield_", root). Rotating KEKs re-wraps the root, never changes it, so
 *    token hashes and blind indexes survive rotation.
 * 4. Another process may rotate while this one runs (storage/keyring_rotate.c):
 *    a KEK named by a row but not loaded is read from its file on demand
 *    (unwrap, rewrap), and cv_keyring_refresh re-reads meta "active_kek", so
 *    a long-lived server keeps reading old rows and wraps new keys under the
 *    new KEK. A loaded KEK stays loaded until cv_keyring_free.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>

#include "casevault/audit.h"
#include "casevault/keyring.h"
#include "casevault/util.h"
#include "db_internal.h"

#define SIGN_FILE "signing.key"
#define PUB_FILE  "casevault.pub"
#define KDF_CTX   "cvfield_"
#define MAX_KEKS  64

struct kek {
    char id[CV_KEY_ID_LEN + 1];
    uint8_t *key;
};

struct cv_keyring {
    pthread_mutex_t lock;
    char keys_dir[PATH_MAX];
    struct cv_db *db;
    struct kek keks[MAX_KEKS];
    size_t nkeks;
    char active[CV_KEY_ID_LEN + 1];
    uint8_t *root;    /* field root key, 32 bytes */
    uint8_t *sign_sk; /* crypto_sign secret key, 64 bytes */
    uint8_t sign_pk[CV_SIGN_PK_BYTES];
    uint8_t keyid[CV_MINISIGN_KEYID];
};

static int valid_key_id(const char *s)
{
    if (strlen(s) != CV_KEY_ID_LEN)
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    return 1;
}

static uint8_t *secure_alloc(size_t n)
{
    uint8_t *p = sodium_malloc(n);
    if (p != NULL)
        sodium_memzero(p, n);
    return p;
}

static void secure_free(uint8_t *p)
{
    if (p != NULL) {
        sodium_mprotect_readwrite(p);
        sodium_free(p);
    }
}

/* Read a key file of exactly n bytes, refusing modes wider than 0600. */
static cv_status read_key_file(const char *path, uint8_t *out, size_t n)
{
    cv_status rc = CV_E_KEY_INVALID;
    uint8_t buf[128];
    struct stat sb;
    ssize_t r = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? CV_E_KEY_MISSING : CV_E_IO;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (sb.st_mode & 077) != 0)
        goto out;
    do {
        r = read(fd, buf, sizeof buf);
    } while (r < 0 && errno == EINTR);
    if (r != (ssize_t)n)
        goto out;
    memcpy(out, buf, n);
    rc = CV_OK;
out:
    sodium_memzero(buf, sizeof buf);
    close(fd);
    return rc;
}

static cv_status write_key_file(const char *dir, const char *name, const uint8_t *data, size_t n)
{
    char path[PATH_MAX];
    cv_status rc = cv_path_join(path, sizeof path, dir, name);
    if (rc != CV_OK)
        return rc;
    return cv_file_write_durable(path, data, n, 0600, 0);
}

static void make_ad(char *out, size_t cap, const char *ad, const char *kek_id)
{
    snprintf(out, cap, "%s/%s", ad, kek_id);
}

static cv_status wrap_with(const uint8_t *kek, const char *kek_id, const char *ad,
                           const uint8_t key[CV_KEY_BYTES], uint8_t wrapped[CV_WRAPPED_BYTES])
{
    char full_ad[256];
    make_ad(full_ad, sizeof full_ad, ad, kek_id);
    randombytes_buf(wrapped, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    unsigned long long clen = 0;
    if (crypto_aead_xchacha20poly1305_ietf_encrypt(wrapped + 24, &clen, key, CV_KEY_BYTES,
                                                   (const uint8_t *)full_ad, strlen(full_ad), NULL,
                                                   wrapped, kek) != 0 ||
        clen != CV_KEY_BYTES + 16)
        return CV_E_CRYPTO;
    return CV_OK;
}

static cv_status unwrap_with(const uint8_t *kek, const char *kek_id, const char *ad,
                             const uint8_t wrapped[CV_WRAPPED_BYTES], uint8_t out[CV_KEY_BYTES])
{
    char full_ad[256];
    make_ad(full_ad, sizeof full_ad, ad, kek_id);
    unsigned long long mlen = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &mlen, NULL, wrapped + 24,
                                                   CV_WRAPPED_BYTES - 24, (const uint8_t *)full_ad,
                                                   strlen(full_ad), wrapped, kek) != 0 ||
        mlen != CV_KEY_BYTES)
        return CV_E_CRYPTO;
    return CV_OK;
}

static void write_minisign_pub(const char *dir, const uint8_t keyid[8], const uint8_t pk[32])
{
    uint8_t blob[2 + 8 + 32];
    char b64[sodium_base64_ENCODED_LEN(sizeof blob, sodium_base64_VARIANT_ORIGINAL)];
    char text[256];
    char path[PATH_MAX];
    uint64_t id = 0;
    blob[0] = 'E';
    blob[1] = 'd';
    memcpy(blob + 2, keyid, 8);
    memcpy(blob + 10, pk, 32);
    for (int i = 7; i >= 0; i--)
        id = (id << 8) | keyid[i];
    sodium_bin2base64(b64, sizeof b64, blob, sizeof blob, sodium_base64_VARIANT_ORIGINAL);
    int n = snprintf(text, sizeof text, "untrusted comment: minisign public key %016llX\n%s\n",
                     (unsigned long long)id, b64);
    if (cv_path_join(path, sizeof path, dir, PUB_FILE) == CV_OK)
        if (cv_file_write_durable(path, text, (size_t)n, 0644, 1) == CV_OK)
            chmod(path, 0644); /* public: the umask made it 0600 */
}

cv_status cv_keyring_init_dir(const char *keys_dir, struct cv_db *db)
{
    cv_status rc = CV_E_NOMEM;
    uint8_t *kek = secure_alloc(CV_KEY_BYTES);
    uint8_t *root = secure_alloc(CV_KEY_BYTES);
    uint8_t *seed = secure_alloc(32 + CV_MINISIGN_KEYID);
    uint8_t wrapped[CV_WRAPPED_BYTES];
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    uint8_t *sk = secure_alloc(crypto_sign_SECRETKEYBYTES);
    uint8_t idb[CV_KEY_ID_LEN / 2];
    char kek_id[CV_KEY_ID_LEN + 1];
    char name[64];
    sqlite3_stmt *st = NULL;
    char path[PATH_MAX];
    struct stat sb;

    if (kek == NULL || root == NULL || seed == NULL || sk == NULL)
        goto out;
    if (cv_path_join(path, sizeof path, keys_dir, SIGN_FILE) == CV_OK && stat(path, &sb) == 0) {
        rc = CV_E_EXISTS;
        goto out;
    }
    randombytes_buf(idb, sizeof idb);
    cv_hex_encode(idb, sizeof idb, kek_id);
    crypto_aead_xchacha20poly1305_ietf_keygen(kek);
    randombytes_buf(root, CV_KEY_BYTES);
    randombytes_buf(seed, 32 + CV_MINISIGN_KEYID);
    snprintf(name, sizeof name, "%s.kek", kek_id);
    if ((rc = write_key_file(keys_dir, name, kek, CV_KEY_BYTES)) != CV_OK)
        goto out;
    if ((rc = write_key_file(keys_dir, SIGN_FILE, seed, 32 + CV_MINISIGN_KEYID)) != CV_OK)
        goto out;
    crypto_sign_seed_keypair(pk, sk, seed);
    write_minisign_pub(keys_dir, seed + 32, pk);
    if ((rc = wrap_with(kek, kek_id, "root/field", root, wrapped)) != CV_OK)
        goto out;
    rc = CV_E_DB;
    if (sqlite3_prepare_v2(cv_db_writer(db),
                           "INSERT INTO root_keys(purpose,kek_id,wrapped) VALUES('field',?,?)", -1,
                           &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, kek_id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, wrapped, sizeof wrapped, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        goto out;
    if ((rc = cv_db_meta_set(db, "active_kek", kek_id)) != CV_OK)
        goto out;
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    secure_free(kek);
    secure_free(root);
    secure_free(seed);
    secure_free(sk);
    return rc;
}

static cv_status load_keks(struct cv_keyring *kr, const char *keys_dir)
{
    cv_status rc = CV_E_IO;
    DIR *d = opendir(keys_dir);
    struct dirent *e;
    char path[PATH_MAX];
    if (d == NULL)
        return errno == ENOENT ? CV_E_KEY_MISSING : CV_E_IO;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len != CV_KEY_ID_LEN + 4 || strcmp(e->d_name + CV_KEY_ID_LEN, ".kek") != 0)
            continue;
        if (kr->nkeks == MAX_KEKS) {
            rc = CV_E_LIMIT;
            goto out;
        }
        struct kek *k = &kr->keks[kr->nkeks];
        memcpy(k->id, e->d_name, CV_KEY_ID_LEN);
        k->id[CV_KEY_ID_LEN] = '\0';
        if (!valid_key_id(k->id))
            continue;
        if ((k->key = secure_alloc(CV_KEY_BYTES)) == NULL) {
            rc = CV_E_NOMEM;
            goto out;
        }
        kr->nkeks++;
        if ((rc = cv_path_join(path, sizeof path, keys_dir, e->d_name)) != CV_OK)
            goto out;
        rc = read_key_file(path, k->key, CV_KEY_BYTES);
        if (rc == CV_E_KEY_MISSING) {
            /* Retired by another process since the listing: skip it. */
            secure_free(k->key);
            memset(k, 0, sizeof *k);
            kr->nkeks--;
            continue;
        }
        if (rc != CV_OK)
            goto out;
        sodium_mprotect_noaccess(k->key);
    }
    rc = CV_OK;
out:
    closedir(d);
    return rc;
}

static struct kek *find_kek(struct cv_keyring *kr, const char *id)
{
    for (size_t i = 0; i < kr->nkeks; i++)
        if (strcmp(kr->keks[i].id, id) == 0)
            return &kr->keks[i];
    return NULL;
}

/* The KEK with this id, loading DATA/keys/<id>.kek if needed (kr->lock held). */
static cv_status get_kek_locked(struct cv_keyring *kr, const char *id, struct kek **out)
{
    char name[CV_KEY_ID_LEN + 8], path[PATH_MAX];
    struct kek *k = find_kek(kr, id);
    cv_status rc;
    if (k != NULL) {
        *out = k;
        return CV_OK;
    }
    if (!valid_key_id(id))
        return CV_E_KEY_MISSING;
    if (kr->nkeks == MAX_KEKS)
        return CV_E_LIMIT;
    snprintf(name, sizeof name, "%s.kek", id);
    if ((rc = cv_path_join(path, sizeof path, kr->keys_dir, name)) != CV_OK)
        return rc;
    k = &kr->keks[kr->nkeks];
    if ((k->key = secure_alloc(CV_KEY_BYTES)) == NULL)
        return CV_E_NOMEM;
    if ((rc = read_key_file(path, k->key, CV_KEY_BYTES)) != CV_OK) {
        secure_free(k->key);
        k->key = NULL;
        return rc;
    }
    sodium_mprotect_noaccess(k->key);
    memcpy(k->id, id, CV_KEY_ID_LEN + 1);
    kr->nkeks++;
    *out = k;
    return CV_OK;
}

cv_status cv_keyring_open(const char *keys_dir, struct cv_db *db, struct cv_keyring **out)
{
    cv_status rc = CV_E_NOMEM;
    struct cv_keyring *kr = calloc(1, sizeof *kr);
    uint8_t *seed = secure_alloc(32 + CV_MINISIGN_KEYID);
    sqlite3_stmt *st = NULL;
    sqlite3 *c = NULL;
    char path[PATH_MAX];
    if (kr == NULL || seed == NULL)
        goto out;
    pthread_mutex_init(&kr->lock, NULL);
    kr->db = db;
    if (snprintf(kr->keys_dir, sizeof kr->keys_dir, "%s", keys_dir) >= (int)sizeof kr->keys_dir) {
        rc = CV_E_LIMIT;
        goto out;
    }
    if ((rc = load_keks(kr, keys_dir)) != CV_OK)
        goto out;
    if ((rc = cv_db_meta_get(db, "active_kek", kr->active, sizeof kr->active)) != CV_OK) {
        rc = rc == CV_E_NOT_FOUND ? CV_E_KEY_MISSING : rc;
        goto out;
    }
    /* A rotation by another process may have added the active KEK after
     * the directory listing: load it by name. */
    struct kek *ak = NULL;
    for (int tries = 0; (rc = get_kek_locked(kr, kr->active, &ak)) == CV_E_KEY_MISSING && tries < 3;
         tries++) {
        /* ... or rotated again and retired the key we just read: re-read. */
        if ((rc = cv_db_meta_get(db, "active_kek", kr->active, sizeof kr->active)) != CV_OK)
            break;
    }
    if (rc != CV_OK)
        goto out;
    /* signing key */
    if ((rc = cv_path_join(path, sizeof path, keys_dir, SIGN_FILE)) != CV_OK)
        goto out;
    if ((rc = read_key_file(path, seed, 32 + CV_MINISIGN_KEYID)) != CV_OK)
        goto out;
    rc = CV_E_NOMEM;
    if ((kr->sign_sk = secure_alloc(crypto_sign_SECRETKEYBYTES)) == NULL)
        goto out;
    crypto_sign_seed_keypair(kr->sign_pk, kr->sign_sk, seed);
    memcpy(kr->keyid, seed + 32, CV_MINISIGN_KEYID);
    sodium_mprotect_noaccess(kr->sign_sk);
    /* field root key */
    if ((kr->root = secure_alloc(CV_KEY_BYTES)) == NULL)
        goto out;
    c = cv_db_reader_get(db);
    rc = CV_E_DB;
    if (sqlite3_prepare_v2(c, "SELECT kek_id, wrapped FROM root_keys WHERE purpose='field'", -1,
                           &st, NULL) != SQLITE_OK)
        goto out;
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = CV_E_KEY_MISSING;
        goto out;
    }
    const char *kid = (const char *)sqlite3_column_text(st, 0);
    struct kek *k = NULL;
    if (kid == NULL || (rc = get_kek_locked(kr, kid, &k)) != CV_OK) {
        rc = kid == NULL ? CV_E_KEY_MISSING : rc;
        goto out;
    }
    if (sqlite3_column_bytes(st, 1) != CV_WRAPPED_BYTES) {
        rc = CV_E_KEY_INVALID;
        goto out;
    }
    sodium_mprotect_readonly(k->key);
    rc = unwrap_with(k->key, k->id, "root/field", sqlite3_column_blob(st, 1), kr->root);
    sodium_mprotect_noaccess(k->key);
    if (rc != CV_OK)
        goto out;
    sodium_mprotect_noaccess(kr->root);
    *out = kr;
    kr = NULL;
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    if (c != NULL)
        cv_db_reader_put(db, c);
    secure_free(seed);
    cv_keyring_free(kr);
    return rc;
}

void cv_keyring_free(struct cv_keyring *kr)
{
    if (kr == NULL)
        return;
    for (size_t i = 0; i < kr->nkeks; i++)
        secure_free(kr->keks[i].key);
    secure_free(kr->root);
    secure_free(kr->sign_sk);
    pthread_mutex_destroy(&kr->lock);
    free(kr);
}

void cv_keyring_active_kek(struct cv_keyring *kr, char out[CV_KEY_ID_LEN + 1])
{
    pthread_mutex_lock(&kr->lock);
    memcpy(out, kr->active, CV_KEY_ID_LEN + 1);
    pthread_mutex_unlock(&kr->lock);
}

int cv_keyring_has_kek(struct cv_keyring *kr, const char *kek_id)
{
    pthread_mutex_lock(&kr->lock);
    int r = find_kek(kr, kek_id) != NULL;
    pthread_mutex_unlock(&kr->lock);
    return r;
}

cv_status cv_keyring_wrap(struct cv_keyring *kr, const char *ad, const uint8_t key[CV_KEY_BYTES],
                          char kek_id_out[CV_KEY_ID_LEN + 1], uint8_t wrapped[CV_WRAPPED_BYTES])
{
    pthread_mutex_lock(&kr->lock);
    struct kek *k = find_kek(kr, kr->active);
    cv_status rc = CV_E_KEY_MISSING;
    if (k != NULL) {
        sodium_mprotect_readonly(k->key);
        rc = wrap_with(k->key, k->id, ad, key, wrapped);
        sodium_mprotect_noaccess(k->key);
        if (rc == CV_OK)
            memcpy(kek_id_out, k->id, CV_KEY_ID_LEN + 1);
    }
    pthread_mutex_unlock(&kr->lock);
    return rc;
}

cv_status cv_keyring_unwrap(struct cv_keyring *kr, const char *ad, const char *kek_id,
                            const uint8_t wrapped[CV_WRAPPED_BYTES], uint8_t key_out[CV_KEY_BYTES])
{
    pthread_mutex_lock(&kr->lock);
    struct kek *k = NULL;
    cv_status rc = get_kek_locked(kr, kek_id, &k);
    if (rc == CV_OK) {
        sodium_mprotect_readonly(k->key);
        rc = unwrap_with(k->key, k->id, ad, wrapped, key_out);
        sodium_mprotect_noaccess(k->key);
    }
    pthread_mutex_unlock(&kr->lock);
    return rc;
}

cv_status cv_keyring_refresh(struct cv_keyring *kr)
{
    char active[CV_KEY_ID_LEN + 1];
    struct kek *k = NULL;
    cv_status rc = cv_db_meta_get(kr->db, "active_kek", active, sizeof active);
    if (rc != CV_OK)
        return rc == CV_E_NOT_FOUND || rc == CV_E_LIMIT ? CV_E_KEY_MISSING : rc;
    pthread_mutex_lock(&kr->lock);
    if (strcmp(active, kr->active) != 0 && (rc = get_kek_locked(kr, active, &k)) == CV_OK)
        memcpy(kr->active, active, sizeof active);
    pthread_mutex_unlock(&kr->lock);
    return rc;
}

cv_status cv_keyring_rewrap(struct cv_keyring *kr, const char *ad, const char *from_kek,
                            const uint8_t in[CV_WRAPPED_BYTES], const char *to_kek,
                            uint8_t out[CV_WRAPPED_BYTES])
{
    cv_status rc = CV_E_NOMEM;
    uint8_t *key = secure_alloc(CV_KEY_BYTES);
    uint8_t tmp[CV_WRAPPED_BYTES];
    struct kek *from = NULL, *to = NULL;
    if (key == NULL)
        return rc;
    pthread_mutex_lock(&kr->lock);
    if ((rc = get_kek_locked(kr, from_kek, &from)) != CV_OK ||
        (rc = get_kek_locked(kr, to_kek, &to)) != CV_OK)
        goto out;
    sodium_mprotect_readonly(from->key);
    rc = unwrap_with(from->key, from->id, ad, in, key);
    sodium_mprotect_noaccess(from->key);
    if (rc != CV_OK)
        goto out;
    sodium_mprotect_readonly(to->key);
    rc = wrap_with(to->key, to->id, ad, key, tmp);
    sodium_mprotect_noaccess(to->key);
    if (rc != CV_OK)
        goto out;
    memcpy(out, tmp, CV_WRAPPED_BYTES);
    rc = CV_OK;
out:
    pthread_mutex_unlock(&kr->lock);
    secure_free(key);
    return rc;
}

/* The derived key of `purpose` (crypto_kdf from the field root key, context
 * "cvfield_") into out; the caller wipes it. Private: callers get keyed
 * hashes and wrapped keys, never raw derived keys. */
static cv_status derive(struct cv_keyring *kr, enum cv_key_purpose purpose,
                        uint8_t out[CV_KEY_BYTES])
{
    pthread_mutex_lock(&kr->lock);
    sodium_mprotect_readonly(kr->root);
    int r = crypto_kdf_derive_from_key(out, CV_KEY_BYTES, (uint64_t)purpose, KDF_CTX, kr->root);
    sodium_mprotect_noaccess(kr->root);
    pthread_mutex_unlock(&kr->lock);
    return r == 0 ? CV_OK : CV_E_CRYPTO;
}

cv_status cv_keyring_keyed_hash(struct cv_keyring *kr, enum cv_key_purpose purpose,
                                const char *label, const void *msg, size_t len, uint8_t out[32])
{
    cv_status rc = CV_E_NOMEM;
    crypto_generichash_state *h = sodium_malloc(sizeof *h);
    uint8_t *key = secure_alloc(CV_KEY_BYTES);
    if (h == NULL || key == NULL)
        goto out;
    if ((rc = derive(kr, purpose, key)) != CV_OK)
        goto out;
    rc = CV_E_CRYPTO;
    if (crypto_generichash_init(h, key, CV_KEY_BYTES, 32) != 0)
        goto out;
    crypto_generichash_update(h, (const uint8_t *)label, strlen(label) + 1);
    crypto_generichash_update(h, msg, len);
    if (crypto_generichash_final(h, out, 32) != 0)
        goto out;
    rc = CV_OK;
out:
    if (h != NULL)
        sodium_free(h);
    secure_free(key);
    return rc;
}

cv_status cv_keyring_sign(struct cv_keyring *kr, const void *msg, size_t len,
                          uint8_t sig[CV_SIG_BYTES])
{
    pthread_mutex_lock(&kr->lock);
    sodium_mprotect_readonly(kr->sign_sk);
    int r = crypto_sign_detached(sig, NULL, msg, len, kr->sign_sk);
    sodium_mprotect_noaccess(kr->sign_sk);
    pthread_mutex_unlock(&kr->lock);
    return r == 0 ? CV_OK : CV_E_CRYPTO;
}

void cv_keyring_sign_pk(struct cv_keyring *kr, uint8_t pk[CV_SIGN_PK_BYTES],
                        uint8_t keyid[CV_MINISIGN_KEYID])
{
    memcpy(pk, kr->sign_pk, CV_SIGN_PK_BYTES);
    memcpy(keyid, kr->keyid, CV_MINISIGN_KEYID);
}

/* ---- rotation (DESIGN §4: new KEK, re-wrap rows, never touch blob files) ---- */

static cv_status audit_key_event(struct cv_db *db, const struct cv_audit_event *who,
                                 const char *action, const char *object, json_t *details)
{
    struct cv_audit_event ev = {
        .action = action,
        .actor_id = who && who->actor_id ? who->actor_id : "system",
        .actor_role = who && who->actor_role ? who->actor_role : "system",
        .request_id = who ? who->request_id : NULL,
        .client = who ? who->client : NULL,
        .object_id = object,
        .details = details,
    };
    return cv_audit_append(db, &ev, NULL);
}

/* Create a new KEK file (0600, durable) and load it. Out: id. */
static cv_status new_kek(struct cv_keyring *kr, char id[CV_KEY_ID_LEN + 1])
{
    cv_status rc = CV_E_NOMEM;
    uint8_t *kek = secure_alloc(CV_KEY_BYTES);
    uint8_t idb[CV_KEY_ID_LEN / 2];
    char name[CV_KEY_ID_LEN + 8];
    struct kek *k = NULL;
    if (kek == NULL)
        goto out;
    randombytes_buf(idb, sizeof idb);
    cv_hex_encode(idb, sizeof idb, id);
    crypto_aead_xchacha20poly1305_ietf_keygen(kek);
    snprintf(name, sizeof name, "%s.kek", id);
    if ((rc = write_key_file(kr->keys_dir, name, kek, CV_KEY_BYTES)) != CV_OK)
        goto out;
    pthread_mutex_lock(&kr->lock);
    rc = get_kek_locked(kr, id, &k);
    pthread_mutex_unlock(&kr->lock);
    if (rc != CV_OK)
        goto out;
    rc = CV_OK;
out:
    secure_free(kek);
    return rc;
}

/* A wrapped key to move to the new KEK: its row key (root key purpose or
 * blob id), the KEK it is wrapped under now, and the wrapped bytes. */
struct rewrap_row {
    char key[32];
    char kek[CV_KEY_ID_LEN + 1];
    uint8_t wrapped[CV_WRAPPED_BYTES];
};

/*
 * Inside the caller's transaction: re-wrap rows[0..n) under new_id (with the
 * associated data they were wrapped with, ad_prefix + row key) and store
 * each through update_sql (?1 new KEK id, ?2 wrapped key, ?3 row key).
 * Errors: as cv_keyring_rewrap; CV_E_DB and the like from SQLite.
 */
static cv_status rewrap_rows(struct cv_keyring *kr, const char *update_sql, const char *ad_prefix,
                             struct rewrap_row *rows, size_t n, const char *new_id)
{
    sqlite3_stmt *up = NULL;
    char ad[64];
    cv_status rc = CV_E_DB;
    if (sqlite3_prepare_v2(cv_db_writer(kr->db), update_sql, -1, &up, NULL) != SQLITE_OK)
        goto out;
    for (size_t i = 0; i < n; i++) {
        snprintf(ad, sizeof ad, "%s%s", ad_prefix, rows[i].key);
        if ((rc = cv_keyring_rewrap(kr, ad, rows[i].kek, rows[i].wrapped, new_id,
                                    rows[i].wrapped)) != CV_OK)
            goto out;
        sqlite3_reset(up);
        sqlite3_bind_text(up, 1, new_id, -1, SQLITE_STATIC);
        sqlite3_bind_blob(up, 2, rows[i].wrapped, CV_WRAPPED_BYTES, SQLITE_STATIC);
        sqlite3_bind_text(up, 3, rows[i].key, -1, SQLITE_STATIC);
        if ((rc = cv_db_step_done(up)) != CV_OK)
            goto out;
    }
    rc = CV_OK;
out:
    sqlite3_finalize(up);
    return rc;
}

/* Switch the active KEK and re-wrap every root key, in one transaction. */
static cv_status switch_active(struct cv_keyring *kr, const char *new_id,
                               const struct cv_audit_event *who, struct cv_rotate_stats *s)
{
    struct cv_db *db = kr->db;
    sqlite3_stmt *st = NULL;
    struct rewrap_row rows[8];
    size_t n = 0;
    json_t *details = NULL;
    cv_status rc = cv_db_begin(db);
    if (rc != CV_OK)
        return rc;
    if ((rc = cv_db_meta_get_on(cv_db_writer(db), "active_kek", s->old_kek, sizeof s->old_kek)) !=
        CV_OK)
        goto out;
    rc = CV_E_DB;
    if (sqlite3_prepare_v2(cv_db_writer(db), "SELECT purpose, kek_id, wrapped FROM root_keys", -1,
                           &st, NULL) != SQLITE_OK)
        goto out;
    while ((rc = cv_db_step_row(st, CV_E_NOT_FOUND)) == CV_OK) {
        const char *p = (const char *)sqlite3_column_text(st, 0);
        const char *k = (const char *)sqlite3_column_text(st, 1);
        if (n == 8 || p == NULL || k == NULL || strlen(p) >= sizeof rows[0].key ||
            strlen(k) != CV_KEY_ID_LEN || sqlite3_column_bytes(st, 2) != CV_WRAPPED_BYTES) {
            rc = CV_E_KEY_INVALID;
            goto out;
        }
        memcpy(rows[n].key, p, strlen(p) + 1);
        memcpy(rows[n].kek, k, CV_KEY_ID_LEN + 1);
        memcpy(rows[n].wrapped, sqlite3_column_blob(st, 2), CV_WRAPPED_BYTES);
        n++;
    }
    if (rc != CV_E_NOT_FOUND)
        goto out;
    if ((rc = rewrap_rows(kr, "UPDATE root_keys SET kek_id=?, wrapped=? WHERE purpose=?", "root/",
                          rows, n, new_id)) != CV_OK ||
        (rc = cv_db_meta_set(db, "active_kek", new_id)) != CV_OK)
        goto out;
    details = json_pack("{s:s,s:s,s:I}", "kek_id", new_id, "previous_kek_id", s->old_kek,
                        "root_keys", (json_int_t)n);
    if (details == NULL) {
        rc = CV_E_NOMEM;
        goto out;
    }
    if ((rc = audit_key_event(db, who, "keys.rotate", new_id, details)) != CV_OK)
        goto out;
    sqlite3_finalize(st);
    json_decref(details);
    s->root_keys = n;
    return cv_db_commit(db);
out:
    sqlite3_finalize(st);
    json_decref(details);
    cv_db_rollback(db);
    return rc;
}

static cv_status count_not_under(struct cv_db *db, const char *kek, uint64_t *n)
{
    sqlite3_stmt *st = NULL;
    cv_status rc = CV_E_DB;
    sqlite3 *c = cv_db_reader_get(db);
    if (sqlite3_prepare_v2(c, "SELECT count(*) FROM blobs WHERE kek_id<>?", -1, &st, NULL) !=
        SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, kek, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW)
        goto out;
    *n = (uint64_t)sqlite3_column_int64(st, 0);
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    cv_db_reader_put(db, c);
    return rc;
}

/* One transaction: re-wrap up to `batch` blob DEKs not yet under new_id.
 * When none is left, append the closing audit entry in that transaction.
 * Out: *done = rows re-wrapped now. */
static cv_status rewrap_batch(struct cv_keyring *kr, const char *new_id, unsigned batch,
                              struct rewrap_row *rows, const struct cv_audit_event *who,
                              const struct cv_rotate_stats *s, size_t *done)
{
    struct cv_db *db = kr->db;
    sqlite3_stmt *st = NULL;
    size_t n = 0;
    json_t *details = NULL;
    cv_status rc = cv_db_begin(db);
    if (rc != CV_OK)
        return rc;
    rc = CV_E_DB;
    if (sqlite3_prepare_v2(cv_db_writer(db),
                           "SELECT id, kek_id, wrapped_dek FROM blobs WHERE kek_id<>? LIMIT ?", -1,
                           &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, new_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)batch);
    while (n < batch && (rc = cv_db_step_row(st, CV_E_NOT_FOUND)) == CV_OK) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        const char *k = (const char *)sqlite3_column_text(st, 1);
        if (id == NULL || k == NULL || strlen(id) != CV_ULID_LEN || strlen(k) != CV_KEY_ID_LEN ||
            sqlite3_column_bytes(st, 2) != CV_WRAPPED_BYTES) {
            rc = CV_E_KEY_INVALID;
            goto out;
        }
        memcpy(rows[n].key, id, CV_ULID_LEN + 1);
        memcpy(rows[n].kek, k, CV_KEY_ID_LEN + 1);
        memcpy(rows[n].wrapped, sqlite3_column_blob(st, 2), CV_WRAPPED_BYTES);
        n++;
    }
    if (rc != CV_OK && rc != CV_E_NOT_FOUND)
        goto out;
    sqlite3_finalize(st);
    st = NULL;
    if ((rc = rewrap_rows(kr, "UPDATE blobs SET kek_id=?, wrapped_dek=? WHERE id=?", "blob/", rows,
                          n, new_id)) != CV_OK)
        goto out;
    if (n == 0) {
        details = json_pack("{s:s,s:I,s:I}", "kek_id", new_id, "blobs", (json_int_t)s->blobs,
                            "batches", (json_int_t)s->batches);
        if (details == NULL) {
            rc = CV_E_NOMEM;
            goto out;
        }
        if ((rc = audit_key_event(db, who, "keys.rewrap", new_id, details)) != CV_OK)
            goto out;
    }
    json_decref(details);
    sodium_memzero(rows, n * sizeof *rows);
    if ((rc = cv_db_commit(db)) != CV_OK)
        return rc;
    *done = n;
    return CV_OK;
out:
    sqlite3_finalize(st);
    json_decref(details);
    sodium_memzero(rows, n * sizeof *rows);
    cv_db_rollback(db);
    return rc;
}

cv_status cv_keyring_rotate(struct cv_keyring *kr, unsigned batch, const struct cv_audit_event *who,
                            void (*progress)(uint64_t done, uint64_t total, void *arg), void *arg,
                            struct cv_rotate_stats *stats)
{
    cv_status rc = CV_E_ARG;
    struct cv_rotate_stats s;
    struct rewrap_row *rows = NULL;
    uint64_t total = 0;
    memset(&s, 0, sizeof s);
    if (batch == 0 || batch > 10000)
        return rc;
    rc = CV_E_NOMEM;
    if ((rows = calloc(batch, sizeof *rows)) == NULL)
        goto out;
    if ((rc = new_kek(kr, s.new_kek)) != CV_OK)
        goto out;
    if ((rc = switch_active(kr, s.new_kek, who, &s)) != CV_OK) {
        /* Never referenced: the switch rolled back. Remove the file so a
         * failed attempt leaves no stray key behind. */
        char name[CV_KEY_ID_LEN + 8], path[PATH_MAX];
        snprintf(name, sizeof name, "%s.kek", s.new_kek);
        if (cv_path_join(path, sizeof path, kr->keys_dir, name) == CV_OK && unlink(path) == 0)
            cv_fsync_dir(kr->keys_dir);
        goto out;
    }
    pthread_mutex_lock(&kr->lock);
    memcpy(kr->active, s.new_kek, sizeof s.new_kek);
    pthread_mutex_unlock(&kr->lock);
    if ((rc = count_not_under(kr->db, s.new_kek, &total)) != CV_OK)
        goto out;
    /* Rows recorded after the switch are already under the new KEK
     * (cv_blob_record re-wraps), so the work is bounded by `total`; the
     * extra rounds only absorb rows committed during the count. */
    for (uint64_t round = 0; round <= total / batch + 16; round++) {
        size_t done = 0;
        if ((rc = rewrap_batch(kr, s.new_kek, batch, rows, who, &s, &done)) != CV_OK)
            goto out;
        if (done == 0)
            break;
        s.blobs += done;
        s.batches++;
        if (progress)
            progress(s.blobs, total > s.blobs ? total : s.blobs, arg);
        if (round == total / batch + 16) {
            rc = CV_E_LIMIT;
            goto out;
        }
    }
    if (stats)
        *stats = s;
    rc = CV_OK;
out:
    free(rows);
    return rc;
}

cv_status cv_keyring_retire(struct cv_keyring *kr, const char *kek_id,
                            const struct cv_audit_event *who, uint64_t *refs)
{
    cv_status rc = CV_E_ARG;
    char active[CV_KEY_ID_LEN + 1], name[CV_KEY_ID_LEN + 8], path[PATH_MAX];
    sqlite3_stmt *st = NULL;
    uint64_t n = 0;
    struct stat sb;
    int in_tx = 0;
    if (kek_id == NULL || !valid_key_id(kek_id))
        return rc;
    snprintf(name, sizeof name, "%s.kek", kek_id);
    if ((rc = cv_path_join(path, sizeof path, kr->keys_dir, name)) != CV_OK)
        return rc;
    if (lstat(path, &sb) != 0)
        return CV_E_NOT_FOUND;
    if ((rc = cv_db_begin(kr->db)) != CV_OK)
        return rc;
    in_tx = 1;
    if ((rc = cv_db_meta_get_on(cv_db_writer(kr->db), "active_kek", active, sizeof active)) !=
        CV_OK)
        goto out;
    if (strcmp(active, kek_id) == 0) {
        rc = CV_E_ARG;
        goto out;
    }
    rc = CV_E_DB;
    if (sqlite3_prepare_v2(cv_db_writer(kr->db),
                           "SELECT (SELECT count(*) FROM blobs WHERE kek_id=?1) + "
                           "(SELECT count(*) FROM root_keys WHERE kek_id=?1)",
                           -1, &st, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(st, 1, kek_id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW)
        goto out;
    n = (uint64_t)sqlite3_column_int64(st, 0);
    if (refs)
        *refs = n;
    if (n > 0) {
        rc = CV_E_NOT_EMPTY;
        goto out;
    }
    /* Inside the write transaction: no row can start referencing it now,
     * and rows recorded later are re-wrapped under the active KEK. */
    rc = CV_E_IO;
    if (unlink(path) != 0 || cv_fsync_dir(kr->keys_dir) != CV_OK)
        goto out;
    if ((rc = audit_key_event(kr->db, who, "keys.retire", kek_id, NULL)) != CV_OK)
        goto out;
    in_tx = 0;
    if ((rc = cv_db_commit(kr->db)) != CV_OK)
        goto out;
    pthread_mutex_lock(&kr->lock);
    struct kek *k = find_kek(kr, kek_id);
    if (k != NULL) {
        secure_free(k->key);
        *k = kr->keks[--kr->nkeks];
        memset(&kr->keks[kr->nkeks], 0, sizeof kr->keks[0]);
    }
    pthread_mutex_unlock(&kr->lock);
    rc = CV_OK;
out:
    sqlite3_finalize(st);
    if (in_tx)
        cv_db_rollback(kr->db);
    return rc;
}
