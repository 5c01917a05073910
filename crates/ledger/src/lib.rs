//! The bcte state machine: apply a block to the state, deterministically, and commit to the result with a state root.
//!
//! Pure: no clock, no randomness of its own, no files or sockets. Callers hand it a tree reader
//! (the committed state, possibly with speculative layers on top) and blocks; it hands back
//! receipts, state writes, the new state root and proofs. See [`exec`] for the driver (staged
//! reads, nonces, dispatch, conservation), [`market`] for the market on the chain and its
//! clearing at gate closure, and [`tree`] for the authenticated state. The domains (token,
//! registry, market) each own their rules; money moves through one small API and
//! authorization is one table.

pub mod anon;
pub mod auth;
pub mod billing;
pub mod contract;
pub mod ev;
pub mod exec;
pub mod flex;
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod keys;
pub mod market;
pub mod market_state;
pub mod proof;
mod registry;
pub mod settle;
pub mod settle_state;
pub mod state;
mod token;
pub mod tree;
mod working;

pub use auth::{Object, Rule, rule_of};
pub use exec::{
    BlockContext, BlockInfo, ExecError, Executed, Execution, GenesisState, InvalidBlock,
    MarketEvent, Prefetched, Probe, apply, check_link, check_roots, genesis, plan_reads,
    read_planned, reads_of, run, verify_block,
};
pub use keys::{BOOK_BUCKETS, KeyError, StateKey, book_bucket};
pub use market_state::MarketClock;
pub use proof::{ProofError, StateProof, prove};
pub use state::{AccountState, ChainConfig, Head};
pub use tree::{Layer, MemTree, Overlay, TreeError, WriteSet};
pub use working::decode_value;
