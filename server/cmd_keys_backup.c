/*
 * server/cmd_keys_backup: `casevault keys export|import`, the key backup
 * kept apart from data backups (storage/keybackup). The passphrase comes
 * from --passphrase-file or the terminal (echo off), never from a flag.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "casevault/datadir.h"
#include "casevault/keybackup.h"
#include "cli.h"

#define PASS_MAX 1024

/* One line from fd into pass (sodium_malloc'd, PASS_MAX+1); strips "\n"/"\r\n". */
static cv_status read_line_fd(int fd, char *pass, size_t *len)
{
    size_t n = 0;
    char c;
    for (;;) {
        ssize_t r = read(fd, &c, 1);
        if (r < 0)
            return CV_E_IO;
        if (r == 0 || c == '\n')
            break;
        if (n >= PASS_MAX)
            return CV_E_LIMIT;
        pass[n++] = c;
    }
    if (n > 0 && pass[n - 1] == '\r')
        n--;
    pass[n] = '\0';
    *len = n;
    return CV_OK;
}

static cv_status tty_prompt(const char *prompt, char *pass, size_t *len)
{
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    struct termios old, quiet;
    cv_status rc;
    if (fd < 0)
        return CV_E_NOT_FOUND;
    if (tcgetattr(fd, &old) != 0) {
        close(fd);
        return CV_E_IO;
    }
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
    quiet.c_lflag |= ICANON;
    (void)!write(fd, prompt, strlen(prompt));
    tcsetattr(fd, TCSAFLUSH, &quiet);
    rc = read_line_fd(fd, pass, len);
    tcsetattr(fd, TCSAFLUSH, &old);
    (void)!write(fd, "\n", 1);
    close(fd);
    return rc;
}

static int get_pass(const char *cmd, const char *file, int confirm, char *pass, size_t *len)
{
    cv_status st;
    if (file) {
        int fd = open(file, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "casevault %s: cannot open the passphrase file\n", cmd);
            return CV_EXIT_FAIL;
        }
        st = read_line_fd(fd, pass, len);
        close(fd);
    } else {
        st = tty_prompt("Passphrase: ", pass, len);
        if (st == CV_OK && confirm) {
            char *again = sodium_malloc(PASS_MAX + 1);
            size_t alen = 0;
            if (again == NULL)
                return cli_fail(cmd, "passphrase", CV_E_NOMEM);
            st = tty_prompt("Passphrase again: ", again, &alen);
            if (st == CV_OK && (alen != *len || sodium_memcmp(again, pass, alen) != 0)) {
                sodium_free(again);
                fprintf(stderr, "casevault %s: the passphrases differ\n", cmd);
                return CV_EXIT_FAIL;
            }
            sodium_free(again);
        }
        if (st == CV_E_NOT_FOUND)
            return cli_usage(cmd, "no terminal: give --passphrase-file FILE");
    }
    if (st != CV_OK)
        return cli_fail(cmd, "cannot read the passphrase", st);
    if (*len < CV_KEYBACKUP_MIN_PASS) {
        fprintf(stderr, "casevault %s: the passphrase must be at least %d bytes\n", cmd,
                CV_KEYBACKUP_MIN_PASS);
        return CV_EXIT_FAIL;
    }
    return CV_EXIT_OK;
}

int cv_cmd_keys_export(int argc, char **argv)
{
    const char *data = NULL, *out = NULL, *pfile = NULL;
    const char *pos[1];
    int npos = 0, rc;
    char *pass = NULL;
    size_t plen = 0;
    char keys[PATH_MAX];
    unsigned n = 0;
    const struct cli_opt opts[] = {
        {"data", 1, &data, NULL, NULL, NULL},
        {"out", 1, &out, NULL, NULL, NULL},
        {"passphrase-file", 1, &pfile, NULL, NULL, NULL},
        {NULL, 0, NULL, NULL, NULL, NULL},
    };
    if ((rc = cli_parse("keys export", argc, argv, opts, pos, 0, &npos)) != CV_EXIT_OK)
        return rc;
    if (data == NULL || out == NULL)
        return cli_usage("keys export", "--data DIR and --out FILE are required");
    if (!cv_datadir_initialized(data)) {
        fprintf(stderr, "casevault keys export: %s is not an initialized data directory\n", data);
        return CV_EXIT_FAIL;
    }
    if (cv_path_join(keys, sizeof keys, data, "keys") != CV_OK)
        return cli_usage("keys export", "--data path too long");
    if ((pass = sodium_malloc(PASS_MAX + 1)) == NULL)
        return cli_fail("keys export", "passphrase", CV_E_NOMEM);
    if ((rc = get_pass("keys export", pfile, 1, pass, &plen)) != CV_EXIT_OK)
        goto out;
    cv_status st = cv_keybackup_export(keys, pass, plen, out, &n);
    if (st == CV_E_EXISTS)
        rc = cli_fail("keys export", "--out exists (never overwritten)", st);
    else if (st != CV_OK)
        rc = cli_fail("keys export", "cannot export the keys", st);
    else {
        fprintf(stderr, "exported %u key files to %s (Argon2id + XChaCha20-Poly1305)\n", n, out);
        rc = CV_EXIT_OK;
    }
out:
    sodium_free(pass);
    return rc;
}

int cv_cmd_keys_import(int argc, char **argv)
{
    const char *in = NULL, *keys = NULL, *pfile = NULL;
    const char *pos[1];
    int npos = 0, rc;
    char *pass = NULL;
    size_t plen = 0;
    unsigned n = 0;
    const struct cli_opt opts[] = {
        {"in", 1, &in, NULL, NULL, NULL},
        {"keys", 1, &keys, NULL, NULL, NULL},
        {"passphrase-file", 1, &pfile, NULL, NULL, NULL},
        {NULL, 0, NULL, NULL, NULL, NULL},
    };
    if ((rc = cli_parse("keys import", argc, argv, opts, pos, 0, &npos)) != CV_EXIT_OK)
        return rc;
    if (in == NULL || keys == NULL)
        return cli_usage("keys import", "--in FILE and --keys DIR are required");
    if ((pass = sodium_malloc(PASS_MAX + 1)) == NULL)
        return cli_fail("keys import", "passphrase", CV_E_NOMEM);
    if ((rc = get_pass("keys import", pfile, 0, pass, &plen)) != CV_EXIT_OK)
        goto out;
    cv_status st = cv_keybackup_import(in, pass, plen, keys, &n);
    if (st == CV_E_SIGNATURE_INVALID)
        rc = cli_fail("keys import", "wrong passphrase or damaged key backup", st);
    else if (st == CV_E_EXISTS)
        rc = cli_fail("keys import", "a key file of the same name exists in --keys", st);
    else if (st != CV_OK)
        rc = cli_fail("keys import", "cannot import the keys", st);
    else {
        fprintf(stderr, "imported %u key files into %s\n", n, keys);
        rc = CV_EXIT_OK;
    }
out:
    sodium_free(pass);
    return rc;
}
