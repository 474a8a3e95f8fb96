/* SPDX-License-Identifier: MIT */
/* The proxy's request scanner gets every byte a client sends. */
#include "json-scan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        JsonScan s;

        if (json_scan_request((const char *) data, size, &s) == 0) {
                json_scan_done(&s);
        } else if (!s.error || s.error_offset > size) {
                __builtin_trap(); /* a refusal always says what and where */
        }
        return 0;
}
