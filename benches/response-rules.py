#!/usr/bin/env python3
"""Origin-server rules of RFC 9110-9112, probed over raw sockets in one mode.

The rules are those of "Who's Breaking the Rules? Studying Conformance to the HTTP
Specifications and its Security Impact" (CISPA, ASIACCS 2024) that apply to an origin server:
what it must refuse (a CR, LF or NUL in a field value; a missing, doubled or invalid Host;
whitespace before the first field line or before a colon; an unknown method), and what its
responses must carry (Date; Content-Type with content; Allow with 405; Content-Range with 206 and
416; the same fields for HEAD as for GET; a 304 or 206 with the validators and Vary a 200 would
have had; no 206, 304 or 416 to POST; no Transfer-Encoding to HTTP/1.0; `Connection: close` in
the last answer; field values in their grammar). It starts the server on a directory of its own
(files, a directory, a name with a space and one in UTF-8) with the demo routes, and asks each
path with and without Accept-Encoding, ranges and conditionals.

    benches/response-rules.py MODE [SERVER FLAGS...]     e.g. reactor, or uring --compress

BIN=path runs another binary. Prints every rule broken and exits 1 if one is, besides the two
choices docs/conformance.md states (a field line may end in a bare LF, RFC 9112 2.2; CONNECT with
a path is 400, RFC 9112 3.2.3), which are printed as such. Every socket has a 3 s timeout.
"""
import re
import socket
import sys

import probe_server

mode = sys.argv[1]
port = probe_server.start(
    mode,
    {"index.html": "<h1>hi</h1>" * 200, "a.txt": "hello world\n" * 300, "dir/x.txt": "x",
     "sp ace/f.txt": "hi\n", "caf\u00e9": None},
    sys.argv[2:],
    prefix="response-rules-",
)


def exchange(data):
    """Sends data on a new connection and reads until the server closes it."""
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    s.sendall(data)
    got = b""
    try:
        while chunk := s.recv(65536):
            got += chunk
    except socket.timeout:
        pass
    s.close()
    return got


def responses(data, head):
    """The responses in data: (status, [(lowercase name, value)], content)."""
    out = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            out.append(("?", [], data))
            break
        lines = data[:end].decode("latin1").split("\r\n")
        status = lines[0].split(" ")[1]
        fields = [(n.strip().lower(), v.strip()) for n, v in (x.split(":", 1) for x in lines[1:])]
        rest = data[end + 4:]
        length = dict(fields).get("content-length")
        if head or status[0] == "1" or status in ("204", "304"):
            n = 0
        else:
            n = int(length) if length is not None else len(rest)
        out.append((status, fields, rest[:n]))
        data = rest[n:]
    return out


def ask(method, target, fields="Host: x\r\n", version="HTTP/1.1", close=True, before=b""):
    head = f"{method} {target} {version}\r\n{fields}" + ("Connection: close\r\n" if close else "")
    return responses(exchange(before + head.encode("latin1") + b"\r\n"), method == "HEAD")[0]


broken, documented = [], []


def rule(name, ok, what=""):
    if not ok:
        broken.append(f"{name}: {what}")


# What must be refused.
for byte in ["\x00", "\r"]:
    status = ask("GET", "/hello", f"Host: x\r\nInvalid: a{byte}\r\n")[0]
    rule("CR or NUL in a field value is 400", status == "400", f"{byte!r} -> {status}")
if ask("GET", "/hello", "Host: x\r\nInvalid: a\n\r\n")[0] != "400":
    documented.append("a field line ending in a bare LF is a line (RFC 9112 2.2)")
for fields, what in [("", "no Host"), ("Host: x\r\nHost: x\r\n", "two"), ("Host: ###\r\n", "###")]:
    status = ask("GET", "/hello", fields)[0]
    rule("a bad Host is 400", status == "400", f"{what} -> {status}")
rule("an unknown method is 501", ask("ABC", "/hello")[0] == "501")
rule("TRACE is 405", ask("TRACE", "/a.txt")[0] == "405")
if ask("CONNECT", "/a.txt")[0] != "405":
    documented.append("CONNECT with a path is 400 (RFC 9112 3.2.3)")
status, fields, _ = ask("CONNECT", f"127.0.0.1:{port}", f"Host: 127.0.0.1:{port}\r\n")
rule("CONNECT host:port is 405, with no Content-Length or Transfer-Encoding in a 2xx",
     status == "405" or not (status[0] == "2" and {"content-length", "transfer-encoding"}
                             & {n for n, _ in fields}), status)
rule("one empty line before the request line is ignored",
     ask("GET", "/a.txt", before=b"\r\n")[0] == "200")
rule("whitespace before the first field line is 400",
     ask("GET", "/a.txt", " Host: x\r\n Foo: y\r\n")[0] == "400")
rule("whitespace before a colon is 400", ask("GET", "/a.txt", "Host: x\r\nSpace : y\r\n")[0] == "400")
rule("HEAD has no content", exchange(b"HEAD /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
     .endswith(b"\r\n\r\n"))

# What responses must carry.
paths = ["/", "/a.txt", "/index.html", "/dir", "/dir/", "/sp%20ace", "/sp%20ace/", "/caf%C3%A9",
         "/nope", "/hello", "/headers", "/%2e%2e/etc/passwd", "/dir/x.txt"]
extras = ["", "Accept-Encoding: gzip, br\r\n", "Range: bytes=0-3\r\n", "Range: bytes=99999-\r\n",
          "Range: bytes=0-1,3-4\r\n"]
seen = []
for path in paths:
    for extra in extras:
        get = ask("GET", path, "Host: x\r\n" + extra)
        head = ask("HEAD", path, "Host: x\r\n" + extra)
        seen += [(f"GET {path} {extra!r}", get), (f"HEAD {path} {extra!r}", head)]
        what = f"{path} {extra!r}"
        if "Range" not in extra:  # range handling is defined for GET alone (RFC 9110 14.2)
            rule("HEAD has GET's status", get[0] == head[0], f"{what}: {get[0]} {head[0]}")
            free = {"content-length", "vary", "transfer-encoding", "content-encoding", "date"}
            g, h = {n for n, _ in get[1]} - free, {n for n, _ in head[1]} - free
            rule("HEAD has GET's fields", g == h, f"{what}: {g ^ h}")
            if "content-length" in dict(head[1]):
                rule("HEAD's Content-Length is GET's",
                     dict(head[1])["content-length"] == dict(get[1]).get("content-length"), what)
        g = dict(get[1])
        if get[0] == "200" and "etag" in g:
            conditions = [f"If-None-Match: {g['etag']}\r\n"]
            if "last-modified" in g:
                conditions.append(f"If-Modified-Since: {g['last-modified']}\r\n")
            for cond in conditions:
                answer = ask("GET", path, "Host: x\r\n" + extra + cond)
                seen.append((f"GET {path} {extra + cond!r}", answer))
                if answer[0] == "304":
                    a = dict(answer[1])
                    for name in ["date", "cache-control", "etag", "expires", "content-location", "vary"]:
                        rule("a 304 has what the 200 had", name not in g or name in a, f"{what} {cond!r}: {name}")
        if get[0] == "206":
            whole = dict(ask("GET", path, "Host: x\r\n" + extra.replace("Range", "X-Not-Range"))[1])
            for name in ["date", "cache-control", "etag", "expires", "content-location", "vary"]:
                rule("a 206 has what the 200 had", name not in whole or name in g, f"{what}: {name}")
        post = ask("POST", path, "Host: x\r\nContent-Length: 0\r\n" + extra
                   + (f"If-None-Match: {g['etag']}\r\n" if "etag" in g else ""))
        seen.append((f"POST {path} {extra!r}", post))
        rule("no 206, 304 or 416 to POST", post[0] not in ("206", "304", "416"), f"{what}: {post[0]}")
for path in paths:
    answer = ask("GET", path, "", "HTTP/1.0", close=False)
    rule("no Transfer-Encoding to HTTP/1.0", "transfer-encoding" not in dict(answer[1]), path)
    answer = ask("GET", path)
    rule("Connection: close in the last answer", dict(answer[1]).get("connection") == "close", path)

date = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|"
                  r"Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")
token = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
tokens = rf"^{token}(\s*,\s*{token})*$"
lists = {"set-cookie", "vary", "cache-control", "link", "via", "allow", "connection",
         "content-language", "accept-ranges", "www-authenticate"}
for what, (status, fields, content) in seen:
    what = f"{what} -> {status}"
    values = {}
    for name, value in fields:
        values.setdefault(name, []).append(value)
    for name, all_values in values.items():
        rule("no field twice unless a list", len(all_values) == 1 or name in lists, f"{what}: {name}")
    f = {name: all_values[0] for name, all_values in values.items()}
    if status[0] == "1" or status == "204":
        rule("no Content-Length or Transfer-Encoding in 1xx or 204",
             not {"content-length", "transfer-encoding"} & set(f), what)
    if status[0] in "234":
        rule("Date in 2xx, 3xx, 4xx", "date" in f, what)
    for name in ("date", "last-modified", "expires"):
        if name in f:
            rule(f"{name} is an IMF-fixdate", bool(date.match(f[name])), f"{what}: {f[name]}")
    if "etag" in f:
        rule("ETag is an entity-tag", bool(re.match(r'^(W/)?"[\x21\x23-\x7e]*"$', f["etag"])), what)
    if status in ("301", "302", "303", "307", "308"):
        location = f.get("location", "")
        rule("a redirect's Location is a URI reference", bool(re.match(r"^[\x21-\x7e]+$", location))
             and not re.search(r"%(?![0-9A-Fa-f]{2})", location), f"{what}: {location!r}")
    if status == "405":
        rule("405 has Allow", bool(f.get("allow")), what)
    if status == "416":
        rule("416 has Content-Range: bytes */length",
             bool(re.match(r"^bytes \*/\d+$", f.get("content-range", ""))), what)
    if status == "206":
        multipart = "multipart/byteranges" in f.get("content-type", "")
        rule("206 has Content-Range or is multipart, not both", ("content-range" in f) != multipart, what)
        if "content-range" in f:
            rule("Content-Range grammar", bool(re.match(r"^bytes \d+-\d+/\d+$", f["content-range"])), what)
    if status == "304":
        rule("304 has no content", content == b"", what)
    if content and not what.startswith("HEAD"):
        rule("content has a Content-Type", "content-type" in f, what)
    if "content-type" in f:
        rule("Content-Type grammar", bool(re.match(
            rf"^{token}/{token}(\s*;\s*{token}=({token}|\"[^\"]*\"))*$", f["content-type"])), what)
    for name in ("vary", "allow", "accept-ranges", "content-encoding", "connection"):
        for value in values.get(name, []):
            rule(f"{name} is a token list", bool(re.match(tokens, value)), f"{what}: {value}")
    if "cache-control" in f:
        rule("Cache-Control grammar", all(re.match(rf"^{token}(=({token}|\"[^\"]*\"))?$", d.strip())
                                          for d in f["cache-control"].split(",")), what)
    if "server" in f:
        rule("Server grammar", bool(re.match(rf"^{token}(/{token})?( {token}(/{token})?| \([^)]*\))*$",
                                             f["server"])), what)
    if "retry-after" in f:
        rule("Retry-After grammar", f["retry-after"].isdigit() or bool(date.match(f["retry-after"])), what)

print(f"{mode}: {len(seen)} responses looked at; {len(broken)} rules broken")
for line in documented:
    print(f"  as documented: {line}")
for line in broken:
    print(f"  BROKEN {line}")
sys.exit(1 if broken else 0)
