//! A bcte validator or full node: consensus wiring, mempool, execution and the HTTP API.
//!
//! The node is the shell around the pure core: it owns the clock, the sockets and the files.
//! [`engine`] wires commonware's simplex consensus, marshal and p2p around the [`app`]lication,
//! which executes blocks speculatively through the [`executor`]; the [`finalizer`] commits
//! finalized blocks durably before acknowledging them.

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod auth_api;
pub mod batch_api;
pub mod billing_api;
pub mod cert;
pub mod chain_block;
pub mod config;
pub mod dashboard;
pub mod engine;
pub mod executor;
pub mod export_api;
pub mod files;
pub mod finalizer;
pub mod gossip;
pub mod market_api;
pub mod market_metrics;
pub mod mempool;
pub mod pii;
pub mod pii_api;
pub mod routes;
pub mod run;
pub mod settle_api;
pub mod tls;
pub mod vtn;
pub mod vtn_admin_api;
pub mod vtn_clients;
pub mod vtn_subs;
