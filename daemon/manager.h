/* SPDX-License-Identifier: MIT */
#pragma once

#include <systemd/sd-event.h>

#include "config.h"
#include "control.h"
#include "proxy.h"
#include "supervisor.h"

/*
 * The daemon as a whole: one sd-event loop and everything in it — signals, the supervisor and
 * its children, the control socket; the HTTP proxy joins it with its own module.
 */

#define MANAGER_LOCK_NAME "llmd.lock" /* in the runtime directory */

typedef struct Manager {
        sd_event *event;
        char *config_path;
        char *runtime_dir;
        char *state_dir;
        int lock_fd;    /* flock()ed: the runtime directory is ours */
        char **environ; /* llmd's environment without systemd's variables, for children */
        Supervisor *supervisor;
        ControlServer *control;
        Proxy *proxy;
        Metrics *metrics;
        uint64_t start_usec;
        bool stopping;
} Manager;

/* Takes ownership of config. -EBUSY: another llmd holds the runtime directory (logged, like
 * every failure here). */
int manager_new(Config *config, const char *runtime_dir, const char *state_dir, Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

int manager_start(Manager *m);
int manager_run(Manager *m);

/* Reads the configuration file again and applies it. -EINVAL: the file is bad (*ret_errors says
 * where) and nothing changed; -EBUSY: a switch is in progress. */
int manager_reload(Manager *m, char ***ret_errors);

/* Our environment minus what systemd set for llmd alone. Exported for the tests. */
char **manager_clean_environ(char **environ);

/* The handlers of the control methods, indexed by ControlMethodId. */
extern const control_handler_t manager_control_handlers[_CONTROL_METHOD_MAX];
