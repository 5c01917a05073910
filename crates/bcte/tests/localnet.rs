//! Real processes on loopback: a 4-validator network written by `bcte localnet init`, each
//! validator its own `bcte node --config` process, under transaction load; one is killed with
//! SIGKILL and restarted; everyone agrees on every block; certificates prove blocks final; and
//! `bcte localnet run` starts and stops a whole network.

use bcte_node::{
    api::{SubmitRequest, SubmitResponse},
    cert, files,
};
use bcte_types::{AccountId, Amount, ChainId, Payload, Tx, TxBody};
use commonware_codec::Encode as _;
use commonware_cryptography::{Signer as _, ed25519::PrivateKey};
use serde_json::Value;
use std::{
    collections::BTreeMap,
    ffi::OsStr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

mod common;

use common::{BIN, assert_ok, bcte, json_of, show_log_if_failing, start_node};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// The faucet key (the network's DSO and registrar: it operates the feeders and reads every
/// account, AC-6.3) of each node's address, so that the tests' reads sign in as it.
static FAUCETS: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());

/// Read tokens by node URL (each node signs its own).
static TOKENS: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

fn faucet_of(url: &str) -> Option<PathBuf> {
    FAUCETS
        .lock()
        .unwrap()
        .iter()
        .find(|(addr, _)| url.contains(addr.as_str()))
        .map(|(_, p)| p.clone())
}

/// A read token of `url`'s network's faucet (`fresh`: a new one).
fn token(url: &str, fresh: bool) -> Option<String> {
    if !fresh && let Some((_, t)) = TOKENS.lock().unwrap().iter().find(|(u, _)| u == url) {
        return Some(t.clone());
    }
    let key = faucet_of(url)?;
    let out = bcte(&["query", "token", "--key", key.to_str()?, "--node", url]);
    let t = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    let mut tokens = TOKENS.lock().unwrap();
    tokens.retain(|(u, _)| u != url);
    tokens.push((url.to_owned(), t.clone()));
    Some(t)
}

fn get(url: &str, path: &str) -> Option<Value> {
    let call = |t: Option<String>| {
        let mut req = agent().get(&format!("{url}{path}"));
        if let Some(t) = t {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        req.call().ok()
    };
    let mut resp = call(token(url, false))?;
    if resp.status() == 401 {
        resp = call(token(url, true))?;
    }
    resp.status()
        .is_success()
        .then(|| resp.body_mut().read_json().unwrap())
}

fn height(url: &str) -> Option<u64> {
    get(url, "/v1/head").and_then(|h| h["height"].as_u64())
}

/// One `bcte node --config` process.
struct NodeProc {
    config: PathBuf,
    url: String,
    child: Option<Child>,
}

impl NodeProc {
    fn new(config: PathBuf, url: String) -> Self {
        Self {
            config,
            url,
            child: None,
        }
    }

    /// The node's log, next to its config (every start appends to it).
    fn log(&self) -> PathBuf {
        self.config.with_extension("log")
    }

    /// Starts the process and waits until it serves its API.
    fn start(&mut self) {
        let (child, _, _) = start_node(
            [OsStr::new("--config"), self.config.as_os_str()],
            &self.log(),
        );
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown code runs.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill9();
        show_log_if_failing(&self.url, &self.log(), 40);
    }
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// A written network: its directory, chain id, faucet key and nodes.
struct Net {
    dir: PathBuf,
    chain_id: ChainId,
    faucet: PrivateKey,
    nodes: Vec<NodeProc>,
}

fn init(dir: &Path, validators: usize, full_nodes: usize) -> Net {
    let out = bcte(&[
        "--json",
        "localnet",
        "init",
        "--validators",
        &validators.to_string(),
        "--full-nodes",
        &full_nodes.to_string(),
        "--dir",
        dir.to_str().unwrap(),
    ]);
    assert_ok(&out);
    let written = json_of(&out);
    let nodes = written["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let role = if i < validators { "validator" } else { "full" };
            assert_eq!(n["role"], role);
            NodeProc::new(
                PathBuf::from(n["config"].as_str().unwrap()),
                n["http"].as_str().unwrap().to_string(),
            )
        })
        .collect::<Vec<_>>();
    assert_eq!(nodes.len(), validators + full_nodes);
    let faucet_key = PathBuf::from(written["faucet_key"].as_str().unwrap());
    for n in written["nodes"].as_array().unwrap() {
        FAUCETS
            .lock()
            .unwrap()
            .push((n["http"].as_str().unwrap().to_string(), faucet_key.clone()));
    }
    Net {
        dir: dir.to_path_buf(),
        chain_id: ChainId::new(written["chain_id"].as_str().unwrap()).unwrap(),
        faucet: files::read_key(Path::new(written["faucet_key"].as_str().unwrap())).unwrap(),
        nodes,
    }
}

/// Sends transfers from the faucet through `url` in rounds of `per_round` consecutive nonces,
/// each round waiting until the previous one is final, until `stop`. Returns the receivers'
/// expected balances.
fn load(
    url: String,
    chain_id: ChainId,
    faucet: PrivateKey,
    per_round: u64,
    stop: Arc<AtomicBool>,
    final_nonce: Arc<AtomicU64>,
) -> BTreeMap<AccountId, u64> {
    let sender = AccountId::from_public_key(&faucet.public_key());
    let receivers: Vec<AccountId> = (0..8)
        .map(|_| AccountId::from_public_key(&files::generate_key().public_key()))
        .collect();
    let mut expected = BTreeMap::new();
    let client = agent();
    let mut nonce = 0;
    while !stop.load(Ordering::SeqCst) {
        for i in 0..per_round {
            let to = receivers[((nonce + i) % 8) as usize];
            let amount = 1 + (nonce + i) % 100;
            let tx = Tx::sign(
                TxBody {
                    chain_id: chain_id.clone(),
                    sender,
                    signer: None,
                    nonce: nonce + i,
                    payload: Payload::Transfer {
                        to,
                        amount: Amount(amount),
                    },
                },
                &faucet,
            );
            let mut resp = client
                .post(&format!("{url}/v1/txs"))
                .send_json(SubmitRequest {
                    tx: hex::encode(tx.encode()),
                })
                .expect("the load's node answers");
            assert!(
                resp.status().is_success(),
                "submit refused: {}",
                resp.body_mut().read_to_string().unwrap_or_default()
            );
            let _: SubmitResponse = resp.body_mut().read_json().unwrap();
            *expected.entry(to).or_default() += amount;
        }
        nonce += per_round;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let account = get(&url, &format!("/v1/accounts/{sender}")).expect("account");
            if account["nonce"].as_u64() == Some(nonce) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a round of load never became final"
            );
            thread::sleep(Duration::from_millis(50));
        }
        final_nonce.store(nonce, Ordering::SeqCst);
    }
    expected
}

/// Saves the newest certificate `url` holds to `cert` (`bcte query cert latest`) and checks it
/// against `genesis` alone (`bcte verify-cert`); returns what `verify-cert --json` printed.
fn prove_latest_final(url: &str, genesis: &Path, cert: &Path) -> Value {
    assert_ok(&bcte(&[
        "--json",
        "query",
        "cert",
        "latest",
        "--node",
        url,
        "--out",
        cert.to_str().unwrap(),
    ]));
    let out = bcte(&[
        "--json",
        "verify-cert",
        "--genesis",
        genesis.to_str().unwrap(),
        cert.to_str().unwrap(),
    ]);
    assert_ok(&out);
    json_of(&out)
}

#[test]
fn four_validator_processes_survive_kill_9_and_agree_on_every_block() {
    let work = tempfile::tempdir().unwrap();
    let mut net = init(&work.path().join("net"), 4, 0);
    for node in &mut net.nodes {
        node.start();
    }
    let urls: Vec<String> = net.nodes.iter().map(|n| n.url.clone()).collect();
    wait_until("every validator finalizes", Duration::from_secs(60), || {
        urls.iter().all(|u| height(u).is_some_and(|h| h >= 2))
    });

    // Load through node 0 while node 3 is killed and restarted.
    let stop = Arc::new(AtomicBool::new(false));
    let final_nonce = Arc::new(AtomicU64::new(0));
    let loader = {
        let (url, chain, faucet) = (urls[0].clone(), net.chain_id.clone(), net.faucet.clone());
        let (stop, final_nonce) = (stop.clone(), final_nonce.clone());
        thread::spawn(move || load(url, chain, faucet, 25, stop, final_nonce))
    };
    wait_until("the load makes progress", Duration::from_secs(60), || {
        final_nonce.load(Ordering::SeqCst) >= 50
    });

    net.nodes[3].kill9();
    let at_kill = height(&urls[0]).unwrap();
    let nonce_at_kill = final_nonce.load(Ordering::SeqCst);
    wait_until(
        "the other three keep finalizing",
        Duration::from_secs(60),
        || {
            urls[..3]
                .iter()
                .all(|u| height(u).is_some_and(|h| h >= at_kill + 5))
                && final_nonce.load(Ordering::SeqCst) > nonce_at_kill
        },
    );

    net.nodes[3].start();
    wait_until(
        "the restarted validator catches up",
        Duration::from_secs(90),
        || {
            let tip = height(&urls[0]).unwrap_or(u64::MAX);
            height(&urls[3]).is_some_and(|h| h + 2 >= tip && h > at_kill + 5)
        },
    );
    let nonce_at_restart = final_nonce.load(Ordering::SeqCst);
    wait_until(
        "the load continues with all four",
        Duration::from_secs(60),
        || final_nonce.load(Ordering::SeqCst) > nonce_at_restart,
    );
    stop.store(true, Ordering::SeqCst);
    let expected = loader.join().expect("the load thread");

    // Everyone agrees on every block, and every transfer reported final is in the state.
    let top = urls.iter().map(|u| height(u).unwrap()).min().unwrap();
    for h in 0..=top {
        let hashes: Vec<Value> = urls
            .iter()
            .map(|u| get(u, &format!("/v1/blocks/{h}")).expect("block")["hash"].clone())
            .collect();
        assert!(
            hashes.iter().all(|x| *x == hashes[0]),
            "validators disagree at height {h}: {hashes:?}"
        );
    }
    for (account, balance) in &expected {
        for u in &urls {
            let a = get(u, &format!("/v1/accounts/{account}")).expect("account");
            assert_eq!(a["balance"].as_u64(), Some(*balance), "{account} at {u}");
        }
    }

    // Every block is proven final, by its own certificate or through a descendant's, from
    // what the restarted validator serves: it caught up by fetching blocks, so some of its
    // blocks may have no certificate of their own. Only the newest few may have no proof yet.
    let genesis = net.dir.join("genesis.json");
    let genesis_file = files::read_genesis(&genesis).unwrap();
    let mut proven_to = 0;
    for h in 1..=top {
        let Some(v) = get(&urls[3], &format!("/v1/certificates/{h}")) else {
            break;
        };
        let hex_of = |x: &Value| hex::decode(x.as_str().unwrap()).unwrap();
        let header = hex_of(&get(&urls[3], &format!("/v1/blocks/{h}")).unwrap()["header"]);
        let descendants: Vec<Vec<u8>> = v["descendants"]
            .as_array()
            .unwrap()
            .iter()
            .map(hex_of)
            .collect();
        let proven = cert::prove_final(
            &genesis_file,
            &header,
            &descendants,
            &hex_of(&v["certificate"]),
            &mut rand::rng(),
        )
        .unwrap_or_else(|e| panic!("block {h} not proven final: {e}"));
        assert_eq!(proven.header.height.get(), h);
        proven_to = h;
    }
    assert!(
        proven_to + 16 >= top,
        "blocks proven final up to {proven_to} of {top}"
    );

    // A certificate saved from the restarted validator proves its block final with only the
    // genesis; the same file with another block's header does not.
    let cert = work.path().join("cert.json");
    let proven = prove_latest_final(&urls[3], &genesis, &cert);
    assert_eq!(proven["ok"], true);
    assert!(proven["signers"].as_u64().unwrap() >= 3);
    let mut file: Value = serde_json::from_str(&std::fs::read_to_string(&cert).unwrap()).unwrap();
    let other = get(&urls[0], "/v1/blocks/1").unwrap();
    file["header"] = other["header"].clone();
    std::fs::write(&cert, file.to_string()).unwrap();
    let out = bcte(&[
        "verify-cert",
        "--genesis",
        genesis.to_str().unwrap(),
        cert.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not proven final"));

    // Stopped, every data directory passes the offline audit.
    for node in &mut net.nodes {
        node.kill9();
    }
    for i in 0..4 {
        let data = net.dir.join(format!("node{i}"));
        let out = bcte(&["--json", "verify", "--data-dir", data.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "node{i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(json_of(&out)["height"].as_u64().unwrap() >= top);
    }
}

#[test]
fn a_full_node_follows_the_chain_serves_it_and_forwards_transactions() {
    let work = tempfile::tempdir().unwrap();
    let mut net = init(&work.path().join("net"), 4, 1);
    for node in &mut net.nodes {
        node.start();
    }
    let urls: Vec<String> = net.nodes.iter().map(|n| n.url.clone()).collect();
    let full = urls[4].clone();
    let full_started = Instant::now();
    wait_until("the full node follows", Duration::from_secs(60), || {
        height(&full).is_some_and(|h| h >= 2)
    });

    // A transfer submitted to the full node reaches the validators and becomes final.
    let receiver = AccountId::from_public_key(&files::generate_key().public_key());
    let faucet = net.dir.join("faucet.key");
    let out = bcte(&[
        "--json",
        "tx",
        "transfer",
        "--node",
        &full,
        "--key",
        faucet.to_str().unwrap(),
        "--to",
        &receiver.to_string(),
        "--amount",
        "42",
    ]);
    assert_ok(&out);
    let height_final = json_of(&out)["height"].as_u64().unwrap();
    wait_until("every node has the block", Duration::from_secs(30), || {
        urls.iter()
            .all(|u| height(u).is_some_and(|h| h >= height_final))
    });
    for u in &urls {
        let a = get(u, &format!("/v1/accounts/{receiver}")).unwrap();
        assert_eq!(a["balance"], 42, "at {u}");
    }
    // It holds the same blocks, with certificates that prove them final.
    for h in 0..=height_final {
        let path = format!("/v1/blocks/{h}");
        assert_eq!(
            get(&full, &path).unwrap()["hash"],
            get(&urls[0], &path).unwrap()["hash"],
            "height {h}"
        );
    }
    let proven = prove_latest_final(
        &full,
        &net.dir.join("genesis.json"),
        &work.path().join("cert.json"),
    );
    assert_eq!(proven["ok"], true);

    // Its connections to the validators stay up: one dial per validator, not a redial every
    // few seconds (validators send votes to every peer; a full node that did not accept them
    // had its connections closed within ~100 ms of each dial, about 20 dials in 10 s).
    thread::sleep(Duration::from_secs(10).saturating_sub(full_started.elapsed()));
    let metrics = agent()
        .get(&format!("{full}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let dials: Vec<u64> = metrics
        .lines()
        .filter(|l| l.starts_with("network_dialer_attempts_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(dials.len(), 4, "one dial counter per validator:\n{metrics}");
    assert!(
        dials.iter().sum::<u64>() <= 8,
        "the full node keeps redialling the validators: {dials:?}"
    );
}

#[test]
fn localnet_run_starts_every_node_and_ctrl_c_stops_them() {
    let work = tempfile::tempdir().unwrap();
    let net = init(&work.path().join("net"), 4, 0);
    let mut run = Command::new(BIN)
        .args(["localnet", "run", "--dir"])
        .arg(&net.dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let urls: Vec<String> = net.nodes.iter().map(|n| n.url.clone()).collect();
    wait_until("the network finalizes", Duration::from_secs(60), || {
        urls.iter().all(|u| height(u).is_some_and(|h| h >= 3))
    });
    // Ctrl-C is SIGINT.
    let status = Command::new("kill")
        .args(["-INT", &run.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "localnet run ignored Ctrl-C");
        thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    let mut out = String::new();
    std::io::Read::read_to_string(&mut run.stdout.take().unwrap(), &mut out).unwrap();
    assert!(out.contains("stopped 4 nodes"), "{out}");
    for u in &urls {
        assert!(height(u).is_none(), "{u} still answers after Ctrl-C");
    }
    for i in 0..4 {
        assert!(net.dir.join(format!("node{i}/node.log")).exists());
    }
}

#[test]
fn inconsistent_configs_are_refused_at_start_up_with_the_reason() {
    let work = tempfile::tempdir().unwrap();
    let net = init(&work.path().join("net"), 4, 0);
    let config = std::fs::read_to_string(&net.nodes[0].config).unwrap();

    // A key that is not in the validator set.
    let stranger = net.dir.join("stranger.key");
    files::write_key(&stranger, &files::generate_key()).unwrap();
    let bad = net.dir.join("bad-key.toml");
    std::fs::write(
        &bad,
        config.replace("key = \"node0/node.key\"", "key = \"stranger.key\""),
    )
    .unwrap();
    let out = bcte(&["node", "--config", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("bad-key.toml") && err.contains("not in the genesis validator set"),
        "{err}"
    );

    // A missing peer: drop node3's [[peers]] entry.
    let cut = config.find("[[peers]]\nname = \"node3\"").unwrap();
    let rest = &config[cut..];
    let end = rest.find("\n\n").map_or(config.len(), |e| cut + e + 2);
    let missing = format!("{}{}", &config[..cut], &config[end..]);
    let bad = net.dir.join("missing-peer.toml");
    std::fs::write(&bad, missing).unwrap();
    let out = bcte(&["node", "--config", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"node3\"") && err.contains("has no address"),
        "{err}"
    );

    // Two peers on one address.
    let node1 = config
        .lines()
        .skip_while(|l| *l != "name = \"node1\"")
        .find_map(|l| l.strip_prefix("address = "))
        .unwrap()
        .to_string();
    let node2 = config
        .lines()
        .skip_while(|l| *l != "name = \"node2\"")
        .find_map(|l| l.strip_prefix("address = "))
        .unwrap()
        .to_string();
    let bad = net.dir.join("dup.toml");
    std::fs::write(&bad, config.replace(&node2, &node1)).unwrap();
    let out = bcte(&["node", "--config", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("share the address"), "{err}");

    // A misspelt field and `localnet init` into an existing network.
    let bad = net.dir.join("typo.toml");
    std::fs::write(&bad, config.replace("p2p =", "p2pp =")).unwrap();
    let out = bcte(&["node", "--config", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("typo.toml") && err.contains("p2pp"), "{err}");
    let out = bcte(&["localnet", "init", "--dir", net.dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a network"));
}

/// Runs `bcte ARGS` against `url` and returns its output.
fn cli_raw(url: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env("BCTE_NODE", url);
    // Reads sign in as the faucet unless the test names another key.
    if let Some(k) = faucet_of(url) {
        cmd.env("BCTE_KEY", k);
    }
    cmd.output().expect("run bcte")
}

/// Runs `bcte --json ARGS` against `url`, asserts success and returns the JSON.
fn cli(url: &str, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = cli_raw(url, &all);
    assert_ok(&out);
    json_of(&out)
}

/// Enrolls `account` as a market participant (prosumer, consumer, aggregator), by the DSO
/// `dso` (the network's registrar).
fn enroll(url: &str, dso: &str, account: &str) {
    let v = cli(
        url,
        &[
            "tx",
            "enroll",
            "--key",
            dso,
            "--account",
            account,
            "--role",
            "prosumer",
            "--role",
            "consumer",
            "--role",
            "aggregator",
        ],
    );
    assert_eq!(v["status"], "accepted", "{v}");
}

/// Starts a written network's every node and waits until all have finalized a block or two;
/// returns their API URLs.
fn start_all(net: &mut Net) -> Vec<String> {
    for node in &mut net.nodes {
        node.start();
    }
    let urls: Vec<String> = net.nodes.iter().map(|n| n.url.clone()).collect();
    wait_until("the network finalizes", Duration::from_secs(60), || {
        urls.iter().all(|u| height(u).is_some_and(|h| h >= 2))
    });
    urls
}

#[test]
fn four_validators_clear_every_interval_alike_and_exactly_as_the_engine() {
    let work = tempfile::tempdir().unwrap();
    let mut net = init(&work.path().join("net"), 4, 0);
    let urls = start_all(&mut net);
    let dso = net.dir.join("faucet.key");
    let dso = dso.to_str().unwrap();
    let example = |name: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/market")
            .join(name)
            .to_str()
            .unwrap()
            .to_owned()
    };

    // 1. A market file through validator 0: the chain's result equals the engine's.
    let v = cli(
        &urls[0],
        &[
            "market",
            "replay",
            &example("feeder-congested.json"),
            "--key",
            dso,
        ],
    );
    assert_eq!(v["matches_local"], true, "{v}");
    let (feeder, k, cleared) = (
        v["feeder"].as_str().unwrap().to_owned(),
        v["interval"].as_u64().unwrap().to_string(),
        v["height"].as_u64().unwrap(),
    );
    wait_until(
        "every validator has the clearing block",
        Duration::from_secs(30),
        || urls.iter().all(|u| height(u).is_some_and(|h| h >= cleared)),
    );
    let results: Vec<Value> = urls
        .iter()
        .map(|u| cli(u, &["market", "result", &k, "--feeder", &feeder]))
        .collect();
    assert!(
        results.windows(2).all(|w| w[0] == w[1]),
        "every validator the same result"
    );
    // Every site's result is proven by another validator than the one that took the bids.
    for site in results[0]["sites"].as_object().unwrap().keys() {
        let p = cli(
            &urls[3],
            &["market", "result", &k, "--feeder", &feeder, "--site", site],
        );
        assert_eq!(p["verified"], true);
    }

    // 2. A feeder of our own: modes, priorities, an aggregator's batch, replace and withdraw,
    // each transaction through another validator.
    let feeder_file = work.path().join("mg.json");
    std::fs::write(
        &feeder_file,
        serde_json::json!({
            "id": "mg",
            "config": {"interval_ms": 2000, "gate_lead_ms": 1000, "import_price": 80.0,
                       "export_price": 20.0, "import_limit_kw": 100.0,
                       "export_limit_kw": 100.0, "alert_import_limit_kw": 30.0},
            "nodes": [{"id": "r"}, {"id": "c", "parent": "r"}]
        })
        .to_string(),
    )
    .unwrap();
    let v = cli(
        &urls[1],
        &[
            "tx",
            "feeder",
            "register",
            "--key",
            dso,
            "--file",
            feeder_file.to_str().unwrap(),
        ],
    );
    assert_eq!(v["status"], "accepted");
    let key = |name: &str| {
        let file = work.path().join(format!("{name}.key"));
        let v = cli(&urls[0], &["keys", "new", "--out", file.to_str().unwrap()]);
        let account = v["account"].as_str().unwrap().to_owned();
        enroll(&urls[0], dso, &account);
        (file.to_str().unwrap().to_owned(), account)
    };
    let (house_key, house) = key("house");
    let (clinic_key, clinic) = key("clinic");
    let (agg_key, agg) = key("aggregator");
    let sites_file = work.path().join("sites.json");
    std::fs::write(
        &sites_file,
        serde_json::json!([
            {"site": "house", "node": "c", "owner": house},
            {"site": "clinic", "node": "c", "owner": clinic, "priority": 7}
        ])
        .to_string(),
    )
    .unwrap();
    cli(
        &urls[2],
        &[
            "tx",
            "site",
            "register",
            "--key",
            dso,
            "--feeder",
            "mg",
            "--file",
            sites_file.to_str().unwrap(),
        ],
    );
    cli(
        &urls[3],
        &[
            "tx",
            "site",
            "delegate",
            "--key",
            &house_key,
            "--feeder",
            "mg",
            "--site",
            "house",
            "--aggregator",
            &agg,
        ],
    );
    let status = cli(&urls[0], &["market", "status", "--feeder", "mg"]);
    let k0 = status["next_interval"].as_u64().unwrap() + 3;
    for (offset, mode) in [(1, "alert"), (2, "islanded"), (3, "normal")] {
        let from = (k0 + offset).to_string();
        let v = cli(
            &urls[offset as usize % 4],
            &[
                "tx",
                "grid-mode",
                mode,
                "--key",
                dso,
                "--feeder",
                "mg",
                "--from-interval",
                &from,
            ],
        );
        assert_eq!(v["status"], "accepted", "{mode}");
    }
    // The aggregator bids for the house, the clinic for itself; the house first bids too much
    // and the aggregator replaces it; a bid for k0 + 4 is withdrawn again.
    let batch = |kw: f64| {
        let bids: Vec<Value> = (k0..k0 + 5)
            .map(|i| serde_json::json!({"site": "house", "interval": i, "curve": [[0.0, kw]]}))
            .collect();
        let file = work.path().join(format!("agg-{kw}.json"));
        std::fs::write(
            &file,
            serde_json::json!({"feeder": "mg", "bids": bids}).to_string(),
        )
        .unwrap();
        file.to_str().unwrap().to_owned()
    };
    assert_eq!(
        cli(
            &urls[1],
            &["tx", "bid", "--key", &agg_key, "--file", &batch(90.0)]
        )["status"],
        "accepted"
    );
    assert_eq!(
        cli(
            &urls[2],
            &["tx", "bid", "--key", &agg_key, "--file", &batch(40.0)]
        )["status"],
        "accepted"
    );
    let last = (k0 + 4).to_string();
    cli(
        &urls[3],
        &[
            "tx",
            "bid",
            "--key",
            &agg_key,
            "--feeder",
            "mg",
            "--site",
            "house",
            "--interval",
            &last,
            "--withdraw",
        ],
    );
    let clinic_bids: Vec<Value> = (k0..k0 + 5)
        .map(|i| serde_json::json!({"site": "clinic", "interval": i, "curve": [[0.0, 40.0]]}))
        .collect();
    let clinic_file = work.path().join("clinic.json");
    std::fs::write(
        &clinic_file,
        serde_json::json!({"feeder": "mg", "bids": clinic_bids}).to_string(),
    )
    .unwrap();
    cli(
        &urls[0],
        &[
            "tx",
            "bid",
            "--key",
            &clinic_key,
            "--file",
            clinic_file.to_str().unwrap(),
        ],
    );
    let result = |i: u64, u: &str| {
        cli(
            u,
            &[
                "market",
                "result",
                &i.to_string(),
                "--feeder",
                "mg",
                "--wait",
                "60",
            ],
        )
    };
    let normal = result(k0, &urls[1]);
    assert_eq!(normal["allocations"]["upstream"], -80.0);
    let alert = result(k0 + 1, &urls[2]);
    assert_eq!(alert["allocations"]["upstream"], -30.0);
    assert_eq!(
        alert["bid_shed_kw"],
        serde_json::json!({"house": 40.0, "clinic": 10.0})
    );
    let islanded = result(k0 + 2, &urls[3]);
    assert!(islanded["allocations"].get("upstream").is_none());
    let again = result(k0 + 3, &urls[0]);
    assert_eq!(again["allocations"]["upstream"], -80.0);
    let withdrawn = result(k0 + 4, &urls[1]);
    assert!(withdrawn["sites"].get("house").is_none());
    for i in k0..k0 + 5 {
        let all: Vec<Value> = urls.iter().map(|u| result(i, u)).collect();
        assert!(
            all.windows(2).all(|w| w[0] == w[1]),
            "interval {i}: every validator alike"
        );
    }
    // The house revokes its aggregator, which is then refused.
    cli(
        &urls[2],
        &[
            "tx", "site", "revoke", "--key", &house_key, "--feeder", "mg", "--site", "house",
        ],
    );
    let out = Command::new(BIN)
        .args([
            "--json",
            "tx",
            "bid",
            "--key",
            &agg_key,
            "--feeder",
            "mg",
            "--site",
            "house",
            "--interval",
            &(k0 + 40).to_string(),
            "--curve",
            "[[0, 1]]",
        ])
        .env("BCTE_NODE", &urls[3])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        json_of(&out)["reason"]
            .as_str()
            .unwrap()
            .contains("delegated aggregator")
    );
}

#[test]
fn four_validators_meter_settle_contracts_flexibility_and_ev_charging_and_bill_alike_by_the_rules()
{
    let work = tempfile::tempdir().unwrap();
    let mut net = init(&work.path().join("net"), 4, 0);
    let urls = start_all(&mut net);
    let dso = net.dir.join("faucet.key");
    let dso = dso.to_str().unwrap();
    let path = |name: &str| work.path().join(name).to_str().unwrap().to_owned();
    let key = |name: &str| {
        let file = path(&format!("{name}.key"));
        let v = cli(&urls[0], &["keys", "new", "--out", &file]);
        let account = v["account"].as_str().unwrap().to_owned();
        enroll(&urls[0], dso, &account);
        (file, account)
    };
    // 6-second intervals whose gate closes 3 seconds before; one street `c` without limits.
    std::fs::write(
        path("life.json"),
        serde_json::json!({
            "id": "life",
            "config": {"interval_ms": 6000, "gate_lead_ms": 3000, "import_price": 80.0,
                       "export_price": 20.0, "import_limit_kw": 100.0,
                       "export_limit_kw": 100.0, "alert_import_limit_kw": 30.0,
                       "baseline_days": 1, "baseline_day_intervals": 1},
            "nodes": [{"id": "r"}, {"id": "c", "parent": "r"}]
        })
        .to_string(),
    )
    .unwrap();
    let ok = |url: &str, args: &[&str]| {
        let v = cli(url, args);
        assert_eq!(v["status"], "accepted", "{args:?}: {v}");
    };
    ok(
        &urls[1],
        &[
            "tx",
            "feeder",
            "register",
            "--key",
            dso,
            "--file",
            &path("life.json"),
        ],
    );
    let (house_key, house) = key("house");
    let (pv_key, pv) = key("pv");
    let (house_meter_key, house_meter) = key("house-meter");
    let (pv_meter_key, pv_meter) = key("pv-meter");
    let (head_end_key, head_end) = key("head-end");
    let (ev_meter_key, ev_meter) = key("ev-meter");
    let (provider_key, provider) = key("provider");
    for (i, args) in [
        vec![
            "tx", "site", "register", "--key", dso, "--site", "house", "--node", "c", "--owner",
            &house,
        ],
        vec![
            "tx", "site", "register", "--key", dso, "--site", "pv", "--node", "c", "--owner", &pv,
        ],
        vec![
            "tx",
            "meter",
            "register",
            "--key",
            dso,
            "--site",
            "house",
            "--meter",
            &house_meter,
        ],
        vec![
            "tx", "meter", "register", "--key", dso, "--site", "pv", "--meter", &pv_meter,
        ],
        vec![
            "tx",
            "meter",
            "head-end",
            "--key",
            dso,
            "--account",
            &head_end,
        ],
        vec![
            "tx", "mint", "--key", dso, "--to", &house, "--amount", "1000000",
        ],
        // house's charger, a sub-metered site of its own.
        vec![
            "tx", "site", "register", "--key", dso, "--site", "ev", "--node", "c", "--owner",
            &house,
        ],
        vec![
            "tx", "meter", "register", "--key", dso, "--site", "ev", "--meter", &ev_meter,
        ],
    ]
    .iter()
    .enumerate()
    {
        ok(&urls[i % 4], args);
    }
    let status = cli(&urls[0], &["market", "status"]);
    let k = status["next_interval"].as_u64().unwrap() + 4;
    let ks = k.to_string();
    let (k1, k2) = ((k + 1).to_string(), (k + 2).to_string());
    // pv sells house 1 kW at 60/MWh for intervals K to K+3: pv consents through validator 2,
    // house submits through validator 3.
    let to = (k + 3).to_string();
    let terms = [
        "--seller-site",
        "pv",
        "--buyer-site",
        "house",
        "--kw",
        "1",
        "--from-interval",
        &ks,
        "--to-interval",
        &to,
        "--price",
        "60",
    ];
    let mut consent = vec!["contract", "consent", "p2p", "--key", &pv_key];
    consent.extend_from_slice(&terms);
    let c = cli(&urls[2], &consent);
    let sig = c["consent"].as_str().unwrap().to_owned();
    let mut enter = vec![
        "tx",
        "contract",
        "p2p",
        "--key",
        &house_key,
        "--consent",
        &sig,
    ];
    enter.extend_from_slice(&terms);
    ok(&urls[3], &enter);
    // The DSO asks for 3 kW less at c in K + 1; house offers 2 kW, pv 1 kW, both accepted
    // (each through another validator). The baseline of K + 1 is the reading of K.
    ok(
        &urls[0],
        &[
            "tx",
            "contract",
            "flex",
            "request",
            "--key",
            dso,
            "--direction",
            "reduce",
            "--at-node",
            "c",
            "--kw",
            "3",
            "--from-interval",
            &k1,
            "--to-interval",
            &k1,
            "--price",
            "200",
            "--gate-interval",
            &k1,
        ],
    );
    let flex = cli(&urls[1], &["market", "flex", "--feeder", "life"]);
    let request = flex["requests"][0]["id"].as_str().unwrap().to_owned();
    for (i, (owner_key, site, kw)) in [(&house_key, "house", "2"), (&pv_key, "pv", "1")]
        .into_iter()
        .enumerate()
    {
        ok(
            &urls[1 + i],
            &[
                "tx",
                "contract",
                "flex",
                "offer",
                "--key",
                owner_key,
                "--request",
                &request,
                "--sites",
                site,
                "--kw",
                kw,
            ],
        );
    }
    ok(
        &urls[3],
        &[
            "tx",
            "contract",
            "flex",
            "accept",
            "--key",
            dso,
            "--request",
            &request,
            "--offers",
            "0,1",
        ],
    );
    // house's charger needs 10 Wh by K + 2, slow (3.7 kW at 250/MWh) chosen over fast
    // (11 kW at 400/MWh): house consents through validator 1, the provider submits through 2.
    let ev_terms = [
        "--site",
        "ev",
        "--provider",
        &provider,
        "--kwh",
        "0.01",
        "--from-interval",
        &k1,
        "--deadline-interval",
        &k2,
        "--slow-kw",
        "3.7",
        "--slow-price",
        "250",
        "--fast-kw",
        "11",
        "--fast-price",
        "400",
        "--choice",
        "slow",
    ];
    let mut consent = vec!["contract", "consent", "ev", "--key", &house_key];
    consent.extend_from_slice(&ev_terms);
    let c = cli(&urls[1], &consent);
    let ev_sig = c["consent"].as_str().unwrap().to_owned();
    let mut enter = vec![
        "tx",
        "contract",
        "ev",
        "--key",
        &provider_key,
        "--consent",
        &ev_sig,
    ];
    enter.extend_from_slice(&ev_terms);
    ok(&urls[2], &enter);
    // House takes 3 kW whatever the price, pv generates 2 kW.
    ok(
        &urls[0],
        &[
            "tx",
            "bid",
            "--key",
            &house_key,
            "--site",
            "house",
            "--interval",
            &ks,
            "--curve",
            "[[0, 3], [200, 3]]",
        ],
    );
    ok(
        &urls[1],
        &[
            "tx",
            "bid",
            "--key",
            &pv_key,
            "--site",
            "pv",
            "--interval",
            &ks,
            "--curve",
            "[[0, -2], [200, -2]]",
        ],
    );
    // Once K has cleared, its settlement view says when it ends (readings open).
    cli(&urls[2], &["market", "result", &ks, "--wait", "60"]);
    let open = cli(&urls[2], &["market", "settlement", &ks]);
    let end_ms = open["end_ms"].as_u64().unwrap();
    wait_until("the interval ends", Duration::from_secs(60), || {
        cli(&urls[0], &["market", "status"])["market_time_ms"]
            .as_u64()
            .unwrap()
            >= end_ms
    });
    // house's meter reads 6 Wh as a transaction; pv's -3 Wh comes from the head-end in bulk.
    ok(
        &urls[3],
        &[
            "tx",
            "reading",
            "--key",
            &house_meter_key,
            "--site",
            "house",
            "--interval",
            &ks,
            "--wh",
            "6",
        ],
    );
    std::fs::write(
        path("meters.csv"),
        format!("site,key_file\npv,{pv_meter_key}\n"),
    )
    .unwrap();
    std::fs::write(
        path("readings.csv"),
        format!("site,interval,wh\npv,{k},-3\n"),
    )
    .unwrap();
    cli(
        &urls[0],
        &[
            "meter",
            "sign",
            "--in",
            &path("readings.csv"),
            "--meters",
            &path("meters.csv"),
            "--out",
            &path("signed.csv"),
        ],
    );
    let v = cli(
        &urls[0],
        &[
            "meter",
            "submit",
            &path("signed.csv"),
            "--key",
            &head_end_key,
        ],
    );
    assert_eq!(v["rejected"], 0, "{v}");

    // By hand (Δ = 6 s, c uncongested at the root's 80/MWh, π = 20/MWh):
    // house: 3 kW → 5 Wh, 3,000 × 6,000 × 80·10⁶ / 3.6·10¹² = 400; read 6: +1 Wh at 100 = 100.
    // pv: −2 kW → −3.33, −3 Wh; −266.7, −267; read −3: no deviation.
    // contract: 1 kW × 6 s × (60 − 80) = −33.3, −33: pv pays house 33.
    let views: Vec<Value> = urls
        .iter()
        .map(|u| cli(u, &["market", "settlement", &ks, "--wait", "60"]))
        .collect();
    assert!(
        views.windows(2).all(|w| w[0] == w[1]),
        "every validator the same settlement"
    );
    let s = &views[0];
    assert_eq!(s["status"], "settled", "{s}");
    let site = |name: &str, field: &str| s["sites"][name][field].as_i64().unwrap();
    assert_eq!(
        (
            site("house", "scheduled_wh"),
            site("house", "energy_charge"),
            site("house", "imbalance_charge")
        ),
        (5, 400, 100)
    );
    assert_eq!(
        (
            site("pv", "scheduled_wh"),
            site("pv", "energy_charge"),
            site("pv", "imbalance_charge")
        ),
        (-3, -267, 0)
    );
    assert_eq!(s["readings"]["pv"]["source"], "batch");
    assert_eq!(s["totals"]["contracts"][0]["amount"], -33);
    let balance = |who: &str| {
        cli(&urls[3], &["query", "account", who])["balance"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(balance(&house), 1_000_000 - 400 - 100 + 33);
    assert_eq!(balance(&pv), 267 - 33);

    // The raw batch is on the validator it was uploaded to; its proof checks there.
    let p = cli(
        &urls[0],
        &["meter", "proof", "--site", "pv", "--interval", &ks],
    );
    assert_eq!(p["verified"], true, "{p}");
    // Billing: the same statements from every validator, the CSV lines by the figures above.
    let bills: Vec<Value> = urls
        .iter()
        .map(|u| {
            cli(
                u,
                &[
                    "export",
                    "billing",
                    "--from-interval",
                    &ks,
                    "--to-interval",
                    &ks,
                    "--format",
                    "json",
                ],
            )
        })
        .collect();
    assert!(bills.windows(2).all(|w| w[0] == w[1]));
    let out = cli_raw(
        &urls[2],
        &[
            "export",
            "billing",
            "--from-interval",
            &ks,
            "--to-interval",
            &ks,
        ],
    );
    assert_ok(&out);
    let csv = String::from_utf8_lossy(&out.stdout).into_owned();
    let period = format!("{k}-{k}");
    assert!(
        csv.contains(&format!("{house},owner,house,{period},1,0,0.006,0.000,0.000400,0.000100,0.000000,-0.000033,0.000000,0.000467,467,,")),
        "{csv}"
    );
    assert!(
        csv.contains(&format!("{pv},owner,pv,{period},1,0,0.000,0.003,-0.000267,0.000000,0.000000,0.000033,0.000000,-0.000234,-234,,")),
        "{csv}"
    );

    // K + 1 and K + 2: the readings once each ends. house reads 2 Wh and pv −3 (their
    // flexibility offers make both waited for, FX-3.2), the charger its schedule.
    let read = |url: &str, meter_key: &str, site: &str, k: &str, wh: &str| {
        ok(
            url,
            &[
                "tx",
                "reading",
                "--key",
                meter_key,
                "--site",
                site,
                "--interval",
                k,
                "--wh",
                wh,
            ],
        );
    };
    for (kx, readings) in [
        (
            &k1,
            vec![
                (&house_meter_key, "house", "2"),
                (&pv_meter_key, "pv", "-3"),
                (&ev_meter_key, "ev", "6"),
            ],
        ),
        (&k2, vec![(&ev_meter_key, "ev", "4")]),
    ] {
        cli(&urls[0], &["market", "result", kx, "--wait", "60"]);
        let open = cli(&urls[0], &["market", "settlement", kx]);
        let end_ms = open["end_ms"].as_u64().unwrap_or_else(|| panic!("{open}"));
        wait_until("the interval ends", Duration::from_secs(60), || {
            cli(&urls[0], &["market", "status"])["market_time_ms"]
                .as_u64()
                .unwrap()
                >= end_ms
        });
        for (i, (meter_key, site, wh)) in readings.into_iter().enumerate() {
            read(&urls[i % 4], meter_key, site, kx, wh);
        }
    }
    let settled = |kx: &str| {
        let views: Vec<Value> = urls
            .iter()
            .map(|u| cli(u, &["market", "settlement", kx, "--wait", "60"]))
            .collect();
        assert!(
            views.windows(2).all(|w| w[0] == w[1]),
            "every validator the same settlement of {kx}"
        );
        assert_eq!(views[0]["status"], "settled", "{}", views[0]);
        views.into_iter().next().unwrap()
    };
    // By hand, K + 1: 3.7 kW for 6 s is 6.2 → 6 Wh, so K + 2 can deliver 6 of the 10: the
    // contract bids the 4 Wh that cannot wait, 2.4 kW, at 250/MWh and the other 1.3 kW at
    // 250 × 36·10⁶ / (2 × 3,700 × 6,000) = 202.70: served 3.7 kW at 80/MWh, 6 Wh,
    // 3,700 × 6,000 × 80·10⁶ / 3.6·10¹² = 493.3, 493. FX-3: house delivered 6 − 2 = 4 Wh,
    // capped at 2 kW × 6 s = 3.3, 3 Wh: 3 Wh × 200/MWh = 600; pv fed in its baseline's 3 Wh
    // again: delivered nothing, paid nothing.
    let s1 = settled(&k1);
    assert_eq!(
        (
            s1["sites"]["ev"]["scheduled_wh"].as_i64(),
            s1["sites"]["ev"]["energy_charge"].as_i64()
        ),
        (Some(6), Some(493)),
        "{s1}"
    );
    let flows = &s1["totals"]["flexibility"];
    assert_eq!(
        (
            flows[0]["delivered_wh"].as_i64(),
            flows[0]["amount"].as_i64(),
            flows[1]["delivered_wh"].as_i64(),
            flows[1]["amount"].as_i64()
        ),
        (Some(3), Some(600), Some(0), Some(0)),
        "{s1}"
    );
    // K + 2: the last 4 Wh must come: 2.4 kW at 250, served, 320. CT-4.2: 10 Wh × 250/MWh
    // = 2,500 against the market's 813: house pays the provider 1,687.
    let s2 = settled(&k2);
    let ev = &s2["totals"]["ev"][0];
    assert_eq!(
        (
            ev["delivered_wh"].as_i64(),
            ev["shortfall_wh"].as_i64(),
            ev["charge"].as_i64(),
            ev["market_charges"].as_i64(),
            ev["difference"].as_i64()
        ),
        (Some(10), Some(0), Some(2_500), Some(813), Some(1_687)),
        "{s2}"
    );
    assert_eq!(balance(&provider), 1_687);
    let bill = cli(
        &urls[1],
        &[
            "export",
            "billing",
            "--from-interval",
            &ks,
            "--to-interval",
            &k2,
            "--format",
            "json",
        ],
    );
    assert_eq!(
        bill["providers"][0]["provider"],
        provider.as_str(),
        "{bill}"
    );
    assert_eq!(bill["providers"][0]["total"]["total"], -1_687, "{bill}");
    for node in &mut net.nodes {
        node.kill9();
    }
    for (i, node) in net.nodes.iter().enumerate() {
        show_log_if_failing(&format!("validator {i}"), &node.log(), 30);
    }
}
