/*
 * Corpus replay driver: runs a libFuzzer target (LLVMFuzzerTestOneInput)
 * over every file of the directories or files given on the command line,
 * plus a bounded set of deterministic mutations of each (bit flips,
 * truncations; directories are walked), so the fuzz targets run as ordinary tests under
 * ASan/UBSan without clang. With clang, build the same target with
 * -fsanitize=fuzzer instead of this file. Prints TAP.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned long runs;

static void run_mutations(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size + 1);
    if (buf == NULL)
        return;
    LLVMFuzzerTestOneInput(data, size);
    runs++;
    /* Mutations work on the head of big files: parsers fail there first. */
    if (size > 65536)
        size = 65536;
    for (size_t cut = 0; cut < size; cut += 1 + size / 16) {
        memcpy(buf, data, cut);
        LLVMFuzzerTestOneInput(buf, cut);
        runs++;
    }
    for (size_t i = 0; i < size && i < 512; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(buf, data, size);
            buf[i] ^= (uint8_t)(1u << bit);
            LLVMFuzzerTestOneInput(buf, size);
            runs++;
        }
        memcpy(buf, data, size);
        buf[i] = (uint8_t)(i & 1 ? 0x00 : 0xff);
        LLVMFuzzerTestOneInput(buf, size);
        runs++;
    }
    free(buf);
}

#define MAX_FILE (64u << 20)

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    uint8_t *data = malloc(MAX_FILE);
    size_t n = data ? fread(data, 1, MAX_FILE, f) : 0;
    fclose(f);
    if (data == NULL)
        return -1;
    run_mutations(data, n);
    free(data);
    return 0;
}

/* Files under path (recursing at most 3 levels); returns how many ran. */
static int run_tree(const char *path, int depth, int *failed)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return 0;
    if (!S_ISDIR(sb.st_mode)) {
        *failed += run_file(path) != 0;
        return 1;
    }
    if (depth > 3)
        return 0;
    int count = 0;
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char sub[4096];
        snprintf(sub, sizeof sub, "%.3000s/%.255s", path, e->d_name);
        count += run_tree(sub, depth + 1, failed);
    }
    if (d)
        closedir(d);
    return count;
}

int main(int argc, char **argv)
{
    int failed = 0, count = 0;
    for (int i = 1; i < argc; i++)
        count += run_tree(argv[i], 0, &failed);
    if (count == 0) {
        /* Corpora from ../shared may be absent: say so visibly. */
        printf("1..1\nok 1 # SKIP no corpus file found\n");
        return 0;
    }
    printf("1..1\n%s 1 - %d corpus files, %lu runs\n", failed ? "not ok" : "ok", count, runs);
    return failed ? 1 : 0;
}
