/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>
#include <stdint.h>

/*
 * SHA-256 (FIPS 180-4), fed piece by piece as a request body arrives, so the records can say
 * which bytes the simulator got without keeping them.
 */

struct sha256 {
        uint32_t h[8];
        uint64_t length; /* bytes fed so far */
        uint8_t block[64];
        size_t fill; /* bytes waiting in block */
};

#define SHA256_HEX_SIZE 65

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t len);
/* Writes 64 lowercase hex digits and a NUL; s is spent afterwards. */
void sha256_final_hex(struct sha256 *s, char hex[SHA256_HEX_SIZE]);
