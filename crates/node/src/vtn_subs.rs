//! OpenADR subscriptions (docs/openadr.md, "Subscriptions"): each VEN client's webhooks, kept
//! in the node's `openadr/subscriptions.json` (replaced atomically on every change). They are
//! the node's own, not the chain's: a VEN subscribes at the node it talks to.
//!
//! A callback URL must be `https`. Plain `http` is accepted only to a loopback host, and only
//! on a node whose configuration allows it (`[openadr] loopback_webhooks = true`, or the dev
//! node's `--openadr-loopback-webhooks`): for tests and a VEN on the same machine.

use serde::{Deserialize, Serialize};
use std::{
    path::{Path, PathBuf},
    sync::Mutex,
};
use thiserror::Error;

/// The most subscriptions one client holds.
pub const PER_CLIENT_MAX: usize = 32;

/// The objects this VTN notifies about.
pub const OBJECTS: [&str; 2] = ["PROGRAM", "EVENT"];

/// The operations a subscription may name (OpenADR 3.1.0); this VTN notifies `CREATE`,
/// `UPDATE` and `DELETE`.
pub const OPERATIONS: [&str; 4] = ["READ", "CREATE", "UPDATE", "DELETE"];

/// One object type and operation set with its webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectOperation {
    /// `PROGRAM`, `EVENT`.
    pub objects: Vec<String>,
    /// `CREATE`, `UPDATE`, `DELETE` (and `READ`, never notified).
    pub operations: Vec<String>,
    /// Where to `POST` the notifications.
    pub callback_url: String,
    /// Sent as `Authorization: Bearer` with each notification, if given.
    #[serde(default)]
    pub bearer_token: Option<String>,
}

/// What a client sends to create or replace a subscription (`subscriptionRequest`); the
/// metadata a client may echo back on a replace (`id`, times, `objectType`, `clientID`) is
/// ignored.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionRequest {
    /// The client's name for it (1 to 128 characters).
    pub client_name: String,
    /// Only this program's objects, if given.
    #[serde(rename = "programID", default)]
    pub program_id: Option<String>,
    /// What to notify, where.
    pub object_operations: Vec<ObjectOperation>,
    /// Only objects carrying every one of these targets, if given.
    #[serde(default)]
    pub targets: Option<Vec<String>>,
}

/// A stored subscription.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// Its id (an OpenADR object id).
    pub id: String,
    /// The VEN client that made it, and alone sees, changes and deletes it.
    pub client_id: String,
    /// As requested.
    pub client_name: String,
    /// As requested.
    pub program_id: Option<String>,
    /// As requested.
    pub object_operations: Vec<ObjectOperation>,
    /// As requested.
    pub targets: Option<Vec<String>>,
    /// When it was created, ms since the Unix epoch (the node's clock).
    pub created_ms: u64,
    /// When it was last replaced.
    pub modified_ms: u64,
}

impl Subscription {
    /// Whether an `object` (`PROGRAM` or `EVENT`) of `program` with `targets` changed by
    /// `operation` is to be sent to `op`'s webhook.
    pub fn wants(
        &self,
        op: &ObjectOperation,
        object: &str,
        operation: &str,
        program: &str,
        targets: &[String],
    ) -> bool {
        op.objects.iter().any(|o| o == object)
            && op.operations.iter().any(|o| o == operation)
            && self.program_id.as_deref().is_none_or(|p| p == program)
            && self
                .targets
                .as_ref()
                .is_none_or(|ts| ts.iter().all(|t| targets.contains(t)))
    }
}

/// Why a subscription was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SubscriptionError {
    /// The request breaks a rule (400).
    #[error("{0}")]
    Invalid(String),
    /// No such subscription of this client (404).
    #[error("no subscription {0:?}")]
    NotFound(String),
    /// The client holds the most it may (409).
    #[error("a client holds at most {PER_CLIENT_MAX} subscriptions: delete one first")]
    Full,
    /// The store could not be written (500).
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        error: String,
    },
}

/// Whether `url` may receive notifications: `https`, or `http` to a loopback host when
/// `loopback` allows it.
pub fn check_callback(url: &str, loopback: bool) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("callbackUrl {url:?}: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => {
            let local = match parsed.host() {
                Some(url::Host::Domain(d)) => d == "localhost",
                Some(url::Host::Ipv4(a)) => a.is_loopback(),
                Some(url::Host::Ipv6(a)) => a.is_loopback(),
                None => false,
            };
            if local {
                Ok(())
            } else {
                Err(format!(
                    "callbackUrl {url:?}: plain http only to a loopback host; use https"
                ))
            }
        }
        _ => Err(format!(
            "callbackUrl {url:?}: notifications go to https URLs only"
        )),
    }
}

fn check(r: &SubscriptionRequest, loopback: bool) -> Result<(), SubscriptionError> {
    let bad = |m: String| Err(SubscriptionError::Invalid(m));
    let n = r.client_name.chars().count();
    if n == 0 || n > 128 {
        return bad("clientName has 1 to 128 characters".into());
    }
    if let Some(p) = &r.program_id
        && !crate::vtn::is_object_id(p)
    {
        return bad(format!("programID {p:?} is not an object id"));
    }
    if r.object_operations.is_empty() {
        return bad("objectOperations names at least one webhook".into());
    }
    for op in &r.object_operations {
        if op.objects.is_empty() || op.operations.is_empty() {
            return bad("each objectOperations entry names objects and operations".into());
        }
        if let Some(o) = op.objects.iter().find(|o| !OBJECTS.contains(&o.as_str())) {
            return bad(format!(
                "objects: this VTN notifies about PROGRAM and EVENT, not {o:?}"
            ));
        }
        if let Some(o) = op
            .operations
            .iter()
            .find(|o| !OPERATIONS.contains(&o.as_str()))
        {
            return bad(format!(
                "operations: {o:?} is not READ, CREATE, UPDATE or DELETE"
            ));
        }
        if op.callback_url.len() > 8000 {
            return bad("callbackUrl has at most 8000 characters".into());
        }
        check_callback(&op.callback_url, loopback).map_err(SubscriptionError::Invalid)?;
    }
    if let Some(ts) = &r.targets
        && ts.iter().any(|t| t.is_empty() || t.len() > 128)
    {
        return bad("targets are strings of 1 to 128 characters".into());
    }
    Ok(())
}

/// The subscriptions of a node.
pub struct SubscriptionStore {
    path: Option<PathBuf>,
    subs: Mutex<Vec<Subscription>>,
    loopback: bool,
}

impl SubscriptionStore {
    /// The store in `path` (empty if absent); `loopback` allows plain-http callbacks to a
    /// loopback host.
    pub fn open(path: &Path, loopback: bool) -> Result<Self, SubscriptionError> {
        let subs = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| SubscriptionError::Io {
                path: path.display().to_string(),
                error: format!("not a subscription store: {e}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(SubscriptionError::Io {
                    path: path.display().to_string(),
                    error: e.to_string(),
                });
            }
        };
        Ok(Self {
            path: Some(path.to_owned()),
            subs: Mutex::new(subs),
            loopback,
        })
    }

    /// A store in memory only (tests, in-process networks).
    pub fn in_memory(loopback: bool) -> Self {
        Self {
            path: None,
            subs: Mutex::new(Vec::new()),
            loopback,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Subscription>> {
        self.subs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self, subs: &[Subscription]) -> Result<(), SubscriptionError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let bytes = serde_json::to_vec_pretty(subs).expect("subscriptions serialize");
        crate::files::replace_atomically(path, &bytes).map_err(|e| SubscriptionError::Io {
            path: path.display().to_string(),
            error: e.to_string(),
        })
    }

    /// Every subscription, in creation order.
    pub fn all(&self) -> Vec<Subscription> {
        self.lock().clone()
    }

    /// `client`'s subscriptions, in creation order.
    pub fn of(&self, client: &str) -> Vec<Subscription> {
        self.lock()
            .iter()
            .filter(|s| s.client_id == client)
            .cloned()
            .collect()
    }

    /// `client`'s subscription `id`.
    pub fn get(&self, client: &str, id: &str) -> Result<Subscription, SubscriptionError> {
        self.lock()
            .iter()
            .find(|s| s.client_id == client && s.id == id)
            .cloned()
            .ok_or_else(|| SubscriptionError::NotFound(id.to_owned()))
    }

    /// Adds `client`'s subscription made at `now_ms`.
    pub fn add(
        &self,
        client: &str,
        r: SubscriptionRequest,
        now_ms: u64,
    ) -> Result<Subscription, SubscriptionError> {
        check(&r, self.loopback)?;
        let mut subs = self.lock();
        if subs.iter().filter(|s| s.client_id == client).count() >= PER_CLIENT_MAX {
            return Err(SubscriptionError::Full);
        }
        let id = format!("sub-{}", crate::vtn_clients::random_hex(12));
        let sub = Subscription {
            id,
            client_id: client.to_owned(),
            client_name: r.client_name,
            program_id: r.program_id,
            object_operations: r.object_operations,
            targets: r.targets,
            created_ms: now_ms,
            modified_ms: now_ms,
        };
        let mut next = subs.clone();
        next.push(sub.clone());
        self.save(&next)?;
        *subs = next;
        Ok(sub)
    }

    /// Replaces `client`'s subscription `id`.
    pub fn replace(
        &self,
        client: &str,
        id: &str,
        r: SubscriptionRequest,
        now_ms: u64,
    ) -> Result<Subscription, SubscriptionError> {
        check(&r, self.loopback)?;
        let mut subs = self.lock();
        let mut next = subs.clone();
        let sub = next
            .iter_mut()
            .find(|s| s.client_id == client && s.id == id)
            .ok_or_else(|| SubscriptionError::NotFound(id.to_owned()))?;
        sub.client_name = r.client_name;
        sub.program_id = r.program_id;
        sub.object_operations = r.object_operations;
        sub.targets = r.targets;
        sub.modified_ms = now_ms.max(sub.created_ms);
        let sub = sub.clone();
        self.save(&next)?;
        *subs = next;
        Ok(sub)
    }

    /// Deletes `client`'s subscription `id`, returning it.
    pub fn delete(&self, client: &str, id: &str) -> Result<Subscription, SubscriptionError> {
        let mut subs = self.lock();
        let mut next = subs.clone();
        let i = next
            .iter()
            .position(|s| s.client_id == client && s.id == id)
            .ok_or_else(|| SubscriptionError::NotFound(id.to_owned()))?;
        let sub = next.remove(i);
        self.save(&next)?;
        *subs = next;
        Ok(sub)
    }

    /// Deletes every subscription of `client` (revoked).
    pub fn forget(&self, client: &str) -> Result<(), SubscriptionError> {
        let mut subs = self.lock();
        let next: Vec<Subscription> = subs
            .iter()
            .filter(|s| s.client_id != client)
            .cloned()
            .collect();
        if next.len() != subs.len() {
            self.save(&next)?;
            *subs = next;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(url: &str) -> SubscriptionRequest {
        SubscriptionRequest {
            client_name: "ven".into(),
            program_id: None,
            object_operations: vec![ObjectOperation {
                objects: vec!["EVENT".into()],
                operations: vec!["CREATE".into(), "UPDATE".into()],
                callback_url: url.into(),
                bearer_token: None,
            }],
            targets: None,
        }
    }

    #[test]
    fn callbacks_are_https_or_loopback_http_when_allowed() {
        assert!(check_callback("https://ven.example/cb", false).is_ok());
        assert!(check_callback("http://127.0.0.1:9/cb", false).is_err());
        assert!(check_callback("http://127.0.0.1:9/cb", true).is_ok());
        assert!(check_callback("http://[::1]:9/cb", true).is_ok());
        assert!(check_callback("http://localhost/cb", true).is_ok());
        assert!(check_callback("http://10.0.0.1/cb", true).is_err());
        assert!(check_callback("ftp://ven.example/cb", true).is_err());
        assert!(check_callback("not a url", true).is_err());
    }

    #[test]
    fn a_client_sees_changes_and_deletes_only_its_own() {
        let store = SubscriptionStore::in_memory(false);
        let a = store.add("a", request("https://a.example/cb"), 1).unwrap();
        assert!(crate::vtn::is_object_id(&a.id));
        assert_eq!(store.of("a"), vec![a.clone()]);
        assert!(store.of("b").is_empty());
        assert_eq!(
            store.get("b", &a.id),
            Err(SubscriptionError::NotFound(a.id.clone()))
        );
        assert!(store.delete("b", &a.id).is_err());
        let mut r = request("https://a.example/other");
        r.client_name = "renamed".into();
        let changed = store.replace("a", &a.id, r, 5).unwrap();
        assert_eq!(
            (changed.client_name.as_str(), changed.modified_ms),
            ("renamed", 5)
        );
        assert_eq!(store.delete("a", &a.id).unwrap().id, a.id);
        assert!(store.all().is_empty());
    }

    #[test]
    fn requests_are_checked() {
        let store = SubscriptionStore::in_memory(true);
        let mut r = request("https://a.example/cb");
        r.object_operations[0].objects = vec!["REPORT".into()];
        assert!(matches!(
            store.add("a", r, 1),
            Err(SubscriptionError::Invalid(_))
        ));
        let mut r = request("https://a.example/cb");
        r.object_operations[0].operations = vec!["POST".into()];
        assert!(matches!(
            store.add("a", r, 1),
            Err(SubscriptionError::Invalid(_))
        ));
        let mut r = request("https://a.example/cb");
        r.client_name = String::new();
        assert!(matches!(
            store.add("a", r, 1),
            Err(SubscriptionError::Invalid(_))
        ));
        for _ in 0..PER_CLIENT_MAX {
            store.add("a", request("https://a.example/cb"), 1).unwrap();
        }
        assert_eq!(
            store.add("a", request("https://a.example/cb"), 1),
            Err(SubscriptionError::Full)
        );
        store.forget("a").unwrap();
        assert!(store.all().is_empty());
    }

    #[test]
    fn the_store_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("openadr").join("subscriptions.json");
        let store = SubscriptionStore::open(&path, false).unwrap();
        let a = store.add("a", request("https://a.example/cb"), 1).unwrap();
        drop(store);
        let again = SubscriptionStore::open(&path, false).unwrap();
        assert_eq!(again.all(), vec![a]);
    }
}
