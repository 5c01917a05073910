//! Node configuration files (TOML), as `bcte localnet init` writes them and `bcte node --config`
//! reads them.
//!
//! ```toml
//! role = "validator"              # or "full": follows the chain and serves the API, no votes
//! data_dir = "node0"              # paths are relative to this file's directory
//! genesis = "genesis.json"
//! key = "node0/node.key"          # the validator key, or a full node's p2p identity
//! p2p = "127.0.0.1:29000"
//! http = "127.0.0.1:28000"
//!
//! [tls]                           # optional: serve the API over TLS (PEM files)
//! cert = "node0/cert.pem"
//! key = "node0/key.pem"
//!
//! [openadr]                       # optional
//! loopback_webhooks = false       # allow http webhooks to a loopback host
//!
//! [dashboard]                     # optional: the web page at `/` (docs/dashboard.md)
//! enabled = true                  # serve it (default true)
//! topology = true                 # draw the feeder's tree (default true)
//!
//! [[peers]]                       # every other node of the network
//! name = "node1"
//! role = "validator"
//! public_key = "ACCOUNT"
//! address = "127.0.0.1:29001"
//! ```
//!
//! [`NodeConfig::load`] checks the file against its genesis and refuses, naming the problem, a
//! validator key that is not in the validator set, a full node whose key is, a validator without
//! an address, duplicate keys or addresses, and unreadable files.

use crate::{
    chain_block::PublicKey,
    files::{self, DataDir, FileError},
};
use bcte_types::{AccountId, Genesis};
use commonware_cryptography::{Signer as _, ed25519::PrivateKey};
use serde::{Deserialize, Serialize};
use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    path::{Path, PathBuf},
};
use thiserror::Error;

/// What a node does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Votes in consensus (its key is in the genesis validator set).
    Validator,
    /// Follows the finalized chain, checks every certificate, serves the API; never votes.
    Full,
}

/// Another node of the network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerEntry {
    /// A name for operators.
    pub name: String,
    /// Its role.
    pub role: Role,
    /// Its public key (ACCOUNT form).
    pub public_key: AccountId,
    /// Its p2p address.
    pub address: SocketAddr,
}

/// Consensus and block building tuning. Defaults suit a LAN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tuning {
    /// How long to wait for a leader's proposal.
    pub leader_timeout_ms: u64,
    /// How long to wait for a notarized proposal to be certified.
    pub certification_timeout_ms: u64,
    /// How long a leader with an empty mempool waits for transactions.
    pub propose_wait_ms: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            leader_timeout_ms: 2_000,
            certification_timeout_ms: 3_000,
            propose_wait_ms: 1_000,
        }
    }
}

/// The dashboard served at `/` (docs/dashboard.md). A feeder's layout can be
/// critical-infrastructure information: a deployment that must not draw it turns `topology`
/// off, and the page shows the node prices as a list instead of the tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// Whether the node serves the dashboard (its page, script and styles) at all.
    pub enabled: bool,
    /// Whether the dashboard draws the feeder as a tree of its nodes.
    pub topology: bool,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            topology: true,
        }
    }
}

/// TLS for the HTTP API: PEM files, relative to the configuration file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The certificate chain, the node's own certificate first.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
}

/// The OpenADR VTN's settings (docs/openadr.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAdrConfig {
    /// Whether subscriptions may name plain-http webhooks on a loopback host (tests, a VEN on
    /// the same machine); otherwise webhooks are https only.
    pub loopback_webhooks: bool,
}

/// A node configuration file as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// The node's role.
    pub role: Role,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The genesis file.
    pub genesis: PathBuf,
    /// The node's key file.
    pub key: PathBuf,
    /// Where to listen for p2p connections.
    pub p2p: SocketAddr,
    /// Where to serve the HTTP API.
    pub http: SocketAddr,
    /// Every other node.
    #[serde(default)]
    pub peers: Vec<PeerEntry>,
    /// Tuning.
    #[serde(default)]
    pub tuning: Tuning,
    /// TLS for the HTTP API (absent: plain HTTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSection>,
    /// The dashboard.
    #[serde(default)]
    pub dashboard: DashboardConfig,
    /// The OpenADR VTN.
    #[serde(default)]
    pub openadr: OpenAdrConfig,
}

/// A checked configuration, with paths resolved and files read.
#[derive(Debug)]
pub struct NodeConfig {
    /// The node's role.
    pub role: Role,
    /// The data directory.
    pub data_dir: DataDir,
    /// The genesis.
    pub genesis: Genesis,
    /// The node's key.
    pub key: PrivateKey,
    /// Its p2p address.
    pub p2p: SocketAddr,
    /// Its API address.
    pub http: SocketAddr,
    /// Validators' p2p addresses (including this node's if it validates).
    pub validators: BTreeMap<PublicKey, SocketAddr>,
    /// Full nodes' p2p addresses (including this node's if it is one).
    pub full_nodes: BTreeMap<PublicKey, SocketAddr>,
    /// Tuning.
    pub tuning: Tuning,
    /// TLS for the HTTP API (absent: plain HTTP).
    pub tls: Option<crate::tls::TlsFiles>,
    /// The dashboard.
    pub dashboard: DashboardConfig,
    /// The OpenADR VTN.
    pub openadr: OpenAdrConfig,
}

/// Why a configuration is refused.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A file could not be read or is invalid.
    #[error(transparent)]
    File(#[from] FileError),
    /// The TOML does not parse.
    #[error("{path}: {reason}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// The configuration contradicts itself or its genesis.
    #[error("{path}: {reason}")]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl NodeConfig {
    /// Reads and checks the configuration at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| FileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let file: ConfigFile = toml::from_str(&text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::check(file, base, path)
    }

    /// Checks a parsed configuration whose relative paths are relative to `base`.
    pub fn check(file: ConfigFile, base: &Path, path: &Path) -> Result<Self, ConfigError> {
        let bad = |reason: String| ConfigError::Inconsistent {
            path: path.to_path_buf(),
            reason,
        };
        let genesis = files::read_genesis(&base.join(&file.genesis))?;
        let key = files::read_key(&base.join(&file.key))?;
        let me = AccountId::from_public_key(&key.public_key());
        let in_set: BTreeSet<AccountId> = genesis.validators.iter().map(|v| v.public_key).collect();
        match file.role {
            Role::Validator if !in_set.contains(&me) => {
                return Err(bad(format!(
                    "role is validator but key {me} is not in the genesis validator set"
                )));
            }
            Role::Full if in_set.contains(&me) => {
                return Err(bad(format!(
                    "role is full but key {me} is a validator in the genesis"
                )));
            }
            _ => {}
        }
        if file.p2p == file.http {
            return Err(bad(format!("p2p and http both use {}", file.p2p)));
        }
        let mut validators = BTreeMap::new();
        let mut full_nodes = BTreeMap::new();
        let mut addresses: BTreeMap<SocketAddr, String> = BTreeMap::new();
        addresses.insert(file.p2p, "this node".into());
        let own = key.public_key();
        match file.role {
            Role::Validator => validators.insert(own.clone(), file.p2p),
            Role::Full => full_nodes.insert(own.clone(), file.p2p),
        };
        for peer in &file.peers {
            let pk = peer.public_key.to_public_key().ok_or_else(|| {
                bad(format!(
                    "peer {:?}: public_key is not an ed25519 key",
                    peer.name
                ))
            })?;
            if let Some(other) = addresses.insert(peer.address, peer.name.clone()) {
                return Err(bad(format!(
                    "peer {:?} and {other} share the address {}",
                    peer.name, peer.address
                )));
            }
            let is_validator = in_set.contains(&peer.public_key);
            match peer.role {
                Role::Validator if !is_validator => {
                    return Err(bad(format!(
                        "peer {:?} is listed as a validator but is not in the genesis",
                        peer.name
                    )));
                }
                Role::Full if is_validator => {
                    return Err(bad(format!(
                        "peer {:?} is listed as a full node but is a genesis validator",
                        peer.name
                    )));
                }
                _ => {}
            }
            let table = if is_validator {
                &mut validators
            } else {
                &mut full_nodes
            };
            if table.insert(pk, peer.address).is_some() || peer.public_key == me {
                return Err(bad(format!(
                    "peer {:?}: key {} appears twice",
                    peer.name, peer.public_key
                )));
            }
        }
        for v in &genesis.validators {
            let pk = v
                .public_key
                .to_public_key()
                .expect("genesis validation checked the keys");
            if !validators.contains_key(&pk) {
                return Err(bad(format!(
                    "validator {:?} ({}) has no address: add it to [[peers]]",
                    v.name, v.public_key
                )));
            }
        }
        Ok(Self {
            role: file.role,
            data_dir: DataDir::new(base.join(&file.data_dir)),
            genesis,
            key,
            p2p: file.p2p,
            http: file.http,
            validators,
            full_nodes,
            tuning: file.tuning,
            tls: file.tls.map(|t| crate::tls::TlsFiles {
                cert: base.join(t.cert),
                key: base.join(t.key),
            }),
            dashboard: file.dashboard,
            openadr: file.openadr,
        })
    }
}
