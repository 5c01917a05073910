//! Real processes on loopback: a dev node driven by the `bcte` CLI, killed with SIGKILL and
//! restarted, then audited offline.

use serde_json::{Value, json};
use std::{
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

mod common;

use common::{BIN, assert_ok, bcte, json_of, show_log_if_failing, start_node};

struct Node {
    child: Child,
    url: String,
    dev_key: PathBuf,
    log: PathBuf,
}

impl Node {
    /// Starts `bcte node --dev` on `dir` and waits until it serves requests.
    fn start(dir: &Path) -> Self {
        // The log sits next to the data directory; every start appends to it.
        let log = dir.with_extension("log");
        let (child, url, before) = start_node(
            [
                OsStr::new("--dev"),
                OsStr::new("--data-dir"),
                dir.as_os_str(),
                OsStr::new("--http"),
                OsStr::new("127.0.0.1:0"),
            ],
            &log,
        );
        let dev_key = before
            .iter()
            .find_map(|l| l.strip_prefix("dev key: "))
            .map(PathBuf::from);
        let node = Self {
            child,
            url,
            dev_key: dev_key.expect("dev key line before the address"),
            log,
        };
        let health: Value = node.get("/health");
        assert_eq!(health["status"], "ok");
        node
    }

    fn get(&self, path: &str) -> Value {
        let mut resp = ureq::get(&format!("{}{path}", self.url))
            .call()
            .expect("node answers");
        resp.body_mut().read_json().unwrap()
    }

    fn try_get(&self, path: &str) -> Option<Value> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent.get(&format!("{}{path}", self.url)).call().ok()?;
        resp.status()
            .is_success()
            .then(|| resp.body_mut().read_json().unwrap())
    }

    /// SIGKILL: no shutdown code runs.
    fn kill9(self) {}
}

impl Drop for Node {
    fn drop(&mut self) {
        // SIGKILL, also when a test fails: no node outlives its test.
        let _ = self.child.kill();
        let _ = self.child.wait();
        show_log_if_failing(&self.url, &self.log, 40);
    }
}

fn new_account(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(format!("{name}.key"));
    let out = bcte(&["--json", "keys", "new", "--out", path.to_str().unwrap()]);
    assert!(out.status.success());
    let account = json_of(&out)["account"].as_str().unwrap().to_string();
    let shown = json_of(&bcte(&["keys", "show", path.to_str().unwrap(), "--json"]));
    assert_eq!(shown["account"], account.as_str());
    assert_eq!(shown["public_key"], account.as_str());
    (path, account)
}

#[test]
fn transfer_query_kill_restart_and_audit_a_dev_chain() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let node = Node::start(&data);
    let dev_key = node.dev_key.to_str().unwrap().to_string();
    let (bob_key, bob) = new_account(work.path(), "bob");
    let bob_key_s = bob_key.to_str().unwrap();

    let out = bcte(&[
        "--json", "tx", "transfer", "--node", &node.url, "--key", &dev_key, "--to", &bob,
        "--amount", "1234",
    ]);
    assert_ok(&out);
    let receipt = json_of(&out);
    assert_eq!(receipt["status"], "accepted");
    assert_eq!(receipt["reason"], Value::Null);
    let hash = receipt["hash"].as_str().unwrap().to_string();
    let height = receipt["height"].as_u64().unwrap();

    let account = json_of(&bcte(&[
        "--json", "query", "account", &bob, "--node", &node.url, "--key", bob_key_s,
    ]));
    assert_eq!(
        (account["balance"].as_u64(), account["nonce"].as_u64()),
        (Some(1234), Some(0))
    );
    let tx = json_of(&bcte(&[
        "--json", "query", "tx", &hash, "--node", &node.url,
    ]));
    assert_eq!(
        (tx["status"].as_str(), tx["height"].as_u64()),
        (Some("accepted"), Some(height))
    );
    let block = json_of(&bcte(&[
        "--json",
        "query",
        "block",
        &height.to_string(),
        "--node",
        &node.url,
    ]));
    assert_eq!(block["txs"][0]["hash"], hash.as_str());
    for field in ["height", "hash", "parent", "timestamp", "state_root"] {
        assert!(!block[field].is_null(), "block JSON lacks {field}");
    }
    let latest = json_of(&bcte(&[
        "--json", "query", "block", "latest", "--node", &node.url,
    ]));
    assert!(latest["height"].as_u64().unwrap() >= height);
    let proof = json_of(&bcte(&[
        "--json",
        "query",
        "proof",
        &format!("account/{bob}"),
        "--node",
        &node.url,
        "--key",
        bob_key_s,
    ]));
    assert_eq!(proof["verified"], true);
    assert_eq!(proof["value"]["balance"], 1234);
    let before = json_of(&bcte(&[
        "--json",
        "query",
        "proof",
        &format!("account/{bob}"),
        "--height",
        &(height - 1).to_string(),
        "--node",
        &node.url,
        "--key",
        bob_key_s,
    ]));
    assert_eq!(
        before["value"],
        Value::Null,
        "absent before the transfer, proven"
    );

    // AC-1.2: bob holds no role, so he may receive but not send: the mempool refuses at once.
    let send = |amount: &str| {
        bcte(&[
            "--json",
            "tx",
            "transfer",
            "--node",
            &node.url,
            "--key",
            bob_key.to_str().unwrap(),
            "--to",
            &bob,
            "--amount",
            amount,
        ])
    };
    let out = send("5");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("transfer needs the role"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The dev key, registrar of a dev chain, enrolls him as a consumer (AC-2.1).
    let enroll = || {
        bcte(&[
            "--json",
            "tx",
            "enroll",
            "--node",
            &node.url,
            "--key",
            &dev_key,
            "--account",
            &bob,
            "--role",
            "consumer",
        ])
    };
    let out = enroll();
    assert_ok(&out);
    let enrolled = json_of(&out);
    assert_eq!(enrolled["status"], "accepted", "{enrolled}");
    let participant = enrolled["participant"].as_str().unwrap();
    let account = json_of(&bcte(&[
        "--json", "query", "account", &bob, "--node", &node.url, "--key", bob_key_s,
    ]));
    assert_eq!(account["roles"], serde_json::json!(["consumer"]));
    assert_eq!(account["participant"], participant);
    // The mempool refuses an overdraft at once, with the reason.
    let out = send("999999");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("insufficient balance"));
    // A consumer may not mint: refused at admission, naming the role it needs.
    let out = bcte(&[
        "--json",
        "tx",
        "mint",
        "--node",
        &node.url,
        "--key",
        bob_key.to_str().unwrap(),
        "--to",
        &bob,
        "--amount",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mint needs the role dso"));
    // A well-formed transaction the ledger rejects (only execution knows bob is enrolled
    // already): exit code 3, with the reason.
    let out = enroll();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rejected = json_of(&out);
    assert_eq!(rejected["status"], "rejected");
    assert!(
        rejected["reason"]
            .as_str()
            .unwrap()
            .contains("is a member already"),
        "{rejected}"
    );
    // Bad arguments are refused before any network use.
    let out = bcte(&[
        "tx", "transfer", "--node", &node.url, "--key", &dev_key, "--to", "nobody", "--amount", "1",
    ]);
    assert_eq!(out.status.code(), Some(2));

    node.kill9();
    let node = Node::start(&data);
    let account = json_of(&bcte(&[
        "--json", "query", "account", &bob, "--node", &node.url, "--key", bob_key_s,
    ]));
    assert_eq!(
        account["balance"].as_u64(),
        Some(1234),
        "the restarted node continues the same chain"
    );
    let tx = json_of(&bcte(&[
        "--json", "query", "tx", &hash, "--node", &node.url,
    ]));
    assert_eq!(tx["height"].as_u64(), Some(height));
    node.kill9();

    let out = bcte(&["--json", "verify", "--data-dir", data.to_str().unwrap()]);
    assert_ok(&out);
    let report = json_of(&out);
    assert_eq!(report["ok"], true);
    assert!(report["certificates"].as_u64().unwrap() > 0);
    assert_eq!(report["proven_final"], report["height"]);

    // A forged certificate is refused and the block named.
    let forged = work.path().join("forged");
    std::fs::create_dir_all(&forged).unwrap();
    std::fs::copy(data.join("bcte.redb"), forged.join("bcte.redb")).unwrap();
    {
        use bcte_store::{Batch, RedbStore, Store, Table};
        let store = RedbStore::open(forged.join("bcte.redb")).unwrap();
        let key = height.to_be_bytes();
        let mut cert = store
            .get(Table::Certificates, &key)
            .unwrap()
            .expect("certificate stored");
        let last = cert.len() - 1;
        cert[last] ^= 1;
        let mut b = Batch::new();
        b.put(Table::Certificates, key.to_vec(), cert);
        store.commit(b).unwrap();
    }
    let out = bcte(&["verify", "--data-dir", forged.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("block {height}")) && err.contains("certificate"),
        "{err}"
    );
}

/// Submits transfers from the dev account as fast as the node admits them until `stop`.
fn load(
    url: String,
    dev_key: PathBuf,
    to: String,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Vec<String>> {
    thread::spawn(move || {
        let mut hashes = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let out = Command::new(BIN)
                .args(["--json", "tx", "transfer", "--node", &url, "--key"])
                .arg(&dev_key)
                .args(["--to", &to, "--amount", "1", "--timeout-s", "5"])
                .output();
            match out {
                Ok(o) if o.status.success() => {
                    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
                    hashes.push(v["hash"].as_str().unwrap().to_string());
                }
                // The node was killed under us, or the nonce raced another submission.
                _ => thread::sleep(Duration::from_millis(20)),
            }
        }
        hashes
    })
}

#[test]
fn a_node_killed_at_twenty_random_moments_under_load_loses_nothing_final() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let (_, bob) = new_account(work.path(), "bob");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next_ms = |lo: u64, hi: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        lo + seed % (hi - lo)
    };
    // Everything seen final before a kill: (height, block hash, state root) and tx receipts.
    let mut blocks: Vec<(u64, String, String)> = Vec::new();
    let mut finals: Vec<(String, u64, String)> = Vec::new();
    for round in 0..20 {
        let node = Node::start(&data);
        for (h, hash, root) in &blocks {
            let b = node.get(&format!("/v1/blocks/{h}"));
            assert_eq!(
                (&b["hash"], &b["state_root"]),
                (&Value::from(hash.as_str()), &Value::from(root.as_str())),
                "round {round}: block {h} changed"
            );
        }
        for (hash, h, status) in &finals {
            let t = node
                .try_get(&format!("/v1/txs/{hash}"))
                .unwrap_or_else(|| panic!("round {round}: final tx {hash} lost"));
            assert_eq!(
                (t["height"].as_u64(), t["status"].as_str()),
                (Some(*h), Some(status.as_str()))
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let loader = load(
            node.url.clone(),
            node.dev_key.clone(),
            bob.clone(),
            stop.clone(),
        );
        thread::sleep(Duration::from_millis(next_ms(300, 1500)));
        // Record what is final now, then kill at once: more may become final in between, which
        // the next round does not rely on.
        let head = node.get("/v1/head");
        let h = head["height"].as_u64().unwrap();
        blocks.push((
            h,
            head["hash"].as_str().unwrap().into(),
            head["state_root"].as_str().unwrap().into(),
        ));
        node.kill9();
        stop.store(true, Ordering::Relaxed);
        for hash in loader.join().unwrap() {
            finals.push((hash, 0, String::new()));
        }
        // Statuses are read back after the restart (they were reported final by the CLI).
        let node = Node::start(&data);
        for f in finals.iter_mut().filter(|f| f.1 == 0) {
            let t = node
                .try_get(&format!("/v1/txs/{}", f.0))
                .unwrap_or_else(|| panic!("round {round}: final tx {} lost", f.0));
            f.1 = t["height"].as_u64().unwrap();
            f.2 = t["status"].as_str().unwrap().to_string();
        }
        node.kill9();
    }
    assert!(
        finals.len() >= 5,
        "the load made too few transactions final ({})",
        finals.len()
    );
    let out = bcte(&["verify", "--data-dir", data.to_str().unwrap()]);
    assert_ok(&out);
}

/// Every file under `dir`, with its bytes.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out
}

fn holds(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn personal_data_is_enrolled_read_by_its_owner_and_shredded_while_the_chain_still_verifies() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let node = Node::start(&data);
    let dev_key = node.dev_key.to_str().unwrap().to_string();
    let (carol_key, carol) = new_account(work.path(), "carol");
    let (eve_key, eve) = new_account(work.path(), "eve");
    let carol_key = carol_key.to_str().unwrap();
    let secret = "Carol Quinlan-Example, 17 Rue des Tilleuls";
    let record = work.path().join("carol.json");
    std::fs::write(
        &record,
        format!(r#"{{"name": "{secret}", "contract": "C-5501"}}"#),
    )
    .unwrap();

    // The registrar stores the record, then enrolls Carol with its commitment.
    let put = json_of(&bcte(&[
        "--json",
        "pii",
        "put",
        "--file",
        record.to_str().unwrap(),
        "--key",
        &dev_key,
        "--node",
        &node.url,
    ]));
    let participant = put["participant"].as_str().unwrap().to_owned();
    let commitment = put["commitment"].as_str().unwrap().to_owned();
    let out = bcte(&[
        "--json",
        "tx",
        "enroll",
        "--key",
        &dev_key,
        "--node",
        &node.url,
        "--participant",
        &participant,
        "--commitment",
        &commitment,
        "--account",
        &carol,
        "--role",
        "consumer",
    ]);
    assert_ok(&out);
    assert_eq!(json_of(&out)["status"], "accepted");
    // Carol reads her record, proven against the chain's commitment; so does the registrar.
    for key in [carol_key, dev_key.as_str()] {
        let got = json_of(&bcte(&[
            "--json",
            "pii",
            "get",
            "--participant",
            &participant,
            "--key",
            key,
            "--node",
            &node.url,
        ]));
        assert_eq!(got["record"]["name"], secret);
        assert_eq!(
            (got["matches"].clone(), got["on_chain"].clone()),
            (json!(true), json!(commitment))
        );
    }
    // Anyone else: refused as if there were nothing; and only the registrar erases.
    let out = bcte(&[
        "pii",
        "get",
        "--participant",
        &participant,
        "--key",
        eve_key.to_str().unwrap(),
        "--node",
        &node.url,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("404"));
    let out = bcte(&[
        "pii",
        "erase",
        "--participant",
        &participant,
        "--key",
        carol_key,
        "--node",
        &node.url,
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"));
    let _ = eve;

    // The record on disk says nothing; the key exists until erased.
    let key_file = data.join("pii-keys").join(format!("{participant}.key"));
    let key = std::fs::read(&key_file).unwrap();
    for (path, bytes) in files_under(&data) {
        assert!(
            !holds(&bytes, secret.as_bytes()),
            "{} holds the plaintext",
            path.display()
        );
    }

    let out = bcte(&[
        "--json",
        "pii",
        "erase",
        "--participant",
        &participant,
        "--key",
        &dev_key,
        "--node",
        &node.url,
    ]);
    assert_ok(&out);
    let out = bcte(&[
        "pii",
        "get",
        "--participant",
        &participant,
        "--key",
        carol_key,
        "--node",
        &node.url,
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("erased"));
    node.kill9();

    // Gone for good: neither the plaintext nor the key anywhere in the data, the keys or the
    // node's log; the access log names who did what, never the record.
    let mut everything = files_under(&data);
    everything.push((
        data.with_extension("log"),
        std::fs::read(data.with_extension("log")).unwrap(),
    ));
    for (path, bytes) in &everything {
        assert!(
            !holds(bytes, secret.as_bytes()),
            "{} holds the plaintext",
            path.display()
        );
        assert!(!holds(bytes, &key), "{} holds the key", path.display());
        assert!(
            !holds(bytes, hex::encode(&key).as_bytes()),
            "{} holds the key",
            path.display()
        );
    }
    let log = std::fs::read_to_string(data.join("pii").join("access.log")).unwrap();
    let actions: Vec<(String, String)> = log
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| {
            (
                v["action"].as_str().unwrap().to_owned(),
                v["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("put", "ok"),
            ("get", "ok"),
            ("get", "ok"),
            ("get", "refused"),
            ("erase", "refused"),
            ("erase", "ok"),
            ("get", "erased"),
        ]
        .map(|(a, o)| (a.to_owned(), o.to_owned()))
    );
    // Every block is still valid: the chain held only the commitment.
    let out = bcte(&["--json", "verify", "--data-dir", data.to_str().unwrap()]);
    assert_ok(&out);
}
