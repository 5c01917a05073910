//! The chain commands: `node`, `keys`, `tx`, `query` and `verify`.

use crate::client::Client;
use anyhow::{Context as _, bail};
use bcte_ledger::{
    StateKey, StateProof,
    state::{AccountState, ChainConfig, Head},
};
use bcte_node::{
    api::{AccountView, BlockView, HeadView, ProofView, SubmitRequest, SubmitResponse, TxStatus},
    audit, files,
};
use bcte_types::{AccountId, Amount, ChainId, Header, Payload, Tx, TxBody, ids::parse_hash};
use clap::{Args, Subcommand};
use commonware_codec::{Copying, DecodeExt, Encode};
use commonware_cryptography::Signer as _;
use serde_json::{Value, json};
use std::{
    net::SocketAddr,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

/// The default address of a node's HTTP API.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:8645";

/// Arguments of `bcte node`.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// Run a single-validator development chain (creating it in --data-dir on first use).
    #[arg(long)]
    dev: bool,
    /// The node's data directory.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// Where to serve the HTTP API (port 0 picks a free port; the node prints the address).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8645")]
    http: SocketAddr,
}

/// `bcte keys` subcommands.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Make a new key and write it to a key file (never overwrites).
    New {
        /// The key file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Show a key file's account and public key.
    Show {
        /// The key file.
        file: PathBuf,
    },
}

/// Where to send a transaction and with which key.
#[derive(Args, Debug)]
pub struct TxCommon {
    /// The node's API URL.
    #[arg(long, value_name = "URL", default_value = DEFAULT_NODE)]
    node: String,
    /// The sender's key file.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// How long to wait for finality, in seconds.
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
}

/// `bcte tx` subcommands.
#[derive(Subcommand, Debug)]
pub enum TxCommand {
    /// Transfer settlement tokens to an account.
    Transfer {
        #[command(flatten)]
        common: TxCommon,
        /// The receiving ACCOUNT (hex of its 32-byte public key).
        #[arg(long, value_name = "ACCOUNT")]
        to: AccountId,
        /// The amount, in token base units (integer; 1 token = 1000000 base units).
        #[arg(long)]
        amount: u64,
    },
    /// Create tokens in an account (only the chain's token authority may).
    Mint {
        #[command(flatten)]
        common: TxCommon,
        /// The receiving ACCOUNT.
        #[arg(long, value_name = "ACCOUNT")]
        to: AccountId,
        /// The amount, in token base units.
        #[arg(long)]
        amount: u64,
    },
    /// Destroy tokens from the sender's balance (only the token authority may).
    Burn {
        #[command(flatten)]
        common: TxCommon,
        /// The amount, in token base units.
        #[arg(long)]
        amount: u64,
    },
}

/// `bcte query` subcommands.
#[derive(Subcommand, Debug)]
pub enum QueryCommand {
    /// An account's balance and nonce.
    Account {
        /// The ACCOUNT.
        account: AccountId,
        /// The node's API URL.
        #[arg(long, value_name = "URL", default_value = DEFAULT_NODE)]
        node: String,
    },
    /// A block by height, or `latest`.
    Block {
        /// A height, a block hash or `latest`.
        id: String,
        /// The node's API URL.
        #[arg(long, value_name = "URL", default_value = DEFAULT_NODE)]
        node: String,
    },
    /// A transaction's status and receipt.
    Tx {
        /// The transaction hash.
        hash: String,
        /// The node's API URL.
        #[arg(long, value_name = "URL", default_value = DEFAULT_NODE)]
        node: String,
    },
    /// A state value with its proof, checked locally against the block's state root.
    Proof {
        /// The key: account/<ACCOUNT>, supply, head or config.
        key: StateKey,
        /// The node's API URL.
        #[arg(long, value_name = "URL", default_value = DEFAULT_NODE)]
        node: String,
        /// The height to prove at (default: the latest).
        #[arg(long)]
        height: Option<u64>,
    },
}

/// Arguments of `bcte verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The node's data directory.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
}

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::from(1)
}

fn emit(json: bool, value: &Value, text: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        println!("{}", text());
    }
}

/// Runs `bcte node`.
pub fn run_node(args: NodeArgs) -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,commonware=warn".into()),
        )
        .init();
    if !args.dev {
        eprintln!("error: only --dev is available: bcte node --dev --data-dir DIR");
        return ExitCode::from(2);
    }
    match bcte_node::run::run_dev(args.data_dir, args.http) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Runs a `bcte keys` subcommand.
pub fn run_keys(cmd: KeysCommand, json: bool) -> ExitCode {
    let result = (|| -> anyhow::Result<()> {
        let (key, file) = match cmd {
            KeysCommand::New { out } => {
                let key = files::generate_key();
                files::write_key(&out, &key)?;
                (key, out)
            }
            KeysCommand::Show { file } => (files::read_key(&file)?, file),
        };
        let k = files::key_file(&key);
        let value = json!({ "account": k.account, "public_key": k.public_key, "file": file });
        emit(json, &value, || {
            format!("account:    {}\npublic key: {}", k.account, k.public_key)
        });
        Ok(())
    })();
    result.map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS)
}

/// Signs `payload` with the key in `common`, submits it, waits for finality and prints the result.
fn submit(common: &TxCommon, payload: Payload, json: bool) -> anyhow::Result<ExitCode> {
    let key = files::read_key(&common.key)?;
    let sender = AccountId::from_public_key(&key.public_key());
    let client = Client::new(&common.node);
    let head: HeadView = client.get("/v1/head")?;
    let chain_id =
        ChainId::new(head.chain_id.clone()).context("the node reports an invalid chain id")?;
    let account: AccountView = client.get(&format!("/v1/accounts/{sender}"))?;
    let tx = Tx::sign(
        TxBody {
            chain_id,
            sender,
            nonce: account.nonce,
            payload,
        },
        &key,
    );
    let submitted: SubmitResponse = client.post(
        "/v1/txs",
        &SubmitRequest {
            tx: hex::encode(tx.encode()),
        },
    )?;
    let deadline = Instant::now() + Duration::from_secs(common.timeout_s);
    let status = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = left.as_millis().min(10_000) as u64;
        let status: TxStatus = client.get(&format!("/v1/txs/{}?wait_ms={wait}", submitted.hash))?;
        if status.status != "pending" {
            break status;
        }
        if Instant::now() >= deadline {
            bail!(
                "transaction {} is still pending after {} s",
                submitted.hash,
                common.timeout_s
            );
        }
    };
    let value = json!({
        "hash": status.hash,
        "height": status.height,
        "status": status.status,
        "reason": status.reason,
    });
    emit(json, &value, || {
        let mut s = format!(
            "transaction {}\nheight:      {}\nstatus:      {}",
            status.hash,
            status.height.unwrap_or_default(),
            status.status
        );
        if let Some(r) = &status.reason {
            s.push_str(&format!("\nreason:      {r}"));
        }
        s
    });
    if status.status == "rejected" {
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs a `bcte tx` subcommand.
pub fn run_tx(cmd: TxCommand, json: bool) -> ExitCode {
    let (common, payload) = match cmd {
        TxCommand::Transfer { common, to, amount } => (
            common,
            Payload::Transfer {
                to,
                amount: Amount(amount),
            },
        ),
        TxCommand::Mint { common, to, amount } => (
            common,
            Payload::Mint {
                to,
                amount: Amount(amount),
            },
        ),
        TxCommand::Burn { common, amount } => (
            common,
            Payload::Burn {
                amount: Amount(amount),
            },
        ),
    };
    submit(&common, payload, json).unwrap_or_else(|e| fail(&e))
}

/// A state value as JSON, decoded by the kind of its key.
fn describe(key: &StateKey, bytes: &[u8]) -> Value {
    let raw = || json!({ "hex": hex::encode(bytes) });
    match key {
        StateKey::Account(_) => AccountState::decode(Copying(bytes))
            .map_or_else(|_| raw(), |a| json!({ "balance": a.balance, "nonce": a.nonce })),
        StateKey::Supply => Amount::decode(Copying(bytes)).map_or_else(|_| raw(), |a| json!(a)),
        StateKey::Head => Head::decode(Copying(bytes)).map_or_else(
            |_| raw(),
            |h| json!({ "height": h.height, "timestamp": h.timestamp_ms, "parent": hex::encode(h.parent) }),
        ),
        StateKey::Config => {
            use commonware_codec::Decode;
            ChainConfig::decode_cfg(Copying(bytes), &()).map_or_else(
                |_| raw(),
                |c| json!({ "chain_id": c.chain_id, "authority": c.authority, "validators": c.validators }),
            )
        }
    }
}

fn query(cmd: QueryCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        QueryCommand::Account { account, node } => {
            let a: AccountView = Client::new(&node).get(&format!("/v1/accounts/{account}"))?;
            let value = json!({ "account": a.account, "balance": a.balance, "nonce": a.nonce });
            emit(json, &value, || {
                format!(
                    "account: {}\nbalance: {} base units\nnonce:   {}",
                    a.account, a.balance, a.nonce
                )
            });
        }
        QueryCommand::Block { id, node } => {
            let b: BlockView = Client::new(&node).get(&format!("/v1/blocks/{}", id.trim()))?;
            let value = serde_json::to_value(&b)?;
            emit(json, &value, || {
                let mut s = format!(
                    "block {}\nhash:       {}\nparent:     {}\ntimestamp:  {}\nstate root: {}\ntxs:        {}",
                    b.height,
                    b.hash,
                    b.parent,
                    b.timestamp,
                    b.state_root,
                    b.txs.len()
                );
                for t in &b.txs {
                    s.push_str(&format!(
                        "\n  {} {} nonce {} {}",
                        t.hash, t.sender, t.nonce, t.status
                    ));
                }
                s
            });
        }
        QueryCommand::Tx { hash, node } => {
            let hash = parse_hash(&hash).context("bad transaction hash")?;
            let t: TxStatus = Client::new(&node).get(&format!("/v1/txs/{}", hex::encode(hash)))?;
            let value = json!({ "hash": t.hash, "height": t.height, "status": t.status, "reason": t.reason });
            emit(json, &value, || {
                let mut s = format!("transaction {}\nstatus: {}", t.hash, t.status);
                if let Some(h) = t.height {
                    s.push_str(&format!("\nheight: {h}"));
                }
                if let Some(r) = &t.reason {
                    s.push_str(&format!("\nreason: {r}"));
                }
                s
            });
        }
        QueryCommand::Proof { key, node, height } => {
            let client = Client::new(&node);
            let path = match height {
                Some(h) => format!("/v1/proofs/{key}?height={h}"),
                None => format!("/v1/proofs/{key}"),
            };
            let view: ProofView = client.get(&path)?;
            let bytes =
                hex::decode(&view.proof).context("the node sent a proof that is not hex")?;
            let proof =
                StateProof::from_bytes(&bytes).context("the node sent a malformed proof")?;
            if proof.key != key || height.is_some_and(|h| proof.height.get() != h) {
                bail!("the node sent a proof for another key or height");
            }
            // The root comes from the header, whose hash we recompute: the proof is checked
            // against the block the node names, not against a root it merely asserts.
            let block: BlockView = client.get(&format!("/v1/blocks/{}", proof.height))?;
            let header_bytes =
                hex::decode(&block.header).context("the node sent a header that is not hex")?;
            let header = Header::decode(Copying(&header_bytes))
                .context("the node sent a malformed header")?;
            if hex::encode(header.hash()) != block.hash {
                bail!("the node's header does not hash to the block hash it reports");
            }
            proof
                .verify(&header.state_root)
                .context("the proof does not check against the block's state root")?;
            let value = proof.value.as_deref().map(|v| describe(&key, v));
            let out = json!({
                "height": proof.height,
                "key": key.to_string(),
                "value": value,
                "verified": true,
                "state_root": hex::encode(header.state_root),
                "block_hash": block.hash,
            });
            emit(json, &out, || {
                format!(
                    "{key} at height {}: {}\nproof checked against state root {} of block {}",
                    proof.height,
                    value
                        .as_ref()
                        .map_or("absent".to_string(), Value::to_string),
                    hex::encode(header.state_root),
                    block.hash
                )
            });
        }
    }
    Ok(())
}

/// Runs a `bcte query` subcommand.
pub fn run_query(cmd: QueryCommand, json: bool) -> ExitCode {
    query(cmd, json).map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS)
}

/// Runs `bcte verify`.
pub fn run_verify(args: VerifyArgs, json: bool) -> ExitCode {
    match audit::audit(&args.data_dir) {
        Ok(r) => {
            let value = json!({
                "ok": true,
                "chain_id": r.chain_id,
                "height": r.height,
                "txs": r.txs,
                "certificates": r.certificates,
                "proven_final": r.proven_final,
            });
            emit(json, &value, || {
                format!(
                    "intact: chain {} up to height {} ({} transactions replayed, {} certificates checked, final through height {})",
                    r.chain_id, r.height, r.txs, r.certificates, r.proven_final
                )
            });
            ExitCode::SUCCESS
        }
        Err(failure) => {
            if json {
                let (height, tx, file) = match &failure {
                    audit::AuditFailure::Block { height, tx, .. } => (Some(*height), *tx, None),
                    audit::AuditFailure::File { path, .. } => {
                        (None, None, Some(path.display().to_string()))
                    }
                };
                println!(
                    "{}",
                    json!({ "ok": false, "error": failure.to_string(), "height": height, "tx": tx, "file": file })
                );
            }
            eprintln!("error: {failure}");
            ExitCode::from(1)
        }
    }
}
