//! The chain commands: `node`, `keys`, `tx`, `query` and `verify`.

use crate::client::Client;
use anyhow::{Context as _, bail};
use bcte_ledger::{
    StateKey, StateProof,
    state::{AccountState, ChainConfig, Head},
};
use bcte_node::{
    api::{
        AccountView, BlockView, CertificateView, HeadView, ProofView, SubmitRequest,
        SubmitResponse, TxStatus,
    },
    audit,
    cert::{self, CertificateFile},
    files,
};
use bcte_types::{AccountId, Amount, ChainId, Header, Payload, Tx, TxBody, ids::parse_hash};
use clap::{Args, Subcommand};
use commonware_codec::{Copying, DecodeExt, Encode};
use commonware_cryptography::Signer as _;
use serde_json::{Value, json};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

/// The default address of a node's HTTP API.
pub const DEFAULT_NODE: &str = "http://127.0.0.1:8645";

/// Arguments of `bcte node`: either `--dev --data-dir DIR` or `--config FILE`.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// Run a validator or full node of a network from its TOML configuration file (as written by
    /// `bcte localnet init`; see docs/files.md).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["dev", "data_dir"], required_unless_present = "dev")]
    config: Option<PathBuf>,
    /// Run a single-validator development chain (creating it in --data-dir on first use).
    #[arg(long, requires = "data_dir")]
    dev: bool,
    /// The dev node's data directory.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Where the dev node serves the HTTP API (port 0 picks a free port; the node prints it).
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8645",
        conflicts_with = "config"
    )]
    http: SocketAddr,
    /// Serve the dev node's API over TLS with this certificate chain (PEM; with --tls-key).
    /// A configured node takes a `[tls]` section instead (docs/files.md).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "config"
    )]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_cert",
        conflicts_with = "config"
    )]
    tls_key: Option<PathBuf>,
    /// Let OpenADR subscriptions name plain-http webhooks on a loopback host (tests, a VEN on
    /// this machine); otherwise webhooks are https only. A configured node sets
    /// `[openadr] loopback_webhooks`.
    #[arg(long, conflicts_with = "config")]
    openadr_loopback_webhooks: bool,
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
    #[arg(long, value_name = "URL", default_value = DEFAULT_NODE, env = "BCTE_NODE")]
    pub(crate) node: String,
    /// The sender's key file.
    #[arg(long, value_name = "FILE")]
    pub(crate) key: PathBuf,
    /// The sending ACCOUNT, when it is not the key's own (an account whose key was rotated or
    /// reset signs with its new key: AC-4).
    #[arg(long, value_name = "ACCOUNT")]
    pub(crate) sender: Option<AccountId>,
    /// How long to wait for finality, in seconds.
    #[arg(long, default_value_t = 60)]
    pub(crate) timeout_s: u64,
}

impl TxCommon {
    /// A client of the node signed in as the sender's key (its reads are the sender's).
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        Client::signed_in(&self.node, &self.key, self.sender)
    }
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
    /// Create tokens in an account (DSO).
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
    /// Destroy tokens from the sender's balance (DSO).
    Burn {
        #[command(flatten)]
        common: TxCommon,
        /// The amount, in token base units.
        #[arg(long)]
        amount: u64,
    },
    /// Feeders: register one, change an edge limit (DSO).
    #[command(subcommand)]
    Feeder(crate::market_cmds::FeederCommand),
    /// Sites: register (DSO), delegate bidding to an aggregator and revoke it (the owner).
    #[command(subcommand)]
    Site(crate::market_cmds::SiteCommand),
    /// The market configuration and upstream prices (DSO).
    #[command(subcommand)]
    Market(crate::market_cmds::MarketTxCommand),
    /// Set a feeder's grid mode from an interval on: normal, alert or islanded (DSO).
    GridMode(crate::market_cmds::GridModeArgs),
    /// Bid for a site and interval, withdraw a bid, or send a batch of bids from a file.
    Bid(crate::market_cmds::BidArgs),
    /// Meters: register one or swap its key, allow a head-end system (DSO).
    #[command(subcommand)]
    Meter(crate::meter_cmds::MeterCommand),
    /// A site's reading of an interval, signed with its meter's key.
    Reading(crate::meter_cmds::ReadingArgs),
    /// Correct a settled site's settlement, with a reason on the record (DSO).
    Adjust(crate::meter_cmds::AdjustArgs),
    /// Peer-to-peer contracts: enter one or cancel its future intervals, with the other
    /// party's consent.
    #[command(subcommand)]
    Contract(crate::contract_cmds::ContractTxCommand),
    /// Enroll a participant with its roles and accounts (registrar).
    Enroll(crate::identity_cmds::EnrollArgs),
    /// Grant roles to a member or revoke them (registrar).
    #[command(subcommand)]
    Role(crate::identity_cmds::RoleCommand),
    /// Rotate your own signing key, or reset a member's lost key (registrar).
    #[command(subcommand)]
    Key(crate::identity_cmds::KeyCommand),
    /// Revoke accounts for good (registrar).
    Revoke(crate::identity_cmds::RevokeArgs),
}

/// `bcte query` subcommands.
#[derive(Subcommand, Debug)]
pub enum QueryCommand {
    /// An account's balance and nonce.
    Account {
        /// The ACCOUNT.
        account: AccountId,
        /// The node's API URL.
        #[arg(long, value_name = "URL", default_value = DEFAULT_NODE, env = "BCTE_NODE")]
        node: String,
        /// Read as this key's account (AC-6): without it, only what is public.
        #[arg(long, value_name = "FILE", env = "BCTE_KEY")]
        key: Option<PathBuf>,
    },
    /// A block by height, or `latest`.
    Block {
        /// A height, a block hash or `latest`.
        id: String,
        /// The node's API URL.
        #[arg(long, value_name = "URL", default_value = DEFAULT_NODE, env = "BCTE_NODE")]
        node: String,
        /// Read as this key's account (AC-6): without it, only what is public.
        #[arg(long, value_name = "FILE", env = "BCTE_KEY")]
        key: Option<PathBuf>,
    },
    /// A transaction's status and receipt.
    Tx {
        /// The transaction hash.
        hash: String,
        /// The node's API URL.
        #[arg(long, value_name = "URL", default_value = DEFAULT_NODE, env = "BCTE_NODE")]
        node: String,
        /// Read as this key's account (AC-6): without it, only what is public.
        #[arg(long, value_name = "FILE", env = "BCTE_KEY")]
        key: Option<PathBuf>,
    },
    /// A state value with its proof, checked locally against the block's state root.
    Proof {
        /// The key: account/<ACCOUNT>, supply, head or config.
        key: StateKey,
        /// The node's API URL.
        #[arg(long, value_name = "URL", default_value = DEFAULT_NODE, env = "BCTE_NODE")]
        node: String,
        /// Read as this key's account (AC-6): without it, only what is public.
        #[arg(long = "key", id = "key_file", value_name = "FILE", env = "BCTE_KEY")]
        key_file: Option<PathBuf>,
        /// The height to prove at (default: the latest).
        #[arg(long)]
        height: Option<u64>,
    },
    /// Sign in and print a 5-minute read token (AC-6.1), for `curl -H "Authorization: Bearer
    /// $TOKEN"` and other HTTP clients.
    Token(crate::pii_cmds::Who),
    /// Save a block's finality certificate (with its header) to a file for `bcte verify-cert`.
    Cert {
        /// The block height, or `latest` (the newest certified block).
        height: String,
        /// The node's API URL.
        #[arg(long, value_name = "URL", default_value = DEFAULT_NODE, env = "BCTE_NODE")]
        node: String,
        /// The certificate file to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// Arguments of `bcte verify-cert`.
#[derive(Args, Debug)]
pub struct VerifyCertArgs {
    /// The chain's genesis file: the only thing trusted.
    #[arg(long, value_name = "FILE")]
    genesis: PathBuf,
    /// A certificate file saved by `bcte query cert`.
    cert_file: PathBuf,
}

/// Arguments of `bcte verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The node's data directory.
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
}

/// Where to send a transaction and with which key, for the commands whose `--node` names a
/// node of the grid (`tx site register`, `tx feeder limit`): the API's URL is `--node-url`.
#[derive(Args, Debug)]
pub struct TxCommonGrid {
    /// The node's API URL (`--node` names the grid's node here).
    #[arg(long, value_name = "URL", default_value = DEFAULT_NODE, env = "BCTE_NODE")]
    pub(crate) node_url: String,
    /// The sender's key file.
    #[arg(long, value_name = "FILE")]
    pub(crate) key: PathBuf,
    /// How long to wait for finality, in seconds.
    #[arg(long, default_value_t = 60)]
    pub(crate) timeout_s: u64,
}

impl TxCommonGrid {
    /// The same, as the common arguments of every transaction.
    pub(crate) fn common(&self) -> TxCommon {
        TxCommon {
            node: self.node_url.clone(),
            key: self.key.clone(),
            sender: None,
            timeout_s: self.timeout_s,
        }
    }
}

/// Invalid arguments or input (a malformed file, an unknown feeder): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InputError(pub String);

/// Reports an error in one line; exit code 2 for invalid input, 1 otherwise.
pub(crate) fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    if e.downcast_ref::<InputError>().is_some() {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    }
}

pub(crate) fn emit(json: bool, value: &Value, text: impl FnOnce() -> String) {
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
    let result = match (args.config, args.data_dir) {
        (Some(config), _) => bcte_node::run::run_config(&config),
        (None, Some(dir)) => {
            let tls = args
                .tls_cert
                .zip(args.tls_key)
                .map(|(cert, key)| bcte_node::tls::TlsFiles { cert, key });
            let openadr = bcte_node::config::OpenAdrConfig {
                loopback_webhooks: args.openadr_loopback_webhooks,
            };
            bcte_node::run::run_dev(dir, args.http, tls, openadr)
        }
        (None, None) => {
            eprintln!("error: give --config FILE, or --dev --data-dir DIR");
            return ExitCode::from(2);
        }
    };
    match result {
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

/// The id of the chain the node runs.
pub(crate) fn chain_of(client: &Client) -> anyhow::Result<ChainId> {
    let head: HeadView = client.get("/v1/head")?;
    ChainId::new(head.chain_id).context("the node reports an invalid chain id")
}

/// Signs `payload` with `key` and its next nonce on the node's chain.
pub(crate) fn sign_for(
    client: &Client,
    key: &commonware_cryptography::ed25519::PrivateKey,
    payload: Payload,
) -> anyhow::Result<Tx> {
    sign_as(client, None, key, payload)
}

/// Signs `payload` from `account` (by default the key's own) with `key` and the account's
/// next nonce on the node's chain.
pub(crate) fn sign_as(
    client: &Client,
    account: Option<AccountId>,
    key: &commonware_cryptography::ed25519::PrivateKey,
    payload: Payload,
) -> anyhow::Result<Tx> {
    let signer = AccountId::from_public_key(&key.public_key());
    let sender = account.unwrap_or(signer);
    let chain_id = chain_of(client)?;
    let view: AccountView = client.get(&format!("/v1/accounts/{sender}"))?;
    if view.key != signer.to_string() {
        return Err(InputError(format!(
            "account {sender} signs with key {}, not with the key of {signer}{}",
            view.key,
            if account.is_none() {
                " (give --sender ACCOUNT for an account whose key was rotated)"
            } else {
                ""
            }
        ))
        .into());
    }
    Ok(Tx::sign(
        TxBody {
            chain_id,
            sender,
            signer: (signer != sender).then_some(signer),
            nonce: view.nonce,
            payload,
        },
        key,
    ))
}

/// Submits a signed transaction and returns its hash.
pub(crate) fn post_tx(client: &Client, tx: &Tx) -> anyhow::Result<String> {
    let submitted: SubmitResponse = client.post(
        "/v1/txs",
        &SubmitRequest {
            tx: hex::encode(tx.encode()),
        },
    )?;
    Ok(submitted.hash)
}

/// Waits (at most `timeout`) for a submitted transaction to be final.
pub(crate) fn wait_final(
    client: &Client,
    hash: &str,
    timeout: Duration,
) -> anyhow::Result<TxStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = left.as_millis().min(10_000) as u64;
        let status: TxStatus = client.get(&format!("/v1/txs/{hash}?wait_ms={wait}"))?;
        if status.status != "pending" {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            bail!(
                "transaction {hash} is still pending after {} s",
                timeout.as_secs()
            );
        }
    }
}

/// Signs `payloads` with `key` and consecutive nonces from its account's next one, submits them
/// in order (calling `before(i)` just before the `i`-th, to store what it needs on the node),
/// then waits, at most `timeout` in all, for every one to be final. Their statuses, in order.
pub(crate) fn submit_in_order(
    client: &Client,
    key: &commonware_cryptography::ed25519::PrivateKey,
    chain: &ChainId,
    payloads: Vec<Payload>,
    timeout: Duration,
    mut before: impl FnMut(usize) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<TxStatus>> {
    let sender = AccountId::from_public_key(&commonware_cryptography::Signer::public_key(key));
    let account: AccountView = client.get(&format!("/v1/accounts/{sender}"))?;
    let mut hashes = Vec::with_capacity(payloads.len());
    for (n, payload) in payloads.into_iter().enumerate() {
        before(n)?;
        let tx = Tx::sign(
            TxBody {
                chain_id: chain.clone(),
                sender,
                signer: None,
                nonce: account.nonce + n as u64,
                payload,
            },
            key,
        );
        hashes.push(post_tx(client, &tx)?);
    }
    let deadline = Instant::now() + timeout;
    hashes
        .iter()
        .map(|h| {
            wait_final(
                client,
                h,
                deadline.saturating_duration_since(Instant::now()),
            )
        })
        .collect()
}

/// Signs `payload` with the key in `common`, submits it, waits for finality and prints the result.
pub(crate) fn submit(common: &TxCommon, payload: Payload, json: bool) -> anyhow::Result<ExitCode> {
    submit_noting(common, payload, json, &[])
}

/// [`submit`], printing `notes` (name, value) before the outcome, in the JSON object too.
pub(crate) fn submit_noting(
    common: &TxCommon,
    payload: Payload,
    json: bool,
    notes: &[(&str, String)],
) -> anyhow::Result<ExitCode> {
    let key = files::read_key(&common.key)?;
    let client = common.client()?;
    let tx = sign_as(&client, common.sender, &key, payload)?;
    let hash = post_tx(&client, &tx)?;
    let status = wait_final(&client, &hash, Duration::from_secs(common.timeout_s))?;
    let mut value = json!({
        "hash": status.hash,
        "height": status.height,
        "status": status.status,
        "reason": status.reason,
    });
    for (name, v) in notes {
        value[*name] = json!(v);
    }
    emit(json, &value, || {
        let mut s: String = notes
            .iter()
            .map(|(name, v)| format!("{name}: {v}\n"))
            .collect();
        s += &format!(
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
    use crate::market_cmds;
    let (common, payload) = match cmd {
        TxCommand::Feeder(cmd) => return market_cmds::run_feeder(cmd, json),
        TxCommand::Site(cmd) => return market_cmds::run_site(cmd, json),
        TxCommand::Market(cmd) => return market_cmds::run_market_tx(cmd, json),
        TxCommand::GridMode(args) => return market_cmds::run_grid_mode(args, json),
        TxCommand::Bid(args) => return market_cmds::run_bid(args, json),
        TxCommand::Meter(cmd) => return crate::meter_cmds::run_meter(cmd, json),
        TxCommand::Reading(args) => return crate::meter_cmds::run_reading(args, json),
        TxCommand::Adjust(args) => return crate::meter_cmds::run_adjust(args, json),
        TxCommand::Contract(cmd) => return crate::contract_cmds::run_tx(cmd, json),
        TxCommand::Enroll(args) => return crate::identity_cmds::run_enroll(args, json),
        TxCommand::Role(cmd) => crate::identity_cmds::role(cmd),
        TxCommand::Key(cmd) => match crate::identity_cmds::key(cmd) {
            Ok(v) => v,
            Err(e) => return fail(&e),
        },
        TxCommand::Revoke(args) => crate::identity_cmds::revoke(args),
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
        StateKey::Account(_) => AccountState::decode(Copying(bytes)).map_or_else(
            |_| raw(),
            |a| {
                let positions: Vec<Value> = a
                    .positions
                    .iter()
                    .map(|p| json!({ "market": p.market, "amount": p.amount }))
                    .collect();
                json!({ "balance": a.balance, "nonce": a.nonce, "positions": positions })
            },
        ),
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
        // The market's values are shown by `bcte market`; a proof shows their bytes.
        _ => raw(),
    }
}

fn query(cmd: QueryCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        QueryCommand::Account { account, node, key } => {
            let a: AccountView =
                Client::reading(&node, key.as_deref())?.get(&format!("/v1/accounts/{account}"))?;
            let value = json!({
                "account": a.account, "balance": a.balance, "nonce": a.nonce, "roles": a.roles,
                "participant": a.participant, "key": a.key, "revoked": a.revoked,
            });
            emit(json, &value, || {
                let roles = if a.roles.is_empty() {
                    "none (it may only receive)".to_owned()
                } else {
                    a.roles.join(", ")
                };
                let mut s = format!(
                    "account:     {}\nbalance:     {} base units\nnonce:       {}\nroles:       {roles}",
                    a.account, a.balance, a.nonce
                );
                if let Some(p) = &a.participant {
                    s.push_str(&format!("\nparticipant: {p}"));
                }
                if a.key != a.account {
                    s.push_str(&format!("\nkey:         {} (rotated)", a.key));
                }
                if a.revoked {
                    s.push_str("\nrevoked:     yes");
                }
                s
            });
        }
        QueryCommand::Block { id, node, key } => {
            let b: BlockView = Client::reading(&node, key.as_deref())?
                .get(&format!("/v1/blocks/{}", id.trim()))?;
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
                    match (&t.sender, t.nonce, &t.kind) {
                        (Some(sender), Some(nonce), Some(kind)) => s.push_str(&format!(
                            "\n  {} {kind} from {sender} nonce {nonce} {}",
                            t.hash, t.status
                        )),
                        _ => {
                            s.push_str(&format!("\n  {} {} (not yours: AC-6.4)", t.hash, t.status))
                        }
                    }
                }
                s
            });
        }
        QueryCommand::Tx { hash, node, key } => {
            let hash = parse_hash(&hash).context("bad transaction hash")?;
            let t: TxStatus = Client::reading(&node, key.as_deref())?
                .get(&format!("/v1/txs/{}", hex::encode(hash)))?;
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
        QueryCommand::Token(who) => {
            let token = who.client()?.sign_in()?.unwrap_or_default();
            emit(
                json,
                &json!({ "access_token": token, "token_type": "Bearer" }),
                || token.clone(),
            );
        }
        QueryCommand::Cert { height, node, out } => save_certificate(&node, &height, &out, json)?,
        QueryCommand::Proof {
            key,
            node,
            key_file,
            height,
        } => {
            let client = Client::reading(&node, key_file.as_deref())?;
            let (proof, header, block_hash) = proven(&client, &key, height)?;
            let value = proof.value.as_deref().map(|v| describe(&key, v));
            let out = json!({
                "height": proof.height,
                "key": key.to_string(),
                "value": value,
                "verified": true,
                "state_root": hex::encode(header.state_root),
                "block_hash": block_hash,
            });
            emit(json, &out, || {
                format!(
                    "{key} at height {}: {}\nproof checked against state root {} of block {}",
                    proof.height,
                    value
                        .as_ref()
                        .map_or("absent".to_string(), Value::to_string),
                    hex::encode(header.state_root),
                    block_hash
                )
            });
        }
    }
    Ok(())
}

/// The proof of `key` at `height` (default: the tip), checked against the header of its block:
/// the proof, the header and the block's hash.
pub(crate) fn proven(
    client: &Client,
    key: &StateKey,
    height: Option<u64>,
) -> anyhow::Result<(StateProof, Header, String)> {
    let path = match height {
        Some(h) => format!("/v1/proofs/{key}?height={h}"),
        None => format!("/v1/proofs/{key}"),
    };
    let view: ProofView = client.get(&path)?;
    let bytes = hex::decode(&view.proof).context("the node sent a proof that is not hex")?;
    let proof = StateProof::from_bytes(&bytes).context("the node sent a malformed proof")?;
    if &proof.key != key || height.is_some_and(|h| proof.height.get() != h) {
        bail!("the node sent a proof for another key or height");
    }
    let (header, block_hash) = verified_header(client, proof.height.get())?;
    proof
        .verify(&header.state_root)
        .context("the proof does not check against the block's state root")?;
    Ok((proof, header, block_hash))
}

/// The header of block `height` as the node serves it, with the block's hash, which is
/// recomputed from the header: a proof is then checked against the block the node names, not
/// against a root it merely asserts.
pub(crate) fn verified_header(client: &Client, height: u64) -> anyhow::Result<(Header, String)> {
    let block: BlockView = client.get(&format!("/v1/blocks/{height}"))?;
    let raw = hex::decode(&block.header).context("the node sent a header that is not hex")?;
    let header = Header::decode(Copying(&raw)).context("the node sent a malformed header")?;
    if hex::encode(header.hash()) != block.hash {
        bail!("the node's header does not hash to the block hash it reports");
    }
    Ok((header, block.hash))
}

/// Saves the certificate of `height` (or of the newest certified block) with its header.
fn save_certificate(node: &str, height: &str, out: &Path, json: bool) -> anyhow::Result<()> {
    let client = Client::new(node);
    let head: HeadView = client.get("/v1/head")?;
    let view: CertificateView = match height.trim() {
        "latest" => {
            // The newest blocks may be final through a descendant only; walk back a little.
            let mut found = None;
            for h in (head.height.saturating_sub(16)..=head.height).rev() {
                if let Ok(v) = client.get::<CertificateView>(&format!("/v1/certificates/{h}")) {
                    found = Some(v);
                    break;
                }
            }
            found.context("the node holds no certificate for its 16 newest blocks")?
        }
        h => {
            let h: u64 = h
                .parse()
                .with_context(|| format!("{h:?} is not a height or `latest`"))?;
            client.get(&format!("/v1/certificates/{h}"))?
        }
    };
    let block: BlockView = client.get(&format!("/v1/blocks/{}", view.height))?;
    let file = CertificateFile {
        chain_id: head.chain_id,
        height: view.height,
        block_hash: view.block_hash,
        header: block.header,
        descendants: view.descendants,
        certificate: view.certificate,
    };
    let text = serde_json::to_string_pretty(&file)? + "\n";
    std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    let value = json!({
        "height": file.height,
        "block_hash": file.block_hash,
        "certified_height": view.certified_height,
        "file": out,
    });
    emit(json, &value, || {
        let via = if view.certified_height == file.height {
            String::new()
        } else {
            format!(
                " (through the certificate of block {} and the headers in between)",
                view.certified_height
            )
        };
        format!(
            "certificate of block {} ({}){via} saved to {}",
            file.height,
            file.block_hash,
            out.display()
        )
    });
    Ok(())
}

/// Runs `bcte verify-cert`.
pub fn run_verify_cert(args: VerifyCertArgs, json: bool) -> ExitCode {
    let check = || -> anyhow::Result<Result<cert::ProvenFinal, cert::CertError>> {
        let genesis = files::read_genesis(&args.genesis)?;
        let text = std::fs::read_to_string(&args.cert_file)
            .with_context(|| format!("reading {}", args.cert_file.display()))?;
        let file: CertificateFile = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a certificate file", args.cert_file.display()))?;
        let header = hex::decode(&file.header)
            .with_context(|| format!("{}: header is not hex", args.cert_file.display()))?;
        let certificate = hex::decode(&file.certificate)
            .with_context(|| format!("{}: certificate is not hex", args.cert_file.display()))?;
        let descendants = file
            .descendants
            .iter()
            .enumerate()
            .map(|(i, d)| {
                hex::decode(d).with_context(|| {
                    format!("{}: descendant {i} is not hex", args.cert_file.display())
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(cert::prove_final(
            &genesis,
            &header,
            &descendants,
            &certificate,
            &mut rand::rng(),
        ))
    };
    match check() {
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Ok(Ok(p)) => {
            let value = json!({
                "ok": true,
                "height": p.header.height.get(),
                "block_hash": hex::encode(p.block_hash),
                "state_root": hex::encode(p.header.state_root),
                "certified_height": p.certified_height,
                "view": p.view,
                "signers": p.signers,
                "validators": p.validators,
            });
            emit(json, &value, || {
                let via = if p.certified_height == p.header.height.get() {
                    String::new()
                } else {
                    format!(" (through its descendant at height {})", p.certified_height)
                };
                format!(
                    "final: block {} ({}) with state root {}, signed by {} of {} validators{via}",
                    p.header.height,
                    hex::encode(p.block_hash),
                    hex::encode(p.header.state_root),
                    p.signers,
                    p.validators
                )
            });
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            if json {
                println!("{}", json!({ "ok": false, "error": e.to_string() }));
            }
            eprintln!("error: not proven final: {e}");
            ExitCode::from(1)
        }
    }
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
                "batches_checked": r.batches_checked,
                "batches_missing": r.batches_missing,
            });
            emit(json, &value, || {
                format!(
                    "intact: chain {} up to height {} ({} transactions replayed, {} certificates checked, final through height {}; {} meter batches checked, {} not held here)",
                    r.chain_id,
                    r.height,
                    r.txs,
                    r.certificates,
                    r.proven_final,
                    r.batches_checked,
                    r.batches_missing
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
