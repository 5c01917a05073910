//! The dashboard (docs/dashboard.md): a static page served at `/` (its HTML, script, styles and
//! the vendored charting library are embedded in the binary, so nothing is built to run it),
//! and the live stream it follows, `GET /v1/stream`.
//!
//! The page reads only the API's own routes, with the API's own rules: without credentials it
//! sees what is public (the feeder, its prices, the mode, the blocks and their certificates);
//! signed in with a read token it sees what concerns that account (AC-6.3). The stream carries
//! only public facts (each new final block's height, hash and time) and so needs no
//! credentials: a browser's `EventSource` cannot send an `Authorization` header, and tokens
//! never go in URLs. On each block the page fetches what changed, with its token in the header.
//!
//! Every page answer carries a Content-Security-Policy that allows scripts, styles and
//! connections from the node itself only: no inline script, no `eval`, no other origin, no
//! framing.

use crate::{
    api::ApiState,
    config::DashboardConfig,
    routes::{ReadRule, Route},
};
use axum::{
    Router,
    extract::State,
    http::{HeaderValue, Method, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
    routing::get,
};
use bcte_store::Store;
use futures::Stream;
use serde::{Deserialize, Serialize};
use std::{convert::Infallible, sync::Arc, time::Duration};
use utoipa::{OpenApi, ToSchema};

/// What the page may load and where it may connect: the node only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One embedded file: its path, content type and bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../dashboard/index.html"),
    },
    Asset {
        path: "/dashboard/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../dashboard/app.js"),
    },
    Asset {
        path: "/dashboard/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../dashboard/style.css"),
    },
    Asset {
        path: "/dashboard/vendor/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../dashboard/vendor/uPlot.iife.min.js"),
    },
    Asset {
        path: "/dashboard/vendor/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../dashboard/vendor/uPlot.min.css"),
    },
    Asset {
        path: "/favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../dashboard/favicon.svg"),
    },
    // Browsers ask for /favicon.ico whatever the page links: the same icon, not a 404 in the
    // console.
    Asset {
        path: "/favicon.ico",
        content_type: "image/svg+xml",
        body: include_bytes!("../dashboard/favicon.svg"),
    },
];

/// `GET /dashboard/config.json`: what the deployment lets the page show.
#[derive(Debug, Serialize, Deserialize)]
struct PageConfig {
    /// Whether to draw the feeder's tree.
    topology: bool,
}

fn with_headers(content_type: &'static str, body: impl IntoResponse) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // The files change with the binary: revalidate rather than serve a stale script.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The page's routes (none when the deployment turns the dashboard off).
pub fn router(config: DashboardConfig) -> Router {
    let mut r = Router::new();
    if !config.enabled {
        return r;
    }
    for a in ASSETS {
        let (content_type, body) = (a.content_type, a.body);
        r = r.route(
            a.path,
            get(move || async move { with_headers(content_type, body) }),
        );
    }
    let page = PageConfig {
        topology: config.topology,
    };
    let page = serde_json::to_vec(&page).unwrap_or_default();
    r.route(
        "/dashboard/config.json",
        get(move || async move { with_headers("application/json", page) }),
    )
}

/// An event of `GET /v1/stream`: a new final block.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TipEvent {
    /// Its height.
    pub height: u64,
    /// Its hash, hex.
    pub hash: String,
    /// Its timestamp, ms since the Unix epoch.
    pub timestamp: u64,
}

/// One server-sent event of `GET /v1/stream`, as a client reads it: how the description states
/// the stream's items (never built: the handler writes the event's fields itself).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct StreamEvent {
    /// Always `tip`.
    #[schema(pattern = "^tip$")]
    event: String,
    /// A `TipEvent` as JSON.
    data: String,
}

/// Live: a server-sent event `tip` (data: a `TipEvent` as JSON) for the current final block,
/// then one for each new one (several blocks finalized at once: the last), and a comment every
/// 15 s to keep the connection open. Public: it says only what `GET /v1/head` says; a client
/// fetches what changed, with its own credentials.
#[utoipa::path(
    get,
    path = "/v1/stream",
    responses((status = 200, content_type = "text/event-stream", body = StreamEvent, description = "server-sent events `tip`, each with a TipEvent as its data"))
)]
async fn stream<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut rx = st.shared.executor.subscribe();
    rx.mark_changed();
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        let tip = *rx.borrow_and_update();
        let data = serde_json::to_string(&TipEvent {
            height: tip.height.get(),
            hash: hex::encode(tip.hash),
            timestamp: tip.header.timestamp_ms,
        })
        .unwrap_or_default();
        Some((Ok(Event::default().event("tip").data(data)), rx))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// The stream's route.
pub(crate) fn routes<S: Store>() -> Vec<Route<S>> {
    vec![Route::new(
        Method::GET,
        "/v1/stream",
        ReadRule::Public,
        get(stream::<S>),
    )]
}

/// The stream's OpenAPI part.
#[derive(OpenApi)]
#[openapi(paths(stream), components(schemas(StreamEvent, TipEvent)))]
pub struct StreamDoc;

/// Serves a read-only API with the dashboard over `shared`, a chain this process runs some
/// other way (`bcte demo`'s in-process validators), on `listener`, from a thread of its own
/// until the process ends. Only reads and signing in are served: every other request is 405,
/// since a transaction admitted from outside would change a run that is a function of its
/// seed. Read tokens are signed by a key drawn for this server.
pub fn spawn_viewer<S: Store>(
    listener: std::net::TcpListener,
    shared: Arc<crate::app::Shared<S>>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    let key = crate::files::generate_key();
    let auth = Arc::new(crate::auth::Auth::new(
        &key,
        shared.executor.chain_id().clone(),
    ));
    let state = Arc::new(ApiState {
        shared,
        outbox: None,
        metrics: None,
        batches: Arc::new(bcte_store::MemBlobStore::default()),
        auth,
        pii: None,
        vtn: None,
        tls: false,
        dashboard: DashboardConfig::default(),
    });
    let app = crate::api::router(state).layer(axum::middleware::from_fn(read_only));
    std::thread::Builder::new()
        .name("dashboard".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(l) = tokio::net::TcpListener::from_std(listener) {
                    let _ = axum::serve(l, app).await;
                }
            });
        })
}

/// Lets reads and signing in through; refuses the rest with 405.
async fn read_only(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = request.uri().path();
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if reads || path == "/v1/auth/challenge" || path == "/v1/auth/token" {
        return next.run(request).await;
    }
    let body = crate::api::ErrorBody {
        error: "this chain is read-only here: its transactions come from its own agents".into(),
    };
    (axum::http::StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use sha2::{Digest as _, Sha256};

    #[test]
    fn the_vendored_files_are_those_sources_md_names_unmodified() {
        let sources = include_str!("../dashboard/vendor/SOURCES.md");
        for (name, bytes) in [
            (
                "uPlot.iife.min.js",
                &include_bytes!("../dashboard/vendor/uPlot.iife.min.js")[..],
            ),
            (
                "uPlot.min.css",
                &include_bytes!("../dashboard/vendor/uPlot.min.css")[..],
            ),
        ] {
            let digest = hex::encode(Sha256::digest(bytes));
            let row = sources
                .lines()
                .find(|l| l.starts_with(&format!("| `{name}`")))
                .unwrap_or_else(|| panic!("SOURCES.md has no row for {name}"));
            assert!(
                row.contains(&digest),
                "{name}: SHA-256 {digest} is not the one listed"
            );
        }
        assert!(include_str!("../dashboard/vendor/LICENSE-uPlot").contains("MIT License"));
    }
}
