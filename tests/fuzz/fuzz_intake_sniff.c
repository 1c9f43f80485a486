/*
 * Fuzz target: the intake header parsers that run before any decoder
 * (sniffing, dimensions, JPEG scan count, EXIF IFD0 orientation in every
 * container). With clang -fsanitize=fuzzer it is a libFuzzer target; without
 * it, replay.c replays ../shared's corpus and cases (and mutations of them)
 * as a regression test.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
