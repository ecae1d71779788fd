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

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use super::negotiate::Coding;
use crate::http::{BodyStream, STREAM_PIECE};

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

enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    fn new(coding: Coding) -> io::Result<Encoder> {
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
            Coding::Zstd => Encoder::Zstd(zstd::stream::write::Encoder::new(Vec::new(), 1)?),
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
    /// `None` once finished.
    encoder: Option<Encoder>,
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

impl Compressing {
    pub fn new(file: File, len: u64, coding: Coding) -> io::Result<Self> {
        Ok(Compressing {
            file,
            offset: 0,
            left: len,
            encoder: Some(Encoder::new(coding)?),
            piece: Vec::new(),
        })
    }
}

impl BodyStream for Compressing {
    fn next_piece(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        let Some(encoder) = &mut self.encoder else {
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
        let rest = self.encoder.take().map(Encoder::finish).transpose()?;
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
