//! Serving a directory, over real sockets, in every mode: traversal refused, files sent with
//! sendfile (slow readers, shrinking files), directories, caching, ranges, errors.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::proc::open_fds;
use common::{Client, Response, TestServer, bounded, config, listening_addr};
use reactor_httpd::config::Mode;

/// A document root built for the test, with a secret next to it that must never be served.
struct Site {
    base: PathBuf,
    root: PathBuf,
    big: Vec<u8>,
}

impl Site {
    fn new(tag: &str) -> Site {
        let base = std::env::temp_dir().join(format!(
            "static-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&base);
        let root = base.join("www");
        fs::create_dir_all(root.join("docs/empty-dir")).unwrap();
        fs::create_dir_all(root.join("with-index")).unwrap();
        fs::write(base.join("secret.txt"), "TOP SECRET").unwrap();
        fs::write(root.join("hello.txt"), "hello from a file\n").unwrap();
        fs::write(root.join("page.html"), "<p>page</p>").unwrap();
        fs::write(root.join("data.bin.unknownext"), [0u8, 1, 2, 3]).unwrap();
        fs::write(root.join("empty.txt"), "").unwrap();
        fs::write(root.join("with space.txt"), "spaced").unwrap();
        fs::write(root.join("café ☕.txt"), "unicode").unwrap();
        fs::write(root.join(".env"), "PASSWORD=hunter2").unwrap();
        // Never served (a backslash is a separator to some clients), so never listed either.
        fs::write(root.join("back\\slash.txt"), "unreachable").unwrap();
        fs::write(root.join("docs/readme.txt"), "docs").unwrap();
        fs::write(root.join("docs/.hidden"), "hidden").unwrap();
        fs::write(root.join("with-index/index.html"), "<h1>index</h1>").unwrap();
        fs::write(root.join("digits.txt"), "0123456789").unwrap();
        symlink(base.join("secret.txt"), root.join("escape-link")).unwrap();
        symlink("docs/readme.txt", root.join("inner-link")).unwrap();
        let big: Vec<u8> = (0..5u32 << 20)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        fs::write(root.join("big.bin"), &big).unwrap();
        Site { base, root, big }
    }

    fn serve(&self, mode: Mode) -> TestServer {
        let mut cfg = config(mode);
        cfg.root = self.root.clone();
        cfg.demo = false;
        TestServer::start(cfg)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

fn get(client: &mut Client, target: &str, extra: &str) -> Response {
    client.request(format!("GET {target} HTTP/1.1\r\nHost: t\r\n{extra}\r\n").as_bytes())
}

fn traversal_is_refused(mode: Mode) {
    let site = Site::new("traversal");
    let server = site.serve(mode);
    let mut client = server.connect();
    for target in [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/%2E%2E/secret.txt",
        "/docs/../../secret.txt",
        "/docs/%2e%2e/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/..%5csecret.txt",
        "/..\\secret.txt",
        "/hello.txt%00",
        "/escape-link",
        "/.env",
        "/docs/.hidden",
        "/%2eenv",
        "/missing.txt",
        "/hello.txt/",
        "http://t/../secret.txt",
    ] {
        let response = get(&mut client, target, "");
        assert_eq!(response.status, 404, "{target}");
        assert_eq!(
            response.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert!(response.text().contains("404 Not Found"));
        assert!(!response.text().contains("SECRET") && !response.text().contains("hunter2"));
    }
    assert_eq!(get(&mut client, "/bad%zzescape", "").status, 400);
    // The query string plays no part in the lookup; a link inside ROOT works.
    assert_eq!(
        get(&mut client, "/hello.txt?../../secret.txt", "").text(),
        "hello from a file\n"
    );
    assert_eq!(get(&mut client, "/inner-link", "").text(), "docs");
}

/// Sets the modification time of the file at `path` (its times are set, never waited for).
fn set_modified(path: &Path, at: SystemTime) {
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_modified(at).unwrap();
}

fn files(mode: Mode) {
    let site = Site::new("files");
    let server = site.serve(mode);
    let mut client = server.connect();
    let response = get(&mut client, "/hello.txt", "");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "hello from a file\n");
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(response.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        get(&mut client, "/page.html", "").header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let unknown = get(&mut client, "/data.bin.unknownext", "");
    assert_eq!(
        unknown.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(unknown.body, [0, 1, 2, 3]);
    assert_eq!(get(&mut client, "/with%20space.txt", "").text(), "spaced");
    assert_eq!(
        get(&mut client, "/caf%C3%A9%20%E2%98%95.txt", "").text(),
        "unicode"
    );
    let empty = get(&mut client, "/empty.txt", "");
    assert_eq!(
        (empty.status, empty.header("content-length")),
        (200, Some("0"))
    );

    client.send(b"HEAD /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = client.head_response();
    assert_eq!(head.header("content-length"), Some("18"));
    assert!(head.body.is_empty());
    for method in ["POST", "PUT", "DELETE", "PATCH", "TRACE"] {
        let response = client.request(
            format!("{method} /hello.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
                .as_bytes(),
        );
        assert_eq!(response.status, 405, "{method}");
        assert_eq!(response.header("allow"), Some("GET, HEAD, OPTIONS"));
    }
    // OPTIONS: what a file, a directory or the server allows; a missing file is still 404.
    for target in ["/hello.txt", "/", "*"] {
        client.send(format!("OPTIONS {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let response = client.head_response();
        assert_eq!(response.status, 204, "{target}");
        assert_eq!(response.header("allow"), Some("GET, HEAD, OPTIONS"));
        assert_eq!(response.header("content-length"), None);
    }
    let response = client.request(b"OPTIONS /missing HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(response.status, 404);
    // Still the same keep-alive connection, still good.
    assert_eq!(get(&mut client, "/digits.txt", "").text(), "0123456789");
}

/// 5 MiB read 4 KiB at a time: sendfile meets a full socket again and again and must resume
/// exactly where it stopped.
fn big_file_read_slowly(mode: Mode) {
    let site = Site::new("big");
    let server = site.serve(mode);
    let mut client = server.connect();
    client.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut received = Vec::new();
    let mut chunk = [0; 4096];
    let head_end = loop {
        let n = client.stream.read(&mut chunk).unwrap();
        assert!(n > 0);
        received.extend_from_slice(&chunk[..n]);
        if let Some(end) = common::find(&received, b"\r\n\r\n") {
            break end + 4;
        }
    };
    assert!(String::from_utf8_lossy(&received[..head_end]).contains("Content-Length: 5242880\r\n"));
    while received.len() < head_end + site.big.len() {
        let n = client.stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed after {} bytes", received.len() - head_end);
        received.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(received.len(), head_end + site.big.len(), "nothing extra");
    assert!(received[head_end..] == site.big[..], "the file differs");
    assert_eq!(get(&mut client, "/hello.txt", "").status, 200);
}

/// A file truncated while it is being sent: the response cannot be completed, so the
/// connection ends after the bytes the file still has (no garbage, no hang), and the server
/// goes on serving others. The client's small window keeps the server waiting on the socket,
/// not inside a sendfile call, when the file shrinks: a truncation that races a sendfile call in
/// progress can make the kernel send zeros for the vanished part (see the note on issue 3).
fn shrinking_file(mode: Mode) {
    let site = Site::new("shrink");
    let path = site.root.join("shrinking.bin");
    fs::write(&path, vec![b'x'; 32 << 20]).unwrap();
    let server = site.serve(mode);
    let mut client = Client::connect_with_small_window(server.addr, 4096);
    client.send(b"GET /shrinking.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut head = Vec::new();
    let mut byte = [0; 1];
    while !head.ends_with(b"\r\n\r\n") {
        client.stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(String::from_utf8_lossy(&head).contains("Content-Length: 33554432"));
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let mut total = 0;
    let mut chunk = [0; 65536];
    loop {
        match client.stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                assert!(chunk[..n].iter().all(|&b| b == b'x'), "only file bytes");
                total += n;
            }
            Err(err) => panic!("{err} after {total} bytes"),
        }
    }
    assert_eq!(total, 8 << 20, "the file's remaining bytes, then the end");
    let mut other = server.connect();
    assert_eq!(get(&mut other, "/hello.txt", "").status, 200);
}

/// The access log gives a file body the bytes that reached the wire, as nginx's
/// `$body_bytes_sent` does: the whole file, a range, every part of several; for a download cut
/// short by its client, what went before it left, not the length the head announced. Each line
/// is written when its body ends, so lines follow the order the bodies ended in.
fn downloads_are_logged_with_what_was_sent(mode: Mode) {
    let site = Site::new("logged");
    let big = site.root.join("cut.bin");
    fs::File::create(&big).unwrap().set_len(32 << 20).unwrap();
    let log = site.base.join("access.log");
    let mut cfg = config(mode);
    cfg.root = site.root.clone();
    cfg.demo = false;
    cfg.access_log = reactor_httpd::config::AccessLogTarget::File(log.clone());
    let mut server = TestServer::start(cfg);
    let mut client = server.connect();
    assert_eq!(
        get(&mut client, "/hello.txt", "").text(),
        "hello from a file\n"
    );
    let range = get(&mut client, "/digits.txt", "Range: bytes=2-4\r\n");
    assert_eq!(range.text(), "234");
    let parts = get(&mut client, "/digits.txt", "Range: bytes=0-0,2-2\r\n");
    let parts_len = parts.header("content-length").unwrap().to_string();
    client.send(b"HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(client.head_response().status, 200);
    // Cut short, a file and several ranges of it: the head and the body's first byte read,
    // then gone, with most of the 32 MiB still to send.
    let ranges = "Range: bytes=0-15999999,16000000-31999999\r\n";
    for extra in ["", ranges] {
        let mut cut = Client::connect_with_small_window(server.addr, 16 * 1024);
        cut.send(format!("GET /cut.bin HTTP/1.1\r\nHost: t\r\n{extra}\r\n").as_bytes());
        let status = if extra.is_empty() { 200 } else { 206 };
        assert_eq!(cut.head_response().status, status);
        if cut.unread() == 0 {
            let mut byte = [0; 1];
            cut.stream.read_exact(&mut byte).unwrap();
        }
    }
    server.stop();
    let text = fs::read_to_string(&log).unwrap();
    let size_of = |request: &str| common::logged_sizes(&text, request);
    assert_eq!(
        size_of("\"GET /hello.txt HTTP/1.1\" 200 "),
        ["18"],
        "{text}"
    );
    assert_eq!(
        size_of("\"GET /digits.txt HTTP/1.1\" 206 "),
        ["3", &parts_len[..]]
    );
    assert_eq!(size_of("\"HEAD /big.bin HTTP/1.1\" 200 "), ["-"]);
    for status in [200, 206] {
        let cut = size_of(&format!("\"GET /cut.bin HTTP/1.1\" {status} "));
        let [cut] = &cut[..] else {
            panic!("{mode:?}: one line for the download cut short:\n{text}");
        };
        let cut: u64 = cut.parse().expect("a size");
        assert!(
            cut > 0 && cut < 16 << 20,
            "{mode:?}: {cut} bytes logged for a download cut short"
        );
    }
}

/// A small file's head is held back for the file (MSG_MORE) and both leave in one TCP segment,
/// as counted by the client's own kernel (data segments received, from TCP_INFO), so nothing
/// here depends on timing. A head with no file after it (HEAD, 304, 404) is never held: each
/// comes, in one segment, while the client waits for it.
fn head_and_file_in_one_segment(mode: Mode) {
    let site = Site::new("segments");
    fs::write(site.root.join("small.css"), vec![b'a'; 4096]).unwrap();
    let server = site.serve(mode);
    let mut client = server.connect();
    let mut expected = 0;
    let mut answered = |client: &mut Client, response: &Response, status: u16, what: &str| {
        assert_eq!(response.status, status, "{what}");
        expected += 1;
        assert_eq!(
            data_segments_in(&client.stream),
            expected,
            "{what} in one segment"
        );
    };
    let mut etag = String::new();
    for _ in 0..3 {
        let response = get(&mut client, "/small.css", "");
        assert_eq!(response.body.len(), 4096);
        answered(&mut client, &response, 200, "a 4 KiB file");
        etag = response.header("etag").unwrap().to_owned();
    }
    let response = get(&mut client, "/small.css", "Range: bytes=10-99\r\n");
    assert_eq!(response.body.len(), 90);
    answered(&mut client, &response, 206, "a range");
    client.send(b"HEAD /small.css HTTP/1.1\r\nHost: t\r\n\r\n");
    let response = client.head_response();
    answered(&mut client, &response, 200, "a HEAD");
    let response = get(
        &mut client,
        "/small.css",
        &format!("If-None-Match: {etag}\r\n"),
    );
    answered(&mut client, &response, 304, "a 304");
    let response = get(&mut client, "/missing.css", "");
    answered(&mut client, &response, 404, "a 404");
}

/// How many segments with data the socket has received (Linux's `tcpi_data_segs_in`).
fn data_segments_in(stream: &std::net::TcpStream) -> u32 {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain data; the kernel writes at most `len` bytes of it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: an open socket, and `info` is room for `len` bytes.
    let done = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(done, 0, "TCP_INFO: {}", std::io::Error::last_os_error());
    info.tcpi_data_segs_in
}

fn directories(mode: Mode) {
    let site = Site::new("dirs");
    let server = site.serve(mode);
    let mut client = server.connect();
    let index = get(&mut client, "/with-index/", "");
    assert_eq!(
        (index.status, index.text().as_str()),
        (200, "<h1>index</h1>")
    );
    let moved = get(&mut client, "/docs?sort=name&x=%20", "");
    assert_eq!(moved.status, 301);
    assert_eq!(moved.header("location"), Some("/docs/?sort=name&x=%20"));
    assert_eq!(
        get(&mut client, "/with-index", "").header("location"),
        Some("/with-index/")
    );
    // A path that starts with two slashes names the same directory, but as a Location it would
    // be a reference to another host (`//docs/` is http://docs/): the redirect has one slash.
    for (path, location) in [
        ("//docs", "/docs/"),
        ("///docs?a=b", "/docs/?a=b"),
        ("//docs//empty-dir", "/docs//empty-dir/"),
    ] {
        let moved = get(&mut client, path, "");
        assert_eq!(moved.status, 301, "{path}");
        assert_eq!(moved.header("location"), Some(location), "{path}");
    }

    let listing = get(&mut client, "/docs/", "");
    assert_eq!(listing.status, 200);
    assert_eq!(
        listing.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = listing.text();
    assert!(html.contains("Index of /docs/"));
    assert!(html.contains("href=\"../\""));
    let dir = html.find("href=\"empty-dir/\"").unwrap();
    let file = html.find("href=\"readme.txt\"").unwrap();
    assert!(dir < file, "directories first");
    assert!(!html.contains("hidden"));

    let root = get(&mut client, "/", "").text();
    assert!(!root.contains("href=\"../\""), "no parent above ROOT");
    assert!(root.contains("href=\"with%20space.txt\">with space.txt</a>"));
    assert!(root.contains("href=\"caf%C3%A9%20%E2%98%95.txt\">café ☕.txt</a>"));
    assert!(!root.contains(".env") && !root.contains("secret"));
    assert!(
        !root.contains("slash.txt"),
        "a name no request can fetch is not listed"
    );
    assert_eq!(get(&mut client, "/back%5Cslash.txt", "").status, 404);
    let json = get(&mut client, "/?format=json", "").text();
    assert!(json.contains("with space.txt") && !json.contains("slash.txt"));
    // The listing's links work.
    assert_eq!(get(&mut client, "/with%20space.txt", "").text(), "spaced");
    let empty_dir = get(&mut client, "/docs/empty-dir/", "").text();
    assert!(empty_dir.contains("Index of /docs/empty-dir/"));

    // A name with control characters in it: shown by their pictures, linked as it is.
    fs::write(site.root.join("docs/empty-dir/a\nb\x1b[1m"), "controls").unwrap();
    let listed = get(&mut client, "/docs/empty-dir/", "").text();
    assert!(
        listed.contains("href=\"a%0Ab%1B%5B1m\">a\u{240a}b\u{241b}[1m</a>"),
        "{listed}"
    );
    assert_eq!(
        get(&mut client, "/docs/empty-dir/a%0Ab%1B%5B1m", "").text(),
        "controls"
    );
}

/// A listing has validators of its own, as a file has: a strong entity tag made of the page's
/// bytes (the HTML page and the JSON one differ) and a `Last-Modified` that is the latest
/// status change of the directory and of its entries. A browser that sends back what it was
/// given gets 304 with the tag, the date and `Vary`, and no page; once a file in the directory
/// is written, the page, its tag and its date change (a page is shared for up to a second, so
/// the new one is waited for), and the old tag gets the page again. `If-Match` and
/// `If-None-Match: *` are judged against the tag.
fn listings_are_validated(mode: Mode) {
    let site = Site::new("listing-validators");
    let server = site.serve(mode);
    let mut client = server.connect();
    let page = get(&mut client, "/docs/", "");
    assert_eq!(page.status, 200);
    let tag = page.header("etag").expect("an entity tag").to_string();
    let date = page.header("last-modified").expect("a date").to_string();
    assert!(tag.starts_with('"') && tag.ends_with('"'), "strong: {tag}");
    let json = get(&mut client, "/docs/?format=json", "");
    assert_ne!(json.header("etag"), Some(tag.as_str()), "another page");
    assert_eq!(
        get(&mut client, "/docs/", "").header("etag"),
        Some(tag.as_str()),
        "the same page, the same tag"
    );
    for condition in [
        format!("If-None-Match: {tag}\r\n"),
        format!("If-None-Match: W/{tag}\r\n"),
        format!("If-None-Match: \"other\", {tag}\r\n"),
        "If-None-Match: *\r\n".to_string(),
        format!("If-Modified-Since: {date}\r\n"),
    ] {
        let not_modified = get(&mut client, "/docs/", &condition);
        assert_eq!(not_modified.status, 304, "{condition}");
        assert!(not_modified.body.is_empty(), "{condition}");
        assert_eq!(not_modified.header("etag"), Some(tag.as_str()));
        assert_eq!(not_modified.header("last-modified"), Some(date.as_str()));
        assert_eq!(not_modified.header("vary"), Some("Accept"));
    }
    let head = client.request(
        format!("HEAD /docs/ HTTP/1.1\r\nHost: t\r\nIf-None-Match: {tag}\r\n\r\n").as_bytes(),
    );
    assert_eq!(head.status, 304);
    let earlier =
        httpdate::fmt_http_date(httpdate::parse_http_date(&date).unwrap() - Duration::from_secs(1));
    let cases = [
        (format!("If-Modified-Since: {earlier}\r\n"), 200),
        (
            format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {date}\r\n"),
            200,
        ),
        (format!("If-Match: {tag}\r\n"), 200),
        ("If-Match: \"other\"\r\n".to_string(), 412),
        (format!("If-Match: W/{tag}\r\n"), 412),
    ];
    for (condition, status) in cases {
        assert_eq!(
            get(&mut client, "/docs/", &condition).status,
            status,
            "{condition}"
        );
    }

    fs::write(site.root.join("docs/readme.txt"), "docs, longer now").unwrap();
    let mut changed = None;
    assert!(
        common::eventually(Duration::from_secs(5), || {
            let page = get(&mut client, "/docs/", &format!("If-None-Match: {tag}\r\n"));
            let fresh = page.status == 200;
            changed = Some(page);
            fresh
        }),
        "the old tag still matches a changed page"
    );
    let changed = changed.unwrap();
    assert!(changed.text().contains("<td>16</td>"), "{}", changed.text());
    assert_ne!(changed.header("etag"), Some(tag.as_str()));
    let since = |response: &Response| {
        httpdate::parse_http_date(response.header("last-modified").unwrap()).unwrap()
    };
    assert!(since(&changed) >= since(&page));
}

/// A file's modification time is whatever the filesystem holds: before 1970, or centuries
/// ahead. Its validators, and a listing of its directory, still come out (a date before the
/// epoch reads as the epoch, though its entity tag keeps its own time; a later one as the
/// response's own time), where a formatter that refuses such dates would make the whole
/// directory unlistable.
fn dates_out_of_range(mode: Mode) {
    let site = Site::new("dates");
    let dated = |name: &str, at| {
        let file = fs::File::create(site.root.join("docs").join(name)).unwrap();
        file.set_modified(at).unwrap();
    };
    let year = Duration::from_secs(365 * 86_400);
    dated("old.txt", UNIX_EPOCH - 10 * year);
    dated("older.txt", UNIX_EPOCH - 20 * year);
    dated("new.txt", UNIX_EPOCH + 400 * year);
    let server = site.serve(mode);
    let mut client = server.connect();
    let epoch = "Thu, 01 Jan 1970 00:00:00 GMT";
    let old = get(&mut client, "/docs/old.txt", "");
    assert_eq!(old.status, 200);
    assert_eq!(old.header("last-modified"), Some(epoch));
    // Its dates read as the epoch, but its entity tag keeps its own time (as nginx writes a
    // negative time, with a minus sign): another version dated before 1970 gets another.
    assert_eq!(old.header("etag"), Some("\"-12cc0300-0\""));
    let older = get(&mut client, "/docs/older.txt", "");
    assert_eq!(older.header("last-modified"), Some(epoch));
    assert_ne!(older.header("etag"), old.header("etag"));
    let new = get(&mut client, "/docs/new.txt", "");
    assert_eq!(new.status, 200);
    // Never after the response's own Date (RFC 9110 8.8.2.1): at it, for a file dated later.
    assert_eq!(new.header("last-modified"), new.header("date"));
    let listing = get(&mut client, "/docs/", "");
    assert_eq!(listing.status, 200);
    let html = listing.text();
    assert!(
        html.contains(&format!("old.txt</a></td><td>0</td><td>{epoch}</td>")),
        "{html}"
    );
    assert!(html.contains("new.txt</a>"), "{html}");
    let json = get(&mut client, "/docs/?format=json", "");
    assert_eq!(json.status, 200);
    assert!(json.text().contains("\"mtime\":\"1970-01-01T00:00:00Z\""));
}

/// A file rewritten within one second, at the same size (an editor's save, a build's output),
/// keeps its `Last-Modified`, which has whole seconds only; its entity tag must still change, or
/// a browser revalidating with `If-None-Match` is told that its old copy is current (nginx's
/// tag, made of the second and the size, does not change). The times are set, not waited for.
fn rewritten_within_a_second(mode: Mode) {
    let site = Site::new("rewritten");
    let path = site.root.join("docs").join("same.txt");
    let second = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let write = |text: &str, nanos: u32| {
        fs::write(&path, text).unwrap();
        set_modified(&path, second + Duration::from_nanos(u64::from(nanos)));
        let kept = fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(
            kept,
            second + Duration::from_nanos(u64::from(nanos)),
            "the filesystem under the tests keeps no time finer than a second"
        );
    };
    write("version A\n", 100_000_000);
    let server = site.serve(mode);
    let mut client = server.connect();
    let first = get(&mut client, "/docs/same.txt", "");
    assert_eq!(first.text(), "version A\n");
    let tag = first.header("etag").unwrap().to_string();
    assert_eq!(
        get(
            &mut client,
            "/docs/same.txt",
            &format!("If-None-Match: {tag}\r\n")
        )
        .status,
        304
    );

    write("version B\n", 600_000_000);
    let again = get(
        &mut client,
        "/docs/same.txt",
        &format!("If-None-Match: {tag}\r\n"),
    );
    assert_eq!(again.status, 200, "the old copy is not current");
    assert_eq!(again.text(), "version B\n");
    assert_eq!(again.header("last-modified"), first.header("last-modified"));
    let new_tag = again.header("etag").unwrap();
    assert_ne!(new_tag, tag);
    // The old tag no longer holds for a range either: the whole new file, not a splice.
    let resumed = get(
        &mut client,
        "/docs/same.txt",
        &format!("Range: bytes=8-\r\nIf-Range: {tag}\r\n"),
    );
    assert_eq!(
        (resumed.status, resumed.text().as_str()),
        (200, "version B\n")
    );
    let current = get(
        &mut client,
        "/docs/same.txt",
        &format!("Range: bytes=8-\r\nIf-Range: {new_tag}\r\n"),
    );
    assert_eq!((current.status, current.text().as_str()), (206, "B\n"));
}

fn caching(mode: Mode) {
    let site = Site::new("caching");
    let server = site.serve(mode);
    let mut client = server.connect();
    let first = get(&mut client, "/hello.txt", "");
    let etag = first.header("etag").unwrap().to_string();
    let modified = first.header("last-modified").unwrap().to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'));
    assert!(httpdate::parse_http_date(&modified).is_ok());
    assert_eq!(first.header("cache-control"), None);

    // Each condition (or set of them) and the answer it gets.
    let cases = [
        (304, format!("If-None-Match: {etag}")),
        (304, format!("If-None-Match: \"nope\", W/{etag}")),
        (304, "If-None-Match: *".to_string()),
        (304, format!("If-Modified-Since: {modified}")),
        // If-None-Match wins when both are present, both ways.
        (
            304,
            format!("If-None-Match: {etag}\r\nIf-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT"),
        ),
        (
            200,
            format!("If-None-Match: \"nope\"\r\nIf-Modified-Since: {modified}"),
        ),
        // One list in two fields.
        (
            304,
            format!("If-None-Match: \"nope\"\r\nIf-None-Match: {etag}"),
        ),
        (200, "If-None-Match: \"nope\"".to_string()),
        (
            200,
            "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT".to_string(),
        ),
        // Later than the server's clock: not a date the client had from us, so ignored.
        (
            200,
            "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT".to_string(),
        ),
        // A date sent twice is no date.
        (
            200,
            format!("If-Modified-Since: {modified}\r\nIf-Modified-Since: {modified}"),
        ),
        // Preconditions that hold leave the rest to decide.
        (200, format!("If-Match: \"nope\", {etag}")),
        (200, "If-Match: *".to_string()),
        (200, format!("If-Unmodified-Since: {modified}")),
        (200, "If-Unmodified-Since: not a date".to_string()),
        (304, format!("If-Match: {etag}\r\nIf-None-Match: {etag}")),
        (
            304,
            format!("If-Unmodified-Since: {modified}\r\nIf-Modified-Since: {modified}"),
        ),
        // The client asked for a state the file is not in: 412, whatever else it asked.
        (412, "If-Match: \"nope\"".to_string()),
        (412, format!("If-Match: W/{etag}")),
        (
            412,
            "If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT".to_string(),
        ),
        (412, format!("If-Match: \"nope\"\r\nIf-None-Match: {etag}")),
        (
            412,
            "If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\nRange: bytes=0-1".to_string(),
        ),
    ];
    for (status, condition) in cases {
        let response = get(&mut client, "/hello.txt", &format!("{condition}\r\n"));
        assert_eq!(response.status, status, "{condition}");
        match status {
            304 => {
                assert!(response.body.is_empty());
                assert_eq!(response.header("content-length"), None);
                assert_eq!(response.header("etag"), Some(etag.as_str()));
            }
            200 => assert_eq!(response.text(), "hello from a file\n"),
            _ => assert!(!response.text().contains("hello from a file")),
        }
    }
    // A change to the file changes its validators.
    let path = site.root.join("hello.txt");
    fs::write(&path, "changed!").unwrap();
    set_modified(&path, UNIX_EPOCH + Duration::from_secs(2_000_000_000));
    let response = get(
        &mut client,
        "/hello.txt",
        &format!("If-None-Match: {etag}\r\n"),
    );
    assert_eq!(
        (response.status, response.text().as_str()),
        (200, "changed!")
    );
    // Dated after the server's clock (2033): its Last-Modified is no later than the response's
    // Date (RFC 9110 8.8.2.1). (The two come from clocks read a moment apart: a second apart at
    // most.)
    let header_date = |name| httpdate::parse_http_date(response.header(name).unwrap()).unwrap();
    let (date, claimed) = (header_date("date"), header_date("last-modified"));
    assert!(
        claimed <= date + Duration::from_secs(1),
        "Last-Modified {claimed:?} after Date {date:?}"
    );
}

fn ranges(mode: Mode) {
    let site = Site::new("ranges");
    let server = site.serve(mode);
    let mut client = server.connect();
    for (range, status, body, content_range) in [
        ("bytes=0-3", 206, "0123", "bytes 0-3/10"),
        ("bytes=7-", 206, "789", "bytes 7-9/10"),
        ("bytes=-2", 206, "89", "bytes 8-9/10"),
        ("bytes=5-100", 206, "56789", "bytes 5-9/10"),
        ("bytes=-100", 206, "0123456789", "bytes 0-9/10"),
        // Positions past any integer type are still positions (RFC 9110 14.1.1): clipped.
        ("bytes=8-99999999999999999999999", 206, "89", "bytes 8-9/10"),
        (
            "bytes=-99999999999999999999999",
            206,
            "0123456789",
            "bytes 0-9/10",
        ),
    ] {
        let response = get(&mut client, "/digits.txt", &format!("Range: {range}\r\n"));
        assert_eq!(response.status, status, "{range}");
        assert_eq!(response.text(), body, "{range}");
        assert_eq!(
            response.header("content-range"),
            Some(content_range),
            "{range}"
        );
        assert_eq!(
            response.header("content-length"),
            Some(body.len().to_string().as_str())
        );
    }
    for range in [
        "bytes=10-",
        "bytes=10-20",
        "bytes=-0",
        "bytes=18446744073709551616-",
    ] {
        let response = get(&mut client, "/digits.txt", &format!("Range: {range}\r\n"));
        assert_eq!(response.status, 416, "{range}");
        assert_eq!(response.header("content-range"), Some("bytes */10"));
    }
    // A malformed one, or another unit: the whole file. (Several: `several_ranges`.)
    for range in ["bytes=5-1", "bytes=0-1,5-1", "lines=1-2"] {
        let response = get(&mut client, "/digits.txt", &format!("Range: {range}\r\n"));
        assert_eq!(
            (response.status, response.text().as_str()),
            (200, "0123456789"),
            "{range}"
        );
    }
    // If-Range: the range only if the file is still the one the client has.
    let etag = get(&mut client, "/digits.txt", "")
        .header("etag")
        .unwrap()
        .to_string();
    let partial = get(
        &mut client,
        "/digits.txt",
        &format!("Range: bytes=0-1\r\nIf-Range: {etag}\r\n"),
    );
    assert_eq!((partial.status, partial.text().as_str()), (206, "01"));
    let whole = get(
        &mut client,
        "/digits.txt",
        "Range: bytes=0-1\r\nIf-Range: \"stale\"\r\n",
    );
    assert_eq!((whole.status, whole.text().as_str()), (200, "0123456789"));
    // By date: the range if the file was changed then, and at least a second before (RFC
    // 9110 13.1.5 and 8.8.2.2: a date within a second of the change is a weak validator, and a
    // weak one never holds for a range; the file might have been rewritten in that second).
    let digits = site.root.join("digits.txt");
    let date_of = |at: SystemTime| {
        set_modified(&digits, at);
        httpdate::fmt_http_date(at)
    };
    let long_ago = date_of(UNIX_EPOCH + Duration::from_secs(1_000_000_000));
    let partial = get(
        &mut client,
        "/digits.txt",
        &format!("Range: bytes=0-1\r\nIf-Range: {long_ago}\r\n"),
    );
    assert_eq!((partial.status, partial.text().as_str()), (206, "01"));
    // Changed just now: the whole file, for as long as the second lasts. An answer that took
    // most of that second proves nothing either way; a few tries make sure one is quick.
    let mut proved = false;
    for _ in 0..5 {
        let asked = Instant::now();
        let just_now = date_of(SystemTime::now());
        let response = get(
            &mut client,
            "/digits.txt",
            &format!("Range: bytes=0-1\r\nIf-Range: {just_now}\r\n"),
        );
        if asked.elapsed() < Duration::from_millis(900) {
            assert_eq!(
                (response.status, response.text().as_str()),
                (200, "0123456789")
            );
            proved = true;
            break;
        }
    }
    assert!(proved, "no answer came within 900 ms of the change");
    // A big file's middle, sent from an offset.
    let middle = get(&mut client, "/big.bin", "Range: bytes=3000000-3000099\r\n");
    assert_eq!(middle.body, &site.big[3_000_000..3_000_100]);
}

/// Several ranges in one request: one 206 with a part for each, in the order asked
/// (`multipart/byteranges`, as nginx answers), framed by its Content-Length so the connection
/// goes on; over a slow reader, parts of a big file resume exactly where the socket filled.
/// Ranges that overlap past the file's size, or an If-Range that no longer holds, get the whole
/// file; none satisfiable, 416.
fn several_ranges(mode: Mode) {
    let site = Site::new("ranges");
    let server = site.serve(mode);
    let mut client = server.connect();
    let digits = b"0123456789";
    let text = "text/plain; charset=utf-8";
    for (range, parts) in [
        ("bytes=0-1,4-5,-2", &[(0, 1), (4, 5), (8, 9)][..]),
        // In the order asked, clipped at the end; one past the end is left out.
        ("bytes=7-, 0-0, 20-30", &[(7, 9), (0, 0)][..]),
    ] {
        let response = get(&mut client, "/digits.txt", &format!("Range: {range}\r\n"));
        assert_eq!(response.status, 206, "{range}");
        let expected = common::multipart(digits, text, parts, &common::boundary(&response));
        assert_eq!(
            response.text(),
            String::from_utf8(expected).unwrap(),
            "{range}"
        );
        assert_eq!(response.header("content-range"), None, "RFC 9110 14.4");
        assert_eq!(response.header("accept-ranges"), Some("bytes"));
        assert!(response.header("etag").is_some());
    }
    // Two requests never share a boundary.
    let range = "Range: bytes=0-0,2-2\r\n";
    let (a, b) = (
        get(&mut client, "/digits.txt", range),
        get(&mut client, "/digits.txt", range),
    );
    assert_ne!(common::boundary(&a), common::boundary(&b));
    // One range left of several: a plain 206. None: 416.
    let one = get(&mut client, "/digits.txt", "Range: bytes=3-4, 50-60\r\n");
    assert_eq!((one.status, one.text().as_str()), (206, "34"));
    assert_eq!(one.header("content-range"), Some("bytes 3-4/10"));
    let none = get(&mut client, "/digits.txt", "Range: bytes=10-, 20-30\r\n");
    assert_eq!(none.status, 416);
    assert_eq!(none.header("content-range"), Some("bytes */10"));
    // Ignored: overlaps adding up past the file; an If-Range that does not hold.
    for extra in [
        "Range: bytes=0-7,2-9\r\n",
        "Range: bytes=0-1,4-5\r\nIf-Range: \"stale\"\r\n",
    ] {
        let whole = get(&mut client, "/digits.txt", extra);
        assert_eq!((whole.status, whole.text().as_str()), (200, "0123456789"));
    }
    // HEAD: the same head, no body; HTTP/1.0: framed the same, then closed.
    client.send(b"HEAD /digits.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1,4-5\r\n\r\n");
    let head = client.head_response();
    assert_eq!(
        head.status, 200,
        "a Range on HEAD is ignored (RFC 9110 14.2)"
    );
    assert_eq!(head.header("content-length"), Some("10"));
    let old = client.request(b"GET /digits.txt HTTP/1.0\r\nRange: bytes=1-1,3-3\r\n\r\n");
    assert_eq!(old.status, 206);
    let expected = common::multipart(digits, text, &[(1, 1), (3, 3)], &common::boundary(&old));
    assert_eq!(old.body, expected);
    assert_eq!(old.header("connection"), Some("close"));

    // MiBs of a big file, read 4 KiB at a time through a small window: every part's sendfile
    // meets a full socket and resumes where it stopped.
    let mut slow = Client::connect_with_small_window(server.addr, 16 * 1024);
    let parts = [
        (0, (1 << 20) - 1),
        (3_000_000, 4_999_999),
        (5_242_780, 5_242_879),
        (10, 10),
    ];
    let spec: Vec<String> = parts.iter().map(|(a, b)| format!("{a}-{b}")).collect();
    slow.send(
        format!(
            "GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes={}\r\n\r\n",
            spec.join(",")
        )
        .as_bytes(),
    );
    let mut received = Vec::new();
    let mut chunk = [0; 4096];
    while !received.ends_with(b"--\r\n") {
        let n = slow.stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed after {} bytes", received.len());
        received.extend_from_slice(&chunk[..n]);
    }
    let head_end = common::find(&received, b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    let boundary = head
        .split("boundary=")
        .nth(1)
        .and_then(|rest| rest.split("\r\n").next())
        .unwrap()
        .to_string();
    let expected = common::multipart(&site.big, "application/octet-stream", &parts, &boundary);
    assert!(
        head.contains(&format!("Content-Length: {}\r\n", expected.len())),
        "{head}"
    );
    assert_eq!(received.len() - head_end, expected.len(), "nothing extra");
    assert!(received[head_end..] == expected[..], "the parts' bytes");
    // The connection goes on after the body its length framed.
    assert_eq!(get(&mut slow, "/hello.txt", "").status, 200);
}

fn errors(mode: Mode) {
    let site = Site::new("errors");
    let server = site.serve(mode);
    let mut client = server.connect();
    let missing = get(&mut client, "/nope", "");
    assert_eq!(missing.status, 404);
    assert!(missing.body.len() < 200);
    let bad = get(&mut client, "/%", "");
    assert_eq!(bad.status, 400);
    assert_eq!(bad.text(), "400 Bad Request\n");
    assert_eq!(
        bad.header("connection"),
        None,
        "a bad path is not a broken connection"
    );
    assert_eq!(get(&mut client, "/hello.txt", "").status, 200);
}

/// `curl -T` of a file to a path that takes no uploads: curl asks `Expect: 100-continue`, and
/// the 405 comes before a byte of the upload is sent. A GET that waits to send a body gets the
/// file at once, and the connection closes after it.
fn upload_refused_before_it_is_sent(mode: Mode) {
    let site = Site::new("upload");
    let server = site.serve(mode);
    let stdout = common::curl(|curl| {
        curl.args([
            "-sS",
            "--expect100-timeout",
            "60",
            "-H",
            "Expect: 100-continue",
            "-T",
        ])
        .arg(site.root.join("big.bin"))
        .args(["-o", "/dev/null", "-w", "%{http_code} %{size_upload}"])
        .arg(format!("http://{}/hello.txt", server.addr))
    });
    assert_eq!(String::from_utf8_lossy(&stdout), "405 0");

    let mut client = server.connect();
    client.send(
        b"GET /hello.txt HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n",
    );
    let response = client.response();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "hello from a file\n");
    assert_eq!(response.header("connection"), Some("close"));
    client.send(b"123456789GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    client.expect_close();
}

/// A file is open only while it is sent: after many requests on connections still open, the
/// server holds no more descriptors than its sockets. In every mode with one process that serves
/// connections side by side (fork mode's files are its children's), and whole files too: the
/// ring splices a large one through a pipe.
#[test]
fn files_are_closed_once_sent() {
    bounded(120, || {
        let site = Site::new("fds");
        for mode in [Mode::Reactor, Mode::Uring, Mode::Threaded] {
            if common::runnable(mode) {
                files_closed_in(&site, mode);
            }
        }
    });
}

fn files_closed_in(site: &Site, mode: Mode) {
    let mut cfg = config(mode);
    cfg.cores = reactor_httpd::config::Cores::Count(1);
    cfg.demo = false;
    cfg.root = site.root.clone();
    let server = TestServer::subprocess(&cfg, |_| {});
    let (addr, pid) = (server.addr, server.pid().unwrap());
    let mut clients: Vec<Client> = (0..10).map(|_| Client::connect(addr)).collect();
    // Every client has been accepted once it has an answer.
    for client in &mut clients {
        assert_eq!(get(client, "/hello.txt", "").status, 200);
    }
    // The client has the last byte as soon as the kernel has it, which can be a moment before
    // the server returns from that sendfile and closes the file: the count is read once it
    // has stopped moving, before and after.
    let settled = || {
        let mut last = open_fds(pid);
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let now = open_fds(pid);
            if now == last {
                return now;
            }
            last = now;
        }
    };
    let before = settled();
    for _ in 0..20 {
        for client in &mut clients {
            assert_eq!(get(client, "/digits.txt", "").status, 200);
            assert_eq!(get(client, "/big.bin", "Range: bytes=0-9\r\n").status, 206);
        }
    }
    for client in &mut clients {
        let whole = get(client, "/big.bin", "");
        assert!(whole.body == site.big, "{mode:?}: big.bin differs");
    }
    assert_eq!(settled(), before, "{mode:?}");
}

/// Permission denied is 403. Root reads everything, so as root the server runs as `nobody`.
#[test]
fn unreadable_file_is_403() {
    bounded(30, || {
        let site = Site::new("forbidden");
        let locked = site.root.join("locked.txt");
        fs::write(&locked, "no").unwrap();
        fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
        // SAFETY: geteuid has no preconditions.
        let root_user = unsafe { libc::geteuid() } == 0;
        if !root_user {
            let server = site.serve(Mode::Reactor);
            assert_eq!(get(&mut server.connect(), "/locked.txt", "").status, 403);
            return;
        }
        if !Path::new("/usr/bin/setpriv").exists() {
            eprintln!("skipped: running as root and setpriv is missing");
            return;
        }
        for dir in [&site.base, &site.root] {
            fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        }
        let mut child = std::process::Command::new("/usr/bin/setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                env!("CARGO_BIN_EXE_reactor-httpd"),
            ])
            .args(["--bind", "127.0.0.1:0", "--cores", "1", "--quiet"])
            .arg(&site.root)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let addr = match listening_addr(&mut child) {
            Ok(addr) => addr,
            Err(line) => {
                // The binary may not be reachable by `nobody` (a private target directory).
                let _ = child.wait();
                eprintln!("skipped: could not run the server as nobody ({line:?})");
                return;
            }
        };
        let mut client = Client::connect(addr);
        let response = get(&mut client, "/locked.txt", "");
        assert_eq!(response.status, 403);
        assert_eq!(response.text(), "403 Forbidden\n");
        assert_eq!(get(&mut client, "/hello.txt", "").status, 200);
        child.kill().unwrap();
        child.wait().unwrap();
    });
}

/// A ROOT named by a link a deploy switches (`current -> r2`), or a directory removed and made
/// anew by a build, is followed within about a second, on a connection kept open throughout, as
/// nginx and `python -m http.server` follow it (they look the path up with every request).
fn a_moved_root_is_followed(mode: Mode) {
    let base = std::env::temp_dir().join(format!(
        "static-moved-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = fs::remove_dir_all(&base);
    for (release, text) in [("r1", "one"), ("r2", "two")] {
        fs::create_dir_all(base.join(release)).unwrap();
        fs::write(base.join(release).join("v.txt"), text).unwrap();
        fs::write(base.join(release).join(format!("only-{release}.txt")), "").unwrap();
    }
    let current = base.join("current");
    let point = |release: &str| {
        let aside = base.join("current.new");
        symlink(base.join(release), &aside).unwrap();
        fs::rename(&aside, &current).unwrap();
    };
    point("r1");
    let mut cfg = config(mode);
    cfg.root = current.clone();
    cfg.demo = false;
    let server = TestServer::start(cfg);
    let mut client = server.connect();
    // Whether the answer comes to say `text` within 3 s.
    let soon = |client: &mut Client, target: &str, text: &str| {
        common::eventually(Duration::from_secs(3), || {
            let response = get(client, target, "");
            response.status == 200 && response.text().contains(text)
        })
    };
    assert_eq!(get(&mut client, "/v.txt", "").text(), "one");
    point("r2");
    assert!(soon(&mut client, "/v.txt", "two"), "{mode:?}: not followed");
    assert!(soon(&mut client, "/", "only-r2.txt"), "{mode:?}: listing");
    assert_eq!(get(&mut client, "/only-r1.txt", "").status, 404);
    // A new connection (in fork mode, a new process) finds it too. (The old one closes first:
    // blocking mode serves one at a time.)
    drop(client);
    let mut client = server.connect();
    assert_eq!(get(&mut client, "/v.txt", "").text(), "two");

    // The directory removed and made anew, under the same name.
    fs::remove_dir_all(base.join("r2")).unwrap();
    fs::create_dir(base.join("r2")).unwrap();
    fs::write(base.join("r2/v.txt"), "three").unwrap();
    assert!(soon(&mut client, "/v.txt", "three"), "{mode:?}: remade");
    drop(server);
    fs::remove_dir_all(&base).unwrap();
}

macro_rules! modes {
    ($($mode:ident: $variant:expr;)*) => {$(
        mod $mode {
            use super::*;
            macro_rules! t {
                ($name:ident, $secs:expr) => {
                    #[test]
                    fn $name() {
                        if common::runnable($variant) {
                            bounded($secs, || super::$name($variant));
                        }
                    }
                };
            }
            t!(traversal_is_refused, 20);
            t!(files, 20);
            t!(big_file_read_slowly, 60);
            t!(shrinking_file, 30);
            t!(head_and_file_in_one_segment, 20);
            t!(downloads_are_logged_with_what_was_sent, 30);
            t!(directories, 20);
            t!(listings_are_validated, 20);
            t!(caching, 20);
            t!(dates_out_of_range, 20);
            t!(rewritten_within_a_second, 20);
            t!(ranges, 20);
            t!(several_ranges, 60);
            t!(errors, 20);
            t!(upload_refused_before_it_is_sent, 30);
            t!(a_moved_root_is_followed, 30);
        }
    )*};
}

modes! {
    reactor: Mode::Reactor;
    uring: Mode::Uring;
    threaded: Mode::Threaded;
    blocking: Mode::Blocking;
    fork: Mode::Fork;
}
