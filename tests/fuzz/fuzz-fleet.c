/* SPDX-License-Identifier: MIT */
/* llmctl fleet haproxy writes a configuration from what each box's GET /v1/models answered:
 * whatever a box sends. The input is up to four answers, separated by NUL bytes; each is parsed
 * as fleet.c parses it, and the configuration or the error is made, and escaped for the
 * terminal as llmctl prints it. */
#include "fleet-haproxy.h"
#include "utf8.h"

#define BOXES_MAX 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char *const addresses[BOXES_MAX] = { "10.0.0.1:8080", "[fd00::1]:8080",
                                                          "box.lan:80", "10.0.0.4:1" };
        const char *p = (const char *) data, *end = p + size;
        FleetBox boxes[BOXES_MAX] = {};
        char *text = NULL, *error = NULL;
        size_t n = 0;

        while (n < BOXES_MAX && p <= end) {
                const char *nul = memchr(p, '\0', (size_t) (end - p));
                size_t len = nul ? (size_t) (nul - p) : (size_t) (end - p);
                cJSON *j = cJSON_ParseWithLength(p, len);

                /* fleet.c passes on only an object. */
                if (!cJSON_IsObject(j)) {
                        cJSON_Delete(j);
                        j = cJSON_CreateObject();
                }
                boxes[n] = (FleetBox) { .address = addresses[n], .models = j };
                n++;
                if (!nul) {
                        break;
                }
                p = nul + 1;
        }
        if (fleet_haproxy_config(boxes, n, ":8080", &text, &error) == -EINVAL) {
                free(utf8_escape_terminal(error));
        }
        free(text);
        free(error);
        for (size_t i = 0; i < n; i++) {
                cJSON_Delete((cJSON *) boxes[i].models);
        }
        return 0;
}
