//! Key files, genesis files and the layout of a node's data directory.
//!
//! A data directory holds:
//! - `genesis.json`: the chain's genesis (see `docs/files.md`);
//! - `validator.key`: this node's validator key (a key file);
//! - `dev.key`: in dev mode, the key of the funded dev account (also the token authority);
//! - `bcte.redb`: blocks, receipts, certificates and state (one redb file);
//! - `consensus/`: the consensus engine's journals and archives (votes, finalized blocks);
//! - `batches/`: raw meter batches uploaded to this node, by Merkle root (off-chain data).

use bcte_types::{AccountId, Genesis, KeyFile};
use commonware_codec::{Copying, DecodeExt, Encode};
use commonware_cryptography::{Signer, ed25519::PrivateKey};
use rand::Rng;
use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};
use thiserror::Error;

/// A failure reading or writing a node file, naming the file.
#[derive(Debug, Error)]
pub enum FileError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file's content is invalid.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FileError + '_ {
    move |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(path: &Path, reason: impl ToString) -> FileError {
    FileError::Invalid {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The paths inside a data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// The data directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `genesis.json`.
    pub fn genesis(&self) -> PathBuf {
        self.root.join("genesis.json")
    }

    /// `validator.key`.
    pub fn validator_key(&self) -> PathBuf {
        self.root.join("validator.key")
    }

    /// `dev.key`.
    pub fn dev_key(&self) -> PathBuf {
        self.root.join("dev.key")
    }

    /// `bcte.redb`.
    pub fn store(&self) -> PathBuf {
        self.root.join("bcte.redb")
    }

    /// `api.key`: the node's API key, which signs its read tokens (AC-6.1); never the
    /// consensus key. Made on the node's first start.
    pub fn api_key(&self) -> PathBuf {
        self.root.join("api.key")
    }

    /// `pii/`: the registrar's encrypted personal-data records and their access log (AC-2.4).
    pub fn pii(&self) -> PathBuf {
        self.root.join("pii")
    }

    /// `pii-keys/`: one key per participant's record, apart from the records (a deployment
    /// mounts it on another disk or a key service's volume); erasing a key erases the record.
    pub fn pii_keys(&self) -> PathBuf {
        self.root.join("pii-keys")
    }

    /// `openadr/clients.json`: the OpenADR VEN clients registered on this node, with the
    /// SHA-256 of their secrets (docs/openadr.md).
    pub fn openadr_clients(&self) -> PathBuf {
        self.root.join("openadr").join("clients.json")
    }

    /// `openadr/subscriptions.json`: the VEN clients' subscriptions and their webhooks
    /// (docs/openadr.md).
    pub fn openadr_subscriptions(&self) -> PathBuf {
        self.root.join("openadr").join("subscriptions.json")
    }

    /// `batches/`: the off-chain store of raw meter batches, one file per batch named by its
    /// Merkle root (docs/api.md, "Raw meter batches").
    pub fn batches(&self) -> PathBuf {
        self.root.join("batches")
    }

    /// `consensus/`.
    pub fn consensus(&self) -> PathBuf {
        self.root.join("consensus")
    }
}

/// A new random ed25519 key from the operating system's generator.
pub fn generate_key() -> PrivateKey {
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    PrivateKey::decode(Copying(&seed)).expect("any 32 bytes are an ed25519 seed")
}

/// The key file contents of `key`.
pub fn key_file(key: &PrivateKey) -> KeyFile {
    let public = key.public_key();
    KeyFile {
        account: AccountId::from_public_key(&public),
        public_key: hex::encode(public.as_ref()),
        private_key: hex::encode(key.encode()),
    }
}

/// Writes `key` to `path` as a key file readable only by its owner. Refuses to overwrite.
pub fn write_key(path: &Path, key: &PrivateKey) -> Result<(), FileError> {
    let json = serde_json::to_string_pretty(&key_file(key)).expect("a key file serializes");
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(json.as_bytes()).map_err(io(path))?;
    file.write_all(b"\n").map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Reads a key file, checking that its public parts match its private key.
pub fn read_key(path: &Path) -> Result<PrivateKey, FileError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    let file: KeyFile =
        serde_json::from_str(&text).map_err(|e| invalid(path, format!("not a key file: {e}")))?;
    let seed = bcte_types::ids::parse_hex_array::<32>(&file.private_key)
        .map_err(|e| invalid(path, format!("private_key: {e}")))?;
    let key = PrivateKey::decode(Copying(&seed))
        .map_err(|e| invalid(path, format!("private_key: {e}")))?;
    let expected = key_file(&key);
    if file.account != expected.account || file.public_key.to_lowercase() != expected.public_key {
        return Err(invalid(path, "account/public_key do not match private_key"));
    }
    Ok(key)
}

/// The key at `path`, or a new one written there if it has none.
pub fn read_or_make_key(path: &Path) -> Result<PrivateKey, FileError> {
    if path.exists() {
        return read_key(path);
    }
    let key = generate_key();
    write_key(path, &key)?;
    Ok(key)
}

/// Reads and validates a genesis file.
pub fn read_genesis(path: &Path) -> Result<Genesis, FileError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    let genesis: Genesis = serde_json::from_str(&text).map_err(|e| invalid(path, e))?;
    genesis.validate().map_err(|e| invalid(path, e))?;
    Ok(genesis)
}

/// Writes a genesis file (refuses to overwrite).
pub fn write_genesis(path: &Path, genesis: &Genesis) -> Result<(), FileError> {
    let json = serde_json::to_string_pretty(genesis).expect("a genesis serializes");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(io(path))?;
    file.write_all(json.as_bytes()).map_err(io(path))?;
    file.write_all(b"\n").map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// Replaces `path`'s content with `bytes` whole or not at all: a temporary file beside it,
/// synced, then renamed over it (its directory is created if missing).
pub fn replace_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let mut f = fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_round_trip_and_refuse_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let key = generate_key();
        write_key(&path, &key).unwrap();
        assert_eq!(read_key(&path).unwrap().public_key(), key.public_key());
        assert!(write_key(&path, &key).is_err(), "never overwrites a key");

        let mut file: KeyFile = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        file.account = key_file(&generate_key()).account;
        let bad = dir.path().join("bad.key");
        fs::write(&bad, serde_json::to_string(&file).unwrap()).unwrap();
        let err = read_key(&bad).unwrap_err().to_string();
        assert!(
            err.contains("bad.key") && err.contains("do not match"),
            "{err}"
        );
        fs::write(&bad, "{}").unwrap();
        assert!(
            read_key(&bad)
                .unwrap_err()
                .to_string()
                .contains("not a key file")
        );
    }
}
