//! The document root, served as nginx or `python -m http.server` would serve it, safely.
//!
//! A request's path goes through [`resolve`] (decoded once, refused if it could leave ROOT or
//! name a hidden file, opened beneath ROOT). A file is answered with its validators (`ETag`,
//! `Last-Modified`), honouring conditional and range requests (`range.rs`), and its body is the
//! open file itself: the driver sends it with sendfile, so it never passes through memory. A
//! directory redirects to its slash form, serves its `index.html`, or is listed (`listing.rs`).

mod listing;
mod range;
pub mod resolve;

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{Handler, other_method};
use crate::http::{Body, FileBody, Request, Response, Status};
use range::{Part, Validators, parse_range};
use resolve::{DecodedPath, Opened, Refusal, Root, decode_path};

pub struct StaticFiles {
    root: Root,
}

impl StaticFiles {
    /// Serves `root`, which is canonicalized and opened once, here.
    pub fn new(root: &Path) -> io::Result<Self> {
        Ok(StaticFiles {
            root: Root::new(root)?,
        })
    }
}

impl Handler for StaticFiles {
    fn handle(&self, request: &Request<'_>) -> Response {
        const ALLOW: &str = "GET, HEAD, OPTIONS";
        let options = request.method == "OPTIONS";
        if !matches!(request.method, "GET" | "HEAD") && !options {
            return other_method(request, ALLOW);
        }
        if options && request.path == "*" {
            // The server as a whole (RFC 9110 9.3.7).
            return other_method(request, ALLOW);
        }
        let path = match decode_path(request.path) {
            Ok(path) => path,
            Err(refusal) => return refused(refusal),
        };
        let opened = self.root.open(&path.relative());
        if options {
            // What a path allows, once it is known to name something.
            return match opened {
                Ok(_) => other_method(request, ALLOW),
                Err(refusal) => refused(refusal),
            };
        }
        match opened {
            Ok(Opened::File(file, metadata)) => {
                let name = path.segments.last().map_or(&b""[..], Vec::as_slice);
                serve_file(request, file, &metadata, name)
            }
            Ok(Opened::Dir(..)) if !path.trailing_slash && !path.segments.is_empty() => {
                // Relative links inside a directory page only work from its slash form.
                let mut location = format!("{}/", request.path);
                if let Some(query) = request.query {
                    location.push('?');
                    location.push_str(query);
                }
                Response::error(Status::MOVED_PERMANENTLY).with_header("Location", location)
            }
            Ok(Opened::Dir(dir, _)) => self.serve_dir(request, &path, &dir),
            Err(refusal) => refused(refusal),
        }
    }
}

impl StaticFiles {
    /// A directory's `index.html` if it has one, otherwise its listing.
    fn serve_dir(&self, request: &Request<'_>, path: &DecodedPath, dir: &File) -> Response {
        let relative = path.relative();
        match self.root.open(&relative.join("index.html")) {
            Ok(Opened::File(file, metadata)) => {
                return serve_file(request, file, &metadata, b"index.html");
            }
            Ok(Opened::Dir(..)) | Err(Refusal::NotFound) => {}
            Err(refusal) => return refused(refusal),
        }
        let mut title = String::from("/");
        for segment in &path.segments {
            title.push_str(&String::from_utf8_lossy(segment));
            title.push('/');
        }
        let fallback = self.root.path().join(&relative);
        match listing::render(dir, &fallback, &title, path.segments.is_empty()) {
            Ok(html) => Response::new(Status::OK)
                .with_content_type("text/html; charset=utf-8")
                .with_body(Body::Bytes(html)),
            Err(err) => refused(resolve::refusal(err)),
        }
    }
}

/// Answers with the file: whole, in part, or not at all (304, 416), with its validators.
fn serve_file(request: &Request<'_>, file: File, metadata: &Metadata, name: &[u8]) -> Response {
    let Ok(modified) = metadata.modified() else {
        return refused(Refusal::Failed);
    };
    let validators = Validators::new(metadata.len(), modified);
    let headers = &request.headers;
    let with_validators = |response: Response| {
        response
            .with_header("Last-Modified", validators.last_modified())
            .with_header("ETag", validators.etag())
    };
    let if_none_match = headers.get_str("if-none-match");
    if validators.not_modified(if_none_match, headers.get_str("if-modified-since")) {
        return with_validators(Response::new(Status::NOT_MODIFIED));
    }
    // Ranges apply to GET only (RFC 9110 14.2), and only to the representation If-Range names.
    let part = if request.method == "GET" && validators.if_range_holds(headers.get_str("if-range"))
    {
        parse_range(headers.get_str("range"), validators.len)
    } else {
        Part::Whole
    };
    let len = validators.len;
    let (status, offset, count) = match part {
        Part::Whole => (Status::OK, 0, len),
        Part::Range { start, end } => (Status::PARTIAL_CONTENT, start, end - start + 1),
        Part::Unsatisfiable => {
            return Response::error(Status::RANGE_NOT_SATISFIABLE)
                .with_header("Content-Range", format!("bytes */{len}"));
        }
    };
    let mut response = with_validators(Response::new(status))
        .with_content_type(content_type(name))
        .with_header("Accept-Ranges", "bytes")
        .with_body(Body::File(FileBody {
            file,
            offset,
            len: count,
        }));
    if status == Status::PARTIAL_CONTENT {
        response = response.with_header(
            "Content-Range",
            format!("bytes {offset}-{}/{len}", offset + count - 1),
        );
    }
    response
}

/// By extension; text is declared UTF-8; unknown is `application/octet-stream`.
fn content_type(name: &[u8]) -> Cow<'static, str> {
    match mime_guess::from_path(Path::new(OsStr::from_bytes(name))).first_raw() {
        Some("text/html") => Cow::Borrowed("text/html; charset=utf-8"),
        Some("text/plain") => Cow::Borrowed("text/plain; charset=utf-8"),
        Some("text/css") => Cow::Borrowed("text/css; charset=utf-8"),
        Some("text/javascript") => Cow::Borrowed("text/javascript; charset=utf-8"),
        Some(text) if text.starts_with("text/") => Cow::Owned(format!("{text}; charset=utf-8")),
        Some(other) => Cow::Borrowed(other),
        None => Cow::Borrowed("application/octet-stream"),
    }
}

/// The answer when a path serves nothing. 404 gets a small HTML page, as browsers show it.
fn refused(refusal: Refusal) -> Response {
    match refusal {
        Refusal::NotFound => Response::new(Status::NOT_FOUND)
            .with_content_type("text/html; charset=utf-8")
            .with_body(Body::Static(
                b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\
                  <body><h1>404 Not Found</h1></body></html>\n",
            )),
        Refusal::BadRequest => Response::error(Status::BAD_REQUEST),
        Refusal::Forbidden => Response::error(Status::FORBIDDEN),
        Refusal::Unavailable => Response::error(Status::SERVICE_UNAVAILABLE),
        Refusal::Failed => Response::error(Status::INTERNAL_SERVER_ERROR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(content_type(b"a.html"), "text/html; charset=utf-8");
        assert_eq!(content_type(b"a.TXT"), "text/plain; charset=utf-8");
        assert_eq!(content_type(b"a.csv"), "text/csv; charset=utf-8");
        assert_eq!(content_type(b"a.png"), "image/png");
        assert_eq!(content_type(b"a.unknownext"), "application/octet-stream");
        assert_eq!(content_type(b"Makefile"), "application/octet-stream");
    }
}
