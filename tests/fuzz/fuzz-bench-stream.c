/* SPDX-License-Identifier: MIT */
/* llmctl bench reads a server's answer to a streamed chat completion: whatever the server (or
 * what answers at --url) sends. The first byte says where the stream is cut into two reads
 * and what the HTTP status was; the rest is the body. The figures are taken, and the error is
 * escaped for the terminal, as the report does. */
#include "bench-run.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const long statuses[] = { 200, 200, 200, 500, 404, 0 };
        BenchRun r;
        size_t cut;
        long status;

        if (size == 0) {
                return 0;
        }
        status = statuses[data[0] % ELEMENTSOF(statuses)];
        data++;
        size--;
        cut = size > 0 ? data[0] % (size + 1) : 0;
        bench_run_init(&r, 16, 1000);
        if (bench_run_feed(&r, (const char *) data, cut, 2000) == 0 &&
            bench_run_feed(&r, (const char *) data + cut, size - cut, 3000) == 0) {
                (void) bench_run_finish(&r, status, NULL, false);
        } else {
                (void) bench_run_finish(&r, status, "cut short", false);
        }
        (void) bench_run_tokens(&r);
        (void) bench_run_ttft_ms(&r);
        (void) bench_run_rate(&r);
        (void) bench_run_server_rate(&r);
        (void) bench_run_usable(&r);
        (void) bench_end_to_string(r.end);
        free(utf8_escape_terminal(r.error));
        free(utf8_escape_terminal(r.finish_reason));
        bench_run_done(&r);
        return 0;
}
