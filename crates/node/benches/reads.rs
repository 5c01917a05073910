//! The cost of an authenticated read at the node (AC-6): a request with a bearer token (its
//! EdDSA signature checked, the account's roles and revocation re-read at the tip) against the
//! same route without one, and against a public route, through the whole router in-process.
//!
//! `cargo bench -p bcte-node --bench reads` (see docs/BENCHMARKS.md for recorded figures).

use axum::{
    Router,
    body::{Body, to_bytes},
    http::{Request, StatusCode},
};
use bcte_node::{
    api::{self, ApiState},
    app::{BuildParams, Shared},
    auth::{Auth, unix_now_s},
    executor::Executor,
};
use bcte_store::{ChainStore, MemStore};
use bcte_types::{
    AccountId, Allocation, Amount, BlockLimits, ChainId, Genesis, Role, Roles, Validator,
};
use commonware_cryptography::{Signer as _, ed25519::PrivateKey};
use criterion::{Criterion, criterion_group, criterion_main};
use std::sync::Arc;
use tower::ServiceExt;

fn account(seed: u64) -> AccountId {
    AccountId::from_public_key(&PrivateKey::from_seed(seed).public_key())
}

fn router() -> (Router, String) {
    let genesis = Genesis {
        chain_id: ChainId::new("bench").unwrap(),
        genesis_time_ms: 0,
        validators: vec![Validator {
            name: "v".into(),
            public_key: account(0),
        }],
        authority: account(0),
        registrar: None,
        allocations: (1..=1_000)
            .map(|i| Allocation {
                account: account(i),
                amount: Amount(1_000),
                roles: Roles::one(Role::Prosumer),
            })
            .collect(),
        market_clock_speed: 1,
        currency: None,
    };
    let chain = ChainStore::new(MemStore::new(), BlockLimits::default());
    chain.init(&genesis).unwrap();
    let executor = Executor::new(chain, genesis.chain_id.clone()).unwrap();
    let shared = Arc::new(Shared::new(executor, BuildParams::default()));
    let auth = Arc::new(Auth::new(
        &PrivateKey::from_seed(7),
        genesis.chain_id.clone(),
    ));
    let token = auth.issue(&account(5), unix_now_s());
    let router = api::router(Arc::new(ApiState {
        auth,
        pii: None,
        vtn: None,
        tls: false,
        dashboard: bcte_node::config::DashboardConfig::default(),
        shared,
        outbox: None,
        metrics: None,
        batches: Arc::new(bcte_store::MemBlobStore::default()),
    }));
    (router, token)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (router, token) = router();
    let path = format!("/v1/accounts/{}", account(5));
    let call = |path: &str, token: Option<&str>, expected: StatusCode| {
        let mut req = Request::get(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Body::empty()).unwrap();
        let router = router.clone();
        rt.block_on(async move {
            let resp = router.oneshot(req).await.unwrap();
            assert_eq!(resp.status(), expected);
            to_bytes(resp.into_body(), 1 << 20).await.unwrap().len()
        })
    };
    let mut g = c.benchmark_group("api_read");
    g.bench_function("account_with_token", |b| {
        b.iter(|| call(&path, Some(&token), StatusCode::OK))
    });
    g.bench_function("account_without_token_401", |b| {
        b.iter(|| call(&path, None, StatusCode::UNAUTHORIZED))
    });
    g.bench_function("head_public", |b| {
        b.iter(|| call("/v1/head", None, StatusCode::OK))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
