//! The personal-data routes (AC-2.4): the registrar stores and erases a participant's record;
//! the participant and the registrar read it. Every call is logged in the store's access log.

use crate::{
    api::{ApiError, ApiState, ErrorBody},
    auth::Viewer,
    market_api::{path, read},
    pii::{PiiError, PiiStore, RECORD_BYTES_MAX},
    routes::{ReadRule, Route},
};
use axum::{
    Extension, Json,
    body::Bytes,
    extract::{DefaultBodyLimit, Path, State, rejection::PathRejection},
    http::{Method, StatusCode},
    routing::{delete, get, put},
};
use bcte_ledger::{StateKey, identity::ParticipantState};
use bcte_store::Store;
use bcte_types::{ParticipantId, Role};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// The personal-data routes.
pub(crate) fn routes<S: Store>() -> Vec<Route<S>> {
    let path = "/v1/pii/{participant}";
    vec![
        Route::new(
            Method::PUT,
            path,
            ReadRule::Personal,
            put(store::<S>).layer(DefaultBodyLimit::max(RECORD_BYTES_MAX + 1024)),
        ),
        Route::new(Method::GET, path, ReadRule::Personal, get(fetch::<S>)),
        Route::new(Method::DELETE, path, ReadRule::Personal, delete(erase::<S>)),
    ]
}

/// `PUT /v1/pii/{participant}` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PiiStored {
    /// The participant.
    pub participant: String,
    /// The commitment to enroll it with (`bcte tx enroll --commitment`), hex (AC-2.3).
    pub commitment: String,
}

/// `GET /v1/pii/{participant}` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PiiRecord {
    /// The participant.
    pub participant: String,
    /// The record's exact text (a JSON object).
    pub record: String,
    /// Its salt, hex.
    pub salt: String,
    /// `SHA-256("bcte/pii/v1" ‖ UUID ‖ salt ‖ record)`, recomputed, hex (AC-2.3).
    pub commitment: String,
    /// The commitment the chain holds, hex; null when the participant is not enrolled.
    pub on_chain: Option<String>,
    /// Whether the two are equal.
    pub matches: bool,
}

/// `DELETE /v1/pii/{participant}` answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PiiErased {
    /// The participant.
    pub participant: String,
    /// Always true: its key is overwritten and gone.
    pub erased: bool,
}

fn parse_participant(s: &str) -> Result<ParticipantId, ApiError> {
    s.parse()
        .map_err(|e| ApiError::bad_request(format!("bad participant: {e}")))
}

fn pii_store<S: Store>(st: &ApiState<S>) -> Result<&PiiStore, ApiError> {
    st.pii
        .as_deref()
        .ok_or_else(|| ApiError::not_found("this node keeps no personal data"))
}

fn status_of(e: PiiError) -> ApiError {
    match e {
        PiiError::BadRecord(m) => ApiError::bad_request(m),
        PiiError::Exists(_) => ApiError::with_status(StatusCode::CONFLICT, e),
        PiiError::NotFound(_) => ApiError::not_found(e),
        PiiError::Erased(_) => ApiError::with_status(StatusCode::GONE, e),
        PiiError::Io(_) => ApiError::internal(e),
    }
}

/// 403 unless the caller is a registrar (who alone stores and erases personal data).
fn registrar_only(
    store: &PiiStore,
    viewer: &Viewer,
    p: &ParticipantId,
    action: &str,
) -> Result<(), ApiError> {
    if viewer.has(Role::Registrar) {
        return Ok(());
    }
    store.log(viewer.account.as_ref(), p, action, "refused");
    Err(ApiError::forbidden(
        "only the registrar stores and erases personal data (AC-2.4)",
    ))
}

/// Stores a participant's personal-data record (a JSON object, at most 16 KiB) encrypted
/// under a key of its own; answers the commitment to enroll it with.
#[utoipa::path(
    put,
    path = "/v1/pii/{participant}",
    params(("participant" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$", description = "the participant's UUID")),
    request_body(content = Object, content_type = "application/json", description = "the record: name, address, contact, contract number, ..."),
    responses(
        (status = 201, body = PiiStored),
        (status = 400, body = ErrorBody, description = "not a JSON object, or too large"),
        (status = 404, body = ErrorBody, description = "this node keeps no personal data"),
        (status = 409, body = ErrorBody, description = "the participant already has a record"),
    )
)]
async fn store<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Extension(viewer): Extension<Viewer>,
    p: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Result<(StatusCode, Json<PiiStored>), ApiError> {
    let participant = parse_participant(&path(p)?)?;
    let store = pii_store(&st)?;
    registrar_only(store, &viewer, &participant, "put")?;
    let stored = store.put(&participant, &body);
    store.log(
        viewer.account.as_ref(),
        &participant,
        "put",
        if stored.is_ok() { "ok" } else { "failed" },
    );
    let stored = stored.map_err(status_of)?;
    Ok((
        StatusCode::CREATED,
        Json(PiiStored {
            participant: participant.to_string(),
            commitment: hex::encode(stored.commitment),
        }),
    ))
}

/// A participant's personal data, to the participant's own accounts and the registrar only
/// (anyone else: the same 404 as an absent record), with its commitment checked against the
/// chain's. Every read is logged.
#[utoipa::path(
    get,
    path = "/v1/pii/{participant}",
    params(("participant" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$", description = "the participant's UUID")),
    responses(
        (status = 200, body = PiiRecord),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no record here (or not yours)"),
        (status = 410, body = ErrorBody, description = "erased"),
    )
)]
async fn fetch<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Extension(viewer): Extension<Viewer>,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<PiiRecord>, ApiError> {
    let participant = parse_participant(&path(p)?)?;
    let store = pii_store(&st)?;
    let tip = st.shared.executor.tip().height;
    let enrolled: Option<ParticipantState> = read(&st, tip, &StateKey::Participant(participant))?;
    let own = enrolled
        .as_ref()
        .is_some_and(|e| e.accounts.iter().any(|a| viewer.is(a)));
    if !(own || viewer.has(Role::Registrar)) {
        store.log(viewer.account.as_ref(), &participant, "get", "refused");
        return Err(status_of(PiiError::NotFound(participant)));
    }
    let opened = store.get(&participant);
    store.log(
        viewer.account.as_ref(),
        &participant,
        "get",
        match &opened {
            Ok(_) => "ok",
            Err(PiiError::NotFound(_)) => "absent",
            Err(PiiError::Erased(_)) => "erased",
            Err(_) => "failed",
        },
    );
    let opened = opened.map_err(status_of)?;
    let on_chain = enrolled.map(|e| e.commitment);
    Ok(Json(PiiRecord {
        participant: participant.to_string(),
        record: String::from_utf8_lossy(&opened.record).into_owned(),
        salt: hex::encode(opened.salt),
        commitment: hex::encode(opened.commitment),
        matches: on_chain == Some(opened.commitment),
        on_chain: on_chain.map(hex::encode),
    }))
}

/// Erases a participant's personal data for good (its key overwritten in place and removed:
/// AC-2.4). The chain, which holds only the commitment, is untouched.
#[utoipa::path(
    delete,
    path = "/v1/pii/{participant}",
    params(("participant" = String, Path, pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$", description = "the participant's UUID")),
    responses(
        (status = 200, body = PiiErased),
        (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no record here"),
        (status = 410, body = ErrorBody, description = "erased already"),
    )
)]
async fn erase<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Extension(viewer): Extension<Viewer>,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<PiiErased>, ApiError> {
    let participant = parse_participant(&path(p)?)?;
    let store = pii_store(&st)?;
    registrar_only(store, &viewer, &participant, "erase")?;
    let erased = store.erase(&participant);
    store.log(
        viewer.account.as_ref(),
        &participant,
        "erase",
        if erased.is_ok() { "ok" } else { "failed" },
    );
    erased.map_err(status_of)?;
    Ok(Json(PiiErased {
        participant: participant.to_string(),
        erased: true,
    }))
}

/// The personal-data part of the OpenAPI description.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(store, fetch, erase),
    components(schemas(PiiStored, PiiRecord, PiiErased))
)]
pub struct PiiDoc;
