/* SPDX-License-Identifier: MIT */
#pragma once

/* Intrusive doubly linked lists: an item has prev and next fields named by the caller, and is
 * in at most one list through them at a time. LIST_APPEND and LIST_REMOVE keep a first and a
 * last pointer (a queue in order); LIST_PREPEND and LIST_UNLINK a head only (no order). */

#define LIST_APPEND(first, last, item, prev, next) \
        do {                                       \
                (item)->next = NULL;               \
                (item)->prev = (last);             \
                if (last) {                        \
                        (last)->next = (item);     \
                } else {                           \
                        (first) = (item);          \
                }                                  \
                (last) = (item);                   \
        } while (0)

#define LIST_REMOVE(first, last, item, prev, next)         \
        do {                                               \
                if ((item)->prev) {                        \
                        (item)->prev->next = (item)->next; \
                } else {                                   \
                        (first) = (item)->next;            \
                }                                          \
                if ((item)->next) {                        \
                        (item)->next->prev = (item)->prev; \
                } else {                                   \
                        (last) = (item)->prev;             \
                }                                          \
                (item)->prev = (item)->next = NULL;        \
        } while (0)

#define LIST_PREPEND(head, item, prev, next)   \
        do {                                   \
                (item)->prev = NULL;           \
                (item)->next = (head);         \
                if (head) {                    \
                        (head)->prev = (item); \
                }                              \
                (head) = (item);               \
        } while (0)

#define LIST_UNLINK(head, item, prev, next)                \
        do {                                               \
                if ((item)->prev) {                        \
                        (item)->prev->next = (item)->next; \
                } else {                                   \
                        (head) = (item)->next;             \
                }                                          \
                if ((item)->next) {                        \
                        (item)->next->prev = (item)->prev; \
                }                                          \
                (item)->prev = (item)->next = NULL;        \
        } while (0)
