//! The JSON market file and result: decimal kW and currency/MWh at the boundary.
//!
//! [`parse_market`] turns the text of a market file into a validated [`Market`];
//! [`clearing_to_json`] writes a result; [`market_to_json`] writes a market file (used by the
//! generator). Powers are read in kW and kept to 1 W, prices in currency/MWh and kept to
//! 1 µ/MWh (10⁻⁶ currency/MWh), each decimal rounded half away from zero as written
//! (see `decimal`). Results are exact at that resolution; welfare is written to 10⁻⁶
//! currency/h.
//!
//! Invariant: no input makes the parser panic. Every error is one line naming the problem and
//! where: a line and column for malformed JSON, otherwise the node or bid (its position in the
//! file, its id, its line) and the field.

use crate::clear::Clearing;
use crate::curve::{Curve, CurveError, Point};
use crate::decimal::{from_fixed, to_fixed};
use crate::limits::{FILE_BYTES_MAX, LIMIT_MAX, POWER_ABS_MAX, PRICE_ABS_MAX};
use crate::market::{Bid, DEFAULT_PRICE_CAP, DEFAULT_PRICE_FLOOR, Market, MarketError, Node};
use bcte_types::{Price, Watts};
use core::fmt;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Decimals of kW kept: 1 W.
const KW_DECIMALS: u32 = 3;
/// Decimals of currency/MWh kept: 1 µ/MWh.
const PRICE_DECIMALS: u32 = 6;

/// Why a market file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file is larger than [`FILE_BYTES_MAX`].
    #[error("the file has {len} bytes, more than the limit of {max}", max = FILE_BYTES_MAX)]
    TooLarge {
        /// Its size.
        len: usize,
    },
    /// Malformed JSON, or a top-level field missing, unknown or of the wrong type.
    #[error("line {line} column {column}: {message}")]
    Json {
        /// Line (from 1).
        line: usize,
        /// Column (from 1).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A top-level field has a bad value.
    #[error("field {field}: {message}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A node or bid is malformed or has a bad value.
    #[error("{item}{}: {message}", field.map(|f| format!(", field {f}")).unwrap_or_default())]
    Item {
        /// Which node or bid.
        item: ItemRef,
        /// The field at fault, if one is.
        field: Option<&'static str>,
        /// What is wrong.
        message: String,
    },
    /// The market breaks a rule of the model (not a tree, unknown node, duplicate id...).
    #[error(transparent)]
    Market(#[from] MarketError),
    /// A curve has no point form and cannot be written to a market file.
    #[error("bid {0:?}: its aggregated curve has no point form")]
    NotWritable(String),
    /// The output could not be serialised.
    #[error("cannot write the output: {0}")]
    Output(String),
}

/// Where a node or bid sits in the file.
#[derive(Clone, Debug)]
pub struct ItemRef {
    /// `node` or `bid`.
    pub kind: &'static str,
    /// Position in its list (from 0).
    pub index: usize,
    /// Its id, when it could be read.
    pub id: Option<String>,
    /// Line where it starts (from 1).
    pub line: usize,
}

impl fmt::Display for ItemRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = if self.kind == "node" { "nodes" } else { "bids" };
        match &self.id {
            Some(id) => write!(
                f,
                "{} {id:?} ({list}[{}], line {})",
                self.kind, self.index, self.line
            ),
            None => write!(f, "{list}[{}] (line {})", self.index, self.line),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile<'a> {
    #[serde(default)]
    price_floor: Option<f64>,
    #[serde(default)]
    price_cap: Option<f64>,
    #[serde(borrow)]
    nodes: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    bids: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: String,
    #[serde(default)]
    parent: Option<String>,
    #[serde(default)]
    import_limit_kw: Option<f64>,
    #[serde(default)]
    export_limit_kw: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBid {
    id: String,
    node: String,
    curve: Vec<(f64, f64)>,
}

/// Reads just the id of an item, ignoring everything else, to name it in errors.
#[derive(Deserialize)]
struct IdOnly {
    id: Option<String>,
}

/// Line and column (from 1) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, column)
}

/// A serde_json error's message without its " at line L column C" suffix.
fn bare_message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(i) if err.line() > 0 => text[..i].to_owned(),
        _ => text,
    }
}

struct Item<'t> {
    text: &'t str,
    raw: &'t RawValue,
    kind: &'static str,
    index: usize,
    id: Option<String>,
}

impl<'t> Item<'t> {
    fn new(text: &'t str, raw: &'t RawValue, kind: &'static str, index: usize) -> Self {
        let id = serde_json::from_str::<IdOnly>(raw.get())
            .ok()
            .and_then(|i| i.id);
        Self {
            text,
            raw,
            kind,
            index,
            id,
        }
    }

    fn offset(&self) -> usize {
        (self.raw.get().as_ptr() as usize).saturating_sub(self.text.as_ptr() as usize)
    }

    fn reference(&self) -> ItemRef {
        let (line, _) = line_col(self.text, self.offset());
        ItemRef {
            kind: self.kind,
            index: self.index,
            id: self.id.clone(),
            line,
        }
    }

    fn error(&self, field: Option<&'static str>, message: impl Into<String>) -> FileError {
        FileError::Item {
            item: self.reference(),
            field,
            message: message.into(),
        }
    }

    fn json_error(&self, err: &serde_json::Error) -> FileError {
        let mut item = self.reference();
        if err.line() > 1 {
            item.line += err.line() - 1;
        }
        FileError::Item {
            item,
            field: None,
            message: bare_message(err),
        }
    }
}

fn price_from(x: f64) -> Result<Price, String> {
    match to_fixed(x, PRICE_DECIMALS) {
        Some(v) if v.unsigned_abs() <= PRICE_ABS_MAX.0.unsigned_abs() => Ok(Price(v)),
        _ => Err(format!(
            "price {x} is not a number within ±{} currency/MWh",
            from_fixed(PRICE_ABS_MAX.0.into(), PRICE_DECIMALS)
        )),
    }
}

fn power_from(x: f64) -> Result<Watts, String> {
    match to_fixed(x, KW_DECIMALS) {
        Some(v) if v.unsigned_abs() <= POWER_ABS_MAX.0.unsigned_abs() => Ok(Watts(v)),
        _ => Err(format!(
            "power {x} kW is not a number within ±{} kW",
            from_fixed(POWER_ABS_MAX.0.into(), KW_DECIMALS)
        )),
    }
}

fn limit_from(x: f64) -> Result<Watts, String> {
    match to_fixed(x, KW_DECIMALS) {
        Some(v) if v < 0 => Err(format!("negative limit {x} kW")),
        Some(v) if v <= LIMIT_MAX.0 => Ok(Watts(v)),
        _ => Err(format!(
            "limit {x} kW is not a number within [0, {}] kW",
            from_fixed(LIMIT_MAX.0.into(), KW_DECIMALS)
        )),
    }
}

/// Parses and validates a market file. See the [module documentation](self).
pub fn parse_market(text: &str) -> Result<Market, FileError> {
    if text.len() > FILE_BYTES_MAX {
        return Err(FileError::TooLarge { len: text.len() });
    }
    let raw: RawFile<'_> = serde_json::from_str(text).map_err(|e| FileError::Json {
        line: e.line(),
        column: e.column(),
        message: bare_message(&e),
    })?;
    let bound = |value: Option<f64>, field: &'static str, default: Price| match value {
        None => Ok(default),
        Some(x) => price_from(x).map_err(|message| FileError::Field { field, message }),
    };
    let floor = bound(raw.price_floor, "price_floor", DEFAULT_PRICE_FLOOR)?;
    let cap = bound(raw.price_cap, "price_cap", DEFAULT_PRICE_CAP)?;
    if floor >= cap {
        return Err(FileError::Market(MarketError::FloorNotBelowCap {
            floor,
            cap,
        }));
    }

    let mut nodes = Vec::with_capacity(raw.nodes.len());
    for (index, value) in raw.nodes.iter().enumerate() {
        let item = Item::new(text, value, "node", index);
        let node: RawNode = serde_json::from_str(value.get()).map_err(|e| item.json_error(&e))?;
        let limit = |x: Option<f64>, field| {
            x.map(limit_from)
                .transpose()
                .map_err(|message| item.error(Some(field), message))
        };
        nodes.push(Node {
            import_limit: limit(node.import_limit_kw, "import_limit_kw")?,
            export_limit: limit(node.export_limit_kw, "export_limit_kw")?,
            id: node.id,
            parent: node.parent,
        });
    }

    let mut bids = Vec::with_capacity(raw.bids.len());
    let mut points = Vec::new();
    for (index, value) in raw.bids.iter().enumerate() {
        let item = Item::new(text, value, "bid", index);
        let bid: RawBid = serde_json::from_str(value.get()).map_err(|e| item.json_error(&e))?;
        points.clear();
        for (j, &(price, power)) in bid.curve.iter().enumerate() {
            let at = |message: String| item.error(Some("curve"), format!("point {j}: {message}"));
            let price = price_from(price).map_err(at)?;
            if price < floor || price > cap {
                return Err(at(format!(
                    "price {} is outside [price_floor, price_cap] = [{}, {}]",
                    from_fixed(price.0.into(), PRICE_DECIMALS),
                    from_fixed(floor.0.into(), PRICE_DECIMALS),
                    from_fixed(cap.0.into(), PRICE_DECIMALS),
                )));
            }
            points.push(Point {
                price,
                power: power_from(power).map_err(at)?,
            });
        }
        let curve = Curve::from_points(&points).map_err(|e| {
            let message = match e {
                CurveError::Empty => "the curve has no points".to_owned(),
                CurveError::PriceFalls { index } => format!(
                    "point {index}: price {} falls below the previous point's {}",
                    bid.curve[index].0,
                    bid.curve[index - 1].0
                ),
                CurveError::PowerRises { index } => format!(
                    "point {index}: power {} kW rises above the previous point's {} kW",
                    bid.curve[index].1,
                    bid.curve[index - 1].1
                ),
                other => other.to_string(),
            };
            item.error(Some("curve"), message)
        })?;
        bids.push(Bid {
            id: bid.id,
            node: bid.node,
            curve,
        });
    }
    Ok(Market::new(floor, cap, nodes, bids)?)
}

/// Entries of a JSON object written in the given order.
struct Entries<'a>(Vec<(&'a str, f64)>);

impl Serialize for Entries<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct ResultFile<'a> {
    prices: Entries<'a>,
    allocations: Entries<'a>,
    flows: Entries<'a>,
    shed_kw: Entries<'a>,
    spilled_kw: Entries<'a>,
    welfare: f64,
    stats: Stats,
}

#[derive(Serialize)]
struct Stats {
    clear_ms: f64,
}

/// Writes a clearing as the JSON result of `bcte clear`, entries in the market's order.
/// `clear_ms` is the time the clearing took, measured by the caller.
pub fn clearing_to_json(
    market: &Market,
    clearing: &Clearing,
    clear_ms: f64,
) -> Result<String, FileError> {
    let nodes = market.nodes();
    let kw = |w: Watts| from_fixed(w.0.into(), KW_DECIMALS);
    let nonzero = |values: &[Watts]| {
        Entries(
            nodes
                .iter()
                .zip(values)
                .filter(|(_, w)| !w.is_zero())
                .map(|(n, &w)| (n.id.as_str(), kw(w)))
                .collect(),
        )
    };
    let result = ResultFile {
        prices: Entries(
            nodes
                .iter()
                .zip(&clearing.prices)
                .map(|(n, p)| (n.id.as_str(), from_fixed(p.0.into(), PRICE_DECIMALS)))
                .collect(),
        ),
        allocations: Entries(
            market
                .bids()
                .iter()
                .zip(&clearing.allocations)
                .map(|(b, &w)| (b.id.as_str(), kw(w)))
                .collect(),
        ),
        flows: Entries(
            nodes
                .iter()
                .zip(&clearing.flows)
                .filter(|(n, _)| n.parent.is_some())
                .map(|(n, &w)| (n.id.as_str(), kw(w)))
                .collect(),
        ),
        shed_kw: nonzero(&clearing.shed),
        spilled_kw: nonzero(&clearing.spilled),
        welfare: from_fixed(clearing.welfare.micro_per_hour(), 6),
        stats: Stats {
            clear_ms: (clear_ms * 1000.0).round() / 1000.0,
        },
    };
    let mut out =
        serde_json::to_string_pretty(&result).map_err(|e| FileError::Output(e.to_string()))?;
    out.push('\n');
    Ok(out)
}

#[derive(Serialize)]
struct MarketFileOut<'a> {
    price_floor: f64,
    price_cap: f64,
    nodes: Vec<NodeOut<'a>>,
    bids: Vec<BidOut<'a>>,
}

#[derive(Serialize)]
struct NodeOut<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    import_limit_kw: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    export_limit_kw: Option<f64>,
}

#[derive(Serialize)]
struct BidOut<'a> {
    id: &'a str,
    node: &'a str,
    curve: Vec<(f64, f64)>,
}

/// Writes a market as a market file, one node or bid per line. Fails for an aggregated curve
/// without a point form.
pub fn market_to_json(market: &Market) -> Result<String, FileError> {
    let kw = |w: Watts| from_fixed(w.0.into(), KW_DECIMALS);
    let price = |p: Price| from_fixed(p.0.into(), PRICE_DECIMALS);
    let file = MarketFileOut {
        price_floor: price(market.price_floor()),
        price_cap: price(market.price_cap()),
        nodes: market
            .nodes()
            .iter()
            .map(|n| NodeOut {
                id: &n.id,
                parent: n.parent.as_deref(),
                import_limit_kw: n.import_limit.map(kw),
                export_limit_kw: n.export_limit.map(kw),
            })
            .collect(),
        bids: market
            .bids()
            .iter()
            .map(|b| {
                let points = b
                    .curve
                    .to_points(
                        market
                            .price_floor()
                            .max(Price::ZERO)
                            .min(market.price_cap()),
                    )
                    .ok_or_else(|| FileError::NotWritable(b.id.clone()))?;
                Ok(BidOut {
                    id: &b.id,
                    node: &b.node,
                    curve: points
                        .iter()
                        .map(|p| (price(p.price), kw(p.power)))
                        .collect(),
                })
            })
            .collect::<Result<_, FileError>>()?,
    };
    // One item per line: readable, diffable, and still fast to parse.
    let mut out = String::with_capacity(64 * (file.nodes.len() + file.bids.len()) + 64);
    out.push_str(&format!(
        "{{\n  \"price_floor\": {},\n  \"price_cap\": {},\n  \"nodes\": [\n",
        to_line(&file.price_floor)?,
        to_line(&file.price_cap)?
    ));
    for (i, node) in file.nodes.iter().enumerate() {
        let sep = if i + 1 < file.nodes.len() { "," } else { "" };
        out.push_str(&format!("    {}{sep}\n", to_line(node)?));
    }
    out.push_str("  ],\n  \"bids\": [\n");
    for (i, bid) in file.bids.iter().enumerate() {
        let sep = if i + 1 < file.bids.len() { "," } else { "" };
        out.push_str(&format!("    {}{sep}\n", to_line(bid)?));
    }
    out.push_str("  ]\n}\n");
    Ok(out)
}

/// A value as compact JSON on one line.
fn to_line<T: Serialize>(value: &T) -> Result<String, FileError> {
    serde_json::to_string(value).map_err(|e| FileError::Output(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_item_its_line_and_the_field() {
        let text = "{\"nodes\": [{\"id\": \"r\"},\n {\"id\": \"t1\", \"parent\": \"r\", \"import_limit_kw\": -5}]}";
        let err = parse_market(text).unwrap_err().to_string();
        assert_eq!(
            err,
            "node \"t1\" (nodes[1], line 2), field import_limit_kw: negative limit -5 kW"
        );
        let text = "{\"nodes\": [{\"id\": \"r\"}],\n\"bids\": [\n{\"id\": \"b\", \"node\": \"r\",\n \"colour\": 1, \"curve\": [[0, 1]]}]}";
        let err = parse_market(text).unwrap_err().to_string();
        assert!(
            err.starts_with("bid \"b\" (bids[0], line 4): unknown field `colour`"),
            "{err}"
        );
    }

    #[test]
    fn item_offsets_are_found_in_the_text() {
        let text = "{\"nodes\":[{\"id\":\"r\"}],\"bids\":[{\"id\":\"b\",\"node\":\"r\",\"curve\":[[1,2],[0,1]]}]}";
        let err = parse_market(text).unwrap_err().to_string();
        assert_eq!(
            err,
            "bid \"b\" (bids[0], line 1), field curve: point 1: price 0 falls below the previous point's 1"
        );
    }
}
