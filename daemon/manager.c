/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "fileio.h"
#include "log.h"
#include "time-util.h"
#include "manager.h"
#include "notify.h"
#include "strv.h"

static void manager_update_status(Manager *m)
{
        _cleanup_free_ char *t = NULL, *full = NULL;
        ProxyCounters pc = m->proxy ? proxy_counters(m->proxy) : (ProxyCounters) {};

        if (m->stopping) {
                return; /* the stop sequence says what it does */
        }
        t = supervisor_status_text(m->supervisor);
        if (!t) {
                return;
        }
        if (pc.in_flight > 0 && pc.held > 0) {
                if (asprintf(&full, "%s · %u in flight, %u held", t, pc.in_flight, pc.held) < 0) {
                        full = NULL;
                }
        } else if (pc.in_flight > 0 || pc.held > 0) {
                if (asprintf(&full, "%s · %u %s", t, pc.in_flight + pc.held,
                             pc.in_flight > 0 ? "in flight" : "held") < 0) {
                        full = NULL;
                }
        }
        notify_status(full ? full : t);
}

static void manager_on_change(Supervisor *s, void *userdata)
{
        Manager *m = userdata;

        if (m->proxy) {
                proxy_models_changed(m->proxy);
        }
        manager_update_status(m);
}

static void manager_drain(void *userdata, const char *model, bool now, void (*done)(void *d),
                          void *d)
{
        Manager *m = userdata;

        if (!m->proxy) {
                done(d);
                return;
        }
        proxy_drain(m->proxy, model, now, done, d);
}

char **manager_clean_environ(char **env)
{
        static const char *const drop[] = {
                "NOTIFY_SOCKET=",    "LISTEN_PID=",    "LISTEN_FDS=",     "LISTEN_FDNAMES=",
                "WATCHDOG_PID=",     "WATCHDOG_USEC=", "JOURNAL_STREAM=", "INVOCATION_ID=",
                "SYSTEMD_EXEC_PID=", "MAINPID=",       "MANAGERPID=",     "RUNTIME_DIRECTORY=",
                "STATE_DIRECTORY=",
        };
        _cleanup_strv_free_ char **l = calloc(1, sizeof(char *));

        if (!l) {
                return NULL;
        }
        STRV_FOREACH(v, env) {
                bool keep = true;

                for (size_t i = 0; i < ELEMENTSOF(drop); i++) {
                        if (strneq(*v, drop[i], strlen(drop[i]))) {
                                keep = false;
                        }
                }
                if (keep && strv_extend(&l, *v) < 0) {
                        return NULL;
                }
        }
        return TAKE_PTR(l);
}

static void manager_on_stopped(void *userdata)
{
        Manager *m = userdata;

        log_info("all models stopped, exiting");
        (void) sd_event_exit(m->event, 0);
}

int manager_reload(Manager *m, char ***ret_errors)
{
        _cleanup_(config_freep) Config *c = NULL;
        _cleanup_free_ char *why = NULL;
        ProxyReload *pr = NULL;
        int r;

        if (m->stopping) {
                return -ESHUTDOWN;
        }
        r = config_load(m->config_path, &c);
        if (r == -EINVAL) {
                STRV_FOREACH(e, c->errors) {
                        log_error("%s", *e);
                }
                log_error("Reload refused: %s has %zu error(s); the running configuration stays",
                          m->config_path, strv_length(c->errors));
                if (ret_errors) {
                        *ret_errors = TAKE_PTR(c->errors);
                }
                return r;
        }
        if (r < 0) {
                log_error("Reload refused: cannot read %s: %s", m->config_path, file_strerror(r));
                char *e;
                if (ret_errors && asprintf(&e, "%s: %s", m->config_path, file_strerror(r)) >= 0) {
                        (void) strv_consume(ret_errors, e);
                }
                return -EINVAL;
        }
        r = proxy_reload_check(m->proxy, c, &pr, &why);
        if (r < 0) {
                log_error("Reload refused: %s; the running configuration stays",
                          why ? why : strerror(-r));
                if (ret_errors && why) {
                        (void) strv_consume(ret_errors, TAKE_PTR(why));
                }
                return -EINVAL;
        }
        notify_reloading();
        r = supervisor_reload(m->supervisor, c);
        if (r == -EBUSY) {
                log_warning("Reload refused: a switch is in progress; reload again after it");
        } else if (r < 0) {
                log_error_errno(r, "Reload failed: %m");
        } else {
                TAKE_PTR(c);
                proxy_reload_apply(m->proxy, TAKE_PTR(pr));
                log_info("Reloaded %s", m->config_path);
        }
        proxy_reload_free(pr);
        manager_update_status(m);
        notify_ready();
        return r;
}

static int manager_on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        (void) manager_reload(userdata, NULL);
        return 0;
}

static void manager_on_drained(void *userdata)
{
        Manager *m = userdata;

        notify_status("stopping models …");
        supervisor_stop(m->supervisor, manager_on_stopped, m);
}

static int manager_on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        Manager *m = userdata;

        if (m->stopping) {
                /* A second request to stop: no more waiting for children. */
                log_warning("received %s while stopping, killing the models now",
                            sigabbrev_np((int) si->ssi_signo));
                supervisor_kill(m->supervisor);
                return 0;
        }
        m->stopping = true;
        log_info("received SIG%s, stopping", sigabbrev_np((int) si->ssi_signo));
        notify_stopping();
        notify_status("stopping: letting requests finish …");
        /* The drain, then each model's stop-timeout (generation, then pinned ones), one after
         * the other: tell systemd how long that may take, so TimeoutStopSec= does not cut it. */
        const Config *c = supervisor_config(m->supervisor);
        uint64_t need = c->drain_timeout_usec + 5 * USEC_PER_SEC, gen = 0;
        FOREACH_MODEL(mc, c) {
                if (mc->pin) {
                        need += mc->stop_timeout_usec;
                } else {
                        gen = MAX(gen, mc->stop_timeout_usec);
                }
        }
        notify_extend_timeout(need + gen);
        /* No new connections; the requests running finish (up to drain-timeout), then the
         * models stop in order. */
        proxy_quiesce(m->proxy);
        proxy_stop_holding(m->proxy);
        const char *active = supervisor_active(m->supervisor);
        if (active) {
                proxy_drain(m->proxy, active, false, manager_on_drained, m);
        } else {
                manager_on_drained(m);
        }
        return 0;
}

static int mkdir_p(const char *path, mode_t mode)
{
        _cleanup_free_ char *p = strdup(path);

        if (!p) {
                return -ENOMEM;
        }
        for (char *s = p + 1; *s; s++) {
                if (*s == '/') {
                        *s = '\0';
                        if (mkdir(p, mode) < 0 && errno != EEXIST) {
                                return -errno;
                        }
                        *s = '/';
                }
        }
        if (mkdir(p, mode) < 0 && errno != EEXIST) {
                return -errno;
        }
        return 0;
}

/* One llmd per runtime directory. A second one would replace the control socket and, on its
 * way out, remove the sockets of the first one's children, whose health checks then fail. The
 * lock comes before anything in the directory is touched and lasts as long as the process (the
 * kernel drops it when we die, so there is nothing stale to clean up). It holds our pid, so the
 * refusal can name the holder. */
static int manager_lock_runtime_dir(Manager *m)
{
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -1;
        char pid[32];
        int r;

        if (asprintf(&path, "%s/%s", m->runtime_dir, MANAGER_LOCK_NAME) < 0) {
                return log_error_errno(ENOMEM, "Out of memory");
        }
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0644);
        if (fd < 0) {
                return log_error_errno(errno, "Failed to open %s: %m", path);
        }
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                if (errno != EWOULDBLOCK) {
                        return log_error_errno(errno, "Failed to lock %s: %m", path);
                }
                ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
                pid[MAX(n, 0)] = '\0';
                pid[strcspn(pid, "\n")] = '\0';
                if (pid[0] == '\0') {
                        strcpy(pid, "?");
                }
                return log_error_errno(EBUSY,
                                       "another llmd (pid %s) is running on %s (it holds %s); "
                                       "not starting",
                                       pid, m->runtime_dir, path);
        }
        r = snprintf(pid, sizeof(pid), "%d\n", (int) getpid());
        if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t) r, 0) != r) {
                /* Only the holder's pid in a refusal is lost. */
                log_warning_errno(errno, "Failed to write our pid to %s: %m", path);
        }
        m->lock_fd = TAKE_FD(fd);
        return 0;
}

int manager_new(Config *config, const char *runtime_dir, const char *state_dir, Manager **ret)
{
        _cleanup_(manager_freep) Manager *m = NULL;
        _cleanup_free_ char *why = NULL;
        extern char **environ;
        int r;

        m = calloc(1, sizeof(Manager));
        if (!m) {
                config_free(config);
                return log_error_errno(ENOMEM, "Out of memory");
        }
        m->lock_fd = -1;
        m->runtime_dir = strdup(runtime_dir);
        m->state_dir = strdup(state_dir);
        m->config_path = strdup(config->path);
        m->environ = manager_clean_environ(environ);
        if (!m->runtime_dir || !m->state_dir || !m->config_path || !m->environ) {
                config_free(config);
                return log_error_errno(ENOMEM, "Out of memory");
        }

        r = mkdir_p(m->runtime_dir, 0755);
        if (r < 0) {
                config_free(config);
                return log_error_errno(r, "Failed to create runtime directory %s: %m", runtime_dir);
        }
        r = manager_lock_runtime_dir(m);
        if (r < 0) {
                config_free(config);
                return r;
        }
        r = mkdir_p(m->state_dir, 0755);
        if (r < 0) {
                config_free(config);
                return log_error_errno(r, "Failed to create state directory %s: %m", state_dir);
        }

        r = sd_event_new(&m->event);
        if (r < 0) {
                config_free(config);
                return log_error_errno(r, "Failed to create the event loop: %m");
        }
        /* WATCHDOG=1 at half of $WATCHDOG_USEC from the loop itself: a blocked loop gets us
         * restarted. */
        (void) sd_event_set_watchdog(m->event, true);

        m->start_usec = event_now_usec(m->event);
        r = metrics_new(&m->metrics);
        if (r < 0) {
                config_free(config);
                return log_error_errno(r, "Out of memory");
        }
        SupervisorOptions so = {
                .event = m->event,
                .runtime_dir = m->runtime_dir,
                .state_dir = m->state_dir,
                .environ = m->environ,
                .on_change = manager_on_change,
                .drain = manager_drain,
                .metrics = m->metrics,
                .userdata = m,
        };
        r = supervisor_new(&so, config, &m->supervisor);
        if (r < 0) {
                return log_error_errno(r, "Failed to set up the models: %m");
        }
        r = proxy_new(m->event, m->supervisor, &m->proxy, &why);
        if (r < 0) {
                return log_error_errno(r, "Failed to set up the HTTP proxy: %s",
                                       why ? why : strerror(-r));
        }
        proxy_set_metrics(m->proxy, m->metrics);
        *ret = TAKE_PTR(m);
        return 0;
}

int manager_start(Manager *m)
{
        int r;

        r = sd_event_add_signal(m->event, NULL, SIGTERM, manager_on_signal, m);
        if (r >= 0) {
                r = sd_event_add_signal(m->event, NULL, SIGINT, manager_on_signal, m);
        }
        if (r >= 0) {
                r = sd_event_add_signal(m->event, NULL, SIGHUP, manager_on_sighup, m);
        }
        if (r < 0) {
                return log_error_errno(r, "Failed to watch signals: %m");
        }

        _cleanup_free_ char *path = NULL;
        const char *step;
        if (asprintf(&path, "%s/%s", m->runtime_dir, CONTROL_SOCKET_NAME) < 0) {
                return log_error_errno(ENOMEM, "Out of memory");
        }
        ControlOptions co = {
                .event = m->event,
                .path = path,
                .group = "llmd",
                .handlers = manager_control_handlers,
                .userdata = m,
        };
        r = control_server_new(&co, &m->control, &step);
        if (r < 0) {
                return log_error_errno(r, "Failed to set up the control socket %s (%s): %m", path,
                                       step);
        }
        r = proxy_start(m->proxy);
        if (r < 0) {
                return r;
        }
        supervisor_start(m->supervisor);
        manager_update_status(m);
        /* Model loads never delay readiness: requests wait for them instead. */
        notify_ready();
        return 0;
}

int manager_run(Manager *m)
{
        int r = sd_event_loop(m->event);

        if (r < 0) {
                return log_error_errno(r, "Event loop failed: %m");
        }
        return r;
}

Manager *manager_free(Manager *m)
{
        if (!m) {
                return NULL;
        }
        control_server_free(m->control);
        proxy_free(m->proxy);
        supervisor_free(m->supervisor);
        metrics_free(m->metrics);
        sd_event_unref(m->event);
        free(m->config_path);
        strv_free(m->environ);
        free(m->runtime_dir);
        free(m->state_dir);
        /* Last: the next llmd may start once our sockets are gone. */
        safe_close(m->lock_fd);
        free(m);
        return NULL;
}
