/* SPDX-License-Identifier: MIT */
#include "log.h"
#include "supervisor-internal.h"

/*
 * A new configuration, applied: new profiles appear, removed ones drain and stop, changed ones
 * that run drain and load again, unchanged ones are not touched; then what runs is trimmed to
 * lowered limits.
 */

/* Limits a reload lowered: resident models beyond them stop, least recently used first; the
 * active and pinned models stay (a later switch makes room as usual). */
static void supervisor_trim(Supervisor *s)
{
        ResidencyLimits l;
        _cleanup_free_ ResidentModel *models = supervisor_plan_input(s, &l);
        _cleanup_free_ size_t *evict = calloc(MAX(s->n_models, (size_t) 1), sizeof(size_t));
        size_t n = 0;

        if (!models || !evict) {
                return;
        }
        residency_trim(models, s->n_models, &l, evict, &n);
        for (size_t i = 0; i < n; i++) {
                Model *m = s->models[evict[i]];

                log_model(LOG_INFO, model_name(m), "evict",
                          "%s: over max-resident or the GPU memory budget "
                          "after the reload, stopping it",
                          model_name(m));
                model_event(m, SERVING_EVENT_UNLOAD, SERVING_WHY_TRIM);
        }
}

/* Whether llmd put m on a GPU that [llmd] gpus (mask, 0: all) no longer has: it must start
 * again elsewhere, as when its command line changed (its CUDA_VISIBLE_DEVICES would). */
static bool model_gpus_gone(const Model *m, uint64_t mask)
{
        for (unsigned i = 0; mask && serving_state_running(m->state) && i < GPU_DEVICES_MAX; i++) {
                if (m->gpu_on[i] > 0 && !(mask & (UINT64_C(1) << i))) {
                        return true;
                }
        }
        return false;
}

static Model *take_model(Supervisor *s, const char *name)
{
        for (size_t i = 0; i < s->n_models; i++) {
                Model *m = s->models[i];

                if (m && streq(model_name(m), name)) {
                        s->models[i] = NULL;
                        return m;
                }
        }
        return NULL;
}

int supervisor_reload(Supervisor *s, Config *config)
{
        _cleanup_free_ Model **models = NULL;
        _cleanup_free_ bool *changed = NULL;
        _cleanup_free_ char *binary = NULL;
        _cleanup_free_ Child **children = NULL;
        Model **retired;
        size_t n = 0, n_old = s->n_models, first_retired;
        bool binary_changed;
        int r;

        if (s->op) {
                return -EBUSY;
        }
        binary = strdup(supervisor_binary(config));
        changed = calloc(MAX(config->n_models, (size_t) 1), sizeof(bool));
        models = calloc(MAX(config->n_models, (size_t) 1), sizeof(Model *));
        children = calloc(MAX(config->n_models, (size_t) 1), sizeof(Child *));
        retired = realloc(s->retired, sizeof(Model *) * (s->n_retired + s->n_models + 1));
        if (!binary || !changed || !models || !children || !retired) {
                return -ENOMEM;
        }
        s->retired = retired;
        binary_changed = !streq(binary, s->binary);

        /* First everything that can fail, so a failure leaves the old state whole. */
        FOREACH_MODEL(m, config) {
                bool known = false;

                for (size_t i = 0; i < s->n_models; i++) {
                        known = known || streq(model_name(s->models[i]), m->name);
                }
                if (!known) {
                        r = supervisor_make_model(s, m, &models[n]);
                        if (r < 0) {
                                for (size_t i = 0; i < n; i++) {
                                        model_free(models[i]);
                                }
                                return r;
                        }
                }
                n++; /* an existing model is filled in below */
        }
        /* Now the part that cannot fail. */
        n = 0;
        FOREACH_MODEL(m, config) {
                if (!models[n]) {
                        Model *old = take_model(s, m->name);

                        changed[n] = binary_changed || !config_model_equal(model_config(old), m);
                        if (changed[n]) {
                                log_model(LOG_INFO, m->name, "reload", "%s: profile changed",
                                          m->name);
                        } else if (model_gpus_gone(old, config->gpus)) {
                                changed[n] = true;
                                log_model(LOG_INFO, m->name, "reload",
                                          "%s: runs on a GPU no longer in [llmd] gpus", m->name);
                        }
                        (void) child_set_config(old->child, m);
                        models[n] = old;
                } else {
                        log_model(LOG_INFO, m->name, "reload", "%s: new profile", m->name);
                }
                children[n] = models[n]->child;
                n++;
        }
        first_retired = s->n_retired;
        for (size_t i = 0; i < n_old; i++) {
                if (s->models[i]) {
                        s->retired[s->n_retired++] = s->models[i];
                }
        }
        free(s->models);
        free(s->children);
        s->models = TAKE_PTR(models);
        s->children = TAKE_PTR(children);
        s->n_models = n;
        config_free(s->config);
        s->config = config;
        if (binary_changed) {
                free(s->binary);
                s->binary = TAKE_PTR(binary);
                for (size_t i = 0; i < s->n_models; i++) {
                        child_set_binary(s->children[i], s->binary);
                }
        }

        /* Events only now: their callbacks see the new set whole. */
        for (size_t i = first_retired; i < s->n_retired; i++) {
                Model *m = s->retired[i];

                log_model(LOG_INFO, model_name(m), "reload", "%s: profile removed, stopping it",
                          model_name(m));
                model_event(m, SERVING_EVENT_UNLOAD, SERVING_WHY_REMOVED);
        }

        /* The active model may have gone, or become pinned. */
        const ModelConfig *am = s->active ? config_find_model(config, s->active) : NULL;
        if (!am || am->pin) {
                supervisor_choose(s, config->default_model, s->loaded);
                log_notice("The active model is no longer configured, switching to the default, %s",
                           s->active ? s->active : "none");
        }

        for (size_t i = 0; i < s->n_models; i++) {
                Model *m = s->models[i];
                const ModelConfig *mc = model_config(m);
                bool want = (mc->pin && mc->load_on_startup) || supervisor_is_active(s, m);

                if (!want && !mc->pin && !changed[i]) {
                        continue; /* resident beside the active model, and unchanged: it stays */
                }
                if (!want) {
                        model_event(m, SERVING_EVENT_UNLOAD, SERVING_WHY_RELOAD);
                } else if (model_down(m)) {
                        /* Generation models start through a switch, so that only one runs. */
                        if (mc->pin) {
                                model_event(m, SERVING_EVENT_LOAD, SERVING_WHY_NONE);
                        }
                } else if (changed[i]) {
                        /* Its requests finish first, as for a switch; then it loads again. */
                        model_event(m, SERVING_EVENT_UNLOAD, SERVING_WHY_RELOAD);
                        m->again = !model_down(m);
                        if (!m->again) {
                                model_event(m, SERVING_EVENT_LOAD, SERVING_WHY_NONE);
                        }
                }
        }
        supervisor_trim(s);
        if (s->loaded && s->active) {
                Model *a = supervisor_model(s, s->active);

                if (model_down(a)) {
                        _cleanup_free_ char *reason = NULL;

                        (void) supervisor_switch(s, s->active, 0, NULL, NULL, &reason);
                }
        }
        (void) sd_event_source_set_enabled(s->sweep, SD_EVENT_ONESHOT);
        supervisor_advance(s);
        supervisor_notify_change(s);
        return 0;
}
