/*
 * server/config: every tunable of casevault, its INI section/key, type,
 * default and help text in one table. Sources, later wins: built-in
 * defaults, the INI file (--config, parsed by libinih), command-line flags
 * (--listen, --data, --tls-cert, --tls-key, --set section.key=value).
 * An unknown section/key or a malformed value is an error naming it.
 */
#ifndef CASEVAULT_CONFIG_H
#define CASEVAULT_CONFIG_H

#include <limits.h>
#include <stdio.h>

#include "casevault/status.h"

struct cv_config {
    /* [server] */
    char listen[128];
    char data[PATH_MAX];
    char tls_cert[PATH_MAX];
    char tls_key[PATH_MAX];
    char tls_priorities[256];
    unsigned max_connections;
    unsigned max_connections_per_ip;
    unsigned idle_timeout_s;
    unsigned request_timeout_s;
    unsigned shutdown_grace_s;
    unsigned long long max_body_bytes;
    unsigned max_json_bytes;
    unsigned max_header_bytes;
    unsigned db_readers;
    int metrics_loopback_only;
    /* [intake] */
    unsigned max_megapixels;
    unsigned max_side_px;
    unsigned min_short_side_px;
    unsigned decode_timeout_s;
    unsigned decode_memory_mb;
    unsigned workers;
    unsigned queue_depth;
    /* [cases] */
    unsigned case_token_ttl_s;
    unsigned max_failed_attempts;
    unsigned failed_attempts_window_s;
    /* [decision] */
    int four_eyes;
    /* [audit] */
    char audit_origin[128];
    unsigned checkpoint_interval_s;
};

/* cv_config_defaults - fill every field with its built-in default. */
void cv_config_defaults(struct cv_config *cfg);

/*
 * cv_config_load_file - apply an INI file on top of cfg.
 * Errors: CV_E_NOT_FOUND (cannot open), CV_E_CONFIG (unknown key or bad
 * value; err[errcap] names the line, section and key).
 */
cv_status cv_config_load_file(struct cv_config *cfg, const char *path, char *err, size_t errcap);

/*
 * cv_config_set - apply one "section.key=value" (or section.key and value
 * separately when value != NULL). Errors: CV_E_CONFIG naming the key in err.
 */
cv_status cv_config_set(struct cv_config *cfg, const char *section, const char *key,
                        const char *value, char *err, size_t errcap);

/* cv_config_set_arg - parse "section.key=value" and apply it. */
cv_status cv_config_set_arg(struct cv_config *cfg, const char *arg, char *err, size_t errcap);

/* cv_config_help - print every key with type, default and help to f. */
void cv_config_help(FILE *f);

#endif
