//! The bcte state machine: apply a block to the state, deterministically, and commit to the result with a state root.
//!
//! Pure: no clock, no randomness of its own, no files or sockets. Callers hand it a tree reader
//! (the committed state, possibly with speculative layers on top) and blocks; it hands back
//! receipts, state writes, the new state root and proofs. See [`exec`] for the execution rules
//! and [`tree`] for the authenticated state.

pub mod exec;
#[doc(hidden)]
pub mod fuzzing;
pub mod keys;
pub mod proof;
pub mod state;
pub mod tree;

pub use exec::{
    BlockInfo, ExecError, Executed, Execution, GenesisState, InvalidBlock, Prefetched, apply,
    check_link, check_roots, genesis, reads_of, run, verify_block,
};
pub use keys::{KeyError, StateKey};
pub use proof::{ProofError, StateProof, prove};
pub use state::{AccountState, ChainConfig, Head};
pub use tree::{Layer, MemTree, Overlay, TreeError, WriteSet};
