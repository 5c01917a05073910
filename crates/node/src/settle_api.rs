//! The settlement's routes: an interval's readings, its settlement site by site with the
//! market account's totals, and the true-ups and corrections booked in it
//! (docs/settlement-rules.md).
//!
//! Money is in token base units (integers, exact; 1 token = 10⁶ base units), energy in Wh,
//! prices in currency/MWh and power in kW as everywhere in the API.

use crate::{
    api::{ApiError, ApiState, ErrorBody},
    auth::Viewer,
    market_api::{parse_feeder, parse_interval, path, read, schedule_of, site_scope},
    routes::{ReadRule, Route},
};
use axum::{
    Extension, Json,
    extract::{Path, State, rejection::PathRejection},
    http::Method,
    routing::get,
};
use bcte_ledger::{
    StateKey,
    market_state::FeederState,
    settle_state::{
        AdjustBucket, AdjustKind, IntervalSettlement, ReadingBucket, ReadingSource, SettleIndex,
        SettledBucket,
    },
};
use bcte_market::file::{kw, per_mwh};
use bcte_store::Store;
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, sync::Arc};
use utoipa::ToSchema;

/// The settlement's routes.
pub(crate) fn routes<S: Store>() -> Vec<Route<S>> {
    vec![
        Route::new(
            Method::GET,
            "/v1/feeders/{feeder}/intervals/{interval}/settlement",
            ReadRule::Own,
            get(settlement::<S>),
        ),
        Route::new(
            Method::GET,
            "/v1/feeders/{feeder}/contracts",
            ReadRule::Own,
            get(contracts::<S>),
        ),
        Route::new(
            Method::GET,
            "/v1/feeders/{feeder}/flex",
            ReadRule::Redacted,
            get(flex::<S>),
        ),
    ]
}

/// One site's part of an accepted flexibility offer in a settled interval (FX-3).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SiteDeliveryView {
    /// The site.
    pub site: String,
    /// Its baseline, Wh (null: no baseline day, FX-3.1).
    pub baseline_wh: Option<i64>,
    /// Its reading, Wh (null: none when the interval settled).
    pub metered_wh: Option<i64>,
    /// Its delivery in the request's direction, Wh (FX-3.2).
    pub delivered_wh: i64,
    /// Its owner's share of the payment, base units (FX-3.4).
    pub amount: i64,
}

/// An accepted flexibility offer's delivery and payment in a settled interval (FX-3).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FlexFlowView {
    /// The request's id (hex).
    pub request: String,
    /// The offer's number.
    pub offer: u32,
    /// Who offered.
    pub by: String,
    /// The offer's delivery, netted and capped, Wh (FX-3.3).
    pub delivered_wh: i64,
    /// What the market account paid for it, base units.
    pub amount: i64,
    /// Its sites.
    pub sites: Vec<SiteDeliveryView>,
}

/// An offer to a flexibility request (FX-2).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FlexOfferView {
    /// Its number.
    pub number: u32,
    /// Who offered: the sites' owner or their aggregator.
    pub by: String,
    /// The sites.
    pub sites: Vec<String>,
    /// The power offered, kW.
    pub power_kw: f64,
    /// Whether the DSO accepted it.
    pub accepted: bool,
}

/// A flexibility request with its offers (FX-1).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FlexRequestView {
    /// Its id (hex).
    pub id: String,
    /// `reduce` or `increase`.
    pub direction: String,
    /// The node asked, if the request targets a node.
    pub node: Option<String>,
    /// The sites asked, if the request names sites.
    pub sites: Option<Vec<String>>,
    /// The power wanted, kW.
    pub power_kw: f64,
    /// The first interval.
    pub from_interval: u64,
    /// The last interval.
    pub to_interval: u64,
    /// The price paid per MWh delivered, currency/MWh.
    pub price: f64,
    /// Offers are taken while this interval's gate is open.
    pub gate_interval: u64,
    /// The DSO's salt.
    pub salt: u64,
    /// The power accepted so far, kW.
    pub accepted_kw: f64,
    /// The offers, by number.
    pub offers: Vec<FlexOfferView>,
}

/// `GET /v1/feeders/{feeder}/flex`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FlexView {
    /// The feeder.
    pub feeder: String,
    /// Its requests still kept (FX-1.3), by id.
    pub requests: Vec<FlexRequestView>,
}

/// A feeder's flexibility requests and their offers.
#[utoipa::path(
    get,
    path = "/v1/feeders/{feeder}/flex",
    params(("feeder" = String, Path, pattern = r#"^[!"$-.0-~]([ -.0-~]{0,126}[!-.0-~])?$"#, description = "feeder id")),
    responses((status = 200, body = FlexView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody, description = "unknown feeder"))
)]
async fn flex<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Extension(viewer): Extension<Viewer>,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<FlexView>, ApiError> {
    use bcte_types::flex::FlexTarget;
    let f = parse_feeder(&path(p)?)?;
    let h = st.shared.executor.tip().height;
    schedule_of(&st, h, &f)?;
    // The requests are public (anyone may offer); the sites they name and the offers only to
    // whom they concern (AC-6.4).
    let scope = site_scope(&st, h, &viewer, &f)?;
    let table: bcte_ledger::flex::FlexTable =
        read(&st, h, &StateKey::Flex(f.clone()))?.unwrap_or_default();
    let requests = table
        .requests
        .iter()
        .map(|e| {
            let r = &e.request;
            let (node, sites) = match &r.target {
                FlexTarget::Node(n) => (Some(n.to_string()), None),
                FlexTarget::Sites(s) => (
                    None,
                    Some(
                        s.iter()
                            .filter(|s| scope.sees(s))
                            .map(ToString::to_string)
                            .collect(),
                    ),
                ),
            };
            FlexRequestView {
                id: hex::encode(e.id),
                direction: r.direction.as_str().into(),
                node,
                sites,
                power_kw: kw(r.power),
                from_interval: r.from.0,
                to_interval: r.to.0,
                price: per_mwh(r.price),
                gate_interval: r.gate.0,
                salt: r.salt,
                accepted_kw: kw(bcte_types::Watts(e.accepted_power())),
                offers: e
                    .offers
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| viewer.is(&o.by) || o.sites.iter().any(|s| scope.sees(s)))
                    .map(|(i, o)| FlexOfferView {
                        number: i as u32,
                        by: o.by.to_string(),
                        sites: o.sites.iter().map(ToString::to_string).collect(),
                        power_kw: kw(o.power),
                        accepted: o.accepted,
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(Json(FlexView {
        feeder: f.to_string(),
        requests,
    }))
}

/// A contract difference settled in an interval (CT-2.1).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContractFlowView {
    /// The contract's id (hex).
    pub id: String,
    /// The buying site.
    pub buyer: String,
    /// The selling site.
    pub seller: String,
    /// Base units the buyer's owner paid the seller's (negative: the other way).
    pub amount: i64,
}

/// A peer-to-peer contract (CT-1).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContractView {
    /// Its id (hex): `SHA-256(chain_id ‖ terms)`.
    pub id: String,
    /// The selling site.
    pub seller: String,
    /// The buying site.
    pub buyer: String,
    /// The contracted power, kW.
    pub power_kw: f64,
    /// The fixed price, currency/MWh.
    pub price: f64,
    /// The first interval.
    pub from_interval: u64,
    /// The last interval signed for.
    pub to_interval: u64,
    /// The last interval still under contract (earlier than `to_interval` after a cancellation).
    pub until_interval: u64,
    /// The parties' salt.
    pub salt: u64,
}

/// One option of an EV charging contract (CT-3.1).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EvOptionView {
    /// Its charging power, kW.
    pub power_kw: f64,
    /// Its price, currency/MWh.
    pub price: f64,
}

impl From<bcte_types::contract::EvOption> for EvOptionView {
    fn from(o: bcte_types::contract::EvOption) -> Self {
        Self {
            power_kw: kw(o.power),
            price: per_mwh(o.price),
        }
    }
}

/// An EV charging contract and its progress (CT-3, CT-4.1).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EvContractView {
    /// Its id (hex): `SHA-256("bcte/ev-contract/v1" ‖ chain_id ‖ terms)`.
    pub id: String,
    /// The charger.
    pub site: String,
    /// The charger's owner.
    pub owner: String,
    /// The charging provider.
    pub provider: String,
    /// The energy contracted, Wh.
    pub energy_wh: i64,
    /// The first interval.
    pub from_interval: u64,
    /// The deadline: the last interval whose energy counts.
    pub deadline_interval: u64,
    /// `slow` or `fast`.
    pub choice: String,
    /// The slow option.
    pub slow: EvOptionView,
    /// The fast option.
    pub fast: EvOptionView,
    /// The parties' salt.
    pub salt: u64,
    /// Scheduled so far in the contract's cleared intervals, Wh.
    pub scheduled_wh: i64,
    /// Delivered in its settled intervals (metered, or scheduled where estimated), Wh.
    pub delivered_wh: i64,
    /// Still to bid for at the next clearing, Wh (CT-3.4).
    pub remaining_wh: i64,
    /// What the market charged the owner for the charger in the settled intervals, base units.
    pub market_charges: i64,
}

/// An EV charging contract settled at its deadline (CT-4.2).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EvFlowView {
    /// The contract's id (hex).
    pub id: String,
    /// The charger.
    pub site: String,
    /// The charging provider.
    pub provider: String,
    /// The energy delivered over the contract, Wh.
    pub delivered_wh: i64,
    /// The energy contracted but not delivered, Wh (not charged, CT-4.3).
    pub shortfall_wh: i64,
    /// The chosen option's price, currency/MWh.
    pub price: f64,
    /// The delivered energy at that price, base units.
    pub charge: i64,
    /// What the market charged the owner for the charger over the contract, base units.
    pub market_charges: i64,
    /// `charge − market_charges`: what the owner paid the provider, base units (negative:
    /// the provider paid the owner).
    pub difference: i64,
}

impl From<&bcte_ledger::ev::EvFlow> for EvFlowView {
    fn from(x: &bcte_ledger::ev::EvFlow) -> Self {
        Self {
            id: hex::encode(x.id),
            site: x.site.to_string(),
            provider: x.provider.to_string(),
            delivered_wh: x.delivered_wh,
            shortfall_wh: x.shortfall_wh,
            price: per_mwh(x.price),
            charge: x.charge,
            market_charges: x.market_charges,
            difference: x.difference,
        }
    }
}

/// `GET /v1/feeders/{feeder}/contracts`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ContractsView {
    /// The feeder.
    pub feeder: String,
    /// Its peer-to-peer contracts not yet wholly settled, by id.
    pub contracts: Vec<ContractView>,
    /// Its EV charging contracts whose deadline is not settled yet, by id.
    pub ev: Vec<EvContractView>,
}

/// A feeder's peer-to-peer and EV charging contracts.
#[utoipa::path(
    get,
    path = "/v1/feeders/{feeder}/contracts",
    params(("feeder" = String, Path, pattern = r#"^[!"$-.0-~]([ -.0-~]{0,126}[!-.0-~])?$"#, description = "feeder id")),
    responses((status = 200, body = ContractsView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody, description = "unknown feeder"))
)]
async fn contracts<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Extension(viewer): Extension<Viewer>,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<ContractsView>, ApiError> {
    let f = parse_feeder(&path(p)?)?;
    let h = st.shared.executor.tip().height;
    let s = schedule_of(&st, h, &f)?;
    // A contract is its parties' (their sites' owners and aggregators) and an EV contract its
    // provider's too (AC-6.3).
    let scope = site_scope(&st, h, &viewer, &f)?;
    let table: bcte_ledger::contract::ContractTable =
        read(&st, h, &StateKey::Contracts(f.clone()))?.unwrap_or_default();
    let sites: bcte_ledger::market_state::SiteTable = if table.ev.is_empty() {
        Default::default()
    } else {
        read(&st, h, &StateKey::Sites(f.clone()))?.unwrap_or_default()
    };
    Ok(Json(ContractsView {
        feeder: f.to_string(),
        contracts: table
            .contracts
            .iter()
            .filter(|c| c.until >= s.next_settle)
            .filter(|c| scope.sees(&c.terms.seller) || scope.sees(&c.terms.buyer))
            .map(|c| ContractView {
                id: hex::encode(c.id),
                seller: c.terms.seller.to_string(),
                buyer: c.terms.buyer.to_string(),
                power_kw: kw(c.terms.power),
                price: per_mwh(c.terms.price),
                from_interval: c.terms.from.0,
                to_interval: c.terms.to.0,
                until_interval: c.until.0,
                salt: c.terms.salt,
            })
            .collect(),
        ev: table
            .ev
            .iter()
            .filter(|e| e.terms.deadline >= s.next_settle)
            .filter(|e| scope.sees(&e.terms.site) || viewer.is(&e.terms.provider))
            .map(|e| EvContractView {
                id: hex::encode(e.id),
                site: e.terms.site.to_string(),
                owner: sites
                    .sites
                    .iter()
                    .find(|x| x.id == e.terms.site)
                    .map_or_else(String::new, |x| x.owner.to_string()),
                provider: e.terms.provider.to_string(),
                energy_wh: e.terms.energy_wh,
                from_interval: e.terms.from.0,
                deadline_interval: e.terms.deadline.0,
                choice: e.terms.choice.as_str().to_owned(),
                slow: e.terms.slow.into(),
                fast: e.terms.fast.into(),
                salt: e.terms.salt,
                scheduled_wh: e.cleared_wh,
                delivered_wh: e.delivered_wh,
                remaining_wh: e.remaining_wh(),
                market_charges: e.market_charges,
            })
            .collect(),
    }))
}

/// One site's settlement of an interval (ST-2.2 to ST-2.4).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SiteSettlementView {
    /// Its served power, kW.
    pub served_kw: f64,
    /// Its node's price, currency/MWh.
    pub price: f64,
    /// Its scheduled energy, Wh.
    pub scheduled_wh: i64,
    /// Its metered energy, Wh (absent: estimated).
    pub metered_wh: Option<i64>,
    /// Metered less scheduled, Wh (0 when estimated).
    pub deviation_wh: i64,
    /// Base units (positive: the owner pays).
    pub energy_charge: i64,
    /// Base units (positive: the owner pays).
    pub imbalance_charge: i64,
    /// Energy plus imbalance charge, base units.
    pub total: i64,
    /// Settled on its schedule for want of a reading (ST-3.1).
    pub estimated: bool,
}

/// A site's reading of the interval.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReadingView {
    /// Wh (positive consumed, negative fed in).
    pub wh: i64,
    /// `meter` (a transaction the meter signed) or `batch` (a head-end batch).
    pub source: String,
    /// The batch's root (hex), for a reading from a batch.
    pub batch_root: Option<String>,
    /// It came after the interval settled: a true-up (ST-3.2).
    pub late: bool,
}

/// A true-up or correction booked in the interval.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AdjustmentView {
    /// The site.
    pub site: String,
    /// The settled interval it concerns.
    pub of_interval: u64,
    /// Base units (positive: the owner pays).
    pub amount: i64,
    /// `true_up` or `correction`.
    pub kind: String,
    /// A true-up's reading, Wh.
    pub metered_wh: Option<i64>,
    /// A true-up's deviation from the schedule, Wh.
    pub deviation_wh: Option<i64>,
    /// A correction's reason.
    pub memo: Option<String>,
}

/// The market account's totals of a settled interval (ST-2.7).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SettlementTotals {
    /// The block that settled it.
    pub height: u64,
    /// Sites settled.
    pub sites: u32,
    /// Of them, estimated.
    pub estimated: u32,
    /// Sum of the energy charges, base units.
    pub energy_charges: i64,
    /// Sum of the imbalance charges, base units.
    pub imbalance_charges: i64,
    /// The upstream exchange's energy, Wh (positive: the feeder exported).
    pub upstream_wh: i64,
    /// What the upstream account paid the market account, base units (negative: was paid).
    pub upstream_charge: i64,
    /// The congestion rent, base units.
    pub congestion_rent: i64,
    /// The rounding residue, base units (the market account's).
    pub residue: i64,
    /// What the market account took in net: energy and imbalance charges and the upstream
    /// charge, less the flexibility it paid, base units.
    pub market_net: i64,
    /// The market account.
    pub market_account: String,
    /// The upstream account.
    pub upstream_account: String,
    /// The contract differences settled in the interval (CT-2.1).
    pub contracts: Vec<ContractFlowView>,
    /// The flexibility delivered and paid in the interval (FX-3), by request and offer.
    pub flexibility: Vec<FlexFlowView>,
    /// What the market account paid for flexibility in all, base units.
    pub flexibility_paid: i64,
    /// The EV charging contracts whose deadline the interval was (CT-4.2), by id.
    pub ev: Vec<EvFlowView>,
}

/// `GET /v1/feeders/{feeder}/intervals/{interval}/settlement`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SettlementView {
    /// The feeder.
    pub feeder: String,
    /// The interval.
    pub interval: u64,
    /// `not_cleared`, `open` (cleared, not settled yet) or `settled`.
    pub status: String,
    /// When the interval ends (readings open), market time ms.
    pub end_ms: Option<u64>,
    /// Its settlement deadline, market time ms.
    pub deadline_ms: Option<u64>,
    /// The last market time a reading is accepted, ms.
    pub readings_until_ms: Option<u64>,
    /// Metered sites with a result still without a reading (before settlement).
    pub missing_readings: Option<u32>,
    /// The imbalance penalty it settles with, currency/MWh.
    pub imbalance_penalty: Option<f64>,
    /// The roots of its head-end batches, hex.
    pub batches: Vec<String>,
    /// The readings so far, by site.
    pub readings: BTreeMap<String, ReadingView>,
    /// Once settled: each site's settlement.
    pub sites: BTreeMap<String, SiteSettlementView>,
    /// Once settled: the totals.
    pub totals: Option<SettlementTotals>,
    /// True-ups and corrections booked in this interval.
    pub adjustments: Vec<AdjustmentView>,
}

/// An interval's readings and settlement, and the adjustments booked in it.
#[utoipa::path(
    get,
    path = "/v1/feeders/{feeder}/intervals/{interval}/settlement",
    params(("feeder" = String, Path, pattern = r#"^[!"$-.0-~]([ -.0-~]{0,126}[!-.0-~])?$"#, description = "feeder id: 1 to 128 printable ASCII characters, no `/`, not starting with `#` or a space, not ending with a space"), ("interval" = u64, Path, minimum = 0, description = "interval number")),
    responses((status = 200, body = SettlementView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody, description = "unknown feeder, an interval not cleared with nothing booked in it, or one past its retention"))
)]
async fn settlement<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Extension(viewer): Extension<Viewer>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<SettlementView>, ApiError> {
    let (f, k) = path(p)?;
    let (f, k) = (parse_feeder(&f)?, parse_interval(&k)?);
    let tip = st.shared.executor.tip();
    let h = tip.height;
    let s = schedule_of(&st, h, &f)?;
    // Each site's reading, settlement and adjustments are its owner's and aggregator's; the
    // market account's totals the operator's (AC-6.3).
    let scope = site_scope(&st, h, &viewer, &f)?;
    let idx: Option<SettleIndex> = read(&st, h, &StateKey::Settling(f.clone(), k))?;
    if idx.is_none() {
        return Err(ApiError::not_found(if k < s.next_clear {
            format!("interval {k}'s settlement has left the current state (retention)")
        } else {
            format!(
                "interval {k} is not cleared yet (its gate closes at market time {} ms) and \
                 nothing is booked in it",
                s.gate_ms(k)
            )
        }));
    }
    let cleared = k < s.next_clear;
    let status = match (cleared, k < s.next_settle) {
        (false, _) => "not_cleared",
        (true, false) => "open",
        (true, true) => "settled",
    };
    let mut view = SettlementView {
        feeder: f.to_string(),
        interval: k.0,
        status: status.to_owned(),
        end_ms: None,
        deadline_ms: None,
        readings_until_ms: None,
        missing_readings: None,
        imbalance_penalty: None,
        batches: Vec::new(),
        readings: BTreeMap::new(),
        sites: BTreeMap::new(),
        totals: None,
        adjustments: Vec::new(),
    };
    let Some(idx) = idx else {
        return Ok(Json(view));
    };
    if cleared {
        view.end_ms = Some(idx.end_ms);
        view.deadline_ms = Some(idx.deadline_ms);
        view.readings_until_ms = Some(idx.readings_until_ms);
        view.missing_readings = (status == "open").then_some(idx.missing);
        view.imbalance_penalty = Some(per_mwh(idx.imbalance_penalty));
    }
    view.batches = idx.batches.iter().map(hex::encode).collect();
    for b in idx.readings.iter() {
        let bucket: Option<ReadingBucket> = read(&st, h, &StateKey::Readings(f.clone(), k, b))?;
        for r in bucket.map(|b| b.readings).unwrap_or_default() {
            if !scope.sees(&r.site) {
                continue;
            }
            let (source, batch_root) = match r.source {
                ReadingSource::Meter => ("meter", None),
                ReadingSource::Batch(i) => {
                    ("batch", idx.batches.get(usize::from(i)).map(hex::encode))
                }
            };
            view.readings.insert(
                r.site.to_string(),
                ReadingView {
                    wh: r.wh.0,
                    source: source.to_owned(),
                    batch_root,
                    late: r.late,
                },
            );
        }
    }
    for b in idx.settled.iter() {
        let bucket: Option<SettledBucket> = read(&st, h, &StateKey::Settled(f.clone(), k, b))?;
        for (site, x) in bucket.map(|b| b.sites).unwrap_or_default() {
            if !scope.sees(&site) {
                continue;
            }
            view.sites.insert(
                site.to_string(),
                SiteSettlementView {
                    served_kw: kw(x.served),
                    price: per_mwh(x.price),
                    scheduled_wh: x.scheduled_wh,
                    metered_wh: x.metered_wh,
                    deviation_wh: x.deviation_wh,
                    energy_charge: x.energy_charge,
                    imbalance_charge: x.imbalance_charge,
                    total: x.total(),
                    estimated: x.estimated(),
                },
            );
        }
    }
    for b in idx.adjustments.iter() {
        let bucket: Option<AdjustBucket> = read(&st, h, &StateKey::Adjustments(f.clone(), k, b))?;
        for a in bucket.map(|b| b.items).unwrap_or_default() {
            if !scope.sees(&a.site) {
                continue;
            }
            let (kind, metered_wh, deviation_wh, memo) = match a.kind {
                AdjustKind::TrueUp {
                    metered_wh,
                    deviation_wh,
                } => ("true_up", Some(metered_wh), Some(deviation_wh), None),
                AdjustKind::Correction { memo } => ("correction", None, None, Some(memo)),
            };
            view.adjustments.push(AdjustmentView {
                site: a.site.to_string(),
                of_interval: a.of.0,
                amount: a.amount,
                kind: kind.to_owned(),
                metered_wh,
                deviation_wh,
                memo,
            });
        }
    }
    if !scope.is_all() {
        return Ok(Json(view));
    }
    if let Some(t) = read::<S, IntervalSettlement>(&st, h, &StateKey::Settlement(f.clone(), k))? {
        let feeder: FeederState = read(&st, h, &StateKey::Feeder(f.clone()))?
            .ok_or_else(|| ApiError::internal("a feeder without nodes"))?;
        view.totals = Some(SettlementTotals {
            height: t.height,
            sites: t.sites,
            estimated: t.estimated,
            energy_charges: t.energy_charges,
            imbalance_charges: t.imbalance_charges,
            upstream_wh: t.upstream_wh,
            upstream_charge: t.upstream_charge,
            congestion_rent: t.congestion_rent,
            residue: t.residue,
            market_net: t
                .energy_charges
                .saturating_add(t.imbalance_charges)
                .saturating_add(t.upstream_charge)
                .saturating_sub(t.flexibility_paid()),
            market_account: feeder.market_account.to_string(),
            upstream_account: feeder.upstream_account.to_string(),
            contracts: t
                .contracts
                .iter()
                .map(|c| ContractFlowView {
                    id: hex::encode(c.id),
                    buyer: c.buyer.to_string(),
                    seller: c.seller.to_string(),
                    amount: c.amount,
                })
                .collect(),
            flexibility_paid: t.flexibility_paid(),
            ev: t.ev.iter().map(EvFlowView::from).collect(),
            flexibility: t
                .flexibility
                .iter()
                .map(|x| FlexFlowView {
                    request: hex::encode(x.request),
                    offer: x.offer,
                    by: x.by.to_string(),
                    delivered_wh: x.delivered_wh,
                    amount: x.amount,
                    sites: x
                        .sites
                        .iter()
                        .map(|d| SiteDeliveryView {
                            site: d.site.to_string(),
                            baseline_wh: d.baseline_wh,
                            metered_wh: d.metered_wh,
                            delivered_wh: d.delivered_wh,
                            amount: d.amount,
                        })
                        .collect(),
                })
                .collect(),
        });
    }
    Ok(Json(view))
}

/// The settlement's part of the OpenAPI description.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(settlement, contracts, flex),
    components(schemas(
        ContractFlowView,
        FlexFlowView,
        SiteDeliveryView,
        FlexOfferView,
        FlexRequestView,
        FlexView,
        ContractView,
        EvOptionView,
        EvContractView,
        EvFlowView,
        ContractsView,
        SettlementView,
        SiteSettlementView,
        ReadingView,
        AdjustmentView,
        SettlementTotals
    ))
)]
pub struct SettleDoc;
