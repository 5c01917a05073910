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
use crate::market::{
    Bid, DEFAULT_PRICE_CAP, DEFAULT_PRICE_FLOOR, Market, MarketError, Node, PRIORITY_CLASSES,
};
use bcte_units::{Price, Watts};
use core::fmt;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

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
    /// Malformed JSON, or a file that is not an object.
    #[error("line {line} column {column}: {message}")]
    Json {
        /// Line (from 1).
        line: usize,
        /// Column (from 1).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A top-level field is missing, unknown, repeated or has a bad value.
    #[error("field {field} (line {line}): {message}")]
    Field {
        /// The field.
        field: &'static str,
        /// Line of its value (from 1), or 1.
        line: usize,
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
    /// Line of the field at fault, or where the item starts (from 1).
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

/// An object key, borrowed from the text unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The fields of one JSON object in file order, values left unparsed, so that every error can
/// name its field and duplicate keys are seen.
struct Fields<'a>(Vec<(Key<'a>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::new();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    fields.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// A field's value, or why it is not of the expected type.
fn field_value<'a, T: Deserialize<'a>>(raw: &'a RawValue) -> Result<T, String> {
    serde_json::from_str(raw.get()).map_err(|e| bare_message(&e))
}

/// Why an object's fields were refused: the field (if known), where, and what is wrong.
type FieldsError<'a> = (Option<&'static str>, &'a RawValue, String);

/// Sorts an object's fields into `names` (one slot per allowed name), refusing unknown and
/// duplicate keys.
fn sort_fields<'a, const N: usize>(
    fields: Fields<'a>,
    names: [&'static str; N],
) -> Result<[Option<&'a RawValue>; N], FieldsError<'a>> {
    let mut slots = [None; N];
    for (key, value) in fields.0 {
        let Some(i) = names.iter().position(|n| *n == key.0) else {
            let expected: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            let message = format!(
                "unknown field `{}`, expected one of {}",
                key.0,
                expected.join(", ")
            );
            return Err((None, value, message));
        };
        if slots[i].replace(value).is_some() {
            return Err((Some(names[i]), value, "the field appears twice".to_owned()));
        }
    }
    Ok(slots)
}

/// A JSON syntax error, saying so plainly when the culprit is a NaN or an infinity (which JSON
/// cannot express, and which the parser otherwise reports as an unexpected character).
fn syntax_error(text: &str, err: &serde_json::Error) -> FileError {
    // serde_json counts columns from 1 but reports 0 before it has read a character.
    let (line, column) = (err.line().max(1), err.column().max(1));
    let start = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum::<usize>()
        + column.saturating_sub(1);
    let around: String = text
        .get(start.saturating_sub(2).min(text.len())..)
        .unwrap_or("")
        .chars()
        .take(12)
        .collect::<String>()
        .to_ascii_lowercase();
    let message = if around.contains("nan") || around.contains("inf") {
        "not a number: NaN and infinity cannot be written in JSON".to_owned()
    } else {
        bare_message(err)
    };
    FileError::Json {
        line,
        column,
        message,
    }
}

/// Line and column (from 1) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, column)
}

/// Byte offset of a borrowed slice in the text it was parsed from.
fn offset_in(text: &str, part: &str) -> usize {
    (part.as_ptr() as usize).saturating_sub(text.as_ptr() as usize)
}

/// A serde_json error's message without its " at line L column C" suffix.
fn bare_message(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(i) if err.line() > 0 => text[..i].to_owned(),
        _ => text,
    }
}

/// A node or bid being read: where it is, for errors.
struct Item<'t> {
    text: &'t str,
    raw: &'t RawValue,
    kind: &'static str,
    index: usize,
    id: Option<String>,
}

impl<'t> Item<'t> {
    /// An error about the item, at the line of `at` (a field) or of the item.
    fn error(
        &self,
        field: Option<&'static str>,
        at: Option<&RawValue>,
        message: impl Into<String>,
    ) -> FileError {
        let part = at.unwrap_or(self.raw).get();
        let (line, _) = line_col(self.text, offset_in(self.text, part));
        let item = ItemRef {
            kind: self.kind,
            index: self.index,
            id: self.id.clone(),
            line,
        };
        FileError::Item {
            item,
            field,
            message: message.into(),
        }
    }

    /// Reads the item's fields into `names` (the first is its id), keeping the id for errors.
    fn fields<const N: usize>(
        &mut self,
        names: [&'static str; N],
    ) -> Result<[Option<&'t RawValue>; N], FileError> {
        let fields: Fields<'t> = serde_json::from_str(self.raw.get())
            .map_err(|e| self.error(None, None, bare_message(&e)))?;
        if let Some((_, id)) = fields.0.iter().find(|(key, _)| key.0 == names[0]) {
            self.id = field_value::<String>(id).ok();
        }
        sort_fields(fields, names)
            .map_err(|(field, at, message)| self.error(field, Some(at), message))
    }

    /// A required field.
    fn required<T: Deserialize<'t>>(
        &self,
        name: &'static str,
        raw: Option<&'t RawValue>,
    ) -> Result<T, FileError> {
        let raw = raw.ok_or_else(|| self.error(Some(name), None, "the field is missing"))?;
        field_value(raw).map_err(|message| self.error(Some(name), Some(raw), message))
    }

    /// An optional field (`null` is absent).
    fn optional<T: Deserialize<'t>>(
        &self,
        name: &'static str,
        raw: Option<&'t RawValue>,
    ) -> Result<Option<T>, FileError> {
        match raw {
            None => Ok(None),
            Some(raw) => {
                field_value(raw).map_err(|message| self.error(Some(name), Some(raw), message))
            }
        }
    }
}

/// A price in currency/MWh as written, to 1 µ/MWh (rounded half away from zero, MR-1.1), or
/// why it is not one.
pub fn price_from(x: f64) -> Result<Price, String> {
    match to_fixed(x, PRICE_DECIMALS) {
        Some(v) if v.unsigned_abs() <= PRICE_ABS_MAX.0.unsigned_abs() => Ok(Price(v)),
        _ => Err(format!(
            "price {x} is not a number within ±{} currency/MWh",
            from_fixed(PRICE_ABS_MAX.0.into(), PRICE_DECIMALS)
        )),
    }
}

/// A power in kW as written, to 1 W (rounded half away from zero, MR-1.1), or why it is not
/// one.
pub fn power_from(x: f64) -> Result<Watts, String> {
    match to_fixed(x, KW_DECIMALS) {
        Some(v) if v.unsigned_abs() <= POWER_ABS_MAX.0.unsigned_abs() => Ok(Watts(v)),
        _ => Err(format!(
            "power {x} kW is not a number within ±{} kW",
            from_fixed(POWER_ABS_MAX.0.into(), KW_DECIMALS)
        )),
    }
}

/// An edge limit in kW as written, to 1 W, or why it is not one (negative, too large).
pub fn limit_from(x: f64) -> Result<Watts, String> {
    match to_fixed(x, KW_DECIMALS) {
        Some(v) if v < 0 => Err(format!("negative limit {x} kW")),
        Some(v) if v <= LIMIT_MAX.0 => Ok(Watts(v)),
        _ => Err(format!(
            "limit {x} kW is not a number within [0, {}] kW",
            from_fixed(LIMIT_MAX.0.into(), KW_DECIMALS)
        )),
    }
}

/// A power in kW, exact at the engine's resolution (1 W).
pub fn kw(w: Watts) -> f64 {
    from_fixed(w.0.into(), KW_DECIMALS)
}

/// A price in currency/MWh, exact at the engine's resolution (1 µ/MWh).
pub fn per_mwh(p: Price) -> f64 {
    from_fixed(p.0.into(), PRICE_DECIMALS)
}

/// A welfare in currency/h, to 10⁻⁶ currency/h (MR-4).
pub fn welfare_per_hour(w: crate::clear::Welfare) -> f64 {
    from_fixed(w.micro_per_hour(), 6)
}

/// Parses and validates a market file. See the [module documentation](self).
pub fn parse_market(text: &str) -> Result<Market, FileError> {
    if text.len() > FILE_BYTES_MAX {
        return Err(FileError::TooLarge { len: text.len() });
    }
    let fields: Fields<'_> = serde_json::from_str(text).map_err(|e| syntax_error(text, &e))?;
    let top_error = |field: &'static str, at: Option<&RawValue>, message: String| {
        let line = at.map_or(1, |raw| line_col(text, offset_in(text, raw.get())).0);
        FileError::Field {
            field,
            line,
            message,
        }
    };
    let [floor_raw, cap_raw, nodes_raw, bids_raw] =
        sort_fields(fields, ["price_floor", "price_cap", "nodes", "bids"]).map_err(
            |(field, at, message)| match field {
                Some(field) => top_error(field, Some(at), message),
                None => {
                    let (line, column) = line_col(text, offset_in(text, at.get()));
                    FileError::Json {
                        line,
                        column,
                        message,
                    }
                }
            },
        )?;
    let bound = |field: &'static str, raw: Option<&RawValue>, default: Price| match raw {
        None => Ok(default),
        Some(raw) => match field_value::<Option<f64>>(raw) {
            Ok(None) => Ok(default),
            Ok(Some(x)) => price_from(x).map_err(|message| top_error(field, Some(raw), message)),
            Err(message) => Err(top_error(field, Some(raw), message)),
        },
    };
    let floor = bound("price_floor", floor_raw, DEFAULT_PRICE_FLOOR)?;
    let cap = bound("price_cap", cap_raw, DEFAULT_PRICE_CAP)?;
    let decimal = |p: Price| from_fixed(p.0.into(), PRICE_DECIMALS);
    if floor >= cap {
        let message = format!(
            "price_floor {} is not below price_cap {}",
            decimal(floor),
            decimal(cap)
        );
        return Err(top_error("price_floor", floor_raw, message));
    }
    let raw_nodes: Vec<&RawValue> = match nodes_raw {
        None => return Err(top_error("nodes", None, "the field is missing".to_owned())),
        Some(raw) => field_value(raw).map_err(|message| top_error("nodes", Some(raw), message))?,
    };
    let raw_bids: Vec<&RawValue> = match bids_raw {
        None => Vec::new(),
        Some(raw) => field_value(raw).map_err(|message| top_error("bids", Some(raw), message))?,
    };

    let mut nodes = Vec::with_capacity(raw_nodes.len());
    for (index, &raw) in raw_nodes.iter().enumerate() {
        let mut item = Item {
            text,
            raw,
            kind: "node",
            index,
            id: None,
        };
        let [id, parent, import, export] =
            item.fields(["id", "parent", "import_limit_kw", "export_limit_kw"])?;
        let limit = |name, raw: Option<&RawValue>| -> Result<Option<Watts>, FileError> {
            match item.optional::<f64>(name, raw)? {
                None => Ok(None),
                Some(x) => limit_from(x)
                    .map(Some)
                    .map_err(|message| item.error(Some(name), raw, message)),
            }
        };
        nodes.push(Node {
            id: item.required("id", id)?,
            parent: item.optional("parent", parent)?,
            import_limit: limit("import_limit_kw", import)?,
            export_limit: limit("export_limit_kw", export)?,
        });
    }

    let mut bids = Vec::with_capacity(raw_bids.len());
    let mut points = Vec::new();
    for (index, &raw) in raw_bids.iter().enumerate() {
        let mut item = Item {
            text,
            raw,
            kind: "bid",
            index,
            id: None,
        };
        let [id, node, curve_raw, priority_raw] =
            item.fields(["id", "node", "curve", "priority"])?;
        let id: String = item.required("id", id)?;
        let node: String = item.required("node", node)?;
        let priority = match item.optional::<u64>("priority", priority_raw)? {
            None => 0,
            Some(p) if p < u64::from(PRIORITY_CLASSES) => p as u8,
            Some(p) => {
                return Err(item.error(
                    Some("priority"),
                    priority_raw,
                    format!(
                        "priority {p} is not a class from 0 to {}",
                        PRIORITY_CLASSES - 1
                    ),
                ));
            }
        };
        let curve: Vec<(f64, f64)> = item.required("curve", curve_raw)?;
        let curve_error = |message: String| item.error(Some("curve"), curve_raw, message);
        points.clear();
        for (j, &(price, power)) in curve.iter().enumerate() {
            let at = |message: String| curve_error(format!("point {j}: {message}"));
            let price = price_from(price).map_err(at)?;
            if price < floor || price > cap {
                return Err(at(format!(
                    "price {} is outside [price_floor, price_cap] = [{}, {}]",
                    decimal(price),
                    decimal(floor),
                    decimal(cap),
                )));
            }
            points.push(Point {
                price,
                power: power_from(power).map_err(at)?,
            });
        }
        let parsed = Curve::from_points(&points).map_err(|e| {
            curve_error(match e {
                CurveError::Empty => "the curve has no points".to_owned(),
                CurveError::PriceFalls { index } => format!(
                    "point {index}: price {} falls below the previous point's {}",
                    curve[index].0,
                    curve[index - 1].0
                ),
                CurveError::PowerRises { index } => format!(
                    "point {index}: power {} kW rises above the previous point's {} kW",
                    curve[index].1,
                    curve[index - 1].1
                ),
                other => other.to_string(),
            })
        })?;
        bids.push(Bid {
            id,
            node,
            curve: parsed,
            priority,
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
    bid_shed_kw: Entries<'a>,
    bid_spilled_kw: Entries<'a>,
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
    let nonzero_bids = |values: &[Watts]| {
        Entries(
            market
                .bids()
                .iter()
                .zip(values)
                .filter(|(_, w)| !w.is_zero())
                .map(|(b, &w)| (b.id.as_str(), kw(w)))
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
        bid_shed_kw: nonzero_bids(&clearing.bid_shed),
        bid_spilled_kw: nonzero_bids(&clearing.bid_spilled),
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
    #[serde(skip_serializing_if = "is_default_priority")]
    priority: u8,
}

fn is_default_priority(p: &u8) -> bool {
    *p == 0
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
                    priority: b.priority,
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
    fn nan_and_infinity_are_named() {
        for text in [
            "{\"nodes\": NaN}",
            "{\"nodes\": [1, -Infinity]}",
            "{\"nodes\":\n  inf}",
        ] {
            let err = parse_market(text).unwrap_err().to_string();
            assert!(
                err.ends_with("not a number: NaN and infinity cannot be written in JSON"),
                "{err}"
            );
        }
        let err = parse_market("{\"nodes\": 1e999}").unwrap_err().to_string();
        assert_eq!(err, "field nodes (line 1): number out of range");
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
