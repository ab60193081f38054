//! A local HTTP server that answers like the Hugging Face Hub: `resolve` URLs with `X-Repo-Commit` and ETags
//! (LFS files redirect to a CDN path with `X-Linked-Etag` = SHA-256, git files carry their blob id), Range
//! requests, the repository listing API, and injected faults: 5xx answers, a connection cut mid-file, corrupt
//! bytes, a required token.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The commit every repository is at.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A served file and its faults.
#[derive(Clone, Default)]
pub struct ServedFile {
    /// The true bytes (the ETag describes these).
    pub content: Vec<u8>,
    /// Stored in LFS: redirected to the CDN, ETag = SHA-256; else served directly, ETag = git blob id.
    pub lfs: bool,
    /// Answer this many requests for the file with 503 first.
    pub fail_first: usize,
    /// Cut the connection after this many body bytes the first time a transfer crosses that offset.
    pub cut_at: Option<usize>,
    /// Serve bytes with one flipped (the ETag still names the true content).
    pub corrupt: bool,
    /// Answer 401 unless `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

/// One request the server saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
    pub status: u16,
    /// Body bytes sent.
    pub sent: usize,
}

struct State {
    files: HashMap<(String, String), ServedFile>,
    log: Vec<Seen>,
}

/// The running server (it lives until the test process exits).
pub struct HubServer {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl HubServer {
    /// Serves `files`, keyed by (repo, path in repo).
    pub fn start(files: Vec<(&str, &str, ServedFile)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            files: files
                .into_iter()
                .map(|(r, p, f)| ((r.to_string(), p.to_string()), f))
                .collect(),
            log: Vec::new(),
        }));
        let (st, base) = (state.clone(), url.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (st, base) = (st.clone(), base.clone());
                std::thread::spawn(move || handle(conn, &st, &base));
            }
        });
        Self { url, state }
    }

    /// The requests seen so far.
    pub fn log(&self) -> Vec<Seen> {
        self.state.lock().unwrap().log.clone()
    }

    /// Total body bytes sent for paths containing `part`.
    pub fn bytes_sent(&self, part: &str) -> usize {
        self.log()
            .iter()
            .filter(|s| s.path.contains(part))
            .map(|s| s.sent)
            .sum()
    }
}

pub fn sha256_hex(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

pub fn git_blob_id(b: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", b.len()).as_bytes());
    h.update(b);
    hex(&h.finalize())
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn handle(mut conn: TcpStream, state: &Mutex<State>, base: &str) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let range = headers.get("range").cloned();
    let (status, extra, body, cut) = route(state, base, &path, range.as_deref(), &headers);
    let reason = match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Service Unavailable",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let sent = cut.unwrap_or(body.len()).min(body.len());
    state.lock().unwrap().log.push(Seen {
        path,
        range,
        status,
        sent,
    });
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&body[..sent]);
    let _ = conn.flush();
    let _ = conn.shutdown(std::net::Shutdown::Both);
}

type Reply = (u16, Vec<(String, String)>, Vec<u8>, Option<usize>);

fn route(
    state: &Mutex<State>,
    base: &str,
    path: &str,
    range: Option<&str>,
    headers: &HashMap<String, String>,
) -> Reply {
    let mut st = state.lock().unwrap();
    let not_found = (404, vec![], b"not found".to_vec(), None);
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let Some((repo, _rev)) = rest.split_once("/revision/") else {
            return not_found;
        };
        let siblings: Vec<serde_json::Value> = st
            .files
            .keys()
            .filter(|(r, _)| r == repo)
            .map(|(_, p)| serde_json::json!({ "rfilename": p }))
            .collect();
        if siblings.is_empty() {
            return not_found;
        }
        let body = serde_json::json!({ "sha": COMMIT, "siblings": siblings }).to_string();
        return (
            200,
            vec![("Content-Type".into(), "application/json".into())],
            body.into(),
            None,
        );
    }
    if let Some(sha) = path.strip_prefix("/cdn/") {
        let Some(file) = st
            .files
            .values_mut()
            .find(|f| f.lfs && sha256_hex(&f.content) == sha)
        else {
            return not_found;
        };
        return serve_bytes(file, range, vec![]);
    }
    // /{owner}/{name}/resolve/{revision}/{file}
    let parts: Vec<&str> = path.trim_start_matches('/').splitn(5, '/').collect();
    let [owner, name, "resolve", _rev, file] = parts.as_slice() else {
        return not_found;
    };
    let repo = format!("{owner}/{name}");
    let Some(f) = st.files.get_mut(&(repo, file.to_string())) else {
        return not_found;
    };
    if let Some(token) = &f.token {
        if headers.get("authorization") != Some(&format!("Bearer {token}")) {
            return (401, vec![], b"unauthorized".to_vec(), None);
        }
    }
    if f.fail_first > 0 {
        f.fail_first -= 1;
        return (503, vec![], b"try later".to_vec(), None);
    }
    let commit = ("X-Repo-Commit".to_string(), COMMIT.to_string());
    if f.lfs {
        let sha = sha256_hex(&f.content);
        return (
            302,
            vec![
                ("Location".into(), format!("{base}/cdn/{sha}")),
                ("X-Linked-Etag".into(), format!("\"{sha}\"")),
                ("X-Linked-Size".into(), f.content.len().to_string()),
                ("ETag".into(), format!("\"{}\"", git_blob_id(b"pointer"))),
                commit,
            ],
            vec![],
            None,
        );
    }
    let etag = (
        "ETag".to_string(),
        format!("\"{}\"", git_blob_id(&f.content)),
    );
    serve_bytes(f, range, vec![etag, commit])
}

fn serve_bytes(f: &mut ServedFile, range: Option<&str>, mut extra: Vec<(String, String)>) -> Reply {
    let mut content = f.content.clone();
    if f.corrupt {
        let mid = content.len() / 2;
        content[mid] ^= 0xff;
    }
    let n = content.len();
    let (start, end) = match range.and_then(|r| r.strip_prefix("bytes=")) {
        Some(r) => {
            let (s, e) = r.split_once('-').unwrap_or((r, ""));
            let s: usize = s.parse().unwrap_or(0);
            let e: usize = e.parse().map(|e: usize| e + 1).unwrap_or(n).min(n);
            if s >= n || s >= e {
                return (
                    416,
                    vec![("Content-Range".into(), format!("bytes */{n}"))],
                    vec![],
                    None,
                );
            }
            (s, e)
        }
        None => (0, n),
    };
    let cut = match f.cut_at {
        Some(c) if start < c && c < end && end - start > 1 => {
            f.cut_at = None;
            Some(c - start)
        }
        _ => None,
    };
    let status = if range.is_some() { 206 } else { 200 };
    if range.is_some() {
        extra.push((
            "Content-Range".into(),
            format!("bytes {start}-{}/{n}", end - 1),
        ));
    }
    (status, extra, content[start..end].to_vec(), cut)
}
