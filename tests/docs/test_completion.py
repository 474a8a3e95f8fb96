#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""llmctl(1), llmd-control(7) and the bash completion against the code.

    test_completion.py --list     the case names, one a line
    test_completion.py CASE       runs one: exit 0 pass, 1 fail, 77 skip

Environment (tests/docs/meson.build sets it): SOURCE_ROOT, the source tree (default: two levels
up from this file); MAN_BUILD, the folder of the built man pages; LLMCTL, the built llmctl;
DOC_TABLES, the built doc-tables.

The coverage cases read the code, never a list kept here: llmctl's verbs and options come from
`LLMCTL --help` and from its tables (verbs[] in ctl/llmctl-verbs.c, llmctl_options[] in
ctl/llmctl-args.c); the methods from control_methods[] in common/control-protocol.c; the tables
as doc-tables (DOC_TABLES, see test_man.py) prints their rows. The errors come from what
daemon/*.c sends. Each fails when it finds suspiciously few, so that a parser broken by a
reformat cannot pass by finding nothing.

The completion cases source completions/llmctl.bash in bash and call its function with
COMP_WORDS/COMP_CWORD set, as bash does. The completion reads the model names from llmd, or,
when llmd does not answer, from the sections of $LLMD_CONFIG (default /etc/llama-generate.conf).
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get("SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))
MAN_BUILD = os.environ.get("MAN_BUILD", "")
LLMCTL = os.environ.get("LLMCTL", "")
COMPLETION = os.path.join(SOURCE_ROOT, "completions", "llmctl.bash")

MIN_VERBS = 8
MIN_LONG_OPTIONS = 5
MIN_METHODS = 7


sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "integration"))
sys.path.insert(0, HERE)
from llmdtest import Failure as Fail, Skip, run  # noqa: E402
from test_man import code_table, render  # noqa: E402  (the same for every page)


def read(*path):
    with open(os.path.join(SOURCE_ROOT, *path), encoding="utf-8") as f:
        return f.read()


def need_llmctl():
    if not LLMCTL or not os.access(LLMCTL, os.X_OK):
        raise Skip(f"no llmctl to run (LLMCTL={LLMCTL!r})")


def section(text, name):
    """The body of scdoc section '# NAME', up to the next '# ' heading."""
    m = re.search(r"^# " + re.escape(name) + r"\n(.*?)(?=^# |\Z)", text, re.M | re.S)
    if not m:
        raise Fail(f"no section '# {name}'")
    return m.group(1)


# ---- what llmctl knows ----


def llmctl_help():
    need_llmctl()
    p = subprocess.run([LLMCTL, "--help"], capture_output=True, text=True, timeout=10)
    if p.returncode != 0:
        raise Fail(f"llmctl --help exited with {p.returncode}: {p.stderr}")
    return p.stdout


def help_block(text, title):
    """The indented lines under 'Title:' in llmctl --help."""
    m = re.search(r"^" + title + r":\n((?:  .*\n)+)", text, re.M)
    return m.group(1) if m else ""


def llmctl_verbs_and_options():
    """(verbs, options) from llmctl --help and from llmctl's tables."""
    text = llmctl_help()
    verbs = {line.split()[0] for line in help_block(text, "Verbs").splitlines()}
    options = set()
    for line in help_block(text, "Options").splitlines():
        names = re.split(r"\s{2,}", line.strip())[0]
        options |= set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", names))

    verbs |= {name for name, _usage, _method in code_table("verb")}
    for name, _argument, short in code_table("option"):
        options.add("--" + name)
        if short:
            options.add("-" + short)
    return verbs, options


def test_llmctl_verbs_documented():
    verbs, options = llmctl_verbs_and_options()
    long_options = {o for o in options if o.startswith("--")}
    if len(verbs) < MIN_VERBS:
        raise Fail(f"found only {len(verbs)} verbs ({sorted(verbs)}): is the parser broken?")
    if len(long_options) < MIN_LONG_OPTIONS:
        raise Fail(f"found only {len(long_options)} long options ({sorted(long_options)})")
    page = read("man", "llmctl.1.scd")
    # Each verb is an entry of VERBS ("*switch* _MODEL_" at the start of a line), each option
    # one of OPTIONS ("*-f*, *--follow*"): a word merely mentioned somewhere does not count.
    documented_verbs = set(re.findall(r"^\*([a-z-]+)\*", section(page, "VERBS"), re.M))
    entries = [l for l in section(page, "OPTIONS").splitlines() if l.startswith("*")]
    documented_options = {o for l in entries for o in re.findall(r"\*(--?[a-z][a-z-]*)\*", l)}
    missing = sorted(verbs - documented_verbs) + sorted(options - documented_options)
    if missing:
        raise Fail("not documented in man/llmctl.1.scd: " + ", ".join(missing))
    print(f"{len(verbs)} verbs, {len(options)} options documented")


# ---- what llmd's control socket knows ----


def control_interface():
    m = re.search(r'#define CONTROL_INTERFACE "([^"]+)"', read("common", "control-protocol.h"))
    if not m:
        raise Fail("no CONTROL_INTERFACE in common/control-protocol.h")
    return m.group(1)


def control_methods():
    names = [name for name, in code_table("method")]
    if len(names) < MIN_METHODS:
        raise Fail(f"read {len(names)} methods from control_methods[]: is doc-tables broken?")
    return names


def test_control_methods_documented():
    names = control_methods()
    page = read("man", "llmd-control.7.scd")
    # Each method is a heading of its own ("## io.llmd.Manager.Switch").
    headings = set(re.findall(r"^## (\S+)$", page, re.M))
    missing = [n for n in names if n not in headings]
    if missing:
        raise Fail("no '## METHOD' heading in man/llmd-control.7.scd for: " + ", ".join(missing))
    print(f"{len(names)} methods documented")


def test_control_errors_documented():
    """Every error name llmd sends appears in llmd-control(7)."""
    iface = control_interface()
    header = read("common", "control-protocol.h")
    errors = {}
    define = r"#define ((?:CONTROL|VARLINK)_ERROR_\w+)\s+(CONTROL_INTERFACE\s*)?\"([^\"]+)\""
    for macro, prefix, suffix in re.findall(define, header):
        errors[macro] = (iface + suffix) if prefix else suffix
    used = set()
    daemon = os.path.join(SOURCE_ROOT, "daemon")
    for f in sorted(os.listdir(daemon)):
        if f.endswith(".c"):
            used |= set(re.findall(r"\b((?:CONTROL|VARLINK)_ERROR_\w+)\b", read("daemon", f)))
    unknown = sorted(used - errors.keys())
    if unknown:
        raise Fail("error macros not found in common/control-protocol.h: " + ", ".join(unknown))
    if len(used) < 8:
        raise Fail(f"found only {len(used)} errors sent by daemon/*.c: is the parser broken?")
    page = read("man", "llmd-control.7.scd")
    missing = sorted(errors[m] for m in used if "*" + errors[m] + "*" not in page)
    if missing:
        raise Fail("errors llmd sends, not in man/llmd-control.7.scd: " + ", ".join(missing))
    print(f"{len(used)} errors documented")


# ---- the pages render ----




def test_render_llmctl_1():
    render("llmctl.1")


def test_render_llmd_control_7():
    render("llmd-control.7")


# ---- the bash completion ----


def complete(words, env=None):
    """What the completion offers for the command line `words` (the last word is the one being
    completed; "" for a new word). words[0] is run for --help and list, as bash would."""
    need_llmctl()
    if not shutil.which("bash"):
        raise Skip("no bash")
    if not os.path.exists(COMPLETION):
        raise Fail(f"no {COMPLETION}")
    script = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); '
              '_llmctl; printf "%s\\n" "${COMPREPLY[@]}"')
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", script, "bash", COMPLETION] + words,
                       capture_output=True, text=True, env=dict(os.environ, **(env or {})),
                       timeout=30)
    if p.returncode != 0 or p.stderr.strip():
        raise Fail(f"completing {words}: exit {p.returncode}: {p.stderr}")
    return [w for w in p.stdout.splitlines() if w]


def expect(words, want, env=None):
    got = complete(words, env)
    if sorted(got) != sorted(want):
        raise Fail(f"completing {' '.join(words[1:])!r}: got {sorted(got)}, want {sorted(want)}")
    print(f"{' '.join(words[1:])!r} -> {' '.join(got)}")


def test_completion_verbs():
    verbs, _ = llmctl_verbs_and_options()
    if len(verbs) < MIN_VERBS:
        raise Fail(f"found only {len(verbs)} verbs")
    expect([LLMCTL, "sw"], ["switch"])
    expect([LLMCTL, ""], sorted(verbs))
    expect([LLMCTL, "switch", "--n"], ["--now"])
    expect([LLMCTL, "logs", "--f"], ["--follow"])
    expect([LLMCTL, "activity", "--f"], ["--follow"])
    expect([LLMCTL, "status", "--n"], [])
    expect([LLMCTL, "bench", "--f"], ["--format"])
    expect([LLMCTL, "bench", "--r"], ["--runs"])
    expect([LLMCTL, "status", "--r"], [])
    expect([LLMCTL, "fleet", ""], ["haproxy"])  # its usage: "fleet haproxy BOX..."
    expect([LLMCTL, "fleet", "haproxy", ""], [])
    expect([LLMCTL, "fleet", "--l"], ["--listen"])


def test_completion_option_values():
    """An option's value by its placeholder: --format's words from llmctl --help, which are
    the formats llmctl accepts; a number or a URL, nothing."""
    expect([LLMCTL, "bench", "--format", ""], ["table", "markdown", "json", "csv"])
    expect([LLMCTL, "bench", "--format", "m"], ["markdown"])
    expect([LLMCTL, "bench", "--format", "=", "c"], ["csv"])  # bash splits --format=c
    expect([LLMCTL, "bench", "--runs", ""], [])
    expect([LLMCTL, "bench", "--url", ""], [])
    need_llmctl()
    for word in ("table", "markdown", "json", "csv"):
        p = subprocess.run([LLMCTL, "--socket", "/nonexistent", "bench", "--format", word, "x"],
                           capture_output=True, text=True, timeout=10)
        if "--format" in p.stderr:
            raise Fail(f"llmctl refuses --format {word}, which the completion offers: {p.stderr}")
    with tempfile.TemporaryDirectory() as d:
        os.mkdir(os.path.join(d, "tasks"))
        open(os.path.join(d, "tasks.txt"), "w").close()
        prefix = os.path.join(d, "ta")
        expect([LLMCTL, "bench", "--tasks", prefix], [prefix + "sks"])
        expect([LLMCTL, "bench", "-o", prefix], [prefix + "sks", prefix + "sks.txt"])


CONFIG = """\
version = 1
; a comment
[llmd]
default = qwen   ; the default

[*]
ctx-size = 8192

[qwen]
model = {d}/qwen.gguf
aliases = qwen3.5

[gemma] ; Gemma 4
model = {d}/gemma.gguf

[nomic]
model = {d}/nomic.gguf
embeddings = true
pin = true
"""


def test_completion_models_from_config():
    with tempfile.TemporaryDirectory() as d:
        config = os.path.join(d, "llama-generate.conf")
        with open(config, "w") as f:
            f.write(CONFIG.format(d=d))
        env = {"LLMD_SOCKET": os.path.join(d, "missing.sock"), "LLMD_CONFIG": config}
        # llmd does not answer: the sections but [llmd] and [*]; switch leaves out pinned ones.
        expect([LLMCTL, "switch", ""], ["qwen", "gemma"], env)
        expect([LLMCTL, "switch", "g"], ["gemma"], env)
        expect([LLMCTL, "logs", ""], ["qwen", "gemma", "nomic"], env)
        expect([LLMCTL, "logs", "-f", ""], ["qwen", "gemma", "nomic"], env)
        expect([LLMCTL, "switch", "qwen", ""], [], env)
        expect([LLMCTL, "status", ""], [], env)
        # bench takes several, pinned ones left out, none twice.
        expect([LLMCTL, "bench", ""], ["qwen", "gemma"], env)
        expect([LLMCTL, "bench", "--runs", "2", "qwen", ""], ["gemma"], env)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_completion_models_from_daemon():
    """With llmd running, the names come from it: its sections, not the file's."""
    need_llmctl()
    build = os.path.dirname(os.path.dirname(os.path.abspath(LLMCTL)))
    llmd = os.path.join(build, "daemon", "llmd")
    sim = os.path.join(build, "tests", "sim", "llama-sim")
    if not (os.access(llmd, os.X_OK) and os.access(sim, os.X_OK)):
        raise Skip(f"needs {llmd} and {sim}")
    with tempfile.TemporaryDirectory() as d:
        for m in ("qwen", "gemma", "nomic"):
            open(os.path.join(d, m + ".gguf"), "w").close()
        config = os.path.join(d, "llama-generate.conf")
        with open(config, "w") as f:
            f.write(CONFIG.format(d=d).replace(
                "[llmd]\n", f"[llmd]\nlisten = 127.0.0.1:{free_port()}\nllama-server = {sim}\n"))
        other = os.path.join(d, "other.conf")
        with open(other, "w") as f:
            f.write("[elsewhere]\nmodel = /x.gguf\n")
        for sub in ("run", "state"):
            os.mkdir(os.path.join(d, sub))
        sock = os.path.join(d, "run", "control.sock")
        log = open(os.path.join(d, "llmd.log"), "w")
        proc = subprocess.Popen([llmd, "--config", config, "--runtime-dir", os.path.join(d, "run"),
                                 "--state-dir", os.path.join(d, "state")],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while not os.path.exists(sock):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.flush()
                    raise Fail("llmd did not start:\n" + open(log.name).read())
                time.sleep(0.02)
            env = {"LLMD_SOCKET": sock, "LLMD_CONFIG": other}
            expect([LLMCTL, "switch", ""], ["qwen", "gemma"], env)
            expect([LLMCTL, "logs", ""], ["qwen", "gemma", "nomic"], env)
            # --socket on the command line wins over $LLMD_SOCKET.
            expect([LLMCTL, "--socket", sock, "logs", ""], ["qwen", "gemma", "nomic"],
                   {"LLMD_SOCKET": os.path.join(d, "missing.sock"), "LLMD_CONFIG": other})
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


if __name__ == "__main__":
    run()
