//! Peer-to-peer and EV charging contracts from the command line (docs/contract-rules.md): the
//! other party signs its consent (`bcte contract consent p2p|ev|cancel`, which prints the
//! signature and the contract's id), the first party submits the contract with it (`bcte tx
//! contract p2p|ev|cancel --consent HEX`), and anyone lists a feeder's contracts (`bcte market
//! contracts`).
//!
//! Exit codes as for every transaction: 0 accepted, 1 the node failed or refused, 2 invalid
//! arguments, 3 rejected by the ledger (the receipt's reason is printed).

use crate::{
    chain_cmds::{DEFAULT_NODE, TxCommon, chain_of, emit, fail, submit},
    client::Client,
    market_cmds::{QueryArgs, enc, input, resolve_feeder, site_id},
};
use bcte_market::file::{power_from, price_from};
use bcte_node::{files, settle_api::ContractsView};
use bcte_types::{
    AccountId, Hash, Interval, Payload,
    batch::parse_signature,
    contract::{ContractCancel, ContractEv, ContractP2p, EvChoice, EvOption, EvTerms, P2pTerms},
    ids::parse_hash,
};
use clap::{Args, Subcommand};
use commonware_codec::Encode;
use std::{path::PathBuf, process::ExitCode};

/// The terms of a contract, as both parties give them.
#[derive(Args, Debug, Clone)]
pub struct TermsArgs {
    /// The feeder (optional when the chain has one).
    #[arg(long)]
    feeder: Option<String>,
    /// The selling site.
    #[arg(long)]
    seller_site: String,
    /// The buying site.
    #[arg(long)]
    buyer_site: String,
    /// The contracted power in every interval, kW (positive).
    #[arg(long, allow_hyphen_values = true)]
    kw: f64,
    /// The first interval.
    #[arg(long)]
    from_interval: u64,
    /// The last interval (inclusive).
    #[arg(long)]
    to_interval: u64,
    /// The fixed price, currency/MWh.
    #[arg(long, allow_hyphen_values = true)]
    price: f64,
    /// Any number both parties agree on, to make the same terms a new contract.
    #[arg(long, default_value_t = 0)]
    salt: u64,
}

impl TermsArgs {
    fn terms(&self, client: &Client) -> anyhow::Result<P2pTerms> {
        let power = power_from(self.kw).map_err(|e| input(format!("--kw: {e}")))?;
        if power.0 <= 0 {
            return Err(input("--kw: contract a positive power"));
        }
        if self.to_interval < self.from_interval {
            return Err(input(
                "--to-interval: the last interval comes before the first",
            ));
        }
        Ok(P2pTerms {
            feeder: resolve_feeder(client, self.feeder.as_deref())?,
            seller: site_id(&self.seller_site)?,
            buyer: site_id(&self.buyer_site)?,
            power,
            from: Interval(self.from_interval),
            to: Interval(self.to_interval),
            price: price_from(self.price).map_err(|e| input(format!("--price: {e}")))?,
            salt: self.salt,
        })
    }
}

/// The slow or fast option of an EV charging contract.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum ChoiceArg {
    /// The slow option.
    Slow,
    /// The fast option.
    Fast,
}

/// The terms of an EV charging contract, as both parties give them (CT-3.1).
#[derive(Args, Debug, Clone)]
pub struct EvTermsArgs {
    /// The feeder (optional when the chain has one).
    #[arg(long)]
    feeder: Option<String>,
    /// The charger: a metered site of the driver's.
    #[arg(long)]
    site: String,
    /// The charging provider's ACCOUNT.
    #[arg(long, value_name = "ACCOUNT")]
    provider: AccountId,
    /// The energy to deliver by the deadline, kWh (positive, to 1 Wh).
    #[arg(long, allow_hyphen_values = true)]
    kwh: f64,
    /// The first interval.
    #[arg(long)]
    from_interval: u64,
    /// The deadline: the last interval whose energy counts (inclusive).
    #[arg(long)]
    deadline_interval: u64,
    /// The slow option's power, kW.
    #[arg(long, allow_hyphen_values = true)]
    slow_kw: f64,
    /// The slow option's price, currency/MWh.
    #[arg(long, allow_hyphen_values = true)]
    slow_price: f64,
    /// The fast option's power, kW (more than the slow one's).
    #[arg(long, allow_hyphen_values = true)]
    fast_kw: f64,
    /// The fast option's price, currency/MWh.
    #[arg(long, allow_hyphen_values = true)]
    fast_price: f64,
    /// The option chosen.
    #[arg(long, value_enum)]
    choice: ChoiceArg,
    /// Any number both parties agree on, to make the same terms a new contract.
    #[arg(long, default_value_t = 0)]
    salt: u64,
}

impl EvTermsArgs {
    fn terms(&self, client: &Client) -> anyhow::Result<EvTerms> {
        let option = |name: &str, kw: f64, price: f64| -> anyhow::Result<EvOption> {
            let power = power_from(kw).map_err(|e| input(format!("--{name}-kw: {e}")))?;
            if power.0 <= 0 {
                return Err(input(format!("--{name}-kw: give a positive power")));
            }
            let price = price_from(price).map_err(|e| input(format!("--{name}-price: {e}")))?;
            Ok(EvOption { power, price })
        };
        let energy_wh = power_from(self.kwh)
            .map_err(|_| {
                input(format!(
                    "--kwh: {} is not an energy in kWh within range",
                    self.kwh
                ))
            })?
            .0;
        if energy_wh <= 0 {
            return Err(input("--kwh: contract a positive energy"));
        }
        if self.deadline_interval < self.from_interval {
            return Err(input(
                "--deadline-interval: the deadline comes before the first interval",
            ));
        }
        Ok(EvTerms {
            feeder: resolve_feeder(client, self.feeder.as_deref())?,
            site: site_id(&self.site)?,
            provider: self.provider,
            energy_wh,
            from: Interval(self.from_interval),
            deadline: Interval(self.deadline_interval),
            slow: option("slow", self.slow_kw, self.slow_price)?,
            fast: option("fast", self.fast_kw, self.fast_price)?,
            choice: match self.choice {
                ChoiceArg::Slow => EvChoice::Slow,
                ChoiceArg::Fast => EvChoice::Fast,
            },
            salt: self.salt,
        })
    }
}

/// Which contract to cancel, from when.
#[derive(Args, Debug, Clone)]
pub struct CancelArgs {
    /// The feeder (optional when the chain has one).
    #[arg(long)]
    feeder: Option<String>,
    /// The contract's id (hex).
    #[arg(long)]
    id: String,
    /// The first interval no longer under contract.
    #[arg(long)]
    from_interval: u64,
}

impl CancelArgs {
    fn resolve(&self, client: &Client) -> anyhow::Result<(bcte_types::FeederId, Hash, Interval)> {
        Ok((
            resolve_feeder(client, self.feeder.as_deref())?,
            contract_id(&self.id)?,
            Interval(self.from_interval),
        ))
    }
}

/// `bcte tx contract` subcommands.
#[derive(Subcommand, Debug)]
pub enum ContractTxCommand {
    /// Enter a P2P contract (one party), with the other party's consent.
    P2p {
        #[command(flatten)]
        common: TxCommon,
        #[command(flatten)]
        terms: TermsArgs,
        /// The other party's consent (`bcte contract consent p2p`), hex.
        #[arg(long, value_name = "HEX")]
        consent: String,
    },
    /// Enter an EV charging contract (the charger's owner or the provider), with the other
    /// party's consent.
    Ev {
        #[command(flatten)]
        common: TxCommon,
        #[command(flatten)]
        terms: EvTermsArgs,
        /// The other party's consent (`bcte contract consent ev`), hex.
        #[arg(long, value_name = "HEX")]
        consent: String,
    },
    /// Cancel a P2P contract from a future interval on (one party), with the other's consent.
    Cancel {
        #[command(flatten)]
        common: TxCommon,
        #[command(flatten)]
        cancel: CancelArgs,
        /// The other party's consent (`bcte contract consent cancel`), hex.
        #[arg(long, value_name = "HEX")]
        consent: String,
    },
    /// DSO flexibility requests: request and accept (DSO), offer (owners, aggregators).
    #[command(subcommand)]
    Flex(crate::flex_cmds::FlexTxCommand),
}

/// `bcte contract` subcommands (signing offline what the other party submits).
#[derive(Subcommand, Debug)]
pub enum ContractCommand {
    /// Sign your consent to a contract's terms; prints the signature and the contract's id.
    Consent {
        #[command(subcommand)]
        what: ConsentCommand,
    },
}

/// What to consent to.
#[derive(Subcommand, Debug)]
pub enum ConsentCommand {
    /// A contract's terms.
    P2p {
        /// Your key file (you are the party that does not submit).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[command(flatten)]
        terms: TermsArgs,
        /// The node's API URL (for the chain id and the feeder).
        #[arg(long, value_name = "URL", default_value = DEFAULT_NODE, env = "BCTE_NODE")]
        node: String,
    },
    /// An EV charging contract's terms.
    Ev {
        /// Your key file (you are the party that does not submit).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[command(flatten)]
        terms: EvTermsArgs,
        /// The node's API URL (for the chain id and the feeder).
        #[arg(long, value_name = "URL", default_value = DEFAULT_NODE, env = "BCTE_NODE")]
        node: String,
    },
    /// Cancelling a contract from an interval on.
    Cancel {
        /// Your key file.
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[command(flatten)]
        cancel: CancelArgs,
        /// The node's API URL.
        #[arg(long, value_name = "URL", default_value = DEFAULT_NODE, env = "BCTE_NODE")]
        node: String,
    },
}

fn contract_id(s: &str) -> anyhow::Result<Hash> {
    parse_hash(s).map_err(|e| input(format!("--id: {e}")))
}

fn consent_arg(s: &str) -> anyhow::Result<commonware_cryptography::ed25519::Signature> {
    parse_signature(s).map_err(|e| input(format!("--consent: {e}")))
}

/// Runs `bcte tx contract ...`.
pub fn run_tx(cmd: ContractTxCommand, json: bool) -> ExitCode {
    let run = || -> anyhow::Result<ExitCode> {
        match cmd {
            ContractTxCommand::Flex(cmd) => Ok(crate::flex_cmds::run_tx(cmd, json)),
            ContractTxCommand::P2p {
                common,
                terms,
                consent,
            } => {
                let consent = consent_arg(&consent)?;
                let terms = terms.terms(&common.client()?)?;
                submit(
                    &common,
                    Payload::ContractP2p(ContractP2p { terms, consent }),
                    json,
                )
            }
            ContractTxCommand::Ev {
                common,
                terms,
                consent,
            } => {
                let consent = consent_arg(&consent)?;
                let terms = terms.terms(&common.client()?)?;
                submit(
                    &common,
                    Payload::ContractEv(ContractEv { terms, consent }),
                    json,
                )
            }
            ContractTxCommand::Cancel {
                common,
                cancel,
                consent,
            } => {
                let consent = consent_arg(&consent)?;
                let (feeder, id, from) = cancel.resolve(&common.client()?)?;
                submit(
                    &common,
                    Payload::ContractCancel(ContractCancel {
                        feeder,
                        id,
                        from,
                        consent,
                    }),
                    json,
                )
            }
        }
    };
    run().unwrap_or_else(|e| fail(&e))
}

/// Runs `bcte contract ...`.
pub fn run(cmd: ContractCommand, json: bool) -> ExitCode {
    let run = || -> anyhow::Result<()> {
        let ContractCommand::Consent { what } = cmd;
        let (value, text) = match what {
            ConsentCommand::P2p { key, terms, node } => {
                let key = files::read_key(&key)?;
                let client = Client::new(&node).with_key(key.clone());
                let chain = chain_of(&client)?;
                let terms = terms.terms(&client)?;
                let consent = hex::encode(terms.sign(&chain, &key).encode());
                let id = hex::encode(terms.id(&chain));
                (
                    serde_json::json!({ "consent": consent, "id": id }),
                    format!("consent: {consent}\nid:      {id}"),
                )
            }
            ConsentCommand::Ev { key, terms, node } => {
                let key = files::read_key(&key)?;
                let client = Client::new(&node).with_key(key.clone());
                let chain = chain_of(&client)?;
                let terms = terms.terms(&client)?;
                let consent = hex::encode(terms.sign(&chain, &key).encode());
                let id = hex::encode(terms.id(&chain));
                (
                    serde_json::json!({ "consent": consent, "id": id }),
                    format!("consent: {consent}\nid:      {id}"),
                )
            }
            ConsentCommand::Cancel { key, cancel, node } => {
                let key = files::read_key(&key)?;
                let client = Client::new(&node).with_key(key.clone());
                let chain = chain_of(&client)?;
                let (feeder, id, from) = cancel.resolve(&client)?;
                let consent =
                    hex::encode(ContractCancel::sign(&chain, &feeder, &id, from, &key).encode());
                (
                    serde_json::json!({ "consent": consent, "id": hex::encode(id) }),
                    format!("consent: {consent}"),
                )
            }
        };
        emit(json, &value, || text);
        Ok(())
    };
    run().map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS)
}

/// Prints `bcte market contracts`.
pub fn list(q: &QueryArgs, json: bool) -> anyhow::Result<()> {
    let client = q.client()?;
    let feeder = resolve_feeder(&client, q.feeder.as_deref())?;
    let view: ContractsView =
        client.get(&format!("/v1/feeders/{}/contracts", enc(feeder.as_str())))?;
    emit(json, &serde_json::to_value(&view)?, || {
        let mut out = format!(
            "{} contracts on feeder {}",
            view.contracts.len(),
            view.feeder
        );
        for c in &view.contracts {
            out.push_str(&format!(
                "\n{}: {} sells {} {} kW at {} /MWh, intervals {} to {}{}",
                c.id,
                c.seller,
                c.buyer,
                c.power_kw,
                c.price,
                c.from_interval,
                c.until_interval,
                if c.until_interval < c.to_interval {
                    format!(" (cancelled from {})", c.until_interval + 1)
                } else {
                    String::new()
                }
            ));
        }
        out.push_str(&format!("\n{} EV charging contracts", view.ev.len()));
        for e in &view.ev {
            let chosen = if e.choice == "fast" { &e.fast } else { &e.slow };
            out.push_str(&format!(
                "\n{}: {} kWh to {} by interval {} (from {}), {} {} kW at {} /MWh, provider {}; \
                 scheduled {} Wh, delivered {} Wh, {} Wh to go",
                e.id,
                e.energy_wh as f64 / 1_000.0,
                e.site,
                e.deadline_interval,
                e.from_interval,
                e.choice,
                chosen.power_kw,
                chosen.price,
                e.provider,
                e.scheduled_wh,
                e.delivered_wh,
                e.remaining_wh.max(0),
            ));
        }
        out
    });
    Ok(())
}
