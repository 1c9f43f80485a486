/*
 * Fuzz target: the intake header parsers that run before any decoder
 * (sniffing, dimensions, JPEG scan count, EXIF IFD0 orientation in every
 * container). With clang -fsanitize=fuzzer it is a libFuzzer target; without
 * it, main() replays every file named on the command line (or found in the
 * directories named there) as a regression test.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "casevault/intake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cv_intake_sniffed s;
    static const struct cv_intake_limits lim = {80, 20000, 0, 2048};
    if (cv_intake_sniff(data, size, &s) == CV_OK && s.width && s.height)
        (void)cv_intake_check_size(s.width, s.height, &lim);
    for (int f = CV_IMG_UNKNOWN; f <= CV_IMG_GIF; f++) {
        int o = cv_intake_orientation_of((enum cv_image_format)f, data, size);
        if (o < 0 || o > 8)
            abort();
    }
    int o = cv_intake_exif_orientation(data, size);
    if (o < 0 || o > 8)
        abort();
    return 0;
}

#ifndef CV_LIBFUZZER
static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return 0;
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0, n;
    uint8_t chunk[65536];
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0 && len < (64u << 20)) {
        if (len + n > cap) {
            cap = (len + n) * 2;
            uint8_t *nb = realloc(buf, cap);
            if (nb == NULL)
                break;
            buf = nb;
        }
        memcpy(buf + len, chunk, n);
        len += n;
    }
    fclose(f);
    /* every prefix length of the header region, then the whole file */
    for (size_t k = 0; k < len && k < 512; k++)
        LLVMFuzzerTestOneInput(buf, k);
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    return 1;
}

static int replay(const char *path, int depth)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return 0;
    if (!S_ISDIR(st.st_mode))
        return replay_file(path);
    if (depth > 3)
        return 0;
    int count = 0;
    DIR *d = opendir(path);
    if (d == NULL)
        return 0;
    struct dirent *e;
    char sub[4096];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(sub, sizeof sub, "%.3000s/%.255s", path, e->d_name);
        count += replay(sub, depth + 1);
    }
    closedir(d);
    return count;
}

int main(int argc, char **argv)
{
    int count = 0;
    for (int i = 1; i < argc; i++)
        count += replay(argv[i], 0);
    printf("replayed %d files\n", count);
    return 0;
}
#endif
