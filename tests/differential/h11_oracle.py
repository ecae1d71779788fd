"""An independent parser for tests/differential.rs: h11 (>= 0.16) reads each request stream
as a server would, and says what it made of it.

Input on stdin: streams, each a 4-byte big-endian length and that many bytes. Output on
stdout: one JSON line per stream, in order:
  {"requests": [[method, target, version, body_hex, [[name, value_hex], ...], start, end], ...],
   "end": "idle" | "partial" | "closed" | "error", "status": N, "reason": "..."}
A request's start and end are its byte offsets in the stream. "idle": every byte was a
complete request; "partial": a request (or its body) is incomplete; "closed": the connection
must close after the last request (Connection: close, HTTP/1.0); "error": h11 refused the
stream (its status hint in "status", its message in "reason").
Each request is answered at once (200, no body; CONNECT 405) before the next is read, as a
server does.
"""

import json
import struct
import sys

import h11

if tuple(int(part) for part in h11.__version__.split(".")[:2]) < (0, 16):
    sys.exit(f"h11 {h11.__version__} is too old: 0.16 or later (CVE-2025-43859)")

HEAD_LIMIT = 16 * 1024


def read_stream(data):
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=HEAD_LIMIT)
    conn.receive_data(data)
    reading = {"requests": [], "end": "idle", "status": 0, "reason": ""}
    current = None

    def position():
        return len(data) - len(conn.trailing_data[0])

    while True:
        before = position()
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as error:
            reading.update(end="error", status=error.error_status_hint, reason=str(error))
            return reading
        if event is h11.NEED_DATA:
            busy = current is not None or conn.their_state is not h11.IDLE
            reading["end"] = "partial" if busy or conn.trailing_data[0] else "idle"
            return reading
        if isinstance(event, h11.Request):
            fields = [[name.decode("latin-1"), value.hex()] for name, value in event.headers]
            current = [event.method.decode("latin-1"), event.target.decode("latin-1"),
                       event.http_version.decode("latin-1"), bytearray(), fields, before]
        elif isinstance(event, h11.Data):
            current[3] += event.data
        elif isinstance(event, h11.EndOfMessage):
            current[3] = current[3].hex()
            current.append(position())
            reading["requests"].append(current)
            # reactor-httpd answers CONNECT 405; a 2xx would switch h11 to a tunnel.
            status = 405 if current[0] == "CONNECT" else 200
            current = None
            conn.send(h11.Response(status_code=status, headers=[("Content-Length", "0")]))
            conn.send(h11.EndOfMessage())
            if conn.their_state is h11.MUST_CLOSE or conn.our_state is h11.MUST_CLOSE:
                reading["end"] = "closed"
                return reading
            conn.start_next_cycle()
        else:
            reading.update(end="error", reason=type(event).__name__)
            return reading


def main():
    source = sys.stdin.buffer
    while True:
        header = source.read(4)
        if len(header) < 4:
            break
        (length,) = struct.unpack(">I", header)
        sys.stdout.write(json.dumps(read_stream(source.read(length))) + "\n")
    sys.stdout.flush()


main()
