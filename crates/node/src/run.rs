//! Running a node on real sockets and disks: the tokio runtime, authenticated p2p, the data
//! directory and the HTTP API.
//!
//! `bcte node --dev` ([`run_dev`]) prepares a data directory with a one-validator genesis (or
//! reopens it), then runs exactly what every validator runs ([`run_node`]); `bcte node --config`
//! ([`run_config`]) runs a validator or full node of a network from its configuration file.

use crate::{
    api::{self, ApiState},
    app::{BuildParams, Shared},
    chain_block::{ChainBlock, PublicKey},
    config::{NodeConfig, Role, Tuning},
    engine::{self, Channels, FollowerConfig, Timing, ValidatorConfig},
    executor::Executor,
    files::{self, DataDir, FileError},
};
use anyhow::{Context as _, bail};
use bcte_store::{ChainStore, RedbStore};
use bcte_types::{AccountId, Allocation, Amount, BlockLimits, ChainId, Genesis, Validator};
use commonware_cryptography::{ChaCha20Poly1305, Signer as _, ed25519::PrivateKey};
use commonware_p2p::{
    Address, AddressableManager as _, AddressableTrackedPeers,
    authenticated::{lookup, peer_set_limit},
};
use commonware_runtime::{
    Handle, Metrics as _, Runner as _, Spawner as _, Supervisor as _, tokio as cw_tokio,
};
use commonware_stream::{
    cups::{self, Cups},
    sake::{self, Sake},
};
use commonware_utils::{
    NZUsize,
    ordered::{Map, Set},
};
use std::{
    collections::BTreeMap,
    io::Write as _,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};
use tracing::{error, info};

/// Base units the dev account holds at genesis: one million tokens.
pub const DEV_ALLOCATION: Amount = Amount(1_000_000 * Amount::PER_TOKEN);

/// A free TCP port on loopback, for a p2p listener nobody configured.
pub fn free_local_port() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.local_addr()
}

/// Prepares a dev data directory: on first use a one-validator genesis whose authority and only
/// funded account is a fresh dev key; afterwards the same files, so a restart continues the chain.
pub fn prepare_dev(dir: &DataDir) -> Result<(Genesis, PrivateKey), FileError> {
    let genesis_path = dir.genesis();
    if genesis_path.exists() {
        let genesis = files::read_genesis(&genesis_path)?;
        let key = files::read_key(&dir.validator_key())?;
        return Ok((genesis, key));
    }
    std::fs::create_dir_all(dir.root()).map_err(|source| FileError::Io {
        path: dir.root().to_path_buf(),
        source,
    })?;
    let validator = files::generate_key();
    let dev = files::generate_key();
    let dev_account = AccountId::from_public_key(&dev.public_key());
    let suffix = hex::encode(&validator.public_key().as_ref()[..3]);
    let genesis = Genesis {
        chain_id: ChainId::new(format!("bcte-dev-{suffix}")).expect("a valid chain id"),
        genesis_time_ms: crate::auth::unix_now_ms(),
        validators: vec![Validator {
            name: "dev".into(),
            public_key: AccountId::from_public_key(&validator.public_key()),
        }],
        authority: dev_account,
        registrar: None,
        allocations: vec![Allocation {
            account: dev_account,
            amount: DEV_ALLOCATION,
            roles: bcte_types::Roles::NONE,
        }],
        market_clock_speed: 1,
        currency: None,
    };
    // Keys first, genesis last: a directory with a genesis always has its keys.
    files::write_key(&dir.validator_key(), &validator)?;
    files::write_key(&dir.dev_key(), &dev)?;
    files::write_genesis(&genesis_path, &genesis)?;
    Ok((genesis, validator))
}

/// Runs a one-validator dev chain in `data_dir`, serving the API on `http`. Blocks until the
/// node stops.
pub fn run_dev(
    data_dir: PathBuf,
    http: SocketAddr,
    tls: Option<crate::tls::TlsFiles>,
    openadr: crate::config::OpenAdrConfig,
) -> anyhow::Result<()> {
    let dir = DataDir::new(data_dir);
    let (genesis, key) = prepare_dev(&dir)?;
    // The API is bound before the p2p port is chosen: a port the probe released could otherwise
    // come back as the API's `:0` port, and the p2p listener would then fail to bind.
    let api = bind_api(http)?;
    let p2p = free_local_port().context("finding a free port for p2p")?;
    let banner = vec![format!("dev key: {}", dir.dev_key().display())];
    let cfg = NodeConfig {
        role: Role::Validator,
        data_dir: dir,
        genesis,
        validators: BTreeMap::from([(key.public_key(), p2p)]),
        full_nodes: BTreeMap::new(),
        key,
        p2p,
        http,
        tuning: Tuning::default(),
        tls,
        dashboard: crate::config::DashboardConfig::default(),
        openadr,
    };
    serve(cfg, api, &banner)
}

/// Binds the HTTP API before consensus starts, so a busy port fails fast and clearly.
fn bind_api(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let http =
        TcpListener::bind(addr).with_context(|| format!("binding the HTTP API on {addr}"))?;
    http.set_nonblocking(true)?;
    Ok(http)
}

/// Runs the node a configuration file describes (see [`crate::config`]). Blocks until it stops.
pub fn run_config(path: &Path) -> anyhow::Result<()> {
    run_node(NodeConfig::load(path)?, &[])
}

/// Runs one validator or full node until it stops, printing `banner` once it serves requests.
/// Returns an error if it could not start or stopped on a failure.
pub fn run_node(opts: NodeConfig, banner: &[String]) -> anyhow::Result<()> {
    let api = bind_api(opts.http)?;
    serve(opts, api, banner)
}

/// [`run_node`] with its API listener already bound.
fn serve(opts: NodeConfig, http: TcpListener, banner: &[String]) -> anyhow::Result<()> {
    // The certificate is read before anything starts: a bad one fails fast, naming its file.
    let tls = opts.tls.as_ref().map(crate::tls::acceptor).transpose()?;
    let timing = Timing {
        leader_timeout: Duration::from_millis(opts.tuning.leader_timeout_ms),
        certification_timeout: Duration::from_millis(opts.tuning.certification_timeout_ms),
        ..Timing::default()
    };
    let build = BuildParams {
        propose_wait: Duration::from_millis(opts.tuning.propose_wait_ms),
        ..BuildParams::default()
    };
    let me = opts.key.public_key();
    let me_account = AccountId::from_public_key(&me);
    let is_validator = opts
        .genesis
        .validators
        .iter()
        .any(|v| v.public_key == me_account);
    match opts.role {
        Role::Validator if !is_validator => {
            bail!("this node's key {me_account} is not a validator in the genesis")
        }
        Role::Full if is_validator => {
            bail!("this node's key {me_account} is a validator: run it as a validator")
        }
        _ => {}
    }
    std::fs::create_dir_all(opts.data_dir.root()).with_context(|| {
        format!(
            "creating the data directory {}",
            opts.data_dir.root().display()
        )
    })?;
    let limits = BlockLimits::default();
    let store = RedbStore::open(opts.data_dir.store()).with_context(|| {
        format!(
            "the data directory {} cannot be used (run `bcte verify --data-dir {}` for details)",
            opts.data_dir.root().display(),
            opts.data_dir.root().display()
        )
    })?;
    let chain = ChainStore::new(store, limits);
    let state = chain.init(&opts.genesis)?;
    let genesis_block = ChainBlock(Arc::new(state.block));
    let executor = Executor::new(chain, opts.genesis.chain_id.clone())?;
    let shared = Arc::new(Shared::new(executor, build));
    let participants: Set<PublicKey> =
        Set::from_iter_dedup(opts.genesis.validators.iter().map(|v| {
            v.public_key
                .to_public_key()
                .expect("genesis validation checked validator keys")
        }));
    let my_address = opts.p2p;
    let http_addr = http.local_addr()?;

    let runtime = cw_tokio::Config::new()
        .with_storage_directory(opts.data_dir.consensus())
        .with_worker_threads(2)
        // A panic inside an engine task (for example on a damaged consensus journal) ends that
        // task's handle instead of the process, so the node stops with an error, not an abort.
        .with_catch_panics(true);
    let result: anyhow::Result<()> = cw_tokio::Runner::new(runtime).start(|context| async move {
        let n = participants.len() as u32;
        let mut p2p = lookup::Config::local(
            Cups::<_, ChaCha20Poly1305>::new(
                Sake {
                    signer: opts.key.clone(),
                    synchrony_bound: Duration::from_secs(5),
                    max_handshake_age: Duration::from_secs(10),
                    version: sake::Version::V1,
                },
                cups::Version::V1,
            ),
            &engine::p2p_namespace(&opts.genesis.chain_id),
            my_address,
            peer_set_limit(opts.validators.keys().chain(opts.full_nodes.keys()), &me),
            engine::max_message_size(n, &limits),
            NZUsize!(1_024),
        );
        p2p.tracked_peer_sets = NZUsize!(1);
        let (mut network, mut oracle) = lookup::Network::new(context.child("network"), p2p);
        // Validators are dialled; full nodes are accepted when they dial in, never dialled.
        let addresses = |table: &BTreeMap<PublicKey, SocketAddr>| -> Map<PublicKey, Address> {
            Map::from_iter_dedup(
                table
                    .iter()
                    .map(|(key, addr)| (key.clone(), Address::Symmetric(*addr))),
            )
        };
        let _ = oracle.track(
            0,
            AddressableTrackedPeers::new(addresses(&opts.validators), addresses(&opts.full_nodes)),
        );
        let mut register = |ch: u64| network.register(ch, engine::quota(ch));
        // Full nodes register every channel too: validators send votes and blocks to every
        // connected peer, and the p2p layer closes a connection that delivers a message on an
        // unregistered channel (a full node drains what it does not use).
        let channels = Channels {
            votes: register(engine::CH_VOTES),
            certificates: register(engine::CH_CERTS),
            resolver: register(engine::CH_RESOLVER),
            backfill: register(engine::CH_BACKFILL),
            broadcast: register(engine::CH_BROADCAST),
            txs: register(engine::CH_TXS),
        };
        let network_handle = network.start();
        let mut running = match opts.role {
            Role::Validator => {
                engine::start(
                    context.child("validator"),
                    ValidatorConfig {
                        signer: opts.key.clone(),
                        participants,
                        chain_id: opts.genesis.chain_id.clone(),
                        partition_prefix: "bcte".into(),
                        timing,
                        genesis: genesis_block,
                        limits,
                    },
                    shared.clone(),
                    channels,
                    oracle.clone(),
                    oracle,
                )
                .await?
            }
            Role::Full => {
                engine::start_follower(
                    context.child("follower"),
                    FollowerConfig {
                        identity: opts.key.clone(),
                        participants,
                        chain_id: opts.genesis.chain_id.clone(),
                        partition_prefix: "bcte".into(),
                        genesis: genesis_block,
                        limits,
                    },
                    shared.clone(),
                    channels,
                    oracle.clone(),
                    oracle,
                )
                .await?
            }
        };
        running.handles.push(network_handle);

        let registry = context.child("api");
        let api_key = crate::files::read_or_make_key(&opts.data_dir.api_key())?;
        let auth = Arc::new(crate::auth::Auth::new(
            &api_key,
            shared.executor.chain_id().clone(),
        ));
        let pii = crate::pii::PiiStore::open(&opts.data_dir.pii(), &opts.data_dir.pii_keys())?;
        let clients = crate::vtn_clients::ClientStore::open(&opts.data_dir.openadr_clients())?;
        let subs = crate::vtn_subs::SubscriptionStore::open(
            &opts.data_dir.openadr_subscriptions(),
            opts.openadr.loopback_webhooks,
        )?;
        let vtn = crate::vtn::Vtn::new(
            &api_key,
            shared.executor.chain_id(),
            clients,
            subs,
            opts.genesis.currency(),
        );
        let api_state = Arc::new(ApiState {
            vtn: Some(Arc::new(vtn)),
            tls: tls.is_some(),
            dashboard: opts.dashboard,
            pii: Some(Arc::new(pii)),
            auth,
            shared,
            outbox: Some(running.gossip.clone()),
            metrics: Some(Arc::new(move || registry.encode())),
            batches: Arc::new(bcte_store::FsBlobStore::new(opts.data_dir.batches())),
        });
        let listener = tokio::net::TcpListener::from_std(http)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        // The webhooks follow the final chain for as long as the node runs.
        crate::vtn::spawn_notifier(api_state.clone());
        let app = api::router(api_state);
        let server = match tls {
            Some(acceptor) => {
                tokio::spawn(async move { crate::tls::serve(listener, acceptor, app).await })
            }
            None => tokio::spawn(async move { axum::serve(listener, app).await }),
        };

        for line in banner {
            println!("{line}");
        }
        println!("listening on {scheme}://{http_addr}");
        let _ = std::io::stdout().flush();
        info!(%http_addr, %my_address, role = ?opts.role, "node running");

        let mut handles = running.handles;
        let api_handle: Handle<()> = context.child("api_watch").spawn(move |_| async move {
            match server.await {
                Ok(Ok(())) => error!("HTTP server stopped"),
                Ok(Err(e)) => error!(error = %e, "HTTP server failed"),
                Err(e) => error!(error = %e, "HTTP server task failed"),
            }
        });
        handles.push(api_handle);
        let ended = Handle::select(handles).await;
        match ended {
            Err(e) => bail!("the node stopped: a component failed ({e}); see the error above"),
            Ok(_) => bail!("the node stopped: a component ended (see the log above)"),
        }
    });
    result
}
