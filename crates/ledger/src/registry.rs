//! The registry: feeders (their nodes as a tree with edge limits), sites on them, delegation
//! of a site's bidding to an aggregator, and changes of edge limits (rules MC-3 of
//! `docs/market-chain-rules.md`, cited at the branches).

use crate::{
    exec::{BlockContext, ExecError},
    keys::StateKey,
    market::{Handled, check_config, check_open, first_open_interval, refresh_index, reject},
    market_state::{
        ConfigSegment, FEEDERS_MAX, FeederEntry, FeederNode, FeederState, LIMIT_CHANGES_MAX,
        LimitChange, Schedule, SiteInfo, SiteState, SiteTable,
    },
    working::Working,
};
use bcte_market::{
    DEFAULT_PRICE_CAP, DEFAULT_PRICE_FLOOR, Market, Node, PRIORITY_CLASSES,
    limits::{LIMIT_MAX, POWER_ABS_MAX},
};
use bcte_types::Role;
use bcte_types::{
    AccountId, RejectReason, SiteId, Watts,
    market::{
        EdgeLimit, FEEDER_NODES_MAX, FEEDER_SITES_MAX, FeederRegister, SITES_PER_TX_MAX,
        SiteDelegate, SiteRevoke, SitesRegister,
    },
};
use std::collections::BTreeSet;

/// Whether a limit is within what the engine accepts for an edge.
fn limit_ok(w: Option<Watts>) -> bool {
    w.is_none_or(|w| (0..=LIMIT_MAX.0).contains(&w.0))
}

/// MC-3.1: registers a feeder with its nodes, epoch and first configuration.
pub(crate) fn register_feeder(
    w: &mut Working<'_>,
    ctx: &BlockContext,
    operator: AccountId,
    op: &FeederRegister,
) -> Handled {
    let index = w
        .market
        .index
        .get(w.pre, &StateKey::Feeders)?
        .cloned()
        .unwrap_or_default();
    if index.get(&op.feeder).is_some() {
        reject!(RejectReason::DuplicateFeeder {
            feeder: op.feeder.clone()
        });
    }
    if index.feeders.len() >= FEEDERS_MAX {
        reject!(RejectReason::invalid(format!(
            "the chain has {FEEDERS_MAX} feeders, the most it may have"
        )));
    }
    if op.nodes.is_empty() || op.nodes.len() > FEEDER_NODES_MAX {
        reject!(RejectReason::invalid(format!(
            "nodes: {} nodes; a feeder has 1 to {FEEDER_NODES_MAX}",
            op.nodes.len()
        )));
    }
    if let Err(e) = check_config(&op.config) {
        reject!(RejectReason::invalid(e));
    }
    for (i, n) in op.nodes.iter().enumerate() {
        if !limit_ok(n.import_limit) || !limit_ok(n.export_limit) {
            reject!(RejectReason::invalid(format!(
                "nodes[{i}] (node {:?}): a limit is not within [0, {}] W",
                n.id.as_str(),
                LIMIT_MAX.0
            )));
        }
    }
    // The engine's own checks of a tree: one root, known parents, no cycle, no duplicate,
    // bounded depth.
    let nodes: Vec<Node> = op
        .nodes
        .iter()
        .map(|n| Node {
            id: n.id.as_str().to_owned(),
            parent: n.parent.as_ref().map(|p| p.as_str().to_owned()),
            import_limit: n.import_limit,
            export_limit: n.export_limit,
        })
        .collect();
    if let Err(e) = Market::new(DEFAULT_PRICE_FLOOR, DEFAULT_PRICE_CAP, nodes, Vec::new()) {
        reject!(RejectReason::invalid(format!("nodes: {e}")));
    }
    let position = |id: &bcte_types::NodeId| op.nodes.iter().position(|n| &n.id == id);
    let feeder_nodes = op
        .nodes
        .iter()
        .map(|n| FeederNode {
            id: n.id.clone(),
            parent: n
                .parent
                .as_ref()
                .and_then(position)
                .map_or(u32::MAX, |p| p as u32),
            import_limit: n.import_limit,
            export_limit: n.export_limit,
        })
        .collect();
    let c = op.config;
    // MC-2.1: the epoch, by default the first multiple of Δ at or after the block's market time.
    let epoch_ms = op.epoch_ms.unwrap_or_else(|| {
        ctx.now_ms
            .div_ceil(c.interval_ms)
            .saturating_mul(c.interval_ms)
    });
    let next_clear = first_open_interval(epoch_ms, &c, ctx.now_ms);
    let schedule = Schedule {
        next_clear,
        configs: vec![ConfigSegment {
            from: bcte_types::Interval(0),
            start_ms: epoch_ms,
            config: c,
        }],
        modes: Vec::new(),
        limits: Vec::new(),
        prune_next: next_clear,
        prune_cursor: 0,
        bids_through: None,
        next_settle: next_clear,
        settle_at_ms: None,
    };
    let f = &op.feeder;
    w.market.feeders.put(
        StateKey::Feeder(f.clone()),
        FeederState {
            epoch_ms,
            nodes: feeder_nodes,
            // ST-2.5, ST-2.6: by default the DSO's own account.
            market_account: op.market_account.unwrap_or(operator),
            upstream_account: op.upstream_account.unwrap_or(operator),
            head_ends: Vec::new(),
            // MC-3.5: the DSO that registers it operates it.
            operator,
        },
    );
    w.market
        .site_tables
        .put(StateKey::Sites(f.clone()), SiteTable::default());
    let mut index = index;
    index.put(FeederEntry {
        feeder: f.clone(),
        next_gate_ms: schedule.gate_ms(next_clear),
        prune: None,
        settle_at_ms: None,
    });
    w.market.index.put(StateKey::Feeders, index);
    w.market
        .schedules
        .put(StateKey::Schedule(f.clone()), schedule);
    Ok(Ok(()))
}

/// MC-3.2: registers sites of a feeder, all or none.
pub(crate) fn register_sites(w: &mut Working<'_>, op: &SitesRegister) -> Handled {
    let feeder_key = StateKey::Feeder(op.feeder.clone());
    let Some(nodes) = w.market.feeders.get(w.pre, &feeder_key)? else {
        reject!(RejectReason::UnknownFeeder {
            feeder: op.feeder.clone()
        });
    };
    if op.sites.is_empty() || op.sites.len() > SITES_PER_TX_MAX {
        reject!(RejectReason::invalid(format!(
            "sites: {} sites; register 1 to {SITES_PER_TX_MAX} at once",
            op.sites.len()
        )));
    }
    let mut node_of = Vec::with_capacity(op.sites.len());
    for (i, s) in op.sites.iter().enumerate() {
        let Some(node) = nodes.node_index(&s.node) else {
            reject!(RejectReason::UnknownNode {
                node: s.node.clone()
            });
        };
        node_of.push(node);
        let where_ = || format!("sites[{i}] (site {:?})", s.site.as_str());
        if s.site.as_str() == SiteId::UPSTREAM {
            reject!(RejectReason::invalid(format!(
                "{}: the id {:?} is reserved for the upstream grid",
                where_(),
                SiteId::UPSTREAM
            )));
        }
        if s.priority >= PRIORITY_CLASSES {
            reject!(RejectReason::invalid(format!(
                "{}, priority: {} is not a class from 0 to {}",
                where_(),
                s.priority,
                PRIORITY_CLASSES - 1
            )));
        }
        for (field, limit) in [
            ("import_limit", s.import_limit),
            ("export_limit", s.export_limit),
        ] {
            if limit.is_some_and(|w| !(0..=POWER_ABS_MAX.0).contains(&w.0)) {
                reject!(RejectReason::invalid(format!(
                    "{}, {field}: not within [0, {}] W",
                    where_(),
                    POWER_ABS_MAX.0
                )));
            }
        }
    }
    let mut seen = BTreeSet::new();
    for s in &op.sites {
        let key = StateKey::Site(op.feeder.clone(), s.site.clone());
        if !seen.insert(&s.site) || w.market.sites.get(w.pre, &key)?.is_some() {
            reject!(RejectReason::DuplicateSite {
                site: s.site.clone()
            });
        }
    }
    let table_key = StateKey::Sites(op.feeder.clone());
    let registered = w
        .market
        .site_tables
        .get(w.pre, &table_key)?
        .ok_or_else(|| ExecError::Bug(format!("feeder {} has no site table", op.feeder)))?
        .sites
        .len();
    if registered + op.sites.len() > FEEDER_SITES_MAX {
        reject!(RejectReason::invalid(format!(
            "sites: the feeder has {registered} sites; at most {FEEDER_SITES_MAX} are allowed"
        )));
    }
    let table = w
        .market
        .site_tables
        .get_mut(w.pre, &table_key)?
        .expect("read above");
    let first = table.sites.len() as u32;
    for (s, &node) in op.sites.iter().zip(&node_of) {
        table.sites.push(SiteInfo {
            id: s.site.clone(),
            owner: s.owner,
            node,
            priority: s.priority,
            import_limit: s.import_limit,
            export_limit: s.export_limit,
        });
    }
    for (i, s) in op.sites.iter().enumerate() {
        w.market.sites.put(
            StateKey::Site(op.feeder.clone(), s.site.clone()),
            SiteState {
                index: first + i as u32,
                owner: s.owner,
                aggregator: None,
            },
        );
    }
    Ok(Ok(()))
}

/// The state of a site the sender owns, or the rejection (MC-3.3).
fn owned_site(
    w: &mut Working<'_>,
    sender: AccountId,
    feeder: &bcte_types::FeederId,
    site: &SiteId,
) -> Result<Result<SiteState, RejectReason>, ExecError> {
    if w.market
        .schedules
        .get(w.pre, &StateKey::Schedule(feeder.clone()))?
        .is_none()
    {
        return Ok(Err(RejectReason::UnknownFeeder {
            feeder: feeder.clone(),
        }));
    }
    let key = StateKey::Site(feeder.clone(), site.clone());
    let Some(state) = w.market.sites.get(w.pre, &key)?.cloned() else {
        return Ok(Err(RejectReason::UnknownSite { site: site.clone() }));
    };
    if state.owner != sender {
        return Ok(Err(RejectReason::NotSiteOwner { site: site.clone() }));
    }
    Ok(Ok(state))
}

/// MC-3.3: delegates a site's bidding to an aggregator; a different aggregator delegated
/// before loses its open bids, as on revocation.
pub(crate) fn delegate(
    w: &mut Working<'_>,
    ctx: &BlockContext,
    sender: AccountId,
    op: &SiteDelegate,
) -> Handled {
    let state = match owned_site(w, sender, &op.feeder, &op.site)? {
        Ok(s) => s,
        Err(r) => reject!(r),
    };
    if op.aggregator == state.owner {
        reject!(RejectReason::invalid(format!(
            "site {:?}: the owner bids for it already; delegate to another account",
            op.site.as_str()
        )));
    }
    // AC-3.3: a site is delegated to an aggregator, a member in good standing.
    if let Err(r) = crate::identity::check_holds(w, op.aggregator, "aggregator", Role::Aggregator)?
    {
        reject!(r);
    }
    if let Some(old) = state.aggregator
        && old != op.aggregator
    {
        crate::market::withdraw_bids_of(w, ctx, &op.feeder, &op.site, old)?;
    }
    let key = StateKey::Site(op.feeder.clone(), op.site.clone());
    let site = w.market.sites.get_mut(w.pre, &key)?.expect("read above");
    site.aggregator = Some(op.aggregator);
    Ok(Ok(()))
}

/// MC-3.3: revokes a site's delegation and withdraws the aggregator's bids whose gate is open.
pub(crate) fn revoke(
    w: &mut Working<'_>,
    ctx: &BlockContext,
    sender: AccountId,
    op: &SiteRevoke,
) -> Handled {
    let state = match owned_site(w, sender, &op.feeder, &op.site)? {
        Ok(s) => s,
        Err(r) => reject!(r),
    };
    let Some(aggregator) = state.aggregator else {
        reject!(RejectReason::invalid(format!(
            "site {:?} has no aggregator to revoke",
            op.site.as_str()
        )));
    };
    crate::market::withdraw_bids_of(w, ctx, &op.feeder, &op.site, aggregator)?;
    let key = StateKey::Site(op.feeder.clone(), op.site.clone());
    let site = w.market.sites.get_mut(w.pre, &key)?.expect("read above");
    site.aggregator = None;
    Ok(Ok(()))
}

/// MC-3.4: changes the limits of the edge above a node from a future interval on.
pub(crate) fn edge_limit(w: &mut Working<'_>, ctx: &BlockContext, op: &EdgeLimit) -> Handled {
    let schedule_key = StateKey::Schedule(op.feeder.clone());
    let Some(s) = w.market.schedules.get(w.pre, &schedule_key)? else {
        reject!(RejectReason::UnknownFeeder {
            feeder: op.feeder.clone()
        });
    };
    if let Err(r) = check_open(s, op.from, ctx.now_ms) {
        reject!(r);
    }
    let Some(nodes) = w
        .market
        .feeders
        .get(w.pre, &StateKey::Feeder(op.feeder.clone()))?
    else {
        return Err(ExecError::Bug(format!("feeder {} has no nodes", op.feeder)));
    };
    let Some(node) = nodes.node_index(&op.node) else {
        reject!(RejectReason::UnknownNode {
            node: op.node.clone()
        });
    };
    if nodes.nodes[node as usize].parent == u32::MAX {
        reject!(RejectReason::invalid(format!(
            "node {:?} is the root: it has no edge above it (the upstream limits are in the \
             market configuration)",
            op.node.as_str()
        )));
    }
    if !limit_ok(op.import_limit) || !limit_ok(op.export_limit) {
        reject!(RejectReason::invalid(format!(
            "node {:?}: a limit is not within [0, {}] W",
            op.node.as_str(),
            LIMIT_MAX.0
        )));
    }
    // A change replaces the node's changes scheduled from the same interval or later.
    let s = w
        .market
        .schedules
        .get(w.pre, &schedule_key)?
        .expect("read above");
    let mut limits: Vec<LimitChange> = s
        .limits
        .iter()
        .filter(|l| !(l.node == node && l.from >= op.from))
        .copied()
        .collect();
    if limits.len() >= LIMIT_CHANGES_MAX {
        reject!(RejectReason::invalid(format!(
            "limits: {LIMIT_CHANGES_MAX} changes are scheduled already"
        )));
    }
    let at = limits.partition_point(|l| (l.from, l.node) < (op.from, node));
    limits.insert(
        at,
        LimitChange {
            from: op.from,
            node,
            import_limit: op.import_limit,
            export_limit: op.export_limit,
        },
    );
    w.market
        .schedules
        .get_mut(w.pre, &schedule_key)?
        .expect("read above")
        .limits = limits;
    refresh_index(w, &op.feeder)?;
    Ok(Ok(()))
}
