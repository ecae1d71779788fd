//! The document root, served as nginx or `python -m http.server` would serve it, safely.
//!
//! A request's path goes through [`resolve`] (decoded once, refused if it could leave ROOT or
//! name a hidden file, opened beneath ROOT). A file is answered with its validators (`ETag`,
//! `Last-Modified`), honouring conditional and range requests (`range.rs`), and its body is the
//! open file itself: the driver sends it with sendfile, so it never passes through memory. A
//! directory redirects to its slash form, serves its `index.html`, or is listed (`listing.rs`).
//! A file's precompressed siblings (`x.br`, `x.zst`, `x.gz`) are served by `Accept-Encoding`
//! (`negotiate.rs`), and looked for on every request unless the file is remembered to have
//! none while its directory is unchanged (`bare.rs`).

mod bare;
mod compress;
mod listing;
mod negotiate;
mod range;
pub mod resolve;

use std::borrow::Cow;
use std::ffi::{CStr, OsStr};
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

use super::{Handler, other_method};
use crate::config::DEFAULT_MAX_BUFFER_BYTES;
use crate::http::{
    Body, BodyStream, BufferBudget, FileBody, Headers, Multipart, Request, Response, SharedBytes,
    Status, join_list, name_is,
};
use bare::Look;
use compress::Declined;
use negotiate::Coding;
use range::{Conditions, Outcome, Part, Validators, parse_range};
use resolve::{DecodedPath, DocumentRoot, HeldRoot, Opened, Refusal, Root, decode_path};

pub struct StaticFiles {
    /// ROOT, followed when its name comes to mean another directory; each request serves from
    /// the directory it meant when the request began.
    root: DocumentRoot,
    /// Serve `x.br`, `x.zst` or `x.gz` for `x` to a client that accepts it.
    precompressed: bool,
    /// `--compress`: compress compressible files as they are sent.
    compress: bool,
    /// What the encoders of files being compressed, and the listings being sent, take their
    /// memory from (`--max-buffer-bytes`).
    buffers: Arc<BufferBudget>,
    /// Whether any sibling has been found since the start: until one is, this ROOT is taken for
    /// one that has none, and every sibling is stat'ed before it is opened (see [`Self::sibling`]).
    /// Set once, by whichever loop finds one first; read with every file served.
    siblings_seen: AtomicBool,
    /// This site's number in each thread's memory of files without siblings ([`bare`]).
    site: u64,
    /// Listings being sent, shared by all who ask for the same page at about the same time.
    listings: listing::Listings,
}

impl StaticFiles {
    /// Serves `root` (opened here, to be looked up again at most once a second in each thread:
    /// [`DocumentRoot`]); precompressed siblings on.
    pub fn new(root: &Path) -> io::Result<Self> {
        Ok(StaticFiles {
            root: DocumentRoot::new(root)?,
            precompressed: true,
            compress: false,
            buffers: BufferBudget::new(DEFAULT_MAX_BUFFER_BYTES),
            siblings_seen: AtomicBool::new(false),
            site: bare::next_site(),
            listings: listing::Listings::default(),
        })
    }

    /// Whether compressible files without a sibling are compressed as they are sent.
    pub fn compress(self, on: bool) -> Self {
        StaticFiles {
            compress: on,
            ..self
        }
    }

    /// The budget compressing encoders and listings take their memory from: the server's, shared
    /// with its connections' buffers (a budget of its own, of the default size, unless given).
    pub fn buffers(self, budget: Arc<BufferBudget>) -> Self {
        StaticFiles {
            buffers: budget,
            ..self
        }
    }

    /// Whether precompressed siblings are served (`--no-precompressed` turns them off).
    pub fn precompressed(self, on: bool) -> Self {
        StaticFiles {
            precompressed: on,
            ..self
        }
    }
}

/// What a look at a request found: its answer, or a directory to list. Listing reads the whole
/// directory (0.2 s for 100,000 entries, `benches/listing-time.sh`), so on an event loop it is
/// left for the handler pool; everything else answers at once.
enum Looked {
    Answer(Response),
    /// The directory, opened beneath the ROOT given, and its metadata as of then.
    Listing(HeldRoot, DecodedPath, File, Metadata),
}

impl Handler for StaticFiles {
    fn handle(&self, request: &Request<'_>) -> Response {
        match self.look(request) {
            Looked::Answer(response) => response,
            Looked::Listing(root, path, dir, metadata) => {
                self.list(request, &root, &path, &dir, &metadata)
            }
        }
    }

    /// No file, listing or refusal here depends on a request's body.
    fn reads_body(&self, _request: &Request<'_>) -> bool {
        false
    }

    /// A file, a redirect, a refusal or a directory's `index.html` is answered on the loop; a
    /// listing goes to the pool, where it stalls no other connection. Whether a directory is
    /// listed is known only once it is opened and has no `index.html`, so this looks first
    /// (`may_block` stays false: a look at the path cannot tell).
    fn handle_unless_blocking(&self, request: &Request<'_>) -> Option<Response> {
        match self.look(request) {
            Looked::Answer(response) => Some(response),
            Looked::Listing(..) => None,
        }
    }
}

impl StaticFiles {
    fn look(&self, request: &Request<'_>) -> Looked {
        const ALLOW: &str = "GET, HEAD, OPTIONS";
        let options = request.method == "OPTIONS";
        if !matches!(request.method, "GET" | "HEAD") && !options {
            return Looked::Answer(other_method(request, ALLOW));
        }
        if options && request.path == "*" {
            // The server as a whole (RFC 9110 9.3.7).
            return Looked::Answer(other_method(request, ALLOW));
        }
        let path = match decode_path(request.path) {
            Ok(path) => path,
            Err(refusal) => return Looked::Answer(refused(refusal)),
        };
        let relative = path.relative();
        let name = path.name();
        let wanted = negotiate::wanted(request.headers.get_str("accept-encoding"));
        let held = self.root.current();
        let root: &Root = &held;
        let mut look = Look::new(self.site, root, relative);
        if !options
            && !path.trailing_slash
            && !name.is_empty()
            && let Some(response) = self.serve_sibling(request, &wanted, &mut look, name)
        {
            return Looked::Answer(response);
        }
        let opened = root.open(relative);
        if options {
            // What a path allows, once it is known to name something.
            return Looked::Answer(match opened {
                Ok(_) => other_method(request, ALLOW),
                Err(refusal) => refused(refusal),
            });
        }
        Looked::Answer(match opened {
            Ok(Opened::File(file, metadata)) => {
                self.serve_plain(request, &wanted, look, file, &metadata, name)
            }
            Ok(Opened::Dir(..)) if !path.trailing_slash && !path.is_root() => {
                // Relative links inside a directory page only work from its slash form. Empty
                // segments name nothing, and leading ones must go: `//host/` in a Location is
                // another host (an open redirect, with a directory named like one).
                let mut location = format!("/{}/", request.path.trim_start_matches('/'));
                if let Some(query) = request.query {
                    location.push('?');
                    location.push_str(query);
                }
                Response::error(Status::MOVED_PERMANENTLY).with_header("Location", location)
            }
            Ok(Opened::Dir(dir, metadata)) => {
                return self.serve_dir(held, request, &wanted, path, dir, metadata);
            }
            Err(refusal) => refused(refusal),
        })
    }

    /// A directory's `index.html` if it has one, otherwise its listing, to be made.
    fn serve_dir(
        &self,
        root: HeldRoot,
        request: &Request<'_>,
        wanted: &[Coding],
        path: DecodedPath,
        dir: File,
        metadata: Metadata,
    ) -> Looked {
        let relative = path.relative();
        let Some(index) = resolve::child(relative, b"index.html") else {
            return Looked::Answer(refused(Refusal::NotFound));
        };
        let mut look = Look::new(self.site, &root, &index);
        if let Some(response) = self.serve_sibling(request, wanted, &mut look, b"index.html") {
            return Looked::Answer(response);
        }
        match root.open(&index) {
            Ok(Opened::File(file, metadata)) => Looked::Answer(self.serve_plain(
                request,
                wanted,
                look,
                file,
                &metadata,
                b"index.html",
            )),
            Ok(Opened::Dir(..)) | Err(Refusal::NotFound) => {
                Looked::Listing(root, path, dir, metadata)
            }
            Err(refusal) => Looked::Answer(refused(refusal)),
        }
    }

    /// The listing of `dir`, the directory at `path` (`metadata` its own, from when it was
    /// opened): HTML, or JSON for a client that prefers it.
    fn list(
        &self,
        request: &Request<'_>,
        root: &Root,
        path: &DecodedPath,
        dir: &File,
        metadata: &Metadata,
    ) -> Response {
        let mut title = String::from("/");
        for segment in path.segments() {
            title.push_str(&String::from_utf8_lossy(segment));
            title.push('/');
        }
        let json = wants_json(request);
        // A page made here counts against the buffer budget while any response holds it; with
        // no room left for it, 503, as for a body that would not fit (the page is let go).
        let make = || {
            let entries = listing::entries(root, path.relative(), dir)?;
            let page = match json {
                true => listing::json(&entries),
                false => listing::html(&entries, &title, path.is_root()),
            };
            let changed = listing::last_changed(&entries, metadata);
            let page = SharedBytes::charged(page, &self.buffers)
                .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
            Ok((page, changed))
        };
        let key = listing::PageKey {
            dev: metadata.dev(),
            ino: metadata.ino(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            title: title.clone(),
            json,
        };
        let page = match self.listings.get_or_make(key, Instant::now(), make) {
            Ok(page) => page,
            Err(err) if err.kind() == io::ErrorKind::OutOfMemory => {
                return Response::error(Status::SERVICE_UNAVAILABLE);
            }
            Err(err) => return refused(resolve::refusal(err)),
        };
        let content_type = match json {
            true => "application/json",
            false => "text/html; charset=utf-8",
        };
        // Under `--compress` a page is compressed as a text file is (`serve_plain`), in the
        // first coding the client accepts that the budget has room for; else sent as it is.
        let compressible = self.compress && page.bytes.len() as u64 >= compress::MIN_LEN;
        let vary = match compressible {
            true => "Accept, Accept-Encoding",
            false => "Accept",
        };
        let validators = Validators::new(page.bytes.len() as u64, page.changed);
        if compressible && may_compress_on_the_fly(request) {
            let wanted = negotiate::wanted(request.headers.get_str("accept-encoding"));
            for &coding in wanted.iter() {
                // The page's tag with the coding's name inside its quotes, weak.
                let Some(quoted) = page.tag.strip_suffix('"') else {
                    break;
                };
                let tag = (validators, format!("W/{quoted}-{}\"", coding.token()));
                let bytes = page.bytes.clone();
                if let Ok(response) =
                    compressed_body(request, bytes, tag, content_type, coding, &self.buffers)
                {
                    return response.with_header("Vary", vary);
                }
            }
        }
        // Validated as a file is, by the page's own tag and the time what it shows last
        // changed: a browser that has the page gets 304, not the page again.
        let outcome = validators.evaluate(
            &conditions(&request.headers),
            &page.tag,
            false,
            SystemTime::now(),
        );
        let validated = |response: Response| {
            response
                .with_last_modified(validators.mtime())
                .with_header("ETag", page.tag.to_string())
                .with_header("Vary", vary)
        };
        match outcome {
            Outcome::Send => {}
            Outcome::NotModified => return validated(Response::new(Status::NOT_MODIFIED)),
            Outcome::PreconditionFailed => return Response::error(Status::PRECONDITION_FAILED),
        }
        validated(Response::new(Status::OK))
            .with_content_type(content_type)
            .with_body(Body::Shared(page.bytes))
    }
}

/// A listing as JSON: asked by `?format=json`, or by an `Accept` that weighs
/// `application/json` above `text/html` (each weighed by its most specific media range).
fn wants_json(request: &Request<'_>) -> bool {
    if let Some(query) = request.query
        && query.split('&').any(|pair| pair == "format=json")
    {
        return true;
    }
    let Some(accept) = request.headers.get_str("accept") else {
        return false;
    };
    let weight = |wanted: &str| {
        let (kind, _) = wanted.split_once('/').unwrap_or((wanted, ""));
        let mut best: Option<(u8, u16)> = None; // (specificity, thousandths)
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let specificity = if media == wanted {
                3
            } else if media == format!("{kind}/*") {
                2
            } else if media == "*/*" {
                1
            } else {
                continue;
            };
            let q = parts
                .filter_map(|param| param.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1000), |(_, value)| {
                    negotiate::qvalue(value.trim().as_bytes())
                });
            let Some(q) = q else { continue };
            if best.is_none_or(|(s, _)| specificity > s) {
                best = Some((specificity, q));
            }
        }
        best.map_or(0, |(_, q)| q)
    };
    let json = weight("application/json");
    json > 0 && json > weight("text/html")
}

impl StaticFiles {
    /// The precompressed sibling of `relative` the client prefers (`x.br`, `x.zst` or `x.gz`,
    /// each resolved beneath ROOT like any file), served with `Vary: Accept-Encoding`; `None`
    /// when there is none it wants, or siblings are off. Tried before `x` itself is opened, as
    /// nginx's `gzip_static` does: a text file's sibling costs one open, not two. Not tried for
    /// a file known to have none (`look`, [`bare`]).
    fn serve_sibling(
        &self,
        request: &Request<'_>,
        wanted: &[Coding],
        look: &mut Look<'_>,
        name: &[u8],
    ) -> Option<Response> {
        if !self.precompressed || wanted.is_empty() || Coding::names_sibling(name) {
            return None;
        }
        if look.bare() {
            return None;
        }
        // A site that precompresses does it for text; an image, a video or an archive is
        // compressed already and rarely has a sibling. So only a text file's siblings are
        // expected, and only once this ROOT has shown it has some.
        let expected = self.siblings_seen.load(Ordering::Relaxed) && is_text(name);
        let mut scratch = ScratchPath::new();
        wanted.iter().find_map(|&coding| {
            let (file, metadata) = self.sibling(&mut scratch, look, coding, expected)?;
            let response = serve_file(request, file, &metadata, name, Some(coding));
            Some(response.with_header("Vary", "Accept-Encoding"))
        })
    }

    /// `x` itself, when no sibling was served: it still says `Vary: Accept-Encoding` if it has
    /// one (one the client did not want), so that caches keep one answer per coding. A file
    /// found to have none is remembered as such (`look`, [`bare`]).
    fn serve_plain(
        &self,
        request: &Request<'_>,
        wanted: &[Coding],
        mut look: Look<'_>,
        file: File,
        metadata: &Metadata,
        name: &[u8],
    ) -> Response {
        let compressible = self.compress && metadata.len() >= compress::MIN_LEN && is_text(name);
        if compressible {
            look.done();
            let codings = if may_compress_on_the_fly(request) {
                wanted
            } else {
                &[]
            };
            let mut file = file;
            // The coding the client prefers, or the next one whose encoder the budget has room
            // for; or none.
            for &coding in codings {
                match compressed(request, file, metadata, name, coding, &self.buffers) {
                    Ok(response) => return response.with_header("Vary", "Accept-Encoding"),
                    Err(back) => file = back,
                }
            }
            return serve_file(request, file, metadata, name, None)
                .with_header("Vary", "Accept-Encoding");
        }
        let response = serve_file(request, file, metadata, name, None);
        if !self.precompressed || Coding::names_sibling(name) || look.bare() {
            return response;
        }
        let mut scratch = ScratchPath::new();
        let varies = (Coding::ALL.iter())
            .filter(|coding| !wanted.contains(coding))
            .any(|&coding| {
                self.sibling(&mut scratch, &mut look, coding, false)
                    .is_some()
            });
        look.done();
        if varies {
            response.with_header("Vary", "Accept-Encoding")
        } else {
            response
        }
    }

    /// The sibling of `relative` for `coding`, opened beneath ROOT like any file. If it is not
    /// `expected`, a stat asks first ([`Root::may_exist`]): a name that is not there costs a
    /// failed stat, a little more than half a failed open, and one that is costs both. So an
    /// expected sibling (of a text file, for a coding the client wants, in a ROOT where siblings
    /// have been found: a site that precompresses does it for the files clients ask for) is
    /// opened at once, one open for a hit, as with nginx's `gzip_static`; the rest, nearly always
    /// absent, are stat'ed. The answer is the same either way. Measured in docs/performance.md
    /// (stops 61 and 62): a 4 KiB file served to wrk, which wants no coding, took 7.8 µs of CPU
    /// with three stats, 8.5 with three opens.
    ///
    /// `scratch` holds the sibling's path, and is kept for the next coding's. A sibling found
    /// not there is told to `look`: an open that fails is asked again by a stat (a dangling
    /// link or the like is not absence), but only when `look` can remember it.
    fn sibling(
        &self,
        scratch: &mut ScratchPath,
        look: &mut Look<'_>,
        coding: Coding,
        expected: bool,
    ) -> Option<(File, Metadata)> {
        let path = scratch.of(look.relative(), coding)?;
        let root = look.root();
        if !expected && !root.may_exist(path) {
            look.absent(coding);
            return None;
        }
        match root.open(path) {
            Ok(Opened::File(file, metadata)) => {
                if !self.siblings_seen.load(Ordering::Relaxed) {
                    self.siblings_seen.store(true, Ordering::Relaxed);
                }
                Some((file, metadata))
            }
            Err(Refusal::NotFound) if expected && look.remembering() => {
                if !root.may_exist(path) {
                    look.absent(coding);
                }
                None
            }
            _ => None,
        }
    }
}

/// Where a path made from pieces is written (`app.js` -> `app.js.br`, `a/b/c.css` -> `a/b`),
/// NUL-terminated for the kernel: on the stack when it is short (nearly always), so that looking
/// for three codings allocates nothing.
struct ScratchPath {
    short: [u8; 256],
    long: Vec<u8>,
}

impl ScratchPath {
    fn new() -> Self {
        ScratchPath {
            short: [0; 256],
            long: Vec::new(),
        }
    }

    /// `relative` with `coding`'s suffix.
    fn of(&mut self, relative: &CStr, coding: Coding) -> Option<&CStr> {
        self.join(&[relative.to_bytes(), coding.suffix().as_bytes()])
    }

    /// The pieces one after the other; `None` if one holds a NUL.
    fn join(&mut self, pieces: &[&[u8]]) -> Option<&CStr> {
        let len = pieces.iter().map(|piece| piece.len()).sum::<usize>() + 1;
        let path = if len <= self.short.len() {
            &mut self.short[..len]
        } else {
            self.long.resize(len, 0);
            &mut self.long[..]
        };
        let mut at = 0;
        for piece in pieces {
            path[at..at + piece.len()].copy_from_slice(piece);
            at += piece.len();
        }
        path[at] = 0;
        CStr::from_bytes_with_nul(path).ok()
    }
}

/// Answers with the file: whole, in part, or not at all (304, 416), with its validators. A
/// precompressed sibling (`coding`) has the Content-Type of the file it stands for (`name`),
/// and its validators and ranges are its own bytes'.
fn serve_file(
    request: &Request<'_>,
    file: File,
    metadata: &Metadata,
    name: &[u8],
    coding: Option<Coding>,
) -> Response {
    let Ok(modified) = metadata.modified() else {
        return refused(Refusal::Failed);
    };
    let mut validators = Validators::new(metadata.len(), modified);
    if let Some(coding) = coding {
        validators = validators.coded(coding.token());
    }
    let conditions = conditions(&request.headers);
    let etag = validators.etag();
    let now = SystemTime::now();
    let outcome = validators.evaluate(&conditions, &etag, false, now);
    // Called once, on whichever response is sent: the tag moves into it.
    let validated = move |response: Response| {
        response
            .with_last_modified(validators.mtime())
            .with_header("ETag", etag)
    };
    match outcome {
        Outcome::Send => {}
        // A 304 carries the validators but no representation metadata such as Content-Encoding
        // (RFC 9110 15.4.5: SHOULD NOT), as nginx's carries none.
        Outcome::NotModified => return validated(Response::new(Status::NOT_MODIFIED)),
        Outcome::PreconditionFailed => return Response::error(Status::PRECONDITION_FAILED),
    }
    // Ranges apply to GET only (RFC 9110 14.2), and only to the representation If-Range names.
    let part = if request.method == "GET" && validators.if_range_holds(conditions.if_range, now) {
        parse_range(conditions.range, validators.len)
    } else {
        Part::Whole
    };
    // Parts of a representation in a content coding would be parts of its encoded bytes, under
    // a Content-Encoding that would then claim the multipart body itself is encoded: such a
    // request gets the whole file.
    let part = match part {
        Part::Ranges(_) if coding.is_some() => Part::Whole,
        part => part,
    };
    let len = validators.len;
    // The file's type; a multipart body's own type names the boundary instead (each part
    // carries the file's).
    let mut media_type = content_type(name);
    let (status, body, content_range) = match part {
        Part::Whole => (
            Status::OK,
            Body::File(FileBody {
                file,
                offset: 0,
                len,
            }),
            None,
        ),
        Part::Range { start, end } => (
            Status::PARTIAL_CONTENT,
            Body::File(FileBody {
                file,
                offset: start,
                len: end - start + 1,
            }),
            Some(format!("bytes {start}-{end}/{len}")),
        ),
        Part::Ranges(ranges) => {
            let parts = Multipart::new(file, ranges, &media_type, len);
            media_type = Cow::Owned(parts.content_type());
            (Status::PARTIAL_CONTENT, Body::Parts(Box::new(parts)), None)
        }
        Part::Unsatisfiable => {
            return Response::error(Status::RANGE_NOT_SATISFIABLE)
                .with_header("Content-Range", format!("bytes */{len}"));
        }
    };
    let response = validated(Response::new(status));
    let response = match coding {
        Some(coding) => response.with_header("Content-Encoding", coding.token()),
        None => response,
    };
    let response = response
        .with_content_type(media_type)
        .with_header("Accept-Ranges", "bytes")
        .with_body(body);
    match content_range {
        Some(range) => response.with_header("Content-Range", range),
        None => response,
    }
}

/// The conditional fields of a request and its Range ([`Conditions`]), in one pass over its
/// fields, each name told by its length first, as `framing` reads its own: most fields are
/// none of these, and a browser's revalidation sends about ten. A list sent in several fields
/// is one list (RFC 9110 5.3); a date sent twice is no date; If-Range and Range are their first
/// field.
fn conditions<'a>(headers: &Headers<'a>) -> Conditions<'a> {
    let text = |value| std::str::from_utf8(value).ok().map(str::trim);
    // Each slot: `None` until its field is seen, then what it says.
    let (mut unmodified, mut modified, mut if_range, mut range) = (None, None, None, None);
    let date = |slot: &mut Option<Option<&'a str>>, value| {
        *slot = Some(match slot {
            None => text(value),
            Some(_) => None,
        });
    };
    let first = |slot: &mut Option<Option<&'a str>>, value| {
        slot.get_or_insert_with(|| text(value));
    };
    let mut conditions = Conditions::default();
    for (name, value) in headers.iter() {
        match name.len() {
            5 if name_is(name, b"range") => first(&mut range, value),
            8 if name_is(name, b"if-match") => {
                conditions.if_match = Some(join_list(conditions.if_match.take(), value));
            }
            8 if name_is(name, b"if-range") => first(&mut if_range, value),
            13 if name_is(name, b"if-none-match") => {
                conditions.if_none_match = Some(join_list(conditions.if_none_match.take(), value));
            }
            17 if name_is(name, b"if-modified-since") => date(&mut modified, value),
            19 if name_is(name, b"if-unmodified-since") => date(&mut unmodified, value),
            _ => {}
        }
    }
    Conditions {
        if_unmodified_since: unmodified.flatten(),
        if_modified_since: modified.flatten(),
        if_range: if_range.flatten(),
        range: range.flatten(),
        ..conditions
    }
}

/// Whether a body compressed as it is sent may answer `request`: ranges of an encoding made on
/// the fly cannot be served, and chunked transfer coding needs HTTP/1.1, so those get the body
/// as it is.
fn may_compress_on_the_fly(request: &Request<'_>) -> bool {
    request.version == crate::http::Version::Http11 && request.headers.get_str("range").is_none()
}

/// `file` compressed as it is sent (`--compress`), with a weak entity tag of its coding;
/// `Err` gives the file back when `budget` has no room for the encoder now.
fn compressed(
    request: &Request<'_>,
    file: File,
    metadata: &Metadata,
    name: &[u8],
    coding: Coding,
    budget: &Arc<BufferBudget>,
) -> Result<Response, File> {
    let Ok(modified) = metadata.modified() else {
        return Err(file);
    };
    let validators = Validators::new(metadata.len(), modified).coded(coding.token());
    let tag = (validators, format!("W/{}", validators.etag()));
    compressed_body(request, file, tag, content_type(name), coding, budget)
}

/// A body compressed as it is sent (`--compress`): a file, or a listing's page (`source`), for a
/// GET or HEAD without a Range from an HTTP/1.1 client. Its entity tag (`W/...`, with the
/// `validators` that give its length and date) is weak: the same bytes compress to the same
/// bytes only as long as the encoder's version stays. `Err` gives the source back when `budget`
/// has no room for the encoder now (the next coding is tried, or it goes out as it is).
fn compressed_body<S: Into<compress::Source>>(
    request: &Request<'_>,
    source: S,
    (validators, etag): (Validators, String),
    content_type: impl Into<Cow<'static, str>>,
    coding: Coding,
    budget: &Arc<BufferBudget>,
) -> Result<Response, S> {
    let conditions = conditions(&request.headers);
    let outcome = validators.evaluate(&conditions, &etag[2..], true, SystemTime::now());
    let len = validators.len;
    // As in `serve_file`: called once, the tag moves into the response.
    let validated = move |response: Response| {
        response
            .with_last_modified(validators.mtime())
            .with_header("ETag", etag)
    };
    match outcome {
        Outcome::Send => {}
        // No Content-Encoding on a 304, as in `serve_file`.
        Outcome::NotModified => return Ok(validated(Response::new(Status::NOT_MODIFIED))),
        Outcome::PreconditionFailed => return Ok(Response::error(Status::PRECONDITION_FAILED)),
    }
    // A HEAD gets the head a GET would get, and no body: no encoder is made for it (gzip's
    // state is 370 KiB), but the budget is asked as a GET's would be, so that both say the same
    // coding.
    let stream: Box<dyn BodyStream> = if request.method == "HEAD" {
        if !budget.has_room(compress::footprint(coding, len)) {
            return Err(source);
        }
        Box::new(compress::Unsent)
    } else {
        match compress::Compressing::new(source, len, coding, budget) {
            Ok(stream) => Box::new(stream),
            Err(Declined::OverBudget(source)) => return Err(source),
            Err(Declined::Failed) => return Ok(refused(Refusal::Failed)),
        }
    };
    Ok(validated(Response::new(Status::OK))
        .with_header("Content-Encoding", coding.token())
        .with_content_type(content_type)
        .with_body(Body::Stream(stream)))
}

/// By extension; text is declared UTF-8; unknown is `application/octet-stream`. JavaScript is
/// `text/javascript` whatever its extension (`.mjs` included, which mime_guess calls
/// `application/javascript`): RFC 9239 makes that the one type, as the HTML standard asks.
fn content_type(name: &[u8]) -> Cow<'static, str> {
    match common_type(name) {
        Some(common) => Cow::Borrowed(common),
        None => guessed_type(name),
    }
}

/// The types of the files sites serve most, each exactly what [`guessed_type`] gives (a unit
/// test holds them to it), found without searching mime_guess's table of more than a thousand
/// extensions: a binary search comparing case-insensitively, char by char, which cost ~1,450
/// instructions, as much as the rest of a small file's user-space work apart from parsing.
const COMMON_TYPES: [(&str, &str); 18] = [
    ("html", "text/html; charset=utf-8"),
    ("css", "text/css; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("json", "application/json"),
    ("svg", "image/svg+xml"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("webp", "image/webp"),
    ("avif", "image/avif"),
    ("gif", "image/gif"),
    ("ico", "image/x-icon"),
    ("woff2", "font/woff2"),
    ("wasm", "application/wasm"),
    ("txt", "text/plain; charset=utf-8"),
    ("htm", "text/html; charset=utf-8"),
    ("mp4", "video/mp4"),
];

/// `name`'s type if its extension is one of [`COMMON_TYPES`] (in any case, as mime_guess reads
/// it). The extension as `Path::extension` finds it: after the last dot, unless that dot starts
/// the name.
fn common_type(name: &[u8]) -> Option<&'static str> {
    let dot = name
        .iter()
        .rposition(|&byte| byte == b'.')
        .filter(|&at| at > 0)?;
    let extension = &name[dot + 1..];
    (COMMON_TYPES.iter())
        .find(|(common, _)| common.as_bytes().eq_ignore_ascii_case(extension))
        .map(|&(_, media_type)| media_type)
}

/// [`content_type`] by mime_guess's table.
fn guessed_type(name: &[u8]) -> Cow<'static, str> {
    match mime_guess::from_path(Path::new(OsStr::from_bytes(name))).first_raw() {
        Some("text/html") => Cow::Borrowed("text/html; charset=utf-8"),
        Some("text/plain") => Cow::Borrowed("text/plain; charset=utf-8"),
        Some("text/css") => Cow::Borrowed("text/css; charset=utf-8"),
        Some("text/javascript" | "application/javascript") => {
            Cow::Borrowed("text/javascript; charset=utf-8")
        }
        Some(text) if text.starts_with("text/") => Cow::Owned(format!("{text}; charset=utf-8")),
        Some(other) => Cow::Borrowed(other),
        None => Cow::Borrowed("application/octet-stream"),
    }
}

/// Whether `name` is text that compresses well, by its type: what `--compress` compresses, and
/// what a site precompresses.
fn is_text(name: &[u8]) -> bool {
    compress::compressible(&content_type(name))
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
    use std::ffi::CString;

    #[test]
    fn json_listings_by_accept() {
        let cases = [
            (Some("application/json"), None, true),
            (
                Some("text/html,application/json;q=0.9,*/*;q=0.8"),
                None,
                false,
            ),
            (Some("application/json, text/html;q=0.5"), None, true),
            (Some("*/*"), None, false),
            (Some("application/*"), None, true),
            (Some("application/json;q=0"), None, false),
            (Some("text/html"), Some("format=json"), true),
            (None, Some("a=1&format=json"), true),
            (None, None, false),
        ];
        for (accept, query, json) in cases {
            let mut head = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
            if let Some(accept) = accept {
                head.push_str(&format!("Accept: {accept}\r\n"));
            }
            head.push_str("\r\n");
            let mut storage = crate::http::header_storage();
            let (mut request, _) =
                crate::http::parse_again(head.as_bytes(), b"", &mut storage).unwrap();
            request.query = query;
            assert_eq!(wants_json(&request), json, "{accept:?} {query:?}");
        }
    }

    /// Whether siblings are expected follows what this ROOT has shown: not until one is found,
    /// then for text only. (What is served does not depend on it; tests/content.rs checks that
    /// in every mode, over both ways of looking.)
    #[test]
    fn siblings_are_expected_once_one_is_found() {
        let base = std::env::temp_dir().join(format!("siblings-seen-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        for name in [
            "plain.css",
            "app.js",
            "app.js.gz",
            "page.html",
            "page.html.br",
        ] {
            std::fs::write(base.join(name), name).unwrap();
        }
        // What `files` answers for `path`, and whether it has seen a sibling since.
        let get = |files: &StaticFiles, path: &str, accept: &str| {
            let (coding, vary) = coding_and_vary(files, path, accept);
            (coding, vary, files.siblings_seen.load(Ordering::Relaxed))
        };
        let browser = "Accept-Encoding: br, gzip\r\n";
        let gzip = Some("gzip".to_owned());

        // Found by the look for a coding the client wants, which stats first until then.
        let files = StaticFiles::new(&base).unwrap();
        assert_eq!(get(&files, "/plain.css", browser), (None, false, false));
        assert_eq!(get(&files, "/app.js", browser), (gzip.clone(), true, true));
        assert_eq!(get(&files, "/app.js", browser), (gzip, true, true));
        assert_eq!(get(&files, "/plain.css", browser), (None, false, true));

        // Found by the look that only decides Vary, for a coding the client does not want.
        let files = StaticFiles::new(&base).unwrap();
        assert_eq!(get(&files, "/plain.css", ""), (None, false, false));
        assert_eq!(get(&files, "/page.html", ""), (None, true, true));
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// A file remembered as having no sibling ([`bare`]) is served without looking: here one
    /// that does have a sibling, remembered with its directory as it is (as though the sibling
    /// had come within the same tick of the filesystem's clock, which is what `bare::SETTLED`
    /// guards against), gets neither the sibling nor `Vary`; one not remembered gets both.
    #[test]
    fn a_file_remembered_bare_is_not_looked_for() {
        let base = std::env::temp_dir().join(format!("remembered-bare-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(base.join("d")).unwrap();
        for name in ["d/x.css", "d/x.css.gz", "d/y.css", "d/y.css.gz"] {
            std::fs::write(base.join(name), name).unwrap();
        }
        let files = StaticFiles::new(&base).unwrap();
        bare::remember_as_now(files.site, &files.root.current(), c"d/x.css");
        let gzip = "Accept-Encoding: gzip\r\n";
        for accept in [gzip, ""] {
            let answer = coding_and_vary(&files, "/d/x.css", accept);
            assert_eq!(answer, (None, false), "{accept:?}");
        }
        let gzipped = (Some("gzip".to_owned()), true);
        assert_eq!(coding_and_vary(&files, "/d/y.css", gzip), gzipped);
        assert_eq!(coding_and_vary(&files, "/d/y.css", ""), (None, true));
        // Another site serving the same tree does not take this one's memory for its own.
        let other = StaticFiles::new(&base).unwrap();
        assert_eq!(coding_and_vary(&other, "/d/x.css", gzip), gzipped);
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// What `files` answers a GET of `path` with the field lines `accept`: its coding, and
    /// whether it says `Vary`.
    fn coding_and_vary(files: &StaticFiles, path: &str, accept: &str) -> (Option<String>, bool) {
        let head = format!("GET {path} HTTP/1.1\r\nHost: a\r\n{accept}\r\n");
        let mut storage = crate::http::header_storage();
        let (request, _) = crate::http::parse_again(head.as_bytes(), b"", &mut storage).unwrap();
        let response = files.handle(&request);
        let coding = response.header("Content-Encoding").map(str::to_owned);
        (coding, response.header("Vary").is_some())
    }

    #[test]
    fn scratch_paths_short_and_long() {
        let mut scratch = ScratchPath::new();
        assert_eq!(scratch.of(c"a/app.js", Coding::Br), Some(c"a/app.js.br"));
        assert_eq!(scratch.of(c"a/app.js", Coding::Zstd), Some(c"a/app.js.zst"));
        assert_eq!(scratch.of(c"x", Coding::Gzip), Some(c"x.gz"));
        for len in [252, 253, 254, 300, 5000] {
            let relative = CString::new(vec![b'n'; len]).unwrap();
            let path = scratch.of(&relative, Coding::Zstd).unwrap().to_bytes();
            assert_eq!((path.len(), &path[len..]), (len + 4, &b".zst"[..]));
            assert!(path[..len].iter().all(|&byte| byte == b'n'));
        }
        // Short again after a long one: the stack buffer, not what the long one left.
        assert_eq!(scratch.of(c"b.css", Coding::Br), Some(c"b.css.br"));
        // Any pieces; none may hold a NUL.
        assert_eq!(scratch.join(&[b"a/b", b"", b"/c"]), Some(c"a/b/c"));
        assert_eq!(scratch.join(&[]), Some(c""));
        assert_eq!(scratch.join(&[b"a\0b"]), None);
    }

    #[test]
    fn common_types_are_what_the_table_gives() {
        for (extension, media_type) in COMMON_TYPES {
            for name in [
                format!("a.{extension}"),
                format!("a.b.{}", extension.to_uppercase()),
            ] {
                assert_eq!(content_type(name.as_bytes()), media_type, "{name}");
                assert_eq!(guessed_type(name.as_bytes()), media_type, "{name}");
            }
        }
        // Where Path::extension finds none, neither does the shortcut.
        for name in [".css", "css", "a.", "a.css.x"] {
            assert_eq!(common_type(name.as_bytes()), None, "{name}");
        }
        assert_eq!(content_type(b"..css"), "text/css; charset=utf-8");
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type(b"a.html"), "text/html; charset=utf-8");
        assert_eq!(content_type(b"a.TXT"), "text/plain; charset=utf-8");
        assert_eq!(content_type(b"a.csv"), "text/csv; charset=utf-8");
        assert_eq!(content_type(b"a.png"), "image/png");
        assert_eq!(content_type(b"a.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type(b"a.mjs"), "text/javascript; charset=utf-8");
        assert_eq!(content_type(b"a.unknownext"), "application/octet-stream");
        assert_eq!(content_type(b"Makefile"), "application/octet-stream");
    }
}
