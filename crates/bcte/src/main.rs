//! The bcte command line: run a node, make keys and transactions, query, audit and clear markets.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod clear;

/// bcte: blockchain-enabled transactive energy.
#[derive(Parser, Debug)]
#[command(name = "bcte", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Clear one market interval from a market file and print the result as JSON.
    Clear(clear::ClearArgs),
    /// Market tools: generate test markets.
    #[command(subcommand)]
    Market(clear::MarketCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Clear(args) => clear::run_clear(args),
        Command::Market(cmd) => clear::run_market(cmd),
    }
}
