//! Published model files with their exact size and SHA-256, so a local copy can be checked before it is trusted.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// A published file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownFile {
    /// Hugging Face repository.
    pub repo: &'static str,
    /// File name in the repository.
    pub file: &'static str,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: &'static str,
}

/// Files whose size and checksum are known.
pub const KNOWN_FILES: &[KnownFile] = &[KnownFile {
    repo: "microsoft/bitnet-b1.58-2B-4T-gguf",
    file: "ggml-model-i2_s.gguf",
    size: 1_187_801_280,
    sha256: "4221b252fdd5fd25e15847adfeb5ee88886506ba50b8a34548374492884c2162",
}];

/// The known files of exactly `size` bytes.
pub fn known_by_size(size: u64) -> impl Iterator<Item = &'static KnownFile> {
    KNOWN_FILES.iter().filter(move |k| k.size == size)
}

/// SHA-256 of a file as lowercase hex, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    hash_file::<Sha256>(path, None)
}

/// Hex digest of a file; with `git_size`, of git's blob object (`blob SIZE\0` + bytes), which is the Hub's ETag of
/// files kept in git rather than LFS.
pub(crate) fn hash_file<D: Digest>(path: &Path, git_size: Option<u64>) -> std::io::Result<String> {
    let mut hasher = D::new();
    if let Some(size) = git_size {
        hasher.update(format!("blob {size}\0").as_bytes());
    }
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf)? {
            0 => break,
            n => hasher.update(&buf[..n]),
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sha256_matches_the_standard_test_vector() {
        let dir = std::env::temp_dir().join(format!("bitnet-sha-{}", std::process::id()));
        std::fs::write(&dir, b"abc").unwrap();
        let hex = super::sha256_file(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
