# SPDX-License-Identifier: MIT
"""Helpers of the quality suite's checks (llmctl bench --suite quality).

A check runs inside bwrap: its work folder is /work (holding answer.md, the model's answer with
the thinking taken out), its task folder /task, read-only. It prints one JSON line: the score
(0..100) and the items, each with its points and max, so the report can say what was missed.

Model-written programs are run with argument lists, never a command line split on blanks:
run(["python3", "todo.py", "add", "Buy milk"]) gives the program "Buy milk" as one argument.
"""

import json
import os
import re
import subprocess
import sys

WORK = "/work"
TASK = os.environ.get("TASK_DIR", "/task")

FENCE = re.compile(r"^(`{3,}|~{3,})[ \t]*([^\n`]*)\n(.*?)^\1[ \t]*$", re.S | re.M)


def answer():
    with open(os.path.join(WORK, "answer.md"), encoding="utf-8", errors="replace") as f:
        return f.read()


def code_blocks(text):
    """The fenced blocks of text as (info string, code), in order. A last block the token limit
    cut off (no closing fence) counts too."""
    blocks = [(m.group(2).strip().lower(), m.group(3)) for m in FENCE.finditer(text)]
    rest = text[max((m.end() for m in FENCE.finditer(text)), default=0):]
    m = re.search(r"^(`{3,}|~{3,})[ \t]*([^\n`]*)\n(.*)\Z", rest, re.S | re.M)
    if m:
        blocks.append((m.group(2).strip().lower(), m.group(3)))
    return blocks


def code(text, langs):
    """The longest block in one of langs (info strings such as "python" or "py"), else the
    longest block without one, else None."""
    def lang(info):
        return info.split()[0] if info else ""
    for want in (lambda i: lang(i) in langs, lambda i: lang(i) == ""):
        found = [c for i, c in code_blocks(text) if want(i)]
        if found:
            return max(found, key=len)
    return None


def write(name, content):
    path = os.path.join(WORK, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(content)
    return path


class Result:
    def __init__(self, rc=None, out="", err="", timed_out=False):
        self.rc, self.out, self.err, self.timed_out = rc, out, err, timed_out

    @property
    def ok(self):
        return self.rc == 0


def run(argv, timeout=10, env=None, stdin=None, cwd=WORK):
    """Runs argv (a list: each element one argument) in the work folder."""
    assert isinstance(argv, list), "arguments are a list, never a string split on blanks"
    e = dict(os.environ)
    e.update(env or {})
    try:
        p = subprocess.run(argv, cwd=cwd, env=e, input=stdin, capture_output=True, text=True,
                           timeout=timeout, errors="replace")
        return Result(p.returncode, p.stdout, p.stderr)
    except subprocess.TimeoutExpired as x:
        return Result(None, x.stdout or "", x.stderr or "", timed_out=True)
    except OSError as x:
        return Result(None, "", str(x))


def python_parses(source):
    try:
        compile(source, "answer.py", "exec")
        return True
    except (SyntaxError, ValueError):
        return False


def item(name, ok, points=1, group=None):
    d = {"name": name, "points": points if ok else 0, "max": points}
    if group:
        d["group"] = group
    return d


def _fraction(items, group=None):
    sel = [i for i in items if group is None or i.get("group") == group]
    top = sum(i["max"] for i in sel)
    return sum(i["points"] for i in sel) / top if top else 0.0


def code_score(items, parses):
    """A coding task: features/max × 60 + functional/max × 40, × 2/3 when the code does not
    parse. Without feature items, functional ones make the whole score (and the other way)."""
    has_f = any(i.get("group") == "feature" for i in items)
    has_t = any(i.get("group") == "functional" for i in items)
    if has_f and has_t:
        s = _fraction(items, "feature") * 60 + _fraction(items, "functional") * 40
    else:
        s = _fraction(items) * 100
    return s if parses else s * 2 / 3


def rubric_score(items):
    return _fraction(items) * 100


def emit(items, score, **extra):
    out = {"score": round(score, 3), "items": items}
    out.update(extra)
    print(json.dumps(out))
    sys.stdout.flush()


def no_answer(why):
    emit([{"name": why, "points": 0, "max": 1}], 0, note=why)
    sys.exit(0)


def found(text, pattern):
    return re.search(pattern, text, re.I | re.S | re.M) is not None


def rubric_check():
    """Scores the answer by the task's rubric.json: a list of items
    {"name": ..., "points": N, "all": [patterns]}, each worth its points when every one of its
    patterns (case-insensitive regular expressions) is found in the answer."""
    with open(os.path.join(TASK, "rubric.json"), encoding="utf-8") as f:
        rubric = json.load(f)
    text = answer()
    if not text.strip():
        no_answer("no answer")
    items = [item(r["name"], all(found(text, p) for p in r["all"]), r["points"]) for r in rubric]
    emit(items, rubric_score(items))
