#!/usr/bin/env python3
"""Requests that arrive as a server stops, counted over many stops.

Each run starts reactor-httpd on its own (two loops by default), opens 8 keep-alive connections
that stay idle and 8 that send the first 10 bytes of a request, sends SIGTERM, waits until an
idle connection is closed (a loop has begun its drain), and sends the rest of each request.
Every one of those 8 requests was begun before the stop: each must be answered, and with
`Connection: close`, since the connection ends after it. Counts the answers that are missing
or say keep-alive (a client sending its next request at once would lose it).

    benches/stop-race.py MODE [RUNS=20] [CORES=2] [PAUSE=0] [--tls]

PAUSE: seconds between the idle close and the rest. BIN=path runs another binary. The fault
stop 56 and 57 fixed showed mostly with both cores kept busy meanwhile, for instance by two
`sh -c 'while :; do :; done'`. Every socket has a 5 s timeout; each run ends by itself.
"""
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import tempfile

args = [a for a in sys.argv[1:] if a != "--tls"]
tls = "--tls" in sys.argv
mode = args[0]
runs = int(args[1]) if len(args) > 1 else 20
cores = args[2] if len(args) > 2 else "2"
pause = float(args[3]) if len(args) > 3 else 0.0
here = os.path.dirname(os.path.abspath(__file__))
binary = os.environ.get("BIN", os.path.join(here, "..", "target", "release", "reactor-httpd"))
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
request = b"GET /hello?begun HTTP/1.1\r\nHost: t\r\n\r\n"

missing = keep_alive = 0
with tempfile.TemporaryDirectory() as root:
    for run in range(runs):
        command = [binary, "--bind", "127.0.0.1:0", "--mode", mode, "--demo", "--quiet",
                   "--cores", cores, "--no-pin"] + (["--tls-self-signed"] if tls else []) + [root]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  text=True)
        port = int(re.search(r":(\d+) ", server.stdout.readline()).group(1))

        def connect():
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = context.wrap_socket(raw) if tls else raw
            conn.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
            got = b""
            while b"World!" not in got:
                got += conn.recv(4096)
            return conn

        idle = [connect() for _ in range(8)]
        begun = [connect() for _ in range(8)]
        for conn in begun:
            conn.sendall(request[:10])
        server.send_signal(signal.SIGTERM)
        select.select(idle, [], [], 5)
        if pause:
            select.select([], [], [], pause)
        for conn in begun:
            try:
                conn.sendall(request[10:])
            except OSError:
                pass
        for conn in begun:
            got = b""
            try:
                while b"World!" not in got:
                    more = conn.recv(4096)
                    if not more:
                        break
                    got += more
            except OSError:
                pass
            if b"World!" not in got:
                missing += 1
                print(f"run {run}: no answer ({got[:40]!r})")
            elif b"onnection: close" not in got:
                keep_alive += 1
                print(f"run {run}: answered with keep-alive")
        for conn in idle + begun:
            conn.close()
        server.wait(10)
print(f"{mode}: {runs * 8} requests begun at a stop: {missing} unanswered, "
      f"{keep_alive} answered with keep-alive")
