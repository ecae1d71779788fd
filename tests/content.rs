//! Content negotiation over real sockets: precompressed siblings (`x.br`, `x.zst`, `x.gz`) by
//! `Accept-Encoding`, decoded back and compared byte for byte; their validators, ranges and
//! 304s; `--header`; directory listings as JSON.

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Client, TempDir, TestServer, bounded, config, tempdir};
use reactor_httpd::config::{Config, Mode};
use reactor_httpd::http::BufferBudget;

/// Some JavaScript, and its siblings in each coding; `only.txt` with a `.gz` alone; `plain.css`
/// with none.
fn site(name: &str) -> (TempDir, Vec<u8>) {
    let root = tempdir(name);
    let script: Vec<u8> = (0..3000)
        .flat_map(|i| format!("function f{i}() {{ return {i} * 2; }}\n").into_bytes())
        .collect();
    fs::write(root.join("app.js"), &script).unwrap();
    fs::write(root.join("app.js.gz"), gzip(&script)).unwrap();
    fs::write(root.join("app.js.br"), brotli(&script)).unwrap();
    fs::write(
        root.join("app.js.zst"),
        zstd::encode_all(&script[..], 3).unwrap(),
    )
    .unwrap();
    fs::write(root.join("only.txt"), b"only gzip here\n".repeat(100)).unwrap();
    fs::write(
        root.join("only.txt.gz"),
        gzip(&b"only gzip here\n".repeat(100)),
    )
    .unwrap();
    fs::write(root.join("plain.css"), b"body { color: red }\n").unwrap();
    fs::create_dir(root.join("sub")).unwrap();
    fs::write(root.join("sub/a.txt"), b"a").unwrap();
    (root, script)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn brotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams::default();
    brotli::BrotliCompress(&mut &bytes[..], &mut out, &params).unwrap();
    out
}

fn site_config(mode: Mode, root: &Path) -> Config {
    let mut config = config(mode);
    config.root = root.to_path_buf();
    config
}

fn get(client: &mut Client, path: &str, headers: &str) -> common::Response {
    client.request(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes())
}

/// Which coding each Accept-Encoding gets, and the body decodes back to the file, in every mode.
#[test]
fn siblings_are_served_by_accept_encoding() {
    bounded(120, || {
        let (root, script) = site("content-negotiation");
        let table: [(&str, Option<&str>); 10] = [
            ("", None),
            ("Accept-Encoding: gzip\r\n", Some("gzip")),
            ("Accept-Encoding: gzip, deflate, br, zstd\r\n", Some("br")),
            ("Accept-Encoding: gzip;q=1.0, br;q=0.5\r\n", Some("gzip")),
            ("Accept-Encoding: zstd\r\n", Some("zstd")),
            ("Accept-Encoding: br;q=0, *\r\n", Some("zstd")),
            ("Accept-Encoding: identity\r\n", None),
            ("Accept-Encoding: gzip;q=0.5, identity\r\n", None),
            ("Accept-Encoding: compress\r\n", None),
            ("Accept-Encoding: \r\n", None),
        ];
        for mode in common::modes() {
            let server = TestServer::start(site_config(mode, &root));
            let mut client = server.connect();
            for (header, expected) in table {
                let response = get(&mut client, "/app.js", header);
                assert_eq!(response.status, 200, "{mode:?} {header:?}");
                assert_eq!(response.header("Content-Encoding"), expected, "{header:?}");
                assert_eq!(
                    response.header("Content-Type"),
                    Some("text/javascript; charset=utf-8")
                );
                assert_eq!(response.header("Vary"), Some("Accept-Encoding"));
                assert!(
                    common::decode(expected, &response.body) == script,
                    "{header:?}"
                );
            }
            // Only a .gz: br is not there, gzip is.
            let response = get(&mut client, "/only.txt", "Accept-Encoding: br, gzip\r\n");
            assert_eq!(response.header("Content-Encoding"), Some("gzip"));
            // No sibling at all: no Vary.
            let response = get(&mut client, "/plain.css", "Accept-Encoding: gzip\r\n");
            assert_eq!(response.header("Content-Encoding"), None);
            assert_eq!(response.header("Vary"), None);
            // A sibling asked for by its own name is a file like any other.
            let response = get(&mut client, "/app.js.gz", "Accept-Encoding: gzip\r\n");
            assert_eq!(response.header("Content-Encoding"), None);
            assert_eq!(response.header("Content-Type"), Some("application/gzip"));
        }
    });
}

/// A sibling's validators and ranges are its own: a distinct ETag, 304 on it, ranges of the
/// encoded bytes, HEAD with GET's headers.
#[test]
fn siblings_have_their_own_validators_and_ranges() {
    bounded(60, || {
        let (root, _) = site("content-validators");
        let gz = fs::read(root.join("app.js.gz")).unwrap();
        let server = TestServer::start(site_config(Mode::Reactor, &root));
        let mut client = server.connect();
        let plain = get(&mut client, "/app.js", "");
        let coded = get(&mut client, "/app.js", "Accept-Encoding: gzip\r\n");
        let tag = coded.header("ETag").unwrap().to_string();
        assert_ne!(plain.header("ETag").unwrap(), tag);
        let again = get(
            &mut client,
            "/app.js",
            &format!("Accept-Encoding: gzip\r\nIf-None-Match: {tag}\r\n"),
        );
        assert_eq!(again.status, 304);
        // Validators, not representation metadata (RFC 9110 15.4.5).
        assert_eq!(again.header("ETag"), Some(tag.as_str()));
        assert_eq!(again.header("Vary"), Some("Accept-Encoding"));
        assert_eq!(again.header("Content-Encoding"), None);
        // The identity representation does not match the coded one's tag.
        let other = get(&mut client, "/app.js", &format!("If-None-Match: {tag}\r\n"));
        assert_eq!(other.status, 200);
        let range = get(
            &mut client,
            "/app.js",
            "Accept-Encoding: gzip\r\nRange: bytes=10-29\r\n",
        );
        assert_eq!(range.status, 206);
        assert_eq!(range.body, gz[10..30]);
        assert_eq!(
            range.header("Content-Range").unwrap(),
            format!("bytes 10-29/{}", gz.len())
        );
        // Several ranges of the coded bytes: the whole sibling (a Content-Encoding on a
        // multipart body would say the multipart body is what is encoded).
        let several = get(
            &mut client,
            "/app.js",
            "Accept-Encoding: gzip\r\nRange: bytes=0-1,10-29\r\n",
        );
        assert_eq!(several.status, 200);
        assert_eq!(several.header("Content-Encoding"), Some("gzip"));
        assert_eq!(several.body, gz);
        // Of the file itself: the parts.
        let identity = get(&mut client, "/app.js", "Range: bytes=0-1,10-29\r\n");
        assert_eq!(identity.status, 206);
        assert_eq!(identity.header("Content-Encoding"), None);
        client.send(b"HEAD /app.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
        let head = client.head_response();
        assert_eq!(head.header("Content-Encoding"), Some("gzip"));
        assert_eq!(
            head.header("Content-Length"),
            coded.header("Content-Length")
        );
        assert_eq!(head.header("ETag"), Some(tag.as_str()));
    });
}

/// `--no-precompressed`: the file as it is, whatever the client accepts; and a sibling that is a
/// link out of ROOT is never served.
#[test]
fn siblings_off_and_siblings_outside_root() {
    bounded(60, || {
        let (root, script) = site("content-off");
        let mut config = site_config(Mode::Reactor, &root);
        config.precompressed = false;
        let server = TestServer::start(config);
        let response = get(
            &mut server.connect(),
            "/app.js",
            "Accept-Encoding: gzip, br\r\n",
        );
        assert_eq!(response.header("Content-Encoding"), None);
        assert_eq!(response.header("Vary"), None);
        assert!(response.body == script);
        drop(server);

        let outside = tempdir("content-outside");
        fs::write(outside.join("evil.gz"), gzip(b"not from ROOT")).unwrap();
        fs::remove_file(root.join("only.txt.gz")).unwrap();
        std::os::unix::fs::symlink(outside.join("evil.gz"), root.join("only.txt.gz")).unwrap();
        let server = TestServer::start(site_config(Mode::Reactor, &root));
        let response = get(
            &mut server.connect(),
            "/only.txt",
            "Accept-Encoding: gzip\r\n",
        );
        assert_eq!(response.header("Content-Encoding"), None);
        assert_eq!(response.body, b"only gzip here\n".repeat(100));
        // Nor does it make the file say Vary: a sibling out of ROOT is no sibling.
        let response = get(&mut server.connect(), "/only.txt", "");
        assert_eq!(response.header("Vary"), None);
    });
}

/// Types that are not text (a font, an image) look for siblings another way (a stat before the
/// open, as a site rarely precompresses them) and get the same answers as text, in every mode:
/// a sibling that is there is served and makes `Vary`; a link out of ROOT or a directory by a
/// sibling's name is no sibling.
#[test]
fn siblings_of_types_that_are_not_text() {
    bounded(120, || {
        let root = tempdir("content-binary");
        let font: Vec<u8> = (0..20_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        fs::write(root.join("font.ttf"), &font).unwrap();
        fs::write(root.join("font.ttf.br"), brotli(&font)).unwrap();
        let photo = b"\x89PNG\r\n\x1a\n not really".repeat(50);
        fs::write(root.join("photo.png"), &photo).unwrap();
        let outside = tempdir("content-binary-outside");
        fs::write(outside.join("evil.gz"), gzip(b"not from ROOT")).unwrap();
        std::os::unix::fs::symlink(outside.join("evil.gz"), root.join("photo.png.gz")).unwrap();
        fs::create_dir(root.join("photo.png.br")).unwrap();
        let browser = "Accept-Encoding: gzip, deflate, br, zstd\r\n";
        for mode in common::modes() {
            let server = TestServer::start(site_config(mode, &root));
            let mut client = server.connect();
            let response = get(&mut client, "/font.ttf", browser);
            assert_eq!(response.status, 200, "{mode:?}");
            assert_eq!(response.header("Content-Encoding"), Some("br"), "{mode:?}");
            assert_eq!(response.header("Content-Type"), Some("font/ttf"));
            assert_eq!(response.header("Vary"), Some("Accept-Encoding"));
            assert!(
                common::decode(Some("br"), &response.body) == font,
                "{mode:?}"
            );
            for header in ["Accept-Encoding: gzip\r\n", ""] {
                let response = get(&mut client, "/font.ttf", header);
                assert_eq!(response.header("Content-Encoding"), None, "{mode:?}");
                assert_eq!(response.header("Vary"), Some("Accept-Encoding"), "{mode:?}");
                assert!(response.body == font, "{mode:?} {header:?}");
            }
            for header in [browser, ""] {
                let response = get(&mut client, "/photo.png", header);
                assert_eq!(response.status, 200, "{mode:?}");
                assert_eq!(response.header("Content-Encoding"), None, "{mode:?}");
                assert_eq!(response.header("Vary"), None, "{mode:?} {header:?}");
                assert_eq!(response.header("Content-Type"), Some("image/png"));
                assert_eq!(response.body, photo, "{mode:?} {header:?}");
            }
        }
    });
}

/// A file found to have no sibling is remembered as such, so that serving it again looks for
/// none (src/app/static_files/bare.rs), but only while its directory is unchanged: a sibling
/// made later, or a link on the path pointed at another directory, is seen at the very next
/// request, in every mode. Nothing is remembered until a directory has been still for two
/// seconds (as a site's are, and the test waits for that once, for every mode's directories).
#[test]
fn siblings_that_appear_later_are_found() {
    bounded(120, || {
        let root = tempdir("content-later");
        let modes: Vec<Mode> = common::modes().collect();
        let css = b"p { margin: 0 }\n".repeat(20);
        for mode in &modes {
            let dir = root.join(format!("{mode:?}"));
            for sub in ["a", "b"] {
                fs::create_dir_all(dir.join(sub)).unwrap();
                fs::write(dir.join(sub).join("x.css"), &css).unwrap();
            }
            fs::write(dir.join("b/x.css.gz"), gzip(&css)).unwrap();
            std::os::unix::fs::symlink("a", dir.join("link")).unwrap();
        }
        wait_until_still(&root, Duration::from_secs(2));

        let browser = "Accept-Encoding: gzip, deflate, br, zstd\r\n";
        for mode in modes {
            let dir = root.join(format!("{mode:?}"));
            let server = TestServer::start(site_config(mode, &root));
            let mut client = server.connect();
            let mut expect = |path: &str, header: &str, coding: Option<&str>, vary: bool| {
                let response = get(&mut client, &format!("/{mode:?}/{path}"), header);
                let context = format!("{mode:?} {path} {header:?}");
                assert_eq!(response.status, 200, "{context}");
                assert_eq!(response.header("Content-Encoding"), coding, "{context}");
                assert_eq!(response.header("Vary").is_some(), vary, "{context}");
                assert!(common::decode(coding, &response.body) == css, "{context}");
            };
            // Asked again and again: from the second time on, from memory.
            for _ in 0..3 {
                expect("link/x.css", browser, None, false);
                expect("link/x.css", "", None, false);
                expect("a/x.css", browser, None, false);
            }
            // The link now names `b`, which has a sibling (the link's own directory changed,
            // not `a`'s or `b`'s).
            std::os::unix::fs::symlink("b", dir.join("link.new")).unwrap();
            fs::rename(dir.join("link.new"), dir.join("link")).unwrap();
            expect("link/x.css", browser, Some("gzip"), true);
            expect("link/x.css", "", None, true);
            // A sibling made beside a file remembered without one.
            fs::write(dir.join("a/x.css.br"), brotli(&css)).unwrap();
            expect("a/x.css", browser, Some("br"), true);
            expect("a/x.css", "Accept-Encoding: gzip\r\n", None, true);
            // And gone again.
            fs::remove_file(dir.join("a/x.css.br")).unwrap();
            expect("a/x.css", browser, None, false);
        }
    });
}

/// Returns once nothing under `dir` (itself included) has changed for `still`: judged by the
/// directories' own modification and change times, as the server judges them.
fn wait_until_still(dir: &Path, still: Duration) {
    use std::os::unix::fs::MetadataExt;
    fn latest(dir: &Path) -> i128 {
        let meta = fs::symlink_metadata(dir).unwrap();
        let own =
            |seconds: i64, nanos: i64| i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
        let mut newest =
            own(meta.mtime(), meta.mtime_nsec()).max(own(meta.ctime(), meta.ctime_nsec()));
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                newest = newest.max(latest(&entry.path()));
            }
        }
        newest
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i128;
    let wait = latest(dir) + still.as_nanos() as i128 + 50_000_000 - now;
    if wait > 0 {
        std::thread::sleep(Duration::from_nanos(wait as u64));
    }
}

/// `--header`: on every response, the server's own errors included.
#[test]
fn extra_headers_on_every_response() {
    bounded(60, || {
        let (root, _) = site("content-headers");
        for mode in common::modes() {
            let mut config = site_config(mode, &root);
            config.headers = vec![
                ("Cache-Control".into(), "max-age=60".into()),
                ("X-Frame-Options".into(), "DENY".into()),
            ];
            let server = TestServer::start(config);
            let mut client = server.connect();
            for path in ["/hello", "/app.js", "/missing", "/sub/"] {
                let response = get(&mut client, path, "");
                assert_eq!(
                    response.header("Cache-Control"),
                    Some("max-age=60"),
                    "{path}"
                );
                assert_eq!(response.header("X-Frame-Options"), Some("DENY"), "{path}");
            }
            let bad = Client::connect(server.addr).request(b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(bad.status, 400);
            assert_eq!(bad.header("Cache-Control"), Some("max-age=60"), "{mode:?}");
        }
    });
}

/// Headers that would break framing, or carry a line break, are refused at start; so are the
/// fields the server sets itself that a response may carry only once (two `Date` lines, one of
/// them `now`, went out before stop 33).
#[test]
fn framing_headers_are_refused() {
    bounded(30, || {
        for header in [
            "Content-Length: 5",
            "transfer-encoding: chunked",
            "Connection: close",
            "Date: now",
            "Server: other",
            "content-type: text/html",
            "Content-Encoding: gzip",
            "ETag: \"x\"",
            "Last-Modified: Thu, 01 Jan 1970 00:00:00 GMT",
            "Location: /elsewhere",
            "Content-Range: bytes 0-1/2",
            "Accept-Ranges: none",
            "Allow: GET",
            "X-Split: a\r\nInjected: b",
            "X-Bare-LF: a\nb",
            "Bad Name: x",
            "no colon",
        ] {
            let output = Command::new(env!("CARGO_BIN_EXE_reactor-httpd"))
                .args(["--bind", "127.0.0.1:0", "--header", header])
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(2), "{header:?}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            // The whole reason, even when the value holds a line break.
            assert!(stderr.contains("'--header <NAME: VALUE>': "), "{stderr}");
        }
    });
}

/// A listing as JSON, by `Accept` or `?format=json`, with the HTML listing's order and rules.
#[test]
fn listings_as_json() {
    bounded(60, || {
        let (root, _) = site("content-json");
        fs::write(root.join(".hidden"), b"x").unwrap();
        let server = TestServer::start(site_config(Mode::Reactor, &root));
        let mut client = server.connect();
        for (path, header) in [("/", "Accept: application/json\r\n"), ("/?format=json", "")] {
            let response = get(&mut client, path, header);
            assert_eq!(response.header("Content-Type"), Some("application/json"));
            assert_eq!(response.header("Vary"), Some("Accept"));
            let items: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
            let names: Vec<&str> = (items.as_array().unwrap().iter())
                .map(|item| item["name"].as_str().unwrap())
                .collect();
            assert_eq!(
                names,
                [
                    "sub",
                    "app.js",
                    "app.js.br",
                    "app.js.gz",
                    "app.js.zst",
                    "only.txt",
                    "only.txt.gz",
                    "plain.css"
                ]
            );
            assert_eq!(items[0]["type"], "dir");
            assert_eq!(items[0]["url"], "sub/");
            assert_eq!(items[5]["size"], 1500);
            assert_eq!(items[5]["url"], "only.txt");
        }
        // A name that is not UTF-8 shows with U+FFFD, and its link fetches it.
        let odd = root
            .join("sub")
            .join(std::ffi::OsStr::from_bytes(b"caf\xe9 1.txt"));
        fs::write(odd, b"latin-1").unwrap();
        let response = get(&mut client, "/sub/?format=json", "");
        let items: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(items[1]["name"], "caf\u{fffd} 1.txt");
        assert_eq!(items[1]["url"], "caf%E9%201.txt");
        assert_eq!(get(&mut client, "/sub/caf%E9%201.txt", "").body, b"latin-1");
        let html = get(&mut client, "/", "Accept: text/html,*/*;q=0.8\r\n");
        assert_eq!(
            html.header("Content-Type"),
            Some("text/html; charset=utf-8")
        );
    });
}

/// A response whose body may be chunked: its head (read with `response`, which reads a body by
/// its Content-Length and stops at the head of one without), then its body either way.
fn get_chunked(client: &mut Client, path: &str, headers: &str) -> (common::Response, Vec<u8>) {
    client.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
    let head = client.response();
    let body = if head.header("Transfer-Encoding") == Some("chunked") {
        client.chunked_body()
    } else {
        head.body.clone()
    };
    (head, body)
}

fn compressing_site(name: &str) -> (TempDir, Vec<u8>) {
    let root = tempdir(name);
    let css: Vec<u8> = (0..20_000)
        .flat_map(|i| {
            format!(
                ".rule-{i} {{ margin: {}px; color: #{:06x}; }}\n",
                i % 17,
                i * 7919 % 0xffffff
            )
            .into_bytes()
        })
        .collect();
    fs::write(root.join("site.css"), &css).unwrap();
    fs::write(root.join("tiny.css"), b"a{}").unwrap();
    fs::write(root.join("photo.png"), vec![7u8; 4096]).unwrap();
    (root, css)
}

/// `--compress`: each coding decodes back to the file, in every mode, on a connection that goes
/// on after the chunked body; ranges, HTTP/1.0, small and incompressible files get the file as
/// it is; HEAD has GET's headers; a 304 for the weak tag.
#[test]
fn files_compressed_as_they_are_sent() {
    bounded(300, || {
        let (root, css) = compressing_site("content-compress");
        for mode in common::modes() {
            let mut config = site_config(mode, &root);
            config.compress = true;
            let server = TestServer::start(config);
            let mut client = server.connect();
            for coding in ["gzip", "br", "zstd"] {
                let (head, body) = get_chunked(
                    &mut client,
                    "/site.css",
                    &format!("Accept-Encoding: {coding}\r\n"),
                );
                assert_eq!(head.status, 200, "{mode:?}");
                assert_eq!(head.header("Content-Encoding"), Some(coding));
                assert_eq!(head.header("Transfer-Encoding"), Some("chunked"));
                assert_eq!(head.header("Vary"), Some("Accept-Encoding"));
                assert!(head.header("ETag").unwrap().starts_with("W/"));
                assert!(body.len() < css.len() / 3, "{coding}: {} bytes", body.len());
                assert!(
                    common::decode(Some(coding), &body) == css,
                    "{mode:?} {coding}"
                );
            }
            // The same connection serves on.
            assert_eq!(client.get("/hello").text(), "Hello, World!");
            let range = get(
                &mut client,
                "/site.css",
                "Accept-Encoding: gzip\r\nRange: bytes=0-9\r\n",
            );
            assert_eq!(range.status, 206);
            assert_eq!(range.header("Content-Encoding"), None);
            assert_eq!(range.body, css[..10]);
            for path in ["/tiny.css", "/photo.png"] {
                let plain = get(&mut client, path, "Accept-Encoding: gzip\r\n");
                assert_eq!(plain.header("Content-Encoding"), None, "{path}");
            }
        }
        let mut config = site_config(Mode::Reactor, &root);
        config.compress = true;
        let server = TestServer::start(config);
        let mut client = server.connect();
        let old = client.request(b"GET /site.css HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n");
        assert_eq!(old.header("Content-Encoding"), None);
        assert!(old.body == css);
        let mut client = server.connect();
        client.send(b"HEAD /site.css HTTP/1.1\r\nHost: t\r\nAccept-Encoding: br\r\n\r\n");
        let head = client.head_response();
        assert_eq!(head.header("Content-Encoding"), Some("br"));
        assert_eq!(head.header("Transfer-Encoding"), Some("chunked"));
        let tag = head.header("ETag").unwrap().to_string();
        let again = get(
            &mut client,
            "/site.css",
            &format!("Accept-Encoding: br\r\nIf-None-Match: {tag}\r\n"),
        );
        assert_eq!(again.status, 304);
        assert_eq!(again.header("Content-Encoding"), None);
        // If-Match compares strongly: a weak tag never holds, so 412; `*` does.
        let strong = tag.strip_prefix("W/").unwrap();
        for condition in [tag.as_str(), strong] {
            let headers = format!("Accept-Encoding: br\r\nIf-Match: {condition}\r\n");
            let refused = get(&mut client, "/site.css", &headers);
            assert_eq!(refused.status, 412, "If-Match: {condition}");
        }
        let headers = "Accept-Encoding: br\r\nIf-Match: *\r\n";
        let (head, body) = get_chunked(&mut client, "/site.css", headers);
        assert_eq!(
            (head.status, head.header("Content-Encoding")),
            (200, Some("br"))
        );
        assert!(common::decode(Some("br"), &body) == css);
    });
}

/// `--compress` compresses a directory's listing as it does a text file: HTML and JSON, in each
/// coding, decoding back to the page sent as it is; with a weak tag of its own that revalidates
/// (304); HEAD alike without a body; HTTP/1.0, a page under 1 KiB, or a client that asks for no
/// coding get the page as it is. `Vary` names both fields a page that may be compressed varies
/// by. Every mode.
#[test]
fn listings_compressed_as_they_are_sent() {
    bounded(300, || {
        let root = tempdir("content-compress-listing");
        fs::create_dir(root.join("many")).unwrap();
        for i in 0..200 {
            fs::write(root.join(format!("many/entry-{i:03}.txt")), b"x").unwrap();
        }
        fs::create_dir(root.join("few")).unwrap();
        fs::write(root.join("few/a.txt"), b"a").unwrap();
        for mode in common::modes() {
            let mut config = site_config(mode, &root);
            config.compress = true;
            let server = TestServer::start(config);
            let mut client = server.connect();
            for (path, page_type) in [
                ("/many/", "text/html; charset=utf-8"),
                ("/many/?format=json", "application/json"),
            ] {
                let plain = get(&mut client, path, "");
                assert_eq!(plain.status, 200, "{mode:?}");
                assert_eq!(plain.header("Content-Encoding"), None);
                assert_eq!(plain.header("Vary"), Some("Accept, Accept-Encoding"));
                assert!(plain.body.len() > 4096, "{} bytes", plain.body.len());
                let plain_tag = plain.header("ETag").unwrap().to_string();
                for coding in ["gzip", "br", "zstd"] {
                    let accept = format!("Accept-Encoding: {coding}\r\n");
                    let (head, body) = get_chunked(&mut client, path, &accept);
                    assert_eq!(head.status, 200, "{mode:?} {path} {coding}");
                    assert_eq!(head.header("Content-Encoding"), Some(coding));
                    assert_eq!(head.header("Content-Type"), Some(page_type));
                    assert_eq!(head.header("Vary"), Some("Accept, Accept-Encoding"));
                    assert!(
                        body.len() < plain.body.len() / 3,
                        "{coding}: {}",
                        body.len()
                    );
                    assert!(
                        common::decode(Some(coding), &body) == plain.body,
                        "{mode:?} {path} {coding}: decodes to another page"
                    );
                    let tag = head.header("ETag").unwrap().to_string();
                    assert!(tag.starts_with("W/") && tag != plain_tag, "{tag}");
                    let revalidate = format!("{accept}If-None-Match: {tag}\r\n");
                    let again = get(&mut client, path, &revalidate);
                    assert_eq!(again.status, 304, "{mode:?} {path} {coding}");
                    assert_eq!(again.header("ETag"), Some(tag.as_str()));
                    // A 304 carries no Content-Type, a 412 its own text's.
                    assert_eq!(again.header("Content-Type"), None, "{coding}");
                    let unmet = format!("{accept}If-Match: \"other\"\r\n");
                    let refused = get(&mut client, path, &unmet);
                    assert_eq!(refused.status, 412, "{mode:?} {path} {coding}");
                    assert!(
                        refused
                            .header("Content-Type")
                            .unwrap()
                            .starts_with("text/plain")
                    );
                }
            }
            client.send(b"HEAD /many/ HTTP/1.1\r\nHost: t\r\nAccept-Encoding: br\r\n\r\n");
            let head = client.head_response();
            assert_eq!(head.header("Content-Encoding"), Some("br"));
            assert_eq!(head.header("Transfer-Encoding"), Some("chunked"));
            // The same connection serves on after the HEAD.
            assert_eq!(get(&mut client, "/few/a.txt", "").body, b"a");
            let small = get(&mut client, "/few/", "Accept-Encoding: gzip\r\n");
            assert_eq!(small.header("Content-Encoding"), None, "a page under 1 KiB");
            assert_eq!(
                small.header("Vary"),
                Some("Accept"),
                "a page never compressed"
            );
            let old = server
                .connect()
                .request(b"GET /many/ HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n");
            assert_eq!((old.status, old.header("Content-Encoding")), (200, None));
        }
        // A budget with room for the page but for no encoder: as it is, still varying by both.
        let mut config = site_config(Mode::Reactor, &root);
        config.compress = true;
        config.limits.buffers = BufferBudget::new(100_000);
        let server = TestServer::start(config);
        let accept = "Accept-Encoding: br, zstd, gzip\r\n";
        let plain = get(&mut server.connect(), "/many/", accept);
        assert_eq!(
            (plain.status, plain.header("Content-Encoding")),
            (200, None)
        );
        assert_eq!(plain.header("Vary"), Some("Accept, Accept-Encoding"));
        assert!(plain.text().contains("entry-199.txt"), "the whole page");
        // Without --compress: as it is, varying by Accept alone.
        let server = TestServer::start(site_config(Mode::Reactor, &root));
        let plain = get(&mut server.connect(), "/many/", "Accept-Encoding: gzip\r\n");
        assert_eq!(plain.header("Content-Encoding"), None);
        assert_eq!(plain.header("Vary"), Some("Accept"));
    });
}

/// A 50 MiB file compressed for one client does not hold up the others: `/hello` on other
/// connections stays quick throughout. In every mode that serves connections side by side (the
/// reactor and the ring with one loop, where a stall would show).
#[test]
fn compressing_a_large_file_stalls_no_one() {
    bounded(300, || {
        let (root, _) = compressing_site("content-compress-large");
        // 50 MiB of text.
        let big: Vec<u8> = (0..2_600_000u64)
            .flat_map(|i| format!("line {i}: {}\n", i * 2_654_435_761 % 1_000_003).into_bytes())
            .take(50 << 20)
            .collect();
        assert_eq!(big.len(), 50 << 20);
        fs::write(root.join("big.txt"), &big).unwrap();
        let big = std::sync::Arc::new(big);
        for mode in common::modes().filter(|&mode| mode != Mode::Blocking) {
            let mut config = site_config(mode, &root);
            config.compress = true;
            config.cores = reactor_httpd::config::Cores::Count(1);
            compress_beside_hello(mode, TestServer::start(config), &big);
        }
    });
}

fn compress_beside_hello(mode: Mode, server: TestServer, big: &[u8]) {
    let addr = server.addr;
    let downloader = std::thread::spawn(move || {
        let mut client = Client::connect(addr);
        let (_, body) = get_chunked(&mut client, "/big.txt", "Accept-Encoding: gzip\r\n");
        body
    });
    let mut latencies = Vec::new();
    let mut client = server.connect();
    while !downloader.is_finished() && latencies.len() < 2000 {
        let start = std::time::Instant::now();
        assert_eq!(client.get("/hello").status, 200, "{mode:?}");
        latencies.push(start.elapsed());
    }
    let body = downloader.join().unwrap();
    assert!(common::decode(Some("gzip"), &body) == big, "{mode:?}");
    latencies.sort();
    assert!(
        latencies.len() >= 10,
        "{mode:?}: the download was over before it began"
    );
    let p99 = latencies[latencies.len() * 99 / 100];
    // A debug build compresses slowly; the bound is loose, the point is that it holds.
    assert!(
        p99 < std::time::Duration::from_millis(250),
        "{mode:?}: p99 {p99:?} over {} requests",
        latencies.len()
    );
}

/// Writes `noisy.txt` into `root` and returns it: 12 MiB that compresses to no less than three
/// quarters of it (six random bits a byte), more than the most a server can have queued for a
/// client that stopped reading (its socket's send buffer, 4 MiB at most by `net.ipv4.tcp_wmem`,
/// and the client's receive window, or `OUTPUT_HIGH_WATER` and one piece in the server). So a
/// client that reads none of it keeps its response, and the encoder, in flight.
fn noisy_text(root: &Path) -> Vec<u8> {
    const SYMBOLS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = common::Rng::seeded(19);
    let mut noisy = Vec::with_capacity(12 << 20);
    while noisy.len() < 12 << 20 {
        let bits = rng.next();
        noisy.extend((0..10).map(|at| SYMBOLS[(bits >> (6 * at)) as usize & 63]));
        noisy.push(b'\n');
    }
    fs::write(root.join("noisy.txt"), &noisy).unwrap();
    noisy
}

/// gzip's deflate states and zstd's contexts are kept for the streams that follow, and a stream
/// whose client leaves midway spoils none of them: after each of five such streams has been let
/// go (its encoder's share of the budget back), the next response in that coding, and a longer
/// one after it, decode to their files. (zlib-rs's reset leaves an abandoned level-1 stream's
/// block open, and a state reused after one began the next response with a corrupt block.) In
/// every mode that serves connections side by side (the test watches the budget on a connection
/// of its own).
#[test]
fn a_stream_abandoned_midway_spoils_no_other() {
    bounded(300, || {
        let (root, css) = compressing_site("content-abandoned");
        let noisy = noisy_text(&root);
        let modes = common::modes().filter(|&mode| mode != Mode::Blocking);
        for (mode, coding) in modes.flat_map(|mode| [(mode, "gzip"), (mode, "zstd")]) {
            let mut config = site_config(mode, &root);
            config.compress = true;
            config.metrics_path = Some("/metrics".into());
            let server = TestServer::start(config);
            for round in 0..5 {
                let mut leaving = Client::connect_with_small_window(server.addr, 16 * 1024);
                leaving.send(
                    format!(
                        "GET /noisy.txt HTTP/1.1\r\nHost: t\r\nAccept-Encoding: {coding}\r\n\r\n"
                    )
                    .as_bytes(),
                );
                let head = leaving.head_response();
                assert_eq!(head.header("Content-Encoding"), Some(coding), "{mode:?}");
                leaving.reset();
                assert!(
                    common::eventually(Duration::from_secs(10), || common::buffered(&server) == 0),
                    "{mode:?}: the abandoned stream is still held"
                );
                let mut client = server.connect();
                for (path, file) in [("/site.css", &css), ("/noisy.txt", &noisy)] {
                    let asked = format!("Accept-Encoding: {coding}\r\n");
                    let (head, body) = get_chunked(&mut client, path, &asked);
                    assert_eq!(head.header("Content-Encoding"), Some(coding), "{mode:?}");
                    assert!(
                        common::decode(Some(coding), &body) == *file,
                        "{mode:?}, {coding}, round {round}: {path} spoiled"
                    );
                }
            }
        }
    });
}

/// `--compress` with an access log: a body compressed as it is sent is logged with the bytes it
/// took on the wire (chunk framing included, as nginx's `$body_bytes_sent`), which are known only
/// at its end; one cut short by its client is logged too, with what went until then; a
/// HEAD has no body (`-`). In every mode.
#[test]
fn compressed_bodies_are_logged_with_their_size() {
    bounded(300, || {
        let (root, _) = compressing_site("content-compress-log");
        let noisy = noisy_text(&root);
        for mode in common::modes() {
            let log = root.join(format!("access-{mode:?}.log"));
            let mut config = site_config(mode, &root);
            config.compress = true;
            config.access_log = reactor_httpd::config::AccessLogTarget::File(log.clone());
            let mut server = TestServer::start(config);
            // Whole: everything after the head, read to the close.
            let mut whole = server.connect();
            whole.send(b"GET /site.css HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n");
            let head = whole.head_response();
            assert_eq!(
                head.header("Transfer-Encoding"),
                Some("chunked"),
                "{mode:?}"
            );
            let wire_body = whole.read_to_end().len();
            // Cut short: the head read, then gone.
            let mut cut = Client::connect_with_small_window(server.addr, 16 * 1024);
            cut.send(b"GET /noisy.txt HTTP/1.1\r\nHost: t\r\nAccept-Encoding: zstd\r\n\r\n");
            assert_eq!(cut.head_response().header("Content-Encoding"), Some("zstd"));
            drop(cut);
            let mut client = server.connect();
            client.send(b"HEAD /site.css HTTP/1.1\r\nHost: t\r\nAccept-Encoding: br\r\n\r\n");
            assert_eq!(client.head_response().status, 200);
            server.stop();
            let text = fs::read_to_string(&log)
                .unwrap_or_else(|err| panic!("{mode:?}: {}: {err}", log.display()));
            let size_of = |request: &str| common::logged_sizes(&text, request);
            assert_eq!(
                size_of("\"GET /site.css HTTP/1.1\" 200 "),
                [wire_body.to_string()],
                "{mode:?}:\n{text}"
            );
            assert_eq!(
                size_of("\"HEAD /site.css HTTP/1.1\" 200 "),
                ["-"],
                "{mode:?}"
            );
            let cut_short = size_of("\"GET /noisy.txt HTTP/1.1\" 200 ");
            let [cut_short] = &cut_short[..] else {
                panic!("{mode:?}: one line for the body cut short:\n{text}");
            };
            let cut_short: usize = cut_short.parse().expect("a size");
            assert!(
                cut_short > 0 && cut_short < noisy.len() / 2,
                "{mode:?}: {cut_short} bytes logged for a body cut short"
            );
        }
    });
}

/// An encoder's state counts against `--max-buffer-bytes` from the response's start to its end:
/// with room for one zstd encoder, a second client that asks for zstd alone gets the file as it
/// is (still with `Vary`), one that also takes brotli gets brotli (its encoder is smaller), and
/// once the first client is gone its share comes back and zstd is served again. In every mode
/// that serves connections side by side (fork mode's children share one budget).
#[test]
fn encoders_take_their_state_from_the_buffer_budget() {
    bounded(300, || {
        let (root, css) = compressing_site("content-compress-budget");
        let noisy = noisy_text(&root);
        for mode in common::modes().filter(|&mode| mode != Mode::Blocking) {
            let mut config = site_config(mode, &root);
            config.compress = true;
            config.metrics_path = Some("/metrics".into());
            // One zstd encoder for a large file (1.5 MiB) and the output it keeps queued, not
            // two; and room for brotli's beside it (136 KiB).
            config.limits.buffers = BufferBudget::new(2 << 20);
            let server = TestServer::start(config);
            let mut stalled = Client::connect_with_small_window(server.addr, 16 * 1024);
            stalled.send(b"GET /noisy.txt HTTP/1.1\r\nHost: t\r\nAccept-Encoding: zstd\r\n\r\n");
            let head = stalled.head_response();
            assert_eq!(head.header("Content-Encoding"), Some("zstd"), "{mode:?}");
            let before = common::buffered(&server);
            assert!(before > 1536 << 10, "{mode:?}: {before} held");

            let mut client = server.connect();
            let plain = get(&mut client, "/site.css", "Accept-Encoding: zstd\r\n");
            assert_eq!(plain.status, 200, "{mode:?}");
            assert_eq!(plain.header("Content-Encoding"), None, "{mode:?}");
            assert_eq!(plain.header("Vary"), Some("Accept-Encoding"), "{mode:?}");
            assert!(plain.body == css, "{mode:?}");
            let headers = "Accept-Encoding: zstd, br;q=0.5\r\n";
            let (smaller, body) = get_chunked(&mut client, "/site.css", headers);
            assert_eq!(smaller.header("Content-Encoding"), Some("br"), "{mode:?}");
            assert!(common::decode(Some("br"), &body) == css, "{mode:?}");
            // A HEAD is told the coding a GET would get now, though it makes no encoder.
            for (accept, coding) in [("zstd", None), ("zstd, br;q=0.5", Some("br"))] {
                let head = format!(
                    "HEAD /site.css HTTP/1.1\r\nHost: t\r\nAccept-Encoding: {accept}\r\n\r\n"
                );
                client.send(head.as_bytes());
                let head = client.head_response();
                assert_eq!(head.header("Content-Encoding"), coding, "{mode:?} {accept}");
                assert_eq!(head.header("Vary"), Some("Accept-Encoding"), "{mode:?}");
            }
            // zstd was declined twice to GETs and twice to HEADs, and said so.
            assert_eq!(common::declined(&server), 4, "{mode:?}");

            drop(stalled);
            assert!(
                common::eventually(Duration::from_secs(10), || common::buffered(&server) == 0),
                "{mode:?}: {} still held after the client left",
                common::buffered(&server)
            );
            let (again, body) = get_chunked(&mut client, "/noisy.txt", "Accept-Encoding: zstd\r\n");
            assert_eq!(again.header("Content-Encoding"), Some("zstd"), "{mode:?}");
            assert!(common::decode(Some("zstd"), &body) == noisy, "{mode:?}");
            assert_eq!(common::buffered(&server), 0, "{mode:?}");
        }
    });
}
