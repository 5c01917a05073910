//! The registrar's off-chain store of personal data (docs/access-rules.md, AC-2.3, AC-2.4).
//!
//! Each participant's record (a JSON object: name, address, contact, contract number) is
//! encrypted with a key of its own, XChaCha20-Poly1305, the participant's UUID bound as
//! associated data, and the 32-byte salt of its commitment inside the ciphertext: so the file
//! says nothing, and the commitment on chain cannot be checked against a guessed name without
//! the salt. Record files (`<data>/<uuid>.rec`) and key files (`<keys>/<uuid>.key`) live in
//! different directories, which a deployment puts on different disks or behind a key service.
//! Erasing a participant overwrites its key file in place and removes it: the ciphertext that
//! remains (here and in every backup) can never be read again, while the chain, which holds
//! only the commitment, stays valid (crypto-shredding: the right to erasure).
//!
//! Every put, read and erasure, allowed or not, is appended to `<data>/access.log` (JSON lines:
//! time, account, participant, action, outcome), never the record.
//!
//! This is the node's shell: files, the wall clock and randomness.

use bcte_types::{AccountId, Hash, ParticipantId, role::pii_commitment};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, Payload},
};
use rand::Rng as _;
use std::{
    fs,
    io::{self, Seek, Write},
    path::{Path, PathBuf},
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

/// The largest record, bytes.
pub const RECORD_BYTES_MAX: usize = 16 * 1024;

/// The associated-data domain of an encrypted record.
const AAD_DOMAIN: &[u8] = b"bcte/pii/record/v1";

const NONCE_LEN: usize = 24;
const SALT_LEN: usize = 32;
const KEY_LEN: usize = 32;

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    /// The record is not a JSON object of at most [`RECORD_BYTES_MAX`] bytes.
    #[error("{0}")]
    BadRecord(String),
    /// The participant already has a record.
    #[error("participant {0} already has a record (erase it first)")]
    Exists(ParticipantId),
    /// The store holds no record of the participant.
    #[error("no personal data of participant {0} is kept on this node")]
    NotFound(ParticipantId),
    /// The participant's key was erased: its record can never be read again.
    #[error("the personal data of participant {0} was erased")]
    Erased(ParticipantId),
    /// A file could not be read or written, or a record does not decrypt.
    #[error("personal-data store: {0}")]
    Io(String),
}

fn io_err(what: &Path) -> impl FnOnce(io::Error) -> PiiError + '_ {
    move |e| PiiError::Io(format!("{}: {e}", what.display()))
}

/// A record stored: its salt and commitment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The salt inside the ciphertext.
    pub salt: [u8; SALT_LEN],
    /// `SHA-256("bcte/pii/v1" ‖ UUID ‖ salt ‖ record)` (AC-2.3).
    pub commitment: Hash,
}

/// A record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The record's exact bytes.
    pub record: Vec<u8>,
    /// Its salt.
    pub salt: [u8; SALT_LEN],
    /// Its commitment, recomputed.
    pub commitment: Hash,
}

/// The store: a data directory (records and the access log) and a keys directory.
pub struct PiiStore {
    data: PathBuf,
    keys: PathBuf,
    log: Mutex<fs::File>,
}

/// Makes `dir` (readable by its owner only).
fn make_dir(dir: &Path) -> Result<(), PiiError> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
    }
    Ok(())
}

/// Writes `bytes` to a new file at `path`, readable by its owner only, synced.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), PiiError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

impl PiiStore {
    /// Opens (making them if needed) the store over `data` and `keys`.
    pub fn open(data: &Path, keys: &Path) -> Result<Self, PiiError> {
        make_dir(data)?;
        make_dir(keys)?;
        let log_path = data.join("access.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_err(&log_path))?;
        Ok(Self {
            data: data.to_owned(),
            keys: keys.to_owned(),
            log: Mutex::new(log),
        })
    }

    fn record_path(&self, p: &ParticipantId) -> PathBuf {
        self.data.join(format!("{p}.rec"))
    }

    fn key_path(&self, p: &ParticipantId) -> PathBuf {
        self.keys.join(format!("{p}.key"))
    }

    /// Appends one line to the access log.
    pub fn log(&self, who: Option<&AccountId>, p: &ParticipantId, action: &str, outcome: &str) {
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let line = serde_json::json!({
            "time_ms": time_ms,
            "account": who.map(ToString::to_string),
            "participant": p.to_string(),
            "action": action,
            "outcome": outcome,
        });
        let mut f = self.log.lock().expect("access log poisoned");
        // The log must not lose an access silently: a failing write is reported by the node's
        // own log, but the access itself has already been decided.
        if let Err(e) = writeln!(f, "{line}").and_then(|()| f.sync_data()) {
            tracing::error!(error = %e, "cannot write the personal-data access log");
        }
    }

    /// Stores `record` for `p` under a fresh key and salt.
    pub fn put(&self, p: &ParticipantId, record: &[u8]) -> Result<Stored, PiiError> {
        if record.len() > RECORD_BYTES_MAX {
            return Err(PiiError::BadRecord(format!(
                "the record is {} bytes; at most {RECORD_BYTES_MAX}",
                record.len()
            )));
        }
        let value: serde_json::Value = serde_json::from_slice(record)
            .map_err(|e| PiiError::BadRecord(format!("the record is not JSON: {e}")))?;
        if !value.is_object() {
            return Err(PiiError::BadRecord(
                "the record must be a JSON object".into(),
            ));
        }
        let (rec_path, key_path) = (self.record_path(p), self.key_path(p));
        if rec_path.exists() || key_path.exists() {
            return Err(PiiError::Exists(*p));
        }
        let mut rng = rand::rng();
        let mut key = [0u8; KEY_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut key);
        rng.fill_bytes(&mut nonce);
        rng.fill_bytes(&mut salt);
        let mut plain = Vec::with_capacity(SALT_LEN + record.len());
        plain.extend_from_slice(&salt);
        plain.extend_from_slice(record);
        let ciphertext = cipher(&key)
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: &aad(p),
                },
            )
            .map_err(|_| PiiError::Io("encryption failed".into()))?;
        let mut file = nonce.to_vec();
        file.extend_from_slice(&ciphertext);
        // The key first: a record without its key could never be read.
        write_new(&key_path, &key)?;
        write_new(&rec_path, &file)?;
        Ok(Stored {
            salt,
            commitment: pii_commitment(p, &salt, record),
        })
    }

    /// Reads `p`'s record.
    pub fn get(&self, p: &ParticipantId) -> Result<Opened, PiiError> {
        let (rec_path, key_path) = (self.record_path(p), self.key_path(p));
        if !rec_path.exists() {
            return Err(PiiError::NotFound(*p));
        }
        if !key_path.exists() {
            return Err(PiiError::Erased(*p));
        }
        let key = fs::read(&key_path).map_err(io_err(&key_path))?;
        let key: [u8; KEY_LEN] = key
            .try_into()
            .map_err(|_| PiiError::Io(format!("{} is not a key", key_path.display())))?;
        let file = fs::read(&rec_path).map_err(io_err(&rec_path))?;
        if file.len() < NONCE_LEN {
            return Err(PiiError::Io(format!("{} is truncated", rec_path.display())));
        }
        let (nonce, ciphertext) = file.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at the nonce's length");
        let plain = cipher(&key)
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad(p),
                },
            )
            .map_err(|_| {
                PiiError::Io(format!(
                    "{} does not decrypt with its key (damaged, or another participant's)",
                    rec_path.display()
                ))
            })?;
        if plain.len() < SALT_LEN {
            return Err(PiiError::Io(format!("{} is truncated", rec_path.display())));
        }
        let (salt, record) = plain.split_at(SALT_LEN);
        let salt: [u8; SALT_LEN] = salt.try_into().expect("split at the salt's length");
        Ok(Opened {
            commitment: pii_commitment(p, &salt, record),
            record: record.to_vec(),
            salt,
        })
    }

    /// Erases `p`'s personal data for good: overwrites its key file in place (random bytes,
    /// then zeros, each synced) and removes it. The ciphertext stays, unreadable.
    pub fn erase(&self, p: &ParticipantId) -> Result<(), PiiError> {
        let key_path = self.key_path(p);
        if !key_path.exists() {
            return Err(if self.record_path(p).exists() {
                PiiError::Erased(*p)
            } else {
                PiiError::NotFound(*p)
            });
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(&key_path)
            .map_err(io_err(&key_path))?;
        let len = f.metadata().map_err(io_err(&key_path))?.len() as usize;
        let mut noise = vec![0u8; len];
        rand::rng().fill_bytes(&mut noise);
        for pass in [noise, vec![0u8; len]] {
            f.rewind().map_err(io_err(&key_path))?;
            f.write_all(&pass).map_err(io_err(&key_path))?;
            f.sync_all().map_err(io_err(&key_path))?;
        }
        drop(f);
        fs::remove_file(&key_path).map_err(io_err(&key_path))?;
        // The directory entry's removal is durable too.
        if let Ok(dir) = fs::File::open(&self.keys) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

fn cipher(key: &[u8; KEY_LEN]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(&(*key).into())
}

/// The associated data of `p`'s record: the domain and the UUID, so a record moved to another
/// participant's name does not decrypt.
fn aad(p: &ParticipantId) -> Vec<u8> {
    let mut a = AAD_DOMAIN.to_vec();
    a.extend_from_slice(&p.0);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(dir: &Path, out: &mut Vec<Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(fs::read(&path).unwrap());
            }
        }
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn a_record_is_sealed_read_back_by_its_commitment_and_shredded_for_good() {
        let root = tempfile::tempdir().unwrap();
        let store = PiiStore::open(&root.path().join("pii"), &root.path().join("keys")).unwrap();
        let p = ParticipantId([7; 16]);
        let record = br#"{"name":"Alice Example","address":"1 Main Street"}"#;
        let stored = store.put(&p, record).unwrap();
        assert_eq!(stored.commitment, pii_commitment(&p, &stored.salt, record));
        assert!(matches!(store.put(&p, record), Err(PiiError::Exists(_))));
        let opened = store.get(&p).unwrap();
        assert_eq!(
            (opened.record.as_slice(), opened.salt, opened.commitment),
            (record.as_slice(), stored.salt, stored.commitment)
        );
        // The record file says nothing.
        let rec = fs::read(root.path().join("pii").join(format!("{p}.rec"))).unwrap();
        assert!(!contains(&rec, b"Alice"));
        let key = fs::read(root.path().join("keys").join(format!("{p}.key"))).unwrap();
        store.log(None, &p, "get", "ok");

        store.erase(&p).unwrap();
        assert!(matches!(store.get(&p), Err(PiiError::Erased(_))));
        assert!(matches!(store.erase(&p), Err(PiiError::Erased(_))));
        let mut files = Vec::new();
        walk(root.path(), &mut files);
        for f in &files {
            assert!(!contains(f, b"Alice"), "the plaintext is gone");
            assert!(!contains(f, b"1 Main Street"), "the plaintext is gone");
            assert!(!contains(f, &key), "the key is gone");
            assert!(
                !contains(f, hex::encode(&key).as_bytes()),
                "the key is gone"
            );
        }
    }

    #[test]
    fn bad_records_and_moved_files_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let store = PiiStore::open(&root.path().join("pii"), &root.path().join("keys")).unwrap();
        let p = ParticipantId([1; 16]);
        for bad in [&b"not json"[..], b"[1, 2]", b"\"a string\""] {
            assert!(matches!(store.put(&p, bad), Err(PiiError::BadRecord(_))));
        }
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(RECORD_BYTES_MAX));
        assert!(matches!(
            store.put(&p, big.as_bytes()),
            Err(PiiError::BadRecord(_))
        ));
        assert!(matches!(store.get(&p), Err(PiiError::NotFound(_))));
        // A record renamed to another participant (with that one's key) does not decrypt.
        let q = ParticipantId([2; 16]);
        store.put(&p, br#"{"name":"P"}"#).unwrap();
        store.put(&q, br#"{"name":"Q"}"#).unwrap();
        let data = root.path().join("pii");
        let keys = root.path().join("keys");
        fs::copy(data.join(format!("{p}.rec")), data.join(format!("{q}.rec"))).unwrap();
        fs::copy(keys.join(format!("{p}.key")), keys.join(format!("{q}.key"))).unwrap();
        assert!(
            matches!(store.get(&q), Err(PiiError::Io(_))),
            "bound to its UUID"
        );
    }
}
