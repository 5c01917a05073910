//! The authentication routes (AC-6.1): a challenge, and a read token for its signature.

use crate::{
    api::{ApiError, ApiState, ErrorBody},
    auth::{CHALLENGE_TTL, TOKEN_TTL_S, refuse_revoked, tip_account, unix_now_s},
    routes::{ReadRule, Route},
};
use axum::{
    Json,
    extract::{State, rejection::JsonRejection},
    http::Method,
    routing::post,
};
use bcte_store::Store;
use bcte_types::{
    AccountId,
    auth::{CHALLENGE_LEN, verify_challenge},
    ids::parse_hex_array,
};
use commonware_codec::DecodeExt as _;
use commonware_cryptography::ed25519;
use serde::{Deserialize, Serialize};
use std::{sync::Arc, time::Instant};
use utoipa::ToSchema;

/// The authentication routes.
pub(crate) fn routes<S: Store>() -> Vec<Route<S>> {
    vec![
        Route::new(
            Method::POST,
            "/v1/auth/challenge",
            ReadRule::Public,
            post(challenge::<S>),
        ),
        Route::new(
            Method::POST,
            "/v1/auth/token",
            ReadRule::Public,
            post(token::<S>),
        ),
    ]
}

/// `POST /v1/auth/challenge` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChallengeView {
    /// 32 random bytes, hex: sign `chain_id ‖ challenge` in the namespace `bcte/auth/v1`.
    pub challenge: String,
    /// The chain id the signature must name.
    pub chain_id: String,
    /// Seconds the challenge may be answered, once.
    pub expires_in: u64,
}

/// `POST /v1/auth/token` request.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The account (hex of its id).
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub account: String,
    /// The challenge, hex, as the node gave it.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub challenge: String,
    /// The ed25519 signature (64 bytes, hex) by the account's current key over
    /// `chain_id ‖ challenge` in the namespace `bcte/auth/v1`.
    #[schema(pattern = "^[0-9a-fA-F]{128}$")]
    pub signature: String,
}

/// `POST /v1/auth/token` response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    /// The bearer token: send it as `Authorization: Bearer <token>`, never in a URL.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds it is valid.
    pub expires_in: u64,
    /// The account it speaks for.
    pub account: String,
}

/// A single-use challenge to sign, valid for 60 s.
#[utoipa::path(
    post,
    path = "/v1/auth/challenge",
    responses((status = 200, body = ChallengeView), (status = 429, body = ErrorBody))
)]
async fn challenge<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
) -> Result<Json<ChallengeView>, ApiError> {
    let c = st.auth.challenge(Instant::now())?;
    Ok(Json(ChallengeView {
        challenge: hex::encode(c),
        chain_id: st.auth.chain_id().to_string(),
        expires_in: CHALLENGE_TTL.as_secs(),
    }))
}

/// A read token for an account that signed a challenge with its current key (AC-6.1). The
/// challenge is spent whatever the answer.
#[utoipa::path(
    post,
    path = "/v1/auth/token",
    request_body = TokenRequest,
    responses(
        (status = 200, body = TokenView),
        (status = 400, body = ErrorBody, description = "malformed request"),
        (status = 401, body = ErrorBody, description = "unknown, spent or expired challenge, or a signature that does not check against the account's current key"),
        (status = 403, body = ErrorBody, description = "the account is revoked")
    )
)]
async fn token<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    body: Result<Json<TokenRequest>, JsonRejection>,
) -> Result<Json<TokenView>, ApiError> {
    let Json(req) = body
        .map_err(|e| ApiError::bad_request(format!("malformed request body: {}", e.body_text())))?;
    let account: AccountId = req
        .account
        .parse()
        .map_err(|e| ApiError::bad_request(format!("bad account: {e}")))?;
    let challenge = parse_hex_array::<CHALLENGE_LEN>(&req.challenge)
        .map_err(|e| ApiError::bad_request(format!("bad challenge: {e}")))?;
    let signature = parse_hex_array::<64>(&req.signature)
        .map_err(|e| ApiError::bad_request(format!("bad signature: {e}")))?;
    let signature = ed25519::Signature::decode(commonware_codec::Copying(&signature))
        .map_err(|e| ApiError::bad_request(format!("bad signature: {e}")))?;
    if !st.auth.take_challenge(&challenge, Instant::now()) {
        return Err(ApiError::unauthorized(
            "unknown, spent or expired challenge: get a new one",
        ));
    }
    let state = tip_account(&st, &account)?;
    let key = state
        .current_key(account)
        .to_public_key()
        .ok_or_else(|| ApiError::bad_request("the account's key is not an ed25519 key"))?;
    if !verify_challenge(&key, st.auth.chain_id(), &challenge, &signature) {
        return Err(ApiError::unauthorized(
            "the signature does not check against the account's current key (AC-4.1)",
        ));
    }
    // A revoked account gets no token (AC-5.1); checked after the signature, so that only the
    // account itself learns it is revoked.
    refuse_revoked(&account, &state)?;
    Ok(Json(TokenView {
        access_token: st.auth.issue(&account, unix_now_s()),
        token_type: "Bearer".into(),
        expires_in: TOKEN_TTL_S,
        account: account.to_string(),
    }))
}

/// The authentication part of the OpenAPI description.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(challenge, token),
    components(schemas(ChallengeView, TokenRequest, TokenView))
)]
pub struct AuthDoc;
