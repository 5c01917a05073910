//! A small blocking client of the node's HTTP API.

use anyhow::{Context as _, anyhow};
use serde::{Serialize, de::DeserializeOwned};
use std::time::Duration;

/// A client of one node.
pub struct Client {
    base: String,
    agent: ureq::Agent,
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
        self.decode(&format!("GET {path}"), self.agent.get(&url).call())
    }

    /// `POST path` with a binary body (`application/octet-stream`).
    pub fn post_bytes<T: DeserializeOwned>(&self, path: &str, body: &[u8]) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        self.decode(
            &format!("POST {path}"),
            self.agent
                .post(&url)
                .header("content-type", "application/octet-stream")
                .send(body),
        )
    }

    /// `POST path` with a JSON body.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base);
        self.decode(
            &format!("POST {path}"),
            self.agent.post(&url).send_json(body),
        )
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
