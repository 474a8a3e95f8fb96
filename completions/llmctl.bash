# SPDX-License-Identifier: MIT
# bash completion for llmctl(1).
#
# Verbs and options come from `llmctl --help`, which prints llmctl's own verb table: what
# completes is what llmctl accepts. An option whose help begins with "VERB:" is offered after
# that verb only; a verb whose usage names MODEL takes a model name, and with "MODEL..." as
# many as are given; a usage that begins with a word in lower case ("fleet haproxy BOX...")
# offers that word first. An option's value completes by its placeholder: PATH and FILE a file, DIR
# a folder, FORMAT one of the words its help lists ("bench: table, markdown, json or csv"),
# anything else (N, SEC, URL) nothing.
#
# Model names come from the running llmd (`llmctl list --json`, on the socket of --socket, else
# $LLMD_SOCKET, else /run/llmd/control.sock). When llmd does not answer, they are the section
# names of the configuration file: $LLMD_CONFIG, else /etc/llama-generate.conf, leaving out
# [llmd] and [*]. After `switch`, `plan`, `bench`, `load` and `unload`, pinned models are left out: llmd
# refuses them there.

# Reads `$1 --help` into the caller's verbs, model_verbs, multi_verbs, verb_word, global_opts,
# arg_opts, arg_kind, arg_words and verb_opts.
_llmctl_read_help()
{
        local line section='' names desc word prev_opt verb
        local -a opts

        while IFS= read -r line; do
                case $line in
                Verbs:) section=verbs; continue ;;
                Options:) section=options; continue ;;
                "  "*) ;;
                *) section=; continue ;;
                esac
                line=${line#"${line%%[! ]*}"}
                case $section in
                verbs)
                        # "switch MODEL     Make MODEL the active generation model"
                        names=${line%%"  "*}
                        read -r word desc <<<"$names"
                        verbs+=("$word")
                        [[ $desc == *MODEL* ]] && model_verbs+=("$word")
                        [[ $desc == *MODEL...* ]] && multi_verbs+=("$word")
                        # "fleet haproxy BOX...": a word in lower case is typed as it is.
                        [[ $desc =~ ^([a-z]+)( |$) ]] && verb_word[$word]=${BASH_REMATCH[1]}
                        ;;
                options)
                        # "-f, --follow     logs: follow the journal"
                        names=${line%%"  "*}
                        desc=${line#"$names"}
                        desc=${desc#"${desc%%[! ]*}"}
                        opts=()
                        verb=''
                        prev_opt=''
                        for word in ${names//,/ }; do
                                if [[ $word == -* ]]; then
                                        opts+=("$word")
                                        prev_opt=$word
                                elif [[ -n $prev_opt ]]; then
                                        # "--socket PATH", "-o, --output FILE": the options
                                        # take a value.
                                        for prev_opt in "${opts[@]}"; do
                                                arg_opts+=("$prev_opt")
                                                arg_kind[$prev_opt]=$word
                                        done
                                fi
                        done
                        # "logs: follow the journal; activity: print ...": each verb named.
                        local -a opt_verbs=()
                        local rest=$desc
                        while [[ $rest =~ ^([a-z]+):([^\;]*)(\;[[:space:]]*(.*))?$ ]]; do
                                opt_verbs+=("${BASH_REMATCH[1]}")
                                rest=${BASH_REMATCH[4]}
                        done
                        verb=${opt_verbs[0]:-}
                        # "--format FORMAT    bench: table, markdown, json or csv"
                        if [[ -n $prev_opt && ${arg_kind[$prev_opt]} == FORMAT ]]; then
                                word=${desc#*: }
                                word=${word//,/ }
                                arg_words[$prev_opt]=${word// or / }
                        fi
                        if [[ -n $verb && " ${verbs[*]} " == *" $verb "* ]]; then
                                for verb in "${opt_verbs[@]}"; do
                                        verb_opts[$verb]+=" ${opts[*]}"
                                done
                        else
                                global_opts+=("${opts[@]}")
                        fi
                        ;;
                esac
        done < <("$1" --help 2>/dev/null)
}

# Prints the model names llmd knows, one a line; $2 = 1 leaves out pinned models. Fails when
# llmd does not answer.
_llmctl_daemon_models()
{
        local llmctl=$1 skip_pinned=$2 socket=$3 json token name=
        local -a args=()

        [[ -n $socket ]] && args=(--socket "$socket")
        json=$(timeout 2 "$llmctl" "${args[@]}" list --json 2>/dev/null) || return 1
        # Each model object has "name" before "pinned"; no JSON parser needed for that.
        while IFS= read -r token; do
                case $token in
                '"name"'*)
                        name=${token#*:}
                        name=${name#"${name%%[! 	]*}"}
                        name=${name#\"}
                        name=${name%\"}
                        ;;
                '"pinned"'*)
                        if [[ -n $name && ! ($skip_pinned == 1 && $token == *true) ]]; then
                                printf '%s\n' "$name"
                        fi
                        name=
                        ;;
                esac
        done < <(grep -oE '"(name|pinned)":[[:space:]]*("[^"]*"|true|false)' <<<"$json")
}

# Prints the model sections of the configuration file, one a line; $1 = 1 leaves out sections
# with "pin = true".
_llmctl_config_models()
{
        local skip_pinned=$1 file=${LLMD_CONFIG:-/etc/llama-generate.conf}
        local line section='' pinned=0 key value

        [[ -r $file ]] || return 1
        while IFS= read -r line || [[ -n $line ]]; do
                line=${line%%[;#]*}
                line=${line#"${line%%[! 	]*}"}
                line=${line%"${line##*[! 	]}"}
                case $line in
                \[*\]*)
                        if [[ -n $section && ! ($skip_pinned == 1 && $pinned == 1) ]]; then
                                printf '%s\n' "$section"
                        fi
                        section=${line#\[}
                        section=${section%%\]*}
                        pinned=0
                        case $section in
                        llmd | \*) section= ;;
                        esac
                        ;;
                *=*)
                        key=${line%%=*}
                        key=${key%"${key##*[! 	]}"}
                        value=${line#*=}
                        value=${value#"${value%%[! 	]*}"}
                        if [[ $key == pin ]]; then
                                case ${value,,} in
                                1 | yes | true | on | y) pinned=1 ;;
                                *) pinned=0 ;;
                                esac
                        fi
                        ;;
                esac
        done <"$file"
        if [[ -n $section && ! ($skip_pinned == 1 && $pinned == 1) ]]; then
                printf '%s\n' "$section"
        fi
}

_llmctl()
{
        local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
        local llmctl=${COMP_WORDS[0]} verb='' socket='' n_args=0 i word candidates given=' '
        local -a verbs=() model_verbs=() multi_verbs=() global_opts=() arg_opts=()
        local -A verb_opts=() arg_kind=() arg_words=() verb_word=()

        COMPREPLY=()
        # A command typed as ~/bin/llmctl: run it the way the shell will.
        [[ $llmctl == \~/* ]] && llmctl=$HOME/${llmctl#\~/}
        command -v "$llmctl" >/dev/null 2>&1 || llmctl=llmctl
        _llmctl_read_help "$llmctl"

        # The value of an option that takes one: "--socket PATH", or "--socket=PATH", which
        # reaches us as "--socket" "=" "PATH".
        if [[ $prev == "=" ]] && ((COMP_CWORD >= 2)); then
                prev=${COMP_WORDS[COMP_CWORD - 2]}
        fi
        if [[ " ${arg_opts[*]} " == *" $prev "* ]]; then
                case ${arg_kind[$prev]} in
                PATH | FILE)
                        compopt -o filenames 2>/dev/null
                        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
                        ;;
                DIR)
                        compopt -o filenames 2>/dev/null
                        mapfile -t COMPREPLY < <(compgen -d -- "$cur")
                        ;;
                FORMAT)
                        mapfile -t COMPREPLY < <(compgen -W "${arg_words[$prev]}" -- "$cur")
                        ;;
                esac
                return 0
        fi

        # The verb, its arguments so far, and --socket for asking llmd.
        for ((i = 1; i < COMP_CWORD; i++)); do
                word=${COMP_WORDS[i]}
                if [[ " ${arg_opts[*]} " == *" $word "* ]]; then
                        # Its value: the next word, or the one after "=".
                        i=$((i + 1))
                        [[ ${COMP_WORDS[i]} == "=" ]] && i=$((i + 1))
                        [[ $word == --socket ]] && socket=${COMP_WORDS[i]}
                elif [[ $word == -* ]]; then
                        continue
                elif [[ -z $verb ]]; then
                        verb=$word
                else
                        n_args=$((n_args + 1))
                        given+="$word "
                fi
        done

        if [[ $cur == -* ]]; then
                # Before the verb, every option: they may come first.
                candidates="${global_opts[*]}"
                if [[ -n $verb ]]; then
                        candidates+=" ${verb_opts[$verb]}"
                else
                        candidates+=" ${verb_opts[*]}"
                fi
                mapfile -t COMPREPLY < <(compgen -W "$candidates" -- "$cur")
                return 0
        fi

        if [[ -z $verb ]]; then
                mapfile -t COMPREPLY < <(compgen -W "${verbs[*]}" -- "$cur")
                return 0
        fi

        if [[ -n ${verb_word[$verb]} ]] && ((n_args == 0)); then
                mapfile -t COMPREPLY < <(compgen -W "${verb_word[$verb]}" -- "$cur")
                return 0
        fi

        if [[ " ${model_verbs[*]} " == *" $verb "* ]] &&
                ((n_args == 0)) || [[ " ${multi_verbs[*]} " == *" $verb "* ]]; then
                local skip_pinned=0 models
                [[ $verb == switch || $verb == plan || $verb == bench || $verb == load || $verb == unload ]] && skip_pinned=1
                models=$(_llmctl_daemon_models "$llmctl" "$skip_pinned" "$socket") ||
                        models=$(_llmctl_config_models "$skip_pinned")
                # A model named already is not offered again.
                candidates=''
                for word in $models; do
                        [[ $given == *" $word "* ]] || candidates+="$word "
                done
                mapfile -t COMPREPLY < <(compgen -W "$candidates" -- "$cur")
        fi
        return 0
} &&
        complete -F _llmctl llmctl
