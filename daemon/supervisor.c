/* SPDX-License-Identifier: MIT */
#include <stdio.h>

#include "log.h"
#include "supervisor.h"
#include "strv.h"

struct Supervisor {
        SupervisorOptions options;
        Config *config;
        char *binary;
        Child **children; /* one per profile, in the order of config->models */
        size_t n_children;
        char *active;     /* the generation model that should serve; NULL: none */
        bool stopping;
        void (*stop_done)(void *userdata);
        void *stop_userdata;
};

static bool child_is_down(const Child *c)
{
        ChildState st = child_state(c);

        return st == CHILD_STOPPED || st == CHILD_FAILED;
}

static void supervisor_check_stop(Supervisor *s)
{
        bool gen_down = true, all_down = true;

        if (!s->stopping) {
                return;
        }
        for (size_t i = 0; i < s->n_children; i++) {
                const ModelConfig *m = s->config->models[i];

                if (!child_is_down(s->children[i])) {
                        all_down = false;
                        if (!m->pin) {
                                gen_down = false;
                        }
                }
        }
        if (gen_down && !all_down) {
                for (size_t i = 0; i < s->n_children; i++) {
                        if (s->config->models[i]->pin) {
                                child_stop(s->children[i]);
                        }
                }
                return; /* child_stop() came back here if that finished it */
        }
        if (all_down && s->stop_done) {
                void (*done)(void *) = s->stop_done;

                s->stop_done = NULL;
                done(s->stop_userdata);
        }
}

static void supervisor_on_child(Child *c, ChildState old, void *userdata)
{
        Supervisor *s = userdata;

        supervisor_check_stop(s);
        if (s->options.on_change) {
                s->options.on_change(s, s->options.userdata);
        }
}

int supervisor_new(const SupervisorOptions *o, Config *config, Supervisor **ret)
{
        _cleanup_(supervisor_freep) Supervisor *s = NULL;
        const char *binary;
        int r;

        s = calloc(1, sizeof(Supervisor));
        if (!s) {
                config_free(config);
                return -ENOMEM;
        }
        s->options = *o;
        s->config = config;
        /* The config names the binary; else $LLAMA_SERVER (the tests' simulator); else $PATH. */
        binary = config->llama_server ? config->llama_server : getenv("LLAMA_SERVER");
        s->binary = strdup(isempty(binary) ? "llama-server" : binary);
        s->children = calloc(config->n_models, sizeof(Child *));
        if (!s->binary || !s->children) {
                return -ENOMEM;
        }
        ChildContext ctx = {
                .event = o->event,
                .runtime_dir = o->runtime_dir,
                .binary = s->binary,
                .environ = o->environ,
        };
        for (size_t i = 0; i < config->n_models; i++) {
                r = child_new(&ctx, config->models[i], supervisor_on_child, s, &s->children[i]);
                if (r < 0) {
                        return r;
                }
                s->n_children++;
        }
        if (config->default_model) {
                s->active = strdup(config->default_model);
                if (!s->active) {
                        return -ENOMEM;
                }
        }
        *ret = TAKE_PTR(s);
        return 0;
}

Supervisor *supervisor_free(Supervisor *s)
{
        if (!s) {
                return NULL;
        }
        for (size_t i = 0; i < s->n_children; i++) {
                child_free(s->children[i]);
        }
        free(s->children);
        config_free(s->config);
        free(s->binary);
        free(s->active);
        free(s);
        return NULL;
}

Child *supervisor_child(const Supervisor *s, const char *name)
{
        const ModelConfig *m = config_find_model(s->config, name);

        for (size_t i = 0; m && i < s->n_children; i++) {
                if (s->config->models[i] == m) {
                        return s->children[i];
                }
        }
        return NULL;
}

void supervisor_start(Supervisor *s)
{
        for (size_t i = 0; i < s->n_children; i++) {
                const ModelConfig *m = s->config->models[i];

                if (m->pin && m->load_on_startup) {
                        child_start(s->children[i]);
                }
        }
        if (s->active) {
                const ModelConfig *m = config_find_model(s->config, s->active);

                if (m && m->load_on_startup) {
                        child_start(supervisor_child(s, s->active));
                } else {
                        log_info("%s: not loaded at startup (load-on-startup = false)", s->active);
                }
        }
}

void supervisor_stop(Supervisor *s, void (*done)(void *userdata), void *userdata)
{
        s->stopping = true;
        s->stop_done = done;
        s->stop_userdata = userdata;
        for (size_t i = 0; i < s->n_children; i++) {
                if (!s->config->models[i]->pin) {
                        child_stop(s->children[i]);
                }
        }
        supervisor_check_stop(s);
}

void supervisor_kill(Supervisor *s)
{
        for (size_t i = 0; i < s->n_children; i++) {
                child_kill_now(s->children[i]);
        }
}

const Config *supervisor_config(const Supervisor *s)
{
        return s->config;
}

const char *supervisor_active(const Supervisor *s)
{
        return s->active;
}

static char *child_status_words(const Child *c)
{
        char *t = NULL;
        int r = -1;

        switch (child_state(c)) {
        case CHILD_READY:
                r = asprintf(&t, "%s ready", child_name(c));
                break;
        case CHILD_LOADING:
                r = asprintf(&t, "%s loading …", child_name(c));
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
                r = asprintf(&t, "%s stopped", child_name(c));
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

        if (!parts) {
                return NULL;
        }
        if (s->active) {
                if (strv_consume(&parts, child_status_words(supervisor_child(s, s->active))) < 0) {
                        return NULL;
                }
        } else if (strv_extend(&parts, "no generation model") < 0) {
                return NULL;
        }
        for (size_t i = 0; i < s->n_children; i++) {
                const ModelConfig *m = s->config->models[i];
                _cleanup_free_ char *w = NULL;

                if (!m->pin) {
                        continue;
                }
                w = child_status_words(s->children[i]);
                if (!w || strv_consume(&parts, strjoin2(m->embeddings ? "embed " : "pinned ", w)) < 0) {
                        return NULL;
                }
        }
        return strv_join(parts, " · ");
}
