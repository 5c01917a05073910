//! An OpenADR 3.1.0 VTN (the server side) under `/openadr3/3.1.0` of the node's HTTP port, so
//! that thermostats, chargers and home energy managers read the market's prices and the grid's
//! events with the clients they already have (docs/openadr.md).
//!
//! - **Authentication**: OAuth2 client credentials. `GET /auth/server` names the token URL;
//!   `POST /auth/token` takes the client id and secret (HTTP Basic or form fields, not both)
//!   of a client the DSO registered (`bcte openadr client add`, [`crate::vtn_clients`]) and
//!   answers a bearer token (a JWT signed by the node's API key, audience
//!   `<chain>/<node>/openadr`, one hour). Token errors are RFC 6749 §5.2 bodies; every other
//!   error is the OpenADR `problem` body.
//! - **Programs**: one per feeder market, id and name derived from the feeder id.
//! - **Events**: per node of a feeder, its cleared prices, one interval per market interval
//!   over the rolling window the chain still holds (`PRICE` and `EXPORT_PRICE`, currency per
//!   kWh, written exactly from µ/MWh), targeted at the node; an `ALERT_GRID_EMERGENCY` event
//!   while the feeder is (or is scheduled to be) in alert or islanded mode; an
//!   `IMPORT_CAPACITY_LIMIT` / `EXPORT_CAPACITY_LIMIT` event for each edge-limit change to
//!   come. Ids derive from chain state and times from block timestamps, so every node serves
//!   the same objects. Prices and alerts are public: every authenticated client reads them all;
//!   `targets` only narrow the answer.
//!
//! Everything is read from the committed state at the tip; nothing here writes to the chain.

use crate::{
    api::ApiState,
    market_api::read,
    vtn_clients::{ClientStore, VenClient},
};
use axum::{
    Router,
    body::Bytes,
    extract::{Path, RawQuery, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bcte_ledger::{
    StateKey,
    market_state::{FeederIndex, FeederState, IntervalResult, Schedule},
};
use bcte_store::Store;
use bcte_types::{FeederId, GridMode, Height, Interval};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Where the VTN is served.
pub const PREFIX: &str = "/openadr3/3.1.0";

/// How long a token lives (the openleadr client needs at least a minute).
pub const TOKEN_TTL_S: u64 = 3_600;

/// The scopes a VEN client may be granted (OpenADR 3.1.0 `securitySchemes`); reading prices and
/// events needs `read_all` or `read_targets`.
pub const SCOPES: [&str; 6] = [
    "read_all",
    "read_targets",
    "read_ven_objects",
    "write_reports",
    "write_subscriptions",
    "write_vens",
];

/// The most cleared intervals an event carries: a day of quarter-hours (older ones are pruned
/// from the chain anyway, MC-8).
pub const WINDOW_INTERVALS: u64 = 96;

/// The most objects one page holds, and the default (OpenADR's `limit`).
pub const PAGE_MAX: usize = 50;

/// Token requests the node answers per second, over all clients; more get 429.
const TOKEN_REQUESTS_PER_S: u32 = 50;

/// The VTN's state: the registered clients, the token keys, the currency.
pub struct Vtn {
    clients: ClientStore,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    currency: String,
    limiter: Mutex<(Instant, u32)>,
    subs: crate::vtn_subs::SubscriptionStore,
}

/// A token's claims.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    iat: u64,
    exp: u64,
    scope: String,
    jti: String,
}

/// Who is calling: a registered, active client and the scopes its token grants.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The client.
    pub client: VenClient,
    /// Its token's scopes.
    pub scopes: BTreeSet<String>,
}

impl Vtn {
    /// A VTN for `chain_id` signing tokens with the node's API `key`, keeping clients in
    /// `clients`, pricing in `currency` (ISO 4217).
    pub fn new(
        key: &commonware_cryptography::ed25519::PrivateKey,
        chain_id: &bcte_types::ChainId,
        clients: ClientStore,
        subs: crate::vtn_subs::SubscriptionStore,
        currency: &str,
    ) -> Self {
        let (encoding, decoding, issuer) = crate::auth::jwt_keys(key);
        let audience = format!("{}/{issuer}/openadr", chain_id.as_str());
        let validation = crate::auth::jwt_validation(&audience, &issuer);
        Self {
            clients,
            encoding,
            decoding,
            validation,
            issuer,
            audience,
            currency: currency.to_owned(),
            limiter: Mutex::new((Instant::now(), 0)),
            subs,
        }
    }

    /// The registered clients.
    pub fn clients(&self) -> &ClientStore {
        &self.clients
    }

    /// The VEN clients' subscriptions.
    pub fn subscriptions(&self) -> &crate::vtn_subs::SubscriptionStore {
        &self.subs
    }

    fn issue(&self, client: &VenClient, scope: &str, now_s: u64) -> String {
        let mut jti = [0u8; 16];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut jti);
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: client.id.clone(),
            aud: self.audience.clone(),
            iat: now_s,
            exp: now_s + TOKEN_TTL_S,
            scope: scope.to_owned(),
            jti: hex::encode(jti),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .expect("an ed25519 key signs any claims")
    }

    /// The caller a bearer token speaks for, or why not (401: missing, malformed, expired,
    /// forged, or its client revoked).
    fn caller(&self, headers: &HeaderMap) -> Result<Caller, Problem> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| Problem::unauthorized("a bearer token is needed (POST auth/token)"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Problem::unauthorized("the Authorization header is not `Bearer <token>`")
            })?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                Problem::unauthorized(match e.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                        "the token has expired: get a new one"
                    }
                    _ => "the token is not one this VTN issued",
                })
            })?;
        let client = self
            .clients
            .active(&data.claims.sub)
            .ok_or_else(|| Problem::unauthorized("the token's client is revoked or unknown"))?;
        Ok(Caller {
            client,
            scopes: data
                .claims
                .scope
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        })
    }

    fn allow_token_request(&self) -> bool {
        let mut l = self.limiter.lock().expect("limiter poisoned");
        let now = Instant::now();
        if now.duration_since(l.0) >= Duration::from_secs(1) {
            *l = (now, 0);
        }
        l.1 += 1;
        l.1 <= TOKEN_REQUESTS_PER_S
    }
}

/// The OpenADR `problem` body (RFC 7807), the answer to every refused request but a token
/// request's.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Always `about:blank`.
    #[serde(rename = "type")]
    kind: &'static str,
    /// The status's reason phrase.
    title: String,
    /// The HTTP status.
    status: u16,
    /// What is wrong.
    detail: String,
}

impl Problem {
    fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
        }
    }
    fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
    fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }
    fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }
    fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "OpenADR VTN internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }
}

impl From<crate::api::ApiError> for Problem {
    fn from(e: crate::api::ApiError) -> Self {
        Self::new(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            e.message(),
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, axum::Json(&self)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// An RFC 6749 §5.2 error of the token endpoint.
#[derive(Debug, Serialize)]
struct TokenError {
    error: &'static str,
    error_description: String,
}

fn token_error(
    status: StatusCode,
    error: &'static str,
    description: impl Into<String>,
) -> Response {
    let mut r = (
        status,
        axum::Json(TokenError {
            error,
            error_description: description.into(),
        }),
    )
        .into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"openadr\""),
        );
    }
    r
}

/// The VTN's routes, to nest under [`PREFIX`].
pub fn router<S: Store>(state: Arc<ApiState<S>>) -> Router {
    let protected = Router::new()
        .route("/programs", get(programs::<S>))
        .route("/programs/{id}", get(program::<S>))
        .route("/events", get(events::<S>))
        .route("/events/{id}", get(event::<S>))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate::<S>,
        ));
    let subscriptions = Router::new()
        .route(
            "/subscriptions",
            get(list_subscriptions::<S>).post(create_subscription::<S>),
        )
        .route(
            "/subscriptions/{id}",
            get(get_subscription::<S>)
                .put(replace_subscription::<S>)
                .delete(delete_subscription::<S>),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            identify::<S>,
        ));
    Router::new()
        .route("/auth/server", get(auth_server::<S>))
        .route("/auth/token", post(token::<S>))
        .merge(protected)
        .merge(subscriptions)
        .fallback(|| async {
            Problem::not_found("no such OpenADR endpoint on this VTN (see docs/openadr.md)")
        })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this VTN serves this endpoint read-only",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::map_response(problem_bodies))
        .with_state(state)
}

/// Keeps every refusal an OpenADR problem (or, from the token endpoint, an RFC 6749 body):
/// axum's own rejections answer in plain text.
async fn problem_bodies(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if json {
        return response;
    }
    let body = axum::body::to_bytes(response.into_body(), 16 * 1024)
        .await
        .unwrap_or_default();
    let status = match status {
        StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::UNPROCESSABLE_ENTITY => {
            StatusCode::BAD_REQUEST
        }
        s => s,
    };
    Problem::new(status, String::from_utf8_lossy(&body).into_owned()).into_response()
}

fn vtn<S: Store>(st: &ApiState<S>) -> Result<&Vtn, Problem> {
    st.vtn
        .as_deref()
        .ok_or_else(|| Problem::not_found("this node serves no OpenADR VTN"))
}

async fn authenticate<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let caller = match vtn(&st).and_then(|v| v.caller(request.headers())) {
        Ok(c) => c,
        Err(p) => return p.into_response(),
    };
    if !caller
        .scopes
        .iter()
        .any(|s| s == "read_all" || s == "read_targets")
    {
        return Problem::forbidden(
            "reading programs and events needs the scope read_all or read_targets",
        )
        .into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Checks the token and hands the caller to the handler, which checks its scopes.
async fn identify<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    mut request: Request,
    next: Next,
) -> Response {
    match vtn(&st).and_then(|v| v.caller(request.headers())) {
        Ok(c) => {
            request.extensions_mut().insert(c);
            next.run(request).await
        }
        Err(p) => p.into_response(),
    }
}

/// `GET /auth/server`: where to get a token.
async fn auth_server<S: Store>(State(st): State<Arc<ApiState<S>>>, headers: HeaderMap) -> Response {
    if let Err(p) = vtn(&st) {
        return p.into_response();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or("localhost");
    let scheme = if st.tls { "https" } else { "http" };
    axum::Json(serde_json::json!({
        "tokenURL": format!("{scheme}://{host}{PREFIX}/auth/token"),
    }))
    .into_response()
}

/// `POST /auth/token`: OAuth2 client credentials (RFC 6749 §4.4).
async fn token<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let v = match vtn(&st) {
        Ok(v) => v,
        Err(p) => return p.into_response(),
    };
    if !v.allow_token_request() {
        return token_error(
            StatusCode::TOO_MANY_REQUESTS,
            "temporarily_unavailable",
            "too many token requests: retry in a second",
        );
    }
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        );
    }
    let mut grant = None;
    let mut form_id = None;
    let mut form_secret = None;
    let mut scope = None;
    for (k, value) in form_urlencoded::parse(&body) {
        let slot = match k.as_ref() {
            "grant_type" => &mut grant,
            "client_id" => &mut form_id,
            "client_secret" => &mut form_secret,
            "scope" => &mut scope,
            _ => continue,
        };
        if slot.is_some() {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("{k} is given twice"),
            );
        }
        *slot = Some(value.into_owned());
    }
    match grant.as_deref() {
        Some("client_credentials") => {}
        Some(g) => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant_type {g:?}: this VTN grants client_credentials only"),
            );
        }
        None => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is missing (client_credentials)",
            );
        }
    }
    let basic = match basic_credentials(&headers) {
        Ok(b) => b,
        Err(why) => return token_error(StatusCode::BAD_REQUEST, "invalid_request", why),
    };
    let (id, secret) = match (basic, form_id, form_secret) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "credentials given both as HTTP Basic and as form fields: use one",
            );
        }
        (Some(b), None, None) => b,
        (None, Some(id), Some(secret)) => (id, secret),
        (None, _, _) => {
            return token_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client credentials are missing (HTTP Basic, or client_id and client_secret)",
            );
        }
    };
    let Some(client) = v.clients.authenticate(&id, &secret) else {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client, wrong secret, or a revoked client",
        );
    };
    let granted: Vec<&str> = match scope.as_deref().map(str::split_whitespace) {
        None => SCOPES.to_vec(),
        Some(asked) => {
            let asked: Vec<&str> = asked.collect();
            if let Some(bad) = asked.iter().find(|s| !SCOPES.contains(s)) {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    format!("scope {bad:?} is not granted to VEN clients"),
                );
            }
            if asked.is_empty() {
                SCOPES.to_vec()
            } else {
                asked
            }
        }
    };
    let scope = granted.join(" ");
    let token = v.issue(&client, &scope, crate::auth::unix_now_s());
    let mut r = axum::Json(serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": TOKEN_TTL_S,
        "scope": scope,
    }))
    .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The client id and secret of an `Authorization: Basic` header, if there is one.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, String> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| "the Authorization header is not ASCII".to_owned())?;
    let Some(encoded) = text
        .strip_prefix("Basic ")
        .or_else(|| text.strip_prefix("basic "))
    else {
        return Err("the Authorization header of a token request must be Basic".into());
    };
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| "the Basic credentials are not base64".to_owned())?;
    let decoded =
        String::from_utf8(decoded).map_err(|_| "the Basic credentials are not UTF-8".to_owned())?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(|| "the Basic credentials are not id:secret".to_owned())?;
    // RFC 6749 §2.3.1: both are form-urlencoded before Basic encoding.
    let un = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((un(id), un(secret))))
}

/// Query parameters of a list: `targets` (repeated), `programID`, `skip`, `limit`.
#[derive(Debug, Default)]
struct ListQuery {
    targets: Vec<String>,
    program: Option<String>,
    skip: usize,
    limit: usize,
}

fn list_query(raw: Option<&str>, allowed: &[&str]) -> Result<ListQuery, Problem> {
    let mut q = ListQuery {
        limit: PAGE_MAX,
        ..Default::default()
    };
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !allowed.contains(&k.as_ref()) {
            return Err(Problem::bad_request(format!(
                "query parameter {k:?} is not one of {}",
                allowed.join(", ")
            )));
        }
        match k.as_ref() {
            "targets" => {
                if v.is_empty() || v.len() > 128 {
                    return Err(Problem::bad_request("a target has 1 to 128 characters"));
                }
                q.targets.push(v.into_owned());
            }
            "programID" => {
                if !is_object_id(&v) {
                    return Err(Problem::bad_request(format!(
                        "programID {v:?} is not an object id ([A-Za-z0-9_-], 1 to 128)"
                    )));
                }
                q.program = Some(v.into_owned());
            }
            "skip" => {
                q.skip = v
                    .parse::<i32>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .map(|n| n as usize)
                    .ok_or_else(|| {
                        Problem::bad_request(format!("skip {v:?} is not a non-negative integer"))
                    })?;
            }
            "limit" => {
                let n = v.parse::<i32>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    Problem::bad_request(format!("limit {v:?} is not a non-negative integer"))
                })?;
                if n as usize > PAGE_MAX {
                    return Err(Problem::bad_request(format!(
                        "limit {n}: at most {PAGE_MAX} objects per page"
                    )));
                }
                q.limit = n as usize;
            }
            "active" if !matches!(v.as_ref(), "true" | "false") => {
                return Err(Problem::bad_request("active is true or false"));
            }
            _ => {}
        }
    }
    Ok(q)
}

/// An OpenADR object id: `^[A-Za-z0-9_-]{1,128}$`.
pub fn is_object_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A feeder's program id: the feeder id when it is an object id short enough to prefix event
/// ids with, else `f` and the first 24 hex digits of its SHA-256.
pub fn program_id(feeder: &FeederId) -> String {
    let id = feeder.as_str();
    if is_object_id(id) && id.len() <= 64 {
        id.to_owned()
    } else {
        use sha2::Digest as _;
        format!(
            "f{}",
            &hex::encode(sha2::Sha256::digest(id.as_bytes()))[..24]
        )
    }
}

/// A node's target strings: `node-<index>`, and its id when that is a valid target of the
/// strict clients (`[A-Za-z0-9_-]`).
fn node_targets(feeder: &FeederState, i: usize) -> Vec<String> {
    let mut t = vec![format!("node-{i}")];
    let id = feeder.nodes[i].id.as_str();
    if is_object_id(id) && id != t[0] {
        t.push(id.to_owned());
    }
    t
}

/// RFC 3339 in UTC of a time in ms since the Unix epoch.
pub fn rfc3339_ms(ms: u64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// An ISO 8601 duration of `ms`: `PT15M`, `PT10S`, `PT1H30M`, `PT0.5S`.
pub fn iso_duration(ms: u64) -> String {
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, frac) = (rest / 1_000, rest % 1_000);
    let mut out = String::from("PT");
    if h > 0 {
        out.push_str(&format!("{h}H"));
    }
    if m > 0 {
        out.push_str(&format!("{m}M"));
    }
    if frac > 0 {
        let f = format!("{frac:03}");
        out.push_str(&format!("{s}.{}S", f.trim_end_matches('0')));
    } else if s > 0 || (h == 0 && m == 0) {
        out.push_str(&format!("{s}S"));
    }
    out
}

/// `v × 10^-places`, exactly, as a JSON number (trailing zeros of the fraction dropped).
fn exact(v: i64, places: u32) -> Box<RawValue> {
    let sign = if v < 0 { "-" } else { "" };
    let unit = 10u64.pow(places);
    let (int, frac) = (v.unsigned_abs() / unit, v.unsigned_abs() % unit);
    let text = if frac == 0 {
        format!("{sign}{int}")
    } else {
        let f = format!("{frac:0width$}", width = places as usize);
        format!("{sign}{int}.{}", f.trim_end_matches('0'))
    };
    RawValue::from_string(text).expect("a decimal is a JSON number")
}

/// A price in µ-currency per MWh as currency per kWh (÷ 10⁹), exactly, as a JSON number.
pub fn per_kwh(micro_per_mwh: i64) -> Box<RawValue> {
    exact(micro_per_mwh, 9)
}

fn string_value(s: &str) -> Box<RawValue> {
    RawValue::from_string(serde_json::to_string(s).expect("a string serializes"))
        .expect("a JSON string")
}

/// A payload descriptor of a program or an event.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct PayloadDescriptor {
    object_type: &'static str,
    payload_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    units: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    currency: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct IntervalPeriod {
    start: String,
    duration: String,
}

#[derive(Debug, Serialize)]
struct ValuesMap {
    #[serde(rename = "type")]
    kind: &'static str,
    values: Vec<Box<RawValue>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EventInterval {
    id: i32,
    interval_period: IntervalPeriod,
    payloads: Vec<ValuesMap>,
}

/// An OpenADR program.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ProgramView {
    id: String,
    created_date_time: String,
    modification_date_time: String,
    object_type: &'static str,
    program_name: String,
    interval_period: IntervalPeriod,
    payload_descriptors: Vec<PayloadDescriptor>,
}

/// An OpenADR event.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EventView {
    id: String,
    created_date_time: String,
    modification_date_time: String,
    object_type: &'static str,
    #[serde(rename = "programID")]
    program_id: String,
    event_name: String,
    priority: u32,
    targets: Vec<String>,
    payload_descriptors: Vec<PayloadDescriptor>,
    intervals: Vec<EventInterval>,
}

/// What the VTN serves of one feeder, read at one height.
struct FeederData {
    feeder: FeederId,
    program: String,
    state: FeederState,
    schedule: Schedule,
    /// The cleared intervals of the window, oldest first, each with its clearing block's time.
    results: Vec<(Interval, IntervalResult, u64)>,
    /// When the feeder was registered (its first configuration's block is not kept: the
    /// epoch stands for it).
    created_ms: u64,
}

fn block_ms<S: Store>(st: &ApiState<S>, height: u64) -> Result<u64, Problem> {
    Ok(st
        .shared
        .executor
        .store()
        .block(Height(height))
        .map_err(Problem::internal)?
        .map_or(0, |b| b.header().timestamp_ms))
}

fn feeder_data<S: Store>(
    st: &ApiState<S>,
    height: Height,
    feeder: &FeederId,
) -> Result<FeederData, Problem> {
    let state: FeederState = read(st, height, &StateKey::Feeder(feeder.clone()))?
        .ok_or_else(|| Problem::internal(format!("feeder {feeder} has no state")))?;
    let schedule: Schedule = read(st, height, &StateKey::Schedule(feeder.clone()))?
        .ok_or_else(|| Problem::internal(format!("feeder {feeder} has no schedule")))?;
    let end = schedule.next_clear.0;
    let start = end
        .saturating_sub(WINDOW_INTERVALS)
        .max(schedule.prune_next.0);
    let mut results = Vec::new();
    for k in start..end {
        let k = Interval(k);
        if let Some(r) =
            read::<S, IntervalResult>(st, height, &StateKey::Result(feeder.clone(), k))?
        {
            let at = block_ms(st, r.height)?;
            results.push((k, r, at));
        }
    }
    Ok(FeederData {
        feeder: feeder.clone(),
        program: program_id(feeder),
        created_ms: state.epoch_ms,
        state,
        schedule,
        results,
    })
}

fn all_feeders<S: Store>(st: &ApiState<S>) -> Result<(Height, Vec<FeederId>), Problem> {
    let tip = st.shared.executor.tip();
    let index: FeederIndex = read(st, tip.height, &StateKey::Feeders)?.unwrap_or_default();
    Ok((
        tip.height,
        index.feeders.into_iter().map(|e| e.feeder).collect(),
    ))
}

fn price_descriptors(currency: &str) -> Vec<PayloadDescriptor> {
    ["PRICE", "EXPORT_PRICE"]
        .into_iter()
        .map(|t| PayloadDescriptor {
            object_type: "EVENT_PAYLOAD_DESCRIPTOR",
            payload_type: t,
            units: Some("KWH"),
            currency: Some(currency.to_owned()),
        })
        .collect()
}

fn limit_descriptors() -> Vec<PayloadDescriptor> {
    ["IMPORT_CAPACITY_LIMIT", "EXPORT_CAPACITY_LIMIT"]
        .into_iter()
        .map(|t| PayloadDescriptor {
            object_type: "EVENT_PAYLOAD_DESCRIPTOR",
            payload_type: t,
            units: Some("KW"),
            currency: None,
        })
        .collect()
}

fn program_view(d: &FeederData, currency: &str) -> ProgramView {
    let c = &d.schedule.configs[0];
    let modified = d.results.last().map_or(d.created_ms, |(_, _, at)| *at);
    let mut descriptors = price_descriptors(currency);
    descriptors.extend(limit_descriptors());
    descriptors.push(PayloadDescriptor {
        object_type: "EVENT_PAYLOAD_DESCRIPTOR",
        payload_type: "ALERT_GRID_EMERGENCY",
        units: None,
        currency: None,
    });
    ProgramView {
        id: d.program.clone(),
        created_date_time: rfc3339_ms(d.created_ms),
        modification_date_time: rfc3339_ms(modified.max(d.created_ms)),
        object_type: "PROGRAM",
        program_name: d.feeder.as_str().to_owned(),
        interval_period: IntervalPeriod {
            start: rfc3339_ms(c.start_ms),
            duration: iso_duration(c.config.interval_ms),
        },
        payload_descriptors: descriptors,
    }
}

/// The events of one feeder, sorted by id.
fn feeder_events(d: &FeederData, currency: &str) -> Vec<EventView> {
    let mut out = Vec::new();
    let created = rfc3339_ms(d.created_ms);
    // Prices: one event per node, one interval per cleared market interval.
    if let Some((_, _, last_at)) = d.results.last() {
        let modified = rfc3339_ms((*last_at).max(d.created_ms));
        for (i, node) in d.state.nodes.iter().enumerate() {
            let intervals = d
                .results
                .iter()
                .filter_map(|(k, r, _)| {
                    let price = r.prices.get(i)?.0;
                    Some(EventInterval {
                        id: i32::try_from(k.0).ok()?,
                        interval_period: IntervalPeriod {
                            start: rfc3339_ms(r.start_ms),
                            duration: iso_duration(r.interval_ms),
                        },
                        payloads: vec![
                            ValuesMap {
                                kind: "PRICE",
                                values: vec![per_kwh(price)],
                            },
                            ValuesMap {
                                kind: "EXPORT_PRICE",
                                values: vec![per_kwh(price)],
                            },
                        ],
                    })
                })
                .collect();
            out.push(EventView {
                id: format!("{}-price-{i}", d.program),
                created_date_time: created.clone(),
                modification_date_time: modified.clone(),
                object_type: "EVENT",
                program_id: d.program.clone(),
                event_name: format!("prices at node {}", node.id.as_str()),
                priority: 1,
                targets: node_targets(&d.state, i),
                payload_descriptors: price_descriptors(currency),
                intervals,
            });
        }
    }
    // An alert while the feeder is, or is scheduled to be, in alert or islanded mode: one
    // interval per run of such intervals from the next to clear on.
    let s = &d.schedule;
    let mut alerts = Vec::new();
    let mode_changes: Vec<(Interval, GridMode)> = s.modes.clone();
    for (j, (from, mode)) in mode_changes.iter().enumerate() {
        if *mode == GridMode::Normal {
            continue;
        }
        let from = (*from).max(s.next_clear);
        let start = s.start_ms(from);
        let end = mode_changes.get(j + 1).map(|(k, _)| s.start_ms(*k));
        let value = match mode {
            GridMode::Alert => "ALERT",
            GridMode::Islanded => "ISLANDED",
            GridMode::Normal => unreachable!(),
        };
        alerts.push(EventInterval {
            id: i32::try_from(from.0).unwrap_or(i32::MAX),
            interval_period: IntervalPeriod {
                start: rfc3339_ms(start),
                // P9999Y: until a later mode change is scheduled.
                duration: end.map_or_else(
                    || "P9999Y".to_owned(),
                    |e| iso_duration(e.saturating_sub(start)),
                ),
            },
            payloads: vec![ValuesMap {
                kind: "ALERT_GRID_EMERGENCY",
                values: vec![string_value(value)],
            }],
        });
    }
    if !alerts.is_empty() {
        out.push(EventView {
            id: format!("{}-alert", d.program),
            created_date_time: created.clone(),
            modification_date_time: created.clone(),
            object_type: "EVENT",
            program_id: d.program.clone(),
            event_name: format!("grid emergency on feeder {}", d.feeder.as_str()),
            priority: 0,
            targets: Vec::new(),
            payload_descriptors: vec![PayloadDescriptor {
                object_type: "EVENT_PAYLOAD_DESCRIPTOR",
                payload_type: "ALERT_GRID_EMERGENCY",
                units: None,
                currency: None,
            }],
            intervals: alerts,
        });
    }
    // Edge-limit changes to come: the node's new import and export capacity, in kW.
    for l in &s.limits {
        let i = l.node as usize;
        if i >= d.state.nodes.len() {
            continue;
        }
        let start = s.start_ms(l.from);
        let kw = |w: Option<bcte_types::Watts>| -> Vec<Box<RawValue>> {
            w.map(|w| vec![per_kw(w.0)]).unwrap_or_default()
        };
        let mut payloads = Vec::new();
        let (import, export) = (kw(l.import_limit), kw(l.export_limit));
        if !import.is_empty() {
            payloads.push(ValuesMap {
                kind: "IMPORT_CAPACITY_LIMIT",
                values: import,
            });
        }
        if !export.is_empty() {
            payloads.push(ValuesMap {
                kind: "EXPORT_CAPACITY_LIMIT",
                values: export,
            });
        }
        if payloads.is_empty() {
            continue;
        }
        out.push(EventView {
            id: format!("{}-limit-{i}-{}", d.program, l.from.0),
            created_date_time: created.clone(),
            modification_date_time: created.clone(),
            object_type: "EVENT",
            program_id: d.program.clone(),
            event_name: format!(
                "edge limits of node {} from interval {}",
                d.state.nodes[i].id.as_str(),
                l.from.0
            ),
            priority: 1,
            targets: node_targets(&d.state, i),
            payload_descriptors: limit_descriptors(),
            intervals: vec![EventInterval {
                id: i32::try_from(l.from.0).unwrap_or(i32::MAX),
                interval_period: IntervalPeriod {
                    start: rfc3339_ms(start),
                    duration: "P9999Y".into(),
                },
                payloads,
            }],
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// Watts as kW, exactly (÷ 10³), as a JSON number.
fn per_kw(w: i64) -> Box<RawValue> {
    exact(w, 3)
}

fn page<T>(items: Vec<T>, q: &ListQuery) -> Vec<T> {
    items.into_iter().skip(q.skip).take(q.limit).collect()
}

fn json<T: Serialize>(v: &T) -> Response {
    axum::Json(v).into_response()
}

async fn programs<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    let q = list_query(raw.as_deref(), &["targets", "skip", "limit"])?;
    let v = vtn(&st)?;
    let (height, feeders) = all_feeders(&st)?;
    let mut out = Vec::new();
    for f in &feeders {
        let d = feeder_data(&st, height, f)?;
        // A program has no targets: a query naming targets matches none (OpenADR's targets
        // narrow, every given one must match).
        if q.targets.is_empty() {
            out.push(program_view(&d, &v.currency));
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(json(&page(out, &q)))
}

async fn program<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let v = vtn(&st)?;
    let (height, feeders) = all_feeders(&st)?;
    let f = feeders
        .iter()
        .find(|f| program_id(f) == id)
        .ok_or_else(|| Problem::not_found(format!("no program {id:?}")))?;
    Ok(json(&program_view(
        &feeder_data(&st, height, f)?,
        &v.currency,
    )))
}

async fn events<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    let q = list_query(
        raw.as_deref(),
        &["programID", "targets", "skip", "limit", "active"],
    )?;
    let v = vtn(&st)?;
    let (height, feeders) = all_feeders(&st)?;
    let mut out = Vec::new();
    for f in &feeders {
        if q.program.as_ref().is_some_and(|p| *p != program_id(f)) {
            continue;
        }
        let d = feeder_data(&st, height, f)?;
        out.extend(
            feeder_events(&d, &v.currency)
                .into_iter()
                .filter(|e| q.targets.iter().all(|t| e.targets.contains(t))),
        );
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(json(&page(out, &q)))
}

async fn event<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let v = vtn(&st)?;
    if !is_object_id(&id) {
        return Err(Problem::bad_request(format!("{id:?} is not an object id")));
    }
    let (height, feeders) = all_feeders(&st)?;
    for f in &feeders {
        let p = program_id(f);
        if !id.starts_with(&format!("{p}-")) {
            continue;
        }
        let d = feeder_data(&st, height, f)?;
        if let Some(e) = feeder_events(&d, &v.currency)
            .into_iter()
            .find(|e| e.id == id)
        {
            return Ok(json(&e));
        }
    }
    Err(Problem::not_found(format!("no event {id:?}")))
}

// ---- subscriptions ------------------------------------------------------------------------

/// A subscription as OpenADR writes it (`subscription`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionView {
    id: String,
    created_date_time: String,
    modification_date_time: String,
    object_type: &'static str,
    #[serde(rename = "clientID")]
    client_id: String,
    client_name: String,
    #[serde(rename = "programID", skip_serializing_if = "Option::is_none")]
    program_id: Option<String>,
    object_operations: Vec<crate::vtn_subs::ObjectOperation>,
    targets: Option<Vec<String>>,
}

impl From<crate::vtn_subs::Subscription> for SubscriptionView {
    fn from(s: crate::vtn_subs::Subscription) -> Self {
        Self {
            id: s.id,
            created_date_time: rfc3339_ms(s.created_ms),
            modification_date_time: rfc3339_ms(s.modified_ms),
            object_type: "SUBSCRIPTION",
            client_id: s.client_id,
            client_name: s.client_name,
            program_id: s.program_id,
            object_operations: s.object_operations,
            targets: s.targets,
        }
    }
}

impl From<crate::vtn_subs::SubscriptionError> for Problem {
    fn from(e: crate::vtn_subs::SubscriptionError) -> Self {
        use crate::vtn_subs::SubscriptionError as E;
        match e {
            E::Invalid(m) => Self::bad_request(m),
            E::NotFound(_) => Self::not_found(e.to_string()),
            E::Full => Self::new(StatusCode::CONFLICT, e.to_string()),
            E::Io { .. } => Self::internal(e),
        }
    }
}

fn needs_scope(caller: &Caller, scopes: &[&str]) -> Result<(), Problem> {
    if caller.scopes.iter().any(|s| scopes.contains(&s.as_str())) {
        Ok(())
    } else {
        Err(Problem::forbidden(format!(
            "this needs the scope {}",
            scopes.join(" or ")
        )))
    }
}

fn subscription_request(body: &[u8]) -> Result<crate::vtn_subs::SubscriptionRequest, Problem> {
    serde_json::from_slice(body)
        .map_err(|e| Problem::bad_request(format!("the body is not a subscriptionRequest: {e}")))
}

async fn list_subscriptions<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    axum::Extension(caller): axum::Extension<Caller>,
    RawQuery(raw): RawQuery,
) -> Result<Response, Problem> {
    needs_scope(&caller, &["read_ven_objects", "read_all"])?;
    let allowed = ["programID", "clientName", "objects", "skip", "limit"];
    let mut names = Vec::new();
    let mut objects = Vec::new();
    let mut rest = Vec::new();
    for (k, v) in form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "clientName" => names.push(v.into_owned()),
            "objects" => objects.push(v.into_owned()),
            _ if allowed.contains(&k.as_ref()) => rest.push((k.into_owned(), v.into_owned())),
            _ => {
                return Err(Problem::bad_request(format!(
                    "query parameter {k:?} is not one of {}",
                    allowed.join(", ")
                )));
            }
        }
    }
    let rest = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(rest)
        .finish();
    let q = list_query(Some(&rest), &["programID", "skip", "limit"])?;
    let subs: Vec<SubscriptionView> = vtn(&st)?
        .subscriptions()
        .of(&caller.client.id)
        .into_iter()
        .filter(|s| {
            q.program
                .as_ref()
                .is_none_or(|p| s.program_id.as_ref() == Some(p))
        })
        .filter(|s| names.iter().all(|n| *n == s.client_name))
        .filter(|s| {
            objects
                .iter()
                .all(|o| s.object_operations.iter().any(|op| op.objects.contains(o)))
        })
        .map(SubscriptionView::from)
        .collect();
    Ok(json(&page(subs, &q)))
}

async fn create_subscription<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    axum::Extension(caller): axum::Extension<Caller>,
    body: Bytes,
) -> Result<Response, Problem> {
    needs_scope(&caller, &["write_subscriptions"])?;
    let r = subscription_request(&body)?;
    let sub = vtn(&st)?
        .subscriptions()
        .add(&caller.client.id, r, crate::auth::unix_now_ms())?;
    Ok((StatusCode::CREATED, json(&SubscriptionView::from(sub))).into_response())
}

async fn get_subscription<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    needs_scope(&caller, &["read_ven_objects", "read_all"])?;
    let sub = vtn(&st)?.subscriptions().get(&caller.client.id, &id)?;
    Ok(json(&SubscriptionView::from(sub)))
}

async fn replace_subscription<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    needs_scope(&caller, &["write_subscriptions"])?;
    let r = subscription_request(&body)?;
    let sub =
        vtn(&st)?
            .subscriptions()
            .replace(&caller.client.id, &id, r, crate::auth::unix_now_ms())?;
    Ok(json(&SubscriptionView::from(sub)))
}

async fn delete_subscription<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    needs_scope(&caller, &["write_subscriptions"])?;
    let sub = vtn(&st)?.subscriptions().delete(&caller.client.id, &id)?;
    Ok(json(&SubscriptionView::from(sub)))
}

// ---- notifications ------------------------------------------------------------------------

/// One object as the VTN serves it, for telling what changed between two blocks.
struct Served {
    object: &'static str,
    program: String,
    targets: Vec<String>,
    body: serde_json::Value,
}

/// Every program and event the VTN serves at the tip, by id.
fn served<S: Store>(
    st: &ApiState<S>,
) -> Result<std::collections::BTreeMap<String, Served>, Problem> {
    let v = vtn(st)?;
    let (height, feeders) = all_feeders(st)?;
    let mut out = std::collections::BTreeMap::new();
    for f in &feeders {
        let d = feeder_data(st, height, f)?;
        let p = program_view(&d, &v.currency);
        out.insert(
            p.id.clone(),
            Served {
                object: "PROGRAM",
                program: p.id.clone(),
                targets: Vec::new(),
                body: serde_json::to_value(&p).unwrap_or_default(),
            },
        );
        for e in feeder_events(&d, &v.currency) {
            out.insert(
                e.id.clone(),
                Served {
                    object: "EVENT",
                    program: e.program_id.clone(),
                    targets: e.targets.clone(),
                    body: serde_json::to_value(&e).unwrap_or_default(),
                },
            );
        }
    }
    Ok(out)
}

/// The notifications due between `before` and `now`: (operation, object id) in id order.
fn changes(
    before: &std::collections::BTreeMap<String, Served>,
    now: &std::collections::BTreeMap<String, Served>,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for (id, s) in now {
        match before.get(id) {
            None => out.push(("CREATE", id.clone())),
            Some(b) if b.body != s.body => out.push(("UPDATE", id.clone())),
            Some(_) => {}
        }
    }
    for id in before.keys() {
        if !now.contains_key(id) {
            out.push(("DELETE", id.clone()));
        }
    }
    out
}

/// How long a webhook has to answer.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends every subscriber the programs and events that change as blocks are finalized
/// (docs/openadr.md, "Subscriptions"): after each new final block (at most every 200 ms), what
/// the VTN serves is compared with what it served before; each created, updated or deleted
/// object is posted, as an OpenADR `notification`, to every webhook of an active client's
/// subscription that names its object type and operation and matches its program and targets.
/// A webhook that fails or takes longer than [`WEBHOOK_TIMEOUT`] is logged and not retried:
/// the VEN reads the current state with `GET /events` when it comes back. Nothing is compared
/// while there is no subscription.
pub fn spawn_notifier<S: Store>(st: Arc<ApiState<S>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tips = st.shared.executor.subscribe();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(WEBHOOK_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        let mut before: Option<std::collections::BTreeMap<String, Served>> = None;
        while tips.changed().await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
            tips.borrow_and_update();
            let Some(v) = st.vtn.as_deref() else { return };
            if v.subscriptions().all().is_empty() {
                before = None;
                continue;
            }
            let st2 = st.clone();
            let Ok(Ok(now)) = tokio::task::spawn_blocking(move || served(&st2)).await else {
                continue;
            };
            let Some(prev) = before.replace(now) else {
                continue;
            };
            let now = before.as_ref().expect("just set");
            let mut posts = Vec::new();
            for (operation, id) in changes(&prev, now) {
                let s = now
                    .get(&id)
                    .or_else(|| prev.get(&id))
                    .expect("one holds it");
                for sub in v.subscriptions().all() {
                    if v.clients.active(&sub.client_id).is_none() {
                        continue;
                    }
                    for op in &sub.object_operations {
                        if sub.wants(op, s.object, operation, &s.program, &s.targets) {
                            let body = serde_json::json!({
                                "objectType": s.object,
                                "operation": operation,
                                "object": s.body,
                                "targets": s.targets,
                            });
                            posts.push((op.callback_url.clone(), op.bearer_token.clone(), body));
                        }
                    }
                }
            }
            if posts.is_empty() {
                continue;
            }
            let agent = agent.clone();
            tokio::task::spawn_blocking(move || {
                for (url, bearer, body) in posts {
                    let mut req = agent.post(&url);
                    if let Some(b) = &bearer {
                        req = req.header("Authorization", format!("Bearer {b}"));
                    }
                    match req.send_json(&body) {
                        Ok(r) if r.status().is_success() => {}
                        Ok(r) => {
                            tracing::info!(%url, status = %r.status(), "webhook refused a notification")
                        }
                        Err(e) => tracing::info!(%url, %e, "webhook unreachable"),
                    }
                }
            });
        }
    })
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_written_exactly_per_kwh() {
        assert_eq!(per_kwh(150_000_000).get(), "0.15");
        assert_eq!(per_kwh(80_000_000_000).get(), "80");
        assert_eq!(per_kwh(-500_000_000).get(), "-0.5");
        assert_eq!(per_kwh(1).get(), "0.000000001");
        assert_eq!(per_kwh(0).get(), "0");
        assert_eq!(per_kw(6_500).get(), "6.5");
        assert_eq!(per_kw(-250_000).get(), "-250");
    }

    #[test]
    fn durations_and_times_are_iso_8601() {
        assert_eq!(iso_duration(900_000), "PT15M");
        assert_eq!(iso_duration(10_000), "PT10S");
        assert_eq!(iso_duration(5_400_000), "PT1H30M");
        assert_eq!(iso_duration(500), "PT0.5S");
        assert_eq!(iso_duration(0), "PT0S");
        assert_eq!(rfc3339_ms(1_330_578_000_000), "2012-03-01T05:00:00Z");
    }

    #[test]
    fn program_ids_are_object_ids() {
        assert_eq!(program_id(&FeederId::new("demo").unwrap()), "demo");
        let odd = program_id(&FeederId::new("LV1.101 Bus 1").unwrap());
        assert!(is_object_id(&odd) && odd.starts_with('f') && odd.len() == 25);
    }

    #[test]
    fn list_queries_are_checked() {
        let q = list_query(
            Some("targets=a&targets=b&skip=2&limit=3"),
            &["targets", "skip", "limit"],
        )
        .unwrap();
        assert_eq!((q.targets.len(), q.skip, q.limit), (2, 2, 3));
        assert_eq!(list_query(None, &["limit"]).unwrap().limit, 50);
        for bad in ["limit=51", "limit=-1", "skip=x", "nope=1", "targets="] {
            let e = list_query(Some(bad), &["targets", "skip", "limit"]).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
        }
    }
}
