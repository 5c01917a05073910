//! A small blocking client of the node's HTTP API.

use anyhow::{Context as _, anyhow};
use bcte_node::auth_api::{ChallengeView, TokenRequest, TokenView};
use bcte_types::{AccountId, ChainId, auth::sign_challenge, ids::parse_hex_array};
use commonware_cryptography::{Signer as _, ed25519::PrivateKey};
use serde::{Serialize, de::DeserializeOwned};
use std::{path::Path, sync::Mutex, time::Duration};

/// A client of one node; with a key, it signs in (AC-6.1) and sends its read token with every
/// request.
pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// The key it signs in with, and the account it signs in as (the key's own, or an account
    /// whose current key it is: AC-4).
    key: Option<(PrivateKey, AccountId)>,
    token: Mutex<Option<String>>,
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    error: String,
}

impl Client {
    /// A client of the node at `url` (for example `http://127.0.0.1:8645`).
    pub fn new(url: &str) -> Self {
        Self::with_timeout(url, Duration::from_secs(90))
    }

    /// A client whose every request gives up after `timeout`.
    pub fn with_timeout(url: &str, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            base: url.trim_end_matches('/').to_string(),
            agent,
            key: None,
            token: Mutex::new(None),
        }
    }

    /// This client, signed in as `key`'s account: every request carries its read token.
    pub fn with_key(self, key: PrivateKey) -> Self {
        let account = AccountId::from_public_key(&key.public_key());
        self.signed_in_as(key, account)
    }

    /// This client, signed in as `account`, whose current key is `key`.
    pub fn signed_in_as(mut self, key: PrivateKey, account: AccountId) -> Self {
        self.key = Some((key, account));
        self
    }

    /// A client of `url` signed in with the key in `key_file` as `account` (by default the
    /// key's own).
    pub fn signed_in(
        url: &str,
        key_file: &Path,
        account: Option<AccountId>,
    ) -> anyhow::Result<Self> {
        let key = bcte_node::files::read_key(key_file)?;
        let client = Self::new(url);
        Ok(match account {
            Some(a) => client.signed_in_as(key, a),
            None => client.with_key(key),
        })
    }

    /// A client of `url` reading as the key in `key_file`, or as the public without one.
    pub fn reading(url: &str, key_file: Option<&Path>) -> anyhow::Result<Self> {
        let client = Self::new(url);
        Ok(match key_file {
            Some(f) => client.with_key(bcte_node::files::read_key(f)?),
            None => client,
        })
    }

    /// Signs in and returns a fresh read token (for other HTTP clients: `curl -H
    /// "Authorization: Bearer $TOKEN"`); `None` without a key.
    pub fn sign_in(&self) -> anyhow::Result<Option<String>> {
        self.token(true)
    }

    /// A read token: the one held, or a new one (challenge, signature, token).
    fn token(&self, fresh: bool) -> anyhow::Result<Option<String>> {
        let Some((key, account)) = &self.key else {
            return Ok(None);
        };
        let mut held = self.token.lock().expect("token lock poisoned");
        if !fresh && let Some(t) = held.as_ref() {
            return Ok(Some(t.clone()));
        }
        let url = format!("{}/v1/auth/challenge", self.base);
        let c: ChallengeView = self.decode(
            "POST /v1/auth/challenge",
            self.agent.post(&url).send_empty(),
        )?;
        let challenge =
            parse_hex_array::<32>(&c.challenge).context("the node sent a malformed challenge")?;
        let chain = ChainId::new(c.chain_id).context("the node sent an invalid chain id")?;
        let signature = sign_challenge(key, &chain, &challenge);
        let request = TokenRequest {
            account: account.to_string(),
            challenge: c.challenge,
            signature: hex::encode(signature.as_ref()),
        };
        let url = format!("{}/v1/auth/token", self.base);
        let t: TokenView = self
            .decode(
                "POST /v1/auth/token",
                self.agent.post(&url).send_json(&request),
            )
            .context("signing in to the node")?;
        *held = Some(t.access_token.clone());
        Ok(Some(t.access_token))
    }

    /// Sends a request built by `send` (given the authorization header's value, if any),
    /// signing in again once if the node says the token expired.
    fn call<T: DeserializeOwned>(
        &self,
        what: &str,
        send: impl Fn(Option<&str>) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<T> {
        let token = self.token(false)?;
        let bearer = token.map(|t| format!("Bearer {t}"));
        match self.decode(what, send(bearer.as_deref())) {
            Err(e)
                if self.key.is_some()
                    && e.downcast_ref::<NodeError>()
                        .is_some_and(|n| n.status == 401 && n.message.contains("expired")) =>
            {
                let bearer = self.token(true)?.map(|t| format!("Bearer {t}"));
                self.decode(what, send(bearer.as_deref()))
            }
            r => r,
        }
    }

    fn decode<T: DeserializeOwned>(
        &self,
        what: &str,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<T> {
        let mut resp = resp.map_err(|e| anyhow!("cannot reach the node at {}: {e}", self.base))?;
        let status = resp.status();
        if status.is_success() {
            return resp
                .body_mut()
                .read_json::<T>()
                .with_context(|| format!("reading the answer to {what}"));
        }
        let message = resp
            .body_mut()
            .read_json::<ErrorBody>()
            .map(|b| b.error)
            .unwrap_or_else(|_| status.to_string());
        Err(NodeError {
            status: status.as_u16(),
            message,
        }
        .into())
    }

    /// `GET path`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        self.call(&format!("GET {path}"), |auth| {
            authorized(self.agent.get(&url), auth).call()
        })
    }

    /// `POST path` with a binary body (`application/octet-stream`).
    pub fn post_bytes<T: DeserializeOwned>(&self, path: &str, body: &[u8]) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        self.call(&format!("POST {path}"), |auth| {
            let r = self
                .agent
                .post(&url)
                .header("content-type", "application/octet-stream");
            authorized(r, auth).send(body)
        })
    }

    /// `PUT path` with a JSON body given as its exact bytes.
    pub fn put_json_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &[u8],
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        self.call(&format!("PUT {path}"), |auth| {
            let r = self
                .agent
                .put(&url)
                .header("content-type", "application/json");
            authorized(r, auth).send(body)
        })
    }

    /// `DELETE path`.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        self.call(&format!("DELETE {path}"), |auth| {
            authorized(self.agent.delete(&url), auth).call()
        })
    }

    /// `POST path` with a JSON body.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        self.call(&format!("POST {path}"), |auth| {
            authorized(self.agent.post(&url), auth).send_json(body)
        })
    }
}

/// `r` with the `Authorization` header `auth`, if any.
fn authorized<B>(r: ureq::RequestBuilder<B>, auth: Option<&str>) -> ureq::RequestBuilder<B> {
    match auth {
        Some(a) => r.header("authorization", a),
        None => r,
    }
}

/// An error answer from the node.
#[derive(Debug, thiserror::Error)]
#[error("the node refused ({status}): {message}")]
pub struct NodeError {
    /// The HTTP status.
    pub status: u16,
    /// The node's reason.
    pub message: String,
}
