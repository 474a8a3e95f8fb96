/* SPDX-License-Identifier: MIT */
/* Without libFuzzer: runs the target once over each file given (the committed corpus), so the
 * suite replays every input the fuzzers found interesting. */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char *argv[])
{
        for (int i = 1; i < argc; i++) {
                FILE *f = fopen(argv[i], "rb");
                static uint8_t buf[1 << 20];
                size_t n;

                if (!f) {
                        perror(argv[i]);
                        return 1;
                }
                n = fread(buf, 1, sizeof(buf), f);
                fclose(f);
                LLVMFuzzerTestOneInput(buf, n);
        }
        printf("%d inputs\n", argc - 1);
        return 0;
}
