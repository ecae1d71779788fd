//! HTTP/1.1 without I/O: bytes in, requests out; responses in, bytes out.
//!
//! Nothing here touches a socket, so every driver in `server/` shares all of it, and all of it
//! can be tested by feeding it byte strings.
//!
//! - `parse.rs`: finds the end of a request head within limits and reads it with httparse.
//! - `uri.rs`: the request target and the Host field, as RFC 9112 and RFC 3986 allow them.
//! - `body.rs`: the chunked body decoder.
//! - `request.rs` / `response.rs`: what handlers see and return; response serialization.
//! - `conn.rs`: the connection state machine that ties them together.
//! - `buf.rs`: connection buffers and the per-loop pool they come from.
//! - `date.rs`: the per-loop clock and cached `Date` header.

mod body;
mod buf;
mod conn;
mod date;
mod parse;
mod request;
mod response;
mod uri;

pub use body::{ChunkedDecoder, Decoded, MAX_CHUNK_LINE};
pub use buf::{BUF_SIZE, BufPool, BufferBudget};
pub(crate) use buf::{Charge, beyond_pooled, grow as grow_buffer};
pub use conn::{
    Conn, Context, Drain, HANDOVER_IDLE, Handover, LINGER_TIMEOUT, OUTPUT_HIGH_WATER, Offload,
    STREAM_PIECE, StopSignal, Want, memory,
};
pub use date::{Civil, Clock, Millis, from_unix_time, shown_seconds, unix_seconds, unix_time};
pub use parse::{
    BodyLength, Framing, Head, HeadScan, HeaderStorage, KNOWN_METHODS, MAX_HEADERS, MAX_METHOD,
    MAX_REQUEST_LINE, Scanned, decimal, downgrade_later_minor, first_line, header_storage,
    leading_empty_lines, parse_again, parse_head, parse_whole_head,
};
pub use request::{EntityTags, Headers, Request, Version, trim_ows};
pub(crate) use request::{join_list, name_is};
pub use response::{
    Body, BodyStream, FileBody, HeadCache, Modified, Multipart, Persistence, Response, SharedBytes,
    Status, write_head,
};
pub use uri::{Target, is_tchar, percent_decode, split_target, unescape, valid_host};
