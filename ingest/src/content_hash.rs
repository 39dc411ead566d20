//! The content hash of an input: xxh3-128 of its bytes as 32 hex digits. One definition for
//! backfill (files, tar entries, archives) and live ingest (response bodies): the ingest log
//! de-duplicates on it (`ingest_key`), so the same bytes must hash the same whichever path
//! read them and however they were cut into chunks (the tests below hold the paths to that).

use std::io::Read;

/// Hashes bytes as they pass, in any chunks.
#[derive(Default, Clone)]
pub struct ContentHasher(xxhash_rust::xxh3::Xxh3);

impl ContentHasher {
    pub fn new() -> Self {
        ContentHasher(xxhash_rust::xxh3::Xxh3::new())
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The hash of everything seen so far.
    pub fn finish(&self) -> String {
        format!("{:032x}", self.0.digest128())
    }
}

/// A reader that hashes what passes through it.
pub struct HashingReader<'a> {
    inner: &'a mut dyn Read,
    hasher: ContentHasher,
}

impl<'a> HashingReader<'a> {
    pub fn new(inner: &'a mut dyn Read) -> Self {
        HashingReader {
            inner,
            hasher: ContentHasher::new(),
        }
    }

    pub fn finish(&self) -> String {
        self.hasher.finish()
    }
}

impl Read for HashingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The hash of everything `r` yields.
pub fn of_reader(r: &mut dyn Read) -> std::io::Result<String> {
    let mut h = HashingReader::new(r);
    std::io::copy(&mut h, &mut std::io::sink())?;
    Ok(h.finish())
}

/// The hash of a file's bytes.
pub fn of_file(path: &std::path::Path) -> std::io::Result<String> {
    of_reader(&mut std::fs::File::open(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same bytes hash the same through every path: a file read whole (backfill's
    /// archives), a stream read through a parser (backfill's items), and chunks as a body
    /// arrives (live ingest) — and as the one-shot xxh3-128 every stored `ingest_key` was made
    /// with, so stores written before this module de-duplicate against new runs.
    #[test]
    fn one_hash_whatever_the_path() {
        let data: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let want = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&data));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dump");
        std::fs::write(&p, &data).unwrap();
        assert_eq!(of_file(&p).unwrap(), want);
        let mut cursor = std::io::Cursor::new(&data);
        let mut r = HashingReader::new(&mut cursor);
        let mut half = vec![0u8; data.len() / 2];
        r.read_exact(&mut half).unwrap();
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
        assert_eq!(r.finish(), want);
        for chunk in [1usize, 7, 4096, 65_536] {
            let mut h = ContentHasher::new();
            for c in data.chunks(chunk) {
                h.update(c);
            }
            assert_eq!(h.finish(), want, "chunks of {chunk}");
        }
        assert_eq!(ContentHasher::new().finish().len(), 32);
    }
}
