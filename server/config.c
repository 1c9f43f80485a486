/*
 * server/config: the table of every configuration key. Adding a key means
 * one field in struct cv_config and one row here; `casevault help` and the
 * README's table come from the same rows.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "casevault/config.h"

enum kind { K_STR, K_UINT, K_U64, K_BOOL };

struct key {
    const char *section;
    const char *name;
    enum kind kind;
    size_t off;
    size_t size;
    const char *def;
    const char *help;
};

#define F(field) offsetof(struct cv_config, field), sizeof(((struct cv_config *)0)->field)

static const struct key keys[] = {
    {"server", "listen", K_STR, F(listen), "127.0.0.1:8080",
     "address:port to listen on (IPv6 as [::1]:8080; port 0 picks a free port)"},
    {"server", "data", K_STR, F(data), "./casevault-data", "data directory"},
    {"server", "tls_cert", K_STR, F(tls_cert), "", "PEM certificate file; enables HTTPS"},
    {"server", "tls_key", K_STR, F(tls_key), "", "PEM private key file for tls_cert"},
    {"server", "tls_priorities", K_STR, F(tls_priorities),
     "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2", "GnuTLS priority string"},
    {"server", "max_connections", K_UINT, F(max_connections), "512",
     "concurrent connections (one thread each)"},
    {"server", "max_connections_per_ip", K_UINT, F(max_connections_per_ip), "32",
     "concurrent connections from one client address (0 = unlimited)"},
    {"server", "idle_timeout", K_UINT, F(idle_timeout_s), "30",
     "seconds a connection may stay silent"},
    {"server", "request_timeout", K_UINT, F(request_timeout_s), "60",
     "seconds from a request's first byte until its body is fully received"},
    {"server", "shutdown_grace", K_UINT, F(shutdown_grace_s), "10",
     "seconds in-flight requests get to finish after SIGTERM/SIGINT"},
    {"server", "max_body_bytes", K_U64, F(max_body_bytes), "26214400",
     "largest upload body in bytes (25 MiB)"},
    {"server", "max_json_bytes", K_UINT, F(max_json_bytes), "65536",
     "largest JSON request body in bytes"},
    {"server", "max_header_bytes", K_UINT, F(max_header_bytes), "16384",
     "largest request line plus headers in bytes (431 above)"},
    {"server", "db_readers", K_UINT, F(db_readers), "8", "SQLite reader connections"},
    {"server", "metrics_loopback_only", K_BOOL, F(metrics_loopback_only), "true",
     "serve /metrics only to loopback clients"},
    {"intake", "max_megapixels", K_UINT, F(max_megapixels), "80",
     "largest image in megapixels, checked from the header before decoding"},
    {"intake", "max_side", K_UINT, F(max_side_px), "20000", "longest image side in pixels"},
    {"intake", "min_short_side", K_UINT, F(min_short_side_px), "480",
     "shortest acceptable short side in pixels (0 = no minimum)"},
    {"intake", "decode_timeout", K_UINT, F(decode_timeout_s), "10",
     "seconds a decoder worker may spend on one image"},
    {"intake", "decode_memory_mb", K_UINT, F(decode_memory_mb), "1024",
     "address-space limit of a decoder worker in MiB"},
    {"intake", "workers", K_UINT, F(workers), "0", "decoder worker processes (0 = CPU cores)"},
    {"intake", "queue", K_UINT, F(queue_depth), "64",
     "uploads waiting for a decoder before 503 busy"},
    {"cases", "token_ttl", K_UINT, F(case_token_ttl_s), "604800",
     "seconds an applicant's case token stays valid (7 days)"},
    {"cases", "max_failed_attempts", K_UINT, F(max_failed_attempts), "5",
     "failed identity checks per account within cases.failed_attempts_window before 429"},
    {"cases", "failed_attempts_window", K_UINT, F(failed_attempts_window_s), "3600",
     "seconds over which failed identity checks are counted (the rate-limit window)"},
    {"decision", "four_eyes", K_BOOL, F(four_eyes), "false",
     "approval needs two different reviewers"},
    {"audit", "origin", K_STR, F(audit_origin), "",
     "checkpoint origin line (empty = casevault/<instance id>)"},
    {"audit", "checkpoint_interval", K_UINT, F(checkpoint_interval_s), "1",
     "minimum seconds between automatic checkpoints"},
};

#define NKEYS (sizeof keys / sizeof keys[0])

static cv_status apply(struct cv_config *cfg, const struct key *k, const char *value)
{
    char *p = (char *)cfg + k->off;
    char *end = NULL;
    switch (k->kind) {
    case K_STR:
        if (strlen(value) >= k->size)
            return CV_E_CONFIG;
        memcpy(p, value, strlen(value) + 1);
        return CV_OK;
    case K_UINT:
    case K_U64: {
        if (value[0] < '0' || value[0] > '9')
            return CV_E_CONFIG;
        errno = 0;
        unsigned long long v = strtoull(value, &end, 10);
        if (errno != 0 || *end != '\0')
            return CV_E_CONFIG;
        if (k->kind == K_UINT) {
            if (v > 0xffffffffull)
                return CV_E_CONFIG;
            *(unsigned *)(void *)p = (unsigned)v;
        } else {
            *(unsigned long long *)(void *)p = v;
        }
        return CV_OK;
    }
    case K_BOOL:
        if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0 || strcmp(value, "yes") == 0)
            *(int *)(void *)p = 1;
        else if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0 || strcmp(value, "no") == 0)
            *(int *)(void *)p = 0;
        else
            return CV_E_CONFIG;
        return CV_OK;
    }
    return CV_E_CONFIG;
}

void cv_config_defaults(struct cv_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NKEYS; i++)
        (void)apply(cfg, &keys[i], keys[i].def);
}

cv_status cv_config_set(struct cv_config *cfg, const char *section, const char *key,
                        const char *value, char *err, size_t errcap)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(keys[i].section, section) != 0 || strcmp(keys[i].name, key) != 0)
            continue;
        if (apply(cfg, &keys[i], value) != CV_OK) {
            snprintf(err, errcap, "invalid value for %s.%s", section, key);
            return CV_E_CONFIG;
        }
        return CV_OK;
    }
    snprintf(err, errcap, "unknown configuration key %s.%s", section, key);
    return CV_E_CONFIG;
}

cv_status cv_config_set_arg(struct cv_config *cfg, const char *arg, char *err, size_t errcap)
{
    char buf[512];
    if (snprintf(buf, sizeof buf, "%s", arg) >= (int)sizeof buf) {
        snprintf(err, errcap, "--set argument too long");
        return CV_E_CONFIG;
    }
    char *dot = strchr(buf, '.');
    char *eq = strchr(buf, '=');
    if (dot == NULL || eq == NULL || dot > eq) {
        snprintf(err, errcap, "--set expects section.key=value, got '%.64s'", arg);
        return CV_E_CONFIG;
    }
    *dot = '\0';
    *eq = '\0';
    return cv_config_set(cfg, buf, dot + 1, eq + 1, err, errcap);
}

struct ini_ctx {
    struct cv_config *cfg;
    char *err;
    size_t errcap;
    cv_status rc;
    int line;
};

static int ini_cb(void *user, const char *section, const char *name, const char *value)
{
    struct ini_ctx *c = user;
    char e[200];
    if (c->rc != CV_OK)
        return 0;
    if (cv_config_set(c->cfg, section, name, value, e, sizeof e) != CV_OK) {
        c->rc = CV_E_CONFIG;
        snprintf(c->err, c->errcap, "%s", e);
        return 0;
    }
    return 1;
}

cv_status cv_config_load_file(struct cv_config *cfg, const char *path, char *err, size_t errcap)
{
    struct ini_ctx c = {cfg, err, errcap, CV_OK, 0};
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        snprintf(err, errcap, "cannot open config file %s", path);
        return CV_E_NOT_FOUND;
    }
    int r = ini_parse_file(f, ini_cb, &c);
    fclose(f);
    if (r != 0 || c.rc != CV_OK) {
        char what[256];
        snprintf(what, sizeof what, "%s", c.rc != CV_OK ? err : "syntax error");
        if (r > 0)
            snprintf(err, errcap, "%s: line %d: %s", path, r, what);
        else
            snprintf(err, errcap, "%s: %s", path, what);
        return CV_E_CONFIG;
    }
    return CV_OK;
}

void cv_config_help(FILE *f)
{
    const char *last = "";
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(last, keys[i].section) != 0) {
            fprintf(f, "  [%s]\n", keys[i].section);
            last = keys[i].section;
        }
        fprintf(f, "    %-24s default %-14s %s\n", keys[i].name,
                keys[i].def[0] ? keys[i].def : "\"\"", keys[i].help);
    }
}
