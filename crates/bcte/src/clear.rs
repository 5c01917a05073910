//! `bcte clear` and `bcte market ...`: the market engine from the command line.

use clap::{Args, Subcommand};
use std::process::ExitCode;

/// Arguments of `bcte clear`.
#[derive(Args, Debug)]
pub struct ClearArgs {
    /// The market file to clear, or `-` for standard input.
    pub file: String,
}

/// `bcte market` subcommands.
#[derive(Subcommand, Debug)]
pub enum MarketCommand {}

/// Runs `bcte clear`.
pub fn run_clear(_args: ClearArgs) -> ExitCode {
    eprintln!("error: bcte clear is not built yet");
    ExitCode::from(2)
}

/// Runs a `bcte market` subcommand.
pub fn run_market(cmd: MarketCommand) -> ExitCode {
    match cmd {}
}
