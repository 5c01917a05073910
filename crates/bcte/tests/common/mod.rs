//! Helpers shared by the real-process tests: run the `bcte` binary and read its JSON.

#![allow(dead_code)] // each test binary uses its own part

use serde_json::Value;
use std::{
    ffi::OsStr,
    fs::OpenOptions,
    io::{BufRead, BufReader},
    path::Path,
    path::PathBuf,
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

/// Starts `bcte node ARGS`, its log (stderr) appended to `log`, and waits (a minute at most)
/// until it prints `listening on URL`. Returns the process, the URL and the lines printed
/// before it.
pub fn start_node<I, S>(args: I, log: &Path) -> (Child, String, Vec<String>)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the node's log file");
    let mut child = Command::new(BIN)
        .arg("node")
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
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

/// When the current test is failing, prints the last `lines` lines of a node's log to stderr
/// (the test harness shows them with the failure). Call it from a node handle's `Drop`.
pub fn show_log_if_failing(name: &str, log: &Path, lines: usize) {
    if !thread::panicking() {
        return;
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    eprintln!(
        "--- last {} lines of {name}'s log ({}) ---",
        tail.len(),
        log.display()
    );
    for line in tail {
        eprintln!("{line}");
    }
}

/// A dev node in a temporary directory, and the CLI pointed at it.
pub struct Dev {
    /// The node's process.
    pub child: Child,
    /// Its API URL.
    pub url: String,
    /// The temporary directory holding its data (`chain/`), log and the test's files.
    pub dir: tempfile::TempDir,
    /// The dev key: the chain's registrar and DSO.
    pub dso: PathBuf,
    /// The node's log.
    pub log: PathBuf,
}

impl Dev {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A dev node started with `extra` flags too.
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("chain");
        let log = dir.path().join("node.log");
        let mut args = vec![
            OsStr::new("--dev"),
            OsStr::new("--data-dir"),
            data.as_os_str(),
            OsStr::new("--http"),
            OsStr::new("127.0.0.1:0"),
        ];
        args.extend(extra.iter().map(OsStr::new));
        let (child, url, before) = start_node(args, &log);
        let dso = before
            .iter()
            .find_map(|l| l.strip_prefix("dev key: "))
            .map(PathBuf::from)
            .expect("dev key line");
        Self {
            child,
            url,
            dir,
            dso,
            log,
        }
    }

    /// Runs `bcte ARGS` against this node.
    /// Runs `bcte ARGS`; reads sign in as the DSO (which operates the feeder, AC-6.3) unless
    /// they name another `--key`.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("BCTE_NODE", &self.url)
            .env("BCTE_KEY", &self.dso)
            .output()
            .expect("run bcte")
    }

    /// Runs `bcte --json ARGS` as the public (no key), asserts success and returns the JSON.
    pub fn public(&self, args: &[&str]) -> Value {
        let out = Command::new(BIN)
            .arg("--json")
            .args(args)
            .env("BCTE_NODE", &self.url)
            .output()
            .expect("run bcte");
        assert_ok(&out);
        json_of(&out)
    }

    /// Runs `bcte --json ARGS`, asserts success and returns the JSON.
    pub fn ok(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert_ok(&out);
        json_of(&out)
    }

    /// A new key file and its account, enrolled by the DSO (the dev chain's registrar) as a
    /// market participant.
    pub fn key(&self, name: &str) -> (String, String) {
        let file = self.path(&format!("{name}.key"));
        let file = file.to_str().unwrap().to_owned();
        let v = self.ok(&["keys", "new", "--out", &file]);
        let account = v["account"].as_str().unwrap().to_owned();
        let v = self.ok(&[
            "tx",
            "enroll",
            "--key",
            self.dso(),
            "--account",
            &account,
            "--role",
            "prosumer",
            "--role",
            "consumer",
            "--role",
            "aggregator",
        ]);
        assert_eq!(v["status"], "accepted", "{v}");
        (file, account)
    }

    /// Registers `examples/chain/feeder.json` (the feeder `demo`: `substation` and `t1`, whose
    /// edge imports at most 400 kW), signed by the DSO.
    pub fn register_demo_feeder(&self) {
        self.register_feeder(&example("chain/feeder.json"));
    }

    /// Runs a DSO transaction `tx ARGS --key DSO` and asserts it was accepted.
    pub fn dso_tx(&self, args: &[&str]) {
        let mut all = vec!["tx"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--key", self.dso()]);
        let v = self.ok(&all);
        assert_eq!(v["status"], "accepted", "{args:?}: {v}");
    }

    /// Registers `site` on node `t1` of the demo feeder, owned by `owner` (DSO).
    pub fn register_site(&self, site: &str, owner: &str) {
        self.dso_tx(&[
            "site", "register", "--site", site, "--node", "t1", "--owner", owner,
        ]);
    }

    /// Registers the feeder of `file`, signed by the DSO.
    pub fn register_feeder(&self, file: &str) {
        self.dso_tx(&["feeder", "register", "--file", file]);
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn dso(&self) -> &str {
        self.dso.to_str().unwrap()
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        show_log_if_failing("the dev node", &self.log, 40);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The path of `examples/NAME`.
pub fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}
