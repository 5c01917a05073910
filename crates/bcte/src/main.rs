//! The bcte command line: run a node, make keys and transactions, query, audit and clear markets.

use clap::Parser;

/// bcte: blockchain-enabled transactive energy.
#[derive(Parser, Debug)]
#[command(name = "bcte", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
}
