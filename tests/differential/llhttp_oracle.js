// The second independent parser for tests/differential.rs: llhttp, Node.js's HTTP/1 parser,
// strict (no leniency flag set), as Node's own HTTP server runs it.
//
// Same protocol as h11_oracle.py. Input on stdin: streams, each a 4-byte big-endian length and
// that many bytes. Output on stdout: one JSON line per stream, in order:
//   {"requests": [[method, target, version, body_hex, [[name, value_hex], ...], start, end], ...],
//    "end": "idle" | "partial" | "closed" | "error", "status": N, "reason": "..."}
// "closed": the connection must close after the last request (Connection: close, HTTP/1.0
// without keep-alive), or llhttp hands it over after one (CONNECT, Upgrade): it reads no
// further. "error": llhttp refused the stream ("reason": its error code and words).
// Each stream is fed one byte at a time, so llhttp is also asked to read every split of it.
//
// Node exposes llhttp through its internal binding only (deprecated, and used here as Node's
// http module uses it); the warning it prints is turned off.
'use strict';
process.noDeprecation = true;
const { HTTPParser, methods } = process.binding('http_parser');

const HEAD_LIMIT = 16 * 1024;

function readStream(data) {
  const reading = { requests: [], end: 'idle', status: 0, reason: '' };
  const parser = new HTTPParser();
  parser.initialize(HTTPParser.REQUEST, {}, HEAD_LIMIT, 0);
  let at = 0;
  let begun = 0;
  let current = null;
  let fields = [];
  let url = '';
  let inMessage = false;
  let stopped = false;
  parser[HTTPParser.kOnMessageBegin] = () => {
    inMessage = true;
    begun = at;
    fields = [];
    url = '';
  };
  // Called before the head ends only when there are many fields; they come again in pieces.
  parser[HTTPParser.kOnHeaders] = (headers, part) => {
    fields.push(...headers);
    url += part;
  };
  parser[HTTPParser.kOnHeadersComplete] = (major, minor, headers, method, part, _status,
    _message, upgrade, keepAlive) => {
    if (headers) fields.push(...headers);
    if (part) url += part;
    const named = [];
    for (let i = 0; i < fields.length; i += 2) {
      named.push([fields[i].toLowerCase(), Buffer.from(fields[i + 1], 'latin1').toString('hex')]);
    }
    current = { request: [methods[method], url, `${major}.${minor}`, [], named, begun],
      keepAlive, upgrade };
    return 0;
  };
  parser[HTTPParser.kOnBody] = (body, start, length) => {
    const piece = start === undefined ? body : body.subarray(start, start + length);
    current.request[3].push(Buffer.from(piece));
  };
  parser[HTTPParser.kOnMessageComplete] = () => {
    const request = current.request;
    request[3] = Buffer.concat(request[3]).toString('hex');
    request.push(at + 1);
    reading.requests.push(request);
    inMessage = false;
    if (!current.keepAlive || current.upgrade) {
      reading.end = 'closed';
      stopped = true;
    }
    current = null;
  };
  parser[HTTPParser.kOnExecute] = () => {};
  for (at = 0; at < data.length && !stopped; at++) {
    const result = parser.execute(data.subarray(at, at + 1));
    if (result instanceof Error && !stopped) {
      reading.end = 'error';
      reading.status = result.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400;
      reading.reason = `${result.code} ${result.reason || ''}`.trim();
      return reading;
    }
  }
  if (!stopped) reading.end = inMessage ? 'partial' : 'idle';
  return reading;
}

const chunks = [];
process.stdin.on('data', (chunk) => chunks.push(chunk));
process.stdin.on('end', () => {
  const input = Buffer.concat(chunks);
  const lines = [];
  for (let i = 0; i + 4 <= input.length;) {
    const length = input.readUInt32BE(i);
    lines.push(JSON.stringify(readStream(input.subarray(i + 4, i + 4 + length))));
    i += 4 + length;
  }
  process.stdout.write(lines.map((line) => line + '\n').join(''));
});
