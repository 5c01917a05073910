//! Billing statements (docs/billing-rules.md): per participant and site, and per aggregator's
//! portfolio, over a billing period of settled intervals, in base units and in currency; what
//! `bcte export billing` writes for a legacy billing system.

use crate::{
    api::{ApiError, ApiState, ErrorBody},
    auth::Viewer,
    market_api::{parse_feeder, path, read, schedule_of, site_scope},
    routes::{ReadRule, Route},
};
use axum::{
    Extension, Json,
    extract::{Path, Query, State, rejection::PathRejection, rejection::QueryRejection},
    http::Method,
    routing::get,
};
use bcte_ledger::{
    StateKey,
    billing::{Bill, netted_imbalance},
    market_state::{SiteState, SiteTable},
    settle_state::{AdjustBucket, SettleIndex, SettledBucket},
};
use bcte_store::Store;
use bcte_types::{AccountId, Interval, Price, SiteId};
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, sync::Arc};
use utoipa::ToSchema;

/// The longest billing period, in intervals (31 days of 15-minute intervals).
pub const PERIOD_INTERVALS_MAX: u64 = 31 * 96;

/// The billing routes.
pub(crate) fn routes<S: Store>() -> Vec<Route<S>> {
    vec![Route::new(
        Method::GET,
        "/v1/feeders/{feeder}/billing",
        ReadRule::Own,
        get(billing::<S>),
    )]
}

/// The largest interval a billing period may name: `i64::MAX`, the top of the int64 format
/// the API's schema gives intervals.
pub const INTERVAL_QUERY_MAX: u64 = i64::MAX as u64;

/// The billing period (both ends inclusive).
#[derive(Debug, Deserialize)]
pub struct PeriodQuery {
    /// The first interval of the period.
    pub from_interval: u64,
    /// The last interval of the period (inclusive).
    pub to_interval: u64,
}

/// A bill in base units and currency (BL-2).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BillView {
    /// Settled intervals counted.
    pub intervals: u32,
    /// Of them, estimated (no reading at settlement).
    pub estimated: u32,
    /// Energy taken, Wh.
    pub wh_bought: i64,
    /// Energy fed in, Wh.
    pub wh_sold: i64,
    /// Base units (positive: the participant pays).
    pub energy_charge: i64,
    /// Base units.
    pub imbalance_charge: i64,
    /// True-ups and corrections booked in the period, base units.
    pub adjustments: i64,
    /// Contract differences, base units.
    pub contracts: i64,
    /// Flexibility payments, base units (negative: paid to the participant).
    pub flexibility: i64,
    /// The sum, base units.
    pub total: i64,
    /// The total in currency (6 decimals).
    pub total_currency: String,
    /// Deviation from the schedules, Wh.
    pub deviation_wh: i64,
}

impl From<&Bill> for BillView {
    fn from(b: &Bill) -> Self {
        Self {
            intervals: b.intervals,
            estimated: b.estimated,
            wh_bought: b.wh_bought,
            wh_sold: b.wh_sold,
            energy_charge: b.energy_charge,
            imbalance_charge: b.imbalance_charge,
            adjustments: b.adjustments,
            contracts: b.contracts,
            flexibility: b.flexibility,
            total: b.total(),
            total_currency: currency(b.total()),
            deviation_wh: b.deviation_wh,
        }
    }
}

/// Base units as currency with six decimals.
pub fn currency(base: i64) -> String {
    let sign = if base < 0 { "-" } else { "" };
    let b = base.unsigned_abs();
    format!("{sign}{}.{:06}", b / 1_000_000, b % 1_000_000)
}

/// A participant's statement (BL-3).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatementView {
    /// The participant (the sites' owner).
    pub participant: String,
    /// Its sites' bills.
    pub sites: BTreeMap<String, BillView>,
    /// The sum over its sites.
    pub total: BillView,
}

/// A charging provider's statement: what its EV charging contracts settled in the period
/// (BL-2.5).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ProviderStatementView {
    /// The provider.
    pub provider: String,
    /// Per charger, the contracts' differences with the provider's sign (negative: the
    /// provider was paid); only `contracts` and `total` are not zero.
    pub chargers: BTreeMap<String, BillView>,
    /// The sum over its chargers.
    pub total: BillView,
}

/// An aggregator's portfolio statement (BL-4).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PortfolioView {
    /// The aggregator.
    pub aggregator: String,
    /// Its delegated sites.
    pub sites: Vec<String>,
    /// The sum of its sites' bills, as charged to their owners.
    pub total: BillView,
    /// The portfolio's deviations netted per interval, summed, Wh.
    pub net_deviation_wh: i64,
    /// The imbalance the portfolio would pay with its deviations netted per interval, base
    /// units.
    pub netted_imbalance: i64,
    /// The imbalance charged less the netted one, base units.
    pub netting_benefit: i64,
}

/// `GET /v1/feeders/{feeder}/billing`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BillingView {
    /// The feeder.
    pub feeder: String,
    /// The first interval of the period.
    pub from_interval: u64,
    /// The last interval of the period.
    pub to_interval: u64,
    /// The period's settled intervals.
    pub settled_intervals: u32,
    /// Its intervals not settled yet (not cleared, or waiting for readings): the statement is
    /// final only when this is empty.
    pub open_intervals: Vec<u64>,
    /// Per participant.
    pub statements: Vec<StatementView>,
    /// Per aggregator.
    pub portfolios: Vec<PortfolioView>,
    /// Per charging provider of an EV contract settled in the period.
    pub providers: Vec<ProviderStatementView>,
}

/// One interval's deviation and node price per site.
type Deviations = BTreeMap<SiteId, (i64, Price)>;

/// Checks a period and returns it.
pub fn check_period(from: u64, to: u64) -> Result<(Interval, Interval), String> {
    // The API describes intervals as int64 (OpenAPI's integer formats stop there); an interval
    // beyond is not one any feeder can reach and is refused rather than answered.
    for (name, k) in [("from_interval", from), ("to_interval", to)] {
        if k > INTERVAL_QUERY_MAX {
            return Err(format!(
                "{name}: {k} is beyond the largest interval, {INTERVAL_QUERY_MAX}"
            ));
        }
    }
    if from > to {
        return Err(format!(
            "the period is inverted: from interval {from} to {to}; give the first interval, then the last"
        ));
    }
    if to - from >= PERIOD_INTERVALS_MAX {
        return Err(format!(
            "the period has {} intervals; at most {PERIOD_INTERVALS_MAX} (31 days of 15 minutes)",
            to - from + 1
        ));
    }
    Ok((Interval(from), Interval(to)))
}

/// Billing statements of a period.
#[utoipa::path(
    get,
    path = "/v1/feeders/{feeder}/billing",
    params(
        ("feeder" = String, Path, pattern = r#"^[!"$-.0-~]([ -.0-~]{0,126}[!-.0-~])?$"#, description = "feeder id"),
        ("from_interval" = u64, Query, minimum = 0, description = "the first interval of the period"),
        ("to_interval" = u64, Query, minimum = 0, description = "the last interval of the period (inclusive)")
    ),
    responses(
        (status = 200, body = BillingView),
        (status = 400, body = ErrorBody, description = "an inverted or too long period"),
        (status = 404, body = ErrorBody, description = "unknown feeder, or a period with an interval that has left the state (retention)"),
    )
)]
async fn billing<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Extension(viewer): Extension<Viewer>,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<PeriodQuery>, QueryRejection>,
) -> Result<Json<BillingView>, ApiError> {
    let f = parse_feeder(&path(p)?)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (from, to) = check_period(q.from_interval, q.to_interval).map_err(ApiError::bad_request)?;
    let st2 = st.clone();
    tokio::task::spawn_blocking(move || {
        let h = st2.shared.executor.tip().height;
        let all = site_scope(&st2, h, &viewer, &f)?.is_all();
        let mut view = statements(&st2, &f, from, to)?;
        if !all {
            // A statement is its participant's, a portfolio its aggregator's, a provider's
            // statement its provider's (AC-6.3).
            let mine = |a: &str| a.parse::<AccountId>().is_ok_and(|a| viewer.is(&a));
            view.statements.retain(|x| mine(&x.participant));
            view.portfolios.retain(|x| mine(&x.aggregator));
            view.providers.retain(|x| mine(&x.provider));
        }
        Ok(view)
    })
    .await
    .map_err(ApiError::internal)?
    .map(Json)
}

fn statements<S: Store>(
    st: &ApiState<S>,
    f: &bcte_types::FeederId,
    from: Interval,
    to: Interval,
) -> Result<BillingView, ApiError> {
    let h = st.shared.executor.tip().height;
    let s = schedule_of(st, h, f)?;
    let table: SiteTable = read(st, h, &StateKey::Sites(f.clone()))?.unwrap_or_default();
    let owner_of: BTreeMap<&SiteId, AccountId> =
        table.sites.iter().map(|s| (&s.id, s.owner)).collect();
    let mut bills: BTreeMap<SiteId, Bill> = BTreeMap::new();
    // Per interval, each site's (deviation, price), and the interval's penalty, for BL-4.
    let mut deviations: Vec<(Price, Deviations)> = Vec::new();
    let mut view = BillingView {
        feeder: f.to_string(),
        from_interval: from.0,
        to_interval: to.0,
        settled_intervals: 0,
        open_intervals: Vec::new(),
        statements: Vec::new(),
        portfolios: Vec::new(),
        providers: Vec::new(),
    };
    let mut providers: BTreeMap<AccountId, BTreeMap<SiteId, Bill>> = BTreeMap::new();
    for k in from.0..=to.0 {
        let k = Interval(k);
        let idx: Option<SettleIndex> = read(st, h, &StateKey::Settling(f.clone(), k))?;
        let Some(idx) = idx else {
            if k < s.next_clear {
                return Err(ApiError::not_found(format!(
                    "interval {k} has left the current state (retention): bill a period before \
                     its intervals are pruned"
                )));
            }
            view.open_intervals.push(k.0);
            continue;
        };
        // BL-2.3: true-ups and corrections count in the period they are booked in.
        for b in idx.adjustments.iter() {
            let bucket: Option<AdjustBucket> =
                read(st, h, &StateKey::Adjustments(f.clone(), k, b))?;
            for a in bucket.map(|b| b.items).unwrap_or_default() {
                bills.entry(a.site).or_default().adjustments += a.amount;
            }
        }
        if k >= s.next_settle {
            view.open_intervals.push(k.0);
            continue;
        }
        view.settled_intervals += 1;
        // BL-2.4: contract differences, the buyer's site paying and the seller's paid.
        let totals: Option<bcte_ledger::settle_state::IntervalSettlement> =
            read(st, h, &StateKey::Settlement(f.clone(), k))?;
        let totals = totals.unwrap_or_default();
        for c in totals.contracts {
            bills.entry(c.buyer).or_default().contracts += c.amount;
            bills.entry(c.seller).or_default().contracts -= c.amount;
        }
        // BL-2.5, CT-4.2: an EV contract closed in the period: the charger's owner pays the
        // difference, the provider is paid it.
        for x in totals.ev {
            bills.entry(x.site.clone()).or_default().contracts += x.difference;
            providers
                .entry(x.provider)
                .or_default()
                .entry(x.site)
                .or_default()
                .contracts -= x.difference;
        }
        // BL-2.4, FX-3.4: each site's share of the flexibility payments, paid to its owner.
        for x in totals.flexibility {
            for d in x.sites {
                bills.entry(d.site).or_default().flexibility -= d.amount;
            }
        }
        let mut devs = BTreeMap::new();
        for b in idx.settled.iter() {
            let bucket: Option<SettledBucket> = read(st, h, &StateKey::Settled(f.clone(), k, b))?;
            for (site, x) in bucket.map(|b| b.sites).unwrap_or_default() {
                bills.entry(site.clone()).or_default().add_interval(&x);
                devs.insert(site, (x.deviation_wh, x.price));
            }
        }
        deviations.push((idx.imbalance_penalty, devs));
    }
    // BL-3: per participant.
    let mut by_owner: BTreeMap<AccountId, StatementView> = BTreeMap::new();
    let mut totals: BTreeMap<AccountId, Bill> = BTreeMap::new();
    for (site, bill) in &bills {
        let owner = owner_of
            .get(site)
            .copied()
            .ok_or_else(|| ApiError::internal(format!("settled site {site} is not registered")))?;
        by_owner
            .entry(owner)
            .or_insert_with(|| StatementView {
                participant: owner.to_string(),
                sites: BTreeMap::new(),
                total: BillView::from(&Bill::default()),
            })
            .sites
            .insert(site.to_string(), BillView::from(bill));
        totals.entry(owner).or_default().add(bill);
    }
    for (owner, mut statement) in by_owner {
        statement.total = BillView::from(&totals[&owner]);
        view.statements.push(statement);
    }
    // BL-2.5: per charging provider.
    for (provider, chargers) in providers {
        let mut total = Bill::default();
        for bill in chargers.values() {
            total.add(bill);
        }
        view.providers.push(ProviderStatementView {
            provider: provider.to_string(),
            chargers: chargers
                .iter()
                .map(|(site, b)| (site.to_string(), BillView::from(b)))
                .collect(),
            total: BillView::from(&total),
        });
    }
    // BL-4: per aggregator, its delegated sites (as delegated now).
    let mut portfolios: BTreeMap<AccountId, Vec<SiteId>> = BTreeMap::new();
    for site in bills.keys() {
        let state: Option<SiteState> = read(st, h, &StateKey::Site(f.clone(), site.clone()))?;
        if let Some(a) = state.and_then(|s| s.aggregator) {
            portfolios.entry(a).or_default().push(site.clone());
        }
    }
    for (aggregator, sites) in portfolios {
        let mut total = Bill::default();
        for site in &sites {
            total.add(&bills[site]);
        }
        let mut netted = 0i64;
        let mut net_deviation = 0i64;
        for (penalty, devs) in &deviations {
            let interval: Vec<(i64, Price)> =
                sites.iter().filter_map(|s| devs.get(s).copied()).collect();
            netted += netted_imbalance(&interval, *penalty);
            net_deviation += interval.iter().map(|(d, _)| d).sum::<i64>();
        }
        view.portfolios.push(PortfolioView {
            aggregator: aggregator.to_string(),
            sites: sites.iter().map(ToString::to_string).collect(),
            netting_benefit: total.imbalance_charge - netted,
            total: BillView::from(&total),
            net_deviation_wh: net_deviation,
            netted_imbalance: netted,
        });
    }
    Ok(view)
}

/// The billing route's part of the OpenAPI description.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(billing),
    components(schemas(
        BillingView,
        StatementView,
        PortfolioView,
        ProviderStatementView,
        BillView
    ))
)]
pub struct BillingDoc;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_has_six_decimals_and_a_sign() {
        assert_eq!(currency(1_234_567), "1.234567");
        assert_eq!(currency(-5), "-0.000005");
        assert_eq!(currency(0), "0.000000");
    }

    #[test]
    fn a_period_is_first_to_last_and_at_most_31_days() {
        assert_eq!(check_period(3, 3), Ok((Interval(3), Interval(3))));
        assert!(check_period(4, 3).unwrap_err().contains("inverted"));
        assert!(check_period(0, PERIOD_INTERVALS_MAX - 1).is_ok());
        assert!(
            check_period(0, PERIOD_INTERVALS_MAX)
                .unwrap_err()
                .contains("at most")
        );
        assert!(check_period(INTERVAL_QUERY_MAX - 1, INTERVAL_QUERY_MAX).is_ok());
        // Beyond int64, the schema's format: refused (the API fuzzer found it answered).
        let e = check_period(18_149_587_157_522_747_392, 18_149_587_157_522_747_392).unwrap_err();
        assert!(
            e.starts_with("from_interval: 18149587157522747392 is beyond"),
            "{e}"
        );
        assert!(
            check_period(0, INTERVAL_QUERY_MAX + 1)
                .unwrap_err()
                .starts_with("to_interval")
        );
    }
}
