# SPDX-License-Identifier: MIT
"""The man pages against the code: every configuration key daemon/config.c knows has an entry in
llama-generate.conf(5), with the default its table gives, and every option and exit code of
daemon/llmd.c one in llmd(8); neither page has an entry for something the code no longer has; the
page's full example is etc/llama-generate.conf; both pages render without a warning.

What config.c knows comes from its tables, as doc-tables (tests/docs/doc-tables.c, linked with
llmd's own library) prints their rows: the [llmd] keys, the model keys and llama-server's short
names. Keys config.c compares by name outside those tables (version, embeddings) are found in its
source, a net for a key handled without a row.

What counts as documented: an entry, not a mention. An entry is a definition-list term, a line
of the .scd source that starts in column 0 with bold names and is followed by a tab-indented
line ("*listen* = _ADDRESS_...", "*embeddings*, *embedding*", "*-c*, *--config* _FILE_"), or
the first cell of a table row ("|  *host*"). A key named only in passing ("*pin*" in a
sentence) does not count. Each kind of key has its section: the [llmd] keys under [LLMD] KEYS,
the model keys of kind own and profile under MODEL KEYS, the refused ones under REFUSED KEYS;
the keys found by name anywhere. llama-server's short names, refused as a group, are written
"*ngl* (n-gpu-layers)".

Env: SOURCE_ROOT (the source tree; default: two levels up), DOC_TABLES (the built doc-tables;
the cases that need it are skipped without), MAN_BUILD (the build directory of man/, with the
troff pages; the render cases are skipped without them)."""

import functools
import os
import re
import shutil
import subprocess
import sys

SOURCE_ROOT = os.environ.get("SOURCE_ROOT") or os.path.normpath(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "integration"))
from llmdtest import Failure, Skip, check, run  # noqa: E402

MAN_BUILD = os.environ.get("MAN_BUILD")
DOC_TABLES = os.environ.get("DOC_TABLES")
# Fewer names than this means the extraction no longer matches the code, not that the code
# shrank: fail rather than pass on an empty list.
MIN_COMPARED_KEYS = 3
MIN_OPTIONS = 5


def read(*path):
    with open(os.path.join(SOURCE_ROOT, *path), encoding="utf-8") as f:
        return f.read()


def c_block(text, start, what):
    """The brace block that follows the first match of start: a table or a function body.
    Braces are counted with string literals blanked out, so a brace in a message cannot end
    the block early."""
    m = re.search(start, text, re.M)
    if not m:
        raise Failure(f"cannot find {what} (/{start}/): the extraction needs updating")
    blank = re.sub(r"'(?:\\.|[^'\\])*'|\"(?:\\.|[^\"\\])*\"",
                   lambda s: s.group(0)[0] + " " * (len(s.group(0)) - 2) + s.group(0)[0], text)
    i = blank.find("{", m.end() - 1)
    depth = 0
    for j in range(i, len(blank)):
        if blank[j] == "{":
            depth += 1
        elif blank[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j + 1]
    raise Failure(f"{what}: no closing brace")


def strip_comments(c):
    return re.sub(r"/\*.*?\*/", " ", c, flags=re.S)


# ---- what the code knows ----

@functools.lru_cache(maxsize=None)
def doc_tables():
    if not DOC_TABLES or not os.access(DOC_TABLES, os.X_OK):
        raise Skip(f"no doc-tables to run (DOC_TABLES={DOC_TABLES!r})")
    p = subprocess.run([DOC_TABLES], capture_output=True, text=True, timeout=30)
    check(p.returncode == 0, f"{DOC_TABLES}: exit {p.returncode}: {p.stderr}")
    return [line.split("\t") for line in p.stdout.splitlines()]


def code_table(name):
    """The rows of one table doc-tables prints, each a list of its fields ("" for NULL)."""
    rows = [r[1:] for r in doc_tables() if r[0] == name]
    check(rows, f"{DOC_TABLES} printed no {name} rows")
    return rows


# Where each kind of key has its entry in llama-generate.conf(5).
KIND_SECTION = {"own": "MODEL KEYS", "profile": "MODEL KEYS", "refused": "REFUSED KEYS",
                "[llmd]": "[LLMD] KEYS"}


def config_keys():
    """{name: {kind}}: the [llmd] keys (kind "[llmd]"), the model keys (kind own, profile or
    refused) and every other key compared by name in config.c (kind "")."""
    keys = {}
    for key, _default, _doc in code_table("llmd-key"):
        keys.setdefault(key, set()).add("[llmd]")
    for key, kind in code_table("model-key"):
        keys.setdefault(key, set()).add(kind)
    # streq(e->key, "aliases"), streq(llmd->entries[j].key, "default"), ...
    c = strip_comments(read("daemon", "config.c"))
    compared = set(re.findall(r'streq\(\s*[\w>.\[\]-]*key\s*,\s*"([^"]+)"\s*\)', c))
    check(len(compared) >= MIN_COMPARED_KEYS,
          f"only {len(compared)} keys found compared by name in daemon/config.c (expected at "
          f"least {MIN_COMPARED_KEYS}): the extraction needs updating")
    for name in compared:
        keys.setdefault(name, {""})
    return keys


def llmd_options():
    """The long options of llmd's struct option table, and the short ones of its optstring."""
    c = strip_comments(read("daemon", "llmd.c"))
    table = c_block(c, r"struct option options\[\]\s*=\s*\{", "struct option in daemon/llmd.c")
    longs = re.findall(r'\{\s*"([^"]+)"\s*,\s*(?:no|required|optional)_argument', table)
    check(len(longs) >= MIN_OPTIONS,
          f"only {len(longs)} long options read from daemon/llmd.c (expected at least "
          f"{MIN_OPTIONS}): the extraction needs updating")
    m = re.search(r'getopt_long\(\s*argc\s*,\s*argv\s*,\s*"([^"]*)"', c)
    check(m, "cannot find getopt_long's optstring in daemon/llmd.c")
    shorts = [ch for ch in m.group(1) if ch.isalnum()]
    return longs, shorts


# ---- what the pages say ----

def scd_lines(page):
    """The page's source lines outside literal blocks and comments, by section:
    [(section, line)]."""
    out, section, literal = [], "", False
    for line in read("man", page).split("\n"):
        if line.lstrip("\t").startswith("```"):
            literal = not literal
            continue
        if literal or line.startswith("; ") or line == ";":
            continue
        if line.startswith("# "):
            section = line[2:].strip()
        out.append((section, line))
    return out


def unescape(s):
    return re.sub(r"\\(.)", r"\1", s)


LEAD = re.compile(r"^\*[^*]+\*(?:, \*[^*]+\*)*")
ROW = re.compile(r"^\|\s+(\*[^*]+\*)\s*$")


def entries(page):
    """{name: {section}} of the page's entries: the bold names that start a definition-list term
    (a line in column 0 followed by a tab-indented line) and the first cells of table rows."""
    found = {}
    lines = scd_lines(page)
    for i, (section, line) in enumerate(lines):
        m = ROW.match(line)
        if not m and i + 1 < len(lines) and lines[i + 1][1].startswith("\t"):
            m = LEAD.match(line)
        if not m:
            continue
        for name in re.findall(r"\*([^*]+)\*", m.group(0)):
            found.setdefault(unescape(name), set()).add(section)
    return found


def literal_blocks(page, after_section):
    blocks, section, cur = [], "", None
    for line in read("man", page).split("\n"):
        if cur is None and line.startswith("# "):
            section = line[2:].strip()
        if line.lstrip("\t").startswith("```"):
            if cur is None:
                cur = []
            else:
                if section == after_section:
                    blocks.append("\n".join(cur) + "\n")
                cur = None
            continue
        if cur is not None:
            cur.append(line)
    return blocks


# ---- the cases ----

CONF_PAGE = "llama-generate.conf.5.scd"
LLMD_PAGE = "llmd.8.scd"
# Sections of llama-generate.conf(5) whose entries are all keys config.c must know.
KEY_SECTIONS = ("[LLMD] KEYS", "MODEL KEYS", "REFUSED KEYS")


def test_conf_keys_documented():
    keys = config_keys()
    documented = entries(CONF_PAGE)
    missing = []
    for key, kinds in sorted(keys.items()):
        for kind in sorted(kinds):
            section = KIND_SECTION.get(kind)
            if key not in documented or (section and section not in documented[key]):
                missing.append(f"{key} (a {kind or 'key'}, no entry "
                               f"{'under ' + section if section else 'anywhere'})")
    check(not missing, f"{len(missing)} key(s) of daemon/config.c not documented in "
          f"man/{CONF_PAGE} (an entry is a line starting with *KEY*): {'; '.join(missing)}")
    stale = sorted(k for k, sections in documented.items()
                   if sections & set(KEY_SECTIONS) and k not in keys)
    check(not stale, f"man/{CONF_PAGE} has entries for keys daemon/config.c does not know: "
          f"{', '.join(stale)}")


def test_conf_llmd_defaults_documented():
    """Each [llmd] key's "Default:" is its table's default, blanks aside ("300 s" is 300s); a
    key without one in the table (NULL) says in words what unset means."""
    defaults, name = {}, None
    for section, line in scd_lines(CONF_PAGE):
        if section != "[LLMD] KEYS":
            continue
        if LEAD.match(line):
            name = unescape(re.match(r"\*([^*]+)\*", line).group(1))
        elif name and line.startswith("\tDefault: "):
            defaults.setdefault(name, line[len("\tDefault: "):].strip())
    wrong = []
    for key, default, _doc in code_table("llmd-key"):
        page = defaults.get(key)
        if not page:
            wrong.append(f"{key}: no 'Default:' line")
        elif default and re.sub(r"\s+", "", page.rstrip(".")) != default:
            wrong.append(f"{key}: the page says {page!r}, the table {default!r}")
    check(not wrong, f"[LLMD] KEYS of man/{CONF_PAGE} against config_llmd_keys[] in "
          f"daemon/config.c: {'; '.join(wrong)}")


def test_conf_short_keys_documented():
    text = "\n".join(line for _, line in scd_lines(CONF_PAGE))
    text = re.sub(r"\s+", " ", text)
    missing = [f"{s} ({l})" for s, l in code_table("short-flag") if f"*{s}* ({l})" not in text]
    check(not missing, f"short names of daemon/config.c's config_short_flags[] not written as "
          f"'*SHORT* (long)' in man/{CONF_PAGE}: {', '.join(missing)}")


def test_conf_example_current():
    blocks = literal_blocks(CONF_PAGE, "FULL EXAMPLE")
    etc = read("etc", "llama-generate.conf")
    check(blocks, f"man/{CONF_PAGE} has no literal block under FULL EXAMPLE")
    page = unescape(blocks[0])
    if page != etc:
        a, b = page.split("\n"), etc.split("\n")
        n = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
        raise Failure(f"FULL EXAMPLE of man/{CONF_PAGE} differs from etc/llama-generate.conf "
                      f"at its line {n + 1}: page {a[n] if n < len(a) else '(end)'!r}, "
                      f"file {b[n] if n < len(b) else '(end)'!r}")


def test_llmd_options_documented():
    longs, shorts = llmd_options()
    documented = entries(LLMD_PAGE)
    options = {name for name, sections in documented.items() if "OPTIONS" in sections}
    missing = [f"--{o}" for o in longs if f"--{o}" not in options]
    missing += [f"-{s}" for s in shorts if f"-{s}" not in options]
    check(not missing, f"options of daemon/llmd.c with no entry under OPTIONS in "
          f"man/{LLMD_PAGE}: {', '.join(missing)}")
    known = {f"--{o}" for o in longs} | {f"-{s}" for s in shorts}
    stale = sorted(o for o in options if o not in known)
    check(not stale, f"man/{LLMD_PAGE} documents options daemon/llmd.c does not have: "
          f"{', '.join(stale)}")


def test_llmd_exit_codes_documented():
    c = strip_comments(read("daemon", "llmd.c"))
    codes = set(re.findall(r"^#define EXIT_\w+ (\d+)", c, re.M))
    # The help text: its adjacent string literals joined.
    help_text = "".join(re.findall(r'"((?:\\.|[^"\\])*)"',
                                   c_block(c, r"^static void help\(", "help() in daemon/llmd.c")))
    m = re.search(r"Exit status:(.*?)\.\\n", help_text, re.S)
    check(m, "cannot find 'Exit status:' in llmd --help (daemon/llmd.c)")
    codes |= set(re.findall(r"(?:^|;)\s*(\d+)\s", m.group(1).replace("\\n", " ")))
    check(len(codes) >= 4, f"only {sorted(codes)} read as exit codes of daemon/llmd.c")
    documented = {name for name, sections in entries(LLMD_PAGE).items()
                  if "EXIT STATUS" in sections}
    missing = sorted(codes - documented, key=int)
    check(not missing, f"exit codes of daemon/llmd.c with no entry under EXIT STATUS in "
          f"man/{LLMD_PAGE}: {', '.join(missing)}")
    stale = sorted(documented - codes, key=int)
    check(not stale, f"man/{LLMD_PAGE} documents exit codes llmd --help does not: "
          f"{', '.join(stale)}")


def render(page):
    if not MAN_BUILD:
        raise Skip("MAN_BUILD is not set")
    path = os.path.join(MAN_BUILD, page)
    if not os.path.exists(path):
        raise Skip(f"{path} was not built (no scdoc)")
    if not shutil.which("man"):
        raise Skip("man is not installed")
    env = dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat")
    p = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", path], capture_output=True,
                       text=True, env=env, timeout=60)
    warnings = [line for line in p.stderr.split("\n") if line.strip()]
    check(p.returncode == 0, f"man -l {path}: exit {p.returncode}: {p.stderr}")
    check(not warnings, f"man -l {path} warns:\n" + "\n".join(warnings))
    check(p.stdout.strip(), f"man -l {path}: empty output")


def test_render_llmd_8():
    render("llmd.8")


def test_render_llama_generate_conf_5():
    render("llama-generate.conf.5")


if __name__ == "__main__":
    run()
