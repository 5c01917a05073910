//! The market's routes: feeders, configurations, the schedule, bids (sealed until their
//! interval clears), interval results and per-site results with their state proofs.
//!
//! Powers and prices are written as in a market file and `bcte clear`'s result: kW and
//! currency/MWh as JSON numbers, exact at the engine's resolution (1 W, 1 µ/MWh); times are ms
//! of market time (MC-1) unless named `*_block_ms`. An interval's result is `bcte clear`'s
//! result object (without `stats`) plus the interval, the feeder, the mode, the height of the
//! block that cleared it, the upstream exchange, the congested edges and each site's
//! allocation, served, shed and spilled power.
//!
//! Sealed bids: nobody reads a rival's curve before it can no longer be changed. The bids of
//! an interval, and the state keys holding them, are served only once the interval is cleared.

use crate::{
    api::{ApiError, ApiState, ErrorBody, may_read_key},
    auth::Viewer,
    routes::{ReadRule, Route},
};
use axum::{
    Extension, Json,
    extract::{
        Path, Query, State,
        rejection::{PathRejection, QueryRejection},
    },
    http::Method,
    routing::get,
};
use bcte_ledger::{
    StateKey, book_bucket, decode_value,
    market_state::{
        BidBucket, BookIndex, Congestion, FeederIndex, FeederState, IntervalResult, MarketClock,
        ResultBucket, Schedule, SiteState, SiteTable,
    },
    prove, tree,
};
use bcte_market::file::{kw, per_mwh, welfare_per_hour};
use bcte_store::Store;
use bcte_types::{
    CurveSpec, FeederId, GridMode, Height, Interval, MarketConfig, SiteId, Watts,
    market::BID_HORIZON_INTERVALS,
};
use commonware_codec::Read;
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, sync::Arc};
use utoipa::ToSchema;

/// The market's routes.
pub(crate) fn routes<S: Store>() -> Vec<Route<S>> {
    use ReadRule::{Own, Public, Redacted};
    vec![
        Route::new(Method::GET, "/v1/feeders", Public, get(feeders::<S>)),
        Route::new(
            Method::GET,
            "/v1/feeders/{feeder}",
            Public,
            get(feeder::<S>),
        ),
        Route::new(
            Method::GET,
            "/v1/feeders/{feeder}/schedule",
            Public,
            get(schedule::<S>),
        ),
        Route::new(
            Method::GET,
            "/v1/feeders/{feeder}/sites/{site}",
            Own,
            get(site::<S>),
        ),
        Route::new(
            Method::GET,
            "/v1/feeders/{feeder}/intervals/{interval}/bids",
            Own,
            get(bids::<S>),
        ),
        Route::new(
            Method::GET,
            "/v1/feeders/{feeder}/intervals/{interval}/result",
            Redacted,
            get(result::<S>),
        ),
        Route::new(
            Method::GET,
            "/v1/feeders/{feeder}/intervals/{interval}/sites/{site}",
            Own,
            get(site_result::<S>),
        ),
    ]
}

/// The sites of a feeder whose own data a viewer reads (AC-6.3).
pub(crate) enum SiteScope {
    /// All: the feeder's operator, an auditor, a regulator.
    All,
    /// These: the sites it owns or that are delegated to it.
    Some(std::collections::BTreeSet<SiteId>),
}

impl SiteScope {
    /// Whether `site` is in scope.
    pub(crate) fn sees(&self, site: &SiteId) -> bool {
        match self {
            Self::All => true,
            Self::Some(set) => set.contains(site),
        }
    }

    /// Whether it is every site.
    pub(crate) const fn is_all(&self) -> bool {
        matches!(self, Self::All)
    }
}

/// The sites of `feeder` whose own data `viewer` reads at `height`. For a participant this
/// reads every site's record once (there is no index by owner on chain).
pub(crate) fn site_scope<S: Store>(
    st: &ApiState<S>,
    height: Height,
    viewer: &Viewer,
    feeder: &FeederId,
) -> Result<SiteScope, ApiError> {
    if reads_whole_feeder(st, height, viewer, feeder)? {
        return Ok(SiteScope::All);
    }
    let mut set = std::collections::BTreeSet::new();
    if viewer.account.is_none() {
        return Ok(SiteScope::Some(set));
    }
    let table: SiteTable = read(st, height, &StateKey::Sites(feeder.clone()))?.unwrap_or_default();
    for info in &table.sites {
        let key = StateKey::Site(feeder.clone(), info.id.clone());
        if read::<S, SiteState>(st, height, &key)?.is_some_and(|s| viewer.owns_site(&s)) {
            set.insert(info.id.clone());
        }
    }
    Ok(SiteScope::Some(set))
}

/// Whether `viewer` reads the own data of `site` of `feeder` at `height` (false as well when
/// there is no such site, so that a refusal and an absence look the same).
pub(crate) fn sees_site<S: Store>(
    st: &ApiState<S>,
    height: Height,
    viewer: &Viewer,
    feeder: &FeederId,
    site: &SiteId,
) -> Result<bool, ApiError> {
    if reads_whole_feeder(st, height, viewer, feeder)? {
        return Ok(true);
    }
    if viewer.account.is_none() {
        return Ok(false);
    }
    Ok(
        read::<S, SiteState>(st, height, &StateKey::Site(feeder.clone(), site.clone()))?
            .is_some_and(|s| viewer.owns_site(&s)),
    )
}

/// Whether `viewer` reads every record of `feeder` at `height`: an auditor, a regulator, or
/// the feeder's operator (false for a feeder that does not exist, but for auditors and
/// regulators).
pub(crate) fn reads_whole_feeder<S: Store>(
    st: &ApiState<S>,
    height: Height,
    viewer: &Viewer,
    feeder: &FeederId,
) -> Result<bool, ApiError> {
    if viewer.reads_all() {
        return Ok(true);
    }
    if viewer.account.is_none() {
        return Ok(false);
    }
    Ok(
        read::<S, FeederState>(st, height, &StateKey::Feeder(feeder.clone()))?
            .is_some_and(|s| viewer.reads_feeder(&s)),
    )
}

/// Reads and decodes a value at `height`.
pub(crate) fn read<S: Store, T: Read<Cfg = ()>>(
    st: &ApiState<S>,
    height: Height,
    key: &StateKey,
) -> Result<Option<T>, ApiError> {
    let store = st.shared.executor.store();
    match tree::read_value(store, height, key).map_err(ApiError::internal)? {
        None => Ok(None),
        Some(bytes) => decode_value::<T>(&bytes)
            .map(Some)
            .ok_or_else(|| ApiError::internal(format!("stored value of {key} is corrupt"))),
    }
}

pub(crate) fn parse_feeder(s: &str) -> Result<FeederId, ApiError> {
    FeederId::new(s).map_err(ApiError::bad_request)
}

pub(crate) fn parse_site(s: &str) -> Result<SiteId, ApiError> {
    SiteId::new(s).map_err(ApiError::bad_request)
}

pub(crate) fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(t)| t)
        .map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))
}

/// The schedule of a known feeder at `height`, or 404.
pub(crate) fn schedule_of<S: Store>(
    st: &ApiState<S>,
    height: Height,
    feeder: &FeederId,
) -> Result<Schedule, ApiError> {
    read(st, height, &StateKey::Schedule(feeder.clone()))?
        .ok_or_else(|| ApiError::not_found(format!("unknown feeder {:?}", feeder.as_str())))
}

/// The market time of the tip block.
fn market_now<S: Store>(st: &ApiState<S>) -> Result<(Height, u64, u64), ApiError> {
    let tip = st.shared.executor.tip();
    let clock: MarketClock =
        read(st, tip.height, &StateKey::MarketClock)?.unwrap_or(MarketClock::REAL_TIME);
    let block_ms = tip.header.timestamp_ms;
    Ok((tip.height, block_ms, clock.market_time(block_ms)))
}

/// A market configuration, in market-file units.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConfigView {
    /// The nominal interval length, ms.
    pub interval_ms: u64,
    /// How long before an interval starts its gate closes, ms.
    pub gate_lead_ms: u64,
    /// Currency/MWh.
    pub price_floor: f64,
    /// Currency/MWh.
    pub price_cap: f64,
    /// The tariff's import price, currency/MWh.
    pub import_price: f64,
    /// The most the feeder imports in normal mode, kW.
    pub import_limit_kw: f64,
    /// The tariff's export price, currency/MWh.
    pub export_price: f64,
    /// The most the feeder exports, kW.
    pub export_limit_kw: f64,
    /// The most the feeder imports in alert mode, kW.
    pub alert_import_limit_kw: f64,
    /// Intervals a cleared interval stays in the current state.
    pub retention_intervals: u32,
    /// The imbalance penalty, currency/MWh.
    pub imbalance_penalty: f64,
    /// The settlement deadline after an interval's end, ms of market time.
    pub settlement_delay_ms: u64,
    /// How long after an interval's end readings are accepted, ms of market time.
    pub reading_window_ms: u64,
    /// Days a flexibility baseline averages (FX-3.1).
    pub baseline_days: u32,
    /// Intervals from one baseline day to the next (FX-3.1).
    pub baseline_day_intervals: u64,
}

impl From<&MarketConfig> for ConfigView {
    fn from(c: &MarketConfig) -> Self {
        Self {
            interval_ms: c.interval_ms,
            gate_lead_ms: c.gate_lead_ms,
            price_floor: per_mwh(c.price_floor),
            price_cap: per_mwh(c.price_cap),
            import_price: per_mwh(c.import_price),
            import_limit_kw: kw(c.import_limit),
            export_price: per_mwh(c.export_price),
            export_limit_kw: kw(c.export_limit),
            alert_import_limit_kw: kw(c.alert_import_limit),
            retention_intervals: c.retention_intervals,
            imbalance_penalty: per_mwh(c.imbalance_penalty),
            settlement_delay_ms: c.settlement_delay_ms,
            reading_window_ms: c.reading_window_ms,
            baseline_days: c.baseline_days,
            baseline_day_intervals: c.day_intervals(),
        }
    }
}

/// One feeder of `GET /v1/feeders`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FeederSummary {
    /// The feeder's id.
    pub id: String,
    /// The next interval to clear.
    pub next_interval: u64,
    /// When its gate closes, market time (ms).
    pub next_gate_ms: u64,
}

/// `GET /v1/feeders`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FeedersView {
    /// The feeders, by id.
    pub feeders: Vec<FeederSummary>,
}

/// Every feeder of the chain with its next gate closure.
#[utoipa::path(get, path = "/v1/feeders", responses((status = 200, body = FeedersView)))]
async fn feeders<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
) -> Result<Json<FeedersView>, ApiError> {
    let tip = st.shared.executor.tip();
    let index: FeederIndex = read(&st, tip.height, &StateKey::Feeders)?.unwrap_or_default();
    let mut feeders = Vec::with_capacity(index.feeders.len());
    for e in &index.feeders {
        let s = schedule_of(&st, tip.height, &e.feeder)?;
        feeders.push(FeederSummary {
            id: e.feeder.to_string(),
            next_interval: s.next_clear.0,
            next_gate_ms: e.next_gate_ms,
        });
    }
    Ok(Json(FeedersView { feeders }))
}

/// A node of a feeder.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeView {
    /// Its id.
    pub id: String,
    /// Its parent's id; absent for the root.
    pub parent: Option<String>,
    /// The limit in force from its parent into it, kW (absent: unlimited).
    pub import_limit_kw: Option<f64>,
    /// The limit in force from it to its parent, kW (absent: unlimited).
    pub export_limit_kw: Option<f64>,
}

/// `GET /v1/feeders/{feeder}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FeederView {
    /// The feeder's id.
    pub id: String,
    /// When interval 0 starts, market time (ms).
    pub epoch_ms: u64,
    /// Its nodes, in registration order (the order of every per-node list of the chain), with
    /// the limits in force for the next interval to clear.
    pub nodes: Vec<NodeView>,
    /// How many sites it has.
    pub sites: usize,
    /// The configuration of the next interval to clear.
    pub config: ConfigView,
}

/// A feeder: its nodes with their limits, its epoch and its configuration.
#[utoipa::path(
    get,
    path = "/v1/feeders/{feeder}",
    params(("feeder" = String, Path, pattern = r#"^[!"$-.0-~]([ -.0-~]{0,126}[!-.0-~])?$"#, description = "feeder id: 1 to 128 printable ASCII characters, no `/`, not starting with `#` or a space, not ending with a space")),
    responses((status = 200, body = FeederView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn feeder<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<FeederView>, ApiError> {
    let f = parse_feeder(&path(p)?)?;
    let tip = st.shared.executor.tip();
    let s = schedule_of(&st, tip.height, &f)?;
    let state: FeederState = read(&st, tip.height, &StateKey::Feeder(f.clone()))?
        .ok_or_else(|| ApiError::internal("a feeder without nodes"))?;
    let table: SiteTable = read(&st, tip.height, &StateKey::Sites(f.clone()))?.unwrap_or_default();
    Ok(Json(FeederView {
        id: f.to_string(),
        epoch_ms: state.epoch_ms,
        nodes: node_views(&state),
        sites: table.sites.len(),
        config: s.config_at(s.next_clear).into(),
    }))
}

fn node_views(state: &FeederState) -> Vec<NodeView> {
    state
        .nodes
        .iter()
        .map(|n| NodeView {
            id: n.id.to_string(),
            parent: (n.parent != u32::MAX).then(|| state.nodes[n.parent as usize].id.to_string()),
            import_limit_kw: n.import_limit.map(kw),
            export_limit_kw: n.export_limit.map(kw),
        })
        .collect()
}

/// A configuration scheduled from an interval on.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConfigChange {
    /// Its first interval.
    pub from: u64,
    /// When that interval starts, market time (ms).
    pub start_ms: u64,
    /// The configuration.
    pub config: ConfigView,
}

/// A grid mode from an interval on.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ModeChange {
    /// Its first interval.
    pub from: u64,
    /// `normal`, `alert` or `islanded`.
    pub mode: String,
}

/// An edge-limit change to come.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LimitChangeView {
    /// Its first interval.
    pub from: u64,
    /// The node below the edge.
    pub node: String,
    /// kW; absent: unlimited.
    pub import_limit_kw: Option<f64>,
    /// kW; absent: unlimited.
    pub export_limit_kw: Option<f64>,
}

/// `GET /v1/feeders/{feeder}/schedule`: where the market is now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScheduleView {
    /// The feeder.
    pub feeder: String,
    /// The tip's height.
    pub height: u64,
    /// The tip's timestamp (ms since the Unix epoch).
    pub block_ms: u64,
    /// The tip's market time (ms; equal to `block_ms` unless the genesis speeds the clock).
    pub market_time_ms: u64,
    /// Market ms per block-time ms (the genesis market clock speed, MC-1).
    pub clock_speed: u32,
    /// The interval in progress at the tip's market time (absent before the epoch).
    pub current_interval: Option<u64>,
    /// The mode of the interval in progress (or of the next one before the epoch).
    pub mode: String,
    /// The next interval to clear.
    pub next_interval: u64,
    /// When it starts, market time (ms).
    pub next_start_ms: u64,
    /// When its gate closes, market time (ms).
    pub next_gate_ms: u64,
    /// The first block timestamp at or past that gate.
    pub next_gate_block_ms: u64,
    /// Its mode.
    pub next_mode: String,
    /// The last interval open for bids.
    pub last_open_interval: u64,
    /// The last cleared interval, if any (none before the feeder's first clearing).
    pub last_cleared: Option<u64>,
    /// The oldest interval whose result the state still holds (MC-8), if any: results from it
    /// to `last_cleared` can be read.
    #[serde(default)]
    pub oldest_result: Option<u64>,
    /// The last settled interval, if the state still holds one (ST-2.1).
    #[serde(default)]
    pub last_settled: Option<u64>,
    /// Configurations, the first in force for the next interval.
    pub configs: Vec<ConfigChange>,
    /// Modes, the first in force for the next interval.
    pub modes: Vec<ModeChange>,
    /// Edge-limit changes to come.
    pub limit_changes: Vec<LimitChangeView>,
}

/// The interval in progress at market time `now`.
fn current_interval(s: &Schedule, now: u64) -> Option<Interval> {
    let seg = s
        .configs
        .iter()
        .rev()
        .find(|seg| seg.start_ms <= now)
        .unwrap_or(&s.configs[0]);
    let d = seg.config.interval_ms;
    if now >= seg.start_ms {
        Some(Interval(seg.from.0 + (now - seg.start_ms) / d))
    } else {
        let back = (seg.start_ms - now).div_ceil(d);
        seg.from.0.checked_sub(back).map(Interval)
    }
}

/// Where a feeder's market is now: the interval in progress, the next gate closure, the mode,
/// and the configurations, modes and limit changes scheduled.
#[utoipa::path(
    get,
    path = "/v1/feeders/{feeder}/schedule",
    params(("feeder" = String, Path, pattern = r#"^[!"$-.0-~]([ -.0-~]{0,126}[!-.0-~])?$"#, description = "feeder id: 1 to 128 printable ASCII characters, no `/`, not starting with `#` or a space, not ending with a space")),
    responses((status = 200, body = ScheduleView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn schedule<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    p: Result<Path<String>, PathRejection>,
) -> Result<Json<ScheduleView>, ApiError> {
    let f = parse_feeder(&path(p)?)?;
    let (height, block_ms, now) = market_now(&st)?;
    let s = schedule_of(&st, height, &f)?;
    let clock: MarketClock =
        read(&st, height, &StateKey::MarketClock)?.unwrap_or(MarketClock::REAL_TIME);
    let state: FeederState = read(&st, height, &StateKey::Feeder(f.clone()))?
        .ok_or_else(|| ApiError::internal("a feeder without nodes"))?;
    let current = current_interval(&s, now);
    let mode = match current {
        Some(k) if k < s.next_clear => {
            read::<S, IntervalResult>(&st, height, &StateKey::Result(f.clone(), k))?
                .map_or_else(|| s.mode_at(s.next_clear), |r| r.mode)
        }
        Some(k) => s.mode_at(k),
        None => s.mode_at(s.next_clear),
    };
    let gate = s.gate_ms(s.next_clear);
    Ok(Json(ScheduleView {
        feeder: f.to_string(),
        height: height.get(),
        block_ms,
        market_time_ms: now,
        clock_speed: clock.speed,
        current_interval: current.map(|k| k.0),
        mode: mode.to_string(),
        next_interval: s.next_clear.0,
        next_start_ms: s.start_ms(s.next_clear),
        next_gate_ms: gate,
        next_gate_block_ms: clock.block_time_of(gate),
        next_mode: s.mode_at(s.next_clear).to_string(),
        last_open_interval: s.next_clear.0 + BID_HORIZON_INTERVALS,
        // A feeder's schedule starts with `prune_next` and `next_settle` at its first interval
        // to clear, and pruning never passes `next_clear`: an interval before `prune_next` was
        // never cleared or has left the state.
        last_cleared: (s.next_clear > s.prune_next).then(|| s.next_clear.0 - 1),
        oldest_result: {
            let oldest = s.prune_next.0 + u64::from(s.prune_cursor > 0);
            (oldest < s.next_clear.0).then_some(oldest)
        },
        last_settled: (s.next_settle > s.prune_next).then(|| s.next_settle.0 - 1),
        configs: s
            .configs
            .iter()
            .map(|c| ConfigChange {
                from: c.from.0,
                start_ms: c.start_ms,
                config: (&c.config).into(),
            })
            .collect(),
        modes: s
            .modes
            .iter()
            .map(|(from, mode)| ModeChange {
                from: from.0,
                mode: mode.to_string(),
            })
            .collect(),
        limit_changes: s
            .limits
            .iter()
            .map(|l| LimitChangeView {
                from: l.from.0,
                node: state.nodes[l.node as usize].id.to_string(),
                import_limit_kw: l.import_limit.map(kw),
                export_limit_kw: l.export_limit.map(kw),
            })
            .collect(),
    }))
}

/// `GET /v1/feeders/{feeder}/sites/{site}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SiteView {
    /// The feeder.
    pub feeder: String,
    /// The site.
    pub site: String,
    /// Its node.
    pub node: String,
    /// Its owner (ACCOUNT).
    pub owner: String,
    /// The aggregator it delegated bidding to, if any.
    pub aggregator: Option<String>,
    /// Its priority class (0 shed first, 7 last).
    pub priority: u8,
    /// Its connection's import limit, kW (absent: unlimited).
    pub import_limit_kw: Option<f64>,
    /// Its connection's export limit, kW (absent: unlimited).
    pub export_limit_kw: Option<f64>,
    /// Its meter's ACCOUNT, if it has one (ST-1.1).
    #[serde(default)]
    pub meter: Option<String>,
    /// The first interval it counts as metered for.
    #[serde(default)]
    pub metered_since: Option<u64>,
}

/// A site: its node, owner, aggregator, priority class and connection limit.
#[utoipa::path(
    get,
    path = "/v1/feeders/{feeder}/sites/{site}",
    params(("feeder" = String, Path, pattern = r#"^[!"$-.0-~]([ -.0-~]{0,126}[!-.0-~])?$"#, description = "feeder id: 1 to 128 printable ASCII characters, no `/`, not starting with `#` or a space, not ending with a space"), ("site" = String, Path, pattern = r#"^[!"$-.0-~]([ -.0-~]{0,126}[!-.0-~])?$"#, description = "site id (the rules of a feeder id)")),
    responses((status = 200, body = SiteView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn site<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Extension(viewer): Extension<Viewer>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<SiteView>, ApiError> {
    let (f, site) = path(p)?;
    let (f, site) = (parse_feeder(&f)?, parse_site(&site)?);
    let tip = st.shared.executor.tip();
    schedule_of(&st, tip.height, &f)?;
    let unknown = || ApiError::not_found(format!("unknown site {:?}", site.as_str()));
    // Another's site is as unknown as an absent one (AC-6.3).
    if !sees_site(&st, tip.height, &viewer, &f, &site)? {
        return Err(unknown());
    }
    let state: SiteState =
        read(&st, tip.height, &StateKey::Site(f.clone(), site.clone()))?.ok_or_else(unknown)?;
    let table: SiteTable = read(&st, tip.height, &StateKey::Sites(f.clone()))?.unwrap_or_default();
    let nodes: FeederState = read(&st, tip.height, &StateKey::Feeder(f.clone()))?
        .ok_or_else(|| ApiError::internal("a feeder without nodes"))?;
    let info = table
        .sites
        .get(state.index as usize)
        .ok_or_else(|| ApiError::internal("a site outside its table"))?;
    let meters: bcte_ledger::settle_state::MeterTable =
        read(&st, tip.height, &StateKey::Meters(f.clone()))?.unwrap_or_default();
    let meter = meters.get(state.index);
    Ok(Json(SiteView {
        meter: meter.map(|m| m.meter.to_string()),
        metered_since: meter.map(|m| m.since.0),
        feeder: f.to_string(),
        site: site.to_string(),
        node: nodes.nodes[info.node as usize].id.to_string(),
        owner: state.owner.to_string(),
        aggregator: state.aggregator.map(|a| a.to_string()),
        priority: info.priority,
        import_limit_kw: info.import_limit.map(kw),
        export_limit_kw: info.export_limit.map(kw),
    }))
}

/// A curve as the API writes it: points when it has a point form, components otherwise.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CurveView {
    /// `[[price, kW], ...]` as in a market file.
    Points(Vec<(f64, f64)>),
    /// The component form of an aggregated curve.
    Components {
        /// kW below every price.
        base_kw: f64,
        /// `[[price, drop_kw], ...]`.
        steps: Vec<(f64, f64)>,
        /// `[[start_price, end_price, drop_kw, count], ...]`.
        ramps: Vec<(f64, f64, f64, u32)>,
    },
}

/// The view of a stored curve.
pub fn curve_view(spec: &CurveSpec) -> CurveView {
    let points = |c: &bcte_market::Curve| {
        c.to_points(bcte_types::Price::ZERO).map(|pts| {
            CurveView::Points(
                pts.iter()
                    .map(|p| (per_mwh(p.price), kw(p.power)))
                    .collect(),
            )
        })
    };
    match bcte_ledger::market::curve_of(spec) {
        Ok(c) => points(&c).unwrap_or_else(|| CurveView::Components {
            base_kw: kw(c.max_power()),
            steps: c
                .steps()
                .iter()
                .map(|s| (per_mwh(s.price), kw(s.drop)))
                .collect(),
            ramps: c
                .ramps()
                .iter()
                .map(|r| (per_mwh(r.start), per_mwh(r.end), kw(r.drop), r.count))
                .collect(),
        }),
        Err(_) => CurveView::Points(Vec::new()),
    }
}

/// One bid of an interval.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BidView {
    /// The site.
    pub site: String,
    /// Who submitted it (the owner or its aggregator).
    pub bidder: String,
    /// The curve.
    pub curve: CurveView,
}

/// `GET /v1/feeders/{feeder}/intervals/{interval}/bids`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BidsView {
    /// The feeder.
    pub feeder: String,
    /// The interval.
    pub interval: u64,
    /// The bids, in the sites' registration order.
    pub bids: Vec<BidView>,
}

pub(crate) fn parse_interval(s: &str) -> Result<Interval, ApiError> {
    s.parse::<u64>().map(Interval).map_err(|_| {
        ApiError::bad_request(format!(
            "bad interval {s:?}: expected a non-negative integer"
        ))
    })
}

/// Refuses to show what is sealed: an interval's bids until it is cleared.
fn require_cleared(s: &Schedule, feeder: &FeederId, k: Interval) -> Result<(), ApiError> {
    if k >= s.next_clear {
        return Err(ApiError::forbidden(format!(
            "the bids of interval {k} of feeder {:?} are sealed until it clears (its gate closes at \
             market time {} ms)",
            feeder.as_str(),
            s.gate_ms(k)
        )));
    }
    Ok(())
}

/// An interval's bids, once it is cleared (403 before: bids are sealed until then).
#[utoipa::path(
    get,
    path = "/v1/feeders/{feeder}/intervals/{interval}/bids",
    params(("feeder" = String, Path, pattern = r#"^[!"$-.0-~]([ -.0-~]{0,126}[!-.0-~])?$"#, description = "feeder id: 1 to 128 printable ASCII characters, no `/`, not starting with `#` or a space, not ending with a space"), ("interval" = u64, Path, minimum = 0, description = "interval number")),
    responses((status = 200, body = BidsView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody, description = "sealed: the interval is not cleared yet"), (status = 404, body = ErrorBody))
)]
async fn bids<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Extension(viewer): Extension<Viewer>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<BidsView>, ApiError> {
    let (f, k) = path(p)?;
    let (f, k) = (parse_feeder(&f)?, parse_interval(&k)?);
    let tip = st.shared.executor.tip();
    let s = schedule_of(&st, tip.height, &f)?;
    require_cleared(&s, &f, k)?;
    let book: BookIndex = read(&st, tip.height, &StateKey::Book(f.clone(), k))?.unwrap_or_default();
    let mut records = Vec::with_capacity(book.bids as usize);
    for bucket in book.iter() {
        let key = StateKey::Bids(f.clone(), k, bucket);
        if let Some(b) = read::<S, BidBucket>(&st, tip.height, &key)? {
            records.extend(b.bids);
        }
    }
    records.sort_by_key(|r| r.index);
    let scope = site_scope(&st, tip.height, &viewer, &f)?;
    let out = records
        .iter()
        .filter(|r| scope.sees(&r.site))
        .map(|r| BidView {
            site: r.site.to_string(),
            bidder: r.bidder.to_string(),
            curve: curve_view(&r.curve),
        })
        .collect();
    Ok(Json(BidsView {
        feeder: f.to_string(),
        interval: k.0,
        bids: out,
    }))
}

/// A k-anonymous group of sites (AC-6.8): whole nodes, at least
/// [`bcte_ledger::anon::K_ANONYMITY`] sites, none above 15 % of the group's energy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GroupView {
    /// The nodes whose sites it holds.
    pub nodes: Vec<String>,
    /// How many sites.
    pub sites: usize,
    /// What its consuming sites are served, kW (positive).
    pub consumption_kw: f64,
    /// What its producing sites feed in, kW (positive).
    pub generation_kw: f64,
}

/// The k-anonymous groups of every site of `table` on `nodes` (AC-6.8), by the magnitude of
/// each site's served power in `served` (zero for a site without a result): each group's node
/// ids and site ids.
pub(crate) fn anon_groups<'a>(
    nodes: &FeederState,
    table: &'a SiteTable,
    served: &BTreeMap<SiteId, Watts>,
) -> Vec<(Vec<String>, Vec<&'a SiteId>)> {
    let parents: Vec<u32> = nodes.nodes.iter().map(|n| n.parent).collect();
    let site_nodes: Vec<u32> = table.sites.iter().map(|s| s.node).collect();
    let energy: Vec<u64> = table
        .sites
        .iter()
        .map(|s| served.get(&s.id).map_or(0, |w| w.0.unsigned_abs()))
        .collect();
    bcte_ledger::anon::groups(&parents, &site_nodes, &energy)
        .into_iter()
        .map(|g| {
            (
                g.nodes
                    .iter()
                    .map(|&n| nodes.nodes[n as usize].id.to_string())
                    .collect(),
                g.sites.iter().map(|&i| &table.sites[i].id).collect(),
            )
        })
        .collect()
}

/// The views of [`anon_groups`]: each group's served consumption and generation.
pub(crate) fn group_views(
    nodes: &FeederState,
    table: &SiteTable,
    served: &BTreeMap<SiteId, Watts>,
) -> Vec<GroupView> {
    anon_groups(nodes, table, served)
        .into_iter()
        .map(|(node_ids, sites)| group_view(node_ids, &sites, served))
        .collect()
}

/// One group's view: its nodes, its number of sites, and what `served` serves them.
pub(crate) fn group_view(
    nodes: Vec<String>,
    sites: &[&SiteId],
    served: &BTreeMap<SiteId, Watts>,
) -> GroupView {
    let (consumed, fed) = signed_sums(sites, |s| served.get(s).map(|w| w.0));
    GroupView {
        nodes,
        sites: sites.len(),
        consumption_kw: kw(Watts(consumed)),
        generation_kw: kw(Watts(fed)),
    }
}

/// The sums of the positive and of the negative values `value` gives `sites`, both as
/// magnitudes.
pub(crate) fn signed_sums(sites: &[&SiteId], value: impl Fn(&SiteId) -> Option<i64>) -> (i64, i64) {
    let values: Vec<i64> = sites.iter().filter_map(|s| value(s)).collect();
    let positive: i64 = values.iter().filter(|v| **v > 0).sum();
    let negative: i64 = values.iter().filter(|v| **v < 0).sum();
    (positive, negative.abs())
}

/// A site's part of an interval's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SitePart {
    /// What its curve asks at its node's price, kW.
    pub allocation_kw: f64,
    /// What it is served: allocation less shed plus spilled, kW.
    pub served_kw: f64,
    /// Its demand not served, kW.
    pub shed_kw: f64,
    /// Its generation not absorbed, kW.
    pub spilled_kw: f64,
}

/// `GET /v1/feeders/{feeder}/intervals/{interval}/result`: `bcte clear`'s result object
/// (without `stats`) and the interval's chain facts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ResultView {
    /// Currency/MWh per node.
    pub prices: BTreeMap<String, f64>,
    /// kW per bid: each site's, and `upstream`'s (the upstream grid, in normal and alert).
    pub allocations: BTreeMap<String, f64>,
    /// kW into each non-root node from its parent.
    pub flows: BTreeMap<String, f64>,
    /// kW shed per node (only those with any).
    pub shed_kw: BTreeMap<String, f64>,
    /// kW spilled per node (only those with any).
    pub spilled_kw: BTreeMap<String, f64>,
    /// kW shed per bid (only those with any).
    pub bid_shed_kw: BTreeMap<String, f64>,
    /// kW spilled per bid (only those with any).
    pub bid_spilled_kw: BTreeMap<String, f64>,
    /// Currency/h.
    pub welfare: f64,
    /// The interval.
    pub interval: u64,
    /// The feeder.
    pub feeder: String,
    /// `normal`, `alert` or `islanded`.
    pub mode: String,
    /// The block that cleared it.
    pub height: u64,
    /// When it starts, market time (ms).
    pub start_ms: u64,
    /// Its nominal length, ms.
    pub interval_ms: u64,
    /// The import from the upstream grid, kW (negative: export; zero islanded).
    pub upstream_kw: f64,
    /// The upstream prices it cleared with (tariff or posted), currency/MWh.
    pub import_price: f64,
    /// See `import_price`.
    pub export_price: f64,
    /// Nodes whose edge to their parent is at a limit, with `import` or `export`.
    pub congested_edges: BTreeMap<String, String>,
    /// Each site's allocation, served, shed and spilled power.
    pub sites: BTreeMap<String, SitePart>,
    /// Sites whose bids were left out (their curve left the interval's price bounds).
    pub excluded: Vec<String>,
    /// The served power of k-anonymous groups of the sites, for everyone (AC-6.8); empty when
    /// the feeder has no valid group.
    #[serde(default)]
    pub groups: Vec<GroupView>,
    /// What the answer holds (AC-6.4): `all` for the feeder's operator, auditors and
    /// regulators; `own` for everyone else: the prices, the mode, the upstream prices and the
    /// congested edges, and only the caller's own sites (none for the public), without the
    /// flows, per-node shed and spill, welfare and upstream exchange (zero or empty).
    #[serde(default)]
    pub scope: String,
}

/// The result of a cleared interval (404 before it clears).
#[utoipa::path(
    get,
    path = "/v1/feeders/{feeder}/intervals/{interval}/result",
    params(("feeder" = String, Path, pattern = r#"^[!"$-.0-~]([ -.0-~]{0,126}[!-.0-~])?$"#, description = "feeder id: 1 to 128 printable ASCII characters, no `/`, not starting with `#` or a space, not ending with a space"), ("interval" = u64, Path, minimum = 0, description = "interval number")),
    responses((status = 200, body = ResultView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody, description = "unknown feeder, not cleared yet, or pruned"))
)]
async fn result<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Extension(viewer): Extension<Viewer>,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<ResultView>, ApiError> {
    let (f, k) = path(p)?;
    let (f, k) = (parse_feeder(&f)?, parse_interval(&k)?);
    let tip = st.shared.executor.tip();
    let s = schedule_of(&st, tip.height, &f)?;
    let Some(r) = read::<S, IntervalResult>(&st, tip.height, &StateKey::Result(f.clone(), k))?
    else {
        return Err(ApiError::not_found(if k >= s.next_clear {
            format!(
                "interval {k} is not cleared yet: its gate closes at market time {} ms",
                s.gate_ms(k)
            )
        } else {
            format!("interval {k}'s result has left the current state (retention)")
        }));
    };
    let nodes: FeederState = read(&st, tip.height, &StateKey::Feeder(f.clone()))?
        .ok_or_else(|| ApiError::internal("a feeder without nodes"))?;
    let table: SiteTable = read(&st, tip.height, &StateKey::Sites(f.clone()))?.unwrap_or_default();
    let book: BookIndex = read(&st, tip.height, &StateKey::Book(f.clone(), k))?.unwrap_or_default();
    let id = |i: u32| nodes.nodes[i as usize].id.to_string();
    let mut view = ResultView {
        prices: r
            .prices
            .iter()
            .enumerate()
            .map(|(i, p)| (id(i as u32), per_mwh(*p)))
            .collect(),
        allocations: BTreeMap::new(),
        flows: r
            .flows
            .iter()
            .enumerate()
            .filter(|(i, _)| nodes.nodes[*i].parent != u32::MAX)
            .map(|(i, w)| (id(i as u32), kw(*w)))
            .collect(),
        shed_kw: r.shed.iter().map(|(i, w)| (id(*i), kw(*w))).collect(),
        spilled_kw: r.spilled.iter().map(|(i, w)| (id(*i), kw(*w))).collect(),
        bid_shed_kw: BTreeMap::new(),
        bid_spilled_kw: BTreeMap::new(),
        welfare: welfare_per_hour(bcte_market::Welfare(r.welfare)),
        interval: k.0,
        feeder: f.to_string(),
        mode: r.mode.to_string(),
        height: r.height,
        start_ms: r.start_ms,
        interval_ms: r.interval_ms,
        upstream_kw: kw(Watts(-r.upstream.0)),
        import_price: per_mwh(r.import_price),
        export_price: per_mwh(r.export_price),
        congested_edges: r
            .congested
            .iter()
            .map(|(i, c)| {
                let side = match c {
                    Congestion::Import => "import",
                    Congestion::Export => "export",
                };
                (id(*i), side.to_owned())
            })
            .collect(),
        sites: BTreeMap::new(),
        excluded: r
            .excluded
            .iter()
            .filter_map(|i| table.sites.get(*i as usize).map(|s| s.id.to_string()))
            .collect(),
        groups: Vec::new(),
        scope: String::new(),
    };
    let scope = site_scope(&st, tip.height, &viewer, &f)?;
    if !scope.is_all() {
        // The grid's side (flows, per-node shed and spill, welfare, the upstream exchange) is
        // the operator's: a leaf node's flow is one site's power (AC-6.4).
        view.flows.clear();
        view.shed_kw.clear();
        view.spilled_kw.clear();
        view.welfare = 0.0;
        view.upstream_kw = 0.0;
        view.excluded
            .retain(|s| SiteId::new(s.as_str()).is_ok_and(|s| scope.sees(&s)));
    } else if r.mode != GridMode::Islanded {
        view.allocations
            .insert(SiteId::UPSTREAM.to_owned(), kw(r.upstream));
    }
    view.scope = if scope.is_all() { "all" } else { "own" }.to_owned();
    let mut served = BTreeMap::new();
    for bucket in book.iter() {
        let key = StateKey::Results(f.clone(), k, bucket);
        let Some(results) = read::<S, ResultBucket>(&st, tip.height, &key)? else {
            continue;
        };
        for (site, result) in results.results {
            served.insert(site.clone(), result.served());
            if !scope.sees(&site) {
                continue;
            }
            let name = site.to_string();
            view.allocations.insert(name.clone(), kw(result.allocation));
            if !result.shed.is_zero() {
                view.bid_shed_kw.insert(name.clone(), kw(result.shed));
            }
            if !result.spilled.is_zero() {
                view.bid_spilled_kw.insert(name.clone(), kw(result.spilled));
            }
            view.sites.insert(
                name,
                SitePart {
                    allocation_kw: kw(result.allocation),
                    served_kw: kw(result.served()),
                    shed_kw: kw(result.shed),
                    spilled_kw: kw(result.spilled),
                },
            );
        }
    }
    view.groups = group_views(&nodes, &table, &served);
    Ok(Json(view))
}

#[derive(Debug, Deserialize)]
struct HeightQuery {
    height: Option<u64>,
}

/// `GET /v1/feeders/{feeder}/intervals/{interval}/sites/{site}`: a site's result, with the
/// state proof of its key.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SiteResultView {
    /// The feeder.
    pub feeder: String,
    /// The interval.
    pub interval: u64,
    /// The site.
    pub site: String,
    /// Its node's price, currency/MWh.
    pub price: f64,
    /// Its allocation, served, shed and spilled power.
    #[serde(flatten)]
    pub part: SitePart,
    /// The height the proof speaks for.
    pub height: u64,
    /// The state key of the site's result bucket, `results/<feeder>/<interval>/<bucket>`.
    pub key: String,
    /// The value's bytes, hex: the whole bucket, which holds other sites' results too, so it
    /// and the proof are given only to those who read the bucket (the feeder's operator,
    /// auditors, regulators); null for a site's owner or aggregator (AC-6.5).
    pub value: Option<String>,
    /// The proof's canonical bytes, hex (see docs/encoding.md).
    pub proof: Option<String>,
    /// The state root of block `height`.
    pub state_root: String,
    /// The hash of block `height`.
    pub block_hash: String,
}

/// A site's result in a cleared interval with the state proof of its result bucket (the site
/// and the few others whose id hashes to the same bucket), checkable against the state root of
/// block `height` (default: the tip).
#[utoipa::path(
    get,
    path = "/v1/feeders/{feeder}/intervals/{interval}/sites/{site}",
    params(("feeder" = String, Path, pattern = r#"^[!"$-.0-~]([ -.0-~]{0,126}[!-.0-~])?$"#, description = "feeder id: 1 to 128 printable ASCII characters, no `/`, not starting with `#` or a space, not ending with a space"), ("interval" = u64, Path, minimum = 0, description = "interval number"), ("site" = String, Path, pattern = r#"^[!"$-.0-~]([ -.0-~]{0,126}[!-.0-~])?$"#, description = "site id (the rules of a feeder id)"),
           ("height" = Option<u64>, Query, minimum = 0, description = "the height to prove at (default: the tip)")),
    responses((status = 200, body = SiteResultView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
async fn site_result<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    Extension(viewer): Extension<Viewer>,
    p: Result<Path<(String, String, String)>, PathRejection>,
    q: Result<Query<HeightQuery>, QueryRejection>,
) -> Result<Json<SiteResultView>, ApiError> {
    let (f, k, site) = path(p)?;
    let (f, k, site) = (parse_feeder(&f)?, parse_interval(&k)?, parse_site(&site)?);
    let Query(q) = q.map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))?;
    let tip = st.shared.executor.tip();
    let s = schedule_of(&st, tip.height, &f)?;
    require_cleared(&s, &f, k)?;
    let height = Height(q.height.unwrap_or(tip.height.get()));
    if height > tip.height {
        return Err(ApiError::not_found(format!(
            "height {height} is above the committed tip {}",
            tip.height
        )));
    }
    let key = StateKey::Results(f.clone(), k, book_bucket(&site));
    let none = || {
        ApiError::not_found(format!(
            "site {:?} has no result in interval {k} at height {height}",
            site.as_str()
        ))
    };
    // Another's site has no result as far as the caller can tell (AC-6.3).
    if !sees_site(&st, tip.height, &viewer, &f, &site)? {
        return Err(none());
    }
    let bucket: Option<ResultBucket> = read(&st, height, &key)?;
    let result = *bucket
        .as_ref()
        .and_then(|b| b.get(&site))
        .ok_or_else(none)?;
    let store = st.shared.executor.store();
    let block = store
        .block(height)?
        .ok_or_else(|| ApiError::not_found(format!("no block at height {height}")))?;
    let proof = if may_read_key(&st, &viewer, &key)? {
        Some(prove(store, key.clone(), height).map_err(ApiError::internal)?)
    } else {
        None
    };
    Ok(Json(SiteResultView {
        feeder: f.to_string(),
        interval: k.0,
        site: site.to_string(),
        price: per_mwh(result.price),
        part: SitePart {
            allocation_kw: kw(result.allocation),
            served_kw: kw(result.served()),
            shed_kw: kw(result.shed),
            spilled_kw: kw(result.spilled),
        },
        height: height.get(),
        key: key.to_string(),
        value: proof
            .as_ref()
            .map(|p| p.value.as_ref().map(hex::encode).unwrap_or_default()),
        proof: proof.as_ref().map(|p| hex::encode(p.to_bytes())),
        state_root: hex::encode(block.header().state_root),
        block_hash: hex::encode(block.hash()),
    }))
}

/// Whether a state key holds bids that are sealed at the tip (an interval not yet cleared):
/// `/v1/proofs` refuses them as the bids route does.
pub fn sealed<S: Store>(st: &ApiState<S>, key: &StateKey) -> Result<Option<String>, ApiError> {
    let (f, k) = match key {
        StateKey::Bids(f, k, _) | StateKey::Book(f, k) => (f, *k),
        _ => return Ok(None),
    };
    let tip = st.shared.executor.tip();
    let Some(s) = read::<S, Schedule>(st, tip.height, &StateKey::Schedule(f.clone()))? else {
        return Ok(None);
    };
    Ok(require_cleared(&s, f, k)
        .err()
        .map(|e| e.message().to_owned()))
}

/// The interval of `feeder` whose bids are sealed at the tip, if `interval` is one of them.
pub fn bid_is_sealed<S: Store>(
    st: &ApiState<S>,
    feeder: &FeederId,
    interval: Interval,
) -> Result<bool, ApiError> {
    let tip = st.shared.executor.tip();
    Ok(
        read::<S, Schedule>(st, tip.height, &StateKey::Schedule(feeder.clone()))?
            .is_some_and(|s| interval >= s.next_clear),
    )
}

/// The market's part of the OpenAPI description.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(feeders, feeder, schedule, site, bids, result, site_result),
    components(schemas(
        FeedersView,
        FeederSummary,
        FeederView,
        NodeView,
        ConfigView,
        ScheduleView,
        ConfigChange,
        ModeChange,
        LimitChangeView,
        SiteView,
        BidsView,
        BidView,
        CurveView,
        ResultView,
        GroupView,
        SitePart,
        SiteResultView
    ))
)]
pub struct MarketDoc;
