//! DSO flexibility requests from the command line (docs/flexibility-rules.md): the DSO posts a
//! request (`bcte tx contract flex request`, which prints its id) and accepts offers (`... flex
//! accept`), site owners and aggregators offer (`... flex offer`), and anyone lists a feeder's
//! requests with their offers (`bcte market flex`).
//!
//! Exit codes as for every transaction: 0 accepted, 1 the node failed or refused, 2 invalid
//! arguments, 3 rejected by the ledger (the receipt's reason is printed).

use crate::{
    chain_cmds::{TxCommon, chain_of, emit, fail, submit},
    client::Client,
    market_cmds::{QueryArgs, enc, input, resolve_feeder, site_id},
};
use bcte_market::file::{power_from, price_from};
use bcte_node::settle_api::FlexView;
use bcte_types::{
    FeederId, Hash, Interval, NodeId, Payload,
    flex::{FlexAccept, FlexDirection, FlexOffer, FlexRequest, FlexTarget},
    ids::parse_hash,
};
use clap::{Args, Subcommand, ValueEnum};
use std::process::ExitCode;

/// The direction of a request.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Direction {
    /// Less load (or more generation) than the baseline.
    Reduce,
    /// More load (or less generation) than the baseline.
    Increase,
}

/// Which request an offer or an acceptance is for.
#[derive(Args, Debug)]
pub struct RequestArgs {
    /// The feeder (optional when the chain has one).
    #[arg(long)]
    feeder: Option<String>,
    /// The request's id (hex), as `bcte market flex` lists it.
    #[arg(long)]
    request: String,
}

impl RequestArgs {
    fn resolve(&self, client: &Client) -> anyhow::Result<(FeederId, Hash)> {
        let id = parse_hash(&self.request).map_err(|e| input(format!("--request: {e}")))?;
        Ok((resolve_feeder(client, self.feeder.as_deref())?, id))
    }
}

/// `bcte tx contract flex` subcommands.
#[derive(Subcommand, Debug)]
pub enum FlexTxCommand {
    /// Post a flexibility request (DSO); prints its id.
    Request {
        #[command(flatten)]
        common: TxCommon,
        /// The feeder (optional when the chain has one).
        #[arg(long)]
        feeder: Option<String>,
        /// Less or more load than the baseline.
        #[arg(long, value_enum)]
        direction: Direction,
        /// Ask every site at this node of the feeder ...
        #[arg(long, conflicts_with = "sites", required_unless_present = "sites")]
        at_node: Option<String>,
        /// ... or these sites (comma-separated).
        #[arg(long, value_delimiter = ',')]
        sites: Vec<String>,
        /// The power wanted in every interval, kW.
        #[arg(long, allow_hyphen_values = true)]
        kw: f64,
        /// The first interval.
        #[arg(long)]
        from_interval: u64,
        /// The last interval (inclusive).
        #[arg(long)]
        to_interval: u64,
        /// The price paid per MWh delivered, currency/MWh.
        #[arg(long, allow_hyphen_values = true)]
        price: f64,
        /// Offers are taken while this interval's gate is open (at most --from-interval).
        #[arg(long)]
        gate_interval: u64,
        /// Any number, to post the same request again.
        #[arg(long, default_value_t = 0)]
        salt: u64,
    },
    /// Offer flexibility to a request (the sites' owner or their aggregator).
    Offer {
        #[command(flatten)]
        common: TxCommon,
        #[command(flatten)]
        request: RequestArgs,
        /// The sites offering together (comma-separated).
        #[arg(long, value_delimiter = ',', required = true)]
        sites: Vec<String>,
        /// The power offered in every interval of the request, kW.
        #[arg(long, allow_hyphen_values = true)]
        kw: f64,
    },
    /// Accept offers to a request by number (DSO).
    Accept {
        #[command(flatten)]
        common: TxCommon,
        #[command(flatten)]
        request: RequestArgs,
        /// The offers' numbers (comma-separated), as `bcte market flex` lists them.
        #[arg(long, value_delimiter = ',', required = true)]
        offers: Vec<u32>,
    },
}

fn sites_of(list: &[String]) -> anyhow::Result<Vec<bcte_types::SiteId>> {
    let mut sites = list
        .iter()
        .map(|s| site_id(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    sites.sort();
    if sites.windows(2).any(|w| w[0] == w[1]) {
        return Err(input("--sites: a site is named twice"));
    }
    Ok(sites)
}

fn positive_kw(kw: f64) -> anyhow::Result<bcte_types::Watts> {
    let power = power_from(kw).map_err(|e| input(format!("--kw: {e}")))?;
    if power.0 <= 0 {
        return Err(input("--kw: give a positive power"));
    }
    Ok(power)
}

/// Runs `bcte tx contract flex ...`.
pub fn run_tx(cmd: FlexTxCommand, json: bool) -> ExitCode {
    let run = || -> anyhow::Result<ExitCode> {
        match cmd {
            FlexTxCommand::Request {
                common,
                feeder,
                direction,
                at_node,
                sites,
                kw,
                from_interval,
                to_interval,
                price,
                gate_interval,
                salt,
            } => {
                let client = common.client()?;
                let target = match at_node {
                    Some(n) => FlexTarget::Node(
                        NodeId::new(&n).map_err(|e| input(format!("--at-node: {e}")))?,
                    ),
                    None => FlexTarget::Sites(sites_of(&sites)?),
                };
                if to_interval < from_interval {
                    return Err(input(
                        "--to-interval: the last interval comes before the first",
                    ));
                }
                let request = FlexRequest {
                    feeder: resolve_feeder(&client, feeder.as_deref())?,
                    direction: match direction {
                        Direction::Reduce => FlexDirection::Reduce,
                        Direction::Increase => FlexDirection::Increase,
                    },
                    target,
                    power: positive_kw(kw)?,
                    from: Interval(from_interval),
                    to: Interval(to_interval),
                    price: price_from(price).map_err(|e| input(format!("--price: {e}")))?,
                    gate: Interval(gate_interval),
                    salt,
                };
                let id = hex::encode(request.id(&chain_of(&client)?));
                if !json {
                    println!("request: {id}");
                }
                submit(&common, Payload::FlexRequest(request), json)
            }
            FlexTxCommand::Offer {
                common,
                request,
                sites,
                kw,
            } => {
                let (feeder, request) = request.resolve(&common.client()?)?;
                let offer = FlexOffer {
                    feeder,
                    request,
                    sites: sites_of(&sites)?,
                    power: positive_kw(kw)?,
                };
                submit(&common, Payload::FlexOffer(offer), json)
            }
            FlexTxCommand::Accept {
                common,
                request,
                mut offers,
            } => {
                let (feeder, request) = request.resolve(&common.client()?)?;
                offers.sort_unstable();
                offers.dedup();
                let accept = FlexAccept {
                    feeder,
                    request,
                    offers,
                };
                submit(&common, Payload::FlexAccept(accept), json)
            }
        }
    };
    run().unwrap_or_else(|e| fail(&e))
}

/// Prints `bcte market flex`.
pub fn list(q: &QueryArgs, json: bool) -> anyhow::Result<()> {
    let client = q.client()?;
    let feeder = resolve_feeder(&client, q.feeder.as_deref())?;
    let view: FlexView = client.get(&format!("/v1/feeders/{}/flex", enc(feeder.as_str())))?;
    emit(json, &serde_json::to_value(&view)?, || {
        let mut out = format!(
            "{} flexibility requests on feeder {}",
            view.requests.len(),
            view.feeder
        );
        for r in &view.requests {
            let at = match (&r.node, &r.sites) {
                (Some(n), _) => format!("node {n}"),
                (None, Some(s)) => format!("sites {}", s.join(",")),
                (None, None) => String::new(),
            };
            out.push_str(&format!(
                "\n{}: {} {} kW at {}, intervals {} to {}, {} /MWh, offers until interval {}'s \
                 gate; {} kW accepted",
                r.id,
                r.direction,
                r.power_kw,
                at,
                r.from_interval,
                r.to_interval,
                r.price,
                r.gate_interval,
                r.accepted_kw
            ));
            for o in &r.offers {
                out.push_str(&format!(
                    "\n  offer {}: {} kW from {} by {}{}",
                    o.number,
                    o.power_kw,
                    o.sites.join(","),
                    o.by,
                    if o.accepted { " (accepted)" } else { "" }
                ));
            }
        }
        out
    });
    Ok(())
}
