//! The library as a user uses it (`examples/app.rs`): its JSON routes, its blocking route on the
//! handler pool while the loop answers others, and its static files, over real sockets. The
//! example's source is compiled into this test, so the test runs whatever the example says.

mod common;

#[allow(dead_code)] // the example's `main`
#[path = "../examples/app.rs"]
mod example;

use std::thread;
use std::time::{Duration, Instant};

use common::{TestServer, bounded, config, tempdir};
use reactor_httpd::config::{Config, Cores, Mode};
use serde_json::{Value, json};

fn json(response: &common::Response) -> Value {
    assert_eq!(response.header("content-type"), Some("application/json"));
    serde_json::from_slice(&response.body).expect("JSON body")
}

#[test]
fn notes_report_and_files() {
    bounded(30, || {
        let root = tempdir("app-example");
        std::fs::write(root.join("index.html"), "<h1>notes</h1>").unwrap();
        let handler = example::app(&root).unwrap();
        let config = Config {
            cores: Cores::Count(1),
            ..config(Mode::Reactor)
        };
        let server = TestServer::with_handler(config, handler);
        let mut client = server.connect();

        assert_eq!(json(&client.get("/api/notes")), json!([]));
        let body = r#"{"text": "buy milk"}"#;
        let created = client.request(
            format!(
                "POST /api/notes HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        assert_eq!(created.status, 201);
        assert_eq!(json(&created), json!({"id": 1, "text": "buy milk"}));
        assert_eq!(
            json(&client.get("/api/notes")),
            json!([{"id": 1, "text": "buy milk"}])
        );
        let bad = client
            .request(b"POST /api/notes HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nnope!");
        assert_eq!(bad.status, 400);
        let wrong = client.request(b"DELETE /api/notes HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(wrong.status, 405);
        assert_eq!(wrong.header("allow"), Some("GET, HEAD, POST, OPTIONS"));
        assert_eq!(client.get("/").text(), "<h1>notes</h1>");
        assert_eq!(client.get("/missing").status, 404);

        // The report blocks for 100 ms, four at once, on the pool; meanwhile the one loop
        // answers the notes at once.
        let addr = server.addr;
        let reports: Vec<_> = (0..4)
            .map(|_| {
                thread::spawn(move || {
                    let response = common::Client::connect(addr).get("/api/report");
                    json(&response)["notes"].as_u64()
                })
            })
            .collect();
        let mut other = server.connect();
        let mut slowest = Duration::ZERO;
        while reports.iter().any(|r| !r.is_finished()) {
            let start = Instant::now();
            assert_eq!(other.get("/api/notes").status, 200);
            slowest = slowest.max(start.elapsed());
        }
        for report in reports {
            assert_eq!(report.join().unwrap(), Some(1));
        }
        // On the loop, a report would hold every other request for 100 ms.
        assert!(slowest < Duration::from_millis(80), "{slowest:?}");
    });
}
