/* SPDX-License-Identifier: MIT */
#include "control-protocol.h"

const ControlMethod control_methods[_CONTROL_METHOD_MAX] = {
        { CONTROL_METHOD_ACTIVITY, CONTROL_INTERFACE ".Activity", "since: ?int, model: ?string",
          "the last requests, oldest first: those from sequence number since on, of model only; "
          "next is the number to ask from next time" },
        { CONTROL_METHOD_CLEAR_PROMPT_CACHE, CONTROL_INTERFACE ".ClearPromptCache",
          "model: ?string", "remove the saved prompt caches of model, or of every model" },
        { CONTROL_METHOD_LIST, CONTROL_INTERFACE ".List", "",
          "every configured model with its aliases and state" },
        { CONTROL_METHOD_LOAD, CONTROL_INTERFACE ".Load", "model: string",
          "make model resident beside the active one, without switching to it; with more, "
          "progress as it goes" },
        { CONTROL_METHOD_PLAN, CONTROL_INTERFACE ".Plan", "model: string",
          "what a switch to model would do, without doing it: where it would go on the GPUs, "
          "what would stop, and why" },
        { CONTROL_METHOD_RELOAD, CONTROL_INTERFACE ".Reload", "",
          "read the configuration again and apply what changed" },
        { CONTROL_METHOD_START, CONTROL_INTERFACE ".Start", "",
          "load the active generation model again after Stop" },
        { CONTROL_METHOD_STATUS, CONTROL_INTERFACE ".Status", "",
          "what is loaded, its state, pid, uptime and last failure; resident models and GPU memory" },
        { CONTROL_METHOD_STOP, CONTROL_INTERFACE ".Stop", "",
          "unload every generation model (pinned models stay)" },
        { CONTROL_METHOD_SWITCH, CONTROL_INTERFACE ".Switch", "model: string, now: ?bool",
          "make model the active generation model; with more, progress as it goes; now: "
          "SIGKILL the old model instead of letting its requests finish" },
        { CONTROL_METHOD_UNLOAD, CONTROL_INTERFACE ".Unload", "model: string",
          "stop a resident model that is not the active one (its requests finish first)" },
        { CONTROL_METHOD_GET_INFO, "org.varlink.service.GetInfo", "",
          "vendor, product, version and interfaces" },
};

const ControlMethod *control_method_find(const char *name)
{
        for (size_t i = 0; i < _CONTROL_METHOD_MAX; i++) {
                if (streq(control_methods[i].name, name)) {
                        return &control_methods[i];
                }
        }
        return NULL;
}
