/*
 * Corpus replay driver: runs a libFuzzer target (LLVMFuzzerTestOneInput)
 * over every file of the directories or files given on the command line,
 * plus a bounded set of deterministic mutations of each (bit flips,
 * truncations), so the fuzz targets run as ordinary tests under
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

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -1;
    uint8_t *data = malloc(1 << 20);
    size_t n = data ? fread(data, 1, 1 << 20, f) : 0;
    fclose(f);
    if (data == NULL)
        return -1;
    run_mutations(data, n);
    free(data);
    return 0;
}

int main(int argc, char **argv)
{
    int failed = 0, count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            failed++;
            continue;
        }
        if (!S_ISDIR(sb.st_mode)) {
            failed += run_file(argv[i]) != 0;
            count++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
            failed += run_file(path) != 0;
            count++;
        }
        if (d)
            closedir(d);
    }
    printf("1..1\n%s 1 - %d corpus files, %lu runs\n", failed || count == 0 ? "not ok" : "ok",
           count, runs);
    return failed || count == 0 ? 1 : 0;
}
