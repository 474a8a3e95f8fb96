/* SPDX-License-Identifier: MIT */
#pragma once

#include <systemd/sd-event.h>

#include "config.h"
#include "supervisor.h"

/*
 * The daemon as a whole: one sd-event loop and everything in it — signals, the supervisor and
 * its children; the control socket and the HTTP proxy join it in later modules.
 */

typedef struct Manager {
        sd_event *event;
        char *runtime_dir;
        char *state_dir;
        char **environ; /* llmd's environment without systemd's variables, for children */
        Supervisor *supervisor;
        bool stopping;
} Manager;

/* Takes ownership of config. */
int manager_new(Config *config, const char *runtime_dir, const char *state_dir, Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

int manager_start(Manager *m);
int manager_run(Manager *m);

/* Our environment minus what systemd set for llmd alone. Exported for the tests. */
char **manager_clean_environ(char **environ);
