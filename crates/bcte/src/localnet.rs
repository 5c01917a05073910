//! `bcte localnet`: write and run a network of validators (and full nodes) on loopback.
//!
//! `init` writes a directory like other chains' `testnet` commands do:
//!
//! ```text
//! DIR/genesis.json        the chain (validators, token authority, allocations)
//! DIR/faucet.key          the token authority, funded at genesis
//! DIR/node0.toml          node 0's configuration (see bcte_node::config)
//! DIR/node0/node.key      node 0's key; node0/ is also its data directory
//! DIR/node0/node.log      its log, written by `localnet run`
//! ```
//!
//! `run` starts every `nodeN.toml` of a directory as its own `bcte node --config` process, shows
//! the heights live and stops them all on Ctrl-C.

use crate::client::Client;
use anyhow::{Context as _, bail};
use bcte_node::{
    api::HeadView,
    config::{ConfigFile, NodeConfig, PeerEntry, Role, Tuning},
    files,
};
use bcte_types::{AccountId, Allocation, Amount, ChainId, Genesis, Validator};
use clap::Subcommand;
use commonware_cryptography::{Signer as _, ed25519::PrivateKey};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::{
    io::IsTerminal as _,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// Base units the faucet holds at genesis: one billion tokens.
pub const FAUCET_ALLOCATION: Amount = Amount(1_000_000_000 * Amount::PER_TOKEN);

/// `bcte localnet` subcommands.
#[derive(Subcommand, Debug)]
pub enum LocalnetCommand {
    /// Write a genesis, a faucet key and, per node, a key and a TOML config into DIR.
    Init {
        /// Number of validators (f = (N-1)/3 of them may fail).
        #[arg(long, default_value_t = 4)]
        validators: usize,
        /// Number of full nodes (follow the chain and serve the API; never vote).
        #[arg(long, default_value_t = 0)]
        full_nodes: usize,
        /// The directory to create (must not hold a network already).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Use ports from here on (HTTP: BASE+i, p2p: BASE+100+i) instead of free ports.
        #[arg(long, value_name = "PORT")]
        base_port: Option<u16>,
        /// Market ms per block-time ms (MC-1): 1 on a real network; 900 runs a 15-minute
        /// interval in a second of wall time, for simulations and demonstrations.
        #[arg(long, default_value_t = 1, value_name = "SPEED")]
        market_clock_speed: u32,
    },
    /// Start every node of DIR as its own process, show their heights, stop all on Ctrl-C.
    Run {
        /// A directory written by `bcte localnet init`.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Stop after this many seconds instead of waiting for Ctrl-C.
        #[arg(long, value_name = "SECONDS")]
        stop_after: Option<u64>,
    },
}

/// One node written by [`init`].
#[derive(Debug, Clone)]
pub struct InitNode {
    /// `node0`, `node1`, ...
    pub name: String,
    /// Validator or full node.
    pub role: Role,
    /// Its config file.
    pub config: PathBuf,
    /// Its key's account.
    pub account: AccountId,
    /// Its HTTP API address.
    pub http: SocketAddr,
    /// Its p2p address.
    pub p2p: SocketAddr,
}

/// What [`init`] wrote.
#[derive(Debug, Clone)]
pub struct Init {
    /// The genesis file.
    pub genesis: PathBuf,
    /// The faucet key file.
    pub faucet: PathBuf,
    /// The chain id.
    pub chain_id: ChainId,
    /// Every node.
    pub nodes: Vec<InitNode>,
}

/// Where free ports are looked for: below the kernel's ephemeral range (Linux's default
/// `ip_local_port_range` starts at 32768; most systems' at 32768 or 49152). A port taken from
/// the ephemeral range could be given to some process's outgoing connection between `init`
/// and the node's start, and the node could not listen on it.
const FREE_PORTS: std::ops::Range<u16> = 10_000..32_768;

/// `count` distinct free loopback addresses (all held open until every one is chosen), from
/// [`FREE_PORTS`], scanning from a random port so that networks written at the same time
/// rarely pick the same ones; from the ephemeral range if that range is full.
fn free_addresses(count: usize) -> std::io::Result<Vec<SocketAddr>> {
    let span = FREE_PORTS.end - FREE_PORTS.start;
    let start = rand::random_range(0..span);
    let mut listeners = Vec::with_capacity(count);
    for offset in 0..span {
        if listeners.len() == count {
            break;
        }
        let port = FREE_PORTS.start + (start + offset) % span;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            listeners.push(l);
        }
    }
    while listeners.len() < count {
        listeners.push(TcpListener::bind("127.0.0.1:0")?);
    }
    listeners.iter().map(TcpListener::local_addr).collect()
}

/// Writes a local network of `validators` validators and `full_nodes` full nodes into `dir`,
/// with `extra` additional genesis allocations (the benchmark funds its senders this way).
pub fn init(
    dir: &Path,
    validators: usize,
    full_nodes: usize,
    base_port: Option<u16>,
    extra: &[Allocation],
    tuning: Tuning,
    market_clock_speed: u32,
) -> anyhow::Result<Init> {
    if validators == 0 {
        bail!("--validators must be at least 1");
    }
    let total = validators + full_nodes;
    let genesis_path = dir.join("genesis.json");
    if genesis_path.exists() {
        bail!(
            "{} already holds a network ({} exists); choose another directory",
            dir.display(),
            genesis_path.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (http, p2p): (Vec<SocketAddr>, Vec<SocketAddr>) = match base_port {
        Some(base) => {
            let port = |offset: usize| -> anyhow::Result<SocketAddr> {
                let p = u16::try_from(usize::from(base) + offset)
                    .ok()
                    .filter(|p| *p != 0)
                    .with_context(|| {
                        format!("--base-port {base} leaves no room for {total} nodes")
                    })?;
                Ok(SocketAddr::from(([127, 0, 0, 1], p)))
            };
            (
                (0..total).map(port).collect::<anyhow::Result<_>>()?,
                (0..total)
                    .map(|i| port(100 + i))
                    .collect::<anyhow::Result<_>>()?,
            )
        }
        None => {
            let all = free_addresses(2 * total).context("finding free loopback ports")?;
            (all[..total].to_vec(), all[total..].to_vec())
        }
    };
    let keys: Vec<PrivateKey> = (0..total).map(|_| files::generate_key()).collect();
    let faucet = files::generate_key();
    let faucet_account = AccountId::from_public_key(&faucet.public_key());
    let name = |i: usize| format!("node{i}");
    let role = |i: usize| {
        if i < validators {
            Role::Validator
        } else {
            Role::Full
        }
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let suffix = hex::encode(&faucet.public_key().as_ref()[..3]);
    let mut allocations = vec![Allocation {
        account: faucet_account,
        amount: FAUCET_ALLOCATION,
        roles: bcte_types::Roles::NONE,
    }];
    allocations.extend_from_slice(extra);
    let genesis = Genesis {
        chain_id: ChainId::new(format!("bcte-local-{suffix}")).expect("a valid chain id"),
        genesis_time_ms: now_ms,
        validators: (0..validators)
            .map(|i| Validator {
                name: name(i),
                public_key: AccountId::from_public_key(&keys[i].public_key()),
            })
            .collect(),
        authority: faucet_account,
        registrar: None,
        allocations,
        market_clock_speed,
        currency: None,
    };
    genesis
        .validate()
        .map_err(|e| anyhow::anyhow!("the genesis would be invalid: {e}"))?;

    let mut nodes = Vec::with_capacity(total);
    for i in 0..total {
        let data = dir.join(name(i));
        std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
        files::write_key(&data.join("node.key"), &keys[i])?;
        let peers = (0..total)
            .filter(|&j| j != i)
            .map(|j| PeerEntry {
                name: name(j),
                role: role(j),
                public_key: AccountId::from_public_key(&keys[j].public_key()),
                address: p2p[j],
            })
            .collect();
        let file = ConfigFile {
            role: role(i),
            data_dir: PathBuf::from(name(i)),
            genesis: PathBuf::from("genesis.json"),
            key: PathBuf::from(format!("{}/node.key", name(i))),
            p2p: p2p[i],
            http: http[i],
            peers,
            tuning,
            tls: None,
            dashboard: bcte_node::config::DashboardConfig::default(),
            openadr: bcte_node::config::OpenAdrConfig::default(),
        };
        let config = dir.join(format!("{}.toml", name(i)));
        let text = format!(
            "# {} of a local bcte network, written by `bcte localnet init`.\n\
             # Run it with `bcte node --config {}`. Paths are relative to this file.\n{}",
            name(i),
            config.display(),
            toml::to_string(&file).context("writing a node config")?
        );
        std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
        nodes.push(InitNode {
            name: name(i),
            role: role(i),
            config,
            account: AccountId::from_public_key(&keys[i].public_key()),
            http: http[i],
            p2p: p2p[i],
        });
    }
    let faucet_path = dir.join("faucet.key");
    files::write_key(&faucet_path, &faucet)?;
    // The genesis last: a directory with a genesis is complete.
    files::write_genesis(&genesis_path, &genesis)?;
    Ok(Init {
        genesis: genesis_path,
        faucet: faucet_path,
        chain_id: genesis.chain_id,
        nodes,
    })
}

/// The `nodeN.toml` files of a network directory, in node order.
pub fn node_configs(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("reading the directory {}", dir.display()))?;
    let mut configs = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".toml"))
        else {
            continue;
        };
        if let Some(index) = stem
            .strip_prefix("node")
            .and_then(|i| i.parse::<u32>().ok())
        {
            configs.push((index, stem.to_string(), path));
        }
    }
    if configs.is_empty() {
        bail!(
            "{} holds no nodeN.toml files: run `bcte localnet init --dir {}` first",
            dir.display(),
            dir.display()
        );
    }
    configs.sort();
    Ok(configs.into_iter().map(|(_, n, p)| (n, p)).collect())
}

/// A node process started by [`run`].
struct Proc {
    name: String,
    role: Role,
    url: String,
    log: PathBuf,
    child: Child,
    exited: Option<String>,
    bar: ProgressBar,
}

/// Starts `bcte node --config FILE` with its output appended to `log`.
pub fn spawn_node(config: &Path, log: &Path) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("finding the bcte executable")?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening the log {}", log.display()))?;
    let err = out.try_clone()?;
    Command::new(exe)
        .arg("node")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting the node of {}", config.display()))
}

fn run(dir: &Path, stop_after: Option<u64>) -> anyhow::Result<()> {
    // Check every file before starting anything: a bad config stops the whole network cleanly.
    let mut checked = Vec::new();
    for (name, path) in node_configs(dir)? {
        let cfg = NodeConfig::load(&path)?;
        checked.push((name, path, cfg));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;

    let tty = std::io::stderr().is_terminal();
    let multi = MultiProgress::with_draw_target(if tty {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style =
        ProgressStyle::with_template("{spinner} {prefix:<7} {msg}").expect("a valid template");
    let mut procs = Vec::new();
    for (name, path, cfg) in checked {
        let log = cfg.data_dir.root().join("node.log");
        let child = spawn_node(&path, &log)?;
        let bar = multi.add(ProgressBar::new_spinner());
        bar.set_style(style.clone());
        bar.set_prefix(name.clone());
        procs.push(Proc {
            name,
            role: cfg.role,
            url: format!("http://{}", cfg.http),
            log,
            child,
            exited: None,
            bar,
        });
    }
    let summary = |p: &Proc| format!("{:<9} {}", format!("{:?}", p.role).to_lowercase(), p.url);
    for p in &procs {
        let line = format!("{}  {}  log {}", p.name, summary(p), p.log.display());
        if tty {
            multi.println(line)?;
        } else {
            println!("{line}");
        }
    }
    if tty {
        multi.println("Ctrl-C stops every node.")?;
    } else {
        println!("Ctrl-C stops every node.");
    }

    let started = Instant::now();
    let mut last_print = Instant::now();
    while !stop.load(Ordering::SeqCst)
        && stop_after.is_none_or(|s| started.elapsed() < Duration::from_secs(s))
    {
        let mut heights = Vec::new();
        for p in &mut procs {
            if p.exited.is_none()
                && let Ok(Some(status)) = p.child.try_wait()
            {
                p.exited = Some(status.to_string());
                let line = format!("{} exited ({status}); see {}", p.name, p.log.display());
                if tty {
                    multi.println(line)?;
                } else {
                    eprintln!("{line}");
                }
            }
            let msg = match &p.exited {
                Some(status) => format!("{}  exited ({status})", summary(p)),
                None => match Client::with_timeout(&p.url, Duration::from_millis(500))
                    .get::<HeadView>("/v1/head")
                {
                    Ok(head) => {
                        heights.push(format!("{}={}", p.name, head.height));
                        format!("{}  height {}", summary(p), head.height)
                    }
                    Err(_) => format!("{}  starting", summary(p)),
                },
            };
            p.bar.set_message(msg);
            p.bar.tick();
        }
        if !tty && last_print.elapsed() >= Duration::from_secs(10) {
            println!("heights: {}", heights.join(" "));
            last_print = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    for p in &mut procs {
        // The nodes are crash-safe (every finalized block is durable before it is acknowledged),
        // so stopping them abruptly loses nothing.
        let _ = p.child.kill();
        let _ = p.child.wait();
        p.bar.finish_and_clear();
    }
    println!("stopped {} nodes", procs.len());
    Ok(())
}

/// Runs a `bcte localnet` subcommand.
pub fn run_localnet(cmd: LocalnetCommand, json: bool) -> ExitCode {
    let result = match cmd {
        LocalnetCommand::Init {
            validators,
            full_nodes,
            dir,
            base_port,
            market_clock_speed,
        } => init(
            &dir,
            validators,
            full_nodes,
            base_port,
            &[],
            Tuning::default(),
            market_clock_speed,
        )
        .map(|net| {
            print_init(&dir, &net, json);
        }),
        LocalnetCommand::Run { dir, stop_after } => run(&dir, stop_after),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn print_init(dir: &Path, net: &Init, json: bool) {
    if json {
        let nodes: Vec<_> = net
            .nodes
            .iter()
            .map(|n| {
                json!({
                    "name": n.name,
                    "role": n.role,
                    "config": n.config,
                    "account": n.account,
                    "http": format!("http://{}", n.http),
                    "p2p": n.p2p.to_string(),
                })
            })
            .collect();
        println!(
            "{}",
            json!({
                "dir": dir,
                "chain_id": net.chain_id.as_str(),
                "genesis": net.genesis,
                "faucet_key": net.faucet,
                "nodes": nodes,
            })
        );
        return;
    }
    println!("chain {} in {}", net.chain_id.as_str(), dir.display());
    println!("genesis:    {}", net.genesis.display());
    println!(
        "faucet key: {} (token authority, funded)",
        net.faucet.display()
    );
    for n in &net.nodes {
        println!(
            "{}  {:<9} http://{}  p2p {}  config {}",
            n.name,
            format!("{:?}", n.role).to_lowercase(),
            n.http,
            n.p2p,
            n.config.display()
        );
    }
    println!("start it with: bcte localnet run --dir {}", dir.display());
}
