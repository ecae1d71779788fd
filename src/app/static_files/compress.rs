//! `--compress`: a file (or a directory's listing) compressed as it is sent, a bounded piece at
//! a time.
//!
//! The body is an [`http::BodyStream`](crate::http::BodyStream): each time the connection's
//! output has room it asks for a piece, and this reads at most
//! [`STREAM_PIECE`](crate::http::STREAM_PIECE) (16 KiB) of the file, feeds it to the encoder and
//! hands over what came out. So the file is never whole in memory, and one pull costs at most
//! the compression of what the encoder needs before it emits anything (16 KiB for gzip and
//! brotli at these levels, up to a 128 KiB block for zstd) at a fast level (gzip 1, brotli 1,
//! zstd 1). The reactor moves on to other connections after 64 KiB written in one turn, so one
//! compressing connection holds its loop for at most the compression of that much output.
//!
//! An encoder's own state (its window, hash tables and block buffers) is held from the response's
//! start until its end, and a client chooses how many such responses are in flight at once. So
//! each stream takes its encoder's [`footprint`] from the buffer budget (`--max-buffer-bytes`)
//! before it starts, and gives it back as the encoder ends; when the budget has no room, the next
//! coding the client accepts whose encoder fits is used, or none: the file is sent as it is,
//! which every client accepts.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex, PoisonError};

use zstd::zstd_safe::{self, CCtx, InBuffer, OutBuffer, ResetDirective, zstd_sys};

use super::negotiate::Coding;
use crate::http::{BodyStream, BufferBudget, Charge, STREAM_PIECE, SharedBytes};

/// The smallest file worth compressing on the fly.
pub const MIN_LEN: u64 = 1024;

/// Whether a Content-Type is text that compresses well (not images, video, archives).
pub fn compressible(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.starts_with("text/")
        || matches!(
            essence,
            "application/javascript"
                | "application/json"
                | "application/xml"
                | "application/wasm"
                | "application/manifest+json"
                | "image/svg+xml"
        )
        || essence.ends_with("+xml")
        || essence.ends_with("+json")
}

/// The most a stream compressing `len` bytes with `coding` holds at once: its encoder's state at
/// the levels below and its piece of the file ([`STREAM_PIECE`]). Rounded up from the encoders'
/// heap use at its peak (glibc's `mallinfo2`) as they compressed words and random base64 text of
/// each length (docs/performance.md, stop 70). gzip (zlib-rs, level 1) allocates its window,
/// hash chains and pending buffer at once: 403 KiB, up to 434 with the output it keeps room for;
/// brotli at quality 1 up to 116 KiB; zstd at level 1 sizes its window and block buffers to the
/// length it is told it will get: 71 KiB for 1 KiB, 293 for 16 KiB, 521 for 64, 953 for 128,
/// 1,497 from 512 KiB on.
pub fn footprint(coding: Coding, len: u64) -> usize {
    const KIB: usize = 1024;
    let encoder = match coding {
        Coding::Gzip => 448 * KIB,
        Coding::Br => 128 * KIB,
        Coding::Zstd if len <= 16 * 1024 => 304 * KIB,
        Coding::Zstd if len <= 64 * 1024 => 544 * KIB,
        Coding::Zstd if len <= 128 * 1024 => 992 * KIB,
        Coding::Zstd => 1536 * KIB,
    };
    encoder + STREAM_PIECE
}

enum Encoder {
    Gzip(Gzip),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(Zstd),
}

impl Encoder {
    /// An encoder for `len` bytes.
    fn new(coding: Coding, len: u64) -> io::Result<Encoder> {
        Ok(match coding {
            Coding::Gzip => Encoder::Gzip(Gzip::new()),
            // Quality 1, a 4 MiB window (lgwin 22), a 4 KiB input buffer.
            Coding::Br => Encoder::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                1,
                22,
            ))),
            Coding::Zstd => Encoder::Zstd(Zstd::new(len)?),
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Gzip(encoder) => encoder.compress(bytes, flate2::FlushCompress::None),
            Encoder::Br(encoder) => encoder.write_all(bytes),
            Encoder::Zstd(encoder) => encoder.compress(bytes, ZSTD_CONTINUE),
        }
    }

    /// The compressed bytes produced so far.
    fn output(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Gzip(encoder) => &mut encoder.out,
            Encoder::Br(encoder) => encoder.get_mut(),
            Encoder::Zstd(encoder) => &mut encoder.out,
        }
    }

    /// Ends the stream; returns what is left to send.
    fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(mut encoder) => {
                encoder.compress(&[], flate2::FlushCompress::Finish)?;
                Ok(std::mem::take(&mut encoder.out))
            }
            Encoder::Br(encoder) => Ok(encoder.into_inner()),
            Encoder::Zstd(mut encoder) => {
                encoder.compress(&[], ZSTD_END)?;
                Ok(std::mem::take(&mut encoder.out))
            }
        }
    }
}

/// A gzip stream (level 1), on a deflate state from [`IDLE_GZIP`] when one is there.
///
/// zlib-rs makes a deflate state in one allocation of about 370 KiB (its window, its hash chains
/// and a hash table of 128 KiB whatever the window, its output buffers), which glibc maps fresh
/// for each stream and unmaps after it (the server fixes its mmap threshold at 128 KiB; see
/// `fixed_mmap_threshold` in main.rs): page faults, zeroing and unmapping took about 250 µs of a
/// 3 KB file's 330 µs (seven times the file as it is). A state reset for the next stream keeps its
/// pages; resetting clears its hash table, a few microseconds.
///
/// Only the state of a stream that ended is kept. zlib-rs's reset (0.6.8 and 0.6.9) leaves its
/// level-1 compressor's note that a block is open as it was, so the state of a stream abandoned
/// midway (a client gone) would start the next stream inside a block that was never begun,
/// and a client would get a corrupt body (`gzip_states_are_reused_whole_and_kept_within_bounds`
/// found it). A stream that ended closed its last block.
struct Gzip {
    /// `None` only while being dropped.
    state: Option<flate2::Compress>,
    /// What it has produced and not yet handed over.
    out: Vec<u8>,
    /// Its stream ended whole: the state may start another.
    ended: bool,
}

/// Encoder states of past streams, for the next ones: at most [`KEPT`] of a kind for the whole
/// server, however many threads make streams.
struct Idle<T>(Mutex<Vec<T>>);

/// States kept of each kind: gzip's come to 1.5 MiB, zstd's to 5.3 MiB at most (each as large
/// as the largest file it compressed asked for).
const KEPT: usize = 4;

impl<T> Idle<T> {
    const fn new() -> Self {
        Idle(Mutex::new(Vec::new()))
    }

    /// The state kept last that `fits`.
    fn take_if(&self, fits: impl Fn(&T) -> bool) -> Option<T> {
        let mut idle = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let at = idle.iter().rposition(fits)?;
        Some(idle.swap_remove(at))
    }

    /// Keeps `state` if fewer than [`KEPT`] are; else it is dropped.
    fn keep(&self, state: T) {
        let mut idle = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < KEPT {
            idle.push(state);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// Deflate states of gzip streams that ended, reset.
static IDLE_GZIP: Idle<flate2::Compress> = Idle::new();

/// A deflate state no stream has used: level 1, window bits 15 (32 KiB, zlib's default),
/// written as a gzip member.
fn new_deflate_state() -> flate2::Compress {
    flate2::Compress::new_gzip(flate2::Compression::fast(), 15)
}

impl Gzip {
    fn new() -> Gzip {
        let state = IDLE_GZIP
            .take_if(|_| true)
            .unwrap_or_else(new_deflate_state);
        Gzip {
            state: Some(state),
            out: Vec::new(),
            ended: false,
        }
    }

    /// Compresses `input` (or, with `Finish`, ends the stream) into `out`, growing it as needed.
    fn compress(&mut self, mut input: &[u8], flush: flate2::FlushCompress) -> io::Result<()> {
        let state = self.state.as_mut().expect("taken only by drop");
        let finish = flush == flate2::FlushCompress::Finish;
        loop {
            // Room for about what text at level 1 comes to, and what the state was holding; a
            // round that fills it leaves input (or the end) for the next, with more room.
            self.out.reserve(input.len() / 2 + 16 * 1024);
            let before = state.total_in();
            let status =
                (state.compress_vec(input, &mut self.out, flush)).map_err(io::Error::other)?;
            input = &input[(state.total_in() - before) as usize..];
            let done = match finish {
                true => status == flate2::Status::StreamEnd,
                false => input.is_empty(),
            };
            if done {
                self.ended = finish;
                return Ok(());
            }
        }
    }
}

impl Drop for Gzip {
    fn drop(&mut self) {
        if let Some(mut state) = self.state.take()
            && self.ended
        {
            state.reset();
            IDLE_GZIP.keep(state);
        }
    }
}

const ZSTD_CONTINUE: zstd_sys::ZSTD_EndDirective = zstd_sys::ZSTD_EndDirective::ZSTD_e_continue;
const ZSTD_END: zstd_sys::ZSTD_EndDirective = zstd_sys::ZSTD_EndDirective::ZSTD_e_end;

/// A zstd frame (level 1), on a compression context from [`IDLE_ZSTD`] when one is there.
///
/// Told the length to come, zstd sizes its window and buffers to it (a 4 KiB file takes a tenth
/// of what an unknown length would) and writes it into the frame's header. Those buffers (261
/// KiB for a 16 KiB file, 1.3 MiB from 512 KiB on) were mapped fresh for each stream and unmapped
/// after it, like gzip's: page faults and zeroing were a seventh of a 64 KiB file's compression.
/// A context kept keeps its memory, and makes it larger only for a larger file.
///
/// It does not make it smaller for a smaller one, though, and the budget counts a stream's
/// encoder as [`footprint`] says for its file's length. So a stream takes only a context whose
/// memory is within that: else a client could have contexts grown by large files go on to
/// streams of small ones, each holding five times what it is counted for.
///
/// Unlike zlib-rs's, zstd's reset is whole: `ZSTD_CCtx_reset` with `SessionOnly` ends any frame
/// the context was in, one abandoned midway included, and keeps its parameters (level 1). So a
/// context is kept whether its stream ended or not, and reset as it is taken.
struct Zstd {
    /// `None` only while being dropped.
    context: Option<CCtx<'static>>,
    /// What it has produced and not yet handed over.
    out: Vec<u8>,
}

/// Contexts of zstd streams, ended or not, at level 1.
static IDLE_ZSTD: Idle<CCtx<'static>> = Idle::new();

/// A compression context no stream has used, at level 1.
fn new_zstd_context() -> io::Result<CCtx<'static>> {
    let mut context =
        CCtx::try_create().ok_or_else(|| io::Error::other("zstd could not make a context"))?;
    context
        .set_parameter(zstd_safe::CParameter::CompressionLevel(1))
        .map_err(zstd_error)?;
    Ok(context)
}

fn zstd_error(code: usize) -> io::Error {
    io::Error::other(zstd_safe::get_error_name(code))
}

impl Zstd {
    /// A frame of `len` bytes.
    fn new(len: u64) -> io::Result<Zstd> {
        let counted = footprint(Coding::Zstd, len) - STREAM_PIECE;
        let mut context = match IDLE_ZSTD.take_if(|context| context.sizeof() <= counted) {
            Some(context) => context,
            None => new_zstd_context()?,
        };
        context
            .reset(ResetDirective::SessionOnly)
            .map_err(zstd_error)?;
        context
            .set_pledged_src_size(Some(len))
            .map_err(zstd_error)?;
        Ok(Zstd {
            context: Some(context),
            out: Vec::new(),
        })
    }

    /// Compresses `input` (or, with [`ZSTD_END`], ends the frame) into `out`, growing it as
    /// needed.
    fn compress(&mut self, input: &[u8], how: zstd_sys::ZSTD_EndDirective) -> io::Result<()> {
        let context = self.context.as_mut().expect("taken only by drop");
        let mut input = InBuffer::around(input);
        loop {
            // Room for about what text at level 1 comes to, and a block it was holding; a round
            // that fills it leaves input (or the end) for the next, with more room.
            self.out
                .reserve((input.src.len() - input.pos()) / 2 + 16 * 1024);
            let at = self.out.len();
            let mut output = OutBuffer::around_pos(&mut self.out, at);
            let left = context
                .compress_stream2(&mut output, &mut input, how)
                .map_err(zstd_error)?;
            let done = match how {
                ZSTD_END => left == 0,
                _ => input.pos() == input.src.len(),
            };
            if done {
                return Ok(());
            }
        }
    }
}

impl Drop for Zstd {
    fn drop(&mut self) {
        if let Some(context) = self.context.take() {
            IDLE_ZSTD.keep(context);
        }
    }
}

/// The body of the answer to a HEAD: chunked, as a GET's would be, and never sent (so never
/// pulled; if it were, it would end at once).
#[derive(Debug)]
pub struct Unsent;

impl BodyStream for Unsent {
    fn next_piece(&mut self, _out: &mut Vec<u8>) -> io::Result<usize> {
        Ok(0)
    }
}

/// What a compressing stream reads from.
pub enum Source {
    File(File),
    /// A listing's page, shared with the other responses that send it.
    Page(Arc<SharedBytes>),
}

impl From<File> for Source {
    fn from(file: File) -> Self {
        Source::File(file)
    }
}

impl From<Arc<SharedBytes>> for Source {
    fn from(page: Arc<SharedBytes>) -> Self {
        Source::Page(page)
    }
}

impl Source {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        match self {
            Source::File(file) => file.read_at(buf, offset),
            Source::Page(page) => {
                let rest = page.get(offset as usize..).unwrap_or_default();
                let n = buf.len().min(rest.len());
                buf[..n].copy_from_slice(&rest[..n]);
                Ok(n)
            }
        }
    }
}

/// A file region, or a page, compressed as it is read.
pub struct Compressing {
    source: Source,
    offset: u64,
    left: u64,
    /// With its share of the buffer budget; `None` once finished, when both are let go.
    encoder: Option<(Encoder, Charge)>,
    /// One piece of the file at a time.
    piece: Vec<u8>,
}

impl fmt::Debug for Compressing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compressing")
            .field("offset", &self.offset)
            .field("left", &self.left)
            .finish()
    }
}

/// Why a file (or a page) is not compressed as it is sent.
pub enum Declined<S> {
    /// The buffer budget has no room for another encoder now: the source comes back, to be
    /// sent as it is.
    OverBudget(S),
    /// The encoder could not be made.
    Failed,
}

impl Compressing {
    /// `len` bytes of `source` (a file, or a listing's page), if `budget` has room for the
    /// encoder ([`footprint`]).
    pub fn new<S: Into<Source>>(
        source: S,
        len: u64,
        coding: Coding,
        budget: &Arc<BufferBudget>,
    ) -> Result<Self, Declined<S>> {
        let mut charge = Charge::new(budget);
        if !charge.try_grow(footprint(coding, len)) {
            return Err(Declined::OverBudget(source));
        }
        let encoder = Encoder::new(coding, len).map_err(|_| Declined::Failed)?;
        Ok(Compressing {
            source: source.into(),
            offset: 0,
            left: len,
            encoder: Some((encoder, charge)),
            piece: Vec::new(),
        })
    }
}

impl BodyStream for Compressing {
    fn next_piece(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        let Some((encoder, _)) = &mut self.encoder else {
            return Ok(0);
        };
        // An encoder keeps some input before it emits anything: read until it does, or the
        // file ends. Each round reads one piece; a few rounds at most at these levels.
        let piece = &mut self.piece;
        piece.resize(STREAM_PIECE, 0);
        while self.left > 0 {
            let want = (self.left as usize).min(STREAM_PIECE);
            let read = self.source.read_at(&mut piece[..want], self.offset)?;
            if read == 0 {
                // The file shrank: what was promised cannot be sent.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file shrank",
                ));
            }
            encoder.write_all(&piece[..read])?;
            self.offset += read as u64;
            self.left -= read as u64;
            let produced = encoder.output();
            if !produced.is_empty() {
                let n = produced.len();
                out.append(produced);
                return Ok(n);
            }
        }
        let rest = self.encoder.take().map(|(encoder, _)| encoder.finish());
        self.piece = Vec::new();
        let rest = rest.transpose()?;
        let rest = rest.unwrap_or_default();
        out.extend_from_slice(&rest);
        Ok(rest.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// `len` bytes of text made of a few words, in an order `seed` picks.
    fn text(seed: u32, len: usize) -> Vec<u8> {
        let words = [&b"event "[..], b"loop ", b"reactor ", b"ring ", b"\n"];
        (0..len as u32)
            .flat_map(|at| words[(at.wrapping_mul(seed) >> 3) as usize % words.len()])
            .copied()
            .take(len)
            .collect()
    }

    /// `input` through `gzip` as a response streams it: a piece at a time, then the end.
    fn stream(mut gzip: Gzip, input: &[u8]) -> Vec<u8> {
        for piece in input.chunks(STREAM_PIECE) {
            gzip.compress(piece, flate2::FlushCompress::None).unwrap();
        }
        gzip.compress(&[], flate2::FlushCompress::Finish).unwrap();
        std::mem::take(&mut gzip.out)
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// Deflate states are reused, reset, by the streams that follow: each stream is byte for
    /// byte what a new state makes of its input, and decodes to it, whatever came before it (a
    /// longer stream, one abandoned midway, an empty one); no more than [`GZIP_KEPT`] are kept.
    #[test]
    fn gzip_states_are_reused_whole_and_kept_within_bounds() {
        for round in 0..3u32 {
            // Abandoned midway: its state is not kept.
            let mut abandoned = Gzip::new();
            abandoned
                .compress(&text(7 + round, 100_000), flate2::FlushCompress::None)
                .unwrap();
            drop(abandoned);
            for (seed, len) in [(3, 200_000), (5, 3_000), (11, 0), (13, 40_000)] {
                let input = text(seed + round, len);
                let out = stream(Gzip::new(), &input);
                assert!(gunzip(&out) == input, "round {round}, {len} bytes");
                let fresh = Gzip {
                    state: Some(new_deflate_state()),
                    out: Vec::new(),
                    ended: false,
                };
                assert!(
                    out == stream(fresh, &input),
                    "round {round}, {len} bytes: not what a new state makes"
                );
                if len > 1000 {
                    assert!(out.len() < input.len() / 2, "compressed: {}", out.len());
                }
            }
        }
        let many: Vec<Gzip> = (0..KEPT + 3).map(|_| Gzip::new()).collect();
        drop(many);
        assert!(IDLE_GZIP.len() <= KEPT);
    }

    /// zstd's contexts are reused, reset, by the streams that follow, those abandoned midway
    /// included: each frame is byte for byte what a new context makes of its input, and decodes
    /// to it, whatever came before it (a longer frame, one abandoned, an empty one); no more
    /// than [`KEPT`] are kept.
    #[test]
    fn zstd_contexts_are_reused_whole_and_kept_within_bounds() {
        let frame = |mut zstd: Zstd, input: &[u8]| -> Vec<u8> {
            for piece in input.chunks(STREAM_PIECE) {
                zstd.compress(piece, ZSTD_CONTINUE).unwrap();
            }
            zstd.compress(&[], ZSTD_END).unwrap();
            std::mem::take(&mut zstd.out)
        };
        let fresh = |input: &[u8]| -> Vec<u8> {
            let mut context = new_zstd_context().unwrap();
            context
                .set_pledged_src_size(Some(input.len() as u64))
                .unwrap();
            let zstd = Zstd {
                context: Some(context),
                out: Vec::new(),
            };
            let out = frame(zstd, input);
            let _ = IDLE_ZSTD.take_if(|_| true); // the fresh one, kept by its drop
            out
        };
        for round in 0..3u32 {
            let mut abandoned = Zstd::new(300_000).unwrap();
            abandoned
                .compress(&text(7 + round, 200_000), ZSTD_CONTINUE)
                .unwrap();
            drop(abandoned);
            for (seed, len) in [(3, 600_000), (5, 3_000), (11, 0), (13, 40_000)] {
                let input = text(seed + round, len);
                let out = frame(Zstd::new(len as u64).unwrap(), &input);
                assert!(
                    zstd::decode_all(&out[..]).unwrap() == input,
                    "round {round}, {len} bytes"
                );
                assert!(
                    out == fresh(&input),
                    "round {round}, {len} bytes: not what a new context makes"
                );
                if len > 1000 {
                    assert!(out.len() < input.len() / 2, "compressed: {}", out.len());
                }
            }
        }
        let many: Vec<Zstd> = (0..KEPT + 3).map(|_| Zstd::new(10).unwrap()).collect();
        drop(many);
        assert!(IDLE_ZSTD.len() <= KEPT);
    }

    /// A stream takes a kept context only if its memory is within what the budget counts for
    /// the stream ([`footprint`]): one grown by a large file does not go on to a small one
    /// (it stays kept, for the next large one); every context a stream holds is within its count.
    #[test]
    fn zstd_contexts_go_only_to_streams_they_are_counted_for() {
        let run = |len: usize| -> Zstd {
            let mut zstd = Zstd::new(len as u64).unwrap();
            for piece in text(17, len).chunks(STREAM_PIECE) {
                zstd.compress(piece, ZSTD_CONTINUE).unwrap();
            }
            zstd
        };
        let within = |zstd: &Zstd, len: usize| {
            let size = zstd.context.as_ref().unwrap().sizeof();
            assert!(
                size + STREAM_PIECE <= footprint(Coding::Zstd, len as u64),
                "a context of {size} bytes for {len}"
            );
        };
        for len in [600_000, 3_000, 100_000, 16_000, 600_000, 40_000, 1_000] {
            let zstd = run(len);
            within(&zstd, len);
            // Taken again at once by a stream of each size: within its count too.
            drop(zstd);
            for next in [1_000, 20_000, 120_000, 2_000_000] {
                let again = run(next);
                within(&again, next);
            }
        }
    }

    #[test]
    fn compressible_types() {
        for yes in [
            "text/html; charset=utf-8",
            "text/css",
            "application/javascript",
            "application/json",
            "image/svg+xml",
            "application/wasm",
            "application/atom+xml",
        ] {
            assert!(compressible(yes), "{yes}");
        }
        for no in [
            "image/png",
            "application/gzip",
            "video/mp4",
            "application/octet-stream",
        ] {
            assert!(!compressible(no), "{no}");
        }
    }
}
