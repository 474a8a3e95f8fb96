/* SPDX-License-Identifier: MIT */
/* Without libFuzzer: runs the target once over each file given, or each file in each directory
 * given (the committed corpus), so the suite replays every input the fuzzers found interesting.
 * Each input sits in a buffer of its own exact size, so that AddressSanitizer sees a read past
 * its end as libFuzzer would. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define INPUT_MAX (1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
        uint8_t *buf = malloc(INPUT_MAX);
        FILE *f = fopen(path, "rb");
        size_t n;
        uint8_t *input;

        if (!buf || !f) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                free(buf);
                if (f) {
                        fclose(f);
                }
                return -1;
        }
        n = fread(buf, 1, INPUT_MAX, f);
        fclose(f);
        /* malloc(0) may return NULL; one byte more keeps the pointer valid and unread. */
        input = malloc(n + 1);
        if (!input) {
                free(buf);
                return -1;
        }
        memcpy(input, buf, n);
        free(buf);
        LLVMFuzzerTestOneInput(input, n);
        free(input);
        return 0;
}

/* Replays the files of dir in name order; returns how many, or -1. */
static int replay_dir(const char *dir)
{
        struct dirent **entries = NULL;
        int n = scandir(dir, &entries, NULL, alphasort), count = 0;

        if (n < 0) {
                fprintf(stderr, "%s: %s\n", dir, strerror(errno));
                return -1;
        }
        for (int i = 0; i < n; i++) {
                char path[4096];
                struct stat st;

                if (count >= 0 && entries[i]->d_name[0] != '.' &&
                    snprintf(path, sizeof(path), "%s/%s", dir, entries[i]->d_name) <
                            (int) sizeof(path) &&
                    stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                        count = replay_file(path) < 0 ? -1 : count + 1;
                }
                free(entries[i]);
        }
        free(entries);
        return count;
}

int main(int argc, char *argv[])
{
        int total = 0;

        for (int i = 1; i < argc; i++) {
                struct stat st;
                int n;

                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
                        return 1;
                }
                n = S_ISDIR(st.st_mode) ? replay_dir(argv[i]) : replay_file(argv[i]) < 0 ? -1 : 1;
                if (n < 0) {
                        return 1;
                }
                total += n;
        }
        printf("%d inputs\n", total);
        return 0;
}
