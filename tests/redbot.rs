//! REDbot, the HTTP linter (PyPI `redbot`; `.ci/run` installs it, and without it this test
//! fails, saying so), on the responses content negotiation makes: a file with precompressed
//! siblings, a file compressed as it is sent, a listing. It must find nothing BAD.

mod common;

use std::fs;
use std::process::Command;

use common::{TestServer, bounded, config, tempdir};
use reactor_httpd::config::Mode;

#[test]
fn redbot_finds_nothing_bad() {
    bounded(180, || {
        let root = tempdir("redbot");
        let text: Vec<u8> = (0..2000)
            .flat_map(|i| format!("line {i}: {}\n", i * 7919 % 10007).into_bytes())
            .collect();
        fs::write(root.join("notes.txt"), &text).unwrap();
        fs::write(root.join("app.js"), &text).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &text).unwrap();
        fs::write(root.join("app.js.gz"), gz.finish().unwrap()).unwrap();
        fs::create_dir(root.join("dir")).unwrap();
        let mut config = config(Mode::Reactor);
        config.root = root.clone();
        config.compress = true;
        config.headers = vec![("Cache-Control".into(), "max-age=60".into())];
        let server = TestServer::start(config);
        for path in ["/app.js", "/notes.txt", "/dir/"] {
            let url = format!("http://{}{path}", server.addr);
            let output = Command::new("redbot")
                .args(["-o", "har", &url])
                .output()
                .unwrap_or_else(|err| {
                    panic!("redbot is needed (pip install redbot; .ci/run does): {err}")
                });
            let har: serde_json::Value = serde_json::from_slice(&output.stdout)
                .unwrap_or_else(|err| panic!("redbot said {output:?}: {err}"));
            let notes = har["log"]["entries"][0]["_red_messages"]
                .as_array()
                .expect("REDbot's notes")
                .clone();
            assert!(!notes.is_empty(), "{path}: no notes at all");
            let bad: Vec<_> = notes.iter().filter(|note| note["level"] == "BAD").collect();
            assert!(bad.is_empty(), "{path}: {bad:#?}");
            if path != "/dir/" {
                // It did negotiate: the compressed response was seen.
                assert!(
                    notes
                        .iter()
                        .any(|note| note["note_id"] == "CONNEG_GZIP_GOOD"),
                    "{path}: {notes:#?}"
                );
            }
        }
    });
}
