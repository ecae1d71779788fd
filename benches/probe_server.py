"""The server a probe script talks to: reactor-httpd with the demo routes on 127.0.0.1, serving
a directory of the script's own, in the mode the script was given.

    port = probe_server.start(mode, {"index.html": "<h1>hi</h1>", "empty/": None}, flags)

BIN=path runs another binary (the default is target/release/reactor-httpd). The server is
stopped and its directory removed when the script exits, also when a probe fails with an
exception, so nothing is left behind.
"""

import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile


def start(mode, files, flags, prefix="probe-"):
    """Serves a new directory holding `files` (relative path: text, or None for an empty
    directory) in `mode`, with `flags` after the usual ones; one event loop in reactor and uring
    mode unless `flags` say how many. Returns the port it listens on."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binary = os.environ.get("BIN", os.path.join(repo, "target/release/reactor-httpd"))
    root = tempfile.mkdtemp(prefix=prefix)
    for name, text in files.items():
        path = os.path.join(root, name)
        os.makedirs(path if text is None else os.path.dirname(path), exist_ok=True)
        if text is not None:
            with open(path, "w") as f:
                f.write(text)
    args = [binary, "--bind", "127.0.0.1:0", "--mode", mode, "--demo", "--quiet", root] + flags
    if mode in ("reactor", "uring") and "--cores" not in flags:
        args += ["--cores", "1"]
    server = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    @atexit.register
    def clean_up():
        server.terminate()
        server.wait()
        shutil.rmtree(root, ignore_errors=True)

    # The listening line, after any notes before it (a self-signed certificate's fingerprint).
    said = []
    while line := server.stdout.readline():
        said.append(line.strip())
        if listening := re.search(r"listening on \S*:(\d+) ", line):
            return int(listening.group(1))
    sys.exit(f"the server did not start: {' / '.join(said)}")
