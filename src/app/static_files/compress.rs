//! `--compress`: a file compressed as it is sent, a bounded piece at a time.
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
use std::sync::Arc;

use super::negotiate::Coding;
use crate::http::{BodyStream, BufferBudget, Charge, STREAM_PIECE};

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
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    /// An encoder for `len` bytes.
    fn new(coding: Coding, len: u64) -> io::Result<Encoder> {
        Ok(match coding {
            Coding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::fast(),
            )),
            // Quality 1, a 4 MiB window (lgwin 22), a 4 KiB input buffer.
            Coding::Br => Encoder::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                1,
                22,
            ))),
            // Told the length, zstd sizes its window and buffers to it (a 4 KiB file takes
            // a tenth of what an unknown length would) and writes it into the frame's header.
            Coding::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1)?;
                encoder.set_pledged_src_size(Some(len))?;
                Encoder::Zstd(encoder)
            }
        })
    }

    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Encoder::Gzip(encoder) => encoder.write_all(bytes),
            Encoder::Br(encoder) => encoder.write_all(bytes),
            Encoder::Zstd(encoder) => encoder.write_all(bytes),
        }
    }

    /// The compressed bytes produced so far.
    fn output(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Gzip(encoder) => encoder.get_mut(),
            Encoder::Br(encoder) => encoder.get_mut(),
            Encoder::Zstd(encoder) => encoder.get_mut(),
        }
    }

    /// Ends the stream; returns what is left to send.
    fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            Encoder::Gzip(encoder) => encoder.finish(),
            Encoder::Br(encoder) => Ok(encoder.into_inner()),
            Encoder::Zstd(encoder) => encoder.finish(),
        }
    }
}

/// A file region, compressed as it is read.
pub struct Compressing {
    file: File,
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

/// Why a file is not compressed as it is sent.
pub enum Declined {
    /// The buffer budget has no room for another encoder now: the file is sent as it is.
    OverBudget(File),
    /// The encoder could not be made.
    Failed,
}

impl Compressing {
    /// `len` bytes of `file`, if `budget` has room for the encoder ([`footprint`]).
    pub fn new(
        file: File,
        len: u64,
        coding: Coding,
        budget: &Arc<BufferBudget>,
    ) -> Result<Self, Declined> {
        let mut charge = Charge::new(budget);
        if !charge.try_grow(footprint(coding, len)) {
            return Err(Declined::OverBudget(file));
        }
        let encoder = Encoder::new(coding, len).map_err(|_| Declined::Failed)?;
        Ok(Compressing {
            file,
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
            let read = self.file.read_at(&mut piece[..want], self.offset)?;
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
