/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"

void *array_grow(void **array, size_t n, size_t size)
{
        char *a;

        /* Checked here, not by reallocarray(): AddressSanitizer takes an overflow there for a bug. */
        if (size == 0 || n >= SIZE_MAX / size) {
                errno = ENOMEM;
                return NULL;
        }
        a = reallocarray(*array, n + 1, size);
        if (!a) {
                return NULL;
        }
        *array = a;
        return memset(a + n * size, 0, size);
}
