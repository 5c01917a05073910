//! The anonymised export (AC-6.8): interval-level data per k-anonymous group of nodes, with no
//! site or account id, for data service providers.

use crate::{
    api::{ApiError, ApiState, ErrorBody},
    billing_api::check_period,
    market_api::{
        GroupView, anon_groups, group_view, parse_feeder, path, read, schedule_of, signed_sums,
    },
    routes::{ReadRule, Route},
};
use axum::{
    Json,
    extract::{Path, Query, State, rejection::PathRejection, rejection::QueryRejection},
    http::Method,
    routing::get,
};
use bcte_ledger::{
    StateKey,
    anon::{DOMINANCE_PERCENT, K_ANONYMITY},
    market_state::{BookIndex, FeederState, IntervalResult, ResultBucket, SiteTable},
    settle_state::{ReadingBucket, SettleIndex},
};
use bcte_market::file::per_mwh;
use bcte_store::Store;
use bcte_types::{Interval, SiteId, Watts};
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, sync::Arc};
use utoipa::ToSchema;

/// The export route.
pub(crate) fn routes<S: Store>() -> Vec<Route<S>> {
    vec![Route::new(
        Method::GET,
        "/v1/feeders/{feeder}/export",
        ReadRule::Aggregates,
        get(export::<S>),
    )]
}

/// The period (both ends inclusive).
#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    /// The first interval.
    pub from_interval: u64,
    /// The last interval (inclusive).
    pub to_interval: u64,
}

/// One group of one interval.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExportGroup {
    /// Its scheduled part: nodes, sites, served consumption and generation.
    #[serde(flatten)]
    pub served: GroupView,
    /// How many of its sites have a reading of the interval.
    pub metered_sites: usize,
    /// What those readings add up to, consumed, Wh (positive).
    pub metered_consumption_wh: i64,
    /// What those readings add up to, fed in, Wh (positive).
    pub metered_generation_wh: i64,
}

/// One interval of the export.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExportInterval {
    /// The interval.
    pub interval: u64,
    /// When it starts, market time (ms).
    pub start_ms: u64,
    /// `normal`, `alert` or `islanded`.
    pub mode: String,
    /// Currency/MWh per node.
    pub prices: BTreeMap<String, f64>,
    /// Its k-anonymous groups (empty when the feeder has none that is valid).
    pub groups: Vec<ExportGroup>,
}

/// `GET /v1/feeders/{feeder}/export`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ExportView {
    /// The feeder.
    pub feeder: String,
    /// The fewest sites of a group.
    pub k_anonymity: usize,
    /// The largest share of a group's energy one site may hold, percent.
    pub dominance_percent: u32,
    /// The cleared intervals of the period still in the state, in order.
    pub intervals: Vec<ExportInterval>,
    /// The intervals of the period not (or no longer) available: not cleared, or pruned.
    pub missing: Vec<u64>,
}

/// Interval-level data of a period per k-anonymous group of nodes (AC-6.8): prices per node
/// and, per group, its sites' count, served consumption and generation and metered sums. No
/// site or account id.
#[utoipa::path(
    get,
    path = "/v1/feeders/{feeder}/export",
    params(
        ("feeder" = String, Path, pattern = r#"^[!"$-.0-~]([ -.0-~]{0,126}[!-.0-~])?$"#, description = "feeder id"),
        ("from_interval" = u64, Query, minimum = 0, description = "the first interval of the period"),
        ("to_interval" = u64, Query, minimum = 0, description = "the last interval of the period (inclusive)")
    ),
    responses(
        (status = 200, body = ExportView),
        (status = 400, body = ErrorBody, description = "an inverted or too long period"),
        (status = 404, body = ErrorBody, description = "unknown feeder"),
    )
)]
async fn export<S: Store>(
    State(st): State<Arc<ApiState<S>>>,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Json<ExportView>, ApiError> {
    let f = parse_feeder(&path(p)?)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (from, to) = check_period(q.from_interval, q.to_interval).map_err(ApiError::bad_request)?;
    let st2 = st.clone();
    tokio::task::spawn_blocking(move || -> Result<ExportView, ApiError> {
        let h = st2.shared.executor.tip().height;
        schedule_of(&st2, h, &f)?;
        let nodes: FeederState = read(&st2, h, &StateKey::Feeder(f.clone()))?
            .ok_or_else(|| ApiError::internal("a feeder without nodes"))?;
        let table: SiteTable = read(&st2, h, &StateKey::Sites(f.clone()))?.unwrap_or_default();
        let mut view = ExportView {
            feeder: f.to_string(),
            k_anonymity: K_ANONYMITY,
            dominance_percent: DOMINANCE_PERCENT as u32,
            intervals: Vec::new(),
            missing: Vec::new(),
        };
        for k in from.0..=to.0 {
            let k = Interval(k);
            let Some(r) = read::<S, IntervalResult>(&st2, h, &StateKey::Result(f.clone(), k))?
            else {
                view.missing.push(k.0);
                continue;
            };
            let book: BookIndex = read(&st2, h, &StateKey::Book(f.clone(), k))?.unwrap_or_default();
            let mut served: BTreeMap<SiteId, Watts> = BTreeMap::new();
            for b in book.iter() {
                if let Some(bucket) =
                    read::<S, ResultBucket>(&st2, h, &StateKey::Results(f.clone(), k, b))?
                {
                    served.extend(bucket.results.iter().map(|(s, x)| (s.clone(), x.served())));
                }
            }
            let mut metered: BTreeMap<SiteId, i64> = BTreeMap::new();
            if let Some(idx) = read::<S, SettleIndex>(&st2, h, &StateKey::Settling(f.clone(), k))? {
                for b in idx.readings.iter() {
                    if let Some(bucket) =
                        read::<S, ReadingBucket>(&st2, h, &StateKey::Readings(f.clone(), k, b))?
                    {
                        metered.extend(bucket.readings.iter().map(|x| (x.site.clone(), x.wh.0)));
                    }
                }
            }
            let groups = anon_groups(&nodes, &table, &served)
                .into_iter()
                .map(|(node_ids, sites)| {
                    let (consumed, fed) = signed_sums(&sites, |s| metered.get(s).copied());
                    ExportGroup {
                        metered_sites: sites.iter().filter(|s| metered.contains_key(**s)).count(),
                        metered_consumption_wh: consumed,
                        metered_generation_wh: fed,
                        served: group_view(node_ids, &sites, &served),
                    }
                })
                .collect();
            view.intervals.push(ExportInterval {
                interval: k.0,
                start_ms: r.start_ms,
                mode: r.mode.to_string(),
                prices: r
                    .prices
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (nodes.nodes[i].id.to_string(), per_mwh(*p)))
                    .collect(),
                groups,
            });
        }
        Ok(view)
    })
    .await
    .map_err(ApiError::internal)?
    .map(Json)
}

/// The export's part of the OpenAPI description.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(export),
    components(schemas(ExportView, ExportInterval, ExportGroup))
)]
pub struct ExportDoc;
