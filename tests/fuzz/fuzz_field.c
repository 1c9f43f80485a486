/* Fuzz target: PII normalization (UTF-8 validation, NFC, digits, ID numbers). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "casevault/field.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[256];
    char *in = malloc(size + 1);
    if (in == NULL)
        return 0;
    memcpy(in, data, size);
    in[size] = '\0';
    for (int k = CV_FIELD_EXACT; k <= CV_FIELD_NAME; k++) {
        if (cv_field_normalize((enum cv_field_kind)k, in, out, sizeof out) == CV_OK &&
            strlen(out) >= sizeof out)
            abort();
    }
    free(in);
    return 0;
}
