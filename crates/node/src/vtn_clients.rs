//! The OpenADR VEN clients a DSO registered on this node (docs/openadr.md): an id, a name, the
//! participant (account) it speaks for, and the SHA-256 of its secret, never the secret itself.
//! Kept off chain in `openadr/clients.json` of the data directory, rewritten whole (to a
//! temporary file, synced, renamed) on every change.
//!
//! Ids and secrets are drawn from the operating system's generator: ids `ven-` and 16 hex
//! digits, secrets 64 hex digits (256 bits), both within OpenADR's `[A-Za-z0-9_-]`. A secret of
//! 256 random bits needs no slow hash: its SHA-256 cannot be inverted or guessed.

use bcte_types::AccountId;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::{
    path::{Path, PathBuf},
    sync::Mutex,
};
use utoipa::ToSchema;

/// The longest client name (OpenADR's `venName`: 1 to 128 characters).
pub const NAME_MAX: usize = 128;

/// The most clients a node keeps (revoked ones included).
pub const CLIENTS_MAX: usize = 100_000;

/// One registered client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VenClient {
    /// Its client id.
    pub id: String,
    /// Its name (unique among the clients not revoked).
    pub name: String,
    /// The account of the participant it speaks for, if any (hex).
    pub participant: Option<String>,
    /// The SHA-256 of its secret (hex).
    #[serde(rename = "secret_sha256")]
    #[schema(ignore)]
    pub(crate) secret_sha256: String,
    /// When it was added, seconds since the Unix epoch.
    pub created_s: u64,
    /// When its secret was last set, seconds since the Unix epoch.
    pub secret_set_s: u64,
    /// Whether it was revoked (its secret and tokens no longer work).
    pub revoked: bool,
}

/// What went wrong with the registry.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request is not acceptable (a bad name, a duplicate, too many).
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with a client (a duplicate name, a revoked client rotated).
    #[error("{0}")]
    Conflict(String),
    /// The file could not be read or written.
    #[error("the OpenADR client registry {path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        error: String,
    },
}

/// The registry.
#[derive(Debug)]
pub struct ClientStore {
    path: Option<PathBuf>,
    clients: Mutex<Vec<VenClient>>,
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl ClientStore {
    /// The registry in `path` (created empty if absent).
    pub fn open(path: &Path) -> Result<Self, ClientError> {
        let io = |e: std::io::Error| ClientError::Io {
            path: path.display().to_string(),
            error: e.to_string(),
        };
        let clients = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ClientError::Io {
                path: path.display().to_string(),
                error: format!("not a client registry: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io(e)),
        };
        Ok(Self {
            path: Some(path.to_owned()),
            clients: Mutex::new(clients),
        })
    }

    /// A registry kept in memory only (tests, in-process networks).
    pub fn in_memory() -> Self {
        Self {
            path: None,
            clients: Mutex::new(Vec::new()),
        }
    }

    fn save(&self, clients: &[VenClient]) -> Result<(), ClientError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let io = |e: std::io::Error| ClientError::Io {
            path: path.display().to_string(),
            error: e.to_string(),
        };
        crate::files::replace_atomically(
            path,
            &serde_json::to_vec_pretty(clients).expect("clients serialize"),
        )
        .map_err(io)
    }

    /// Adds a client named `name` for `participant`: the client and its secret (shown once).
    pub fn add(
        &self,
        name: &str,
        participant: Option<AccountId>,
        now_s: u64,
    ) -> Result<(VenClient, String), ClientError> {
        if name.is_empty() || name.chars().count() > NAME_MAX || name.chars().any(char::is_control)
        {
            return Err(ClientError::Invalid(format!(
                "a client name has 1 to {NAME_MAX} characters and no control character"
            )));
        }
        let mut clients = self.clients.lock().expect("client registry poisoned");
        if clients.iter().any(|c| !c.revoked && c.name == name) {
            return Err(ClientError::Conflict(format!(
                "a client named {name:?} exists: revoke it first or choose another name"
            )));
        }
        if clients.len() >= CLIENTS_MAX {
            return Err(ClientError::Invalid(format!(
                "the node keeps at most {CLIENTS_MAX} clients"
            )));
        }
        let secret = random_hex(32);
        let client = VenClient {
            id: format!("ven-{}", random_hex(8)),
            name: name.to_owned(),
            participant: participant.map(|p| p.to_string()),
            secret_sha256: digest(&secret),
            created_s: now_s,
            secret_set_s: now_s,
            revoked: false,
        };
        clients.push(client.clone());
        if let Err(e) = self.save(&clients) {
            clients.pop();
            return Err(e);
        }
        Ok((client, secret))
    }

    /// Every client, in the order added.
    pub fn list(&self) -> Vec<VenClient> {
        self.clients
            .lock()
            .expect("client registry poisoned")
            .clone()
    }

    /// The client `id`, if registered.
    pub fn get(&self, id: &str) -> Option<VenClient> {
        self.list().into_iter().find(|c| c.id == id)
    }

    /// Revokes `id`: `Ok(None)` if there is no such client.
    pub fn revoke(&self, id: &str) -> Result<Option<VenClient>, ClientError> {
        self.update(id, |c| {
            c.revoked = true;
            None
        })
        .map(|r| r.map(|(c, _)| c))
    }

    /// Gives `id` a new secret (the old one stops working): `Ok(None)` if there is no such
    /// client; a revoked one cannot be rotated.
    pub fn rotate(&self, id: &str, now_s: u64) -> Result<Option<(VenClient, String)>, ClientError> {
        if self.get(id).is_some_and(|c| c.revoked) {
            return Err(ClientError::Conflict(format!(
                "client {id} is revoked: add a new one"
            )));
        }
        self.update(id, |c| {
            let secret = random_hex(32);
            c.secret_sha256 = digest(&secret);
            c.secret_set_s = now_s;
            Some(secret)
        })
        .map(|r| r.map(|(c, s)| (c, s.expect("rotation makes a secret"))))
    }

    fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut VenClient) -> Option<String>,
    ) -> Result<Option<(VenClient, Option<String>)>, ClientError> {
        let mut clients = self.clients.lock().expect("client registry poisoned");
        let Some(i) = clients.iter().position(|c| c.id == id) else {
            return Ok(None);
        };
        let before = clients[i].clone();
        let secret = change(&mut clients[i]);
        if let Err(e) = self.save(&clients) {
            clients[i] = before;
            return Err(e);
        }
        Ok(Some((clients[i].clone(), secret)))
    }

    /// The client `id` if it is active and `secret` is its secret.
    pub fn authenticate(&self, id: &str, secret: &str) -> Option<VenClient> {
        let d = digest(secret);
        self.get(id).filter(|c| !c.revoked && c.secret_sha256 == d)
    }

    /// The client `id` if it is active.
    pub fn active(&self, id: &str) -> Option<VenClient> {
        self.get(id).filter(|c| !c.revoked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_authenticates_until_rotated_or_revoked_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openadr/clients.json");
        let store = ClientStore::open(&path).unwrap();
        let (c, secret) = store.add("thermostat", None, 10).unwrap();
        assert!(c.id.starts_with("ven-") && c.id.len() == 20);
        assert!(secret.chars().all(|ch| ch.is_ascii_hexdigit()) && secret.len() == 64);
        assert_eq!(store.authenticate(&c.id, &secret), Some(c.clone()));
        assert_eq!(store.authenticate(&c.id, "wrong"), None);
        assert!(matches!(
            store.add("thermostat", None, 11),
            Err(ClientError::Conflict(_))
        ));
        // Only the hash is on disk.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&secret) && text.contains(&c.secret_sha256));
        let reopened = ClientStore::open(&path).unwrap();
        assert_eq!(reopened.authenticate(&c.id, &secret), Some(c.clone()));
        let (_, new_secret) = reopened.rotate(&c.id, 12).unwrap().unwrap();
        assert_eq!(reopened.authenticate(&c.id, &secret), None);
        assert!(reopened.authenticate(&c.id, &new_secret).is_some());
        reopened.revoke(&c.id).unwrap().unwrap();
        assert_eq!(reopened.authenticate(&c.id, &new_secret), None);
        assert!(reopened.rotate(&c.id, 13).is_err());
        assert_eq!(reopened.revoke("ven-none").unwrap(), None);
        // A revoked client's name may be reused.
        reopened.add("thermostat", None, 14).unwrap();
    }
}
