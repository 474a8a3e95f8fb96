/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "strv.h"
#include "supervisor.h"

/*
 * What llmd says it serves, in one line (STATUS=, llmctl status, /health's message), from the
 * residency machine's states and the children's details.
 */

static char *status_words(const Supervisor *s, const Child *c)
{
        ServingWhy why = SERVING_WHY_NONE;
        ServingState st = supervisor_serving(s, child_name(c), &why);
        char *t = NULL;
        int r = -1;
        double p;

        if (st == SERVING_DRAINING || st == SERVING_SAVING) {
                r = asprintf(&t, "%s %s (%s) …", child_name(c),
                             st == SERVING_SAVING ? "saving its prompt caches" : "draining",
                             serving_why_to_string(why));
                return r < 0 ? NULL : t;
        }
        switch (child_state(c)) {
        case CHILD_READY:
                r = asprintf(&t, "%s ready", child_name(c));
                break;
        case CHILD_LOADING:
                p = child_load_progress(c);
                if (p >= 0) {
                        /* In steps of 5%: STATUS= is for people, not a progress stream. */
                        r = asprintf(&t, "%s loading %d%% …", child_name(c), (int) (p * 20) * 5);
                } else {
                        r = asprintf(&t, "%s loading …", child_name(c));
                }
                break;
        case CHILD_STOPPING:
                r = asprintf(&t, "%s stopping …", child_name(c));
                break;
        case CHILD_KILLING:
                r = asprintf(&t, "%s stopping: %s", child_name(c), child_reason(c));
                break;
        case CHILD_BACKOFF:
                r = asprintf(&t, "%s restarting after %s", child_name(c), child_reason(c));
                break;
        case CHILD_FAILED:
                r = asprintf(&t, "%s failed: %s", child_name(c), child_reason(c));
                break;
        case CHILD_STOPPED:
                if (st == SERVING_FAILED && child_reason(c)) {
                        r = asprintf(&t, "%s failed: %s", child_name(c), child_reason(c));
                } else {
                        r = asprintf(&t, "%s stopped", child_name(c));
                }
                break;
        case _CHILD_STATE_MAX:
        case _CHILD_STATE_INVALID:
                break;
        }
        return r < 0 ? NULL : t;
}

char *supervisor_status_text(const Supervisor *s)
{
        _cleanup_strv_free_ char **parts = calloc(1, sizeof(char *));
        const char *active = supervisor_active(s);
        size_t n;
        Child **children = supervisor_children(s, &n);

        if (!parts) {
                return NULL;
        }
        if (active) {
                if (strv_consume(&parts, status_words(s, supervisor_child(s, active))) < 0) {
                        return NULL;
                }
        } else if (strv_extend(&parts, "no generation model") < 0) {
                return NULL;
        }
        for (size_t i = 0; i < n; i++) {
                Child *c = children[i];
                _cleanup_free_ char *w = NULL;

                if (child_config(c)->pin || (active && streq(child_name(c), active)) ||
                    !serving_state_resident(supervisor_serving(s, child_name(c), NULL))) {
                        continue;
                }
                w = status_words(s, c);
                if (!w || strv_consume(&parts, strjoin2("resident ", w)) < 0) {
                        return NULL;
                }
        }
        for (size_t i = 0; i < n; i++) {
                Child *c = children[i];
                _cleanup_free_ char *w = NULL;

                /* Going away, and still finishing requests: say so, or they seem lost. */
                if (child_config(c)->pin || (active && streq(child_name(c), active)) ||
                    (supervisor_serving(s, child_name(c), NULL) != SERVING_DRAINING &&
                     supervisor_serving(s, child_name(c), NULL) != SERVING_SAVING)) {
                        continue;
                }
                w = status_words(s, c);
                if (!w || strv_consume(&parts, TAKE_PTR(w)) < 0) {
                        return NULL;
                }
        }
        for (size_t i = 0; i < n; i++) {
                const ModelConfig *m = child_config(children[i]);
                _cleanup_free_ char *w = NULL;

                if (!m->pin) {
                        continue;
                }
                w = status_words(s, children[i]);
                if (!w ||
                    strv_consume(&parts, strjoin2(m->embeddings ? "embed " : "pinned ", w)) < 0) {
                        return NULL;
                }
        }
        return strv_join(parts, " · ");
}
