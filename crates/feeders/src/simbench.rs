//! SimBench CSV grids (SB-1 to SB-5): the folder's tables, switch-joined nodes merged into
//! buses, the radial tree from the external grid, the edges' limits, and the sites.

use crate::{FeederModel, ImportError, ModelGenerator, ModelLoad, ModelNode, ModelSite, Profiles};
use bcte_types::{NodeId, SiteId, Watts};
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    path::Path,
};

/// The tables of a SimBench folder, as text (SB-1).
#[derive(Clone, Debug, Default)]
pub struct SimbenchDir {
    /// `Node.csv`.
    pub node: String,
    /// `Line.csv`.
    pub line: String,
    /// `LineType.csv`.
    pub line_type: String,
    /// `Transformer.csv`.
    pub transformer: String,
    /// `TransformerType.csv`.
    pub transformer_type: String,
    /// `Switch.csv` (empty if the folder has none: no switches).
    pub switch: String,
    /// `ExternalNet.csv`.
    pub external_net: String,
    /// `Load.csv`.
    pub load: String,
    /// `RES.csv` (empty if the folder has none: no generators).
    pub res: String,
}

fn read_file(dir: &Path, name: &str, required: bool) -> Result<String, ImportError> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(ImportError::new(
            name,
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

impl SimbenchDir {
    /// Reads the tables of the folder `dir`.
    pub fn read(dir: &Path) -> Result<Self, ImportError> {
        if !dir.is_dir() {
            return Err(ImportError::new(
                &dir.display().to_string(),
                "not a folder; give a SimBench CSV folder (Node.csv, Line.csv, ...)",
            ));
        }
        Ok(Self {
            node: read_file(dir, "Node.csv", true)?,
            line: read_file(dir, "Line.csv", true)?,
            line_type: read_file(dir, "LineType.csv", true)?,
            transformer: read_file(dir, "Transformer.csv", true)?,
            transformer_type: read_file(dir, "TransformerType.csv", true)?,
            switch: read_file(dir, "Switch.csv", false)?,
            external_net: read_file(dir, "ExternalNet.csv", true)?,
            load: read_file(dir, "Load.csv", true)?,
            res: read_file(dir, "RES.csv", false)?,
        })
    }

    /// Reads and parses the profiles `model` needs from the folder `dir` (SB-6).
    pub fn profiles(dir: &Path, model: &FeederModel) -> Result<Profiles, ImportError> {
        let load = read_file(dir, "LoadProfile.csv", true)?;
        let res = if model.generators().next().is_some() {
            read_file(dir, "RESProfile.csv", true)?
        } else {
            read_file(dir, "RESProfile.csv", false)?
        };
        Profiles::parse(
            model,
            &load,
            if res.is_empty() { "time\n0\n" } else { &res },
        )
    }
}

/// A parsed table: its header and rows, each with its line in the file.
struct Table {
    file: &'static str,
    headers: csv::StringRecord,
    rows: Vec<(u64, csv::StringRecord)>,
}

impl Table {
    fn parse(file: &'static str, text: &str) -> Result<Self, ImportError> {
        if text.is_empty() {
            return Ok(Self {
                file,
                headers: csv::StringRecord::new(),
                rows: Vec::new(),
            });
        }
        let (headers, records) = crate::csv_records(file, text)?;
        let rows = records.collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            file,
            headers,
            rows,
        })
    }

    /// The rows, each with a reader of its columns.
    fn rows(&self) -> Result<Vec<Row<'_>>, ImportError> {
        Ok(self
            .rows
            .iter()
            .map(|(line, record)| Row {
                table: self,
                line: *line,
                record,
            })
            .collect())
    }

    fn column(&self, name: &str) -> Result<usize, ImportError> {
        self.headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| ImportError::at(self.file, 1, None, format!("no column {name:?}")))
    }
}

struct Row<'t> {
    table: &'t Table,
    line: u64,
    record: &'t csv::StringRecord,
}

impl Row<'_> {
    fn error(&self, column: &str, message: impl Into<String>) -> ImportError {
        ImportError::at(self.table.file, self.line, Some(column), message)
    }

    /// The text of `column` (exact: ids are compared without trimming, SB-1).
    fn text(&self, column: &str) -> Result<&str, ImportError> {
        let i = self.table.column(column)?;
        self.record
            .get(i)
            .ok_or_else(|| self.error(column, "missing: the row is shorter than the header"))
    }

    /// A value that must be present (not `NULL`).
    fn required(&self, column: &str) -> Result<&str, ImportError> {
        match self.text(column)? {
            "NULL" | "" => Err(self.error(column, "missing (NULL)")),
            v => Ok(v),
        }
    }

    /// A finite number, or `default` for `NULL`.
    fn number_or(&self, column: &str, default: Option<f64>) -> Result<f64, ImportError> {
        let raw = self.text(column)?;
        if raw == "NULL" || raw.is_empty() {
            return default.ok_or_else(|| self.error(column, "missing (NULL)"));
        }
        raw.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| self.error(column, format!("not a number: {raw:?}")))
    }

    fn number(&self, column: &str) -> Result<f64, ImportError> {
        self.number_or(column, None)
    }

    /// A number of MW as watts, not negative (SB-5).
    fn megawatts(&self, column: &str) -> Result<Watts, ImportError> {
        let mw = self.number(column)?;
        if !(0.0..=1e6).contains(&mw) {
            return Err(self.error(column, format!("{mw} MW; give a power from 0 to 10⁶ MW")));
        }
        Ok(Watts((mw * 1e6).round() as i64))
    }
}

/// Disjoint sets of node indices (the switch-joined groups of SB-2).
struct Groups(Vec<usize>);

impl Groups {
    fn find(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }

    fn join(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        // The lower index is the group's representative: the first node in Node.csv order.
        let (low, high) = if a < b { (a, b) } else { (b, a) };
        self.0[high] = low;
    }
}

/// An edge between two buses: a line or the transformer.
struct Edge {
    a: usize,
    b: usize,
    id: String,
    limit: Watts,
    file: &'static str,
    line: u64,
}

/// Imports a SimBench grid (SB-1 to SB-5).
pub fn import(dir: &SimbenchDir) -> Result<FeederModel, ImportError> {
    let nodes = Table::parse("Node.csv", &dir.node)?;
    let node_rows = nodes.rows()?;
    if node_rows.is_empty() {
        return Err(ImportError::new("Node.csv", "no nodes"));
    }
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, r) in node_rows.iter().enumerate() {
        let id = r.required("id")?;
        if index.insert(id, i).is_some() {
            return Err(r.error("id", format!("node {id:?} twice")));
        }
    }
    let node_of = |r: &Row<'_>, column: &str| -> Result<usize, ImportError> {
        let id = r.required(column)?;
        index
            .get(id)
            .copied()
            .ok_or_else(|| r.error(column, format!("no node {id:?} in Node.csv")))
    };

    // SB-2: closed switches merge their nodes; a bus is named after its first busbar.
    let mut groups = Groups((0..node_rows.len()).collect());
    let switches = Table::parse("Switch.csv", &dir.switch)?;
    for r in switches.rows()? {
        let (a, b) = (node_of(&r, "nodeA")?, node_of(&r, "nodeB")?);
        let closed = match r.required("cond")? {
            "1" => true,
            "0" => false,
            v => return Err(r.error("cond", format!("{v:?}; give 1 (closed) or 0 (open)"))),
        };
        if closed {
            groups.join(a, b);
        }
    }
    let group: Vec<usize> = (0..node_rows.len()).map(|i| groups.find(i)).collect();
    let mut name_of: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, r) in node_rows.iter().enumerate() {
        let g = group[i];
        let busbar = r.text("type")? == "busbar";
        match name_of.get(&g) {
            None => {
                name_of.insert(g, i);
            }
            Some(&named) if busbar && node_rows[named].text("type")? != "busbar" => {
                name_of.insert(g, i);
            }
            Some(_) => {}
        }
    }
    let mut bus_ids: BTreeMap<usize, NodeId> = BTreeMap::new();
    for (&g, &i) in &name_of {
        let r = &node_rows[i];
        let id = r.required("id")?;
        let node = NodeId::new(id).map_err(|e| r.error("id", e.to_string()))?;
        bus_ids.insert(g, node);
    }

    // SB-4: the edges and their limits.
    let mut edges: Vec<Edge> = Vec::new();
    let ttypes = Table::parse("TransformerType.csv", &dir.transformer_type)?;
    let mut rated: HashMap<String, f64> = HashMap::new();
    for r in ttypes.rows()? {
        let s = r.number("sR")?;
        if s <= 0.0 {
            return Err(r.error("sR", format!("{s} MVA; give a positive rating")));
        }
        rated.insert(r.required("id")?.to_owned(), s);
    }
    let transformers = Table::parse("Transformer.csv", &dir.transformer)?;
    let mut feeder_id = None;
    for r in transformers.rows()? {
        let (a, b) = (node_of(&r, "nodeHV")?, node_of(&r, "nodeLV")?);
        let ty = r.required("type")?;
        let s = *rated.get(ty).ok_or_else(|| {
            r.error(
                "type",
                format!("no transformer type {ty:?} in TransformerType.csv"),
            )
        })?;
        let loading = loading_max(&r)?;
        feeder_id.get_or_insert(r.text("subnet")?.to_owned());
        edges.push(Edge {
            a: group[a],
            b: group[b],
            id: r.required("id")?.to_owned(),
            limit: Watts((s * 1e6 * loading / 100.0).round() as i64),
            file: "Transformer.csv",
            line: r.line,
        });
    }
    let ltypes = Table::parse("LineType.csv", &dir.line_type)?;
    let mut current: HashMap<String, f64> = HashMap::new();
    for r in ltypes.rows()? {
        let i = r.number("iMax")?;
        if i <= 0.0 {
            return Err(r.error("iMax", format!("{i} A; give a positive current")));
        }
        current.insert(r.required("id")?.to_owned(), i);
    }
    let lines = Table::parse("Line.csv", &dir.line)?;
    for r in lines.rows()? {
        let (a, b) = (node_of(&r, "nodeA")?, node_of(&r, "nodeB")?);
        let ty = r.required("type")?;
        let i_max = *current
            .get(ty)
            .ok_or_else(|| r.error("type", format!("no line type {ty:?} in LineType.csv")))?;
        let kv = |n: usize| node_rows[n].number("vmR");
        let (va, vb) = (kv(a)?, kv(b)?);
        if va != vb || va <= 0.0 {
            return Err(r.error(
                "nodeB",
                format!("the line joins nodes of rated voltages {va} and {vb} kV"),
            ));
        }
        let loading = loading_max(&r)?;
        edges.push(Edge {
            a: group[a],
            b: group[b],
            id: r.required("id")?.to_owned(),
            limit: Watts((3f64.sqrt() * va * 1e3 * i_max * loading / 100.0).round() as i64),
            file: "Line.csv",
            line: r.line,
        });
    }

    // SB-3: the tree from the external grid's bus.
    let externals = Table::parse("ExternalNet.csv", &dir.external_net)?;
    let ext_rows = externals.rows()?;
    let root = match ext_rows.as_slice() {
        [r] => group[node_of(r, "node")?],
        [] => {
            return Err(ImportError::new(
                "ExternalNet.csv",
                "no external grid: the feeder needs one connection upstream",
            ));
        }
        [_, second, ..] => {
            return Err(ImportError::at(
                "ExternalNet.csv",
                second.line,
                None,
                "a second external grid: a radial feeder has one connection upstream",
            ));
        }
    };
    let mut incident: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (e, edge) in edges.iter().enumerate() {
        if edge.a == edge.b {
            return Err(ImportError::at(
                edge.file,
                edge.line,
                None,
                format!(
                    "{} joins bus {} to itself: not a radial grid",
                    edge.id, bus_ids[&edge.a]
                ),
            ));
        }
        incident.entry(edge.a).or_default().push(e);
        incident.entry(edge.b).or_default().push(e);
    }
    let mut parent_edge: BTreeMap<usize, Option<usize>> = BTreeMap::from([(root, None)]);
    let mut order = vec![root];
    let mut queue = VecDeque::from([root]);
    while let Some(u) = queue.pop_front() {
        for &e in incident.get(&u).map(Vec::as_slice).unwrap_or_default() {
            if parent_edge[&u] == Some(e) {
                continue;
            }
            let edge = &edges[e];
            let v = if edge.a == u { edge.b } else { edge.a };
            if parent_edge.contains_key(&v) {
                return Err(ImportError::at(
                    edge.file,
                    edge.line,
                    None,
                    format!(
                        "{} closes a loop (bus {} is reached twice from the external grid): not a radial grid",
                        edge.id, bus_ids[&v]
                    ),
                ));
            }
            parent_edge.insert(v, Some(e));
            order.push(v);
            queue.push_back(v);
        }
    }
    if let Some((&g, _)) = bus_ids.iter().find(|(g, _)| !parent_edge.contains_key(g)) {
        let r = &node_rows[name_of[&g]];
        return Err(r.error(
            "id",
            format!("bus {} is not connected to the external grid", bus_ids[&g]),
        ));
    }
    let model_nodes = order
        .iter()
        .map(|&g| {
            let edge = parent_edge[&g].map(|e| &edges[e]);
            Ok(ModelNode {
                id: bus_ids[&g].clone(),
                parent: edge.map(|e| bus_ids[&if e.a == g { e.b } else { e.a }].clone()),
                limit: edge.map(|e| e.limit),
                edge: edge.map(|e| e.id.clone()),
                voltage_kv: node_rows[name_of[&g]].required("vmR")?.to_owned(),
            })
        })
        .collect::<Result<Vec<_>, ImportError>>()?;

    // SB-5: a site per load and per generator.
    let mut sites: Vec<ModelSite> = Vec::new();
    let mut seen: HashMap<String, (&'static str, u64)> = HashMap::new();
    let mut site_of = |r: &Row<'_>, file: &'static str| -> Result<(SiteId, NodeId), ImportError> {
        let id = r.required("id")?;
        let site = SiteId::new(id).map_err(|e| r.error("id", e.to_string()))?;
        if site.as_str() == SiteId::UPSTREAM {
            return Err(r.error("id", "\"upstream\" is reserved for the upstream grid"));
        }
        if let Some((f, l)) = seen.insert(id.to_owned(), (file, r.line)) {
            return Err(r.error("id", format!("{id:?} is already a site ({f}, line {l})")));
        }
        Ok((site, bus_ids[&group[node_of(r, "node")?]].clone()))
    };
    let loads = Table::parse("Load.csv", &dir.load)?;
    for r in loads.rows()? {
        let (site, node) = site_of(&r, "Load.csv")?;
        sites.push(ModelSite {
            site,
            node,
            loads: vec![ModelLoad {
                id: r.required("id")?.to_owned(),
                profile: r.required("profile")?.to_owned(),
                peak: r.megawatts("pLoad")?,
            }],
            generators: Vec::new(),
        });
    }
    let res = Table::parse("RES.csv", &dir.res)?;
    for r in res.rows()? {
        let (site, node) = site_of(&r, "RES.csv")?;
        sites.push(ModelSite {
            site,
            node,
            loads: Vec::new(),
            generators: vec![ModelGenerator {
                id: r.required("id")?.to_owned(),
                kind: r.required("type")?.to_owned(),
                profile: r.required("profile")?.to_owned(),
                rated: r.megawatts("pRES")?,
            }],
        });
    }
    let id = match feeder_id {
        Some(id) if !id.is_empty() && id != "NULL" => id,
        _ => node_rows[0].required("subnet")?.to_owned(),
    };
    Ok(FeederModel {
        id,
        nodes: model_nodes,
        sites,
    })
}

/// SB-4: `loadingMax`, a percentage; 100 where `NULL`.
fn loading_max(r: &Row<'_>) -> Result<f64, ImportError> {
    let v = r.number_or("loadingMax", Some(100.0))?;
    if v <= 0.0 {
        return Err(r.error("loadingMax", format!("{v} %; give a positive percentage")));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE_HEADER: &str =
        "id;type;vmSetp;vaSetp;vmR;vmMin;vmMax;substation;coordID;subnet;voltLvl\n";

    fn node(id: &str, ty: &str, kv: &str) -> String {
        format!("{id};{ty};NULL;NULL;{kv};0.9;1.1;NULL;c;LV9;7\n")
    }

    /// A grid of three buses: M (20 kV, the external grid), B1 behind the transformer, B2
    /// behind a line from B1; every element ends on an auxiliary node switched to its busbar.
    fn grid() -> SimbenchDir {
        let mut nodes = NODE_HEADER.to_owned();
        for (id, ty, kv) in [
            ("M", "busbar", "20"),
            ("M_t", "auxiliary", "20"),
            ("B1", "busbar", "0.4"),
            ("B1_t", "auxiliary", "0.4"),
            ("B1_l", "auxiliary", "0.4"),
            ("B2", "busbar", "0.4"),
            ("B2_l", "auxiliary", "0.4"),
        ] {
            nodes.push_str(&node(id, ty, kv));
        }
        let mut switch = "id;nodeA;nodeB;type;cond;substation;subnet;voltLvl\n".to_owned();
        for (i, (a, b)) in [("M", "M_t"), ("B1_t", "B1"), ("B1", "B1_l"), ("B2_l", "B2")]
            .iter()
            .enumerate()
        {
            switch.push_str(&format!("S{i};{a};{b};LS;1;NULL;LV9;7\n"));
        }
        SimbenchDir {
            node: nodes,
            line: "id;nodeA;nodeB;type;length;loadingMax;subnet;voltLvl\nL1;B1_l;B2_l;NAYY;0.1;80;LV9;7\n".into(),
            line_type: "id;r;x;b;iMax;type\nNAYY;0.2;0.08;260;270;cable\n".into(),
            transformer: "id;nodeHV;nodeLV;type;tappos;autoTap;autoTapSide;loadingMax;substation;subnet;voltLvl\nT;M_t;B1_t;T160;0;0;NULL;NULL;NULL;LV9;6\n".into(),
            transformer_type: "id;sR;vmHV;vmLV\nT160;0.16;20;0.4\n".into(),
            switch,
            external_net: "id;node;calc_type\ngrid;M;vavm\n".into(),
            load: "id;node;profile;pLoad;qLoad;sR;subnet;voltLvl\nhouse;B2;H0-A;0.0045;0;0;LV9;7\nshop;B2;G0-A;0.01;0;0;LV9;7\n".into(),
            res: "id;node;type;profile;calc_type;pRES;qRES;sR;subnet;voltLvl\npv;B1;PV;PV1;pq;0.0123456;0;0;LV9;7\n".into(),
        }
    }

    #[test]
    fn switch_joined_nodes_are_one_bus_and_the_tree_hangs_from_the_external_grid() {
        let m = import(&grid()).unwrap();
        assert_eq!(m.id, "LV9");
        let nodes: Vec<_> = m
            .nodes
            .iter()
            .map(|n| {
                (
                    n.id.as_str(),
                    n.parent.as_ref().map(NodeId::as_str),
                    n.limit.map(|w| w.0),
                    n.edge.as_deref(),
                )
            })
            .collect();
        // SB-4 by hand: 0.16 MVA at loadingMax NULL (100 %) is 160,000 W; √3 × 0.4 kV ×
        // 270 A × 80 % = 149,649.2 W.
        assert_eq!(
            nodes,
            vec![
                ("M", None, None, None),
                ("B1", Some("M"), Some(160_000), Some("T")),
                ("B2", Some("B1"), Some(149_649), Some("L1")),
            ]
        );
        let sites: Vec<_> = m
            .sites
            .iter()
            .map(|s| {
                (
                    s.site.as_str(),
                    s.node.as_str(),
                    s.loads.len(),
                    s.generators.len(),
                )
            })
            .collect();
        assert_eq!(
            sites,
            vec![
                ("house", "B2", 1, 0),
                ("shop", "B2", 1, 0),
                ("pv", "B1", 0, 1)
            ]
        );
        // SB-5: MW to W, rounded half away from zero.
        assert_eq!(m.sites[0].loads[0].peak, Watts(4_500));
        assert_eq!(m.sites[2].generators[0].rated, Watts(12_346));
    }

    #[test]
    fn an_open_switch_leaves_its_node_apart_and_a_loop_is_refused_naming_its_edge() {
        // Opening B2's switch leaves its busbar (and the load on it) without a connection.
        let mut g = grid();
        g.switch = g.switch.replace("S3;B2_l;B2;LS;1", "S3;B2_l;B2;LS;0");
        let e = import(&g).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Node.csv, line 7, column id: bus B2 is not connected to the external grid"
        );
        // A second line from B1 to B2 closes a loop.
        let mut g = grid();
        g.line.push_str("L2;B1_l;B2_l;NAYY;0.1;100;LV9;7\n");
        let e = import(&g).unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("Line.csv", Some(3)));
        assert!(e.message.contains("L2 closes a loop"), "{e}");
        // A line whose two ends are switched to one busbar joins the bus to itself.
        let mut g = grid();
        g.line = g.line.replace("L1;B1_l;B2_l", "L1;B1_l;B1_t");
        let e = import(&g).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("Line.csv, line 2: L1 joins bus B1 to itself"),
            "{e}"
        );
    }

    #[test]
    fn malformed_rows_are_refused_naming_file_line_and_column() {
        type Change = fn(&mut SimbenchDir);
        let cases: Vec<(Change, &str)> = vec![
            (
                |g| g.load = g.load.replace("0.0045", "lots"),
                "Load.csv, line 2, column pLoad: not a number: \"lots\"",
            ),
            (
                |g| g.load = g.load.replace("house;B2", "house;B9"),
                "Load.csv, line 2, column node: no node \"B9\" in Node.csv",
            ),
            (
                |g| g.line = g.line.replace(";NAYY;", ";NA2XS;"),
                "Line.csv, line 2, column type: no line type \"NA2XS\" in LineType.csv",
            ),
            (
                |g| g.line_type = g.line_type.replace("iMax", "imax"),
                "LineType.csv, line 1: no column \"iMax\"",
            ),
            (
                |g| g.res = g.res.replace("pv;B1", "house;B1"),
                "RES.csv, line 2, column id: \"house\" is already a site (Load.csv, line 2)",
            ),
            (
                |g| {
                    g.switch = g
                        .switch
                        .replace("LS;1;NULL;LV9;7\nS1", "LS;yes;NULL;LV9;7\nS1")
                },
                "Switch.csv, line 2, column cond: \"yes\"; give 1 (closed) or 0 (open)",
            ),
            (
                |g| g.external_net.push_str("grid2;B2;vavm\n"),
                "ExternalNet.csv, line 3: a second external grid: a radial feeder has one connection upstream",
            ),
            (
                |g| g.load = g.load.replace("shop;B2;G0-A;0.01", "shop;B2;G0-A;-0.01"),
                "Load.csv, line 3, column pLoad: -0.01 MW; give a power from 0 to 10⁶ MW",
            ),
        ];
        for (change, want) in cases {
            let mut g = grid();
            change(&mut g);
            assert_eq!(import(&g).unwrap_err().to_string(), want);
        }
    }

    #[test]
    fn profiles_scale_peaks_and_ratings_row_by_row() {
        let m = import(&grid()).unwrap();
        let load = "time;H0-A_qload;H0-A_pload;G0-A_pload\n01.01.2016 00:00;0.1;0.5;0.25\n01.01.2016 00:15;0;1;0.0001\n";
        let res = "time;PV1\n01.01.2016 00:00;0\n01.01.2016 00:15;0.5\n";
        let p = Profiles::parse(&m, load, res).unwrap();
        assert_eq!(p.rows, 2);
        // house 4,500 W × 0.5 = 2,250; shop 10,000 × 0.25 = 2,500; then 4,500 and 1 W.
        assert_eq!(m.site_power(&p, 0, 0), Some((Watts(2_250), Watts(0))));
        assert_eq!(m.site_power(&p, 1, 1), Some((Watts(1), Watts(0))));
        // pv 12,346 W × 0.5 = 6,173.
        assert_eq!(m.site_power(&p, 2, 1), Some((Watts(0), Watts(6_173))));
        assert_eq!(m.site_power(&p, 2, 2), None);
        let e = Profiles::parse(&m, &load.replace("G0-A_pload", "G1-A_pload"), res).unwrap_err();
        assert_eq!(
            e.to_string(),
            "LoadProfile.csv, line 1: no column \"G0-A_pload\", which a load or generator names as its profile"
        );
        let e = Profiles::parse(&m, load, &res.replace(";0.5", ";x")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "RESProfile.csv, line 3, column PV1: not a number: \"x\""
        );
    }
}
