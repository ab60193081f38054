//! Hub downloads against a real local HTTP server that answers like huggingface.co (`common/hub_server.rs`):
//! cache layout, resume, retries, corruption, tokens; and the CLI end to end (`bitnet download`, `-m hf:...`,
//! `bitnet convert` on a downloaded checkpoint) with `HF_HOME`, `HF_ENDPOINT` and `HF_TOKEN`.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::hub_server::{git_blob_id, sha256_hex, HubServer, ServedFile, COMMIT};
use bitnet_burn::io::hub::{files_to_fetch, Hub, HubError, HubFile, Verified};

/// Deterministic bytes that are not all alike (so a misplaced range shows).
fn payload(n: usize) -> Vec<u8> {
    let mut x = 0x2545F4914F6CDD1Du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn lfs(content: Vec<u8>) -> ServedFile {
    ServedFile {
        content,
        lfs: true,
        ..Default::default()
    }
}

fn hub(server: &HubServer, cache: &Path, token: Option<&str>) -> Hub {
    Hub::new(cache.to_path_buf(), &server.url, token.map(String::from))
        .unwrap()
        .with_retries(3, Duration::from_millis(20))
}

fn file(repo: &str, path: &str) -> HubFile {
    HubFile {
        repo: repo.into(),
        file: path.into(),
        revision: "main".into(),
    }
}

/// Everything under `dir` whose name ends with `suffix`.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn files_land_in_the_huggingface_hub_cache_layout_and_are_verified() {
    let weights = payload(300_000);
    let config = br#"{"model_type": "bitnet"}"#.to_vec();
    let server = HubServer::start(vec![
        ("owner/model", "model.gguf", lfs(weights.clone())),
        (
            "owner/model",
            "config.json",
            ServedFile {
                content: config.clone(),
                ..Default::default()
            },
        ),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let hub = hub(&server, tmp.path(), None);
    let mut last = None;
    let got = hub
        .download(&file("owner/model", "model.gguf"), |p| last = Some(p))
        .unwrap();
    let sha = sha256_hex(&weights);
    assert_eq!(got.verified, Verified::Sha256(sha.clone()));
    assert_eq!(got.size, weights.len() as u64);
    let last = last.unwrap();
    assert_eq!((last.done, last.total), (300_000, 300_000));

    // huggingface_hub's layout: snapshots/COMMIT/FILE -> ../../blobs/ETAG, refs/main = COMMIT.
    let repo_dir = tmp.path().join("models--owner--model");
    assert_eq!(
        got.path,
        repo_dir.join("snapshots").join(COMMIT).join("model.gguf")
    );
    assert_eq!(
        std::fs::read_link(&got.path).unwrap(),
        Path::new("../../blobs").join(&sha)
    );
    assert_eq!(
        std::fs::read(repo_dir.join("blobs").join(&sha)).unwrap(),
        weights
    );
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        COMMIT
    );

    let got = hub
        .download(&file("owner/model", "config.json"), |_| {})
        .unwrap();
    assert_eq!(got.verified, Verified::GitBlob(git_blob_id(&config)));
    assert_eq!(std::fs::read(&got.path).unwrap(), config);
    assert!(files_ending(tmp.path(), ".part").is_empty());

    // A cached file is used without asking the server.
    let requests = server.log().len();
    let again = hub.get(&file("owner/model", "model.gguf"), |_| {}).unwrap();
    assert_eq!(std::fs::read(again).unwrap(), weights);
    assert_eq!(server.log().len(), requests);
}

#[test]
fn a_connection_cut_mid_file_resumes_with_a_range_request() {
    let weights = payload(400_000);
    let server = HubServer::start(vec![(
        "o/m",
        "w.gguf",
        ServedFile {
            cut_at: Some(150_000),
            ..lfs(weights.clone())
        },
    )]);
    let tmp = tempfile::tempdir().unwrap();
    let got = hub(&server, tmp.path(), None)
        .download(&file("o/m", "w.gguf"), |_| {})
        .unwrap();
    assert_eq!(std::fs::read(&got.path).unwrap(), weights);
    let ranges: Vec<String> = server.log().into_iter().filter_map(|s| s.range).collect();
    assert!(ranges.contains(&"bytes=150000-".to_string()), "{ranges:?}");
    // Resumed, not restarted: each byte crossed the wire about once (plus the 1-byte metadata probes).
    assert!(server.bytes_sent("/cdn/") <= weights.len() + 4);
}

#[test]
fn a_part_file_left_by_an_interrupted_run_is_resumed() {
    let weights = payload(250_000);
    let server = HubServer::start(vec![("o/m", "w.gguf", lfs(weights.clone()))]);
    let tmp = tempfile::tempdir().unwrap();
    let blobs = tmp.path().join("models--o--m/blobs");
    std::fs::create_dir_all(&blobs).unwrap();
    let part = blobs.join(format!("{}.part", sha256_hex(&weights)));
    std::fs::write(&part, &weights[..120_000]).unwrap();
    let got = hub(&server, tmp.path(), None)
        .download(&file("o/m", "w.gguf"), |_| {})
        .unwrap();
    assert_eq!(std::fs::read(&got.path).unwrap(), weights);
    assert!(!part.exists());
    let ranges: Vec<String> = server.log().into_iter().filter_map(|s| s.range).collect();
    assert!(ranges.contains(&"bytes=120000-".to_string()), "{ranges:?}");
    assert!(server.bytes_sent("/cdn/") <= weights.len() - 120_000 + 4);
}

#[test]
fn server_errors_are_retried_then_reported() {
    let weights = payload(10_000);
    let server = HubServer::start(vec![
        (
            "o/m",
            "flaky.gguf",
            ServedFile {
                fail_first: 2,
                ..lfs(weights.clone())
            },
        ),
        (
            "o/m",
            "down.gguf",
            ServedFile {
                fail_first: 100,
                ..lfs(weights.clone())
            },
        ),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let hub = hub(&server, tmp.path(), None);
    let got = hub.download(&file("o/m", "flaky.gguf"), |_| {}).unwrap();
    assert_eq!(std::fs::read(&got.path).unwrap(), weights);
    let statuses: Vec<u16> = server
        .log()
        .iter()
        .filter(|s| s.path.ends_with("flaky.gguf"))
        .map(|s| s.status)
        .collect();
    assert_eq!(&statuses[..3], [503, 503, 302]);

    let err = hub.download(&file("o/m", "down.gguf"), |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("503") && msg.contains("after 3 attempts"),
        "{msg}"
    );
    assert!(msg.contains("/o/m/resolve/main/down.gguf"), "{msg}");
}

#[test]
fn corrupt_bytes_are_detected_reported_and_removed() {
    let weights = payload(50_000);
    let config = b"{\"a\": 1}".to_vec();
    let server = HubServer::start(vec![
        (
            "o/m",
            "w.gguf",
            ServedFile {
                corrupt: true,
                ..lfs(weights.clone())
            },
        ),
        (
            "o/m",
            "config.json",
            ServedFile {
                content: config.clone(),
                corrupt: true,
                ..Default::default()
            },
        ),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let hub = hub(&server, tmp.path(), None);
    let f = file("o/m", "w.gguf");
    match hub.download(&f, |_| {}) {
        Err(HubError::Corrupt {
            what,
            expected,
            found,
            ..
        }) => {
            assert_eq!(what, "sha256");
            assert_eq!(expected, sha256_hex(&weights));
            assert_ne!(found, expected);
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    assert!(
        hub.cached(&f).is_none(),
        "the corrupt file is not left in the cache"
    );
    assert!(!tmp
        .path()
        .join("models--o--m/blobs")
        .join(sha256_hex(&weights))
        .exists());
    let err = hub
        .download(&file("o/m", "config.json"), |_| {})
        .unwrap_err();
    assert!(err.to_string().contains("git blob id"), "{err}");
    assert!(err.to_string().contains(&git_blob_id(&config)), "{err}");
}

#[test]
fn gated_files_need_the_token_and_missing_files_say_so() {
    let weights = payload(5_000);
    let server = HubServer::start(vec![(
        "o/gated",
        "w.gguf",
        ServedFile {
            token: Some("hf_secret".into()),
            ..lfs(weights.clone())
        },
    )]);
    let tmp = tempfile::tempdir().unwrap();
    let err = hub(&server, tmp.path(), None)
        .download(&file("o/gated", "w.gguf"), |_| {})
        .unwrap_err();
    assert!(
        err.to_string().contains("401") && err.to_string().contains("HF_TOKEN"),
        "{err}"
    );
    let got = hub(&server, tmp.path(), Some("hf_secret"))
        .download(&file("o/gated", "w.gguf"), |_| {})
        .unwrap();
    assert_eq!(std::fs::read(got.path).unwrap(), weights);
    let err = hub(&server, tmp.path(), None)
        .download(&file("o/gated", "nope.gguf"), |_| {})
        .unwrap_err();
    assert!(
        err.to_string().contains("404") && err.to_string().contains("no such"),
        "{err}"
    );
}

#[test]
fn a_repository_listing_picks_the_checkpoint_files() {
    let server = HubServer::start(vec![
        ("o/ckpt", "config.json", ServedFile::default()),
        ("o/ckpt", "model.safetensors", lfs(payload(10))),
        ("o/ckpt", "tokenizer.json", ServedFile::default()),
        ("o/ckpt", "README.md", ServedFile::default()),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let mut files = hub(&server, tmp.path(), None)
        .list("o/ckpt", "main")
        .unwrap();
    files.sort();
    assert_eq!(files.len(), 4);
    assert_eq!(
        files_to_fetch("o/ckpt", &files).unwrap(),
        ["config.json", "model.safetensors", "tokenizer.json"]
    );
}

fn bitnet(
    args: &[&str],
    hf_home: &Path,
    server: &HubServer,
    token: Option<&str>,
) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bitnet"));
    cmd.args(args)
        .env("HF_HOME", hf_home)
        .env("HF_ENDPOINT", &server.url)
        .env_remove("HF_TOKEN");
    if let Some(t) = token {
        cmd.env("HF_TOKEN", t);
    }
    let o = cmd.output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn cli_downloads_a_gguf_and_runs_it_by_hf_name() {
    let Some(dir) = common::fixtures_or_skip("cli_downloads_a_gguf_and_runs_it_by_hf_name") else {
        return;
    };
    let gguf = std::fs::read(common::fixture_gguf(&dir, "i2_s")).unwrap();
    let server = HubServer::start(vec![
        (
            "o/tiny-gguf",
            "tiny-i2_s.gguf",
            ServedFile {
                token: Some("hf_tok".into()),
                fail_first: 1,
                ..lfs(gguf.clone())
            },
        ),
        ("o/tiny-gguf", "README.md", ServedFile::default()),
    ]);
    let home = tempfile::tempdir().unwrap();
    let (ok, _, err) = bitnet(&["download", "o/tiny-gguf"], home.path(), &server, None);
    assert!(!ok && err.contains("HF_TOKEN"), "{err}");
    let (ok, out, err) = bitnet(
        &["download", "o/tiny-gguf"],
        home.path(),
        &server,
        Some("hf_tok"),
    );
    assert!(ok, "{err}");
    let path = PathBuf::from(out.trim());
    assert!(
        path.starts_with(home.path().join("hub/models--o--tiny-gguf/snapshots")),
        "{out}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), gguf);
    assert!(err.contains("sha256"), "{err}");

    // `-m hf:...` uses the cache: no request reaches the server.
    let requests = server.log().len();
    let (ok, out, err) = bitnet(
        &[
            "run",
            "-m",
            "hf:o/tiny-gguf/tiny-i2_s.gguf",
            "-p",
            "The quick brown fox",
            "-n",
            "4",
            "--json",
        ],
        home.path(),
        &server,
        None,
    );
    assert!(ok, "{err}");
    assert!(out.contains("\"generated_tokens\""), "{out}");
    assert_eq!(server.log().len(), requests);
}

#[test]
fn cli_downloads_a_checkpoint_and_converts_it() {
    let Some(dir) = common::fixtures_or_skip("cli_downloads_a_checkpoint_and_converts_it") else {
        return;
    };
    let hf = dir.join("bitnet-tiny-h256/hf");
    let mut files = Vec::new();
    for e in std::fs::read_dir(&hf).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let content = std::fs::read(e.path()).unwrap();
        let served = if name.ends_with(".safetensors") {
            lfs(content)
        } else {
            ServedFile {
                content,
                ..Default::default()
            }
        };
        files.push(("o/tiny", name, served));
    }
    let server = HubServer::start(
        files
            .iter()
            .map(|(r, n, f)| (*r, n.as_str(), f.clone()))
            .collect(),
    );
    let home = tempfile::tempdir().unwrap();
    let (ok, out, err) = bitnet(&["download", "o/tiny"], home.path(), &server, None);
    assert!(ok, "{err}");
    let snapshot = PathBuf::from(out.trim());
    assert!(snapshot.join("config.json").exists() && snapshot.join("tokenizer.json").exists());
    assert!(
        !snapshot.join("gen_stats.json").exists(),
        "only the files a checkpoint needs"
    );
    let out_gguf = home.path().join("tiny-tq2_0.gguf");
    let (ok, _, err) = bitnet(
        &[
            "convert",
            snapshot.to_str().unwrap(),
            "-o",
            out_gguf.to_str().unwrap(),
            "--type",
            "tq2_0",
        ],
        home.path(),
        &server,
        None,
    );
    assert!(ok, "{err}");
    let (ok, _, err) = bitnet(
        &["info", out_gguf.to_str().unwrap()],
        home.path(),
        &server,
        None,
    );
    assert!(ok, "{err}");
}
