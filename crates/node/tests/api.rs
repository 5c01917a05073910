//! The HTTP API in-process: every route, and every kind of bad request getting a 4xx with a reason.

use axum::{
    Router,
    body::{Body, to_bytes},
    http::{Request, StatusCode},
};
use bcte_ledger::{StateKey, StateProof};
use bcte_node::{
    api::{self, ApiState},
    app::{BuildParams, Shared},
    auth::Auth,
    executor::Executor,
};
use bcte_sim as sim;
use bcte_store::{ChainStore, MemStore};
use bcte_types::{AccountId, BlockLimits, ChainId, ConsensusContext, Genesis, Header, Tx, TxBody};
use commonware_codec::{Copying, DecodeExt, Encode};
use commonware_cryptography::Signer as _;
use rand::{SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use std::sync::Arc;
use tower::ServiceExt;

struct Fixture {
    shared: Arc<Shared<MemStore>>,
    router: Router,
    genesis: Genesis,
    auth: Arc<Auth>,
    /// A read token of an auditor (who reads everything: AC-6.3), sent by [`Fixture::get`].
    token: String,
    /// The personal-data store's directory.
    _pii_dir: tempfile::TempDir,
}

/// The seed of the fixture's auditor account.
const AUDITOR: u64 = 99;

fn fixture() -> Fixture {
    fixture_with(sim::genesis(1, 4))
}

fn fixture_with(mut genesis: Genesis) -> Fixture {
    // Account 1 is also a head-end system's account (the meter batches below).
    genesis.allocations[1].roles =
        bcte_types::Roles::of(&[bcte_types::Role::Prosumer, bcte_types::Role::Meter]);
    if !genesis
        .allocations
        .iter()
        .any(|a| a.account == account(AUDITOR))
    {
        genesis.allocations.push(bcte_types::Allocation {
            account: account(AUDITOR),
            amount: bcte_types::Amount(1),
            roles: bcte_types::Roles::one(bcte_types::Role::Auditor),
        });
    }
    let chain = ChainStore::new(MemStore::new(), BlockLimits::default());
    chain.init(&genesis).unwrap();
    let executor = Executor::new(chain, genesis.chain_id.clone()).unwrap();
    let shared = Arc::new(Shared::new(executor, BuildParams::default()));
    let auth = Arc::new(Auth::new(
        &commonware_cryptography::ed25519::PrivateKey::from_seed(7),
        genesis.chain_id.clone(),
    ));
    let token = auth.issue(&account(AUDITOR), bcte_node::auth::unix_now_s());
    let pii_dir = tempfile::tempdir().unwrap();
    let pii = Arc::new(
        bcte_node::pii::PiiStore::open(&pii_dir.path().join("pii"), &pii_dir.path().join("keys"))
            .unwrap(),
    );
    let router = api::router(Arc::new(ApiState {
        pii: Some(pii),
        vtn: Some(Arc::new(bcte_node::vtn::Vtn::new(
            &commonware_cryptography::ed25519::PrivateKey::from_seed(7),
            &genesis.chain_id,
            bcte_node::vtn_clients::ClientStore::in_memory(),
            bcte_node::vtn_subs::SubscriptionStore::in_memory(false),
            genesis.currency(),
        ))),
        tls: false,
        dashboard: bcte_node::config::DashboardConfig::default(),
        auth: auth.clone(),
        shared: shared.clone(),
        outbox: None,
        metrics: Some(Arc::new(|| "# a test registry\nup 1\n".to_string())),
        batches: Arc::new(bcte_store::MemBlobStore::default()),
    }));
    Fixture {
        shared,
        router,
        genesis,
        auth,
        token,
        _pii_dir: pii_dir,
    }
}

impl Fixture {
    /// Commits one block with whatever the mempool holds, as a proposer and finalizer would,
    /// without a certificate of its own (as if finalized through a descendant).
    fn commit_block(&self) {
        self.commit(false);
    }

    /// Commits one block with its own finality certificate, signed by the one validator.
    fn commit_certified_block(&self) {
        self.commit(true);
    }

    fn commit(&self, certified: bool) {
        let next = self.shared.executor.tip().header.timestamp_ms + 1;
        self.commit_at(next, certified);
    }

    /// Commits one block stamped `timestamp_ms` (which must be after the tip's).
    fn commit_at(&self, timestamp_ms: u64, certified: bool) {
        let ex = &self.shared.executor;
        let tip = ex.tip();
        let txs = self
            .shared
            .mempool
            .lock()
            .unwrap()
            .select(100, 1 << 20, |id| {
                ex.account_at(&tip.hash, id).unwrap().map_or(0, |a| a.nonce)
            });
        let pending = ex
            .build(&tip.hash, timestamp_ms, ConsensusContext::GENESIS, txs)
            .unwrap();
        let certificate = certified.then(|| {
            sim::finalization(
                &self.genesis.chain_id,
                &[sim::validator_key(0)],
                1,
                pending.block.hash(),
                pending.block.height().get(),
            )
        });
        ex.finalize(
            pending.block.clone(),
            certificate.as_deref(),
            &mut StdRng::seed_from_u64(0),
        )
        .unwrap();
        let writes = &pending.execution.writes;
        self.shared
            .mempool
            .lock()
            .unwrap()
            .on_finalized(pending.block.txs(), |id| {
                writes
                    .get(&StateKey::Account(*id))
                    .and_then(|v| v.as_deref())
                    .and_then(bcte_ledger::exec::decode_account)
                    .map_or(0, |a| a.nonce)
            });
    }

    async fn call(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = to_bytes(resp.into_body(), 1 << 22).await.unwrap();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    /// `GET path` as the auditor.
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.get_as(path, Some(&self.token)).await
    }

    /// `GET path` with `token`, or as the public.
    async fn get_as(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = Request::get(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        self.call(req.body(Body::empty()).unwrap()).await
    }

    async fn post(&self, path: &str, body: impl Into<Body>) -> (StatusCode, Value) {
        let req = Request::post(path)
            .header("content-type", "application/json")
            .body(body.into())
            .unwrap();
        self.call(req).await
    }

    async fn submit(&self, tx: &Tx) -> (StatusCode, Value) {
        self.post(
            "/v1/txs",
            json!({ "tx": hex::encode(tx.encode()) }).to_string(),
        )
        .await
    }
}

fn account(i: u64) -> AccountId {
    AccountId::from_public_key(&sim::account_key(i).public_key())
}

#[tokio::test]
async fn health_head_and_openapi_are_served() {
    let f = fixture();
    let (s, v) = f.get("/health").await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, v) = f.get("/v1/head").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["chain_id"], "bcte-sim");
    let (s, v) = f.get("/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert!(v["paths"]["/v1/txs"]["post"].is_object(), "{v}");
    assert!(v["paths"]["/metrics"]["get"].is_object(), "{v}");
    let resp = f
        .router
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    assert!(String::from_utf8_lossy(&text).contains("up 1"));
}

#[tokio::test]
async fn a_transfer_goes_from_submitted_to_final_with_its_receipt() {
    let f = fixture();
    let tx = sim::transfer(&f.genesis, 0, 0, 1, 250);
    let (s, v) = f.submit(&tx).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let hash = v["hash"].as_str().unwrap().to_string();
    assert_eq!(hash, hex::encode(tx.hash()));
    let (s, v) = f.get(&format!("/v1/txs/{hash}")).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("pending")));
    f.commit_block();
    let (s, v) = f.get(&format!("/v1/txs/{hash}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "accepted");
    assert_eq!(v["height"], 1);
    let (_, a) = f.get(&format!("/v1/accounts/{}", account(1))).await;
    assert_eq!(a["balance"], 1_000_000_250u64);
    let (s, b) = f.get("/v1/blocks/1").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["txs"][0]["hash"], hash);
    assert_eq!(b["txs"][0]["payload"]["type"], "transfer");
    let (_, latest) = f.get("/v1/blocks/latest").await;
    assert_eq!(latest["hash"], b["hash"]);
    let (_, by_hash) = f
        .get(&format!("/v1/blocks/{}", b["hash"].as_str().unwrap()))
        .await;
    assert_eq!(by_hash["height"], 1);
}

#[tokio::test]
async fn waiting_for_a_transaction_returns_when_it_becomes_final() {
    let f = Arc::new(fixture());
    let tx = sim::transfer(&f.genesis, 0, 0, 1, 5);
    f.submit(&tx).await;
    let waiter = {
        let f = f.clone();
        let hash = hex::encode(tx.hash());
        tokio::spawn(async move { f.get(&format!("/v1/txs/{hash}?wait_ms=10000")).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    f.commit_block();
    let (s, v) = waiter.await.unwrap();
    assert_eq!(
        (s, v["status"].as_str()),
        (StatusCode::OK, Some("accepted"))
    );
}

#[tokio::test]
async fn proofs_check_against_the_header_of_their_height() {
    let f = fixture();
    f.submit(&sim::transfer(&f.genesis, 0, 0, 1, 5)).await;
    f.commit_block();
    let (s, v) = f
        .get(&format!("/v1/proofs/account/{}?height=1", account(1)))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let proof =
        StateProof::from_bytes(&hex::decode(v["proof"].as_str().unwrap()).unwrap()).unwrap();
    let (_, b) = f.get("/v1/blocks/1").await;
    let header = Header::decode(Copying(
        &hex::decode(b["header"].as_str().unwrap()).unwrap(),
    ))
    .unwrap();
    assert_eq!(hex::encode(header.hash()), b["hash"].as_str().unwrap());
    proof.verify(&header.state_root).unwrap();
    let (s, _) = f.get("/v1/proofs/supply?height=99").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = f.get("/v1/proofs/balance").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["error"].as_str().unwrap().contains("unknown state key"),
        "{v}"
    );
}

#[tokio::test]
async fn every_error_is_a_json_body_whatever_refused_the_request() {
    let f = fixture();
    let json_error = |s: StatusCode, v: &Value, code: StatusCode, words: &str| {
        assert_eq!(s, code, "{v}");
        let msg = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("not a JSON error: {v}"));
        assert!(msg.contains(words), "{msg:?} should mention {words:?}");
    };
    // No content type: axum's 415, answered as a malformed request.
    let (s, v) = f
        .call(Request::post("/v1/txs").body(Body::from("{}")).unwrap())
        .await;
    json_error(s, &v, StatusCode::BAD_REQUEST, "Content-Type");
    // A JSON body of the wrong shape: axum's 422.
    let (s, v) = f.post("/v1/txs/batch", "{}").await;
    json_error(s, &v, StatusCode::BAD_REQUEST, "missing field `txs`");
    // Path and query parameters that do not parse: axum's plain-text 400s.
    let (s, v) = f.get("/v1/certificates/-1").await;
    json_error(s, &v, StatusCode::BAD_REQUEST, "-1");
    let (s, v) = f
        .get(&format!("/v1/txs/{}?wait_ms=-1", "ab".repeat(32)))
        .await;
    json_error(s, &v, StatusCode::BAD_REQUEST, "wait_ms");
    let (s, v) = f.get("/v1/proofs/supply?height=x").await;
    json_error(s, &v, StatusCode::BAD_REQUEST, "height");
    // No such route, or not with this method (the Allow header stays).
    let (s, v) = f.get("/v1/nothing").await;
    json_error(s, &v, StatusCode::NOT_FOUND, "no such route");
    let resp = f
        .router
        .clone()
        .oneshot(Request::delete("/v1/head").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["allow"], "GET,HEAD");
    assert_eq!(resp.headers()["content-type"], "application/json");
    // A body over its limit keeps its 413.
    let big = json!({ "tx": "00".repeat(api::SUBMIT_BODY_BYTES_MAX) }).to_string();
    let (s, v) = f.post("/v1/txs", big).await;
    json_error(s, &v, StatusCode::PAYLOAD_TOO_LARGE, "length limit");
    // An unknown transaction is not waited for as long as asked.
    let started = std::time::Instant::now();
    let (s, _) = f
        .get(&format!("/v1/txs/{}?wait_ms=60000", "ab".repeat(32)))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test]
async fn bad_submissions_get_4xx_with_a_reason() {
    let f = fixture();
    let tx = sim::transfer(&f.genesis, 0, 0, 1, 5);
    let expect = |s: StatusCode, v: &Value, code: StatusCode, words: &str| {
        assert_eq!(s, code, "{v}");
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(msg.contains(words), "{msg:?} should mention {words:?}");
    };

    let (s, v) = f.post("/v1/txs", "{not json").await;
    expect(s, &v, StatusCode::BAD_REQUEST, "malformed request body");
    let (s, v) = f.post("/v1/txs", json!({ "tx": "zz" }).to_string()).await;
    expect(s, &v, StatusCode::BAD_REQUEST, "not hex");
    let (s, v) = f.post("/v1/txs", json!({ "tx": "00ff" }).to_string()).await;
    expect(s, &v, StatusCode::BAD_REQUEST, "not a transaction");
    let (s, v) = f
        .post("/v1/txs", json!({ "tx": "00", "extra": 1 }).to_string())
        .await;
    expect(s, &v, StatusCode::BAD_REQUEST, "unknown field");

    let mut body = tx.body().clone();
    body.nonce = 1;
    let forged = Tx::from_body_and_signature(body, tx.signature().clone());
    let (s, v) = f.submit(&forged).await;
    expect(s, &v, StatusCode::BAD_REQUEST, "bad signature");

    let mut body = tx.body().clone();
    body.chain_id = ChainId::new("elsewhere").unwrap();
    let foreign = Tx::sign(body, &sim::account_key(0));
    let (s, v) = f.submit(&foreign).await;
    expect(s, &v, StatusCode::BAD_REQUEST, "wrong chain id");

    let (s, v) = f.submit(&sim::transfer(&f.genesis, 0, 3, 1, 5)).await;
    expect(s, &v, StatusCode::BAD_REQUEST, "skips ahead");

    let (s, v) = f
        .submit(&sim::transfer(&f.genesis, 0, 0, 1, 5_000_000_000))
        .await;
    expect(s, &v, StatusCode::BAD_REQUEST, "insufficient balance");

    let stranger = sim::account_key(99);
    let unknown = Tx::sign(
        TxBody {
            chain_id: f.genesis.chain_id.clone(),
            sender: AccountId::from_public_key(&stranger.public_key()),
            signer: None,
            nonce: 0,
            payload: bcte_types::Payload::Transfer {
                to: account(1),
                amount: bcte_types::Amount(1),
            },
        },
        &stranger,
    );
    let (s, v) = f.submit(&unknown).await;
    expect(
        s,
        &v,
        StatusCode::BAD_REQUEST,
        "unauthorized: transfer needs the role",
    );

    f.submit(&tx).await;
    let (s, v) = f.submit(&tx).await;
    expect(s, &v, StatusCode::BAD_REQUEST, "already in the mempool");
    f.commit_block();
    let (s, v) = f.submit(&tx).await;
    expect(s, &v, StatusCode::BAD_REQUEST, "already used");

    let huge = format!(
        "{{\"tx\": \"{}\"}}",
        "00".repeat(api::SUBMIT_BODY_BYTES_MAX)
    );
    let (s, _) = f.post("/v1/txs", huge).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_block_finalized_through_a_descendant_is_proven_by_its_certificate_and_the_headers_between()
 {
    let f = fixture();
    f.commit_block();
    f.commit_block();
    // Nothing above block 1 is certified yet: no proof, and the reason.
    let (s, v) = f.get("/v1/certificates/1").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    assert!(v["error"].as_str().unwrap().contains("retry"), "{v}");

    f.commit_certified_block();
    f.commit_block();
    for height in 1..=3u64 {
        let (s, v) = f.get(&format!("/v1/certificates/{height}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["certified_height"], 3, "{v}");
        let (_, block) = f.get(&format!("/v1/blocks/{height}")).await;
        assert_eq!(v["block_hash"], block["hash"]);
        let header = hex::decode(block["header"].as_str().unwrap()).unwrap();
        let descendants: Vec<Vec<u8>> = v["descendants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| hex::decode(d.as_str().unwrap()).unwrap())
            .collect();
        assert_eq!(descendants.len() as u64, 3 - height);
        let certificate = hex::decode(v["certificate"].as_str().unwrap()).unwrap();
        let proven = bcte_node::cert::prove_final(
            &f.genesis,
            &header,
            &descendants,
            &certificate,
            &mut StdRng::seed_from_u64(1),
        )
        .unwrap();
        assert_eq!(
            (proven.header.height.get(), proven.certified_height),
            (height, 3)
        );
    }
    // Block 4, above the certified one, has no proof yet.
    let (s, _) = f.get("/v1/certificates/4").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_reads_get_4xx_with_a_reason() {
    let f = fixture();
    let (s, v) = f.get("/v1/accounts/not-an-account").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("bad account"));
    let (s, _) = f.get("/v1/blocks/7").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, v) = f.get("/v1/blocks/seven").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, _) = f.get(&format!("/v1/txs/{}", "ab".repeat(32))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = f.get("/v1/txs/xyz").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = f.get("/v1/certificates/0").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // An unknown account is not an error: it reads as empty.
    let (s, v) = f.get(&format!("/v1/accounts/{}", account(77))).await;
    assert_eq!((s, v["balance"].as_u64()), (StatusCode::OK, Some(0)));
}

#[tokio::test]
async fn a_batch_is_admitted_in_order_with_a_reason_for_each_refusal() {
    let f = fixture();
    let first = sim::transfer(&f.genesis, 0, 0, 1, 5);
    let second = sim::transfer(&f.genesis, 0, 1, 1, 5);
    let gap = sim::transfer(&f.genesis, 1, 7, 2, 5);
    let mut forged = sim::transfer(&f.genesis, 2, 0, 1, 5).encode().to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    // An entry that is not hex at all makes the whole request malformed.
    let (status, v) = f
        .post(
            "/v1/txs/batch",
            json!({ "txs": [hex::encode(first.encode()), "zz"] }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["error"].as_str().unwrap().contains("txs[1] is not a hex"),
        "{v}"
    );
    let body = json!({ "txs": [
        hex::encode(first.encode()),
        hex::encode(second.encode()),
        "00",
        hex::encode(gap.encode()),
        hex::encode(&forged),
    ]});
    let (status, v) = f.post("/v1/txs/batch", body.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["admitted"], 2);
    let r = v["results"].as_array().unwrap();
    assert_eq!(r.len(), 5);
    assert_eq!(r[0]["hash"], hex::encode(first.hash()));
    assert_eq!(r[0]["error"], Value::Null);
    assert_eq!(
        r[1]["error"],
        Value::Null,
        "the second nonce follows the first"
    );
    assert!(
        r[2]["error"]
            .as_str()
            .unwrap()
            .contains("txs[2] is not a transaction")
    );
    assert!(
        r[3]["error"].as_str().unwrap().contains("skips ahead"),
        "{}",
        r[3]
    );
    assert!(
        r[4]["error"].as_str().unwrap().contains("signature"),
        "{}",
        r[4]
    );
    f.commit_block();
    let (_, a) = f.get(&format!("/v1/accounts/{}", account(0))).await;
    assert_eq!(a["nonce"], 2);

    let too_many: Vec<String> = (0..=api::BATCH_TXS_MAX).map(|_| "00".to_string()).collect();
    let (status, v) = f
        .post("/v1/txs/batch", json!({ "txs": too_many }).to_string())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["error"].as_str().unwrap().contains("at most 4096"), "{v}");
}

/// A transaction of `payload` from account `i` with nonce `nonce`.
fn signed(f: &Fixture, i: u64, nonce: u64, payload: bcte_types::Payload) -> Tx {
    Tx::sign(
        TxBody {
            chain_id: f.genesis.chain_id.clone(),
            sender: account(i),
            signer: None,
            nonce,
            payload,
        },
        &sim::account_key(i),
    )
}

#[tokio::test]
async fn market_routes_serve_results_and_keep_bids_sealed_until_the_interval_clears() {
    use bcte_types::{
        CurveSpec, FeederId, Interval, MarketConfig, NodeId, NodeSpec, Payload, Price, SiteId,
        SiteSpec, Watts,
        market::{BidEntry, Bids, FeederRegister, SitesRegister},
    };
    let f = fixture();
    let feeder = FeederId::new("lv 1").unwrap();
    let config = MarketConfig {
        interval_ms: 10_000,
        gate_lead_ms: 5_000,
        ..MarketConfig::DEFAULT
    };
    // Interval 0 starts at 60 s and its gate closes at 55 s (the genesis is at 0).
    let register = Payload::FeederRegister(FeederRegister {
        feeder: feeder.clone(),
        epoch_ms: Some(60_000),
        config,
        nodes: vec![NodeSpec {
            id: NodeId::new("sub").unwrap(),
            parent: None,
            import_limit: None,
            export_limit: None,
        }],
        market_account: None,
        upstream_account: None,
    });
    let sites = Payload::SitesRegister(SitesRegister {
        feeder: feeder.clone(),
        sites: vec![SiteSpec {
            site: SiteId::new("home 1").unwrap(),
            node: NodeId::new("sub").unwrap(),
            owner: account(1),
            priority: 0,
            import_limit: None,
            export_limit: None,
        }],
    });
    let bid = Payload::Bids(Bids {
        feeder: feeder.clone(),
        bids: vec![BidEntry {
            site: SiteId::new("home 1").unwrap(),
            interval: Interval(0),
            curve: Some(CurveSpec::Points(vec![(Price(0), Watts(2_000))])),
        }],
    });
    assert_eq!(
        f.submit(&signed(&f, 0, 0, register)).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        f.submit(&signed(&f, 0, 1, sites)).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        f.submit(&signed(&f, 1, 0, bid)).await.0,
        StatusCode::ACCEPTED
    );
    f.commit_at(1_000, false);

    let (s, v) = f.get("/v1/feeders").await;
    assert_eq!(
        (s, v["feeders"][0]["id"].clone()),
        (StatusCode::OK, json!("lv 1"))
    );
    let (s, v) = f.get("/v1/feeders/lv%201/schedule").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["next_interval"], 0);
    assert_eq!(v["next_gate_ms"], 55_000);
    let (s, v) = f.get("/v1/feeders/lv%201/sites/home%201").await;
    assert_eq!(
        (s, v["owner"].clone()),
        (StatusCode::OK, json!(account(1).to_string()))
    );
    // Sealed: the bids, their state keys and their curves in blocks.
    let (s, v) = f.get("/v1/feeders/lv%201/intervals/0/bids").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("sealed until it clears")
    );
    let bucket = bcte_ledger::book_bucket(&SiteId::new("home 1").unwrap());
    let (s, _) = f.get(&format!("/v1/proofs/bids/lv%201/0/{bucket}")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, block) = f.get("/v1/blocks/latest").await;
    let bid_view = block["txs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["payload"]["type"] == "bids")
        .unwrap();
    assert_eq!(bid_view["payload"]["bids"][0]["curve"], "sealed");
    let (s, v) = f.get("/v1/feeders/lv%201/intervals/0/result").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(v["error"].as_str().unwrap().contains("not cleared yet"));
    // Bad and unknown ids.
    assert_eq!(f.get("/v1/feeders/%23x").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(f.get("/v1/feeders/nope").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        f.get("/v1/feeders/lv%201/intervals/x/result").await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        f.get("/v1/feeders/lv%201/sites/nobody").await.0,
        StatusCode::NOT_FOUND
    );

    // The block at the gate clears interval 0: everything is public now.
    f.commit_at(55_000, false);
    let (s, r) = f.get("/v1/feeders/lv%201/intervals/0/result").await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(
        r["prices"]["sub"], 100.0,
        "the default tariff's import price"
    );
    assert_eq!(r["allocations"], json!({"home 1": 2.0, "upstream": -2.0}));
    assert_eq!(r["sites"]["home 1"]["served_kw"], 2.0);
    let (s, v) = f.get("/v1/feeders/lv%201/intervals/0/bids").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["bids"][0]["curve"], json!([[0.0, 2.0]]));
    let (s, p) = f.get("/v1/feeders/lv%201/intervals/0/sites/home%201").await;
    assert_eq!(s, StatusCode::OK);
    let proof =
        StateProof::from_bytes(&hex::decode(p["proof"].as_str().unwrap()).unwrap()).unwrap();
    let root = bcte_types::ids::parse_hash(p["state_root"].as_str().unwrap()).unwrap();
    proof.verify(&root).unwrap();
    assert_eq!(p["key"], format!("results/lv 1/0/{bucket}"));
    let (s, _) = f.get(&format!("/v1/proofs/bids/lv%201/0/{bucket}")).await;
    assert_eq!(s, StatusCode::OK, "bids are public once cleared");
    let (_, block) = f.get("/v1/blocks/1").await;
    assert_eq!(
        block["txs"][2]["payload"]["bids"][0]["curve"]["points"],
        json!([[0, 2000]]),
        "the curve is shown once its interval is cleared"
    );
}

#[tokio::test]
async fn meter_batches_are_stored_by_root_served_proven_and_required_for_their_transaction() {
    use bcte_types::{
        FeederId, Interval, Payload, SiteId, WattHours,
        batch::{RawBatch, SignedReading},
    };
    let f = fixture();
    let feeder = FeederId::new("f").unwrap();
    let readings = (0..5u64)
        .map(|i| {
            SignedReading::sign(
                &f.genesis.chain_id,
                &feeder,
                Interval(3),
                SiteId::new(format!("site-{i}")).unwrap(),
                WattHours(100 * i as i64 - 150),
                &commonware_cryptography::ed25519::PrivateKey::from_seed(100 + i),
            )
        })
        .collect();
    let batch = RawBatch {
        chain_id: f.genesis.chain_id.clone(),
        feeder,
        interval: Interval(3),
        readings,
    };
    let bytes = batch.encode().to_vec();
    let root = hex::encode(batch.root());
    // Account 1 is the head-end (meter role): uploads need its token (or a DSO's).
    let head_end = f.auth.issue(&account(1), bcte_node::auth::unix_now_s());
    let upload = |body: Vec<u8>| {
        Request::post("/v1/meter-batches")
            .header("content-type", "application/octet-stream")
            .header("authorization", format!("Bearer {head_end}"))
            .body(Body::from(body))
            .unwrap()
    };
    // Without credentials, or with a prosumer's: refused.
    let anonymous = Request::post("/v1/meter-batches")
        .header("content-type", "application/octet-stream")
        .body(Body::from(bytes.clone()))
        .unwrap();
    assert_eq!(f.call(anonymous).await.0, StatusCode::UNAUTHORIZED);
    let prosumer = f.auth.issue(&account(2), bcte_node::auth::unix_now_s());
    let as_prosumer = Request::post("/v1/meter-batches")
        .header("content-type", "application/octet-stream")
        .header("authorization", format!("Bearer {prosumer}"))
        .body(Body::from(bytes.clone()))
        .unwrap();
    assert_eq!(f.call(as_prosumer).await.0, StatusCode::FORBIDDEN);
    // Not a batch, a batch for another chain, a site twice: 400 with the reason.
    let (status, v) = f.call(upload(b"hello".to_vec())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("not a raw meter batch"),
        "{v}"
    );
    let mut other = batch.clone();
    other.chain_id = ChainId::new("other").unwrap();
    let (status, v) = f.call(upload(other.encode().to_vec())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["error"].as_str().unwrap().contains("for chain \"other\""),
        "{v}"
    );
    let mut twice = batch.clone();
    twice.readings[4] = twice.readings[0].clone();
    let (status, v) = f.call(upload(twice.encode().to_vec())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["error"].as_str().unwrap().contains("appears twice"),
        "{v}"
    );

    // Before the upload, its transaction is refused: the node must hold what it commits to.
    let tx = signed(&f, 1, 0, Payload::MeterBatch(batch.to_payload()));
    let (status, v) = f.submit(&tx).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("is not stored on this node"),
        "{v}"
    );

    let (status, v) = f.call(upload(bytes.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(
        (
            v["root"].as_str().unwrap(),
            v["readings"].as_u64(),
            v["new"].as_bool()
        ),
        (root.as_str(), Some(5), Some(true))
    );
    let (_, v) = f.call(upload(bytes.clone())).await;
    assert_eq!(v["new"], false, "the same batch twice is stored once");

    // Served byte for byte.
    let resp = f
        .router
        .clone()
        .oneshot(
            Request::get(format!("/v1/meter-batches/{root}"))
                .header("authorization", format!("Bearer {}", f.token))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec(),
        bytes
    );

    // A proof of each reading checks against the root with only the reading's own data.
    for (i, r) in batch.readings.iter().enumerate() {
        let (status, p) = f
            .get(&format!(
                "/v1/meter-batches/{root}/proofs/{}",
                r.site.as_str()
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{p}");
        assert_eq!(
            (p["position"].as_u64(), p["leaf_count"].as_u64()),
            (Some(i as u64), Some(5))
        );
        let siblings: Vec<String> = serde_json::from_value(p["siblings"].clone()).unwrap();
        let proof = bcte_types::batch::ReadingProof::from_parts(
            f.genesis.chain_id.clone(),
            batch.feeder.clone(),
            Interval(3),
            SignedReading {
                site: r.site.clone(),
                wh: WattHours(p["wh"].as_i64().unwrap()),
                meter: p["meter"].as_str().unwrap().parse().unwrap(),
                signature: Some(
                    bcte_types::batch::parse_signature(p["signature"].as_str().unwrap()).unwrap(),
                ),
            },
            i as u32,
            5,
            &siblings,
        )
        .unwrap();
        proof.verify(&batch.root()).unwrap();
    }
    let (status, _) = f
        .get(&format!("/v1/meter-batches/{root}/proofs/nobody"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = f
        .get(&format!("/v1/meter-batches/{}", "0".repeat(64)))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = f.get("/v1/meter-batches/zz").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A transaction that says something else than the stored batch is refused with what differs.
    let mut p = batch.to_payload();
    p.readings[2].wh = WattHours(7);
    let (status, v) = f.submit(&signed(&f, 1, 0, Payload::MeterBatch(p))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let e = v["error"].as_str().unwrap();
    assert!(
        e.contains("is not stored") || e.contains("reading 2"),
        "{e}"
    );
    // The matching one is admitted (the ledger then judges it: no such feeder here).
    let (status, v) = f.submit(&tx).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
}

/// The accounts of the read-rule tests, by seed: a prosumer owning `site-alpha`, delegated to
/// an aggregator; a prosumer owning `site-bravo`; a regulator; a data service provider; a DSO
/// that operates no feeder here. Account 0 (the genesis authority) is the feeder's operator and
/// the registrar; 99 the auditor.
const ALICE: u64 = 2;
const BOB: u64 = 3;
const AGGREGATOR: u64 = 10;
const REGULATOR: u64 = 11;
const DATA_SERVICE: u64 = 12;
const OTHER_DSO: u64 = 13;

/// A fixture with a cleared interval of two sites of two owners, one delegated.
async fn two_owner_market() -> Fixture {
    use bcte_types::{
        CurveSpec, FeederId, Interval, MarketConfig, NodeId, NodeSpec, Payload, Price, Role, Roles,
        SiteId, SiteSpec, Watts,
        market::{BidEntry, Bids, FeederRegister, SiteDelegate, SitesRegister},
    };
    let mut f = fixture();
    // The extra members: genesis allocations (AC-1.3), rebuilt into the fixture's chain.
    let mut genesis = f.genesis.clone();
    for (seed, role) in [
        (AGGREGATOR, Role::Aggregator),
        (REGULATOR, Role::Regulator),
        (DATA_SERVICE, Role::DataService),
        (OTHER_DSO, Role::Dso),
    ] {
        genesis.allocations.push(bcte_types::Allocation {
            account: account(seed),
            amount: bcte_types::Amount(1),
            roles: Roles::one(role),
        });
    }
    f = fixture_with(genesis);
    let feeder = FeederId::new("lv").unwrap();
    let register = Payload::FeederRegister(FeederRegister {
        feeder: feeder.clone(),
        epoch_ms: Some(60_000),
        config: MarketConfig {
            interval_ms: 10_000,
            gate_lead_ms: 5_000,
            ..MarketConfig::DEFAULT
        },
        nodes: vec![NodeSpec {
            id: NodeId::new("sub").unwrap(),
            parent: None,
            import_limit: None,
            export_limit: None,
        }],
        market_account: None,
        upstream_account: None,
    });
    let site = |id: &str, owner: u64| SiteSpec {
        site: SiteId::new(id).unwrap(),
        node: NodeId::new("sub").unwrap(),
        owner: account(owner),
        priority: 0,
        import_limit: None,
        export_limit: None,
    };
    let sites = Payload::SitesRegister(SitesRegister {
        feeder: feeder.clone(),
        sites: vec![site("site-alpha", ALICE), site("site-bravo", BOB)],
    });
    let bid = |id: &str, kw: i64| {
        Payload::Bids(Bids {
            feeder: feeder.clone(),
            bids: vec![BidEntry {
                site: SiteId::new(id).unwrap(),
                interval: Interval(0),
                curve: Some(CurveSpec::Points(vec![(Price(0), Watts(kw * 1000))])),
            }],
        })
    };
    let delegate = Payload::SiteDelegate(SiteDelegate {
        feeder: feeder.clone(),
        site: SiteId::new("site-alpha").unwrap(),
        aggregator: account(AGGREGATOR),
    });
    for tx in [
        signed(&f, 0, 0, register),
        signed(&f, 0, 1, sites),
        signed(&f, ALICE, 0, delegate),
        signed(&f, ALICE, 1, bid("site-alpha", 2)),
        signed(&f, BOB, 0, bid("site-bravo", 3)),
    ] {
        let (s, v) = f.submit(&tx).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    }
    f.commit_at(1_000, false);
    f.commit_at(55_000, false);
    // Carol, enrolled by the registrar with her personal data off chain (AC-2.3).
    let registrar = f.auth.issue(&account(0), bcte_node::auth::unix_now_s());
    let req = Request::put(format!("/v1/pii/{}", carol_participant()))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {registrar}"))
        .body(Body::from(format!(r#"{{"name":"{CAROL_NAME}"}}"#)))
        .unwrap();
    let (s, v) = f.call(req).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let commitment = bcte_types::ids::parse_hash(v["commitment"].as_str().unwrap()).unwrap();
    let enroll = signed(
        &f,
        0,
        2,
        Payload::Enroll(bcte_types::role::Enroll {
            participants: vec![bcte_types::role::Enrollment {
                participant: carol_participant(),
                commitment,
                roles: Roles::one(Role::Consumer),
                accounts: vec![account(CAROL)],
            }],
        }),
    );
    assert_eq!(f.submit(&enroll).await.0, StatusCode::ACCEPTED);
    f.commit_at(56_000, false);
    f
}

/// Carol: enrolled (not a genesis member), with a personal-data record.
const CAROL: u64 = 20;
const CAROL_NAME: &str = "Carol Quinlan-Example";

fn carol_participant() -> bcte_types::ParticipantId {
    bcte_types::ParticipantId::derived(&account(CAROL))
}

/// The private strings of the read-rule tests, and who may see each (AC-6.3).
fn private_strings() -> Vec<(String, &'static [&'static str])> {
    const ALPHA_SIDE: &[&str] = &["operator", "auditor", "regulator", "alice", "aggregator"];
    const BRAVO_SIDE: &[&str] = &["operator", "auditor", "regulator", "bob"];
    vec![
        // Personal data: the registrar (the operator here) and Carol only (AC-2.4).
        (CAROL_NAME.to_owned(), &["operator", "carol"]),
        ("site-alpha".to_owned(), ALPHA_SIDE),
        (account(ALICE).to_string(), ALPHA_SIDE),
        (account(AGGREGATOR).to_string(), ALPHA_SIDE),
        ("site-bravo".to_owned(), BRAVO_SIDE),
        (account(BOB).to_string(), BRAVO_SIDE),
    ]
}

/// The viewers of the read-rule tests: a name, and a token (none for the public).
fn viewers(f: &Fixture) -> Vec<(&'static str, Option<String>)> {
    let now = bcte_node::auth::unix_now_s();
    let token = |seed: u64| Some(f.auth.issue(&account(seed), now));
    vec![
        ("public", None),
        ("operator", token(0)),
        ("auditor", token(AUDITOR)),
        ("regulator", token(REGULATOR)),
        ("alice", token(ALICE)),
        ("bob", token(BOB)),
        ("aggregator", token(AGGREGATOR)),
        ("data_service", token(DATA_SERVICE)),
        ("other_dso", token(OTHER_DSO)),
        ("carol", token(CAROL)),
    ]
}

#[tokio::test]
async fn every_read_route_shows_each_viewer_exactly_what_concerns_it() {
    use bcte_node::routes::{ReadRule, rules};
    let f = two_owner_market().await;
    let bucket = bcte_ledger::book_bucket(&bcte_types::SiteId::new("site-bravo").unwrap());
    let (_, block) = f.get("/v1/blocks/1").await;
    let bob_tx = block["txs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["sender"] == account(BOB).to_string())
        .unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    // A value for every path parameter of the description: a new parameter without one fails.
    let value_of = |param: &str| -> Vec<String> {
        match param {
            "feeder" => vec!["lv".into()],
            "site" => vec!["site-bravo".into(), "site-alpha".into()],
            "interval" => vec!["0".into()],
            "account" => vec![account(BOB).to_string()],
            "id" => vec!["2".into(), "latest".into()],
            "height" => vec!["2".into()],
            "hash" => vec![bob_tx.clone()],
            "root" => vec!["00".repeat(32)],
            "participant" => vec![carol_participant().to_string()],
            "key" => vec![
                "supply".into(),
                format!("account/{}", account(BOB)),
                "site/lv/site-bravo".into(),
                format!("bids/lv/0/{bucket}"),
                format!("results/lv/0/{bucket}"),
                "sites/lv".into(),
            ],
            p => panic!("the read-rule test has no value for path parameter {{{p}}}"),
        }
    };
    let doc = serde_json::to_value(api::openapi()).unwrap();
    let table = rules();
    let mut seen_private = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "delete"] {
            let Some(op) = item.get(method) else { continue };
            let rule = table
                .iter()
                .find(|(m, p, _)| m.as_str().eq_ignore_ascii_case(method) && p == path)
                .map(|(_, _, r)| *r)
                .unwrap_or_else(|| panic!("{method} {path} has no read rule in the route table"));
            assert_eq!(
                op["x-bcte-read"],
                rule.name(),
                "{method} {path}: the description carries its rule"
            );
            if method != "get" {
                // Submissions are authenticated by their signatures; logins by the challenge;
                // uploads need a head-end's or a DSO's token; personal data the registrar's.
                let expected = match (method, path.as_str()) {
                    ("post", "/v1/meter-batches") => ReadRule::Upload,
                    (
                        "post",
                        "/v1/txs" | "/v1/txs/batch" | "/v1/auth/challenge" | "/v1/auth/token",
                    ) => ReadRule::Public,
                    ("put" | "delete", "/v1/pii/{participant}") => ReadRule::Personal,
                    // OpenADR client management: the operators' (changes a DSO's).
                    (
                        "post" | "delete",
                        "/v1/openadr/clients"
                        | "/v1/openadr/clients/{id}"
                        | "/v1/openadr/clients/{id}/rotate",
                    ) => ReadRule::Operator,
                    (m, p) => panic!("{m} {p} is not classified by the read-rule test"),
                };
                assert_eq!(rule, expected, "{method} {path}");
                continue;
            }
            if path == "/v1/stream" {
                // An endless stream of public facts (each final block's height, hash and
                // time), read by its own test: here only its rule.
                assert_eq!(rule, ReadRule::Public, "GET /v1/stream");
                continue;
            }
            // Every concrete URL of the path.
            let mut urls = vec![path.clone()];
            for param in path
                .split('{')
                .skip(1)
                .map(|s| s.split('}').next().unwrap().to_owned())
            {
                let pattern = format!("{{{param}}}");
                urls = urls
                    .iter()
                    .flat_map(|u| {
                        value_of(&param)
                            .into_iter()
                            .map(|v| u.replace(&pattern, &v))
                            .collect::<Vec<_>>()
                    })
                    .collect();
            }
            for url in urls {
                let query = if path.ends_with("/billing") || path.ends_with("/export") {
                    "?from_interval=0&to_interval=0"
                } else {
                    ""
                };
                for (who, token) in viewers(&f) {
                    let (status, body) = f.get_as(&format!("{url}{query}"), token.as_deref()).await;
                    let text = body.to_string();
                    assert!(status.as_u16() < 500, "GET {url} as {who}: {status} {text}");
                    if token.is_none() && rule.needs_credentials() {
                        assert_eq!(
                            status,
                            StatusCode::UNAUTHORIZED,
                            "GET {url} as the public: {text}"
                        );
                    }
                    for (secret, may) in private_strings() {
                        if url.contains(&secret) || !text.contains(&secret) {
                            continue;
                        }
                        assert!(
                            may.contains(&who),
                            "GET {url} as {who} shows {secret}: {text}"
                        );
                        seen_private.insert((secret.clone(), who));
                    }
                }
            }
        }
    }
    // Not vacuous: each private string was shown to each viewer allowed to see it that reads
    // everything (the operator and the auditor; personal data to the registrar and Carol).
    for (secret, may) in private_strings() {
        for who in ["operator", "auditor", "carol"] {
            if may.contains(&who) {
                assert!(
                    seen_private.contains(&(secret.clone(), who)),
                    "{secret} was shown to no {who}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_refusal_looks_like_an_absence_and_lists_show_only_what_concerns_the_caller() {
    let f = two_owner_market().await;
    let v: std::collections::BTreeMap<_, _> = viewers(&f).into_iter().collect();
    let alice = v["alice"].as_deref();
    // Another's site is the same 404 as a site that does not exist.
    for path in [
        "/v1/feeders/lv/sites/{}",
        "/v1/feeders/lv/intervals/0/sites/{}",
    ] {
        let theirs = f.get_as(&path.replace("{}", "site-bravo"), alice).await;
        let absent = f.get_as(&path.replace("{}", "site-ghost"), alice).await;
        assert_eq!(theirs.0, StatusCode::NOT_FOUND, "{path}: {}", theirs.1);
        assert_eq!(
            theirs.1.to_string().replace("site-bravo", "X"),
            absent.1.to_string().replace("site-ghost", "X"),
            "{path}"
        );
        let own = f.get_as(&path.replace("{}", "site-alpha"), alice).await;
        assert_eq!(own.0, StatusCode::OK, "{path}: {}", own.1);
    }
    // An account names its owner: 403 for anyone else, whether or not it exists.
    let (s, _) = f
        .get_as(&format!("/v1/accounts/{}", account(BOB)), alice)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = f
        .get_as(&format!("/v1/accounts/{}", account(5_000)), alice)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, a) = f
        .get_as(&format!("/v1/accounts/{}", account(ALICE)), alice)
        .await;
    assert_eq!((s, a["nonce"].clone()), (StatusCode::OK, json!(2)));
    // Bids: the owner and its aggregator see its bid; the operator all; the public nothing.
    for (who, expected) in [
        ("alice", vec!["site-alpha"]),
        ("aggregator", vec!["site-alpha"]),
        ("bob", vec!["site-bravo"]),
        ("operator", vec!["site-alpha", "site-bravo"]),
        ("regulator", vec!["site-alpha", "site-bravo"]),
        ("data_service", vec![]),
        ("other_dso", vec![]),
    ] {
        let (s, b) = f
            .get_as("/v1/feeders/lv/intervals/0/bids", v[who].as_deref())
            .await;
        assert_eq!(s, StatusCode::OK, "{who}: {b}");
        let sites: Vec<&str> = b["bids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["site"].as_str().unwrap())
            .collect();
        assert_eq!(sites, expected, "{who}");
    }
    // The result: prices for everyone, each site only to whom it concerns, the grid's side only
    // to the operator.
    let (s, r) = f.get_as("/v1/feeders/lv/intervals/0/result", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["prices"]["sub"], 100.0);
    assert_eq!(
        (r["scope"].clone(), r["sites"].clone()),
        (json!("own"), json!({}))
    );
    let (_, r) = f.get_as("/v1/feeders/lv/intervals/0/result", alice).await;
    assert_eq!(r["sites"].as_object().unwrap().len(), 1);
    assert_eq!(r["sites"]["site-alpha"]["served_kw"], 2.0);
    let (_, r) = f
        .get_as(
            "/v1/feeders/lv/intervals/0/result",
            v["operator"].as_deref(),
        )
        .await;
    assert_eq!(r["scope"], "all");
    assert_eq!(r["allocations"]["upstream"], -5.0);
    // A block: hashes and outcomes for all, the rest to the sender's accounts.
    let (_, b) = f.get_as("/v1/blocks/1", alice).await;
    for t in b["txs"].as_array().unwrap() {
        assert_eq!(t["status"], "accepted");
        let mine = t["sender"] == account(ALICE).to_string();
        assert_eq!(t["payload"].is_object(), mine, "{t}");
    }
    // The site-result proof's bucket holds others' results: the owner gets the result only.
    let (_, p) = f
        .get_as("/v1/feeders/lv/intervals/0/sites/site-alpha", alice)
        .await;
    assert_eq!(
        (p["proof"].clone(), p["value"].clone()),
        (Value::Null, Value::Null)
    );
    let (_, p) = f
        .get_as(
            "/v1/feeders/lv/intervals/0/sites/site-alpha",
            v["auditor"].as_deref(),
        )
        .await;
    assert!(p["proof"].is_string());
}

#[tokio::test]
async fn bad_expired_forged_or_revoked_credentials_get_401_or_403_and_never_panic() {
    use bcte_types::{Payload, role::AccountRevoke};
    let f = two_owner_market().await;
    let path = format!("/v1/accounts/{}", account(BOB));
    let now = bcte_node::auth::unix_now_s();
    let bob = f.auth.issue(&account(BOB), now);
    let header_cases: Vec<(Vec<u8>, StatusCode)> = vec![
        (b"Basic Ym9iOnB3".to_vec(), StatusCode::UNAUTHORIZED),
        (b"Bearer".to_vec(), StatusCode::UNAUTHORIZED),
        (b"Bearer ".to_vec(), StatusCode::UNAUTHORIZED),
        (b"Bearer a.b.c".to_vec(), StatusCode::UNAUTHORIZED),
        (vec![b'B', 0xff, 0xfe], StatusCode::UNAUTHORIZED),
        (
            format!("Bearer {}", "x".repeat(8_000)).into_bytes(),
            StatusCode::UNAUTHORIZED,
        ),
        // Expired.
        (
            format!(
                "Bearer {}",
                f.auth.issue_for(&account(BOB), now - 600, now - 300)
            )
            .into_bytes(),
            StatusCode::UNAUTHORIZED,
        ),
        // Another node's.
        (
            format!(
                "Bearer {}",
                Auth::new(
                    &commonware_cryptography::ed25519::PrivateKey::from_seed(8),
                    f.genesis.chain_id.clone()
                )
                .issue(&account(BOB), now)
            )
            .into_bytes(),
            StatusCode::UNAUTHORIZED,
        ),
        (format!("Bearer {bob}").into_bytes(), StatusCode::OK),
    ];
    for (header, expected) in header_cases {
        let req = Request::get(&path)
            .header(
                "authorization",
                axum::http::HeaderValue::from_bytes(&header)
                    .unwrap_or(axum::http::HeaderValue::from_static("garbage")),
            )
            .body(Body::empty())
            .unwrap();
        let resp = f.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(resp.headers()["www-authenticate"], "Bearer");
        }
        let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        assert_eq!(status, expected, "{}", String::from_utf8_lossy(&body));
        if status != StatusCode::OK {
            assert!(
                !String::from_utf8_lossy(&body).contains("balance"),
                "a refusal reveals nothing"
            );
        }
    }
    // Revoked: once final, Bob's unexpired token is refused everywhere, public routes too.
    let revoke = signed(
        &f,
        0,
        3,
        Payload::AccountRevoke(AccountRevoke {
            accounts: vec![account(BOB)],
        }),
    );
    assert_eq!(f.submit(&revoke).await.0, StatusCode::ACCEPTED);
    f.commit_at(57_000, false);
    for p in [path.as_str(), "/v1/head", "/v1/feeders/lv/intervals/0/bids"] {
        let (s, v) = f.get_as(p, Some(&bob)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{p}: {v}");
        assert!(v["error"].as_str().unwrap().contains("revoked"), "{v}");
    }
}

#[tokio::test]
async fn an_account_signs_a_challenge_for_a_token_and_reads_with_it() {
    use bcte_types::auth::sign_challenge;
    let f = two_owner_market().await;
    let login = |seed: u64, key_seed: u64| {
        let f = &f;
        async move {
            let (s, c) = f.post("/v1/auth/challenge", "").await;
            assert_eq!(s, StatusCode::OK, "{c}");
            assert_eq!(c["expires_in"], 60);
            let challenge: [u8; 32] = hex::decode(c["challenge"].as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap();
            let sig = sign_challenge(&sim::account_key(key_seed), &f.genesis.chain_id, &challenge);
            let body = json!({
                "account": account(seed).to_string(),
                "challenge": hex::encode(challenge),
                "signature": hex::encode(sig.as_ref()),
            });
            let answer = f.post("/v1/auth/token", body.to_string()).await;
            let again = f.post("/v1/auth/token", body.to_string()).await;
            assert_eq!(
                again.0,
                StatusCode::UNAUTHORIZED,
                "a challenge is spent once"
            );
            answer
        }
    };
    let (s, t) = login(ALICE, ALICE).await;
    assert_eq!(s, StatusCode::OK, "{t}");
    assert_eq!(
        (t["token_type"].clone(), t["expires_in"].clone()),
        (json!("Bearer"), json!(300))
    );
    let token = t["access_token"].as_str().unwrap();
    let (s, a) = f
        .get_as(&format!("/v1/accounts/{}", account(ALICE)), Some(token))
        .await;
    assert_eq!(
        (s, a["account"].clone()),
        (StatusCode::OK, json!(account(ALICE).to_string()))
    );
    // Signed by another key than the account's: no token.
    let (s, e) = login(ALICE, BOB).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{e}");
    // Malformed requests: 400, never a panic.
    for body in [
        "{}".to_owned(),
        "not json".to_owned(),
        json!({"account": "zz", "challenge": "00", "signature": "00"}).to_string(),
        json!({"account": account(ALICE).to_string(), "challenge": "00".repeat(32), "signature": "00".repeat(64)}).to_string(),
    ] {
        let (s, e) = f.post("/v1/auth/token", body.clone()).await;
        assert!(
            s == StatusCode::BAD_REQUEST || s == StatusCode::UNAUTHORIZED,
            "{body}: {s} {e}"
        );
    }
}

#[tokio::test]
async fn volumes_are_published_per_k_anonymous_group_to_the_public_and_exported_to_data_services() {
    use bcte_types::{
        CurveSpec, FeederId, Interval, MarketConfig, NodeId, NodeSpec, Payload, Price, Role, Roles,
        SiteId, SiteSpec, Watts,
        market::{BidEntry, Bids, FeederRegister, SitesRegister},
    };
    let mut genesis = sim::genesis(1, 4);
    genesis.allocations.push(bcte_types::Allocation {
        account: account(DATA_SERVICE),
        amount: bcte_types::Amount(1),
        roles: Roles::one(Role::DataService),
    });
    let f = fixture_with(genesis);
    let feeder = FeederId::new("k").unwrap();
    let node = |id: &str, parent: Option<&str>| NodeSpec {
        id: NodeId::new(id).unwrap(),
        parent: parent.map(|p| NodeId::new(p).unwrap()),
        import_limit: None,
        export_limit: None,
    };
    let register = Payload::FeederRegister(FeederRegister {
        feeder: feeder.clone(),
        epoch_ms: Some(60_000),
        config: MarketConfig {
            interval_ms: 10_000,
            gate_lead_ms: 5_000,
            ..MarketConfig::DEFAULT
        },
        nodes: vec![node("sub", None), node("t1", Some("sub"))],
        market_account: None,
        upstream_account: None,
    });
    // Six sites at t1 and one at the substation, all 1 kW: t1 alone would be 6 sites of 16.7 %
    // each (> 15 %), so it merges upward; the seven together, 14.3 % each, are one group.
    let ids: Vec<String> = (0..7).map(|i| format!("home-{i}")).collect();
    let sites = Payload::SitesRegister(SitesRegister {
        feeder: feeder.clone(),
        sites: ids
            .iter()
            .enumerate()
            .map(|(i, id)| SiteSpec {
                site: SiteId::new(id).unwrap(),
                node: NodeId::new(if i < 6 { "t1" } else { "sub" }).unwrap(),
                owner: account(2),
                priority: 0,
                import_limit: None,
                export_limit: None,
            })
            .collect(),
    });
    let bids = Payload::Bids(Bids {
        feeder: feeder.clone(),
        bids: ids
            .iter()
            .map(|id| BidEntry {
                site: SiteId::new(id).unwrap(),
                interval: Interval(0),
                curve: Some(CurveSpec::Points(vec![(Price(0), Watts(1_000))])),
            })
            .collect(),
    });
    for tx in [
        signed(&f, 0, 0, register),
        signed(&f, 0, 1, sites),
        signed(&f, 2, 0, bids),
    ] {
        assert_eq!(f.submit(&tx).await.0, StatusCode::ACCEPTED);
    }
    f.commit_at(1_000, false);
    f.commit_at(55_000, false);
    let expected =
        json!([{"nodes": ["sub", "t1"], "sites": 7, "consumption_kw": 7.0, "generation_kw": 0.0}]);
    let (s, r) = f.get_as("/v1/feeders/k/intervals/0/result", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["groups"], expected, "{r}");
    assert_eq!(r["sites"], json!({}));
    let now = bcte_node::auth::unix_now_s();
    let path = "/v1/feeders/k/export?from_interval=0&to_interval=1";
    let ds = f.auth.issue(&account(DATA_SERVICE), now);
    let (s, e) = f.get_as(path, Some(&ds)).await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(
        (e["k_anonymity"].clone(), e["missing"].clone()),
        (json!(5), json!([1]))
    );
    let g = &e["intervals"][0]["groups"][0];
    assert_eq!(
        (g["sites"].clone(), g["consumption_kw"].clone()),
        (json!(7), json!(7.0))
    );
    assert_eq!(g["metered_sites"], 0);
    assert!(!e.to_string().contains("home-"), "no site id: {e}");
    assert!(
        !e.to_string().contains(&account(2).to_string()),
        "no account id"
    );
    // The export is not public, nor a prosumer's.
    assert_eq!(f.get_as(path, None).await.0, StatusCode::UNAUTHORIZED);
    let prosumer = f.auth.issue(&account(2), now);
    assert_eq!(
        f.get_as(path, Some(&prosumer)).await.0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn the_dashboard_is_served_with_its_policy_and_the_stream_tells_each_final_block() {
    let f = fixture();
    for (path, kind) in [
        ("/", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/style.css", "text/css"),
        ("/dashboard/vendor/uPlot.iife.min.js", "text/javascript"),
        ("/favicon.ico", "image/svg+xml"),
        ("/dashboard/config.json", "application/json"),
    ] {
        let resp = f
            .router
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let h = resp.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        assert_eq!(
            h["content-security-policy"],
            bcte_node::dashboard::CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
    // The page loads nothing from elsewhere and runs no inline script.
    let resp = f
        .router
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let html =
        String::from_utf8(to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://"));
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script src=\"/").count()
    );

    // The stream: the current final block, then the next one.
    let resp = f
        .router
        .clone()
        .oneshot(Request::get("/v1/stream").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body().into_data_stream();
    use futures::StreamExt as _;
    let mut next_event = async || -> Value {
        let mut text = String::new();
        while !text.contains("\n\n") {
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), body.next())
                .await
                .expect("an event within 5 s")
                .expect("the stream goes on")
                .unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        assert!(text.starts_with("event: tip\ndata: "), "{text}");
        serde_json::from_str(text["event: tip\ndata: ".len()..].trim()).unwrap()
    };
    let tip = f.shared.executor.tip();
    let first = next_event().await;
    assert_eq!(first["height"], tip.height.get());
    assert_eq!(first["hash"], hex::encode(tip.hash));
    f.commit_block();
    let second = next_event().await;
    assert_eq!(second["height"], tip.height.get() + 1);
    let (_, head) = f.get("/v1/head").await;
    assert_eq!(second["hash"], head["hash"]);
    assert_eq!(second["timestamp"], head["timestamp"]);
}

#[tokio::test]
async fn a_deployment_can_turn_the_dashboard_or_its_tree_off() {
    use bcte_node::config::DashboardConfig;
    let f = fixture();
    let state = |dashboard| {
        api::router(Arc::new(ApiState {
            pii: None,
            vtn: None,
            tls: false,
            dashboard,
            auth: f.auth.clone(),
            shared: f.shared.clone(),
            outbox: None,
            metrics: None,
            batches: Arc::new(bcte_store::MemBlobStore::default()),
        }))
    };
    let off = state(DashboardConfig {
        enabled: false,
        topology: true,
    });
    let resp = off
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let no_tree = state(DashboardConfig {
        enabled: true,
        topology: false,
    });
    let resp = no_tree
        .oneshot(
            Request::get("/dashboard/config.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let v: Value =
        serde_json::from_slice(&to_bytes(resp.into_body(), 1 << 16).await.unwrap()).unwrap();
    assert_eq!(v, json!({"topology": false}));
}

#[test]
fn the_demo_viewer_serves_reads_and_refuses_transactions() {
    let f = fixture();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    bcte_node::dashboard::spawn_viewer(listener, f.shared.clone()).unwrap();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut head = agent.get(&format!("{url}/v1/head")).call().unwrap();
    assert_eq!(head.status(), 200);
    let head: Value = head.body_mut().read_json().unwrap();
    assert_eq!(head["chain_id"], "bcte-sim");
    let page = agent.get(&format!("{url}/")).call().unwrap();
    assert_eq!(page.status(), 200);
    let tx = sim::transfer(&f.genesis, 0, 0, 1, 250);
    let mut refused = agent
        .post(&format!("{url}/v1/txs"))
        .send_json(json!({"tx": hex::encode(tx.encode())}))
        .unwrap();
    assert_eq!(refused.status(), 405);
    let body: Value = refused.body_mut().read_json().unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("read-only"),
        "{body}"
    );
    assert_eq!(f.shared.mempool.lock().unwrap().len(), 0);
    // Signing in is a read: the challenge is served.
    let challenge = agent
        .post(&format!("{url}/v1/auth/challenge"))
        .send_empty()
        .unwrap();
    assert_eq!(challenge.status(), 200);
}
