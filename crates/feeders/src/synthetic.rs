//! Synthetic feeders for scale tests (SB-8): any number of households on a radial low-voltage
//! grid, driven by the shipped SimBench grid's household and PV profiles.

use crate::{FeederModel, ModelGenerator, ModelLoad, ModelNode, ModelSite};
use bcte_types::{NodeId, SiteId, Watts};
use rand::{Rng, RngExt};

/// Households on one bus.
pub const HOUSEHOLDS_PER_BUS: usize = 4;
/// Buses along one cable from the transformer.
pub const BUSES_PER_CABLE: usize = 10;
/// A NAYY 4x240 cable at 0.4 kV: √3 × 0.4 kV × 357 A (SB-4.2).
pub const CABLE_LIMIT: Watts = Watts(247_337);
/// The household load profiles of the shipped grid, used in turn.
pub const LOAD_PROFILES: [&str; 3] = ["H0-A", "H0-B", "H0-C"];
/// Its PV profiles, used in turn.
pub const PV_PROFILES: [&str; 3] = ["PV5", "PV6", "PV8"];

/// SB-8: `households` homes on cables of [`BUSES_PER_CABLE`] buses of [`HOUSEHOLDS_PER_BUS`]
/// homes each, from one transformer rated 1.5 kW per home (at least 100 kW) below the external
/// grid; each home's peak load drawn uniform from 3 to 6 kW, and a third of them with a PV
/// system of 4 to 10 kW as a site of its own (SB-5.1), both from `rng`.
pub fn synthetic(households: usize, rng: &mut impl Rng) -> FeederModel {
    let node = |s: String| NodeId::new(s).expect("a generated node id");
    let site = |s: String| SiteId::new(s).expect("a generated site id");
    let grid = node("grid".into());
    let lv = node("lv".into());
    let mut nodes = vec![
        ModelNode {
            id: grid.clone(),
            parent: None,
            limit: None,
            edge: None,
            voltage_kv: "20".into(),
        },
        ModelNode {
            id: lv.clone(),
            parent: Some(grid),
            limit: Some(Watts((1_500 * households as i64).max(100_000))),
            edge: Some("transformer".into()),
            voltage_kv: "0.4".into(),
        },
    ];
    let buses = households.div_ceil(HOUSEHOLDS_PER_BUS);
    for b in 0..buses {
        let (cable, along) = (b / BUSES_PER_CABLE, b % BUSES_PER_CABLE);
        let parent = if along == 0 {
            lv.clone()
        } else {
            node(format!("c{cable}b{}", along - 1))
        };
        nodes.push(ModelNode {
            id: node(format!("c{cable}b{along}")),
            parent: Some(parent),
            limit: Some(CABLE_LIMIT),
            edge: Some(format!("cable {cable} section {along}")),
            voltage_kv: "0.4".into(),
        });
    }
    let mut sites = Vec::with_capacity(households + households / 2);
    let mut pv = Vec::new();
    for h in 0..households {
        let bus = nodes[2 + h / HOUSEHOLDS_PER_BUS].id.clone();
        let id = format!("home {h}");
        sites.push(ModelSite {
            site: site(id.clone()),
            node: bus.clone(),
            loads: vec![ModelLoad {
                id,
                profile: LOAD_PROFILES[h % LOAD_PROFILES.len()].into(),
                peak: Watts(rng.random_range(3_000..=6_000)),
            }],
            generators: Vec::new(),
        });
        if rng.random_range(0..3u8) == 0 {
            let id = format!("pv {h}");
            pv.push(ModelSite {
                site: site(id.clone()),
                node: bus,
                loads: Vec::new(),
                generators: vec![ModelGenerator {
                    id,
                    kind: "PV".into(),
                    profile: PV_PROFILES[h % PV_PROFILES.len()].into(),
                    rated: Watts(rng.random_range(4_000..=10_000)),
                }],
            });
        }
    }
    sites.extend(pv);
    FeederModel {
        id: format!("synthetic-{households}"),
        nodes,
        sites,
    }
}
