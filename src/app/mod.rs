//! What answers requests: the [`Handler`] trait, the demo routes and the static files.
//!
//! A handler is this server's WSGI: the HTTP core calls it with a complete request (head and
//! whole body) and sends back the response it returns. It never sees a socket or a byte of
//! framing, so the same handler runs under every driver. Handlers compose by wrapping: the demo
//! routes answer their three paths and hand everything else to the static files.

mod demo;
pub mod static_files;

pub use demo::Demo;
pub use static_files::StaticFiles;

use std::io;
use std::sync::Arc;

use crate::config::Config;
use crate::http::{Request, Response, Status};

/// Answers requests. Shared by every event loop and worker thread, hence `Send + Sync`.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: &Request<'_>) -> Response;
}

/// A 405 naming the methods that are allowed.
pub fn method_not_allowed(allow: &'static str) -> Response {
    Response::error(Status::METHOD_NOT_ALLOWED).with_header("Allow", allow)
}

/// The handler a configuration asks for: the static files of ROOT, with the demo routes
/// mounted ahead of them when `--demo` is given. Fails if ROOT cannot be opened.
pub fn build(config: &Config) -> io::Result<Arc<dyn Handler>> {
    let files = StaticFiles::new(&config.root)?;
    Ok(if config.demo {
        Arc::new(Demo::new(files))
    } else {
        Arc::new(files)
    })
}
