//! A bcte validator or full node: consensus wiring, mempool, execution and the HTTP API.
