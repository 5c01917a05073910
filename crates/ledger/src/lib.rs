//! The bcte state machine: apply a block to the state, deterministically, and commit to the result with a state root.
