//! HTTPS in every mode, with real clients: rustls's client in-process, curl and openssl. The
//! server's certificate is made here (rcgen) for localhost and 127.0.0.1, written as PEM files,
//! and the clients trust it and nothing else; one test has the binary make its own
//! (`--tls-self-signed`) and checks the fingerprint it prints.

mod common;

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, StreamOwned};
use sha2::{Digest, Sha256};

use common::upgrading::{Upgrading, binary, stop};
use common::{
    Client, IO_TIMEOUT, TestServer, bounded, client_trusting, config, tempdir, tls_over_as,
};
use reactor_httpd::config::{AccessLogTarget, Config, Mode};
use reactor_httpd::tls::TlsSource;

type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// A certificate for localhost and 127.0.0.1, its key, and a directory of files to serve.
struct Pki {
    root: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempdir("tls-pki").until_exit();
        let made = common::self_signed(&dir, &["localhost", "127.0.0.1"]);
        let root = dir.join("www");
        fs::create_dir(&root).unwrap();
        fs::write(root.join("small.txt"), b"0123456789abcdefghij").unwrap();
        fs::write(root.join("8m.bin"), pattern(8 << 20)).unwrap();
        Pki {
            root,
            cert: made.cert,
            key: made.key,
            der: made.der,
        }
    })
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 253) as u8).collect()
}

fn tls_config(mode: Mode) -> Config {
    let pki = pki();
    let mut config = config(mode);
    config.root = pki.root.clone();
    config.tls = Some(TlsSource::Files {
        cert: pki.cert.clone(),
        key: pki.key.clone(),
    });
    config
}

fn client_config(versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<ClientConfig> {
    Arc::new(client_trusting(pki().der.clone(), versions))
}

fn default_client() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| client_config(rustls::DEFAULT_VERSIONS))
        .clone()
}

fn tls_over(tcp: TcpStream, config: &Arc<ClientConfig>) -> Client<TlsStream> {
    tls_over_as(tcp, config, "localhost")
}

fn connect(addr: SocketAddr) -> Client<TlsStream> {
    tls_over(TcpStream::connect(addr).unwrap(), &default_client())
}

/// Keep-alive, pipelining, a 1 MiB POST echoed, a range, ALPN: in every mode.
#[test]
fn requests_over_tls_in_every_mode() {
    bounded(120, || {
        for mode in common::modes() {
            let server = TestServer::start(tls_config(mode));
            let mut client = connect(server.addr);
            assert_eq!(client.get("/hello").text(), "Hello, World!", "{mode:?}");
            assert_eq!(client.get("/hello").text(), "Hello, World!", "{mode:?}");
            assert_eq!(client.stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
            client.send(
                b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\nGET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n\
                  GET /hello?3 HTTP/1.1\r\nHost: t\r\n\r\n",
            );
            assert_eq!(client.response().text(), "Hello, World!");
            assert_eq!(client.response().text(), "0123456789abcdefghij");
            assert_eq!(client.response().text(), "Hello, World!");
            let body = pattern(1 << 20);
            let mut post = format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-test\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            )
            .into_bytes();
            post.extend_from_slice(&body);
            let echoed = client.request(&post);
            assert_eq!(echoed.status, 200, "{mode:?}");
            assert!(echoed.body == body, "{mode:?}: the echo differs");
            let range =
                client.request(b"GET /small.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=10-14\r\n\r\n");
            assert_eq!(range.status, 206);
            assert_eq!(range.text(), "abcde");
            // Several ranges of a large file: each part read from the file and encrypted.
            let parts = [
                (0, 9),
                (4_000_000, 6_999_999),
                ((8 << 20) - 3, (8 << 20) - 1),
            ];
            let several = client.request(
                b"GET /8m.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-9,4000000-6999999,-3\r\n\r\n",
            );
            assert_eq!(several.status, 206, "{mode:?}");
            let expected = common::multipart(
                &pattern(8 << 20),
                "application/octet-stream",
                &parts,
                &common::boundary(&several),
            );
            assert!(several.body == expected, "{mode:?}: the parts differ");
            // The absolute form of an https URI (RFC 9112 3.2.2: a server must accept it).
            let absolute = client
                .request(b"GET https://localhost/small.txt HTTP/1.1\r\nHost: localhost\r\n\r\n");
            assert_eq!(absolute.status, 200, "{mode:?}");
            assert_eq!(absolute.text(), "0123456789abcdefghij");
        }
    });
}

/// Past `--max-connections` over TLS the client gets its 503 after a handshake, as over plain
/// HTTP, and the connections held are unaffected: in the modes with loops (driven like any
/// connection), in threaded mode (by a thread for each; its acceptor cannot wait on a client)
/// and in fork mode (by a child for each, as its parent cannot either); none waits on another
/// that stalls (threaded mode's one refusing thread did, until stop 77).
#[test]
fn past_max_connections_over_tls_is_a_503() {
    bounded(60, || {
        for mode in [Mode::Reactor, Mode::Uring, Mode::Threaded, Mode::Fork]
            .into_iter()
            .filter(|mode| common::runnable(*mode))
        {
            let mut cfg = tls_config(mode);
            cfg.max_connections = 2;
            let server = TestServer::start(cfg);
            let mut held: Vec<_> = (0..2).map(|_| connect(server.addr)).collect();
            for client in &mut held {
                assert_eq!(client.get("/hello").status, 200, "{mode:?}");
            }
            // Refused too, and never says a word: the others' 503s do not wait on it.
            let _stalled = TcpStream::connect(server.addr).unwrap();
            for _ in 0..3 {
                let start = Instant::now();
                let refused = connect(server.addr).get("/hello");
                assert_eq!(refused.status, 503, "{mode:?}");
                assert_eq!(refused.header("connection"), Some("close"), "{mode:?}");
                let took = start.elapsed();
                assert!(took < Duration::from_secs(2), "{mode:?}: {took:?}");
            }
            for client in &mut held {
                assert_eq!(client.get("/hello").status, 200, "{mode:?}");
            }
        }
    });
}

/// A connection on which nothing has come (a browser's preconnection) holds no stop: it is
/// closed at once, as an idle one is, in every mode. (It held the stop for the drain time, 4 s;
/// and on a handover, in threaded and blocking mode, the old process for the header timeout.)
#[test]
fn a_connection_that_sent_nothing_does_not_hold_a_stop() {
    bounded(60, || {
        for mode in common::modes() {
            let mut server = TestServer::start(tls_config(mode));
            let mut silent = accepted_silent(server.addr);
            let took = server.stop();
            assert!(took < Duration::from_secs(2), "{mode:?}: {took:?}");
            silent.expect_close();
        }
    });
}

/// A handshake the client has begun when the server is asked to stop goes on to the request it
/// is for, which is answered with `Connection: close`, as a request begun is. (In the modes with
/// loops, the drain, passed on during the handshake, let it finish and then closed the
/// connection under the request that came with the client's Finished; threaded mode answered
/// it, having looked later.) One loop, and a witness kept alive whose close says the stop has
/// begun; none in blocking mode, where it would wait in the backlog.
#[test]
fn a_handshake_begun_at_a_stop_goes_on_to_its_answer() {
    bounded(60, || {
        for mode in common::modes().filter(|mode| *mode != Mode::Blocking) {
            let mut cfg = tls_config(mode);
            cfg.cores = reactor_httpd::config::Cores::Count(1);
            let mut server = TestServer::start(cfg);
            let mut witness = connect(server.addr);
            assert_eq!(witness.get("/hello").status, 200, "{mode:?}");
            let mut begun = connect(server.addr);
            let (tls, sock) = (&mut begun.stream.conn, &mut begun.stream.sock);
            // The client's hello, and the server's flight after it: the client's Finished waits.
            tls.write_tls(sock).unwrap();
            while !tls.wants_write() {
                tls.read_tls(sock).unwrap();
                tls.process_new_packets().unwrap();
            }
            server.trigger_shutdown();
            witness.expect_close();
            // The Finished and the request, together, as clients send them.
            let request = b"GET /hello?begun HTTP/1.1\r\nHost: localhost\r\n\r\n";
            tls.writer().write_all(request).unwrap();
            while tls.wants_write() {
                tls.write_tls(sock).unwrap();
            }
            let response = begun.response();
            assert_eq!(response.text(), "Hello, World!", "{mode:?}");
            assert_eq!(response.header("connection"), Some("close"), "{mode:?}");
            begun.expect_close();
            // Closed, so that the server need not linger for them.
            drop((begun, witness));
            server.stop();
        }
    });
}

/// Nor a handover: the old process gives such a connection the wait an idle one gets for one
/// more request, and ends it. Threaded and blocking mode's old process waited for the header
/// timeout (10 s), past the drain time: their threads were never woken for it.
#[test]
fn a_connection_that_sent_nothing_does_not_hold_a_handover() {
    bounded(120, || {
        for mode in ["reactor", "uring", "threaded", "blocking", "fork"]
            .into_iter()
            .filter(|mode| common::runnable_name(mode))
        {
            let pki = pki();
            let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
            let flags = ["--tls-cert", cert, "--tls-key", key];
            let mut server = Upgrading::start(&binary(), mode, &pki.root, &flags);
            let mut silent = accepted_silent(server.addr);
            let new = server.upgrade();
            let took = silent.expect_close();
            assert!(took < Duration::from_secs(3), "{mode}: {took:?}");
            server.old_exits_cleanly();
            stop(new);
        }
    });
}

/// A connection that says nothing, once the server has accepted it.
fn accepted_silent(addr: SocketAddr) -> Client {
    let silent = Client::connect(addr);
    assert!(
        common::eventually(Duration::from_secs(5), || all_accepted(addr.port())),
        "not accepted"
    );
    silent
}

/// Whether no connection waits in the accept queues of the listeners on `port`: Linux shows a
/// listener's queue as its `rx_queue` in /proc/net/tcp.
fn all_accepted(port: u16) -> bool {
    let table = fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!(":{port:04X}");
    table.lines().skip(1).all(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // local_address, rem_address, st (0A: LISTEN), tx_queue:rx_queue
        !(fields[1].ends_with(&local) && fields[3] == "0A") || fields[4].ends_with(":00000000")
    })
}

/// ALPN: `http/1.1` chosen when offered (with anything else), `http/1.0` when it is all the
/// client offers (`curl --http1.0`), and a handshake refused when the client offers only
/// protocols we do not speak (`h2`).
#[test]
fn alpn_picks_the_version_offered() {
    bounded(60, || {
        let server = TestServer::start(tls_config(Mode::Reactor));
        let offering = |protocols: &[&[u8]]| {
            let mut config = (*default_client()).clone();
            config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
            tls_over(TcpStream::connect(server.addr).unwrap(), &Arc::new(config))
        };
        let mut both = offering(&[b"h2", b"http/1.0", b"http/1.1"]);
        assert_eq!(both.get("/hello").text(), "Hello, World!");
        assert_eq!(both.stream.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        let mut old = offering(&[b"http/1.0"]);
        let response = old.request(b"GET /hello HTTP/1.0\r\n\r\n");
        assert_eq!(response.text(), "Hello, World!");
        assert_eq!(old.stream.conn.alpn_protocol(), Some(&b"http/1.0"[..]));
        let mut h2 = offering(&[b"h2"]);
        h2.stream.conn.complete_io(&mut h2.stream.sock).unwrap_err();
    });
}

/// A client's close_notify is the end of its input, as a FIN is without TLS: requests sent
/// before it are answered in full, then the server says close_notify too and closes, at once
/// rather than at the keep-alive timeout (a client that waits for the server's close_notify,
/// as Python's `unwrap()` does, waited that long). In every mode.
#[test]
fn a_close_notify_ends_the_connection() {
    bounded(120, || {
        for mode in common::modes() {
            let mut config = tls_config(mode);
            // Far beyond the clients' read timeout: waiting for it fails the test.
            config.limits.keep_alive_timeout = Duration::from_secs(60);
            let server = TestServer::start(config);
            let ends = |client: &mut Client<TlsStream>, what: &str| {
                let start = Instant::now();
                let mut rest = Vec::new();
                // Ok only after the server's close_notify; a bare TCP close is an error.
                let ended = client.stream.read_to_end(&mut rest);
                assert!(ended.is_ok(), "{mode:?}, {what}: {ended:?}");
                assert!(rest.is_empty(), "{mode:?}, {what}: more came");
                assert!(start.elapsed() < Duration::from_secs(5), "{mode:?}, {what}");
            };
            // Requests, then at once the close_notify, in the same flight (after the
            // handshake: during one, rustls's server takes an alert for an error).
            let closing = |requests: &[u8]| {
                let mut client = connect(server.addr);
                let (conn, sock) = (&mut client.stream.conn, &mut client.stream.sock);
                while conn.is_handshaking() {
                    conn.complete_io(sock).unwrap();
                }
                client.stream.conn.writer().write_all(requests).unwrap();
                client.stream.conn.send_close_notify();
                client.stream.flush().unwrap();
                client
            };
            // Later, on a connection idle after its answer.
            let mut client = connect(server.addr);
            assert_eq!(client.get("/hello").status, 200, "{mode:?}");
            client.stream.conn.send_close_notify();
            client.stream.flush().unwrap();
            ends(&mut client, "idle");
            // Two pipelined requests: both are answered.
            let mut client = closing(
                b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n",
            );
            assert_eq!(client.response().text(), "0123456789abcdefghij", "{mode:?}");
            assert_eq!(client.response().text(), "Hello, World!", "{mode:?}");
            ends(&mut client, "pipelined");
            // A file larger than any buffer: all of it still comes.
            let mut client = closing(b"GET /8m.bin HTTP/1.1\r\nHost: t\r\n\r\n");
            assert!(
                client.response().body == pattern(8 << 20),
                "{mode:?}: bytes differ"
            );
            ends(&mut client, "file");
            // A request whose handler runs on the pool (reactor, uring): it is awaited.
            let mut client = closing(b"GET /sleep?ms=50 HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_eq!(client.response().text(), "slept 50 ms", "{mode:?}");
            ends(&mut client, "pool");
            // The server is none the worse.
            assert_eq!(connect(server.addr).get("/hello").status, 200, "{mode:?}");
        }
    });
}

/// TLS 1.3 key updates from the client (RFC 8446 4.6.3), each asking the server to update its
/// keys too: between requests, and while the server is in the middle of an 8 MiB body. The
/// connection goes on, every byte intact, in every mode.
#[test]
fn key_updates_keep_the_connection() {
    bounded(120, || {
        for mode in common::modes() {
            let server = TestServer::start(tls_config(mode));
            let mut client = tls_over(
                TcpStream::connect(server.addr).unwrap(),
                &client_config(&[&rustls::version::TLS13]),
            );
            assert_eq!(client.get("/hello").text(), "Hello, World!", "{mode:?}");
            client.stream.conn.refresh_traffic_keys().unwrap();
            assert_eq!(client.get("/hello").text(), "Hello, World!", "{mode:?}");
            // The next request waits behind the download; the update goes between them.
            client.send(b"GET /8m.bin HTTP/1.1\r\nHost: t\r\n\r\n");
            client.stream.conn.refresh_traffic_keys().unwrap();
            client.send(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
            assert!(
                client.response().body == pattern(8 << 20),
                "{mode:?}: the download differs"
            );
            assert_eq!(client.response().text(), "0123456789abcdefghij", "{mode:?}");
        }
    });
}

/// A file goes out through TLS byte for byte: 100 MiB in reactor mode, 8 MiB in the others;
/// then a range of it.
#[test]
fn large_files_over_tls() {
    bounded(300, || {
        let big = pki().root.join("100m.bin");
        if !big.exists() {
            let mut file = fs::File::create(&big).unwrap();
            let block = pattern(1 << 20);
            for _ in 0..100 {
                file.write_all(&block).unwrap();
            }
        }
        for mode in common::modes() {
            let server = TestServer::start(tls_config(mode));
            let mut client = connect(server.addr);
            let (path, bytes) = match mode {
                Mode::Reactor | Mode::Uring => ("/100m.bin", 100 << 20),
                _ => ("/8m.bin", 8 << 20),
            };
            let response = client.get(path);
            // A range that starts and ends inside a piece of the file: it is read at its offset.
            // Asked at once, on the same connection: checking 100 MiB first could take a debug
            // build past the keep-alive timeout.
            let (first, last) = (1_000_003, 1_100_000);
            let range = client.request(
                format!("GET {path} HTTP/1.1\r\nHost: t\r\nRange: bytes={first}-{last}\r\n\r\n")
                    .as_bytes(),
            );
            assert_eq!(response.status, 200, "{mode:?}");
            assert_eq!(response.body.len(), bytes, "{mode:?}");
            let whole = fs::read(pki().root.join(&path[1..])).unwrap();
            assert!(response.body == whole, "{mode:?}: the download differs");
            assert_eq!(range.status, 206, "{mode:?}");
            assert!(range.body == whole[first..=last], "{mode:?}");
        }
    });
}

/// A client that stops reading a TLS download holds up nobody else; when it reads again, it
/// gets every byte. In every mode that serves more than one connection at a time.
#[test]
fn a_slow_tls_reader_stalls_only_itself() {
    bounded(120, || {
        // Blocking mode serves one connection at a time: a slow reader stalls everyone there.
        for mode in common::modes().filter(|&mode| mode != Mode::Blocking) {
            slow_tls_reader(mode);
        }
    });
}

fn slow_tls_reader(mode: Mode) {
    let server = TestServer::start(tls_config(mode));
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let mut slow = tls_over(socket.into(), &default_client());
    slow.send(b"GET /8m.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    // Not reading: the server's sends to it block. Others are served meanwhile.
    for _ in 0..20 {
        let start = Instant::now();
        assert_eq!(connect(server.addr).get("/hello").status, 200, "{mode:?}");
        assert!(start.elapsed() < Duration::from_secs(2), "{mode:?}");
    }
    let response = slow.response();
    assert!(
        response.body == pattern(8 << 20),
        "{mode:?}: the slow download differs"
    );
}

/// A client that asks for a large file and reads none of it is given up on `--send-timeout`
/// after the socket last took something, over plain HTTP and TLS, in every mode, counted as a
/// send timeout; others are served meanwhile (the scrapes). Blocking drivers once waited in
/// sendfile, which SO_SNDTIMEO does not bound (threaded: 8 s for a 2 s timeout), and over TLS
/// the ciphertext the client had not taken, with the close_notify behind it, waited with no
/// timeout at all once the HTTP connection had handed its last bytes over.
#[test]
fn a_client_that_stops_reading_is_given_up_on() {
    bounded(120, || {
        for mode in common::modes() {
            for tls in [false, true] {
                let mut config = match tls {
                    true => tls_config(mode),
                    false => Config {
                        root: pki().root.clone(),
                        ..config(mode)
                    },
                };
                config.limits.send_timeout = Duration::from_secs(1);
                config.metrics_path = Some("/metrics".into());
                let server = TestServer::start(config);
                let scrape = || match tls {
                    true => connect(server.addr).get("/metrics").text(),
                    false => server.connect().get("/metrics").text(),
                };
                let socket =
                    socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                        .unwrap();
                socket.set_recv_buffer_size(16 * 1024).unwrap();
                socket.connect(&server.addr.into()).unwrap();
                let tcp: TcpStream = socket.into();
                let request = b"GET /8m.bin HTTP/1.1\r\nHost: t\r\n\r\n";
                let start = Instant::now();
                // Held, unread, until the end.
                let _stuck: Box<dyn std::any::Any> = match tls {
                    true => {
                        let mut client = tls_over(tcp, &default_client());
                        client.send(request);
                        Box::new(client)
                    }
                    false => {
                        (&tcp).write_all(request).unwrap();
                        Box::new(tcp)
                    }
                };
                let mut text = String::new();
                let counted = common::eventually(Duration::from_secs(6), || {
                    text = scrape();
                    sum(&text, "reactor_httpd_timeouts_total", "kind=\"send\"") == 1
                });
                let took = start.elapsed();
                assert!(counted, "{mode:?} tls {tls}: no send timeout: {text}");
                assert!(
                    took >= Duration::from_secs(1) && took < Duration::from_millis(2500),
                    "{mode:?} tls {tls}: given up on after {took:?}"
                );
                // Closed: only the scraping connection is open (fork mode's parent counts a
                // child's connection closed once it has reaped the child).
                let closed = common::eventually(Duration::from_secs(2), || {
                    text = scrape();
                    sum(&text, "reactor_httpd_connections_open", "") == 1
                });
                assert!(closed, "{mode:?} tls {tls}: {text}");
            }
        }
    });
}

/// The sum over loops of the series `name` whose labels contain `label`.
fn sum(text: &str, name: &str, label: &str) -> u64 {
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Plain HTTP to the TLS port: a plain-text 400 saying so (to a HEAD, its head alone), then the
/// connection closes. Its head is every response's: `--header` fields, but not
/// Strict-Transport-Security over plain HTTP (RFC 6797 7.2); counted in the metrics as a 4xx.
#[test]
fn plain_http_on_the_tls_port_is_told_so() {
    bounded(60, || {
        for mode in common::modes() {
            let logs = tempdir(&format!("tls-plain-{mode:?}"));
            let log = logs.join("access.log");
            let mut config = tls_config(mode);
            config.access_log = AccessLogTarget::File(log.clone());
            config.metrics_path = Some("/metrics".into());
            config.headers = vec![
                ("X-Frame-Options".into(), "DENY".into()),
                ("Strict-Transport-Security".into(), "max-age=60".into()),
            ];
            let mut server = TestServer::start(config);
            let mut plain = Client::connect(server.addr);
            let response = plain.get("/hello");
            assert_eq!(response.status, 400, "{mode:?}");
            assert!(response.text().contains("speaks HTTPS"), "{mode:?}");
            assert!(response.header("Date").is_some());
            assert_eq!(response.header("Server"), Some("reactor-httpd"));
            assert_eq!(response.header("X-Frame-Options"), Some("DENY"), "{mode:?}");
            let hsts = response.header("Strict-Transport-Security");
            assert_eq!(hsts, None, "{mode:?}: HSTS over plain HTTP");
            let text_len = response.body.len();
            plain.expect_close();
            drop(plain);
            // A HEAD gets the head alone (its Content-Length that of the text it would have had).
            let mut plain = Client::connect(server.addr);
            plain.send(b"HEAD /hello HTTP/1.1\r\nHost: test\r\n\r\n");
            let response = plain.head_response();
            assert_eq!(response.status, 400, "{mode:?}");
            assert!(response.header("Content-Length").is_some(), "{mode:?}");
            assert_eq!(plain.read_to_end(), b"", "{mode:?}: a body after the head");
            drop(plain);
            let served = connect(server.addr).get("/hello");
            assert_eq!(served.status, 200);
            assert_eq!(
                served.header("Strict-Transport-Security"),
                Some("max-age=60")
            );
            // The two refusals are responses of the 4xx class, for no request.
            let text = connect(server.addr).get("/metrics").text();
            let refused = sum(&text, "reactor_httpd_responses_total", "class=\"4xx\"");
            assert_eq!(refused, 2, "{mode:?}: {text}");
            // Logged as 400 with no request, each with the size of the body it was sent.
            server.stop();
            let lines = fs::read_to_string(&log).unwrap();
            // In the order each loop wrote its lines out, which need not be the requests'.
            let mut sizes = common::logged_sizes(&lines, "\"-\" 400 ");
            sizes.sort();
            let text = text_len.to_string();
            assert_eq!(sizes, ["-", text.as_str()], "{mode:?}: {lines}");
        }
    });
}

/// Garbage, a truncated record, a ClientHello that stops, a reset mid-handshake: each such
/// connection is closed (the stalled ones by the header timeout), and a good client is served
/// after each.
#[test]
fn bad_tls_input_is_closed_and_harms_nobody() {
    bounded(120, || {
        for mode in common::modes() {
            let mut config = tls_config(mode);
            config.limits.header_timeout = Duration::from_secs(1);
            let server = TestServer::start(config);
            let expect_closed = |bytes: &[u8], within: Duration| {
                let mut raw = TcpStream::connect(server.addr).unwrap();
                raw.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                raw.write_all(bytes).unwrap();
                let start = Instant::now();
                // An alert may come first; then the end of the stream (or a reset).
                let mut sink = Vec::new();
                let _ = raw.read_to_end(&mut sink);
                assert!(start.elapsed() < within, "{mode:?}: not closed in time");
                assert_eq!(connect(server.addr).get("/hello").status, 200);
            };
            // Not TLS at all.
            expect_closed(b"\x00\x01\x02\x03garbage", Duration::from_secs(5));
            // A handshake record whose content is nonsense.
            expect_closed(b"\x16\x03\x01\x00\x05hello", Duration::from_secs(5));
            // A record header promising 512 bytes, 3 of which come: the header timeout ends it.
            expect_closed(b"\x16\x03\x01\x02\x00abc", Duration::from_secs(5));
            // A real ClientHello, cut short.
            let hello = client_hello();
            expect_closed(&hello[..hello.len() / 2], Duration::from_secs(5));
            // Reset mid-handshake.
            let raw = TcpStream::connect(server.addr).unwrap();
            (&raw).write_all(&hello[..10]).unwrap();
            socket2::SockRef::from(&raw)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(raw);
            assert_eq!(connect(server.addr).get("/hello").status, 200);
        }
    });
}

/// The first flight of a real rustls client.
fn client_hello() -> Vec<u8> {
    let name = ServerName::try_from("localhost").unwrap();
    let mut conn = ClientConnection::new(default_client(), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

/// A second connection resumes the first one's session: a TLS 1.3 ticket, and TLS 1.2 too. In
/// every mode: in fork mode the two connections are served by two children, and the ticket one
/// made must be good in the other (it was not: `Session::before_fork`).
#[test]
fn sessions_resume() {
    bounded(60, || {
        for mode in common::modes() {
            sessions_resume_in(mode);
        }
    });
}

fn sessions_resume_in(mode: Mode) {
    let server = TestServer::start(tls_config(mode));
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let config = client_config(versions);
        let mut first = tls_over(TcpStream::connect(server.addr).unwrap(), &config);
        assert_eq!(first.get("/hello").status, 200);
        assert_eq!(
            first.stream.conn.handshake_kind(),
            Some(HandshakeKind::Full)
        );
        // TLS 1.3 tickets arrive after the handshake; the response above brought them.
        let mut second = tls_over(TcpStream::connect(server.addr).unwrap(), &config);
        assert_eq!(second.get("/hello").status, 200);
        assert_eq!(
            second.stream.conn.handshake_kind(),
            Some(HandshakeKind::Resumed),
            "{mode:?}, {versions:?}"
        );
    }
}

/// A download under way when the server is asked to stop completes before it exits, in every
/// mode.
#[test]
fn shutdown_finishes_a_tls_download() {
    bounded(60, || {
        for mode in common::modes() {
            let mut server = TestServer::start(tls_config(mode));
            let mut client = connect(server.addr);
            client.send(b"GET /8m.bin HTTP/1.1\r\nHost: t\r\n\r\n");
            let mut first = [0; 1024];
            let n = client.stream.read(&mut first).unwrap();
            assert!(n > 0);
            server.trigger_shutdown();
            let mut rest = Vec::new();
            match client.stream.read_to_end(&mut rest) {
                Ok(_) => {}
                // The server's close_notify may be followed by the TCP close at once.
                Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {}
                Err(err) => panic!("{mode:?}: {err}"),
            }
            let mut all = first[..n].to_vec();
            all.extend_from_slice(&rest);
            let body_at = common::find(&all, b"\r\n\r\n").unwrap() + 4;
            assert!(all[body_at..] == pattern(8 << 20), "{mode:?}: bytes differ");
            server.stop();
        }
    });
}

/// A request whose record has begun to arrive when the server is asked to stop is a request in
/// flight, as its first bytes would be without TLS: it is answered, then the connection ends
/// with a close_notify. In every mode.
#[test]
fn a_request_begun_at_shutdown_is_answered() {
    bounded(120, || {
        for mode in common::modes() {
            let mut config = tls_config(mode);
            // One loop, so that the witness's close means this connection has seen the drain.
            config.cores = reactor_httpd::config::Cores::Count(1);
            let mut server = TestServer::start(config);
            // Idle, so closed as soon as the drain begins. (Blocking mode serves one connection
            // at a time; there, bytes unread at shutdown keep a connection from being woken.)
            let mut witness = (mode != Mode::Blocking).then(|| connect(server.addr));
            if let Some(witness) = &mut witness {
                assert_eq!(witness.get("/hello").status, 200, "{mode:?}");
            }
            let mut client = connect(server.addr);
            client.stream.sock.set_nodelay(true).unwrap();
            assert_eq!(client.get("/hello").status, 200, "{mode:?}");
            // The next request as one record, of which the first 10 bytes go now.
            let request = b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n";
            client.stream.conn.writer().write_all(request).unwrap();
            let mut record = Vec::new();
            client.stream.conn.write_tls(&mut record).unwrap();
            client.stream.sock.write_all(&record[..10]).unwrap();
            server.trigger_shutdown();
            if let Some(witness) = &mut witness {
                witness.expect_close();
            }
            client.stream.sock.write_all(&record[10..]).unwrap();
            // Answered as the request in flight, then the connection ends with a close_notify.
            let response = (client.try_response()).unwrap_or_else(|err| panic!("{mode:?}: {err}"));
            assert_eq!(response.text(), "0123456789abcdefghij", "{mode:?}");
            // (Fork mode answered with keep-alive in about 1 run in 20 while its children
            // learned of the stop only from a signal each: see `Told` in shutdown.rs.)
            assert_eq!(response.header("connection"), Some("close"), "{mode:?}");
            client.expect_close();
            // Closed, so that the server need not linger for it.
            drop(client);
            server.stop();
        }
    });
}

/// curl, with our certificate as its only trust anchor (`.ci/run` installs curl).
#[test]
fn curl_trusts_the_certificate_it_is_given() {
    bounded(60, || {
        let server = TestServer::start(tls_config(Mode::Reactor));
        let port = server.addr.port();
        let stdout = common::curl(|curl| {
            curl.args(["-sS", "--http1.1", "--cacert"])
                .arg(&pki().cert)
                .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
                .arg(format!("https://localhost:{port}/hello"))
                .arg(format!("https://localhost:{port}/small.txt"))
        });
        assert_eq!(stdout, b"Hello, World!0123456789abcdefghij");
    });
}

/// `--tls-self-signed`: a certificate made at start for localhost, 127.0.0.1 and ::1, and its
/// SHA-256 fingerprint on stderr. The certificate openssl is shown must have that fingerprint, and
/// a client that trusts it alone must verify it under each of the three names.
#[test]
fn a_self_signed_certificate_is_made_at_start() {
    bounded(60, || {
        let mut config = config(Mode::Reactor);
        config.tls = Some(TlsSource::SelfSigned);
        let mut server = TestServer::subprocess(&config, |command| {
            command.stderr(Stdio::piped());
        });
        let stderr = server.child().unwrap().stderr.take().unwrap();
        let mut line = String::new();
        BufReader::new(stderr).read_line(&mut line).unwrap();
        let printed = line
            .trim_end()
            .strip_prefix(
                "reactor-httpd: self-signed certificate for localhost, 127.0.0.1 and ::1, SHA-256 ",
            )
            .unwrap_or_else(|| panic!("{line:?}"))
            .to_string();
        let der = certificate_shown(server.addr);
        let fingerprint: Vec<String> = Sha256::digest(&der)
            .iter()
            .map(|byte| format!("{byte:02X}"))
            .collect();
        assert_eq!(fingerprint.join(":"), printed);
        let trusting = Arc::new(client_trusting(der, rustls::DEFAULT_VERSIONS));
        for name in ["localhost", "127.0.0.1", "::1"] {
            let tcp = TcpStream::connect(server.addr).unwrap();
            let mut client = tls_over_as(tcp, &trusting, name);
            assert_eq!(client.get("/hello").text(), "Hello, World!", "{name}");
        }
    });
}

/// The certificate the server at `addr` shows openssl.
fn certificate_shown(addr: SocketAddr) -> CertificateDer<'static> {
    let shown = Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(addr.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap_or_else(|err| panic!("openssl is needed (apt-get install openssl): {err}"));
    CertificateDer::from_pem_slice(&shown.stdout)
        .unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(&shown.stdout)))
}

/// SIGHUP with `--tls-self-signed`: the new process serves the certificate the old one made
/// (handed over on the readiness socket) and prints the same fingerprint, so a client that
/// trusts that certificate alone goes on trusting the server; twice in a row, in every mode.
#[test]
fn an_upgrade_keeps_the_self_signed_certificate() {
    bounded(120, || {
        let root = tempdir("tls-upgrade-self-signed");
        for mode in ["reactor", "uring", "threaded", "blocking", "fork"]
            .into_iter()
            .filter(|mode| common::runnable_name(mode))
        {
            let mut server = Upgrading::start(&binary(), mode, &root, &["--tls-self-signed"]);
            let printed = server.stderr_line("self-signed certificate for localhost");
            let trusting = Arc::new(client_trusting(
                certificate_shown(server.addr),
                rustls::DEFAULT_VERSIONS,
            ));
            for _ in 0..2 {
                server.sighup();
                let lines = server.stderr_until("handed over to pid ");
                server.took_over(lines.last().unwrap());
                assert!(lines.contains(&printed), "{mode}: {lines:?}");
                let tcp = TcpStream::connect(server.addr).unwrap();
                let mut client = tls_over(tcp, &trusting);
                assert_eq!(client.get("/hello").text(), "Hello, World!", "{mode}");
            }
            stop(server.current);
        }
    });
}

/// A certificate renewed in place (new files at the paths given) is served after SIGHUP, as an
/// operator renews one with nginx; a renewal half done (the new certificate, the old key) fails
/// the upgrade, and the old process serves on with the certificate it has.
#[test]
fn an_upgrade_serves_a_renewed_certificate() {
    bounded(120, || {
        let dir = tempdir("tls-renewed");
        let (first, second) = (dir.join("first"), dir.join("second"));
        fs::create_dir(&first).unwrap();
        fs::create_dir(&second).unwrap();
        let old = common::self_signed(&first, &["localhost", "127.0.0.1"]);
        let new = common::self_signed(&second, &["localhost", "127.0.0.1"]);
        let (cert, key) = (dir.join("site.crt"), dir.join("site.key"));
        for mode in ["reactor", "fork"]
            .into_iter()
            .filter(|mode| common::runnable_name(mode))
        {
            fs::copy(&old.cert, &cert).unwrap();
            fs::copy(&old.key, &key).unwrap();
            let flags = [
                "--tls-cert",
                cert.to_str().unwrap(),
                "--tls-key",
                key.to_str().unwrap(),
            ];
            let mut server = Upgrading::start(&binary(), mode, &pki().root, &flags);
            assert_eq!(certificate_shown(server.addr), old.der, "{mode}");
            fs::copy(&new.cert, &cert).unwrap();
            server.sighup();
            let lines = server.stderr_until("upgrade failed: ");
            assert!(lines[0].contains("do not make a usable pair"), "{lines:?}");
            assert_eq!(certificate_shown(server.addr), old.der, "{mode}");
            fs::copy(&new.key, &key).unwrap();
            let new_pid = server.upgrade();
            server.old_exits_cleanly();
            assert_eq!(certificate_shown(server.addr), new.der, "{mode}");
            let trusting = Arc::new(client_trusting(new.der.clone(), rustls::DEFAULT_VERSIONS));
            let mut client = tls_over(TcpStream::connect(server.addr).unwrap(), &trusting);
            assert_eq!(client.get("/hello").text(), "Hello, World!", "{mode}");
            stop(new_pid);
        }
    });
}

/// Bad certificate flags: one line on stderr, exit 2.
#[test]
fn bad_certificates_are_usage_errors() {
    bounded(60, || {
        let pki = pki();
        let other = tempdir("tls-other");
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        fs::write(other.join("key.pem"), made.signing_key.serialize_pem()).unwrap();
        fs::write(other.join("empty.pem"), b"").unwrap();
        let cases: Vec<(Vec<PathBuf>, &str)> = vec![
            (
                vec![other.join("missing.pem"), pki.key.clone()],
                "--tls-cert",
            ),
            (
                vec![pki.cert.clone(), other.join("missing.pem")],
                "--tls-key",
            ),
            (
                vec![other.join("empty.pem"), pki.key.clone()],
                "no certificate",
            ),
            (
                vec![pki.cert.clone(), other.join("key.pem")],
                "do not make a usable pair",
            ),
        ];
        for (files, says) in cases {
            let output = Command::new(binary())
                .args(["--bind", "127.0.0.1:0", "--tls-cert"])
                .arg(&files[0])
                .arg("--tls-key")
                .arg(&files[1])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{stderr}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(stderr.contains(says), "{stderr:?} should say {says:?}");
        }
        let output = Command::new(binary())
            .args(["--bind", "127.0.0.1:0", "--tls-cert"])
            .arg(&pki.cert)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
    });
}

/// SIGHUP over TLS: a client kept alive across the upgrade is answered by the old process,
/// which then ends the connection; new clients are served by the new one, with the same
/// certificate.
#[test]
fn an_upgrade_over_tls() {
    bounded(60, || {
        let pki = pki();
        let cert = pki.cert.to_string_lossy().into_owned();
        let key = pki.key.to_string_lossy().into_owned();
        for mode in ["reactor", "uring", "threaded", "blocking", "fork"]
            .into_iter()
            .filter(|mode| common::runnable_name(mode))
        {
            let mut server = Upgrading::start(
                &binary(),
                mode,
                &pki.root,
                &["--tls-cert", &cert, "--tls-key", &key],
            );
            let mut kept = connect(server.addr);
            assert_eq!(kept.get("/hello").status, 200);
            let new = server.upgrade();
            let last = kept.get("/hello");
            assert_eq!(last.status, 200, "{mode}");
            // Then the old process ends the connection (at once if the answer said
            // `Connection: close`; after the idle grace if the request beat the handover to
            // this connection's loop).
            let mut rest = Vec::new();
            match kept.stream.read_to_end(&mut rest) {
                Ok(_) => assert!(rest.is_empty(), "{mode}: more after the last answer"),
                Err(err) => assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{mode}"),
            }
            assert_eq!(connect(server.addr).get("/hello").status, 200);
            server.old_exits_cleanly();
            stop(new);
        }
    });
}

/// A ClientHello sent a byte at a time, slowly: the handshake counts under the header timeout,
/// so the connection is closed when it runs out, and a good client is served meanwhile (in
/// blocking mode, which serves one connection at a time, once it is closed). In every mode.
#[test]
fn a_client_hello_dripped_byte_by_byte_is_timed_out() {
    bounded(120, || {
        for mode in common::modes() {
            dripped_client_hello(mode);
        }
    });
}

fn dripped_client_hello(mode: Mode) {
    let mut config = tls_config(mode);
    config.limits.header_timeout = Duration::from_secs(1);
    let server = TestServer::start(config);
    let hello = client_hello();
    let mut raw = TcpStream::connect(server.addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut closed = false;
    for &byte in &hello {
        // The pace of the drip: each byte waits for the read below to time out.
        if raw.write_all(&[byte]).is_err() {
            closed = true;
            break;
        }
        let mut sink = [0; 64];
        match raw.read(&mut sink) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
        assert_eq!(connect(server.addr).get("/hello").status, 200);
    }
    assert!(closed, "{mode:?}: the dripped handshake was never cut off");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{mode:?}: {:?}",
        start.elapsed()
    );
}

/// A server name the certificate does not cover: served with the one certificate there is (as
/// nginx's default server does); the client decides whether to trust it.
#[test]
fn an_unknown_server_name_gets_the_certificate_there_is() {
    bounded(60, || {
        let server = TestServer::start(tls_config(Mode::Reactor));
        let mut child = Command::new("openssl")
            .args([
                "s_client",
                "-quiet",
                "-servername",
                "unknown.example",
                "-connect",
            ])
            .arg(server.addr.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("openssl is needed (apt-get install openssl): {err}"));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"GET /hello HTTP/1.1\r\nHost: unknown.example\r\nConnection: close\r\n\r\n")
            .unwrap();
        let output = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.ends_with("Hello, World!"), "{text}");
    });
}
