//! `bcte clear` and `bcte market ...`: the market engine from the command line.
//!
//! A thin shell over `bcte-market`: arguments are checked first, then the file is read (or
//! standard input), the text goes to the pure parser, the clearing alone is timed, and the
//! result is printed as JSON. Exit codes: 0 on success; 2 for an invalid or unreadable market
//! file or bad arguments, with one line on standard error naming the problem and where; 1 when
//! the output cannot be written.

use bcte_market::file::{clearing_to_json, market_to_json, parse_market};
use bcte_market::generate::{CurveMix, Params, generate};
use bcte_market::limits::{BIDS_MAX, FILE_BYTES_MAX, NODES_MAX};
use bcte_market::{clear, limits::DEPTH_MAX};
use clap::{Args, Subcommand};
use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Instant;

/// Exit code for invalid input.
const EXIT_INVALID: u8 = 2;
/// Exit code for an output that could not be written.
const EXIT_OUTPUT: u8 = 1;

/// Arguments of `bcte clear`.
#[derive(Args, Debug)]
pub struct ClearArgs {
    /// The market file to clear, or `-` for standard input.
    pub file: String,
}

/// `bcte market` subcommands.
#[derive(Subcommand, Debug)]
pub enum MarketCommand {
    /// Generate a seeded random market file: a feeder in levels below a substation, an
    /// upstream-grid bid, household devices, and edge limits that bind on a given share of edges.
    Gen(GenArgs),
    /// Where a feeder's market is: the interval in progress, the next gate closure, the mode.
    Status(crate::market_cmds::QueryArgs),
    /// A cleared interval's result (`bcte clear`'s result and the chain's facts); with
    /// `--site`, that site's result with its state proof checked.
    Result {
        /// The interval.
        interval: u64,
        /// Show one site's result, proven.
        #[arg(long)]
        site: Option<String>,
        /// Wait up to this many seconds for the interval to clear.
        #[arg(long, value_name = "SECONDS", default_value_t = 0)]
        wait: u64,
        #[command(flatten)]
        query: crate::market_cmds::QueryArgs,
    },
    /// A feeder's peer-to-peer contracts not yet wholly settled.
    Contracts {
        #[command(flatten)]
        query: crate::market_cmds::QueryArgs,
    },
    /// A feeder's flexibility requests with their offers.
    Flex {
        #[command(flatten)]
        query: crate::market_cmds::QueryArgs,
    },
    /// A cleared interval's bids (sealed until the interval clears).
    Bids {
        /// The interval.
        interval: u64,
        #[command(flatten)]
        query: crate::market_cmds::QueryArgs,
    },
    /// A cleared interval's settlement (docs/settlement-rules.md): readings, each site's
    /// scheduled and metered energy, deviation, energy and imbalance charges, and the market
    /// account's totals; with `--site`, that site's.
    Settlement {
        /// The interval.
        interval: u64,
        /// Show one site's settlement.
        #[arg(long)]
        site: Option<String>,
        /// Wait up to this many seconds for the interval to be settled.
        #[arg(long, value_name = "SECONDS", default_value_t = 0)]
        wait: u64,
        #[command(flatten)]
        query: crate::market_cmds::QueryArgs,
    },
    /// Run a market file through the chain by transactions (a fresh islanded feeder, one site
    /// per bid owned by a fresh key), read the result back with every site's proof checked,
    /// and compare it with clearing the file here (`matches_local`; exit 1 if they differ).
    Replay(crate::market_cmds::ReplayArgs),
}

/// Arguments of `bcte market gen`.
#[derive(Args, Debug)]
pub struct GenArgs {
    /// Number of bids, the upstream grid included.
    #[arg(long, default_value_t = 100_000)]
    pub bids: usize,
    /// Number of nodes, the root included.
    #[arg(long, default_value_t = 2_500)]
    pub nodes: usize,
    /// Levels of nodes below the root.
    #[arg(long, default_value_t = 3)]
    pub levels: usize,
    /// Seed of the random stream: the same arguments always give the same file.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of edges brought to their limit, from 0 to 1 (at least this share binds).
    #[arg(long, default_value_t = 0.1)]
    pub congestion: f64,
    /// Step curves only, which a linear program represents exactly (for tools/highs).
    #[arg(long)]
    pub steps: bool,
    /// Where to write the market file, `-` for standard output.
    #[arg(long, short, default_value = "-")]
    pub output: String,
}

/// Prints one error line (newlines folded) and returns the exit code.
fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    let line = message.to_string().replace(['\n', '\r'], " ");
    eprintln!("error: {line}");
    ExitCode::from(code)
}

/// Reads a file or standard input as UTF-8, refusing more than [`FILE_BYTES_MAX`] bytes.
fn read_input(path: &str) -> Result<String, String> {
    let mut bytes = Vec::new();
    let limit = FILE_BYTES_MAX as u64 + 1;
    let read = if path == "-" {
        std::io::stdin().lock().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    };
    read.map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() > FILE_BYTES_MAX {
        return Err(format!(
            "the file is larger than the limit of {FILE_BYTES_MAX} bytes"
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text: invalid byte at offset {}",
            e.utf8_error().valid_up_to()
        )
    })
}

fn write_output(path: &str, text: &str) -> Result<(), String> {
    let result = if path == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes()).and_then(|()| out.flush())
    } else {
        std::fs::write(path, text)
    };
    result.map_err(|e| format!("{path}: cannot write: {e}"))
}

/// Runs `bcte clear`.
pub fn run_clear(args: ClearArgs) -> ExitCode {
    let name = if args.file == "-" {
        "<stdin>"
    } else {
        args.file.as_str()
    };
    let text = match read_input(&args.file) {
        Ok(text) => text,
        Err(e) => return fail(EXIT_INVALID, format!("{name}: {e}")),
    };
    let market = match parse_market(&text) {
        Ok(market) => market,
        Err(e) => return fail(EXIT_INVALID, format!("{name}: {e}")),
    };
    let start = Instant::now();
    let clearing = clear(&market);
    let clear_ms = start.elapsed().as_secs_f64() * 1000.0;
    match clearing_to_json(&market, &clearing, clear_ms) {
        Ok(json) => match write_output("-", &json) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(EXIT_OUTPUT, e),
        },
        Err(e) => fail(EXIT_OUTPUT, e),
    }
}

/// Runs a `bcte market` subcommand.
pub fn run_market(cmd: MarketCommand, json: bool) -> ExitCode {
    use crate::market_cmds;
    let query = |r: anyhow::Result<()>| {
        r.map_or_else(|e| crate::chain_cmds::fail(&e), |()| ExitCode::SUCCESS)
    };
    match cmd {
        MarketCommand::Gen(args) => run_gen(args),
        MarketCommand::Status(q) => query(market_cmds::status(&q, json)),
        MarketCommand::Result {
            interval,
            site,
            wait,
            query: q,
        } => query(market_cmds::result(
            &q,
            interval,
            site.as_deref(),
            wait,
            json,
        )),
        MarketCommand::Bids { interval, query: q } => query(market_cmds::bids(&q, interval, json)),
        MarketCommand::Contracts { query: q } => query(crate::contract_cmds::list(&q, json)),
        MarketCommand::Flex { query: q } => query(crate::flex_cmds::list(&q, json)),
        MarketCommand::Settlement {
            interval,
            site,
            wait,
            query: q,
        } => query(crate::meter_cmds::settlement(
            &q,
            interval,
            site.as_deref(),
            wait,
            json,
        )),
        MarketCommand::Replay(args) => market_cmds::run_replay(&args, json),
    }
}

fn run_gen(args: GenArgs) -> ExitCode {
    if !(0.0..=1.0).contains(&args.congestion) {
        return fail(
            EXIT_INVALID,
            format!("--congestion {} is not between 0 and 1", args.congestion),
        );
    }
    if args.bids == 0 || args.bids > BIDS_MAX {
        return fail(
            EXIT_INVALID,
            format!("--bids {} is not between 1 and {BIDS_MAX}", args.bids),
        );
    }
    if args.levels == 0 || args.levels > DEPTH_MAX {
        return fail(
            EXIT_INVALID,
            format!("--levels {} is not between 1 and {DEPTH_MAX}", args.levels),
        );
    }
    if args.nodes <= args.levels || args.nodes > NODES_MAX {
        return fail(
            EXIT_INVALID,
            format!(
                "--nodes {} is not between --levels + 1 = {} and {NODES_MAX}",
                args.nodes,
                args.levels + 1
            ),
        );
    }
    let params = Params {
        bids: args.bids,
        nodes: args.nodes,
        levels: args.levels,
        seed: args.seed,
        congested_permille: (args.congestion * 1000.0).round() as u32,
        mix: if args.steps {
            CurveMix::Steps
        } else {
            CurveMix::Mixed
        },
    };
    let generated = match generate(&params) {
        Ok(generated) => generated,
        Err(e) => return fail(EXIT_INVALID, e),
    };
    let json = match market_to_json(&generated.market) {
        Ok(json) => json,
        Err(e) => return fail(EXIT_OUTPUT, e),
    };
    if let Err(e) = write_output(&args.output, &json) {
        return fail(EXIT_OUTPUT, e);
    }
    eprintln!(
        "generated {} bids on {} nodes in {} levels; {} of {} edges at their limit",
        args.bids, args.nodes, args.levels, generated.congested, generated.edges
    );
    ExitCode::SUCCESS
}
