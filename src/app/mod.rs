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

// ANCHOR: handler
/// Answers requests. Shared by every event loop and worker thread, hence `Send + Sync`.
///
/// A handler is called with the whole request (head and body) and returns the whole response;
/// it never sees a socket. In reactor mode it runs on the event loop itself, between one
/// readiness event and the next: while it runs, every other connection of that loop waits. So a
/// handler that may block (a database call, a sleep, a long computation) says so in
/// [`Handler::may_block`], and the reactor runs those requests on its handler pool
/// (`--handler-threads`) instead, and sends the response back to the loop when it is ready.
/// The other modes call every handler on the thread that serves the connection.
///
/// ```
/// use reactor_httpd::app::Handler;
/// use reactor_httpd::http::{Request, Response, Status};
///
/// struct Report;
///
/// impl Handler for Report {
///     fn handle(&self, request: &Request<'_>) -> Response {
///         match request.path {
///             "/report" => Response::text(Status::OK, slow_query()),
///             _ => Response::error(Status::NOT_FOUND),
///         }
///     }
///
///     /// Only the report waits on the database; everything else stays on the loop.
///     fn may_block(&self, request: &Request<'_>) -> bool {
///         request.path == "/report"
///     }
/// }
/// # fn slow_query() -> String { "42".into() }
/// ```
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: &Request<'_>) -> Response;

    /// Whether answering `request` may block its thread for long (I/O, sleeping, heavy
    /// computation). Asked on the loop for every request, so it should be a quick look at the
    /// method and path. Default: never.
    fn may_block(&self, _request: &Request<'_>) -> bool {
        false
    }

    /// Whether answering `request` (its head; the body has not all come yet) reads its body.
    /// When not, the connection still reads the body, to know where the next request starts,
    /// but keeps none of it, and the handler gets an empty body: an upload to a handler that
    /// ignores it (the static files answer a POST with 405) then holds no memory however large
    /// it is. Framing, limits and the bytes sent back are the same either way, except that a
    /// request waiting for `100 Continue` is answered at once, with an empty body, and its
    /// connection closed after it: the client need not send a body nobody reads. Asked once for
    /// each request whose body did not arrive whole with its head or that waits for
    /// `100 Continue` (a body that came whole is passed on as it is). Default: it does.
    fn reads_body(&self, _request: &Request<'_>) -> bool {
        true
    }

    /// What an event loop calls: the response, or `None` if the request [may
    /// block](Handler::may_block), in which case the loop has [`Handler::handle`] run on its
    /// pool. The default asks one, then the other; a router that can tell both from one look
    /// at the path overrides it to look once (the demo routes do), since it runs for every
    /// request on the loop.
    fn handle_unless_blocking(&self, request: &Request<'_>) -> Option<Response> {
        if self.may_block(request) {
            None
        } else {
            Some(self.handle(request))
        }
    }
}
// ANCHOR_END: handler

/// The answer to a method a resource does not serve itself, `allow` naming those it does:
/// OPTIONS gets 204 (RFC 9110 9.3.7), any other 405 (15.5.6), both with `Allow`. (Methods the
/// server does not recognize at all never reach a handler: the HTTP core answers them 501.)
pub fn other_method(request: &Request<'_>, allow: &'static str) -> Response {
    let status = match request.method {
        "OPTIONS" => Status::NO_CONTENT,
        _ => Status::METHOD_NOT_ALLOWED,
    };
    let response = match status {
        Status::NO_CONTENT => Response::new(status),
        _ => Response::error(status),
    };
    response.with_header("Allow", allow)
}

/// The handler a configuration asks for: the static files of ROOT, with the demo routes
/// mounted ahead of them when `--demo` is given. Fails if ROOT cannot be opened.
pub fn build(config: &Config) -> io::Result<Arc<dyn Handler>> {
    let files = StaticFiles::new(&config.root)?
        .precompressed(config.precompressed)
        .compress(config.compress)
        .buffers(config.limits.buffers.clone());
    Ok(if config.demo {
        Arc::new(Demo::new(files))
    } else {
        Arc::new(files)
    })
}
