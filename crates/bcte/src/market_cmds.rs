//! The market on the chain from the command line: `bcte tx feeder|site|market|grid-mode|bid`
//! to register, configure and bid, and `bcte market status|result|bids|replay` to read.
//!
//! Files and arguments use the market file's units: kW and currency/MWh as decimals, converted
//! to watts and µ/MWh by the market engine's one rounding rule. `--feeder` may be left out when
//! the chain has exactly one feeder. Exit codes as for every transaction: 0 accepted, 1 the
//! node failed or refused, 2 invalid arguments or input (one line naming the file, field or
//! limit), 3 rejected by the ledger (the receipt's reason is printed).

use crate::{
    chain_cmds::{
        DEFAULT_NODE, InputError, TxCommon, TxCommonGrid, emit, fail, post_tx, sign_for, submit,
        wait_final,
    },
    client::Client,
};
use anyhow::{Context as _, bail};
use bcte_ledger::{StateKey, StateProof, decode_value, market_state::ResultBucket};
use bcte_market::file::{clearing_to_json, limit_from, parse_market, power_from, price_from};
use bcte_node::{
    api::{SubmitBatchRequest, SubmitBatchResponse, TxStatus},
    files,
    market_api::{FeedersView, ResultView, ScheduleView, SiteResultView},
};
use bcte_types::{
    AccountId, ChainId, CurveSpec, FeederId, GridMode, Header, Interval, MarketConfig, NodeId,
    NodeSpec, Payload, Price, Role, Roles, SiteId, SiteSpec, Tx, TxBody, Watts,
    market::{
        BIDS_PER_TX_MAX, BidEntry, Bids, CURVE_PARTS_MAX, EdgeLimit, FEEDER_NODES_MAX,
        FEEDER_SITES_MAX, FeederRegister, GridModeSet, MarketConfigure, RampSpec, SITES_PER_TX_MAX,
        SiteDelegate, SiteRevoke, SitesRegister, StepSpec, UpstreamPrice, UpstreamPrices,
    },
};
use clap::{Args, Subcommand};
use commonware_codec::Encode;
use commonware_cryptography::{Signer as _, ed25519::PrivateKey};
use serde::Deserialize;
use serde_json::{Value, json};
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

pub(crate) fn input(message: impl Into<String>) -> anyhow::Error {
    InputError(message.into()).into()
}

/// A file's text, or an input error naming it.
fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| input(format!("{}: cannot read: {e}", path.display())))
}

/// A JSON file of type `T`, or an input error naming the file, line and column.
fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<T> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|e| input(format!("{}: {e}", path.display())))
}

fn feeder_id(s: &str) -> anyhow::Result<FeederId> {
    FeederId::new(s).map_err(|e| input(e.to_string()))
}

pub(crate) fn site_id(s: &str) -> anyhow::Result<SiteId> {
    SiteId::new(s).map_err(|e| input(e.to_string()))
}

fn node_id(s: &str) -> anyhow::Result<NodeId> {
    NodeId::new(s).map_err(|e| input(e.to_string()))
}

fn kw_arg(field: &str, x: f64) -> anyhow::Result<Watts> {
    limit_from(x).map_err(|e| input(format!("{field}: {e}")))
}

/// The feeder a command concerns: `--feeder`, or the chain's only one.
pub(crate) fn resolve_feeder(client: &Client, given: Option<&str>) -> anyhow::Result<FeederId> {
    if let Some(f) = given {
        return feeder_id(f);
    }
    let view: FeedersView = client.get("/v1/feeders")?;
    match view.feeders.as_slice() {
        [only] => feeder_id(&only.id),
        [] => Err(input(
            "the chain has no feeder yet; register one with `bcte tx feeder register`",
        )),
        many => Err(input(format!(
            "the chain has {} feeders ({}); name one with --feeder",
            many.len(),
            many.iter()
                .map(|f| f.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn schedule(client: &Client, feeder: &FeederId) -> anyhow::Result<ScheduleView> {
    client.get(&format!("/v1/feeders/{}/schedule", enc(feeder.as_str())))
}

/// Percent-encodes an id for a URL path segment (ids are printable ASCII without `/`).
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `--from-interval`, or the first interval whose gate closes at least two seconds of block
/// time from now (so the transaction has time to become final before it).
fn from_interval(
    client: &Client,
    feeder: &FeederId,
    given: Option<u64>,
) -> anyhow::Result<Interval> {
    if let Some(k) = given {
        return Ok(Interval(k));
    }
    let s = schedule(client, feeder)?;
    let config = s
        .configs
        .first()
        .map(|c| c.config.interval_ms)
        .unwrap_or(MarketConfig::DEFAULT.interval_ms);
    let speed = s.clock_speed.max(1);
    let mut k = s.next_interval;
    let mut gate_block = s.next_gate_block_ms;
    while gate_block < s.block_ms + 2_000 {
        k += 1;
        gate_block += config.div_ceil(u64::from(speed));
    }
    Ok(Interval(k))
}

/// A market configuration in market-file units; every field may be left out (the defaults of
/// docs/market-chain-rules.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    interval_ms: Option<u64>,
    gate_lead_ms: Option<u64>,
    price_floor: Option<f64>,
    price_cap: Option<f64>,
    import_price: Option<f64>,
    import_limit_kw: Option<f64>,
    export_price: Option<f64>,
    export_limit_kw: Option<f64>,
    alert_import_limit_kw: Option<f64>,
    retention_intervals: Option<u32>,
    imbalance_penalty: Option<f64>,
    settlement_delay_ms: Option<u64>,
    reading_window_ms: Option<u64>,
    baseline_days: Option<u32>,
    baseline_day_intervals: Option<u32>,
}

impl ConfigFile {
    fn to_config(&self) -> anyhow::Result<MarketConfig> {
        let d = MarketConfig::DEFAULT;
        let price = |field: &str, v: Option<f64>, default: Price| match v {
            None => Ok(default),
            Some(x) => price_from(x).map_err(|e| input(format!("config, {field}: {e}"))),
        };
        let power = |field: &str, v: Option<f64>, default: Watts| match v {
            None => Ok(default),
            Some(x) => limit_from(x).map_err(|e| input(format!("config, {field}: {e}"))),
        };
        let config = MarketConfig {
            interval_ms: self.interval_ms.unwrap_or(d.interval_ms),
            gate_lead_ms: self.gate_lead_ms.unwrap_or(d.gate_lead_ms),
            price_floor: price("price_floor", self.price_floor, d.price_floor)?,
            price_cap: price("price_cap", self.price_cap, d.price_cap)?,
            import_price: price("import_price", self.import_price, d.import_price)?,
            import_limit: power("import_limit_kw", self.import_limit_kw, d.import_limit)?,
            export_price: price("export_price", self.export_price, d.export_price)?,
            export_limit: power("export_limit_kw", self.export_limit_kw, d.export_limit)?,
            alert_import_limit: power(
                "alert_import_limit_kw",
                self.alert_import_limit_kw,
                d.alert_import_limit,
            )?,
            retention_intervals: self.retention_intervals.unwrap_or(d.retention_intervals),
            imbalance_penalty: price(
                "imbalance_penalty",
                self.imbalance_penalty,
                d.imbalance_penalty,
            )?,
            settlement_delay_ms: self.settlement_delay_ms.unwrap_or(d.settlement_delay_ms),
            reading_window_ms: self.reading_window_ms.unwrap_or(d.reading_window_ms),
            baseline_days: self.baseline_days.unwrap_or(d.baseline_days),
            baseline_day_intervals: self
                .baseline_day_intervals
                .unwrap_or(d.baseline_day_intervals),
        };
        bcte_ledger::market::check_config(&config).map_err(input)?;
        Ok(config)
    }
}

/// A node in the `nodes` format of the market file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    id: String,
    #[serde(default)]
    parent: Option<String>,
    #[serde(default)]
    import_limit_kw: Option<f64>,
    #[serde(default)]
    export_limit_kw: Option<f64>,
}

/// A feeder file: its id, its nodes (the market file's `nodes`), and optionally its epoch and
/// configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeederFile {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    epoch_ms: Option<u64>,
    #[serde(default)]
    config: Option<ConfigFile>,
    nodes: Vec<NodeFile>,
    /// A feeder model's parts (`bcte feeder import-simbench`) that registering the feeder does
    /// not use: its sites are registered with `tx site register`, with their owners.
    #[serde(default)]
    #[allow(dead_code)]
    source: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    edges: Option<serde_json::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    sites: Option<serde_json::Value>,
}

fn node_specs(nodes: &[NodeFile]) -> anyhow::Result<Vec<NodeSpec>> {
    if nodes.is_empty() || nodes.len() > FEEDER_NODES_MAX {
        return Err(input(format!(
            "nodes: {} nodes; a feeder has 1 to {FEEDER_NODES_MAX}",
            nodes.len()
        )));
    }
    nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let at = |e: String| input(format!("nodes[{i}] ({:?}): {e}", n.id));
            let limit = |field: &str, v: Option<f64>| {
                v.map(|x| limit_from(x).map_err(|e| at(format!("{field}: {e}"))))
                    .transpose()
            };
            Ok(NodeSpec {
                id: NodeId::new(&n.id).map_err(|e| at(e.to_string()))?,
                parent: n
                    .parent
                    .as_deref()
                    .map(|p| NodeId::new(p).map_err(|e| at(e.to_string())))
                    .transpose()?,
                import_limit: limit("import_limit_kw", n.import_limit_kw)?,
                export_limit: limit("export_limit_kw", n.export_limit_kw)?,
            })
        })
        .collect()
}

/// A site of a sites file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteFile {
    site: String,
    node: String,
    owner: AccountId,
    #[serde(default)]
    priority: u8,
    #[serde(default)]
    import_limit_kw: Option<f64>,
    #[serde(default)]
    export_limit_kw: Option<f64>,
}

/// A curve as written in a bid: the market file's points, or components (an exact sum).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum CurveFile {
    /// `[[price, kW], ...]`.
    Points(Vec<(f64, f64)>),
    /// `{"base_kw", "steps": [[price, drop_kw]], "ramps": [[start, end, drop_kw, count]]}`.
    Components {
        /// kW below every price.
        base_kw: f64,
        /// Steps.
        #[serde(default)]
        steps: Vec<(f64, f64)>,
        /// Ramps.
        #[serde(default)]
        ramps: Vec<(f64, f64, f64, u32)>,
    },
}

impl CurveFile {
    /// The curve as a transaction carries it.
    pub fn to_spec(&self, what: &str) -> anyhow::Result<CurveSpec> {
        let at = |e: String| input(format!("{what}: {e}"));
        let price = |i: usize, x: f64| price_from(x).map_err(|e| at(format!("point {i}: {e}")));
        let power = |i: usize, x: f64| power_from(x).map_err(|e| at(format!("point {i}: {e}")));
        let spec = match self {
            Self::Points(points) => CurveSpec::Points(
                points
                    .iter()
                    .enumerate()
                    .map(|(i, &(p, w))| Ok((price(i, p)?, power(i, w)?)))
                    .collect::<anyhow::Result<_>>()?,
            ),
            Self::Components {
                base_kw,
                steps,
                ramps,
            } => CurveSpec::Components {
                base: power_from(*base_kw).map_err(|e| at(format!("base_kw: {e}")))?,
                steps: steps
                    .iter()
                    .enumerate()
                    .map(|(i, &(p, d))| {
                        Ok(StepSpec {
                            price: price(i, p)?,
                            drop: power(i, d)?,
                        })
                    })
                    .collect::<anyhow::Result<_>>()?,
                ramps: ramps
                    .iter()
                    .enumerate()
                    .map(|(i, &(s, e, d, count))| {
                        Ok(RampSpec {
                            start: price(i, s)?,
                            end: price(i, e)?,
                            drop: power(i, d)?,
                            count,
                        })
                    })
                    .collect::<anyhow::Result<_>>()?,
            },
        };
        if spec.is_empty() || spec.len() > CURVE_PARTS_MAX {
            return Err(at(format!(
                "{} points or components; a curve has 1 to {CURVE_PARTS_MAX}",
                spec.len()
            )));
        }
        Ok(spec)
    }
}

/// One bid of a bids file (`curve: null` withdraws it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BidFile {
    site: String,
    interval: u64,
    curve: Option<CurveFile>,
}

/// A bids file: many sites' bids in one transaction (an aggregator's batch).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BidsFile {
    #[serde(default)]
    feeder: Option<String>,
    bids: Vec<BidFile>,
}

/// A prices file: upstream prices for consecutive intervals.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PricesFile {
    from_interval: u64,
    /// `[[import_price, export_price], ...]`, currency/MWh.
    prices: Vec<(f64, f64)>,
}

/// `bcte tx feeder` subcommands.
#[derive(Subcommand, Debug)]
pub enum FeederCommand {
    /// Register a feeder from a feeder file: its nodes (the market file's `nodes`), and
    /// optionally its id, epoch and configuration (DSO).
    Register {
        #[command(flatten)]
        common: TxCommon,
        /// The feeder file (JSON; see docs/market-chain-rules.md).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// The feeder's id (overrides the file's `id`).
        #[arg(long)]
        feeder: Option<String>,
    },
    /// Change the limits of the edge above a node from an interval on (DSO).
    Limit {
        #[command(flatten)]
        common: TxCommonGrid,
        /// The feeder (optional when the chain has one).
        #[arg(long)]
        feeder: Option<String>,
        /// The node below the edge.
        #[arg(long)]
        node: String,
        /// The import limit in kW (absent: unlimited).
        #[arg(long)]
        import_kw: Option<f64>,
        /// The export limit in kW (absent: unlimited).
        #[arg(long)]
        export_kw: Option<f64>,
        /// The first interval it applies to (default: the first whose gate is 2 s away).
        #[arg(long)]
        from_interval: Option<u64>,
    },
}

/// `bcte tx site` subcommands.
#[derive(Subcommand, Debug)]
pub enum SiteCommand {
    /// Register a site at a node, owned by an account (DSO); or many from `--file`.
    Register {
        #[command(flatten)]
        common: TxCommonGrid,
        /// The feeder (optional when the chain has one).
        #[arg(long)]
        feeder: Option<String>,
        /// The site's id.
        #[arg(long, required_unless_present = "file")]
        site: Option<String>,
        /// Its node.
        #[arg(long, required_unless_present = "file")]
        node: Option<String>,
        /// Its owner's ACCOUNT.
        #[arg(long, required_unless_present = "file")]
        owner: Option<AccountId>,
        /// Its priority class, 0 (shed first) to 7 (shed last).
        #[arg(long, default_value_t = 0)]
        priority: u8,
        /// Its connection's import limit in kW.
        #[arg(long)]
        import_kw: Option<f64>,
        /// Its connection's export limit in kW.
        #[arg(long)]
        export_kw: Option<f64>,
        /// A JSON list of sites `[{"site", "node", "owner", "priority", "import_limit_kw",
        /// "export_limit_kw"}]`, registered together.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["site", "node", "owner"])]
        file: Option<PathBuf>,
    },
    /// Delegate bidding for your site to an aggregator (the site's owner).
    Delegate {
        #[command(flatten)]
        common: TxCommon,
        /// The feeder (optional when the chain has one).
        #[arg(long)]
        feeder: Option<String>,
        /// The site.
        #[arg(long)]
        site: String,
        /// The aggregator's ACCOUNT.
        #[arg(long)]
        aggregator: AccountId,
    },
    /// Revoke your site's delegation; the aggregator's open bids for it are withdrawn.
    Revoke {
        #[command(flatten)]
        common: TxCommon,
        /// The feeder (optional when the chain has one).
        #[arg(long)]
        feeder: Option<String>,
        /// The site.
        #[arg(long)]
        site: String,
    },
}

/// `bcte tx market` subcommands.
#[derive(Subcommand, Debug)]
pub enum MarketTxCommand {
    /// Replace the market configuration from an interval on (DSO).
    Config {
        #[command(flatten)]
        common: TxCommon,
        /// The feeder (optional when the chain has one).
        #[arg(long)]
        feeder: Option<String>,
        /// The configuration file (JSON; fields left out take the defaults).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
        /// The first interval it applies to (default: the first whose gate is 2 s away).
        #[arg(long)]
        from_interval: Option<u64>,
    },
    /// Post upstream prices for consecutive intervals (DSO): `{"from_interval": K, "prices":
    /// [[import, export], ...]}` in currency/MWh.
    Prices {
        #[command(flatten)]
        common: TxCommon,
        /// The feeder (optional when the chain has one).
        #[arg(long)]
        feeder: Option<String>,
        /// The prices file.
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
}

/// Arguments of `bcte tx grid-mode`.
#[derive(Args, Debug)]
pub struct GridModeArgs {
    #[command(flatten)]
    common: TxCommon,
    /// `normal`, `alert` or `islanded`.
    mode: GridMode,
    /// The feeder (optional when the chain has one).
    #[arg(long)]
    feeder: Option<String>,
    /// The first interval in the mode (default: the first whose gate is 2 s away).
    #[arg(long)]
    from_interval: Option<u64>,
}

/// Arguments of `bcte tx bid`.
#[derive(Args, Debug)]
pub struct BidArgs {
    #[command(flatten)]
    common: TxCommon,
    /// The feeder (optional when the chain has one, or named in the file).
    #[arg(long)]
    feeder: Option<String>,
    /// The site.
    #[arg(long, required_unless_present = "file")]
    site: Option<String>,
    /// The interval.
    #[arg(long, required_unless_present = "file")]
    interval: Option<u64>,
    /// The curve, `[[price, kW], ...]` (currency/MWh, kW) as in a market file.
    #[arg(long, conflicts_with_all = ["withdraw", "file"], required_unless_present_any = ["withdraw", "file"])]
    curve: Option<String>,
    /// Withdraw the site's bid for the interval.
    #[arg(long)]
    withdraw: bool,
    /// A bids file `{"bids": [{"site", "interval", "curve"}]}`: many sites' bids in one
    /// transaction (`curve: null` withdraws).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["site", "interval", "withdraw"])]
    file: Option<PathBuf>,
}

/// Runs `bcte tx feeder ...`.
pub fn run_feeder(cmd: FeederCommand, json: bool) -> ExitCode {
    let run = || -> anyhow::Result<ExitCode> {
        match cmd {
            FeederCommand::Register {
                common,
                file,
                feeder,
            } => {
                let f: FeederFile = read_json(&file)?;
                let id = feeder.or(f.id).ok_or_else(|| {
                    input(format!(
                        "{}: no feeder id: give `id` or --feeder",
                        file.display()
                    ))
                })?;
                let config = f.config.unwrap_or_default().to_config()?;
                let payload = Payload::FeederRegister(FeederRegister {
                    feeder: feeder_id(&id)?,
                    epoch_ms: f.epoch_ms,
                    config,
                    nodes: node_specs(&f.nodes)?,
                    market_account: None,
                    upstream_account: None,
                });
                submit(&common, payload, json)
            }
            FeederCommand::Limit {
                common,
                feeder,
                node,
                import_kw,
                export_kw,
                from_interval: from,
            } => {
                let common = common.common();
                let client = common.client()?;
                let feeder = resolve_feeder(&client, feeder.as_deref())?;
                let payload = Payload::EdgeLimit(EdgeLimit {
                    from: from_interval(&client, &feeder, from)?,
                    feeder,
                    node: node_id(&node)?,
                    import_limit: import_kw.map(|x| kw_arg("--import-kw", x)).transpose()?,
                    export_limit: export_kw.map(|x| kw_arg("--export-kw", x)).transpose()?,
                });
                submit(&common, payload, json)
            }
        }
    };
    run().unwrap_or_else(|e| fail(&e))
}

/// Runs `bcte tx site ...`.
pub fn run_site(cmd: SiteCommand, json: bool) -> ExitCode {
    let run = || -> anyhow::Result<ExitCode> {
        match cmd {
            SiteCommand::Register {
                common,
                feeder,
                site,
                node,
                owner,
                priority,
                import_kw,
                export_kw,
                file,
            } => {
                let common = common.common();
                let client = common.client()?;
                let feeder = resolve_feeder(&client, feeder.as_deref())?;
                let sites: Vec<SiteFile> = match file {
                    Some(file) => read_json(&file)?,
                    None => vec![SiteFile {
                        site: site.expect("required by clap"),
                        node: node.expect("required by clap"),
                        owner: owner.expect("required by clap"),
                        priority,
                        import_limit_kw: import_kw,
                        export_limit_kw: export_kw,
                    }],
                };
                if sites.is_empty() || sites.len() > SITES_PER_TX_MAX {
                    return Err(input(format!(
                        "{} sites; register 1 to {SITES_PER_TX_MAX} at once",
                        sites.len()
                    )));
                }
                let sites = sites
                    .iter()
                    .map(|s| {
                        let limit = |field: &str, v: Option<f64>| {
                            v.map(|x| kw_arg(&format!("site {:?}, {field}", s.site), x))
                                .transpose()
                        };
                        Ok(SiteSpec {
                            site: site_id(&s.site)?,
                            node: node_id(&s.node)?,
                            owner: s.owner,
                            priority: s.priority,
                            import_limit: limit("import_limit_kw", s.import_limit_kw)?,
                            export_limit: limit("export_limit_kw", s.export_limit_kw)?,
                        })
                    })
                    .collect::<anyhow::Result<_>>()?;
                submit(
                    &common,
                    Payload::SitesRegister(SitesRegister { feeder, sites }),
                    json,
                )
            }
            SiteCommand::Delegate {
                common,
                feeder,
                site,
                aggregator,
            } => {
                let client = common.client()?;
                let feeder = resolve_feeder(&client, feeder.as_deref())?;
                let payload = Payload::SiteDelegate(SiteDelegate {
                    feeder,
                    site: site_id(&site)?,
                    aggregator,
                });
                submit(&common, payload, json)
            }
            SiteCommand::Revoke {
                common,
                feeder,
                site,
            } => {
                let client = common.client()?;
                let feeder = resolve_feeder(&client, feeder.as_deref())?;
                let payload = Payload::SiteRevoke(SiteRevoke {
                    feeder,
                    site: site_id(&site)?,
                });
                submit(&common, payload, json)
            }
        }
    };
    run().unwrap_or_else(|e| fail(&e))
}

/// Runs `bcte tx market ...`.
pub fn run_market_tx(cmd: MarketTxCommand, json: bool) -> ExitCode {
    let run = || -> anyhow::Result<ExitCode> {
        match cmd {
            MarketTxCommand::Config {
                common,
                feeder,
                file,
                from_interval: from,
            } => {
                let config = read_json::<ConfigFile>(&file)?.to_config()?;
                let client = common.client()?;
                let feeder = resolve_feeder(&client, feeder.as_deref())?;
                let from = from_interval(&client, &feeder, from)?;
                submit(
                    &common,
                    Payload::MarketConfig(MarketConfigure {
                        feeder,
                        from,
                        config,
                    }),
                    json,
                )
            }
            MarketTxCommand::Prices {
                common,
                feeder,
                file,
            } => {
                let prices: PricesFile = read_json(&file)?;
                let client = common.client()?;
                let feeder = resolve_feeder(&client, feeder.as_deref())?;
                let converted = prices
                    .prices
                    .iter()
                    .enumerate()
                    .map(|(i, &(import, export))| {
                        let at = |e: String| input(format!("{}: prices[{i}]: {e}", file.display()));
                        Ok(UpstreamPrice {
                            import_price: price_from(import).map_err(at)?,
                            export_price: price_from(export).map_err(at)?,
                        })
                    })
                    .collect::<anyhow::Result<_>>()?;
                submit(
                    &common,
                    Payload::UpstreamPrices(UpstreamPrices {
                        feeder,
                        from: Interval(prices.from_interval),
                        prices: converted,
                    }),
                    json,
                )
            }
        }
    };
    run().unwrap_or_else(|e| fail(&e))
}

/// Runs `bcte tx grid-mode ...`.
pub fn run_grid_mode(args: GridModeArgs, json: bool) -> ExitCode {
    let run = || -> anyhow::Result<ExitCode> {
        let client = args.common.client()?;
        let feeder = resolve_feeder(&client, args.feeder.as_deref())?;
        let from = from_interval(&client, &feeder, args.from_interval)?;
        submit(
            &args.common,
            Payload::GridMode(GridModeSet {
                feeder,
                from,
                mode: args.mode,
            }),
            json,
        )
    };
    run().unwrap_or_else(|e| fail(&e))
}

/// Runs `bcte tx bid ...`.
pub fn run_bid(args: BidArgs, json: bool) -> ExitCode {
    let run = || -> anyhow::Result<ExitCode> {
        let client = args.common.client()?;
        let (feeder, bids) = match &args.file {
            Some(file) => {
                let f: BidsFile = read_json(file)?;
                let feeder =
                    resolve_feeder(&client, args.feeder.as_deref().or(f.feeder.as_deref()))?;
                if f.bids.is_empty() || f.bids.len() > BIDS_PER_TX_MAX {
                    return Err(input(format!(
                        "{}: {} bids; send 1 to {BIDS_PER_TX_MAX} in one transaction",
                        file.display(),
                        f.bids.len()
                    )));
                }
                let bids = f
                    .bids
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        Ok(BidEntry {
                            site: site_id(&b.site)?,
                            interval: Interval(b.interval),
                            curve: b
                                .curve
                                .as_ref()
                                .map(|c| {
                                    c.to_spec(&format!("{}: bids[{i}], curve", file.display()))
                                })
                                .transpose()?,
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                (feeder, bids)
            }
            None => {
                let feeder = resolve_feeder(&client, args.feeder.as_deref())?;
                let curve = match &args.curve {
                    None => None,
                    Some(text) => {
                        let parsed: CurveFile = serde_json::from_str(text)
                            .map_err(|e| input(format!("--curve: {e}")))?;
                        Some(parsed.to_spec("--curve")?)
                    }
                };
                let bid = BidEntry {
                    site: site_id(args.site.as_deref().expect("required by clap"))?,
                    interval: Interval(args.interval.expect("required by clap")),
                    curve,
                };
                (feeder, vec![bid])
            }
        };
        submit(&args.common, Payload::Bids(Bids { feeder, bids }), json)
    };
    run().unwrap_or_else(|e| fail(&e))
}

/// Arguments of the market queries.
#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The node's API URL.
    #[arg(long, value_name = "URL", default_value = DEFAULT_NODE, env = "BCTE_NODE")]
    pub(crate) node: String,
    /// The feeder (optional when the chain has one).
    #[arg(long)]
    pub(crate) feeder: Option<String>,
    /// Read as this key's account (AC-6): its own sites, the sites delegated to it, the
    /// feeders it operates; without it, only what is public.
    #[arg(long, value_name = "FILE", env = "BCTE_KEY")]
    pub(crate) key: Option<PathBuf>,
}

impl QueryArgs {
    /// A client of the node reading as `--key`, if given.
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        Client::reading(&self.node, self.key.as_deref())
    }
}

/// Arguments of `bcte market replay`.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The market file to run through the chain.
    pub file: PathBuf,
    /// The node's API URL.
    #[arg(long, value_name = "URL", default_value = DEFAULT_NODE, env = "BCTE_NODE")]
    node: String,
    /// The DSO's key file (the chain's authority).
    #[arg(long, value_name = "FILE", default_value = "./dev-chain/dev.key")]
    key: PathBuf,
    /// Where to write each site's fresh key, as `DIR/<site id>.key`.
    #[arg(long, value_name = "DIR")]
    keys_dir: Option<PathBuf>,
    /// How long to wait for each step, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
}

/// Prints `bcte market status`.
pub fn status(q: &QueryArgs, json: bool) -> anyhow::Result<()> {
    let client = q.client()?;
    let feeder = resolve_feeder(&client, q.feeder.as_deref())?;
    let s = schedule(&client, &feeder)?;
    let value = serde_json::to_value(&s)?;
    emit(json, &value, || {
        format!(
            "feeder {}\nmarket time:      {} ms (block {} at {} ms)\ncurrent interval: {}\nmode:             {}\nnext to clear:    {} (gate closes at {} ms, block time {} ms; mode {})\nopen for bids:    {} to {}",
            s.feeder,
            s.market_time_ms,
            s.height,
            s.block_ms,
            s.current_interval
                .map_or("none (before the epoch)".into(), |k| k.to_string()),
            s.mode,
            s.next_interval,
            s.next_gate_ms,
            s.next_gate_block_ms,
            s.next_mode,
            s.next_interval,
            s.last_open_interval,
        )
    });
    Ok(())
}

/// Fetches a site's result with its proof and checks the proof against the header of the
/// block it names (whose hash is recomputed): the site's result, proven. The proof comes only
/// to those who read the whole bucket (the feeder's operator, auditors, regulators: AC-6.5);
/// a site's owner gets its result unproven (`false`).
pub fn proven_site_result(
    client: &Client,
    feeder: &FeederId,
    interval: u64,
    site: &SiteId,
    headers: &mut std::collections::BTreeMap<u64, Header>,
) -> anyhow::Result<(SiteResultView, bool)> {
    let view: SiteResultView = client.get(&format!(
        "/v1/feeders/{}/intervals/{interval}/sites/{}",
        enc(feeder.as_str()),
        enc(site.as_str())
    ))?;
    let Some(proof_hex) = &view.proof else {
        return Ok((view, false));
    };
    let bytes = hex::decode(proof_hex).context("the node sent a proof that is not hex")?;
    let proof = StateProof::from_bytes(&bytes).context("the node sent a malformed proof")?;
    let key = StateKey::Results(
        feeder.clone(),
        Interval(interval),
        bcte_ledger::book_bucket(site),
    );
    if proof.key != key || proof.height.get() != view.height {
        bail!("the node sent a proof of another key or height");
    }
    let header = match headers.get(&view.height) {
        Some(h) => *h,
        None => {
            let (header, _) = crate::chain_cmds::verified_header(client, view.height)?;
            headers.insert(view.height, header);
            header
        }
    };
    proof
        .verify(&header.state_root)
        .context("the proof does not check against the block's state root")?;
    let bucket: ResultBucket = proof
        .value
        .as_deref()
        .and_then(decode_value)
        .context("the proven value is not a bucket of site results")?;
    let result = *bucket
        .get(site)
        .context("the proven bucket holds no result of the site")?;
    let kw = bcte_market::file::kw;
    if kw(result.allocation) != view.part.allocation_kw
        || kw(result.shed) != view.part.shed_kw
        || kw(result.spilled) != view.part.spilled_kw
        || bcte_market::file::per_mwh(result.price) != view.price
    {
        bail!("the node's answer differs from the value it proves");
    }
    Ok((view, true))
}

/// Waits up to `wait_s` seconds for interval `k` of `feeder` to be cleared.
fn wait_cleared(client: &Client, feeder: &FeederId, k: u64, wait_s: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(wait_s);
    loop {
        let s = schedule(client, feeder)?;
        if s.next_interval > k || Instant::now() >= deadline {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Prints `bcte market result K`.
pub fn result(
    q: &QueryArgs,
    interval: u64,
    site: Option<&str>,
    wait_s: u64,
    json: bool,
) -> anyhow::Result<()> {
    let client = q.client()?;
    let feeder = resolve_feeder(&client, q.feeder.as_deref())?;
    wait_cleared(&client, &feeder, interval, wait_s)?;
    if let Some(site) = site {
        let site = site_id(site)?;
        let (view, verified) =
            proven_site_result(&client, &feeder, interval, &site, &mut Default::default())?;
        let mut value = serde_json::to_value(&view)?;
        value["verified"] = json!(verified);
        emit(json, &value, || {
            let proof = if verified {
                format!(
                    "proof of {} checked against state root {} of block {}",
                    view.key, view.state_root, view.block_hash
                )
            } else {
                format!(
                    "not proven: the proof of {} would show the other sites of its bucket, so it \
                     goes only to the feeder's operator, auditors and regulators (AC-6.5)",
                    view.key
                )
            };
            format!(
                "site {} in interval {interval} of feeder {}: price {} /MWh, allocation {} kW, served {} kW, shed {} kW, spilled {} kW\n{proof}",
                view.site,
                view.feeder,
                view.price,
                view.part.allocation_kw,
                view.part.served_kw,
                view.part.shed_kw,
                view.part.spilled_kw,
            )
        });
        return Ok(());
    }
    let view: Value = client.get(&format!(
        "/v1/feeders/{}/intervals/{interval}/result",
        enc(feeder.as_str())
    ))?;
    if json {
        println!("{view}");
    } else {
        println!("{}", serde_json::to_string_pretty(&view)?);
    }
    Ok(())
}

/// Prints `bcte market bids K`.
pub fn bids(q: &QueryArgs, interval: u64, json: bool) -> anyhow::Result<()> {
    let client = q.client()?;
    let feeder = resolve_feeder(&client, q.feeder.as_deref())?;
    let view: Value = client.get(&format!(
        "/v1/feeders/{}/intervals/{interval}/bids",
        enc(feeder.as_str())
    ))?;
    if json {
        println!("{view}");
    } else {
        println!("{}", serde_json::to_string_pretty(&view)?);
    }
    Ok(())
}

/// The fields of a result that `bcte clear` also writes: what `replay` compares.
const COMPARED: [&str; 8] = [
    "prices",
    "allocations",
    "flows",
    "shed_kw",
    "spilled_kw",
    "bid_shed_kw",
    "bid_spilled_kw",
    "welfare",
];

/// `bcte market replay`: runs a market file through the chain by transactions and compares
/// the chain's result with a local clearing of the same file.
pub fn replay(args: &ReplayArgs, json: bool) -> anyhow::Result<ExitCode> {
    let text = read_text(&args.file)?;
    let market = parse_market(&text).map_err(|e| input(format!("{}: {e}", args.file.display())))?;
    // The chain's limits, checked before anything is sent.
    let what = args.file.display();
    if market.nodes().len() > FEEDER_NODES_MAX {
        return Err(input(format!(
            "{what}: {} nodes; the chain's limit is {FEEDER_NODES_MAX} per feeder",
            market.nodes().len()
        )));
    }
    if market.bids().len() > FEEDER_SITES_MAX {
        return Err(input(format!(
            "{what}: {} bids; the chain's limit is {FEEDER_SITES_MAX} sites per feeder",
            market.bids().len()
        )));
    }
    let nodes = market
        .nodes()
        .iter()
        .map(|n| {
            let id = |s: &str| {
                NodeId::new(s).map_err(|e| input(format!("{what}: {e} (the chain's id rule)")))
            };
            Ok(NodeSpec {
                id: id(&n.id)?,
                parent: n.parent.as_deref().map(id).transpose()?,
                import_limit: n.import_limit,
                export_limit: n.export_limit,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut bids = Vec::with_capacity(market.bids().len());
    for b in market.bids() {
        let site =
            SiteId::new(&b.id).map_err(|e| input(format!("{what}: {e} (the chain's id rule)")))?;
        if b.id == SiteId::UPSTREAM {
            return Err(input(format!(
                "{what}: bid id {:?} is reserved on the chain for the upstream grid",
                SiteId::UPSTREAM
            )));
        }
        let points = b
            .curve
            .to_points(Price::ZERO)
            .expect("a market file's curve has a point form");
        if points.len() > CURVE_PARTS_MAX {
            return Err(input(format!(
                "{what}: bid {:?} has {} points; the chain's limit is {CURVE_PARTS_MAX}",
                b.id,
                points.len()
            )));
        }
        bids.push((site, b, points));
    }
    let dso = files::read_key(&args.key)
        .map_err(|e| input(format!("{e:#} (the DSO's key: give --key)")))?;
    let client = Client::new(&args.node).with_key(dso.clone());
    let timeout = Duration::from_secs(args.timeout_s);
    let (floor, cap) = (market.price_floor(), market.price_cap());
    let zero = Price::ZERO.clamp(floor, cap);
    let config = MarketConfig {
        interval_ms: 2_000,
        gate_lead_ms: 1_000,
        price_floor: floor,
        price_cap: cap,
        import_price: zero,
        export_price: zero,
        import_limit: Watts::ZERO,
        export_limit: Watts::ZERO,
        alert_import_limit: Watts::ZERO,
        ..MarketConfig::DEFAULT
    };
    let suffix: [u8; 4] = rand::random();
    let feeder = FeederId::new(format!("replay-{}", hex::encode(suffix))).expect("a valid id");
    let final_ok = |status: TxStatus, what: &str| -> anyhow::Result<()> {
        if status.status != "accepted" {
            bail!(Rejected(format!(
                "{what} was rejected: {}",
                status.reason.unwrap_or_default()
            )));
        }
        Ok(())
    };
    // 1. The feeder, its sites (one per bid, each owned by a fresh key).
    let register = sign_for(
        &client,
        &dso,
        Payload::FeederRegister(FeederRegister {
            feeder: feeder.clone(),
            epoch_ms: None,
            config,
            nodes,
            market_account: None,
            upstream_account: None,
        }),
    )?;
    let hash = post_tx(&client, &register)?;
    final_ok(
        wait_final(&client, &hash, timeout)?,
        "the feeder's registration",
    )?;
    let keys: Vec<PrivateKey> = bids.iter().map(|_| files::generate_key()).collect();
    if let Some(dir) = &args.keys_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for ((site, _, _), key) in bids.iter().zip(&keys) {
            files::write_key(&dir.join(format!("{site}.key")), key)?;
        }
    }
    let mut next_nonce = {
        let a: bcte_node::api::AccountView = client.get(&format!(
            "/v1/accounts/{}",
            AccountId::from_public_key(&dso.public_key())
        ))?;
        a.nonce
    };
    let head: bcte_node::api::HeadView = client.get("/v1/head")?;
    let chain = ChainId::new(head.chain_id).context("the node reports an invalid chain id")?;
    let sign = |key: &PrivateKey, nonce: u64, payload: Payload| {
        Tx::sign(
            TxBody {
                chain_id: chain.clone(),
                sender: AccountId::from_public_key(&key.public_key()),
                signer: None,
                nonce,
                payload,
            },
            key,
        )
    };
    let mut dso_txs = Vec::new();
    for chunk in bids
        .iter()
        .zip(&keys)
        .collect::<Vec<_>>()
        .chunks(SITES_PER_TX_MAX)
    {
        let sites = chunk
            .iter()
            .map(|((site, b, _), key)| SiteSpec {
                site: site.clone(),
                node: NodeId::new(&b.node).expect("checked with the nodes"),
                owner: AccountId::from_public_key(&key.public_key()),
                priority: b.priority,
                import_limit: None,
                export_limit: None,
            })
            .collect();
        dso_txs.push(sign(
            &dso,
            next_nonce,
            Payload::SitesRegister(SitesRegister {
                feeder: feeder.clone(),
                sites,
            }),
        ));
        next_nonce += 1;
    }
    // AC-2.1: the DSO (the registrar of a dev or local network) enrolls the fresh owners.
    let owners = keys.iter().map(|k| {
        (
            AccountId::from_public_key(&k.public_key()),
            Roles::one(Role::Prosumer),
        )
    });
    for op in bcte_types::role::Enroll::each(owners) {
        dso_txs.push(sign(&dso, next_nonce, Payload::Enroll(op)));
        next_nonce += 1;
    }
    // 2. Islanded from the interval bid for, so the chain adds no upstream bid: the file's own
    // grid bid is a site like any other.
    let s = schedule(&client, &feeder)?;
    let speed = u64::from(s.clock_speed.max(1));
    // Time to register the sites and submit every bid, with room to spare.
    let needed_ms = 3_000 + bids.len() as u64 / 2;
    let mut interval = s.next_interval;
    while s.next_gate_block_ms + (interval - s.next_interval) * config.interval_ms / speed
        < s.block_ms + needed_ms
    {
        interval += 1;
    }
    let k = Interval(interval);
    dso_txs.push(sign(
        &dso,
        next_nonce,
        Payload::GridMode(GridModeSet {
            feeder: feeder.clone(),
            from: k,
            mode: GridMode::Islanded,
        }),
    ));
    let mut hashes = Vec::new();
    for tx in &dso_txs {
        hashes.push(post_tx(&client, tx)?);
    }
    for (i, hash) in hashes.iter().enumerate() {
        let what = if i + 1 == hashes.len() {
            "the grid mode".to_owned()
        } else {
            format!("site registration {}", i + 1)
        };
        final_ok(wait_final(&client, hash, timeout)?, &what)?;
    }
    // 3. Every bid, signed by its site's key, in batches.
    let txs: Vec<Tx> = bids
        .iter()
        .zip(&keys)
        .map(|((site, _, points), key)| {
            sign(
                key,
                0,
                Payload::Bids(Bids {
                    feeder: feeder.clone(),
                    bids: vec![BidEntry {
                        site: site.clone(),
                        interval: k,
                        curve: Some(CurveSpec::Points(
                            points.iter().map(|p| (p.price, p.power)).collect(),
                        )),
                    }],
                }),
            )
        })
        .collect();
    for chunk in txs.chunks(bcte_node::api::BATCH_TXS_MAX) {
        let answer: SubmitBatchResponse = client.post(
            "/v1/txs/batch",
            &SubmitBatchRequest {
                txs: chunk.iter().map(|t| hex::encode(t.encode())).collect(),
            },
        )?;
        if let Some(refused) = answer.results.iter().find(|r| r.error.is_some()) {
            bail!(
                "the node refused a bid: {}",
                refused.error.clone().unwrap_or_default()
            );
        }
    }
    // 4. The result, once the interval's gate has passed.
    let started = Instant::now();
    let path = format!(
        "/v1/feeders/{}/intervals/{}/result",
        enc(feeder.as_str()),
        k.0
    );
    let chain_result: ResultView = loop {
        match client.get::<ResultView>(&path) {
            Ok(r) => break r,
            Err(e) if started.elapsed() < timeout => {
                if e.downcast_ref::<crate::client::NodeError>()
                    .is_none_or(|n| n.status != 404)
                {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e.context(format!("interval {} did not clear in time", k.0))),
        }
    };
    if chain_result.sites.len() != bids.len() {
        // A bid missing from the result was rejected: say why.
        for (tx, (site, _, _)) in txs.iter().zip(&bids) {
            if chain_result.sites.contains_key(site.as_str()) {
                continue;
            }
            let status: TxStatus = client.get(&format!("/v1/txs/{}", hex::encode(tx.hash())))?;
            bail!(Rejected(format!(
                "the bid of site {:?} was {}: {}",
                site.as_str(),
                status.status,
                status.reason.unwrap_or_default()
            )));
        }
    }
    // 5. Every site's result with its proof.
    let mut headers = std::collections::BTreeMap::new();
    for (site, _, _) in &bids {
        let (_, proven) = proven_site_result(&client, &feeder, k.0, site, &mut headers)
            .with_context(|| format!("the result of site {:?}", site.as_str()))?;
        if !proven {
            bail!(
                "the node withheld the proof of site {:?}'s result from the DSO",
                site.as_str()
            );
        }
    }
    // 6. The same file cleared here.
    let clearing = bcte_market::clear(&market);
    let local: Value = serde_json::from_str(&clearing_to_json(&market, &clearing, 0.0)?)?;
    let chain_value = serde_json::to_value(&chain_result)?;
    let matches = COMPARED
        .iter()
        .all(|f| local.get(*f) == chain_value.get(*f));
    let mut out = chain_value.clone();
    out["matches_local"] = json!(matches);
    out["proofs_checked"] = json!(bids.len());
    if json {
        println!("{out}");
    } else {
        println!("{}", serde_json::to_string_pretty(&out)?);
        println!(
            "feeder {} interval {} cleared at height {}; {} site proofs checked; matches_local: {matches}",
            feeder,
            k.0,
            chain_result.height,
            bids.len()
        );
    }
    Ok(if matches {
        ExitCode::SUCCESS
    } else {
        for f in COMPARED {
            if local.get(f) != chain_value.get(f) {
                eprintln!(
                    "error: {f} differs: chain {} local {}",
                    chain_value.get(f).unwrap_or(&Value::Null),
                    local.get(f).unwrap_or(&Value::Null)
                );
            }
        }
        ExitCode::from(1)
    })
}

/// A rejection by the ledger: exit code 3.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Rejected(String);

/// Runs `bcte market replay`, mapping errors to exit codes.
pub fn run_replay(args: &ReplayArgs, json: bool) -> ExitCode {
    match replay(args, json) {
        Ok(code) => code,
        Err(e) if e.downcast_ref::<Rejected>().is_some() => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
        Err(e) => fail(&e),
    }
}
