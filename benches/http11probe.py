#!/usr/bin/env python3
"""Http11Probe's cases, over raw sockets, in one mode.

Http11Probe (github.com/MDA2AV/Http11Probe) is a third-party list of probes of HTTP/1.1 servers:
compliance with RFC 9110-9112, request smuggling, malformed input, header-name normalization.
Each sends raw bytes on a fresh connection and judges the first response and whether the
server closed the connection: it reads until the end of a response head (5 s at most), waits
100 ms and takes what else has arrived, then 50 ms more and looks for the server's FIN. The
cases and their verdicts (PASS, WARN, FAIL; some unscored) are re-created here from its list,
as its checks judge them. Its probes POST to `/`, where its reference servers echo; here they
POST to `/echo` (the contract's echo route; `/` is a directory, and POST there is 405).

    benches/http11probe.py MODE [SERVER FLAGS...]     e.g. reactor, or uring --cores 2

BIN=path runs another binary; POST_PATH=/ posts where the probe does; TLS=1 sends every probe
over TLS (`--tls-self-signed`). Prints every verdict but PASS, and exits 1 on a scored FAIL
other than the one choice docs/conformance.md states: a 100,000-byte method is 501 (RFC 9112
3), where the probe's check wants 400.
"""

import concurrent.futures
import os
import random
import re
import select
import socket
import ssl
import sys
import time

import probe_server

mode = sys.argv[1]
PP = os.environ.get("POST_PATH", "/echo")
HOST = "127.0.0.1"
# TLS=1: every probe over TLS (the server's self-signed certificate, not checked).
TLS = None
flags = sys.argv[2:]
if os.environ.get("TLS"):
    TLS = ssl.create_default_context()
    TLS.check_hostname = False
    TLS.verify_mode = ssl.CERT_NONE
    flags = flags + ["--tls-self-signed"]
PORT = probe_server.start(mode, {"index.html": "<h1>hi</h1>\n"}, flags, "http11probe-")
HH = f"localhost:{PORT}"
READ_TIMEOUT = 5.0


class Response:
    """The first response in what was read: status, fields (lowercase names), the rest."""

    def __init__(self, raw):
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = re.match(rb"HTTP/\d\.\d (\d{3})", lines[0])
        self.status = int(status.group(1)) if status else None
        self.headers = {}
        for line in lines[1:]:
            if b":" in line:
                name, value = line.split(b":", 1)
                self.headers[name.decode("latin1").strip().lower()] = value.decode("latin1").strip()


def parse(raw):
    response = Response(raw) if b"\r\n\r\n" in raw else None
    return response if response and response.status else None


def read_response(s):
    """As the probe reads: to the end of a response head, then 100 ms more of what comes.
    Returns the bytes and "open", "closed" (the server closed first) or "timeout"."""
    got = b""
    deadline = time.time() + READ_TIMEOUT
    try:
        while b"\r\n\r\n" not in got:
            left = deadline - time.time()
            if left <= 0:
                return got, "timeout"
            s.settimeout(left)
            try:
                chunk = s.recv(131072)
            except socket.timeout:
                return got, "timeout"
            if not chunk:
                return got, "closed"
            got += chunk
        time.sleep(0.1)
        while readable(s):
            chunk = s.recv(131072)
            if not chunk:
                break
            got += chunk
        return got, "open"
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
        return got, "closed"


def readable(s):
    """Whether a read would not block: bytes (or the end) in the socket, or, over TLS, already
    decrypted."""
    return (TLS is not None and s.pending() > 0) or bool(select.select([s], [], [], 0)[0])


def closed_by_server(s):
    """Whether the server's FIN has arrived (a read would return nothing)."""
    try:
        if not readable(s):
            return False
        if TLS is None:
            return not s.recv(1, socket.MSG_PEEK)
        # TLS has no peek: a record that is no close_notify is read and dropped (nothing is
        # read after this).
        s.setblocking(False)
        return not s.recv(1)
    except ssl.SSLWantReadError:
        return False
    except OSError:
        return True


def connect():
    s = socket.create_connection((HOST, PORT))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s if TLS is None else TLS.wrap_socket(s, server_hostname="localhost")


def exchange(s, payload):
    """Sends one payload and judges as the probe does: (response, state, bytes read)."""
    try:
        s.sendall(payload)
    except OSError:
        pass
    raw, state = read_response(s)
    if state == "open":
        time.sleep(0.05)
        state = "closed" if closed_by_server(s) else "open"
    return parse(raw), state, raw


def run_single(payload):
    with connect() as s:
        return exchange(s, payload)


def run_seq(payloads):
    """Each payload on the same connection while it stays open; None for a step not run."""
    steps, state = [], "open"
    with connect() as s:
        for payload in payloads:
            if state != "open":
                steps.append(None)
                continue
            steps.append(exchange(s, payload))
            state = steps[-1][1]
    return steps


def B(text):
    return text.encode("latin1") if isinstance(text, str) else text


# Verdicts, as the probe's checks give them: each takes (response or None, state).
P, F, W = "PASS", "FAIL", "WARN"


def judged(statuses=None, ok=F, other=F, closed=P, timeout=F):
    """The probe's usual check. With a response: the verdict `statuses` gives its status, or
    else `ok` for a 2xx and `other` for the rest. Without one: `closed` when the server closed
    the connection, `timeout` when nothing came in time, FAIL otherwise."""
    statuses = statuses or {}

    def verdict(r, st):
        if r is None:
            return {"closed": closed, "timeout": timeout}.get(st, F)
        if r.status in statuses:
            return statuses[r.status]
        return ok if 200 <= r.status < 300 else other

    return verdict


def exact(code, allow_close=False):
    return judged({code: P}, closed=P if allow_close else F)


def r2xx(allow_close=False):
    return judged(ok=P, closed=P if allow_close else F)


def ok_or(pass_codes, warn_2xx=True):
    """These statuses or a close pass; a 2xx warns (when the RFC allows it)."""
    return judged({code: P for code in pass_codes}, ok=W if warn_2xx else F)


def any_close_timeout_400(r, st):
    if st in ("timeout", "closed"):
        return P
    return P if r is not None and r.status == 400 else F


def echo(expect):
    def verdict(r, st):
        if r is None or not 200 <= r.status < 300:
            return F
        return P if r.body.rstrip(b"\r\n") in (B(expect), b"OK") else F

    return verdict


def G(extra=""):
    return B(f"GET / HTTP/1.1\r\nHost: {HH}\r\n{extra}\r\n")


def post(fields, body=""):
    return B(f"POST {PP} HTTP/1.1\r\nHost: {HH}\r\n{fields}\r\n{body}")


# (id, payload, verdict, scored): one connection each.
T = []


def t(id, payload, verdict, scored=True):
    T.append((id, payload, verdict, scored))


# ---- Compliance
t("COMP-BASELINE", G(), r2xx())
t("RFC9112-2.2-BARE-LF-REQUEST-LINE", B(f"GET / HTTP/1.1\nHost: {HH}\r\n\r\n"), ok_or([400]))
t(
    "RFC9112-2.2-BARE-LF-HEADER",
    B(f"GET / HTTP/1.1\r\nHost: {HH}\nX-Test: value\r\n\r\n"),
    ok_or([400]),
)
t("RFC9112-5.1-OBS-FOLD", G("X-Test: value\r\n continued\r\n"), exact(400))
t("RFC9110-5.6.2-SP-BEFORE-COLON", G("X-Test : value\r\n"), exact(400))
t("RFC9112-3-MULTI-SP-REQUEST-LINE", B(f"GET  / HTTP/1.1\r\nHost: {HH}\r\n\r\n"), ok_or([400]))
t("RFC9112-7.1-MISSING-HOST", B("GET / HTTP/1.1\r\n\r\n"), exact(400))
t(
    "RFC9112-2.3-INVALID-VERSION",
    B(f"GET / HTTP/9.9\r\nHost: {HH}\r\n\r\n"),
    ok_or([400, 505], warn_2xx=False),
)
t("RFC9112-5-EMPTY-HEADER-NAME", G(": empty-name\r\n"), exact(400, True))
t("RFC9112-3-CR-ONLY-LINE-ENDING", B(f"GET / HTTP/1.1\rHost: {HH}\r\n\r\n"), exact(400))
t("RFC9112-3-MISSING-TARGET", B(f"GET HTTP/1.1\r\nHost: {HH}\r\n\r\n"), exact(400, True))
t(
    "RFC9112-3.2-FRAGMENT-IN-TARGET",
    B(f"GET /path#frag HTTP/1.1\r\nHost: {HH}\r\n\r\n"),
    ok_or([400]),
)


t("RFC9112-2.3-HTTP09-REQUEST", B("GET /\r\n"), judged({400: P}, timeout=P))
t("RFC9112-5-INVALID-HEADER-NAME", G("Bad[Name: value\r\n"), exact(400, True))
t("RFC9112-5-HEADER-NO-COLON", G("NoColonHere\r\n"), exact(400, True))
t("RFC9110-5.4-DUPLICATE-HOST", G("Host: other.example.com\r\n"), exact(400))
t("RFC9112-6.1-CL-NON-NUMERIC", post("Content-Length: abc\r\n"), exact(400, True))
t("RFC9112-6.1-CL-PLUS-SIGN", post("Content-Length: +5\r\n", "hello"), exact(400, True))
t(
    "COMP-WHITESPACE-BEFORE-HEADERS",
    B(f"GET / HTTP/1.1\r\n \r\nHost: {HH}\r\n\r\n"),
    exact(400, True),
)
t("COMP-DUPLICATE-HOST-SAME", G(f"Host: {HH}\r\n"), exact(400))
t("COMP-HOST-WITH-USERINFO", B(f"GET / HTTP/1.1\r\nHost: user@{HH}\r\n\r\n"), exact(400, True))
t("COMP-HOST-WITH-PATH", B(f"GET / HTTP/1.1\r\nHost: {HH}/path\r\n\r\n"), exact(400, True))
t("COMP-ASTERISK-WITH-GET", B(f"GET * HTTP/1.1\r\nHost: {HH}\r\n\r\n"), exact(400, True))
t("COMP-OPTIONS-STAR", B(f"OPTIONS * HTTP/1.1\r\nHost: {HH}\r\n\r\n"), r2xx())
t("COMP-UNKNOWN-TE-501", post("Transfer-Encoding: gzip\r\n"), ok_or([400, 501], warn_2xx=False))
t("COMP-LEADING-CRLF", B(f"\r\n\r\nGET / HTTP/1.1\r\nHost: {HH}\r\n\r\n"), ok_or([400]))


t(
    "COMP-ABSOLUTE-FORM",
    B(f"GET http://{HH}/ HTTP/1.1\r\nHost: {HH}\r\n\r\n"),
    judged({400: W}, ok=P, closed=W),
    False,
)
t("COMP-METHOD-CASE", B(f"get / HTTP/1.1\r\nHost: {HH}\r\n\r\n"), ok_or([400, 405, 501]))
t("COMP-POST-CL-BODY", post("Content-Length: 5\r\n", "hello"), echo("hello"))
t("COMP-POST-CL-ZERO", post("Content-Length: 0\r\n"), r2xx(True))
t("COMP-POST-NO-CL-NO-TE", post(""), r2xx(True))
t("COMP-POST-CL-UNDERSEND", post("Content-Length: 10\r\n", "hello"), judged({400: P}, timeout=P))
t(
    "COMP-CHUNKED-BODY",
    post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
    echo("hello"),
)
t(
    "COMP-CHUNKED-MULTI",
    post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
    echo("hello world"),
)
t("COMP-CHUNKED-EMPTY", post("Transfer-Encoding: chunked\r\n", "0\r\n\r\n"), r2xx(True))
t(
    "COMP-CHUNKED-NO-FINAL",
    post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n"),
    judged({400: P}, timeout=P),
)
WS = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
t(
    "COMP-UPGRADE-POST",
    post("Connection: Upgrade\r\nUpgrade: websocket\r\n" + WS),
    judged({101: F}, ok=P, other=P),
)
t("COMP-UPGRADE-MISSING-CONN", G("Upgrade: websocket\r\n" + WS), judged({101: F}, ok=P, other=P))
t(
    "COMP-UPGRADE-UNKNOWN",
    G("Connection: Upgrade\r\nUpgrade: totally-made-up/1.0\r\n"),
    judged({101: F}, ok=P, other=P),
)
t(
    "COMP-METHOD-CONNECT",
    B("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
    ok_or([400, 405, 501], warn_2xx=False),
)
t("COMP-EXPECT-UNKNOWN", G("Expect: 200-ok\r\n"), ok_or([417]))


t(
    "COMP-GET-WITH-CL-BODY",
    G("Content-Length: 5\r\n") + b"hello",
    judged({400: P}, ok=W, other=W),
    False,
)


def chunkext(r, st):
    if r is None:
        return W if st == "closed" else F
    if r.status == 400:
        return W
    if 200 <= r.status < 300:
        return P if r.body.rstrip(b"\r\n") in (b"hello", b"OK") else F
    return F


t(
    "COMP-CHUNKED-EXTENSION",
    post("Transfer-Encoding: chunked\r\n", "5;ext=value\r\nhello\r\n0\r\n\r\n"),
    chunkext,
)


t(
    "COMP-UPGRADE-INVALID-VER",
    G(
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 99\r\n"
    ),
    judged({101: F, 426: P}, ok=W, other=P),
)
t("COMP-METHOD-TRACE", B(f"TRACE / HTTP/1.1\r\nHost: {HH}\r\n\r\n"), ok_or([405, 501]), False)
t("COMP-HOST-EMPTY-VALUE", B("GET / HTTP/1.1\r\nHost: \r\n\r\n"), exact(400, True))
t("COMP-REQUEST-LINE-TAB", B(f"GET\t/ HTTP/1.1\r\nHost: {HH}\r\n\r\n"), ok_or([400]))
t("COMP-VERSION-MISSING-MINOR", B(f"GET / HTTP/1\r\nHost: {HH}\r\n\r\n"), exact(400, True))
t("COMP-VERSION-LEADING-ZEROS", B(f"GET / HTTP/01.01\r\nHost: {HH}\r\n\r\n"), exact(400, True))
t("COMP-VERSION-WHITESPACE", B(f"GET / HTTP/ 1.1\r\nHost: {HH}\r\n\r\n"), exact(400, True))


def served_then_closed(if_open):
    """A 2xx, and the connection closed after it (`if_open` if it stayed open)."""

    def verdict(r, st):
        if r is None or not 200 <= r.status < 300:
            return F
        return P if st == "closed" else if_open

    return verdict


t("COMP-CONNECTION-CLOSE", G("Connection: close\r\n"), served_then_closed(F))
t(
    "COMP-HTTP10-DEFAULT-CLOSE",
    B(f"GET / HTTP/1.0\r\nHost: {HH}\r\n\r\n"),
    served_then_closed(W),
)


t("COMP-HTTP10-NO-HOST", B("GET / HTTP/1.0\r\n\r\n"), ok_or([400]), False)


t("COMP-HTTP12-VERSION", B(f"GET / HTTP/1.2\r\nHost: {HH}\r\n\r\n"), judged({505: W}, ok=W), False)
t(
    "COMP-TRACE-WITH-BODY",
    B(f"TRACE / HTTP/1.1\r\nHost: {HH}\r\nContent-Length: 5\r\n\r\nhello"),
    ok_or([400, 405, 501]),
    False,
)
t(
    "COMP-CHUNKED-TRAILER-VALID",
    post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n"),
    echo("hello"),
)
t(
    "COMP-CHUNKED-HEX-UPPERCASE",
    post("Transfer-Encoding: chunked\r\n", "A\r\nhelloworld\r\n0\r\n\r\n"),
    echo("helloworld"),
)


t(
    "COMP-RANGE-POST",
    post("Content-Length: 5\r\nRange: bytes=0-10\r\n", "hello"),
    judged({206: F}, ok=P, closed=F),
)
t(
    "COMP-UPGRADE-HTTP10",
    B(
        f"GET / HTTP/1.0\r\nHost: {HH}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        + WS
        + "\r\n"
    ),
    judged({101: F}, ok=P, other=P),
)


def headnobody(r, st):
    if r is None:
        return F
    if 200 <= r.status < 300:
        return P if not r.body else F
    return F


t("COMP-HEAD-NO-BODY", B(f"HEAD / HTTP/1.1\r\nHost: {HH}\r\n\r\n"), headnobody)
t("COMP-UNKNOWN-METHOD", B(f"FOOBAR / HTTP/1.1\r\nHost: {HH}\r\n\r\n"), ok_or([501, 405, 400]))


def has_field(name, when, missing=F, otherwise=F):
    """A response whose status satisfies `when` must carry the field `name` (else `missing`);
    any other status is `otherwise`."""

    def verdict(r, st):
        if r is None:
            return F
        if when(r.status):
            return P if name in r.headers else missing
        return otherwise

    return verdict


def is_2xx(status):
    return 200 <= status < 300


t(
    "COMP-405-ALLOW",
    B(f"DELETE / HTTP/1.1\r\nHost: {HH}\r\n\r\n"),
    has_field("allow", lambda status: status == 405, otherwise=W),
)


t("COMP-DATE-HEADER", G(), has_field("date", is_2xx))


def nocl204(r, st):
    if r is None:
        return F
    if r.status == 204:
        return F if "content-length" in r.headers else P
    return W


t("COMP-NO-CL-IN-204", B(f"OPTIONS / HTTP/1.1\r\nHost: {HH}\r\n\r\n"), nocl204)


t(
    "COMP-OPTIONS-ALLOW",
    B(f"OPTIONS / HTTP/1.1\r\nHost: {HH}\r\n\r\n"),
    has_field("allow", is_2xx, missing=W),
)


t("COMP-CONTENT-TYPE", G(), has_field("content-type", is_2xx, missing=W))


t(
    "COMP-NO-1XX-HTTP10",
    B(f"POST / HTTP/1.0\r\nHost: {HH}\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello"),
    judged({code: F for code in range(100, 200)}, ok=P, other=P, timeout=P),
)
t("COMP-VERSION-CASE", B(f"GET / http/1.1\r\nHost: {HH}\r\n\r\n"), exact(400, True))


t(
    "COMP-LONG-URL-OK",
    B(f"GET /{'a'*7900} HTTP/1.1\r\nHost: {HH}\r\n\r\n"),
    judged({414: F}, ok=P, other=P, closed=W),
)
t("COMP-SPACE-IN-TARGET", B(f"GET /pa th HTTP/1.1\r\nHost: {HH}\r\n\r\n"), exact(400, True))
t(
    "COMP-DUPLICATE-CT",
    post("Content-Length: 5\r\nContent-Type: text/plain\r\nContent-Type: text/html\r\n", "hello"),
    ok_or([400]),
)


t(
    "COMP-RANGE-INVALID",
    G("Range: bytes=abc-xyz\r\n"),
    judged({206: W, 416: P}, ok=P, other=W, closed=W),
    False,
)


def trace_without_secrets(r, st):
    """TRACE refused, or echoed without the Authorization value."""
    if r is None:
        return P if st == "closed" else F
    if r.status in (405, 501):
        return P
    if is_2xx(r.status):
        return W if b"secret-token-123" in r.body else P
    return F


t(
    "COMP-TRACE-SENSITIVE",
    B(f"TRACE / HTTP/1.1\r\nHost: {HH}\r\nAuthorization: Bearer secret-token-123\r\n\r\n"),
    trace_without_secrets,
    False,
)
t("COMP-ACCEPT-NONSENSE", G("Accept: application/x-nonsense\r\n"), ok_or([406]), False)
IMF_FIXDATE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d\d:\d\d:\d\d GMT$"
)


def imf_fixdate(r, st):
    if r is None or not is_2xx(r.status):
        return F
    return P if IMF_FIXDATE.match(r.headers.get("date", "")) else W


t("COMP-DATE-FORMAT", G(), imf_fixdate, False)
t(
    "COMP-POST-UNSUPPORTED-CT",
    post("Content-Length: 5\r\nContent-Type: application/x-nonsense\r\n", "hello"),
    judged({415: P}, ok=P, other=W, closed=W),
    False,
)

# ---- Smuggling (single)
cb = "D\r\nhello-bananas\r\n0\r\n\r\n"
t(
    "SMUG-CL-TE-BOTH",
    post(f"Content-Length: {len(cb)}\r\nTransfer-Encoding: chunked\r\n", cb),
    ok_or([400]),
)
t(
    "SMUG-DUPLICATE-CL",
    post("Content-Length: 5\r\nContent-Length: 10\r\n", "helloworld"),
    exact(400, True),
)
t("SMUG-CL-LEADING-ZEROS", post("Content-Length: 005\r\n", "hello"), ok_or([400]))
t(
    "SMUG-TE-XCHUNKED",
    post("Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n", "hello"),
    ok_or([400, 501], warn_2xx=False),
)


def te_trailsp(r, st):
    if r is None:
        return P if st == "closed" else F
    if r.status in (400, 501):
        return P
    if 200 <= r.status < 300:
        return W if st == "closed" else F
    return F


t(
    "SMUG-TE-TRAILING-SPACE",
    post("Transfer-Encoding: chunked \r\nContent-Length: 5\r\n", "hello"),
    te_trailsp,
)
t(
    "SMUG-TE-SP-BEFORE-COLON",
    post("Transfer-Encoding : chunked\r\nContent-Length: 5\r\n", "hello"),
    exact(400, True),
)
t("SMUG-CL-NEGATIVE", post("Content-Length: -1\r\n"), exact(400, True))


def pipe(r, st):
    if r is not None and r.status == 400:
        return P
    if st == "closed":
        return P
    if r is not None and 200 <= r.status < 300:
        return W
    return F


t(
    "SMUG-CLTE-PIPELINE",
    post("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"),
    pipe,
)
t(
    "SMUG-TECL-PIPELINE",
    post("Transfer-Encoding: chunked\r\nContent-Length: 30\r\n", "0\r\n\r\n"),
    pipe,
)
t("SMUG-CL-TRAILING-SPACE", post("Content-Length: 5 \r\n", "hello"), ok_or([400]))
t(
    "SMUG-TE-DOUBLE-CHUNKED",
    post("Transfer-Encoding: chunked, chunked\r\nContent-Length: 5\r\n", "hello"),
    ok_or([400]),
)
t("SMUG-CL-EXTRA-LEADING-SP", post("Content-Length:  5\r\n", "hello"), ok_or([400]))
t(
    "SMUG-TE-CASE-MISMATCH",
    post("Transfer-Encoding: Chunked\r\nContent-Length: 5\r\n", "hello"),
    ok_or([400]),
)
t("SMUG-CL-COMMA-DIFFERENT", post("Content-Length: 5, 10\r\n", "hello"), exact(400, True))
t(
    "SMUG-TE-NOT-FINAL-CHUNKED",
    post("Transfer-Encoding: chunked, gzip\r\n", "0\r\n\r\n"),
    exact(400, True),
)
t(
    "SMUG-TE-HTTP10",
    B(
        f"POST / HTTP/1.0\r\nHost: {HH}\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhello"
    ),
    exact(400, True),
)
TEC = "Transfer-Encoding: chunked\r\n"
t("SMUG-CHUNK-BARE-SEMICOLON", post(TEC, "5;\r\nhello\r\n0\r\n\r\n"), exact(400, True))
t("SMUG-CHUNK-EXT-INVALID-TOKEN", post(TEC, "5;bad[=x\r\nhello\r\n0\r\n\r\n"), exact(400, True))
t(
    "SMUG-BARE-CR-HEADER-VALUE",
    post("Content-Length: 5\r\nX-Test: val\rue\r\n", "hello"),
    exact(400, True),
)
t("SMUG-CL-OCTAL", post("Content-Length: 0o5\r\n", "hello"), exact(400, True))
t("SMUG-CHUNK-UNDERSCORE", post(TEC, "1_0\r\nhello world!!!!!\r\n0\r\n\r\n"), exact(400, True))
t(
    "SMUG-TE-EMPTY-VALUE",
    post("Transfer-Encoding: \r\nContent-Length: 5\r\n", "hello"),
    exact(400, True),
)
t(
    "SMUG-TE-LEADING-COMMA",
    post("Transfer-Encoding: , chunked\r\nContent-Length: 5\r\n", "hello"),
    ok_or([400]),
)
t(
    "SMUG-TE-DUPLICATE-HEADERS",
    post(
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n",
        "hello",
    ),
    exact(400, True),
)
t("SMUG-CHUNK-HEX-PREFIX", post(TEC, "0x5\r\nhello\r\n0\r\n\r\n"), exact(400, True))
t("SMUG-CHUNK-SIZE-PLUS", post(TEC, "+5\r\nhello\r\n0\r\n\r\n"), exact(400, True))
t("SMUG-CHUNK-SIZE-TRAILING-OWS", post(TEC, "5 \r\nhello\r\n0\r\n\r\n"), exact(400, True))
t("SMUG-CL-HEX-PREFIX", post("Content-Length: 0x5\r\n", "hello"), exact(400, True))
t("SMUG-CL-INTERNAL-SPACE", post("Content-Length: 1 0\r\n", "hello12345"), exact(400, True))
t("SMUG-CHUNK-LEADING-SP", post(TEC, " 5\r\nhello\r\n0\r\n\r\n"), exact(400, True))
t("SMUG-CHUNK-MISSING-TRAILING-CRLF", post(TEC, "5\r\nhello0\r\n\r\n"), exact(400, True))
t("SMUG-CHUNK-EXT-LF", post(TEC, "5;\nhello\r\n0\r\n\r\n"), ok_or([400]))
t("SMUG-CHUNK-SPILL", post(TEC, "5\r\nhello!!\r\n0\r\n\r\n"), exact(400, True))
t("SMUG-CHUNK-LF-TERM", post(TEC, "5\r\nhello\n0\r\n\r\n"), ok_or([400]))
t("SMUG-CHUNK-EXT-CTRL", post(TEC, "5;\x00ext\r\nhello\r\n0\r\n\r\n"), exact(400, True))
t("SMUG-CHUNK-EXT-CR", post(TEC, "5;a\rX\r\nhello\r\n0\r\n\r\n"), exact(400, True))
t(
    "SMUG-TE-VTAB",
    post("Transfer-Encoding: \x0bchunked\r\nContent-Length: 5\r\n", "hello"),
    exact(400, True),
)
t(
    "SMUG-TE-FORMFEED",
    post("Transfer-Encoding: \x0cchunked\r\nContent-Length: 5\r\n", "hello"),
    exact(400, True),
)
t(
    "SMUG-TE-NULL",
    post("Transfer-Encoding: chunked\x00\r\nContent-Length: 5\r\n", "hello"),
    exact(400, True),
)
t("SMUG-CHUNK-LF-TRAILER", post(TEC, "5\r\nhello\r\n0\r\n\n"), ok_or([400]))
t(
    "SMUG-TE-IDENTITY",
    post("Transfer-Encoding: identity\r\nContent-Length: 5\r\n", "hello"),
    ok_or([400, 501], warn_2xx=False),
)
t("SMUG-CHUNK-NEGATIVE", post(TEC, "-1\r\nhello\r\n0\r\n\r\n"), exact(400, True))
t(
    "SMUG-TRANSFER_ENCODING",
    post("Transfer_Encoding: chunked\r\nContent-Length: 5\r\n", "hello"),
    ok_or([400]),
    False,
)
t("SMUG-CL-COMMA-SAME", post("Content-Length: 5, 5\r\n", "hello"), ok_or([400]), False)
t("SMUG-CL-COMMA-TRIPLE", post("Content-Length: 5, 5, 5\r\n", "hello"), ok_or([400]), False)
t(
    "SMUG-CHUNKED-WITH-PARAMS",
    post("Transfer-Encoding: chunked;ext=val\r\nContent-Length: 5\r\n", "hello"),
    ok_or([400]),
    False,
)
t(
    "SMUG-EXPECT-100-CL",
    post("Content-Length: 5\r\nExpect: 100-continue\r\n", "hello"),
    ok_or([400]),
    False,
)
for nm, tr in [
    ("CL", "Content-Length: 50"),
    ("TE", "Transfer-Encoding: chunked"),
    ("HOST", "Host: evil.example.com"),
    ("AUTH", "Authorization: Bearer evil"),
    ("CONTENT-TYPE", "Content-Type: text/evil"),
]:
    t("SMUG-TRAILER-" + nm, post(TEC, f"5\r\nhello\r\n0\r\n{tr}\r\n\r\n"), ok_or([400]), False)
t(
    "SMUG-HEAD-CL-BODY",
    B(f"HEAD / HTTP/1.1\r\nHost: {HH}\r\nContent-Length: 5\r\n\r\nhello"),
    ok_or([400]),
    False,
)
t(
    "SMUG-OPTIONS-CL-BODY",
    B(f"OPTIONS / HTTP/1.1\r\nHost: {HH}\r\nContent-Length: 5\r\n\r\nhello"),
    ok_or([400]),
    False,
)
t("SMUG-CL-UNDERSCORE", post("Content-Length: 1_0\r\n", "helloworld"), exact(400, True))
t("SMUG-CL-NEGATIVE-ZERO", post("Content-Length: -0\r\n"), exact(400, True))
t("SMUG-CL-DOUBLE-ZERO", post("Content-Length: 00\r\n"), ok_or([400]))
t("SMUG-CL-LEADING-ZEROS-OCTAL", post("Content-Length: 0200\r\n", "A" * 200), ok_or([400]))
t(
    "SMUG-TE-OBS-FOLD",
    post("Transfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n", "hello"),
    te_trailsp,
)
t(
    "SMUG-TE-TRAILING-COMMA",
    post("Transfer-Encoding: chunked,\r\nContent-Length: 5\r\n", "hello"),
    ok_or([400]),
)
t(
    "SMUG-TE-TAB-BEFORE-VALUE",
    post("Transfer-Encoding:\tchunked\r\nContent-Length: 5\r\n", "hello"),
    ok_or([400]),
    False,
)
t(
    "SMUG-ABSOLUTE-URI-HOST-MISMATCH",
    B(f"GET http://other.example.com/ HTTP/1.1\r\nHost: {HH}\r\n\r\n"),
    ok_or([400]),
    False,
)
t(
    "SMUG-MULTIPLE-HOST-COMMA",
    B(f"GET / HTTP/1.1\r\nHost: {HH}, other.example.com\r\n\r\n"),
    exact(400, True),
)
t("SMUG-CHUNK-BARE-CR-TERM", post(TEC, "5\rhello\r\n0\r\n\r\n"), exact(400, True))

# ---- Malformed
rng = random.Random(42)
t("MAL-BINARY-GARBAGE", bytes(rng.getrandbits(8) for _ in range(256)), any_close_timeout_400)


t(
    "MAL-LONG-URL",
    B(f"GET /{'A'*100000} HTTP/1.1\r\nHost: {HH}\r\n\r\n"),
    ok_or([400, 414, 431], warn_2xx=False),
)
t("MAL-LONG-HEADER-VALUE", G(f"X-Big: {'B'*100000}\r\n"), ok_or([400, 431], warn_2xx=False))
t(
    "MAL-MANY-HEADERS",
    G("".join(f"X-H-{i}: value\r\n" for i in range(10000))),
    ok_or([400, 431], warn_2xx=False),
)
t("MAL-NUL-IN-URL", B(f"GET /\x00test HTTP/1.1\r\nHost: {HH}\r\n\r\n"), exact(400, True))
t("MAL-CONTROL-CHARS-HEADER", G("X-Test: abc\x07\x08\x0bdef\r\n"), exact(400, True))
t(
    "MAL-INCOMPLETE-REQUEST",
    B(f"GET / HTTP/1.1\r\nHost: {HH}\r\nX-Test: value"),
    any_close_timeout_400,
)
t("MAL-EMPTY-REQUEST", b"", any_close_timeout_400)
t("MAL-LONG-HEADER-NAME", G(f"{'A'*100000}: val\r\n"), ok_or([400, 431], warn_2xx=False))
t(
    "MAL-LONG-METHOD",
    B(f"{'A'*100000} / HTTP/1.1\r\nHost: {HH}\r\n\r\n"),
    ok_or([400], warn_2xx=False),
)
t("MAL-NON-ASCII-HEADER-NAME", G("X-T\xc3\xabst: value\r\n"), exact(400, True))
t("MAL-NON-ASCII-URL", B(f"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: {HH}\r\n\r\n"), exact(400, True))
t("MAL-CL-OVERFLOW", post("Content-Length: 99999999999999999999\r\n"), exact(400, True))
t("MAL-WHITESPACE-ONLY-LINE", B("   \r\n\r\n"), any_close_timeout_400)


t("MAL-NUL-IN-HEADER-VALUE", G("X-Test: val\x00ue\r\n"), exact(400, True))
t("MAL-CHUNK-SIZE-OVERFLOW", post(TEC, "FFFFFFFFFFFFFFFF0\r\nhello\r\n0\r\n\r\n"), exact(400, True))


t("MAL-H2-PREFACE", B("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), judged({400: P, 505: P}, timeout=P))
t("MAL-CL-EMPTY", post("Content-Length: \r\n"), exact(400, True))
t("MAL-CL-TAB-BEFORE-VALUE", post("Content-Length:\t5\r\n", "hello"), ok_or([400]))


def w4xx(r, st):
    if r is None:
        return P if st == "closed" else F
    if r.status == 400:
        return P
    return W if 200 <= r.status < 500 else F


t("MAL-URL-BACKSLASH", B(f"GET /path\\file HTTP/1.1\r\nHost: {HH}\r\n\r\n"), w4xx)
t("MAL-URL-OVERLONG-UTF8", B(f"GET /\xc0\xaf HTTP/1.1\r\nHost: {HH}\r\n\r\n"), exact(400, True))
t("MAL-URL-PERCENT-NULL", B(f"GET /path%00.html HTTP/1.1\r\nHost: {HH}\r\n\r\n"), w4xx)
t(
    "MAL-URL-PERCENT-CRLF",
    B(f"GET /path%0d%0aX-Injected:%20true HTTP/1.1\r\nHost: {HH}\r\n\r\n"),
    w4xx,
)


t(
    "MAL-CHUNK-EXT-64K",
    post(TEC, "5;ext=" + "a" * 65536 + "\r\nhello\r\n0\r\n\r\n"),
    ok_or([400, 431]),
)


t(
    "MAL-RANGE-OVERLAPPING",
    G("Range: bytes=" + ",".join(["0-"] * 1000) + "\r\n"),
    judged({code: W for code in (200, 206, 400, 416, 431)}),
    False,
)


t(
    "MAL-POST-CL-HUGE-NO-BODY",
    post("Content-Length: 999999999\r\n"),
    judged({400: P, 413: P}, timeout=P),
)


# ---- Normalization (/echo)
def norm(probe):
    def v(r, st):
        if r is None:
            return P if st == "closed" else F
        if r.status >= 400:
            return P
        if 200 <= r.status < 300:
            return F if probe in r.body else P
        return F

    return v


def pe(h, body):
    return B(f"POST /echo HTTP/1.1\r\nHost: {HH}\r\n{h}\r\n{body}")


t(
    "NORM-UNDERSCORE-CL",
    pe("Content-Length: 11\r\nContent_Length: 99\r\n", "hello world"),
    norm(b"99"),
)
t(
    "NORM-SP-BEFORE-COLON-CL",
    pe("Content-Length: 11\r\nContent-Length : 5\r\n", "hello world"),
    norm(b": 5"),
)
t(
    "NORM-TAB-IN-NAME",
    pe("Content-Length: 11\r\nContent\tLength: 99\r\n", "hello world"),
    norm(b"99"),
)
t(
    "NORM-CASE-TE",
    pe("TRANSFER-ENCODING: chunked\r\n", "B\r\nhello world\r\n0\r\n\r\n"),
    norm(b"TRANSFER"),
    False,
)
t(
    "NORM-UNDERSCORE-TE",
    pe("Transfer_Encoding: chunked\r\n", "B\r\nhello world\r\n0\r\n\r\n"),
    norm(b"Transfer_"),
    False,
)

# ---- Sequences
SEQ = []


def seq(id, payloads, v, scored=True):
    SEQ.append((id, payloads, v, scored))


FOLLOW = G()


def first_refused(steps):
    """What every sequence check asks first: was the first request refused (400), or was the
    connection closed after it (or before it was sent)?"""
    if steps[0] is None:
        return True
    r, st, _ = steps[0]
    return (r is not None and r.status == 400) or st == "closed"


def first_ok(steps):
    return steps[0][0] is not None and 200 <= steps[0][0].status < 300


def clte_seq(steps):
    """Refused, or served and then closed before the follow-up."""
    if first_refused(steps):
        return P
    return P if first_ok(steps) and steps[1] is None else F


# Both framing fields, then a follow-up on the same connection: it must never be answered.
for id, fields, body in [
    ("CLTE-CONN-CLOSE", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"),
    ("TECL-CONN-CLOSE", "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n"),
    ("CLTE-DESYNC", "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\nX"),
    ("TECL-DESYNC", "Transfer-Encoding: chunked\r\nContent-Length: 30\r\n", "0\r\n\r\nX"),
]:
    seq("SMUG-" + id, [post(fields, body), FOLLOW], clte_seq)


def smuggled(steps):
    """Never two responses to one write; refused or closed."""
    if steps[0] is not None and len(re.findall(rb"HTTP/\d\.\d \d{3}", steps[0][2])) >= 2:
        return F
    return P if first_refused(steps) else F


# A chunked body that ends at once, then a whole request: the CL.TE desync with a request hidden
# in the body, under each way of writing the two framing fields.
hidden_get = "0\r\n\r\n" + f"GET / HTTP/1.1\r\nHost: {HH}\r\n\r\n"
hidden_head = "0\r\n\r\n" + f"HEAD / HTTP/1.1\r\nHost: {HH}\r\n\r\n"
for id, fields, hidden in [
    ("GET", "Content-Length: {n}\r\nTransfer-Encoding: chunked\r\n", hidden_get),
    ("GET-CL-PLUS", "Content-Length: +{n}\r\nTransfer-Encoding: chunked\r\n", hidden_get),
    ("GET-CL-NON-NUMERIC", "Content-Length: {n}x\r\nTransfer-Encoding: chunked\r\n", hidden_get),
    ("GET-TE-OBS-FOLD", "Transfer-Encoding:\r\n chunked\r\nContent-Length: {n}\r\n", hidden_get),
    ("HEAD", "Content-Length: {n}\r\nTransfer-Encoding: chunked\r\n", hidden_head),
    ("GET-TE-TRAILING-SPACE", "Content-Length: {n}\r\nTransfer-Encoding: chunked \r\n", hidden_get),
    ("GET-TE-LEADING-COMMA", "Content-Length: {n}\r\nTransfer-Encoding: , chunked\r\n", hidden_get),
    ("GET-TE-CASE-MISMATCH", "Content-Length: {n}\r\nTransfer-Encoding: Chunked\r\n", hidden_get),
]:
    seq("SMUG-CLTE-SMUGGLED-" + id, [post(fields.format(n=len(hidden)), hidden)], smuggled)
te_twice = "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"
seq(
    "SMUG-TE-DUPLICATE-HEADERS-SMUGGLED-GET",
    [post(f"{te_twice}Content-Length: {len(hidden_get)}\r\n", hidden_get)],
    smuggled,
)
# TE.CL: Content-Length covers only the chunk-size line; the chunk's data is a whole GET whose
# own Content-Length takes the chunked framing's tail as its body.
inner = f"GET / HTTP/1.1\r\nHost: {HH}\r\nContent-Length: 7\r\n\r\n"
size_line = f"{len(inner):x}\r\n"
seq(
    "SMUG-TECL-SMUGGLED-GET",
    [
        post(
            f"Transfer-Encoding: chunked\r\nContent-Length: {len(size_line)}\r\n",
            f"{size_line}{inner}\r\n0\r\n\r\n",
        )
    ],
    smuggled,
)
# Two lengths: a GET right after the shorter body.
after_short = "hello" + f"GET / HTTP/1.1\r\nHost: {HH}\r\n\r\n"
seq(
    "SMUG-DUPLICATE-CL-SMUGGLED-GET",
    [post(f"Content-Length: 5\r\nContent-Length: {len(after_short)}\r\n", after_short)],
    smuggled,
)


def prefix_desync(steps):
    """A GET's body holds a request's head without its blank line; the next write ends it and
    sends a GET. Two responses to that write mean the body was left unread."""
    if first_refused(steps):
        return P
    if steps[1] is not None and len(re.findall(rb"HTTP/\d\.\d \d{3}", steps[1][2])) >= 2:
        return F
    return P


prefix = f"GET /smuggled HTTP/1.1\r\nHost: {HH}\r\n"
seq(
    "SMUG-GET-CL-PREFIX-DESYNC",
    [G(f"Content-Length: {len(prefix)}\r\n") + B(prefix), B("\r\n") + G()],
    prefix_desync,
    False,
)


def poison(steps):
    """Refused or closed; or served, and the follow-up served too (a 400 to it warns)."""
    if first_refused(steps):
        return P
    if not first_ok(steps):
        return F
    if steps[1] is None:
        return P
    follow_up = steps[1][0]
    return P if follow_up is not None and 200 <= follow_up.status < 300 else W


seq("SMUG-CL0-BODY-POISON", [post("Content-Length: 0\r\n", "X"), FOLLOW], poison, False)
seq("SMUG-GET-CL-BODY-DESYNC", [G("Content-Length: 5\r\n") + b"hello", FOLLOW], poison, False)
seq(
    "SMUG-OPTIONS-CL-BODY-DESYNC",
    [B(f"OPTIONS / HTTP/1.1\r\nHost: {HH}\r\nContent-Length: 5\r\n\r\nhello"), FOLLOW],
    poison,
    False,
)


def expect_desync(steps):
    """As `poison`, but 417 passes too, and any other answer warns."""
    if steps[0] is not None and steps[0][0] is not None and steps[0][0].status == 417:
        return P
    verdict = poison(steps)
    return W if verdict == F else verdict


seq(
    "SMUG-EXPECT-100-CL-DESYNC",
    [post("Content-Length: 5\r\nExpect: 100-continue\r\n", "hello"), FOLLOW],
    expect_desync,
    False,
)
seq(
    "SMUG-OPTIONS-TE-OBS-FOLD",
    [
        B(
            f"OPTIONS / HTTP/1.1\r\nHost: {HH}\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n\r\nhello"
        ),
        FOLLOW,
    ],
    clte_seq,
)
seq("SMUG-CHUNK-INVALID-SIZE-DESYNC", [post(TEC, "+0\r\n\r\nX"), FOLLOW], clte_seq)


def pipesafe(steps):
    s1 = steps[0]
    if s1 is None or s1[0] is None or not (200 <= s1[0].status < 300):
        return F
    if steps[1] is None:
        return W
    r2 = steps[1][0]
    return P if r2 is not None and 200 <= r2.status < 300 else W


seq("SMUG-PIPELINE-SAFE", [FOLLOW, FOLLOW], pipesafe, False)


# The one scored case where this server answers otherwise than the probe's check wants, by
# choice (docs/conformance.md), and what it answers.
CHOSEN = {"MAL-LONG-METHOD": 501}


def run(case):
    kind, id, payload, verdict, scored = case
    if kind == "single":
        r, st, raw = run_single(payload)
        return id, verdict(r, st), scored, f"{r.status if r else None} {st} {raw[:60]!r}", r
    steps = run_seq(payload)
    desc = " | ".join(
        "not run" if s is None else f"{s[0].status if s[0] else None} {s[1]}" for s in steps
    )
    first = steps[0][0] if steps[0] else None
    return id, verdict(steps), scored, desc, first


cases = [("single",) + t for t in T] + [("sequence",) + s for s in SEQ]
counts, broken = {}, []
with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
    for id, verdict, scored, desc, first in pool.map(run, cases):
        key = ("scored " if scored else "unscored ") + verdict
        counts[key] = counts.get(key, 0) + 1
        chosen = id in CHOSEN
        if verdict != P:
            print(
                f"{verdict:4} {'' if scored else '(unscored) '}{id}: {desc}"
                + (" (a stated choice)" if chosen else "")
            )
        if chosen:
            if first is None or first.status != CHOSEN[id]:
                broken.append(f"{id}: expected {CHOSEN[id]}, got {desc}")
        elif scored and verdict == F:
            broken.append(f"{id}: {desc}")
print(f"{len(cases)} probes: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
print(f"{len(broken)} scored probes failed besides the stated choice")
for line in broken:
    print("  " + line)
sys.exit(1 if broken else 0)
