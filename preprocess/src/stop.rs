//! Stopping a decode that nobody waits for any more: the server's client
//! hung up, so the CPU seconds and the memory of a large image are better
//! spent elsewhere. The decoders read their input through [`StoppableInput`],
//! which fails the next read once the flag is set; image codecs that read as
//! they inflate (PNG, GIF, TIFF, WebP) stop within a few rows.

use std::io::{BufRead, Cursor, Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, Ordering};

/// Most bytes handed to a decoder per read, so that it comes back (and the
/// flag is looked at) often, even when it inflates a small input into
/// many pixels.
const CHUNK: usize = 16 << 10;

/// In-memory image bytes that stop reading once `stop` is set.
pub(crate) struct StoppableInput<'a> {
    bytes: Cursor<&'a [u8]>,
    stop: &'a AtomicBool,
}

impl<'a> StoppableInput<'a> {
    pub(crate) fn new(bytes: &'a [u8], stop: &'a AtomicBool) -> Self {
        StoppableInput {
            bytes: Cursor::new(bytes),
            stop,
        }
    }

    fn check(&self) -> std::io::Result<()> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("decoding was stopped"));
        }
        Ok(())
    }
}

impl Read for StoppableInput<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.check()?;
        let n = buf.len().min(CHUNK);
        self.bytes.read(&mut buf[..n])
    }
}

impl BufRead for StoppableInput<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.check()?;
        let rest = self.bytes.fill_buf()?;
        Ok(&rest[..rest.len().min(CHUNK)])
    }

    fn consume(&mut self, amount: usize) {
        self.bytes.consume(amount);
    }
}

impl Seek for StoppableInput<'_> {
    fn seek(&mut self, position: SeekFrom) -> std::io::Result<u64> {
        self.bytes.seek(position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_chunks_until_stopped() {
        let bytes = vec![7u8; 3 * CHUNK];
        let stop = AtomicBool::new(false);
        let mut input = StoppableInput::new(&bytes, &stop);
        assert_eq!(input.fill_buf().unwrap().len(), CHUNK);
        input.consume(10);
        let mut buf = vec![0u8; 4 * CHUNK];
        assert_eq!(input.read(&mut buf).unwrap(), CHUNK);
        stop.store(true, Ordering::Relaxed);
        assert!(input.read(&mut buf).is_err());
        assert!(input.fill_buf().is_err());
    }
}
