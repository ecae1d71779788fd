//! The HTTP core's costs, without sockets: parsing a head, serializing a response, and one
//! request through the whole connection state machine. `cargo bench --bench http`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use reactor_httpd::app::{Demo, Handler, StaticFiles};
use reactor_httpd::config::Limits;
use reactor_httpd::http::memory::MemoryEnv;
use reactor_httpd::http::{
    Clock, Conn, HeadScan, Persistence, Response, Scanned, Status, Want, header_storage,
    parse_head, write_head,
};

const BROWSER_GET: &[u8] = b"GET /docs/index.html?lang=en HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Connection: keep-alive\r\n\
Upgrade-Insecure-Requests: 1\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Sec-Fetch-Site: none\r\n\
Sec-Fetch-User: ?1\r\n\
Priority: u=0, i\r\n\r\n";

/// What wrk sends.
const HELLO_GET: &[u8] = b"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

/// Finds the end of the head and parses it: what a connection does per request.
fn parse(head: &[u8]) -> usize {
    let Ok(Scanned::Complete(len)) = HeadScan::default().scan(head, 16 * 1024) else {
        panic!("incomplete head");
    };
    let mut storage = header_storage();
    let (request, _) = parse_head(&head[..len], &mut storage).expect("valid head");
    request.headers.len()
}

fn parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    group.bench_function("browser GET", |b| b.iter(|| parse(black_box(BROWSER_GET))));
    group.bench_function("GET /hello", |b| b.iter(|| parse(black_box(HELLO_GET))));
    group.finish();
}

fn serializing(c: &mut Criterion) {
    let clock = Clock::new();
    let demo = Demo::new(StaticFiles::new(".".as_ref()).unwrap());
    let mut storage = header_storage();
    let (request, _) = parse_head(HELLO_GET, &mut storage).unwrap();
    let mut out = Vec::with_capacity(4096);
    c.bench_function("serialize /hello response", |b| {
        b.iter(|| {
            out.clear();
            let response: Response = demo.handle(black_box(&request));
            write_head(
                &mut out,
                &response,
                response.body.len(),
                Persistence::KeepAliveImplied,
                &clock,
                &[],
            );
            black_box(out.len())
        })
    });
    let response = Response::new(Status::OK);
    c.bench_function("serialize empty 200 head", |b| {
        b.iter(|| {
            out.clear();
            write_head(
                &mut out,
                black_box(&response),
                0,
                Persistence::Close,
                &clock,
                &[],
            );
            black_box(out.len())
        })
    });
}

/// Sixteen pipelined `GET /hello` in one read, through `Conn`: read, parse, handle, serialize,
/// write, as a driver would, per request.
fn state_machine(c: &mut Criterion) {
    let demo = Demo::new(StaticFiles::new(".".as_ref()).unwrap());
    let batch: Vec<u8> = HELLO_GET.repeat(16);
    // Not a `MemoryConn`, which would copy every response into a Vec: only its environment.
    let mut env = MemoryEnv::serving(Limits::default(), demo);
    let mut cx = env.cx();
    let mut conn = Conn::new(&cx);
    let mut group = c.benchmark_group("state machine");
    group.throughput(Throughput::Elements(16));
    group.bench_function("16 pipelined GET /hello, per batch", |b| {
        b.iter(|| {
            let mut written = 0;
            loop {
                match conn.want(&mut cx) {
                    Want::Read if written > 0 => break,
                    Want::Read => {
                        let buf = conn.read_buf(&mut cx);
                        buf[..batch.len()].copy_from_slice(&batch);
                        conn.received(batch.len());
                    }
                    Want::Write { bytes, .. } => {
                        written += bytes.len();
                        let n = bytes.len();
                        conn.wrote(n);
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            black_box(written)
        })
    });
    group.finish();
}

criterion_group!(benches, parsing, serializing, state_machine);
criterion_main!(benches);
