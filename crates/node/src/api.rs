//! The HTTP API (JSON): submit transactions, read accounts, blocks, receipts and state proofs.
//!
//! [`router`] builds the routes over shared node state, apart from serving them, so tests call it
//! in-process. Every error is a JSON object `{"error": "..."}`: 4xx says what was wrong with the
//! request and is not logged as a node error; 5xx says "internal error" and is logged once.
//! The OpenAPI description is served at `/openapi.json`.
//!
//! Strings: hashes, roots and byte strings are lowercase hex; an ACCOUNT is the hex of its 32-byte
//! public key; amounts are integers in token base units; times are ms since the Unix epoch.

use crate::market_api::{read, reads_whole_feeder};
use crate::{
    app::Shared,
    auth::Viewer,
    cert,
    gossip::Outbox,
    mempool::AdmitError,
    routes::{ReadRule, Route},
};
use axum::{
    Extension, Json, Router,
    extract::{DefaultBodyLimit, Path, Query, State, rejection::JsonRejection},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bcte_ledger::{
    StateKey, StateProof,
    exec::decode_account,
    identity::ParticipantState,
    market_state::{FeederState, SiteState},
    prove, tree,
};
use bcte_store::{Store, StoreError};
use bcte_types::{
    AccountId, Block, Hash, Height, Outcome, Payload, Receipt, Role, Tx, ids::parse_hash,
};
use commonware_codec::{Copying, DecodeExt, Encode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::{sync::Arc, time::Duration};
use tracing::error;
use utoipa::{OpenApi, ToSchema};

/// The largest request body accepted by every route but the two that submit transactions.
pub const BODY_BYTES_MAX: usize = 64 * 1024;

/// The largest `POST /v1/txs` body: a hex-encoded transaction of the largest (bulk) kind, and
/// the JSON around it.
pub const SUBMIT_BODY_BYTES_MAX: usize = 2 * bcte_types::tx::TX_BYTES_LIMIT + 1024;

/// Most transactions in one `POST /v1/txs/batch`.
pub const BATCH_TXS_MAX: usize = 4_096;

/// The largest batch request body.
pub const BATCH_BODY_BYTES_MAX: usize = 8 * 1024 * 1024;

/// The longest a client may ask `GET /v1/txs/{hash}` to wait for finality.
pub const WAIT_MS_MAX: u64 = 60_000;

/// How long `GET /v1/txs/{hash}` waits for a transaction this node does not know.
const UNKNOWN_WAIT_MS: u64 = 2_000;

/// What the API serves from.
pub struct ApiState<S: Store> {
    /// Node state.
    pub shared: Arc<Shared<S>>,
    /// Where admitted transactions go to reach other validators.
    pub outbox: Option<Outbox>,
    /// The node's metrics in the Prometheus text format, served at `/metrics` (absent: 404).
    pub metrics: Option<MetricsSource>,
    /// The off-chain store of raw meter batches.
    pub batches: Arc<dyn bcte_store::BlobStore>,
    /// The issuer of read tokens (AC-6.1).
    pub auth: Arc<crate::auth::Auth>,
    /// The registrar's store of personal data (AC-2.4); absent: this node keeps none.
    pub pii: Option<Arc<crate::pii::PiiStore>>,
    /// The OpenADR 3 VTN served under [`crate::vtn::PREFIX`]; absent: none.
    pub vtn: Option<Arc<crate::vtn::Vtn>>,
    /// Whether the API is served over TLS (the VTN's token URL says `https`).
    pub tls: bool,
    /// The dashboard at `/` and what it may show.
    pub dashboard: crate::config::DashboardConfig,
}

/// Renders the node's metrics (the runtime's registry: consensus, p2p, storage) as Prometheus
/// text.
pub type MetricsSource = Arc<dyn Fn() -> String + Send + Sync>;

/// The views nullified or timed out, summed over every simplex engine whose metrics `text` (the
/// Prometheus text of `/metrics`, or of a simulated runtime holding several validators) holds:
/// what a slow block would show first.
pub fn nullified_views(text: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            let name = l.split(['{', ' ']).next().unwrap_or("");
            name.contains("voter_state_nullifications") || name.contains("voter_state_timeouts")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// An API error: a status and a message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// 400: the request is malformed; `message` says how.
    pub(crate) fn bad_request(message: impl ToString) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.to_string(),
        }
    }

    /// 403: the request is well formed but what it asks for may not be read (yet).
    pub(crate) fn forbidden(message: impl ToString) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            message: message.to_string(),
        }
    }

    /// 401: the credentials are missing, malformed, expired or forged (AC-6.1).
    pub(crate) fn unauthorized(message: impl ToString) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            message: message.to_string(),
        }
    }

    /// 429: the node refuses more of this for now.
    pub(crate) fn too_many(message: impl ToString) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: message.to_string(),
        }
    }

    /// Any status.
    pub(crate) fn with_status(status: StatusCode, message: impl ToString) -> Self {
        Self {
            status,
            message: message.to_string(),
        }
    }

    /// The HTTP status, as a number.
    pub fn status(&self) -> u16 {
        self.status.as_u16()
    }

    /// 404: what it names does not exist (or not yet).
    pub(crate) fn not_found(message: impl ToString) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.to_string(),
        }
    }

    /// What the error says.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// 500, logged once: the node failed, not the request.
    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        error!(error = %e, "API internal error");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "internal error".into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::internal(e)
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let mut response = (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response();
        if unauthorized {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// `GET /health`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `"ok"` when the node answers.
    pub status: String,
    /// The last committed height.
    pub height: u64,
}

/// `GET /v1/head`: the last committed block.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HeadView {
    /// The chain id.
    pub chain_id: String,
    /// Height.
    pub height: u64,
    /// Block hash.
    pub hash: String,
    /// Block timestamp, ms since the Unix epoch.
    pub timestamp: u64,
    /// State root after the block.
    pub state_root: String,
    /// Transactions waiting in this node's mempool.
    pub mempool: usize,
}

/// `POST /v1/txs` request: one encoded transaction.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The transaction's canonical encoding, hex.
    #[schema(pattern = "^([0-9a-fA-F]{2})+$")]
    pub tx: String,
}

/// `POST /v1/txs` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubmitResponse {
    /// The transaction hash (SHA-256 of its signed body), hex.
    pub hash: String,
}

/// A transaction's canonical encoding, hex (the schema of each entry of a batch).
#[derive(ToSchema)]
#[schema(pattern = "^([0-9a-fA-F]{2})+$")]
#[allow(dead_code)] // only a schema
pub struct HexTx(String);

/// `POST /v1/txs/batch` request: many encoded transactions, admitted in order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBatchRequest {
    /// The transactions' canonical encodings, hex (at most 4096).
    #[schema(value_type = Vec<HexTx>, max_items = 4096)]
    pub txs: Vec<String>,
}

/// The outcome of one transaction of a batch.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchItem {
    /// The transaction hash, when it decoded.
    pub hash: Option<String>,
    /// Why it was not admitted (absent when admitted).
    pub error: Option<String>,
}

/// `POST /v1/txs/batch` response: one item per submitted transaction, in order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubmitBatchResponse {
    /// How many were admitted.
    pub admitted: usize,
    /// Per transaction.
    pub results: Vec<BatchItem>,
}

/// A transaction's status.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TxStatus {
    /// The transaction hash.
    pub hash: String,
    /// `pending` (in the mempool), `accepted` or `rejected` (final).
    pub status: String,
    /// The height of its block, once final.
    pub height: Option<u64>,
    /// Its index in the block, once final.
    pub index: Option<u32>,
    /// The hash of its block, once final.
    pub block: Option<String>,
    /// Why it was rejected.
    pub reason: Option<String>,
}

/// An account.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    /// The account (hex of its public key).
    pub account: String,
    /// Balance in token base units.
    pub balance: u64,
    /// The nonce its next transaction must carry.
    pub nonce: u64,
    /// Its open positions against market accounts (ST-5.2): negative, a debt it owes;
    /// positive, a payment owed to it. Empty when it owes and is owed nothing.
    #[serde(default)]
    pub positions: Vec<PositionView>,
    /// Its roles (AC-1), by name; empty: it may only receive.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The participant it belongs to, once enrolled (AC-2.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant: Option<String>,
    /// The key its transactions must be signed with (AC-4.1): its id until it rotates.
    #[serde(default)]
    pub key: String,
    /// Whether the registrar revoked it (AC-5.1).
    #[serde(default)]
    pub revoked: bool,
    /// The height this answer is for.
    pub height: u64,
}

/// An open position of an account against a market account.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PositionView {
    /// The market account.
    pub market: String,
    /// Base units: negative, owed by the account; positive, owed to it.
    pub amount: i64,
}

/// A transaction inside a block.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TxView {
    /// Hash.
    pub hash: String,
    /// Its kind (`transfer`, `bids`, ...). This and the fields below are shown only to its
    /// sender's accounts, auditors and regulators (AC-6.4); null for everyone else.
    pub kind: Option<String>,
    /// Sender account.
    pub sender: Option<String>,
    /// Nonce.
    pub nonce: Option<u64>,
    /// What it does: `{"type": "transfer", "to": ACCOUNT, "amount": N}` and the like; a bid's
    /// curve reads `"sealed"` until its interval is cleared.
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    /// `accepted` or `rejected`: shown to everyone.
    pub status: String,
    /// Why it was rejected.
    pub reason: Option<String>,
}

/// A block.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BlockView {
    /// Height.
    pub height: u64,
    /// Hash (SHA-256 of the encoded header).
    pub hash: String,
    /// Parent hash.
    pub parent: String,
    /// Timestamp, ms since the Unix epoch.
    pub timestamp: u64,
    /// State root after this block.
    pub state_root: String,
    /// Root over this block's receipts.
    pub receipts_root: String,
    /// Root over this block's transaction hashes.
    pub tx_root: String,
    /// The proposer (validator public key), zero for genesis.
    pub proposer: String,
    /// The encoded header, hex: a client recomputes the hash from it.
    pub header: String,
    /// Whether the node holds this block's own finality certificate.
    pub certified: bool,
    /// The transactions with their outcome.
    pub txs: Vec<TxView>,
}

/// A state proof.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProofView {
    /// The height the proof speaks for.
    pub height: u64,
    /// The key (`account/<ACCOUNT>`, `supply`, `head`, `config`).
    pub key: String,
    /// The value bytes, hex, or null when the key is absent.
    pub value: Option<String>,
    /// The whole proof's canonical bytes, hex (see docs/encoding.md).
    pub proof: String,
    /// The state root of block `height`, hex.
    pub state_root: String,
    /// The hash of block `height`, hex.
    pub block_hash: String,
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    wait_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct HeightQuery {
    height: Option<u64>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "bcte node API",
        description = "Submit transactions; read accounts, blocks, receipts and state proofs."
    ),
    paths(
        health,
        metrics,
        head,
        submit_tx,
        submit_batch,
        tx_status,
        account,
        block,
        proof,
        certificate
    ),
    components(schemas(
        Health,
        HeadView,
        SubmitRequest,
        HexTx,
        SubmitResponse,
        SubmitBatchRequest,
        SubmitBatchResponse,
        BatchItem,
        TxStatus,
        AccountView,
        PositionView,
        TxView,
        BlockView,
        ProofView,
        ErrorBody,
        CertificateView
    ))
)]
struct ApiDoc;

/// The OpenAPI description of this API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::market_api::MarketDoc::openapi());
    doc.merge(crate::settle_api::SettleDoc::openapi());
    doc.merge(crate::batch_api::BatchDoc::openapi());
    doc.merge(crate::billing_api::BillingDoc::openapi());
    doc.merge(crate::auth_api::AuthDoc::openapi());
    doc.merge(crate::pii_api::PiiDoc::openapi());
    doc.merge(crate::export_api::ExportDoc::openapi());
    doc.merge(crate::vtn_admin_api::VtnAdminDoc::openapi());
    doc.merge(crate::dashboard::StreamDoc::openapi());
    crate::routes::annotate(&mut doc);
    doc
}

/// The core routes of the table ([`crate::routes`]).
pub(crate) fn routes<S: Store>() -> Vec<Route<S>> {
    use ReadRule::{Public, Redacted};
    vec![
        Route::new(Method::GET, "/health", Public, get(health::<S>)),
        Route::new(
            Method::GET,
            "/openapi.json",
            Public,
            get(|| async { Json(openapi()) }),
        ),
        Route::new(Method::GET, "/metrics", Public, get(metrics::<S>)),
        Route::new(Method::GET, "/v1/head", Public, get(head::<S>)),
        Route::new(
            Method::POST,
            "/v1/txs",
            Public,
            post(submit_tx::<S>).layer(DefaultBodyLimit::max(SUBMIT_BODY_BYTES_MAX)),
        ),
        Route::new(
            Method::POST,
            "/v1/txs/batch",
            Public,
            post(submit_batch::<S>).layer(DefaultBodyLimit::max(BATCH_BODY_BYTES_MAX)),
        ),
        Route::new(Method::GET, "/v1/txs/{hash}", Redacted, get(tx_status::<S>)),
        Route::new(
            Method::GET,
            "/v1/accounts/{account}",
            ReadRule::Own,
            get(account::<S>),
        ),
        Route::new(Method::GET, "/v1/blocks/{id}", Redacted, get(block::<S>)),
        Route::new(Method::GET, "/v1/proofs/{*key}", Redacted, get(proof::<S>)),
        Route::new(
            Method::GET,
            "/v1/certificates/{height}",
            Public,
            get(certificate::<S>),
        ),
    ]
}

/// The API's routes over `state`: the route table ([`crate::routes`]), every error a JSON body.
pub fn router<S: Store>(state: Arc<ApiState<S>>) -> Router {
    let vtn = state
        .vtn
        .is_some()
        .then(|| crate::vtn::router(state.clone()));
    let dashboard = crate::dashboard::router(state.dashboard);
    let main = crate::routes::router(state.clone())
        .fallback(|| async { ApiError::not_found("no such route (see /openapi.json)") })
        .method_not_allowed_fallback(|| async {
            ApiError {
                status: StatusCode::METHOD_NOT_ALLOWED,
                message: "method not allowed on this route (see /openapi.json)".into(),
            }
        })
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
        .merge(dashboard);
    match vtn {
        Some(v) => main.nest_service(crate::vtn::PREFIX, v),
        None => main,
    }
}

/// Makes every error a JSON `{"error"}` body, as the module promises, whatever produced it:
/// axum's own rejections (a path or query parameter that does not parse, a missing or wrong
/// content type, a JSON body of the wrong shape, a body over its limit) answer in plain text,
/// and with 415 or 422 for the body. Those are malformed requests like any other: 400, with
/// axum's text as the message. Other statuses (413, 405 with its `Allow` header) are kept.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let status = match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::UNPROCESSABLE_ENTITY => {
            StatusCode::BAD_REQUEST
        }
        s => s,
    };
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json && status == response.status() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, BODY_BYTES_MAX)
        .await
        .unwrap_or_default();
    let message = if is_json {
        serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|b| b.error)
            .unwrap_or_default()
    } else {
        String::from_utf8_lossy(&bytes).trim().to_owned()
    };
    let message = if message.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        message
    };
    let json = serde_json::to_vec(&ErrorBody { error: message }).unwrap_or_default();
    parts.status = status;
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(json))
}

/// Liveness: 200 once the node serves requests.
#[utoipa::path(get, path = "/health", responses((status = 200, body = Health)))]
async fn health<S: Store>(State(st): State<Arc<ApiState<S>>>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        height: st.shared.executor.tip().height.get(),
    })
}

/// The node's metrics in the Prometheus text format: consensus views, p2p connections and
/// messages per peer and channel, storage, task counts.
#[utoipa::path(get, path = "/metrics", responses((status = 200, body = String, content_type = "text/plain"), (status = 404, body = ErrorBody)))]
async fn metrics<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
) -> Result<([(axum::http::HeaderName, &'static str); 1], String), ApiError> {
    let render = st
        .metrics
        .as_ref()
        .ok_or_else(|| ApiError::not_found("this server has no metrics"))?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(),
    ))
}

/// The last committed block.
#[utoipa::path(get, path = "/v1/head", responses((status = 200, body = HeadView)))]
async fn head<S: Store>(State(st): State<Arc<ApiState<S>>>) -> Json<HeadView> {
    let tip = st.shared.executor.tip();
    let mempool = st
        .shared
        .mempool
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .len();
    Json(HeadView {
        chain_id: st.shared.executor.chain_id().to_string(),
        height: tip.height.get(),
        hash: hex::encode(tip.hash),
        timestamp: tip.header.timestamp_ms,
        state_root: hex::encode(tip.header.state_root),
        mempool,
    })
}

/// A body that did not parse: 413 if over its limit, otherwise 400 (axum answers 415 for a
/// missing content type and 422 for JSON of the wrong shape; both are malformed requests here).
fn body_error(e: JsonRejection) -> ApiError {
    let status = match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError {
        status,
        message: format!("malformed request body: {}", e.body_text()),
    }
}

/// Decodes the hex of an encoded transaction; the error names `what` was wrong.
fn parse_tx(text: &str, what: &str) -> Result<Tx, String> {
    let bytes = hex::decode(text.trim()).map_err(|e| format!("{what} is not hex: {e}"))?;
    Tx::decode(Copying(&bytes)).map_err(|e| format!("{what} is not a transaction: {e}"))
}

/// Submits a signed transaction. 202 once admitted to the mempool (not yet final).
#[utoipa::path(
    post,
    path = "/v1/txs",
    request_body = SubmitRequest,
    responses(
        (status = 202, body = SubmitResponse, description = "admitted; poll GET /v1/txs/{hash}"),
        (status = 400, body = ErrorBody, description = "malformed, wrong chain, bad signature, bad nonce, overdraft"),
        (status = 413, body = ErrorBody, description = "body larger than 2 MiB (a bulk transaction of 1 MiB, hex-encoded)"),
        (status = 503, body = ErrorBody, description = "mempool full; retry later"),
    )
)]
async fn submit_tx<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    body: Result<Json<SubmitRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<SubmitResponse>), ApiError> {
    let Json(req) = body.map_err(body_error)?;
    let tx = parse_tx(&req.tx, "field tx").map_err(ApiError::bad_request)?;
    crate::batch_api::check_stored_batch(st.batches.as_ref(), &tx)
        .map_err(ApiError::bad_request)?;
    let shared = st.shared.clone();
    let submitted = tx.clone();
    // Signature checks are CPU work; keep them off the async workers.
    let result = tokio::task::spawn_blocking(move || shared.admit(submitted))
        .await
        .map_err(ApiError::internal)?;
    match result {
        Ok(hash) => {
            if let Some(outbox) = &st.outbox {
                outbox.send(tx);
            }
            Ok((
                StatusCode::ACCEPTED,
                Json(SubmitResponse {
                    hash: hex::encode(hash),
                }),
            ))
        }
        Err(e @ (AdmitError::Full(_) | AdmitError::SenderFull(_))) => Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: e.to_string(),
        }),
        Err(e @ AdmitError::Storage(_)) => Err(ApiError::internal(e)),
        Err(e) => Err(ApiError::bad_request(e)),
    }
}

/// Submits many signed transactions at once (an aggregator's bids, a load generator). Each is
/// checked and admitted in order as by `POST /v1/txs`; the answer says, per transaction,
/// whether it was admitted and why not. 200 even when some were refused.
#[utoipa::path(
    post,
    path = "/v1/txs/batch",
    request_body = SubmitBatchRequest,
    responses(
        (status = 200, body = SubmitBatchResponse, description = "per-transaction outcome"),
        (status = 400, body = ErrorBody, description = "malformed body, an entry that is not hex, or more than 4096 transactions"),
        (status = 413, body = ErrorBody, description = "body larger than 8 MiB"),
    )
)]
async fn submit_batch<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    body: Result<Json<SubmitBatchRequest>, JsonRejection>,
) -> Result<Json<SubmitBatchResponse>, ApiError> {
    let Json(req) = body.map_err(body_error)?;
    if req.txs.len() > BATCH_TXS_MAX {
        return Err(ApiError::bad_request(format!(
            "{} transactions in one batch; at most {BATCH_TXS_MAX}",
            req.txs.len()
        )));
    }
    // An entry that is not hex makes the request malformed (the schema's rule); one that is
    // hex but not a transaction is refused in place, like one the mempool refuses.
    if let Some(i) = req.txs.iter().position(|t| {
        let t = t.trim();
        t.is_empty() || hex::decode(t).is_err()
    }) {
        return Err(ApiError::bad_request(format!(
            "txs[{i}] is not a hex encoding of bytes"
        )));
    }
    let mut results: Vec<BatchItem> = Vec::with_capacity(req.txs.len());
    let mut decoded = Vec::with_capacity(req.txs.len());
    for (i, text) in req.txs.iter().enumerate() {
        match parse_tx(text, &format!("txs[{i}]")).and_then(|tx| {
            crate::batch_api::check_stored_batch(st.batches.as_ref(), &tx)
                .map(|()| tx)
                .map_err(|e| format!("txs[{i}]: {e}"))
        }) {
            Ok(tx) => {
                results.push(BatchItem {
                    hash: Some(hex::encode(tx.hash())),
                    error: None,
                });
                decoded.push((i, tx));
            }
            Err(e) => results.push(BatchItem {
                hash: None,
                error: Some(e),
            }),
        }
    }
    let shared = st.shared.clone();
    let txs: Vec<Tx> = decoded.iter().map(|(_, tx)| tx.clone()).collect();
    let admitted = tokio::task::spawn_blocking(move || shared.admit_many(txs, &mut rand::rng()))
        .await
        .map_err(ApiError::internal)?;
    let mut gossip = Vec::new();
    for ((i, tx), outcome) in decoded.into_iter().zip(admitted) {
        match outcome {
            Ok(_) => gossip.push(tx),
            Err(e) => results[i].error = Some(e.to_string()),
        }
    }
    let count = gossip.len();
    if let Some(outbox) = &st.outbox {
        outbox.send_all(gossip);
    }
    Ok(Json(SubmitBatchResponse {
        admitted: count,
        results,
    }))
}

fn final_status<S: Store>(
    shared: &Shared<S>,
    viewer: &Viewer,
    hash: &Hash,
) -> Result<Option<TxStatus>, ApiError> {
    let store = shared.executor.store();
    let Some(loc) = store.tx_location(hash)? else {
        return Ok(None);
    };
    // Final means visible: a block the store holds but the executor has not yet published as
    // its tip would be reported final while every state read (the sender's nonce, a balance)
    // still answers from the block before. Waiters are woken when the tip moves.
    if loc.height > shared.executor.tip().height {
        return Ok(None);
    }
    let receipts = store
        .receipts(loc.height)?
        .ok_or_else(|| ApiError::internal("receipts missing"))?;
    let receipt = receipts
        .get(loc.index as usize)
        .ok_or_else(|| ApiError::internal("receipt missing"))?;
    let block = store
        .block(loc.height)?
        .ok_or_else(|| ApiError::internal("block missing"))?;
    Ok(Some(TxStatus {
        hash: hex::encode(hash),
        status: receipt.outcome.status().into(),
        height: Some(loc.height.get()),
        index: Some(loc.index),
        block: Some(hex::encode(block.hash())),
        // The reason may name accounts or amounts: its sender's accounts', auditors' and
        // regulators' (AC-6.4); everyone sees the outcome.
        reason: block
            .txs()
            .get(loc.index as usize)
            .filter(|tx| sees_tx(viewer, tx))
            .and_then(|_| receipt.outcome.reason().map(ToString::to_string)),
    }))
}

/// A transaction's status: final (with its receipt) or pending. `wait_ms` (at most 60000) waits
/// for finality before answering.
#[utoipa::path(
    get,
    path = "/v1/txs/{hash}",
    params(("hash" = String, Path, pattern = "^[0-9a-fA-F]{64}$", description = "transaction hash, hex"),
           ("wait_ms" = Option<u64>, Query, minimum = 0, maximum = 60000, description = "wait up to this long for finality (ms)")),
    responses((status = 200, body = TxStatus), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody, description = "neither final nor waiting in this node's mempool"))
)]
async fn tx_status<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Extension(viewer): Extension<Viewer>,
    Path(hash): Path<String>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<TxStatus> {
    let hash = parse_hash(&hash).map_err(|e| ApiError::bad_request(format!("bad hash: {e}")))?;
    let wait_ms = q.wait_ms.unwrap_or(0);
    if wait_ms > WAIT_MS_MAX {
        return Err(ApiError::bad_request(format!(
            "wait_ms {wait_ms} is above the limit of {WAIT_MS_MAX}"
        )));
    }
    let wait = Duration::from_millis(wait_ms);
    let mut tips = st.shared.executor.subscribe();
    let now = tokio::time::Instant::now();
    let deadline = now + wait;
    // A transaction neither final nor waiting here is waited for only briefly (it may be
    // between leaving the mempool and its block's commit): nothing else would bring it.
    let unknown_deadline = deadline.min(now + Duration::from_millis(UNKNOWN_WAIT_MS));
    loop {
        if let Some(s) = final_status(&st.shared, &viewer, &hash)? {
            return Ok(Json(s));
        }
        let pending = st
            .shared
            .mempool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&hash);
        let until = if pending { deadline } else { unknown_deadline };
        let waited = tokio::time::timeout_at(until, tips.changed()).await;
        if !matches!(waited, Ok(Ok(()))) {
            if pending {
                return Ok(Json(TxStatus {
                    hash: hex::encode(hash),
                    status: "pending".into(),
                    height: None,
                    index: None,
                    block: None,
                    reason: None,
                }));
            }
            return Err(ApiError::not_found(format!(
                "unknown transaction {}",
                hex::encode(hash)
            )));
        }
    }
}

/// An account's balance and nonce at the committed tip. Unknown accounts read as zero.
#[utoipa::path(
    get,
    path = "/v1/accounts/{account}",
    params(("account" = String, Path, pattern = "^[0-9a-fA-F]{64}$", description = "ACCOUNT: hex of the 32-byte ed25519 public key; 400 for 32 bytes that are not a public key (no one could sign for that account)")),
    responses((status = 200, body = AccountView), (status = 400, body = ErrorBody))
)]
async fn account<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Extension(viewer): Extension<Viewer>,
    Path(account): Path<String>,
) -> ApiResult<AccountView> {
    let id: AccountId = account
        .parse()
        .map_err(|e| ApiError::bad_request(format!("bad account: {e}")))?;
    if !may_read_account(&st, &viewer, &id)? {
        return Err(ApiError::forbidden(format!(
            "account {id} is read only by itself, its participant's accounts, the registrar, \
             the DSO whose market account it is, auditors and regulators (AC-6.3)"
        )));
    }
    let tip = st.shared.executor.tip();
    let store = st.shared.executor.store();
    let value =
        tree::read_value(store, tip.height, &StateKey::Account(id)).map_err(ApiError::internal)?;
    let state = match value {
        None => Default::default(),
        Some(b) => decode_account(&b).ok_or_else(|| ApiError::internal("corrupt account value"))?,
    };
    Ok(Json(AccountView {
        account: id.to_string(),
        balance: state.balance.get(),
        nonce: state.nonce,
        positions: state
            .positions
            .iter()
            .map(|p| PositionView {
                market: p.market.to_string(),
                amount: p.amount,
            })
            .collect(),
        roles: state.roles.iter().map(|r| r.name().to_owned()).collect(),
        participant: state.participant.map(|p| p.to_string()),
        key: state.current_key(id).to_string(),
        revoked: state.revoked,
        height: tip.height.get(),
    }))
}

/// Whether `viewer` may read account `id` (AC-6.3): itself or its participant's other accounts,
/// the registrar, auditors and regulators, and the DSO whose feeder's market or upstream
/// account it is.
pub(crate) fn may_read_account<S: Store>(
    st: &ApiState<S>,
    viewer: &Viewer,
    id: &AccountId,
) -> Result<bool, ApiError> {
    if viewer.is(id) || viewer.reads_all() || viewer.has(Role::Registrar) {
        return Ok(true);
    }
    if !viewer.has(Role::Dso) {
        return Ok(false);
    }
    let tip = st.shared.executor.tip();
    let index: bcte_ledger::market_state::FeederIndex =
        read(st, tip.height, &StateKey::Feeders)?.unwrap_or_default();
    for e in &index.feeders {
        let Some(f) = read::<S, FeederState>(st, tip.height, &StateKey::Feeder(e.feeder.clone()))?
        else {
            continue;
        };
        if viewer.is(&f.operator) && (f.market_account == *id || f.upstream_account == *id) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether `viewer` may read (and prove) the value of `key` (AC-6.3). A refusal does not
/// depend on whether the value exists.
pub(crate) fn may_read_key<S: Store>(
    st: &ApiState<S>,
    viewer: &Viewer,
    key: &StateKey,
) -> Result<bool, ApiError> {
    let tip = st.shared.executor.tip();
    let feeder = |f: &bcte_types::FeederId| reads_whole_feeder(st, tip.height, viewer, f);
    Ok(match key {
        StateKey::Supply
        | StateKey::Head
        | StateKey::Config
        | StateKey::MarketClock
        | StateKey::Feeders
        | StateKey::Feeder(_)
        | StateKey::Schedule(_) => true,
        StateKey::Account(a) => may_read_account(st, viewer, a)?,
        StateKey::Site(f, s) => {
            feeder(f)?
                || read::<S, SiteState>(st, tip.height, &StateKey::Site(f.clone(), s.clone()))?
                    .is_some_and(|s| viewer.owns_site(&s))
        }
        StateKey::Participant(p) => {
            viewer.reads_all()
                || viewer.has(Role::Registrar)
                || read::<S, ParticipantState>(st, tip.height, &StateKey::Participant(*p))?
                    .is_some_and(|p| p.accounts.iter().any(|a| viewer.is(a)))
        }
        StateKey::Sites(f)
        | StateKey::Book(f, _)
        | StateKey::Bids(f, _, _)
        | StateKey::Result(f, _)
        | StateKey::Upstream(f, _)
        | StateKey::Results(f, _, _)
        | StateKey::Meters(f)
        | StateKey::Readings(f, _, _)
        | StateKey::Settling(f, _)
        | StateKey::Settled(f, _, _)
        | StateKey::Settlement(f, _)
        | StateKey::Adjustments(f, _, _)
        | StateKey::Debtors(f)
        | StateKey::Contracts(f)
        | StateKey::Flex(f) => feeder(f)?,
    })
}

/// Whether `viewer` sees a transaction's sender, nonce, payload and reason (AC-6.4): its
/// sender's own accounts, auditors and regulators. Everyone sees its hash and status.
fn sees_tx(viewer: &Viewer, tx: &Tx) -> bool {
    viewer.reads_all() || viewer.is(&tx.body().sender)
}

/// A transaction's payload as JSON, with the curves of bids whose interval is not cleared
/// replaced by `"sealed"`: nobody reads a rival's curve before it can no longer change it.
fn payload_view<S: Store>(st: &ApiState<S>, payload: &Payload) -> Result<Value, ApiError> {
    let mut value = serde_json::to_value(payload).map_err(ApiError::internal)?;
    if let Payload::Bids(op) = payload {
        let mut sealed = std::collections::BTreeMap::new();
        for b in &op.bids {
            if let std::collections::btree_map::Entry::Vacant(e) = sealed.entry(b.interval) {
                e.insert(crate::market_api::bid_is_sealed(
                    st, &op.feeder, b.interval,
                )?);
            }
        }
        if let Some(entries) = value.get_mut("bids").and_then(Value::as_array_mut) {
            for (entry, b) in entries.iter_mut().zip(&op.bids) {
                if sealed[&b.interval] && b.curve.is_some() {
                    entry["curve"] = Value::String("sealed".into());
                }
            }
        }
    }
    Ok(value)
}

fn block_view<S: Store>(
    st: &ApiState<S>,
    viewer: &Viewer,
    block: &Block,
    receipts: &[Receipt],
    certified: bool,
) -> Result<BlockView, ApiError> {
    let h = block.header();
    let mut txs = Vec::with_capacity(block.txs().len());
    for (tx, r) in block.txs().iter().zip(receipts) {
        let seen = sees_tx(viewer, tx);
        txs.push(TxView {
            hash: hex::encode(tx.hash()),
            kind: seen.then(|| tx.body().payload.tx_kind().name().to_owned()),
            sender: seen.then(|| tx.body().sender.to_string()),
            nonce: seen.then_some(tx.body().nonce),
            payload: if seen {
                Some(payload_view(st, &tx.body().payload)?)
            } else {
                None
            },
            status: r.outcome.status().into(),
            reason: match &r.outcome {
                Outcome::Rejected(reason) if seen => Some(reason.to_string()),
                _ => None,
            },
        });
    }
    Ok(BlockView {
        height: h.height.get(),
        hash: hex::encode(block.hash()),
        parent: hex::encode(h.parent),
        timestamp: h.timestamp_ms,
        state_root: hex::encode(h.state_root),
        receipts_root: hex::encode(h.receipts_root),
        tx_root: hex::encode(h.tx_root),
        proposer: hex::encode(h.context.leader),
        header: hex::encode(h.encode()),
        certified,
        txs,
    })
}

fn resolve_height<S: Store>(shared: &Shared<S>, id: &str) -> Result<Height, ApiError> {
    if id == "latest" {
        return Ok(shared.executor.tip().height);
    }
    if let Ok(h) = id.parse::<u64>() {
        return Ok(Height(h));
    }
    let hash = parse_hash(id).map_err(|_| {
        ApiError::bad_request(format!(
            "{id:?} is neither a height, `latest`, nor a block hash"
        ))
    })?;
    shared
        .executor
        .store()
        .height_of(&hash)?
        .ok_or_else(|| ApiError::not_found(format!("no block with hash {id}")))
}

/// A committed block by height, hash or `latest`, with its transactions and their outcomes.
#[utoipa::path(
    get,
    path = "/v1/blocks/{id}",
    params(("id" = String, Path, pattern = "^(latest|[0-9]{1,19}|[0-9a-fA-F]{64})$", description = "a height, a block hash (hex) or `latest`")),
    responses((status = 200, body = BlockView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn block<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> ApiResult<BlockView> {
    let height = resolve_height(&st.shared, &id)?;
    let store = st.shared.executor.store();
    let block = store
        .block(height)?
        .ok_or_else(|| ApiError::not_found(format!("no block at height {height}")))?;
    let receipts = store.receipts(height)?.unwrap_or_default();
    let certified = store.certificate(height)?.is_some();
    Ok(Json(block_view(
        &st, &viewer, &block, &receipts, certified,
    )?))
}

/// A proof of a state key's value (or absence) at a height (default: the tip), checkable
/// against that block's state root.
#[utoipa::path(
    get,
    path = "/v1/proofs/{key}",
    params(("key" = String, Path, pattern = r#"^(supply|head|config|market-clock|feeders|account/[0-9a-fA-F]{64}|(feeder|schedule|sites)/[!"$-.0-~]([ -.0-~]{0,126}[!-.0-~])?|site/[!"$-.0-~]([ -.0-~]{0,126}[!-.0-~])?/[!"$-.0-~]([ -.0-~]{0,126}[!-.0-~])?|(book|result|upstream)/[!"$-.0-~]([ -.0-~]{0,126}[!-.0-~])?/(0|[1-9][0-9]{0,18})|(bids|results)/[!"$-.0-~]([ -.0-~]{0,126}[!-.0-~])?/(0|[1-9][0-9]{0,18})/(0|[1-9][0-9]?|1[0-9]{2}|2[0-4][0-9]|25[0-5]))$"#, description = "a state key (docs/encoding.md): supply, head, config, market-clock, feeders, account/<ACCOUNT> (a public key), feeder/<F>, schedule/<F>, sites/<F>, site/<F>/<S>, book/<F>/<K>, bids/<F>/<K>/<B>, result/<F>/<K>, results/<F>/<K>/<B>, upstream/<F>/<K>"),
           ("height" = Option<u64>, Query, minimum = 0, description = "the height to prove at (default: latest)")),
    responses((status = 200, body = ProofView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody, description = "the bids of an interval not yet cleared are sealed"), (status = 404, body = ErrorBody, description = "height above the tip"))
)]
async fn proof<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Extension(viewer): Extension<Viewer>,
    Path(key): Path<String>,
    Query(q): Query<HeightQuery>,
) -> ApiResult<ProofView> {
    let key: StateKey = key
        .parse()
        .map_err(|e| ApiError::bad_request(format!("bad key: {e}")))?;
    if !may_read_key(&st, &viewer, &key)? {
        return Err(ApiError::forbidden(format!(
            "the value of {key} is not yours to read (AC-6.3)"
        )));
    }
    if let Some(reason) = crate::market_api::sealed(&st, &key)? {
        return Err(ApiError::forbidden(reason));
    }
    let tip = st.shared.executor.tip();
    let height = Height(q.height.unwrap_or(tip.height.get()));
    if height > tip.height {
        return Err(ApiError::not_found(format!(
            "height {height} is above the committed tip {}",
            tip.height
        )));
    }
    let store = st.shared.executor.store();
    let block = store
        .block(height)?
        .ok_or_else(|| ApiError::not_found(format!("no block at height {height}")))?;
    let p: StateProof = prove(store, key.clone(), height).map_err(ApiError::internal)?;
    Ok(Json(ProofView {
        height: height.get(),
        key: key.to_string(),
        value: p.value.as_ref().map(hex::encode),
        proof: hex::encode(p.to_bytes()),
        state_root: hex::encode(block.header().state_root),
        block_hash: hex::encode(block.hash()),
    }))
}

/// A block's proof of finality: a certificate, of the block itself or of its nearest certified
/// descendant, with the headers in between.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CertificateView {
    /// The block height.
    pub height: u64,
    /// The block hash.
    pub block_hash: String,
    /// The height of the block the certificate signs: `height` itself, or a descendant's when
    /// the block was finalized through it.
    pub certified_height: u64,
    /// Encoded headers of the blocks from `height + 1` to `certified_height`, hex, in order;
    /// empty when the certificate is the block's own.
    #[serde(default)]
    pub descendants: Vec<String>,
    /// The encoded simplex finalization (signatures of a quorum of validators), hex.
    pub certificate: String,
}

/// The proof that a block is final: its own stored certificate, or, for a block finalized
/// through a descendant, the certificate of the nearest descendant that has one (at most
/// [`cert::DESCENDANTS_MAX`] blocks up) and the headers that link the two.
#[utoipa::path(
    get,
    path = "/v1/certificates/{height}",
    params(("height" = u64, Path, minimum = 0, description = "block height")),
    responses((status = 200, body = CertificateView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn certificate<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Path(height): Path<u64>,
) -> ApiResult<CertificateView> {
    let store = st.shared.executor.store();
    let tip = st.shared.executor.tip().height.get();
    let block = store
        .block(Height(height))?
        .ok_or_else(|| ApiError::not_found(format!("no block at height {height}")))?;
    let mut descendants = Vec::new();
    let mut at = height;
    let cert = loop {
        if let Some(cert) = store.certificate(Height(at))? {
            break cert;
        }
        if at >= tip || descendants.len() == cert::DESCENDANTS_MAX {
            return Err(ApiError::not_found(format!(
                "block {height} is final, but no certificate of it or of a descendant up to \
                 height {at} is stored yet; retry after the next block"
            )));
        }
        at += 1;
        let next = store
            .block(Height(at))?
            .ok_or_else(|| ApiError::internal("block missing below the tip"))?;
        descendants.push(hex::encode(next.header().encode()));
    };
    Ok(Json(CertificateView {
        height,
        block_hash: hex::encode(block.hash()),
        certified_height: at,
        descendants,
        certificate: hex::encode(cert),
    }))
}
