//! The DSO's management of the OpenADR VEN clients of this node (docs/openadr.md): add a
//! client (its secret is answered once), list them, revoke one, rotate its secret. Listing is
//! for the operators (DSOs, auditors, regulators); changes are a DSO's.

use crate::{
    api::{ApiError, ApiState, ErrorBody},
    auth::Viewer,
    market_api::path,
    routes::{ReadRule, Route},
    vtn_clients::{ClientError, VenClient},
};
use axum::{
    Extension, Json,
    extract::{Path, State, rejection::PathRejection},
    http::{Method, StatusCode},
    routing::{delete, get, post},
};
use bcte_store::Store;
use bcte_types::{AccountId, Role};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// The client-management routes.
pub(crate) fn routes<S: Store>() -> Vec<Route<S>> {
    vec![
        Route::new(
            Method::GET,
            "/v1/openadr/clients",
            ReadRule::Operator,
            get(list::<S>),
        ),
        Route::new(
            Method::POST,
            "/v1/openadr/clients",
            ReadRule::Operator,
            post(add::<S>),
        ),
        Route::new(
            Method::DELETE,
            "/v1/openadr/clients/{id}",
            ReadRule::Operator,
            delete(revoke::<S>),
        ),
        Route::new(
            Method::POST,
            "/v1/openadr/clients/{id}/rotate",
            ReadRule::Operator,
            post(rotate::<S>),
        ),
    ]
}

/// `POST /v1/openadr/clients` body.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddClient {
    /// The client's name (1 to 128 characters, no control character, unique among the
    /// clients not revoked: a duplicate is 409).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$"
    )]
    pub name: String,
    /// The participant's ACCOUNT it speaks for (its sites' capacity events and reports), if
    /// any.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub participant: Option<String>,
}

/// A client with its secret, shown once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClientSecret {
    /// The client.
    pub client: VenClientView,
    /// Its secret (64 hex digits): give it to the VEN; the node keeps only its hash.
    pub client_secret: String,
}

/// A registered client (never its secret).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VenClientView {
    /// Its client id.
    pub client_id: String,
    /// Its name.
    pub name: String,
    /// The participant's ACCOUNT, if any.
    pub participant: Option<String>,
    /// When it was added, seconds since the Unix epoch.
    pub created_s: u64,
    /// When its secret was last set.
    pub secret_set_s: u64,
    /// Whether it is revoked.
    pub revoked: bool,
}

impl From<VenClient> for VenClientView {
    fn from(c: VenClient) -> Self {
        Self {
            client_id: c.id,
            name: c.name,
            participant: c.participant,
            created_s: c.created_s,
            secret_set_s: c.secret_set_s,
            revoked: c.revoked,
        }
    }
}

fn vtn<S: Store>(st: &ApiState<S>) -> Result<&crate::vtn::Vtn, ApiError> {
    st.vtn
        .as_deref()
        .ok_or_else(|| ApiError::not_found("this node serves no OpenADR VTN"))
}

fn dso_only(viewer: &Viewer) -> Result<(), ApiError> {
    if viewer.has(Role::Dso) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "only a DSO adds, revokes and rotates OpenADR clients",
        ))
    }
}

fn status_of(e: ClientError) -> ApiError {
    match e {
        ClientError::Invalid(m) => ApiError::bad_request(m),
        ClientError::Conflict(m) => ApiError::with_status(StatusCode::CONFLICT, m),
        ClientError::Io { .. } => ApiError::internal(e),
    }
}

/// The OpenADR VEN clients registered on this node.
#[utoipa::path(
    get,
    path = "/v1/openadr/clients",
    responses((status = 200, body = Vec<VenClientView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody))
)]
async fn list<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
) -> Result<Json<Vec<VenClientView>>, ApiError> {
    Ok(Json(
        vtn(&st)?
            .clients()
            .list()
            .into_iter()
            .map(VenClientView::from)
            .collect(),
    ))
}

/// Registers an OpenADR VEN client (a DSO): its id and secret, the secret shown only now.
#[utoipa::path(
    post,
    path = "/v1/openadr/clients",
    request_body = AddClient,
    responses((status = 201, body = ClientSecret), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody, description = "a client of that name exists"))
)]
async fn add<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Extension(viewer): Extension<Viewer>,
    body: Result<Json<AddClient>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<ClientSecret>), ApiError> {
    dso_only(&viewer)?;
    let Json(req) = body.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let participant = req
        .participant
        .as_deref()
        .map(|p| {
            p.parse::<AccountId>()
                .map_err(|e| ApiError::bad_request(format!("participant: {e}")))
        })
        .transpose()?;
    let (client, secret) = vtn(&st)?
        .clients()
        .add(&req.name, participant, crate::auth::unix_now_s())
        .map_err(status_of)?;
    Ok((
        StatusCode::CREATED,
        Json(ClientSecret {
            client: client.into(),
            client_secret: secret,
        }),
    ))
}

/// Revokes a client (a DSO): its secret and its tokens stop working at once.
#[utoipa::path(
    delete,
    path = "/v1/openadr/clients/{id}",
    params(("id" = String, Path, description = "the client id")),
    responses((status = 200, body = VenClientView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn revoke<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Extension(viewer): Extension<Viewer>,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<VenClientView>, ApiError> {
    dso_only(&viewer)?;
    let id = path(p)?;
    vtn(&st)?
        .clients()
        .revoke(&id)
        .map_err(status_of)?
        .map(|c| Json(c.into()))
        .ok_or_else(|| ApiError::not_found(format!("no OpenADR client {id:?}")))
}

/// Gives a client a new secret (a DSO); the old one stops working.
#[utoipa::path(
    post,
    path = "/v1/openadr/clients/{id}/rotate",
    params(("id" = String, Path, description = "the client id")),
    responses((status = 200, body = ClientSecret), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "the client is revoked"))
)]
async fn rotate<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Extension(viewer): Extension<Viewer>,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<ClientSecret>, ApiError> {
    dso_only(&viewer)?;
    let id = path(p)?;
    let (client, secret) = vtn(&st)?
        .clients()
        .rotate(&id, crate::auth::unix_now_s())
        .map_err(status_of)?
        .ok_or_else(|| ApiError::not_found(format!("no OpenADR client {id:?}")))?;
    Ok(Json(ClientSecret {
        client: client.into(),
        client_secret: secret,
    }))
}

/// The OpenAPI description of the client-management routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list, add, revoke, rotate),
    components(schemas(AddClient, ClientSecret, VenClientView))
)]
pub(crate) struct VtnAdminDoc;
