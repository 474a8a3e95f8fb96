/* SPDX-License-Identifier: MIT */
#pragma once

#include <systemd/sd-event.h>

#include "child.h"
#include "config.h"

/*
 * The set of children and what should run: every pinned model, plus the one active generation
 * model. Each profile has a Child (most stay STOPPED). The supervisor decides the order —
 * on stop, generation children first, pinned ones after — and says in one line what serves.
 */

typedef struct Supervisor Supervisor;
typedef void (*supervisor_handler_t)(Supervisor *s, void *userdata);

typedef struct SupervisorOptions {
        sd_event *event;
        const char *runtime_dir;
        char **environ; /* for the children; already cleaned of systemd's variables */
        supervisor_handler_t on_change; /* any child changed state */
        void *userdata;
} SupervisorOptions;

/* Takes ownership of config. */
int supervisor_new(const SupervisorOptions *o, Config *config, Supervisor **ret);
Supervisor *supervisor_free(Supervisor *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Supervisor *, supervisor_free);

/* Starts the pinned models and the active one (load-on-startup permitting). */
void supervisor_start(Supervisor *s);
/* Stops generation children, then pinned ones; calls done once all are down. */
void supervisor_stop(Supervisor *s, void (*done)(void *userdata), void *userdata);
/* SIGKILL to every child, now. */
void supervisor_kill(Supervisor *s);

const Config *supervisor_config(const Supervisor *s);
const char *supervisor_active(const Supervisor *s);
Child *supervisor_child(const Supervisor *s, const char *name);
/* "qwen ready · embed nomic ready", "qwen loading …", "qwen failed: exit status 1" */
char *supervisor_status_text(const Supervisor *s);
