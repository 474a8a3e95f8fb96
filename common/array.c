/* SPDX-License-Identifier: MIT */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"

void *array_grow(void **array, size_t n, size_t size)
{
        char *a;

        if (n == SIZE_MAX) {
                return NULL;
        }
        a = reallocarray(*array, n + 1, size);
        if (!a) {
                return NULL;
        }
        *array = a;
        return memset(a + n * size, 0, size);
}
