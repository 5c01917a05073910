//! Helpers shared by the real-process tests: run the `bcte` binary and read its JSON.

use serde_json::Value;
use std::process::{Command, Output};

/// The `bcte` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_bcte");

/// Runs `bcte ARGS` to completion.
pub fn bcte(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run bcte")
}

/// The one JSON object a `--json` command printed, or a panic showing what it printed instead.
pub fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
