//! The route table: every route of the API with its read rule (AC-6.3). The router is built
//! from it and so are the OpenAPI description's security requirements and its `x-bcte-read`
//! extension, so a route cannot be served without a rule nor described with another.

use crate::{
    api::{ApiError, ApiState},
    auth::Viewer,
};
use axum::{
    Router,
    extract::{Request, State},
    http::{Method, header::AUTHORIZATION},
    middleware::{Next, from_fn_with_state},
    response::{IntoResponse, Response},
    routing::MethodRouter,
};
use bcte_store::Store;
use bcte_types::Role;
use std::{collections::BTreeMap, sync::Arc};

/// Who may call a route, and what it shows to whom (docs/access-rules.md, AC-6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReadRule {
    /// Anyone, without credentials: what it shows is public (AC-6.4).
    Public,
    /// Anyone; the public part for all, and the rest only to whom it concerns (as
    /// [`ReadRule::Own`]).
    Redacted,
    /// Credentials required; each object or entry is shown only to whom it concerns: the
    /// accounts it names (the owner, the parties), a site's delegated aggregator, the feeder's
    /// operator, auditors and regulators. An object named by its owner's id is 403 to anyone
    /// else; one whose owner must be looked up is the same 404 as an absent one.
    Own,
    /// Credentials required: a DSO (for the feeders it operates), an auditor or a regulator.
    Operator,
    /// Credentials required: a head-end (`meter`) or a DSO.
    Upload,
    /// Credentials required: anonymised aggregates, for data service providers (and DSOs,
    /// auditors, regulators) (AC-6.8).
    Aggregates,
    /// Credentials required: personal data, the registrar's to store and erase, the
    /// participant's and the registrar's to read; every call logged (AC-2.4).
    Personal,
}

impl ReadRule {
    /// Every rule.
    pub const ALL: [Self; 7] = [
        Self::Public,
        Self::Redacted,
        Self::Own,
        Self::Operator,
        Self::Upload,
        Self::Aggregates,
        Self::Personal,
    ];

    /// Its name, as in the OpenAPI description's `x-bcte-read` and in the docs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Redacted => "redacted",
            Self::Own => "own",
            Self::Operator => "operator",
            Self::Upload => "upload",
            Self::Aggregates => "aggregates",
            Self::Personal => "personal",
        }
    }

    /// What it means, for the OpenAPI description.
    pub const fn describe(self) -> &'static str {
        match self {
            Self::Public => "Public: no credentials needed.",
            Self::Redacted => {
                "Redacted: anyone; without credentials only the public part, with them also what \
                 concerns the caller (AC-6.3)."
            }
            Self::Own => {
                "Own: a bearer token is needed; the answer holds only what concerns the caller: \
                 its own accounts and sites, the sites delegated to it, the feeders it operates; \
                 auditors and regulators see everything (AC-6.3)."
            }
            Self::Operator => {
                "Operator: a bearer token of a DSO (the feeder's operator), an auditor or a \
                 regulator is needed (AC-6.3)."
            }
            Self::Upload => "Upload: a bearer token of a head-end (meter role) or a DSO is needed.",
            Self::Aggregates => {
                "Aggregates: a bearer token of a data service provider, a DSO, an auditor or a \
                 regulator is needed; the answer holds no site or account id (AC-6.8)."
            }
            Self::Personal => {
                "Personal: a bearer token is needed; the registrar stores and erases, the \
                 participant's own accounts and the registrar read; every call is logged \
                 (AC-2.4)."
            }
        }
    }

    /// Whether it needs credentials.
    pub const fn needs_credentials(self) -> bool {
        matches!(
            self,
            Self::Own | Self::Operator | Self::Upload | Self::Aggregates | Self::Personal
        )
    }

    /// Refuses `viewer` if the rule does not let it call the route at all (401 without
    /// credentials, 403 without a role it needs). Object-level checks are the handler's.
    pub fn admits(self, viewer: &Viewer) -> Result<(), ApiError> {
        if self.needs_credentials() && viewer.account.is_none() {
            return Err(ApiError::unauthorized(
                "credentials missing: this route needs `Authorization: Bearer <token>` (POST \
                 /v1/auth/challenge, then /v1/auth/token)",
            ));
        }
        let ok = match self {
            Self::Public | Self::Redacted | Self::Own | Self::Personal => true,
            Self::Operator => viewer.reads_all() || viewer.has(Role::Dso),
            Self::Upload => viewer.has(Role::Meter) || viewer.has(Role::Dso),
            Self::Aggregates => {
                viewer.has(Role::DataService) || viewer.has(Role::Dso) || viewer.reads_all()
            }
        };
        if ok {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "not allowed: this route is for {}",
                match self {
                    Self::Operator => "a DSO, an auditor or a regulator",
                    Self::Aggregates => "a data service provider, a DSO, an auditor or a regulator",
                    _ => "a head-end or a DSO",
                }
            )))
        }
    }
}

/// One route: a method on a path, its read rule, and its handler.
pub struct Route<S: Store> {
    /// The method.
    pub method: Method,
    /// The path in axum's syntax (`{param}`, `{*rest}`).
    pub path: &'static str,
    /// Who may call it.
    pub rule: ReadRule,
    handler: MethodRouter<Arc<ApiState<S>>>,
}

impl<S: Store> Route<S> {
    /// The route `method path` with `rule`, served by `handler` (a method router for `method`).
    pub fn new(
        method: Method,
        path: &'static str,
        rule: ReadRule,
        handler: MethodRouter<Arc<ApiState<S>>>,
    ) -> Self {
        Self {
            method,
            path,
            rule,
            handler,
        }
    }

    /// The path as the OpenAPI description writes it (`{*key}` is `{key}`).
    pub fn openapi_path(&self) -> String {
        self.path.replace("{*", "{")
    }
}

/// Every route of the API.
pub fn table<S: Store>() -> Vec<Route<S>> {
    let mut t = crate::api::routes::<S>();
    t.extend(crate::auth_api::routes::<S>());
    t.extend(crate::market_api::routes::<S>());
    t.extend(crate::settle_api::routes::<S>());
    t.extend(crate::batch_api::routes::<S>());
    t.extend(crate::billing_api::routes::<S>());
    t.extend(crate::pii_api::routes::<S>());
    t.extend(crate::export_api::routes::<S>());
    t.extend(crate::vtn_admin_api::routes::<S>());
    t.extend(crate::dashboard::routes::<S>());
    t
}

/// Every route's method, OpenAPI path and rule (the table without its handlers).
pub fn rules() -> Vec<(Method, String, ReadRule)> {
    table::<bcte_store::MemStore>()
        .iter()
        .map(|r| (r.method.clone(), r.openapi_path(), r.rule))
        .collect()
}

/// The routes of the table over `state`, each behind the guard of its rule.
pub fn router<S: Store>(state: Arc<ApiState<S>>) -> Router<Arc<ApiState<S>>> {
    let mut paths: BTreeMap<&'static str, MethodRouter<Arc<ApiState<S>>>> = BTreeMap::new();
    for r in table::<S>() {
        let guarded = r
            .handler
            .route_layer(from_fn_with_state((state.clone(), r.rule), guard::<S>));
        let entry = paths.remove(r.path).unwrap_or_default();
        paths.insert(r.path, entry.merge(guarded));
    }
    paths
        .into_iter()
        .fold(Router::new(), |router, (path, h)| router.route(path, h))
}

/// Finds who is asking, refuses what the route's rule refuses, and hands the [`Viewer`] to the
/// handler.
async fn guard<S: Store>(
    State((st, rule)): State<(Arc<ApiState<S>>, ReadRule)>,
    mut req: Request,
    next: Next,
) -> Response {
    let viewer = match viewer_of(&st, req.headers().get(AUTHORIZATION)) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = rule.admits(&viewer) {
        return e.into_response();
    }
    req.extensions_mut().insert(viewer);
    next.run(req).await
}

/// The viewer an `Authorization` header names: the public without one; 401 for a header that
/// is not a valid bearer token of this node; 403 for a revoked account.
pub fn viewer_of<S: Store>(
    st: &ApiState<S>,
    header: Option<&axum::http::HeaderValue>,
) -> Result<Viewer, ApiError> {
    let Some(header) = header else {
        return Ok(Viewer::public());
    };
    let text = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not ASCII"))?;
    let token = text
        .strip_prefix("Bearer ")
        .or_else(|| text.strip_prefix("bearer "))
        .ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
        })?;
    let account = st.auth.verify(token.trim())?;
    Viewer::of(st, account)
}

/// Writes each route's rule into `doc`: the `x-bcte-read` extension, the rule's sentence at the
/// end of the description, the bearer security requirement and the 401/403 answers of the
/// rules that need credentials.
pub fn annotate(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{
        ResponseBuilder,
        extensions::ExtensionsBuilder,
        security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme},
    };
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "A read token from POST /v1/auth/token (docs/access-rules.md, AC-6.1).",
                ))
                .build(),
        ),
    );
    for (method, path, rule) in rules() {
        let Some(item) = doc.paths.paths.get_mut(&path) else {
            continue;
        };
        let op = match method {
            Method::GET => item.get.as_mut(),
            Method::POST => item.post.as_mut(),
            Method::PUT => item.put.as_mut(),
            Method::DELETE => item.delete.as_mut(),
            _ => None,
        };
        let Some(op) = op else { continue };
        let ext = ExtensionsBuilder::new()
            .add("x-bcte-read", rule.name())
            .build();
        match &mut op.extensions {
            Some(e) => e.merge(ext),
            None => op.extensions = Some(ext),
        }
        op.description = Some(match op.description.take() {
            Some(d) => format!("{d}\n\n{}", rule.describe()),
            None => rule.describe().to_owned(),
        });
        let error = |text: &str| {
            ResponseBuilder::new()
                .description(text)
                .content(
                    "application/json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        let responses = &mut op.responses.responses;
        if rule != ReadRule::Public {
            responses.entry("401".into()).or_insert_with(|| {
                error("credentials malformed, expired or forged (or missing, where needed)").into()
            });
            responses
                .entry("403".into())
                .or_insert_with(|| error("not allowed, or the account is revoked").into());
        }
        if rule.needs_credentials() {
            op.security = Some(vec![SecurityRequirement::new(
                "bearer",
                Vec::<String>::new(),
            )]);
        } else if rule == ReadRule::Redacted {
            // Optional: no credentials, or a bearer token.
            op.security = Some(vec![
                SecurityRequirement::default(),
                SecurityRequirement::new("bearer", Vec::<String>::new()),
            ]);
        }
    }
}
