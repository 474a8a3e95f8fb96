/* SPDX-License-Identifier: MIT */
#pragma once

#include <stddef.h>

/*
 * Arrays that grow one element at a time, beside a count: a config's models, a fleet's names.
 * Their length is bounded where they are filled, so the copy per append costs little; what is
 * worth sharing is the overflow check and getting the new element right.
 *
 *     Name *n = ARRAY_GROW(f->names, f->n_names);
 *     if (!n)
 *             return -ENOMEM;
 *     *n = (Name) { ... };
 *     f->n_names++;
 */

/* Makes room for element n of *array (n elements of size bytes now): returns it, zeroed, or NULL
 * when out of memory or past what size_t counts (*array is unchanged then). The caller counts it
 * (n++) once it keeps it. */
void *array_grow(void **array, size_t n, size_t size);

#define ARRAY_GROW(array, n) ((typeof(array)) array_grow((void **) &(array), (n), sizeof(*(array))))
