//! REDbot, the HTTP linter (PyPI `redbot`; `.ci/run` installs it, and without it this test
//! fails, saying so), on what a served directory answers, in every mode: a file with a
//! precompressed sibling, a file compressed as it is sent, a file that is neither, a listing
//! (HTML and JSON), the redirect to a directory's slash form, and a 404. It makes its own
//! conditional and ranged requests of each, and must find nothing BAD and nothing to warn about;
//! of the files it must have seen validation (`If-None-Match` and `If-Modified-Since` answered
//! 304) and ranges work, and of the compressible ones, negotiation.

mod common;

use std::path::Path;
use std::process::Command;

use common::{TestServer, bounded, config, in_every_mode_at_once, linted_site, tempdir};
use reactor_httpd::config::Mode;

/// Each path, and the notes REDbot must give it as GOOD.
const CHECKED: [(&str, &[&str]); 7] = [
    (
        "/app.js",
        &["CONNEG_GZIP_GOOD", "INM_304", "IMS_304", "RANGE_CORRECT"],
    ),
    (
        "/notes.txt",
        &["CONNEG_GZIP_GOOD", "INM_304", "IMS_304", "RANGE_CORRECT"],
    ),
    (
        "/data.bin",
        &["INM_304", "IMS_304", "RANGE_CORRECT", "CL_CORRECT"],
    ),
    ("/dir/", &["CL_CORRECT"]),
    ("/dir/?format=json", &["CL_CORRECT"]),
    ("/dir", &["CL_CORRECT"]),
    ("/missing.txt", &["CL_CORRECT"]),
];

#[test]
fn redbot_finds_nothing_bad_in_any_mode() {
    bounded(180, || {
        let root = tempdir("redbot");
        linted_site(&root);
        // All modes at once: REDbot takes about half a second a path.
        in_every_mode_at_once(|mode| check(mode, &root));
    });
}

fn check(mode: Mode, root: &Path) {
    let mut config = config(mode);
    config.root = root.to_path_buf();
    config.compress = true;
    // Without it, REDbot warns that caches may choose a freshness lifetime: true of any file
    // server not told one, and not what this test is about.
    config.headers = vec![("Cache-Control".into(), "max-age=60".into())];
    if mode == Mode::Blocking {
        // REDbot's checks of a path run side by side, each on a connection it keeps open: one
        // connection at a time, the others wait for it to time out.
        config.limits.keep_alive_timeout = std::time::Duration::from_millis(300);
    }
    let server = TestServer::start(config);
    for (path, good) in CHECKED {
        let url = format!("http://{}{path}", server.addr);
        let output = Command::new("redbot")
            .args(["-o", "har", &url])
            .output()
            .unwrap_or_else(|err| {
                panic!("redbot is needed (pip install redbot; .ci/run does): {err}")
            });
        let har: serde_json::Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|err| panic!("{mode:?} {path}: redbot said {output:?}: {err}"));
        let notes = har["log"]["entries"][0]["_red_messages"]
            .as_array()
            .unwrap_or_else(|| panic!("{mode:?} {path}: no notes in {har}"))
            .clone();
        let of_level = |level: &str| -> Vec<&serde_json::Value> {
            notes.iter().filter(|note| note["level"] == level).collect()
        };
        let (bad, warned) = (of_level("BAD"), of_level("WARN"));
        assert!(bad.is_empty(), "{mode:?} {path}: {bad:#?}");
        assert!(warned.is_empty(), "{mode:?} {path}: {warned:#?}");
        for id in good {
            assert!(
                notes
                    .iter()
                    .any(|note| note["note_id"] == *id && note["level"] == "GOOD"),
                "{mode:?} {path}: REDbot did not find {id}: {notes:#?}"
            );
        }
    }
}
