//! The bcte command line: run a node, make keys and transactions, query, audit and clear markets.
//!
//! Exit codes: 0 success; 1 failure (the node is unreachable or refused, an audit found damage);
//! 2 invalid arguments or input; 3 the transaction was rejected by the ledger.
//! With `--json`, every command that prints data prints exactly one JSON object on stdout;
//! errors always go to stderr.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod batch_cmds;
mod bench;
mod bench_market;
mod bench_meters;
mod chain_cmds;
mod clear;
mod client;
mod contract_cmds;
mod demo_cmds;
mod demo_live;
mod export_cmds;
mod feeder_cmds;
mod flex_cmds;
mod greenbutton_cmds;
mod identity_cmds;
mod localnet;
mod market_cmds;
mod meter_cmds;
mod openadr_cmds;
mod pii_cmds;

/// bcte: blockchain-enabled transactive energy.
#[derive(Parser, Debug)]
#[command(name = "bcte", version, about, propagate_version = true)]
struct Cli {
    /// Print one JSON object on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// A simulated day on a real feeder: the legacy tariff against the transactive market on
    /// validators in-process, with a JSON and an HTML report (docs/demo.md).
    Demo(demo_cmds::DemoArgs),
    /// Run a node.
    Node(chain_cmds::NodeArgs),
    /// Make and inspect key files.
    #[command(subcommand)]
    Keys(chain_cmds::KeysCommand),
    /// Sign a transaction, submit it and wait for it to be final.
    #[command(subcommand)]
    Tx(chain_cmds::TxCommand),
    /// Read from a node: accounts, blocks, transactions, state proofs.
    #[command(subcommand)]
    Query(chain_cmds::QueryCommand),
    /// Make and run a local network of validators on this machine.
    #[command(subcommand)]
    Localnet(localnet::LocalnetCommand),
    /// Check a finality certificate knowing only the genesis: proves a block final.
    VerifyCert(chain_cmds::VerifyCertArgs),
    /// Audit a node's data directory offline: hashes, signatures, certificates, replay.
    Verify(chain_cmds::VerifyArgs),
    /// Benchmarks on a local network: `bench chain` (transfers), `bench market` (bids and
    /// gate closures).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Clear one market interval from a market file and print the result as JSON.
    Clear(clear::ClearArgs),
    /// The market: status, results and bids of the chain's feeders, replay of a market file
    /// through the chain, and generated test markets.
    #[command(subcommand)]
    Market(clear::MarketCommand),
    /// Meter data in bulk: sign readings as meters, submit them as a head-end, prove one.
    #[command(subcommand)]
    Meter(batch_cmds::MeterBulkCommand),
    /// Peer-to-peer contracts: sign your consent to terms the other party submits.
    #[command(subcommand)]
    Contract(contract_cmds::ContractCommand),
    /// Feeders from data sets: import a SimBench CSV grid as a feeder model.
    #[command(subcommand)]
    Feeder(feeder_cmds::FeederCommand),
    /// Export for other systems: billing statements of a period.
    #[command(subcommand)]
    Export(export_cmds::ExportCommand),
    /// Personal data off chain, in the registrar's node: put, get (checked against the
    /// commitment on chain) and erase for good.
    #[command(subcommand)]
    Pii(pii_cmds::PiiCommand),
    /// The node's OpenADR 3 VTN: register the VEN clients that read its prices and events.
    #[command(subcommand)]
    Openadr(openadr_cmds::OpenAdrCommand),
}

/// Reports a panic (a bug, or a dependency refusing damaged data) as one line on stderr.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown failure".into());
        let place = info
            .location()
            .map(|l| format!(" (at {}:{})", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: internal failure: {message}{place}");
    }));
}

fn main() -> ExitCode {
    install_panic_hook();
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => demo_cmds::run(args, cli.json),
        Command::Node(args) => chain_cmds::run_node(args),
        Command::Keys(cmd) => chain_cmds::run_keys(cmd, cli.json),
        Command::Tx(cmd) => chain_cmds::run_tx(cmd, cli.json),
        Command::Query(cmd) => chain_cmds::run_query(cmd, cli.json),
        Command::Verify(args) => chain_cmds::run_verify(args, cli.json),
        Command::VerifyCert(args) => chain_cmds::run_verify_cert(args, cli.json),
        Command::Localnet(cmd) => localnet::run_localnet(cmd, cli.json),
        Command::Bench(cmd) => bench::run_bench(cmd, cli.json),
        Command::Clear(args) => clear::run_clear(args),
        Command::Market(cmd) => clear::run_market(cmd, cli.json),
        Command::Meter(cmd) => batch_cmds::run(cmd, cli.json),
        Command::Export(cmd) => export_cmds::run(cmd),
        Command::Pii(cmd) => pii_cmds::run(cmd, cli.json),
        Command::Openadr(cmd) => openadr_cmds::run(cmd, cli.json),
        Command::Feeder(cmd) => feeder_cmds::run(cmd, cli.json),
        Command::Contract(cmd) => contract_cmds::run(cmd, cli.json),
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Clap checks its definitions (unique names, valid conflicts) only when a command runs:
    /// this runs the check for every command at once.
    #[test]
    fn every_command_is_well_formed() {
        Cli::command().debug_assert();
    }
}
