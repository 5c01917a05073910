//! The off-chain meter batches (docs/settlement-rules.md, ST-1.5): a head-end uploads the raw,
//! meter-signed readings of a batch before submitting its transaction; the node keeps them in
//! its object store under their Merkle root, serves them whole, and serves the proof of any one
//! reading against the root the chain holds.
//!
//! The node checks what an upload is (a raw batch for this chain, each site once) and computes
//! its root; it does not check the meters' signatures, which are the head-end's to check before
//! it submits and anyone's to audit after (`bcte meter proof`, `bcte verify`): the point of the
//! proof is that nobody has to trust the head-end or this node. A `meter_batch` transaction
//! submitted through this API is admitted only if the node holds its batch and the batch says
//! exactly what the transaction says.

use crate::{
    api::{ApiError, ApiState, ErrorBody},
    auth::Viewer,
    market_api::{parse_site, path, reads_whole_feeder, sees_site},
    routes::{ReadRule, Route},
};
use axum::{
    Extension, Json,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State, rejection::PathRejection},
    http::{Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bcte_store::{BlobStore, Store};
use bcte_types::{
    Hash, Payload, Tx,
    batch::{RawBatch, ReadingProof},
    ids::parse_hash,
};
use serde::{Deserialize, Serialize};
use std::{collections::HashSet, sync::Arc};
use utoipa::ToSchema;

/// The largest raw batch accepted: 20,000 readings of the longest site ids (about 4.7 MB).
pub const RAW_BATCH_BYTES_MAX: usize = 8 << 20;

/// The batch routes.
pub(crate) fn routes<S: Store>() -> Vec<Route<S>> {
    vec![
        Route::new(
            Method::POST,
            "/v1/meter-batches",
            ReadRule::Upload,
            post(upload::<S>).layer(DefaultBodyLimit::max(RAW_BATCH_BYTES_MAX)),
        ),
        Route::new(
            Method::GET,
            "/v1/meter-batches/{root}",
            ReadRule::Operator,
            get(download::<S>),
        ),
        Route::new(
            Method::GET,
            "/v1/meter-batches/{root}/proofs/{site}",
            ReadRule::Own,
            get(proof::<S>),
        ),
    ]
}

/// `POST /v1/meter-batches` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchStored {
    /// The batch's Merkle root (hex): its address, and the root its transaction must carry.
    pub root: String,
    /// The feeder.
    pub feeder: String,
    /// The interval.
    pub interval: u64,
    /// Readings in the batch.
    pub readings: u32,
    /// Bytes stored.
    pub bytes: u64,
    /// `false` when the node already held it.
    pub new: bool,
}

/// The proof of one reading in a stored batch: check it with the root on the chain and the
/// meter's key (`bcte meter proof` does).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReadingProofView {
    /// The batch's root (hex).
    pub root: String,
    /// The chain the reading was signed for.
    pub chain_id: String,
    /// The feeder.
    pub feeder: String,
    /// The interval.
    pub interval: u64,
    /// The site.
    pub site: String,
    /// The energy the meter signed, Wh.
    pub wh: i64,
    /// The meter's ACCOUNT (public key).
    pub meter: String,
    /// The meter's signature over the reading (hex, 64 bytes); `null` for a reading no meter
    /// signed (a head-end's import of a utility's file), which is estimated (ST-1.6).
    pub signature: Option<String>,
    /// Whether no meter signed the reading (ST-1.6).
    pub estimated: bool,
    /// The reading's position in the batch.
    pub position: u32,
    /// Readings in the batch.
    pub leaf_count: u32,
    /// The sibling hashes on the reading's path to the root, leaf level first (hex).
    pub siblings: Vec<String>,
}

impl ReadingProofView {
    /// The view of `p` under `root`.
    pub fn new(root: &Hash, p: &ReadingProof) -> Self {
        Self {
            root: hex::encode(root),
            chain_id: p.chain_id.to_string(),
            feeder: p.feeder.to_string(),
            interval: p.interval.0,
            site: p.reading.site.to_string(),
            wh: p.reading.wh.0,
            meter: p.reading.meter.to_string(),
            signature: p.reading.signature_hex(),
            estimated: p.reading.estimated(),
            position: p.position,
            leaf_count: p.proof.leaf_count,
            siblings: p.siblings_hex(),
        }
    }
}

fn parse_root(s: &str) -> Result<Hash, ApiError> {
    parse_hash(s).map_err(|e| ApiError::bad_request(format!("bad batch root: {e}")))
}

fn stored<S: Store>(st: &ApiState<S>, root: &Hash) -> Result<Vec<u8>, ApiError> {
    st.batches
        .get(root)
        .map_err(ApiError::internal)?
        .ok_or_else(|| not_stored(root))
}

fn not_stored(root: &Hash) -> ApiError {
    ApiError::not_found(format!(
        "no batch with root {} is stored on this node",
        hex::encode(root)
    ))
}

/// Checks an upload: a raw batch for this chain, each site once. Returns it with its root.
pub fn check_upload(
    chain_id: &bcte_types::ChainId,
    bytes: &[u8],
) -> Result<(RawBatch, Hash), String> {
    let batch = RawBatch::from_bytes(bytes).map_err(|e| e.to_string())?;
    if &batch.chain_id != chain_id {
        return Err(format!(
            "the batch is for chain {:?}; this node runs {:?}",
            batch.chain_id.as_str(),
            chain_id.as_str()
        ));
    }
    let mut seen = HashSet::with_capacity(batch.readings.len());
    for (i, r) in batch.readings.iter().enumerate() {
        if !seen.insert(&r.site) {
            return Err(format!(
                "reading {i}: site {:?} appears twice",
                r.site.as_str()
            ));
        }
    }
    let root = batch.root();
    Ok((batch, root))
}

/// Refuses a `meter_batch` transaction whose batch this node does not hold, or holds saying
/// something else (any other transaction passes).
pub fn check_stored_batch(store: &dyn BlobStore, tx: &Tx) -> Result<(), String> {
    let Payload::MeterBatch(p) = &tx.body().payload else {
        return Ok(());
    };
    let root = hex::encode(p.root);
    let bytes = store
        .get(&p.root)
        .map_err(|e| format!("the batch store failed: {e}"))?
        .ok_or_else(|| {
            format!(
                "batch {root} is not stored on this node: upload its raw readings first \
                 (POST /v1/meter-batches, or `bcte meter submit`)"
            )
        })?;
    let batch = RawBatch::from_bytes(&bytes)
        .map_err(|e| format!("the stored batch {root} is damaged: {e}"))?;
    // The store holds it under its root (checked at upload): the energies are what remains.
    batch
        .check_energies(p)
        .map_err(|e| format!("batch {root}: {e}"))
}

/// Stores the raw, meter-signed readings of a head-end batch under their Merkle root.
#[utoipa::path(
    post,
    path = "/v1/meter-batches",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "a raw batch (docs/api.md, \"Raw meter batches\")"),
    responses(
        (status = 201, body = BatchStored, description = "stored (or already held: `new` is false)"),
        (status = 400, body = ErrorBody, description = "not a raw batch, for another chain, or a site twice"),
        (status = 413, body = ErrorBody, description = "larger than 8 MiB"),
    )
)]
async fn upload<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    body: Bytes,
) -> Result<(StatusCode, Json<BatchStored>), ApiError> {
    let st2 = st.clone();
    tokio::task::spawn_blocking(move || {
        let chain_id = st2.shared.executor.chain_id();
        let (batch, root) = check_upload(chain_id, &body).map_err(ApiError::bad_request)?;
        let new = !st2.batches.contains(&root).map_err(ApiError::internal)?;
        if new {
            st2.batches.put(&root, &body).map_err(ApiError::internal)?;
        }
        Ok((
            StatusCode::CREATED,
            Json(BatchStored {
                root: hex::encode(root),
                feeder: batch.feeder.to_string(),
                interval: batch.interval.0,
                readings: batch.readings.len() as u32,
                bytes: body.len() as u64,
                new,
            }),
        ))
    })
    .await
    .map_err(ApiError::internal)?
}

/// A stored batch, byte for byte.
#[utoipa::path(
    get,
    path = "/v1/meter-batches/{root}",
    params(("root" = String, Path, pattern = "^[0-9a-fA-F]{64}$", description = "the batch's Merkle root")),
    responses(
        (status = 200, body = Vec<u8>, content_type = "application/octet-stream", description = "the raw batch"),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "not stored on this node"),
    )
)]
async fn download<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Extension(viewer): Extension<Viewer>,
    p: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let root = parse_root(&path(p)?)?;
    let bytes = stored(&st, &root)?;
    // Every site's readings: the feeder's operator's, auditors' and regulators' only; to anyone
    // else the batch is as absent as one this node does not hold (AC-6.3).
    let batch = RawBatch::from_bytes(&bytes).map_err(ApiError::internal)?;
    let tip = st.shared.executor.tip().height;
    if !reads_whole_feeder(&st, tip, &viewer, &batch.feeder)? {
        return Err(not_stored(&root));
    }
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// The proof that a site's reading is in a stored batch.
#[utoipa::path(
    get,
    path = "/v1/meter-batches/{root}/proofs/{site}",
    params(
        ("root" = String, Path, pattern = "^[0-9a-fA-F]{64}$", description = "the batch's Merkle root"),
        ("site" = String, Path, pattern = r#"^[!"$-.0-~]([ -.0-~]{0,126}[!-.0-~])?$"#, description = "site id"),
    ),
    responses(
        (status = 200, body = ReadingProofView),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "the batch is not stored on this node, or has no reading of the site"),
    )
)]
async fn proof<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Extension(viewer): Extension<Viewer>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<ReadingProofView>, ApiError> {
    let (root, site) = path(p)?;
    let (root, site) = (parse_root(&root)?, parse_site(&site)?);
    let bytes = stored(&st, &root)?;
    tokio::task::spawn_blocking(move || {
        // Another's reading is as absent as a missing one (AC-6.3).
        let none = || {
            ApiError::not_found(format!(
                "batch {} has no reading of site {:?}",
                hex::encode(root),
                site.as_str()
            ))
        };
        let batch = RawBatch::from_bytes(&bytes).map_err(|e| {
            ApiError::internal(format!(
                "stored batch {} is damaged: {e}",
                hex::encode(root)
            ))
        })?;
        let tip = st.shared.executor.tip().height;
        if !sees_site(&st, tip, &viewer, &batch.feeder, &site)? {
            return Err(none());
        }
        let p = batch.proof(&site).ok_or_else(none)?;
        Ok(Json(ReadingProofView::new(&root, &p)))
    })
    .await
    .map_err(ApiError::internal)?
}

/// The batch routes' part of the OpenAPI description.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(upload, download, proof),
    components(schemas(BatchStored, ReadingProofView))
)]
pub struct BatchDoc;
