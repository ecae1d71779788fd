//! What answers requests: the [`Handler`] trait, the demo routes and the static files.
//!
//! A handler is this server's WSGI: the HTTP core calls it with a complete request (head and
//! whole body) and sends back the response it returns. It never sees a socket or a byte of
//! framing, so the same handler runs under every driver. Handlers compose by wrapping: the demo
//! routes answer their three paths and hand everything else to the static files.

mod demo;

pub use demo::Demo;

use crate::http::{Request, Response, Status};

/// Answers requests. Shared by every event loop and worker thread, hence `Send + Sync`.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: &Request<'_>) -> Response;
}

/// Answers 404 to everything: what is left when nothing else is mounted.
pub struct NotFound;

impl Handler for NotFound {
    fn handle(&self, _request: &Request<'_>) -> Response {
        Response::error(Status::NOT_FOUND)
    }
}

/// A 405 naming the methods that are allowed.
pub fn method_not_allowed(allow: &'static str) -> Response {
    Response::error(Status::METHOD_NOT_ALLOWED).with_header("Allow", allow)
}

/// The handler a configuration asks for: the demo routes (with `--demo`) ahead of what serves
/// the document root.
pub fn build(config: &crate::config::Config) -> std::sync::Arc<dyn Handler> {
    if config.demo {
        std::sync::Arc::new(Demo::new(NotFound))
    } else {
        std::sync::Arc::new(NotFound)
    }
}
