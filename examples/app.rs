//! Your own application on reactor-httpd: a small notes service, written as a user of the
//! library would write it.
//!
//! - `GET /api/notes` lists the notes as JSON; `POST /api/notes` with `{"text": "..."}` adds one
//!   (201, the note as JSON); anything else there is 405 with `Allow`.
//! - `GET /api/report` stands for a slow database query: it blocks for 100 ms. It says so in
//!   `may_block`, so in reactor mode it runs on the handler pool and the loops stay free.
//! - Every other path is a file of ROOT, served by the library's `StaticFiles`.
//!
//! Run: `cargo run --release --example app -- ROOT [ADDR]`, then
//! `curl -d '{"text":"hi"}' http://127.0.0.1:8081/api/notes`.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use reactor_httpd::app::{Handler, StaticFiles, other_method};
use reactor_httpd::config::{AccessLogTarget, Config};
use reactor_httpd::http::{Body, Request, Response, Status};
use reactor_httpd::server::Server;

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let root = args.next().unwrap_or_else(|| ".".into());
    let bind = args.next().unwrap_or_else(|| "127.0.0.1:8081".into());
    let config = Config {
        bind: bind.parse().map_err(io::Error::other)?,
        access_log: AccessLogTarget::Stdout,
        ..Config::default()
    };
    // The same calls the reactor-httpd binary makes: the listening line once every loop is made.
    let mut server = Server::bind(&config, app(Path::new(&root))?).map_err(io::Error::other)?;
    server.stop_on_signals()?;
    let line = server.listening_line();
    server.when_ready(move || println!("{line}"));
    server.run()
}

// ANCHOR: app
/// The application: the notes API, composed over the files of `root`.
pub fn app(root: &Path) -> io::Result<Arc<dyn Handler>> {
    Ok(Arc::new(Notes {
        notes: Mutex::new(Vec::new()),
        files: StaticFiles::new(root)?,
    }))
}

struct Notes {
    notes: Mutex<Vec<Value>>,
    files: StaticFiles,
}

impl Handler for Notes {
    fn handle(&self, request: &Request<'_>) -> Response {
        match (request.method, request.path) {
            ("GET" | "HEAD", "/api/notes") => json_response(Status::OK, &self.list()),
            ("POST", "/api/notes") => self.add(request.body),
            (_, "/api/notes") => other_method(request, "GET, HEAD, POST, OPTIONS"),
            ("GET" | "HEAD", "/api/report") => self.report(),
            (_, "/api/report") => other_method(request, "GET, HEAD, OPTIONS"),
            _ => self.files.handle(request),
        }
    }

    /// Only the report waits on anything; the notes and the files are answered on the loop.
    fn may_block(&self, request: &Request<'_>) -> bool {
        request.path == "/api/report"
    }
}
// ANCHOR_END: app

impl Notes {
    fn list(&self) -> Value {
        Value::Array(self.notes.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    fn add(&self, body: &[u8]) -> Response {
        let text = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|value| value.get("text")?.as_str().map(str::to_string));
        let Some(text) = text else {
            let error = json!({"error": "expected {\"text\": \"...\"}"});
            return json_response(Status::BAD_REQUEST, &error);
        };
        let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        let note = json!({"id": notes.len() + 1, "text": text});
        notes.push(note.clone());
        json_response(Status::CREATED, &note)
    }

    /// A slow query: it holds its thread, as a database call would.
    fn report(&self) -> Response {
        std::thread::sleep(Duration::from_millis(100));
        let count = self.notes.lock().unwrap_or_else(|e| e.into_inner()).len();
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        json_response(Status::OK, &json!({"notes": count, "at": at.as_secs()}))
    }
}

fn json_response(status: Status, value: &Value) -> Response {
    Response::new(status)
        .with_content_type("application/json")
        .with_body(Body::Bytes(value.to_string().into_bytes()))
}
