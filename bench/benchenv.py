# SPDX-License-Identifier: MIT
"""What every benchmark starts with: the build directory (argv[1], default build/), the binaries
in it for the test harness, and the harness itself on the import path."""

import os
import socket
import sys

here = os.path.dirname(os.path.abspath(__file__))
build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "build"))
os.environ.setdefault("LLMD", os.path.join(build, "daemon", "llmd"))
os.environ.setdefault("LLMCTL", os.path.join(build, "ctl", "llmctl"))
os.environ.setdefault("LLAMA_SIM", os.path.join(build, "tests", "sim", "llama-sim"))
sys.path.insert(0, os.path.join(here, "..", "tests", "integration"))


def arg(i, default):
    """The i-th command-line argument as an int, or default."""
    return int(sys.argv[i]) if len(sys.argv) > i else default


def connect(target):
    """A connection to target: a TCP port on 127.0.0.1 (llmd, nginx) or a unix socket path (a
    child, direct)."""
    if isinstance(target, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(target)
        return s
    s = socket.create_connection(("127.0.0.1", target))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s
