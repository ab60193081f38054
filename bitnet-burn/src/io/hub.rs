//! Downloads from the Hugging Face Hub into the cache layout `huggingface_hub` uses (so files fetched by Python
//! tools are reused), with resume, retries with backoff, and verification of every byte before a file is trusted.
//!
//! The transfer is the `hf-hub` crate's (`HF_HOME`, `HF_ENDPOINT`, `.part` files resumed with Range requests);
//! this module adds `HF_TOKEN`, retries of the whole request on 5xx/429/transport errors, and the checks: the
//! Hub's ETag is the file's SHA-256 (LFS files) or its git blob id (small files), and published files also have
//! a known size and SHA-256. A file that fails them is removed, never left where a complete one is expected.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hf_hub::api::sync::{Api, ApiBuilder, ApiError};
use hf_hub::api::Progress;
use hf_hub::{Cache, Repo, RepoType};
use sha1::Sha1;
use sha2::Sha256;

use crate::io::known_files::{hash_file, KNOWN_FILES};

/// Why a Hub file could not be had.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// A model argument that starts with `hf:` but does not name a file.
    #[error("{0:?} is not a Hub file: expected hf:OWNER/NAME/FILE or hf:OWNER/NAME@REVISION/FILE")]
    BadSpec(String),
    /// The server refused or the transfer failed after the retries.
    #[error("{url}: {message}")]
    Request {
        /// What was asked for.
        url: String,
        /// Why it failed.
        message: String,
    },
    /// The downloaded bytes are not the published file; the file was removed.
    #[error("{file}: {what} is {found}, expected {expected}: the download is corrupt or not the published file, and was removed")]
    Corrupt {
        /// `repo/file`.
        file: String,
        /// `size`, `sha256` or `git blob id`.
        what: &'static str,
        /// The published value.
        expected: String,
        /// What the bytes give.
        found: String,
    },
    /// No single file to fetch from a repository listing.
    #[error("{repo}: {message}")]
    Choose {
        /// The repository.
        repo: String,
        /// What was found.
        message: String,
    },
    /// A local file could not be read or removed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A file in a Hub model repository at a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubFile {
    /// `owner/name`.
    pub repo: String,
    /// Path inside the repository.
    pub file: String,
    /// Branch, tag or commit.
    pub revision: String,
}

impl HubFile {
    /// Parses `hf:OWNER/NAME/FILE` or `hf:OWNER/NAME@REVISION/FILE`; `None` if `spec` does not start with `hf:`.
    pub fn parse(spec: &str) -> Option<Result<Self, HubError>> {
        let rest = spec.strip_prefix("hf:")?;
        let bad = || HubError::BadSpec(spec.into());
        let mut parts = rest.splitn(3, '/');
        let (Some(owner), Some(name), Some(file)) = (parts.next(), parts.next(), parts.next())
        else {
            return Some(Err(bad()));
        };
        let (name, revision) = name.split_once('@').unwrap_or((name, "main"));
        if [owner, name, file, revision].iter().any(|s| s.is_empty()) || file.ends_with('/') {
            return Some(Err(bad()));
        }
        Some(Ok(Self {
            repo: format!("{owner}/{name}"),
            file: file.into(),
            revision: revision.into(),
        }))
    }
}

/// How far a download has got, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DownloadProgress {
    /// Bytes on disk (a resumed download starts above zero).
    pub done: u64,
    /// The file's size.
    pub total: u64,
}

/// How a file was checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verified {
    /// SHA-256 equal to the Hub's LFS ETag (or the known-file table).
    Sha256(String),
    /// Git blob id equal to the Hub's ETag (files kept in git, not LFS).
    GitBlob(String),
    /// The server gave no checksum and the file is not in the known table.
    Unchecked,
}

/// A file in the local cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Downloaded {
    /// `HF_HOME/hub/models--OWNER--NAME/snapshots/COMMIT/FILE`.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// How it was checked.
    pub verified: Verified,
}

/// The Hub client: endpoint, cache and token from the environment, plus the retry policy.
pub struct Hub {
    api: Api,
    cache: Cache,
    endpoint: String,
    attempts: usize,
    backoff: Duration,
}

impl Hub {
    /// `HF_HOME` (cache under `HF_HOME/hub`, else `~/.cache/huggingface/hub`), `HF_ENDPOINT`, and `HF_TOKEN` (else
    /// the token file `huggingface-cli login` writes).
    pub fn from_env() -> Result<Self, HubError> {
        let cache = Cache::from_env();
        let endpoint =
            std::env::var("HF_ENDPOINT").unwrap_or_else(|_| "https://huggingface.co".into());
        let token = std::env::var("HF_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| cache.token());
        Self::new(cache.path().clone(), &endpoint, token)
    }

    /// A client on an explicit cache directory (the `hub` folder), endpoint and token.
    pub fn new(
        cache_dir: PathBuf,
        endpoint: &str,
        token: Option<String>,
    ) -> Result<Self, HubError> {
        let cache = Cache::new(cache_dir);
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let api = ApiBuilder::from_cache(cache.clone())
            .with_endpoint(endpoint.clone())
            .with_token(token)
            .with_progress(false)
            .with_retries(3)
            .build()
            .map_err(|e| HubError::Request {
                url: endpoint.clone(),
                message: e.to_string(),
            })?;
        Ok(Self {
            api,
            cache,
            endpoint,
            attempts: 5,
            backoff: Duration::from_millis(500),
        })
    }

    /// Retries a failed request up to `attempts` times in all, waiting `backoff`, 2·`backoff`, 4·`backoff`...
    pub fn with_retries(mut self, attempts: usize, backoff: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.backoff = backoff;
        self
    }

    /// The cache directory (`.../hub`).
    pub fn cache_dir(&self) -> &Path {
        self.cache.path()
    }

    fn repo(f: &HubFile) -> Repo {
        Repo::with_revision(f.repo.clone(), RepoType::Model, f.revision.clone())
    }

    /// The cached copy of `f`, if one was downloaded for its revision.
    pub fn cached(&self, f: &HubFile) -> Option<PathBuf> {
        self.cache.repo(Self::repo(f)).get(&f.file)
    }

    /// The cached copy of `f`, or a fresh download of it.
    pub fn get(
        &self,
        f: &HubFile,
        progress: impl FnMut(DownloadProgress),
    ) -> Result<PathBuf, HubError> {
        match self.cached(f) {
            Some(path) => Ok(path),
            None => self.download(f, progress).map(|d| d.path),
        }
    }

    /// Downloads `f` (resuming a `.part` file left by an interrupted download), then verifies it.
    pub fn download(
        &self,
        f: &HubFile,
        mut progress: impl FnMut(DownloadProgress),
    ) -> Result<Downloaded, HubError> {
        let url = format!(
            "{}/{}/resolve/{}/{}",
            self.endpoint, f.repo, f.revision, f.file
        );
        let repo = self.api.repo(Self::repo(f));
        let path = self.retrying(&url, || {
            repo.download_with_progress(&f.file, Reporter::new(&mut progress))
        })?;
        self.verify(f, path)
    }

    /// The files of a repository at a revision.
    pub fn list(&self, repo: &str, revision: &str) -> Result<Vec<String>, HubError> {
        let url = format!("{}/api/models/{repo}/revision/{revision}", self.endpoint);
        let api = self.api.repo(Repo::with_revision(
            repo.into(),
            RepoType::Model,
            revision.into(),
        ));
        let info = self.retrying(&url, || api.info())?;
        Ok(info.siblings.into_iter().map(|s| s.rfilename).collect())
    }

    fn retrying<T>(
        &self,
        url: &str,
        mut call: impl FnMut() -> Result<T, ApiError>,
    ) -> Result<T, HubError> {
        let mut wait = self.backoff;
        for attempt in 1.. {
            match call() {
                Ok(v) => return Ok(v),
                Err(e) if attempt < self.attempts && transient(&e) => {
                    std::thread::sleep(wait);
                    wait *= 2;
                }
                Err(e) => {
                    return Err(HubError::Request {
                        url: url.into(),
                        message: describe(&e, attempt),
                    })
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// Checks the file behind the snapshot pointer against its ETag and the known table; removes it on mismatch.
    fn verify(&self, f: &HubFile, pointer: PathBuf) -> Result<Downloaded, HubError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| HubError::Io { path, source }
        };
        let blob = std::fs::canonicalize(&pointer).map_err(io(&pointer))?;
        let etag = blob
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let size = std::fs::metadata(&blob).map_err(io(&blob))?.len();
        let name = format!("{}/{}", f.repo, f.file);
        let known = KNOWN_FILES
            .iter()
            .find(|k| k.repo == f.repo && k.file == f.file);
        let is_hex = |n: usize| etag.len() == n && etag.bytes().all(|b| b.is_ascii_hexdigit());
        let check = |what, expected: String, found: String| {
            if expected.eq_ignore_ascii_case(&found) {
                Ok(())
            } else {
                Err(HubError::Corrupt {
                    file: name.clone(),
                    what,
                    expected,
                    found,
                })
            }
        };
        let result = (|| {
            if let Some(k) = known {
                check("size", k.size.to_string(), size.to_string())?;
            }
            let sha256 = if is_hex(64) || known.is_some() {
                Some(hash_file::<Sha256>(&blob, None).map_err(io(&blob))?)
            } else {
                None
            };
            if let Some(k) = known {
                check(
                    "sha256",
                    k.sha256.into(),
                    sha256.clone().unwrap_or_default(),
                )?;
            }
            if is_hex(64) {
                let found = sha256.unwrap_or_default();
                check("sha256", etag.clone(), found.clone())?;
                return Ok(Verified::Sha256(found));
            }
            if is_hex(40) {
                let found = hash_file::<Sha1>(&blob, Some(size)).map_err(io(&blob))?;
                check("git blob id", etag.clone(), found.clone())?;
                return Ok(Verified::GitBlob(found));
            }
            Ok(sha256.map_or(Verified::Unchecked, Verified::Sha256))
        })();
        match result {
            Ok(verified) => Ok(Downloaded {
                path: pointer,
                size,
                verified,
            }),
            Err(e) => {
                std::fs::remove_file(&pointer).map_err(io(&pointer))?;
                std::fs::remove_file(&blob).map_err(io(&blob))?;
                Err(e)
            }
        }
    }
}

/// Which files of a repository `bitnet download` fetches when no file is named: its one GGUF, or what a
/// transformers checkpoint needs (config, weights, tokenizer).
pub fn files_to_fetch(repo: &str, files: &[String]) -> Result<Vec<String>, HubError> {
    let ggufs: Vec<&String> = files.iter().filter(|f| f.ends_with(".gguf")).collect();
    match ggufs.as_slice() {
        [one] => return Ok(vec![(*one).clone()]),
        [] => {}
        many => {
            return Err(HubError::Choose {
                repo: repo.into(),
                message: format!(
                    "{} GGUF files; pick one with --file: {}",
                    many.len(),
                    many.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
        }
    }
    let wanted = |f: &str| {
        f.ends_with(".safetensors")
            || matches!(
                f,
                "config.json"
                    | "generation_config.json"
                    | "model.safetensors.index.json"
                    | "tokenizer.json"
                    | "tokenizer_config.json"
                    | "special_tokens_map.json"
                    | "tokenizer.model"
            )
    };
    let picked: Vec<String> = files.iter().filter(|f| wanted(f)).cloned().collect();
    if !picked.iter().any(|f| f.ends_with(".safetensors")) {
        return Err(HubError::Choose {
            repo: repo.into(),
            message: format!(
                "neither a GGUF file nor safetensors weights among {} files",
                files.len()
            ),
        });
    }
    Ok(picked)
}

/// Retry only what may pass next time: server errors, rate limits, broken connections, I/O.
fn transient(e: &ApiError) -> bool {
    match e {
        ApiError::RequestError(e) => match e.as_ref() {
            ureq::Error::Status(code, _) => *code >= 500 || *code == 429,
            ureq::Error::Transport(_) => true,
        },
        ApiError::IoError(_) | ApiError::TooManyRetries(_) | ApiError::LockAcquisition(_) => true,
        _ => false,
    }
}

fn describe(e: &ApiError, attempts: usize) -> String {
    let hint = match e {
        ApiError::RequestError(r) => match r.as_ref() {
            ureq::Error::Status(401 | 403, _) => {
                " (a gated or private repository: set HF_TOKEN or run huggingface-cli login)"
            }
            ureq::Error::Status(404, _) => " (no such repository, revision or file)",
            _ => "",
        },
        _ => "",
    };
    let tries = if attempts > 1 {
        format!(" after {attempts} attempts")
    } else {
        String::new()
    };
    format!("{e}{hint}{tries}")
}

/// hf-hub's progress hooks, as byte counts for a callback.
struct Reporter<'a, F: FnMut(DownloadProgress)> {
    callback: &'a mut F,
    done: u64,
    total: u64,
}

impl<'a, F: FnMut(DownloadProgress)> Reporter<'a, F> {
    fn new(callback: &'a mut F) -> Self {
        Self {
            callback,
            done: 0,
            total: 0,
        }
    }
}

impl<F: FnMut(DownloadProgress)> Progress for Reporter<'_, F> {
    fn init(&mut self, size: usize, _filename: &str) {
        (self.done, self.total) = (0, size as u64);
    }

    fn update(&mut self, size: usize) {
        self.done += size as u64;
        (self.callback)(DownloadProgress {
            done: self.done,
            total: self.total,
        });
    }

    fn finish(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_and_without_revision() {
        let f = HubFile::parse("hf:microsoft/bitnet-b1.58-2B-4T-gguf/ggml-model-i2_s.gguf")
            .unwrap()
            .unwrap();
        assert_eq!(
            (f.repo.as_str(), f.file.as_str(), f.revision.as_str()),
            (
                "microsoft/bitnet-b1.58-2B-4T-gguf",
                "ggml-model-i2_s.gguf",
                "main"
            )
        );
        let f = HubFile::parse("hf:a/b@v1.0/sub/dir/x.gguf")
            .unwrap()
            .unwrap();
        assert_eq!(
            (f.repo.as_str(), f.file.as_str(), f.revision.as_str()),
            ("a/b", "sub/dir/x.gguf", "v1.0")
        );
        assert!(HubFile::parse("model.gguf").is_none());
        for bad in [
            "hf:",
            "hf:a/b",
            "hf:a/b/",
            "hf:/b/x",
            "hf:a/@/x",
            "hf:a/b/dir/",
        ] {
            assert!(
                matches!(HubFile::parse(bad), Some(Err(HubError::BadSpec(_)))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_repository_gives_its_one_gguf_or_its_checkpoint_files() {
        let files = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            files_to_fetch("r", &files(&["README.md", "ggml-model-i2_s.gguf"])).unwrap(),
            ["ggml-model-i2_s.gguf"]
        );
        let err = files_to_fetch("r", &files(&["a.gguf", "b.gguf"])).unwrap_err();
        assert!(err.to_string().contains("a.gguf, b.gguf"), "{err}");
        assert_eq!(
            files_to_fetch(
                "r",
                &files(&[
                    "README.md",
                    "config.json",
                    "model.safetensors",
                    "tokenizer.json",
                    "x.py"
                ])
            )
            .unwrap(),
            ["config.json", "model.safetensors", "tokenizer.json"]
        );
        assert!(files_to_fetch("r", &files(&["README.md"])).is_err());
    }

    #[test]
    fn git_blob_ids_match_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        let dir = std::env::temp_dir().join(format!("bitnet-blob-{}", std::process::id()));
        std::fs::write(&dir, b"hello\n").unwrap();
        let id = hash_file::<Sha1>(&dir, Some(6)).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(id, "ce013625030ba8dba906f756967f9e9ca394464a");
    }
}
