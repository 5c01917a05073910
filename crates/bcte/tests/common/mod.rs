//! Helpers shared by the real-process tests: run the `bcte` binary and read its JSON.

use serde_json::Value;
use std::{
    ffi::OsStr,
    io::{BufRead, BufReader},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

/// The `bcte` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_bcte");

/// Runs `bcte ARGS` to completion.
pub fn bcte(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run bcte")
}

/// Panics with the command's stderr unless it succeeded.
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The one JSON object a `--json` command printed, or a panic showing what it printed instead.
pub fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Starts `bcte node ARGS` and waits (a minute at most) until it prints `listening on URL`.
/// Returns the process, the URL and the lines printed before it.
pub fn start_node<I, S>(args: I) -> (Child, String, Vec<String>)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut child = Command::new(BIN)
        .arg("node")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start bcte node");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut before = Vec::new();
    let url = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the node prints its address within a minute");
        if let Some(url) = line.strip_prefix("listening on ") {
            break url.to_string();
        }
        before.push(line);
    };
    (child, url, before)
}
