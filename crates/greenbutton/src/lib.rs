//! Green Button (NAESB REQ.21 ESPI) meter-data files: what utilities hand their customers and
//! third parties as an Atom feed of linked resources.
//!
//! [`parse`] reads a feed (or a single entry) into [`Series`]: one per `MeterReading`, with its
//! `ReadingType`, the `UsagePoint` and `LocalTimeParameters` it belongs to, and every
//! `IntervalReading` of the `IntervalBlock`s linked to it, sorted by time. Entries are linked
//! the way the standard says (an `IntervalBlock`'s `up` link is one of its `MeterReading`'s
//! `related` links, which also names its `ReadingType`'s `self`) and the ways real exports bend
//! it (a `related` link straight to the block, a back-link from the block, hosts that differ
//! between links), see `docs/greenbutton.md`. [`Series::summary`] checks a series (gaps,
//! overlaps, duplicates, quality flags, block order) and totals it exactly (integers, and the
//! scaled decimal written from them, never through a float). [`convert`] turns electricity
//! series into a market's interval readings in Wh by the numbered rules GB-1 to GB-6.
//!
//! Pure: text in, values out; no file, clock or network. A usage point's address, title or
//! any other personal field is never read: only hrefs, codes and numbers.

pub mod convert;

use roxmltree::{Document, Node, ParsingOptions};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use thiserror::Error;

/// Why a file is not a Green Button feed this crate can read: the element and where.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{element} at line {line}, column {column}: {message}")]
pub struct GbError {
    /// The element (or `document` for XML that does not parse).
    pub element: String,
    /// Its line (1-based).
    pub line: u32,
    /// Its column (1-based).
    pub column: u32,
    /// What is wrong.
    pub message: String,
}

impl GbError {
    fn at(node: Node<'_, '_>, message: impl Into<String>) -> Self {
        let pos = node.document().text_pos_at(node.range().start);
        Self {
            element: node.tag_name().name().to_owned(),
            line: pos.row,
            column: pos.col,
            message: message.into(),
        }
    }
}

/// One `IntervalReading`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reading {
    /// Its start, seconds since the Unix epoch (UTC).
    pub start: i64,
    /// Its length in seconds.
    pub duration: u32,
    /// Its value, in the reading type's unit × 10^multiplier.
    pub value: i64,
    /// Its cost in 10⁻⁵ of the currency, if given.
    pub cost: Option<i64>,
    /// Its `ReadingQuality` codes.
    pub quality: Vec<u32>,
}

impl Reading {
    /// Its end, seconds since the Unix epoch.
    pub fn end(&self) -> i64 {
        self.start + i64::from(self.duration)
    }
}

/// A `ReadingType`'s codes (ESPI/CIM enumerations; absent ones `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReadingType {
    /// Commodity: 1 electricity (secondary metered), 2 electricity (primary metered), 7 natural
    /// gas, 4 potable water, ...
    pub commodity: Option<u32>,
    /// Unit of measure: 72 Wh, 38 W, 73 VArh, 169 therm, 42 m³, ...
    pub uom: Option<u32>,
    /// The values' power of ten (0 when absent).
    pub power_of_ten_multiplier: i32,
    /// 1 forward (delivered to the customer), 19 reverse (received from the customer), 4 net,
    /// ...
    pub flow_direction: Option<u32>,
    /// The nominal interval length in seconds.
    pub interval_length: Option<u32>,
    /// ISO 4217 numeric currency code (840 USD, 124 CAD, 978 EUR, ...).
    pub currency: Option<u32>,
    /// Measurement kind (12 energy, 8 demand, 58 volume, ...).
    pub kind: Option<u32>,
    /// Accumulation behaviour (4 delta data, 1 bulk quantity, 3 cumulative, ...).
    pub accumulation_behaviour: Option<u32>,
}

/// The order of a series' blocks in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockOrder {
    /// One block.
    Single,
    /// Oldest first.
    Ascending,
    /// Newest first.
    Descending,
    /// Neither.
    Unordered,
}

/// One `MeterReading` and everything linked to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    /// The usage point's `self` href, if the file has one linked (an identifier; its address
    /// and title are never read).
    pub usage_point: Option<String>,
    /// The usage point's `ServiceCategory/kind`: 0 electricity, 1 gas, 2 water, ...
    pub service_kind: Option<u32>,
    /// The meter reading's `self` href.
    pub meter_reading: String,
    /// Its reading type.
    pub reading_type: ReadingType,
    /// The standard time offset of the usage point's `LocalTimeParameters` (s east of UTC).
    pub tz_offset_s: Option<i64>,
    /// Its readings, sorted by start then duration (duplicates kept).
    pub readings: Vec<Reading>,
    /// Its `IntervalBlock`s.
    pub blocks: usize,
    /// The blocks' order in the file.
    pub block_order: BlockOrder,
}

/// What a file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    /// One series per meter reading, in the order of the file.
    pub series: Vec<Series>,
}

/// A gap between two readings of a series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// Where it starts (UTC, RFC 3339).
    pub from: String,
    /// Where it ends.
    pub to: String,
    /// Its length.
    pub seconds: i64,
}

/// A checked and totalled series: what `bcte meter greenbutton` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The usage point's href.
    pub usage_point: Option<String>,
    /// The meter reading's href.
    pub meter_reading: String,
    /// `electricity`, `gas`, `water` or `other` (from the commodity, else the service kind).
    pub commodity: &'static str,
    /// The unit's code.
    pub uom: Option<u32>,
    /// The unit's symbol (`Wh`, `therm`, `m3`, ...) or `uom <code>`.
    pub unit: String,
    /// The values' power of ten.
    pub power_of_ten_multiplier: i32,
    /// The flow direction code.
    pub flow_direction: Option<u32>,
    /// `forward`, `reverse`, `net`, ... or `None`.
    pub flow: Option<&'static str>,
    /// The reading type's interval length, else the most common reading duration.
    pub interval_s: Option<u32>,
    /// Whether every reading has that length.
    pub uniform: bool,
    /// Whether the readings are billing periods (a day or longer) rather than intervals.
    pub billing_periods: bool,
    /// Readings in the series.
    pub reading_count: usize,
    /// `IntervalBlock`s in the series.
    pub blocks: usize,
    /// Their order in the file.
    pub block_order: BlockOrder,
    /// The first reading's start (UTC, RFC 3339).
    pub first_start: Option<String>,
    /// The last reading's end.
    pub last_end: Option<String>,
    /// The standard time offset of the usage point, seconds east of UTC.
    pub tz_offset_s: Option<i64>,
    /// Gaps between consecutive readings (at most the first 20 are listed).
    pub gaps: Vec<Gap>,
    /// How many gaps there are.
    pub gap_count: usize,
    /// Readings that overlap the one before without repeating its period.
    pub overlaps: usize,
    /// Readings that repeat an earlier reading's period.
    pub duplicates: usize,
    /// Of those, the ones whose value differs from the earlier reading's.
    pub conflicting_duplicates: usize,
    /// The integer sum of every reading's value.
    pub total_raw: i128,
    /// That sum scaled by the power of ten, exactly, in the unit (e.g. `1391.666` kWh is
    /// `1391666` Wh written as `"1391666"`).
    pub total: String,
    /// The integer sum of the readings' costs (10⁻⁵ of the currency), if any reading has one.
    pub cost_raw: Option<i128>,
    /// That sum in the currency, exactly.
    pub cost: Option<String>,
    /// The currency's ISO 4217 code (`USD`) or its number.
    pub currency: Option<String>,
    /// Readings per quality flag (`estimated`, `validated`, ...).
    pub quality: BTreeMap<String, usize>,
}

/// Parses a Green Button file: an Atom `feed` of entries, or one `entry`.
pub fn parse(xml: &str) -> Result<Feed, GbError> {
    let doc = Document::parse_with_options(
        xml,
        ParsingOptions {
            allow_dtd: false,
            ..ParsingOptions::default()
        },
    )
    .map_err(|e| {
        let pos = e.pos();
        GbError {
            element: "document".into(),
            line: pos.row,
            column: pos.col,
            message: format!("not well-formed XML: {e}"),
        }
    })?;
    let root = doc.root_element();
    let entries: Vec<Node<'_, '_>> = match root.tag_name().name() {
        "feed" => root
            .children()
            .filter(|n| n.is_element() && n.tag_name().name() == "entry")
            .collect(),
        "entry" => vec![root],
        other => {
            return Err(GbError::at(
                root,
                format!("the document is a <{other}>, not an Atom <feed> or <entry>"),
            ));
        }
    };
    let mut objects = Vec::new();
    for e in entries {
        objects.extend(entry_objects(e)?);
    }
    link(&objects)
}

/// One ESPI resource of an entry, with the entry's links.
struct Object<'a, 'i> {
    node: Node<'a, 'i>,
    entry: Node<'a, 'i>,
    this: Option<String>,
    up: Option<String>,
    related: Vec<String>,
}

impl Object<'_, '_> {
    fn kind(&self) -> &str {
        self.node.tag_name().name()
    }
}

/// The ESPI resources of an entry: the element children of its `content` (several
/// `IntervalBlock`s may share one), or, in a file that leaves `content` out, its own children
/// that are not Atom's.
fn entry_objects<'a, 'i>(entry: Node<'a, 'i>) -> Result<Vec<Object<'a, 'i>>, GbError> {
    let mut this = None;
    let mut up = None;
    let mut related = Vec::new();
    for l in entry
        .children()
        .filter(|n| n.is_element() && n.tag_name().name() == "link")
    {
        let Some(href) = l.attribute("href") else {
            continue;
        };
        let href = normalize(href);
        match l.attribute("rel").unwrap_or("alternate") {
            "self" => this = Some(href),
            "up" => up = Some(href),
            "related" => related.push(href),
            _ => {}
        }
    }
    const ATOM: [&str; 10] = [
        "id",
        "link",
        "title",
        "updated",
        "published",
        "author",
        "category",
        "rights",
        "summary",
        "contributor",
    ];
    let content = entry
        .children()
        .find(|n| n.is_element() && n.tag_name().name() == "content");
    let nodes: Vec<Node<'a, 'i>> = match content {
        Some(c) => c.children().filter(Node::is_element).collect(),
        None => entry
            .children()
            .filter(|n| n.is_element() && !ATOM.contains(&n.tag_name().name()))
            .collect(),
    };
    Ok(nodes
        .into_iter()
        .map(|node| Object {
            node,
            entry,
            this: this.clone(),
            up: up.clone(),
            related: related.clone(),
        })
        .collect())
}

/// An href without its scheme and host (exports mix absolute and relative links to the same
/// resource) and without a trailing slash.
fn normalize(href: &str) -> String {
    let href = href.trim();
    let path = match href.find("://") {
        Some(i) => {
            let rest = &href[i + 3..];
            rest.find('/').map_or("/", |j| &rest[j..])
        }
        None => href,
    };
    path.trim_end_matches('/').to_owned()
}

/// Whether `child` is under `parent` in the resource hierarchy (`.../MeterReading/1` under
/// `.../UsagePoint/1`).
fn under(child: &str, parent: &str) -> bool {
    child.len() > parent.len() + 1
        && child.starts_with(parent)
        && child.as_bytes()[parent.len()] == b'/'
}

fn link(objects: &[Object<'_, '_>]) -> Result<Feed, GbError> {
    let of = |kind: &str| -> Vec<&Object<'_, '_>> {
        objects.iter().filter(|o| o.kind() == kind).collect()
    };
    let meter_readings = of("MeterReading");
    let reading_types = of("ReadingType");
    let usage_points = of("UsagePoint");
    let local_times = of("LocalTimeParameters");
    let blocks = of("IntervalBlock");
    let by_self: HashMap<&str, &Object<'_, '_>> = objects
        .iter()
        .filter_map(|o| o.this.as_deref().map(|s| (s, o)))
        .collect();

    // Each block to its meter reading: the standard's `up` collection link first, then the
    // bends real files make.
    let owner_of = |b: &Object<'_, '_>| -> Option<usize> {
        let tests: [&dyn Fn(&Object<'_, '_>) -> bool; 4] = [
            &|m| b.up.as_ref().is_some_and(|up| m.related.contains(up)),
            &|m| b.this.as_ref().is_some_and(|s| m.related.contains(s)),
            &|m| m.this.as_ref().is_some_and(|s| b.related.contains(s)),
            &|m| {
                m.this.as_deref().is_some_and(|s| {
                    b.up.as_deref().is_some_and(|up| under(up, s))
                        || b.this.as_deref().is_some_and(|me| under(me, s))
                })
            },
        ];
        tests
            .iter()
            .find_map(|t| meter_readings.iter().position(|m| t(m)))
            .or((meter_readings.len() == 1).then_some(0))
    };
    let mut readings_of: Vec<Vec<(usize, Vec<Reading>)>> = vec![Vec::new(); meter_readings.len()];
    for (order, b) in blocks.iter().enumerate() {
        let Some(m) = owner_of(b) else {
            return Err(GbError::at(
                b.node,
                "linked to no MeterReading (no MeterReading's related link is its up or self \
                 link)",
            ));
        };
        let rt = reading_type(reading_type_of(meter_readings[m], &by_self, &reading_types)?.node)?;
        readings_of[m].push((order, interval_block(b.node, rt.interval_length)?));
    }

    let mut series = Vec::with_capacity(meter_readings.len());
    for (m, blocks) in meter_readings.iter().zip(readings_of) {
        let reading_type = reading_type(reading_type_of(m, &by_self, &reading_types)?.node)?;
        let up = usage_points.iter().find(|u| {
            m.up.as_ref().is_some_and(|up| u.related.contains(up))
                || m.this.as_ref().is_some_and(|s| u.related.contains(s))
                || match (&m.this, &u.this) {
                    (Some(me), Some(parent)) => under(me, parent),
                    _ => false,
                }
        });
        let up = up
            .copied()
            .or((usage_points.len() == 1).then(|| usage_points[0]));
        let local = up
            .and_then(|u| {
                local_times
                    .iter()
                    .find(|l| l.this.as_ref().is_some_and(|s| u.related.contains(s)))
                    .copied()
            })
            .or((local_times.len() == 1).then(|| local_times[0]));
        let block_order = order_of(&blocks);
        let count = blocks.len();
        let mut readings: Vec<Reading> = blocks.into_iter().flat_map(|(_, r)| r).collect();
        readings.sort_by_key(|r| (r.start, r.duration));
        series.push(Series {
            usage_point: up.and_then(|u| u.this.clone()),
            service_kind: up.and_then(|u| {
                child(u.node, "ServiceCategory")
                    .and_then(|c| child(c, "kind"))
                    .and_then(|k| k.text())
                    .and_then(|t| t.trim().parse().ok())
            }),
            meter_reading: m.this.clone().unwrap_or_else(|| {
                let pos = m.entry.document().text_pos_at(m.entry.range().start);
                format!("(MeterReading at line {})", pos.row)
            }),
            reading_type,
            tz_offset_s: local
                .and_then(|l| child(l.node, "tzOffset"))
                .and_then(|n| n.text())
                .and_then(|t| t.trim().parse().ok()),
            readings,
            blocks: count,
            block_order,
        });
    }
    Ok(Feed { series })
}

fn reading_type_of<'o, 'a, 'i>(
    m: &Object<'a, 'i>,
    by_self: &HashMap<&str, &'o Object<'a, 'i>>,
    all: &[&'o Object<'a, 'i>],
) -> Result<&'o Object<'a, 'i>, GbError> {
    m.related
        .iter()
        .filter_map(|r| by_self.get(r.as_str()))
        .find(|o| o.kind() == "ReadingType")
        .copied()
        .or((all.len() == 1).then(|| all[0]))
        .ok_or_else(|| {
            GbError::at(
                m.node,
                "has no ReadingType (none of its related links is a ReadingType's self link)",
            )
        })
}

fn order_of(blocks: &[(usize, Vec<Reading>)]) -> BlockOrder {
    let starts: Vec<i64> = blocks
        .iter()
        .filter_map(|(_, r)| r.iter().map(|r| r.start).min())
        .collect();
    if starts.len() <= 1 {
        BlockOrder::Single
    } else if starts.windows(2).all(|w| w[0] <= w[1]) {
        BlockOrder::Ascending
    } else if starts.windows(2).all(|w| w[0] >= w[1]) {
        BlockOrder::Descending
    } else {
        BlockOrder::Unordered
    }
}

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

/// The integer text of element `name` under `n`: `Ok(None)` when absent, an error naming it
/// when it is not an integer of type `T`.
fn int<T: std::str::FromStr>(n: Node<'_, '_>, name: &str) -> Result<Option<T>, GbError> {
    let Some(c) = child(n, name) else {
        return Ok(None);
    };
    let text = c.text().unwrap_or("").trim();
    text.parse().map(Some).map_err(|_| {
        GbError::at(
            c,
            format!(
                "{text:?} is not an integer of type {}",
                std::any::type_name::<T>()
            ),
        )
    })
}

fn reading_type(n: Node<'_, '_>) -> Result<ReadingType, GbError> {
    Ok(ReadingType {
        commodity: int(n, "commodity")?,
        uom: int(n, "uom")?,
        power_of_ten_multiplier: int(n, "powerOfTenMultiplier")?.unwrap_or(0),
        flow_direction: int(n, "flowDirection")?,
        interval_length: int(n, "intervalLength")?,
        currency: int(n, "currency")?,
        kind: int(n, "kind")?,
        accumulation_behaviour: int(n, "accumulationBehaviour")?,
    })
}

/// The readings of one `IntervalBlock`. A reading without a `timePeriod` follows the one
/// before it (or the block's start) with the reading type's interval length.
fn interval_block(n: Node<'_, '_>, nominal: Option<u32>) -> Result<Vec<Reading>, GbError> {
    let block_start: Option<i64> = match child(n, "interval") {
        Some(i) => int(i, "start")?,
        None => None,
    };
    let mut out = Vec::new();
    let mut next = block_start;
    for r in n
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == "IntervalReading")
    {
        let (start, duration) = match child(r, "timePeriod") {
            Some(p) => (
                int::<i64>(p, "start")?.ok_or_else(|| GbError::at(p, "has no start"))?,
                int::<u32>(p, "duration")?.ok_or_else(|| GbError::at(p, "has no duration"))?,
            ),
            None => match (next, nominal) {
                (Some(s), Some(d)) => (s, d),
                _ => {
                    return Err(GbError::at(
                        r,
                        "has no timePeriod, and neither the block's start nor the reading \
                         type's intervalLength says when it is",
                    ));
                }
            },
        };
        let value = int::<i64>(r, "value")?.ok_or_else(|| GbError::at(r, "has no value"))?;
        let cost = int::<i64>(r, "cost")?;
        let mut quality = Vec::new();
        for q in r
            .children()
            .filter(|c| c.is_element() && c.tag_name().name() == "ReadingQuality")
        {
            if let Some(code) = int::<u32>(q, "quality")? {
                quality.push(code);
            }
        }
        next = Some(start + i64::from(duration));
        out.push(Reading {
            start,
            duration,
            value,
            cost,
            quality,
        });
    }
    Ok(out)
}

/// RFC 3339 in UTC for a Unix time (seconds).
pub fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{t}"))
}

/// `raw × 10^power`, exactly, as a decimal.
pub fn scaled(raw: i128, power: i32) -> String {
    let sign = if raw < 0 { "-" } else { "" };
    let digits = raw.unsigned_abs().to_string();
    if power >= 0 {
        if raw == 0 {
            return "0".into();
        }
        return format!("{sign}{digits}{}", "0".repeat(power as usize));
    }
    let places = power.unsigned_abs() as usize;
    let padded = format!("{digits:0>width$}", width = places + 1);
    let (int, frac) = padded.split_at(padded.len() - places);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// The symbol of a unit of measure code.
pub fn unit(uom: Option<u32>) -> String {
    match uom {
        Some(72) => "Wh".into(),
        Some(38) => "W".into(),
        Some(73) => "VArh".into(),
        Some(63) => "VAr".into(),
        Some(71) => "VAh".into(),
        Some(61) => "VA".into(),
        Some(42) => "m3".into(),
        Some(169) => "therm".into(),
        Some(other) => format!("uom {other}"),
        None => "(no uom)".into(),
    }
}

fn flow_name(code: Option<u32>) -> Option<&'static str> {
    Some(match code? {
        1 => "forward",
        4 => "net",
        19 => "reverse",
        20 => "total",
        0 => "none",
        _ => "other",
    })
}

fn quality_name(code: u32) -> String {
    match code {
        0 => "valid".into(),
        7 => "manually_edited".into(),
        8 => "estimated_using_reference_day".into(),
        9 => "estimated_using_linear_interpolation".into(),
        10 => "questionable".into(),
        11 => "derived".into(),
        12 => "projected".into(),
        13 => "mixed".into(),
        14 => "raw".into(),
        15 => "normalized_for_weather".into(),
        16 => "other".into(),
        17 => "validated".into(),
        18 => "verified".into(),
        19 => "revenue_quality".into(),
        other => format!("quality_{other}"),
    }
}

fn currency_code(n: u32) -> String {
    match n {
        840 => "USD".into(),
        124 => "CAD".into(),
        978 => "EUR".into(),
        826 => "GBP".into(),
        36 => "AUD".into(),
        756 => "CHF".into(),
        other => other.to_string(),
    }
}

impl Series {
    /// `electricity`, `gas`, `water` or `other`: the reading type's commodity, else the usage
    /// point's service kind, else what the unit says (Wh is electricity).
    pub fn commodity(&self) -> &'static str {
        match self.reading_type.commodity {
            Some(1 | 2) => return "electricity",
            Some(7) => return "gas",
            Some(4..=6) => return "water",
            Some(0) | None => {}
            Some(_) => return "other",
        }
        match self.service_kind {
            Some(0) => "electricity",
            Some(1) => "gas",
            Some(2) => "water",
            Some(_) => "other",
            None if matches!(self.reading_type.uom, Some(72 | 38 | 73 | 63 | 71 | 61)) => {
                "electricity"
            }
            None => "other",
        }
    }

    /// The reading type's interval length, else the most common reading duration.
    pub fn interval_s(&self) -> Option<u32> {
        self.reading_type.interval_length.or_else(|| {
            let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
            for r in &self.readings {
                *counts.entry(r.duration).or_default() += 1;
            }
            counts
                .into_iter()
                .max_by_key(|&(d, n)| (n, std::cmp::Reverse(d)))
                .map(|(d, _)| d)
        })
    }

    /// Whether the readings are billing periods: any reading a day or longer.
    pub fn billing_periods(&self) -> bool {
        self.readings.iter().any(|r| r.duration >= 86_400)
    }

    /// The series checked and totalled.
    pub fn summary(&self) -> Summary {
        const LISTED: usize = 20;
        let mut gaps = Vec::new();
        let (mut gap_count, mut overlaps, mut duplicates, mut conflicting) = (0, 0, 0, 0);
        let mut end: Option<i64> = None;
        for (i, r) in self.readings.iter().enumerate() {
            if i > 0 {
                let before = &self.readings[i - 1];
                if (before.start, before.duration) == (r.start, r.duration) {
                    duplicates += 1;
                    conflicting += usize::from(before.value != r.value);
                    continue;
                }
            }
            if let Some(e) = end {
                if r.start > e {
                    gap_count += 1;
                    if gaps.len() < LISTED {
                        gaps.push(Gap {
                            from: rfc3339(e),
                            to: rfc3339(r.start),
                            seconds: r.start - e,
                        });
                    }
                } else if r.start < e {
                    overlaps += 1;
                }
            }
            end = Some(end.map_or(r.end(), |e| e.max(r.end())));
        }
        let total_raw: i128 = self.readings.iter().map(|r| i128::from(r.value)).sum();
        let costs: Vec<i64> = self.readings.iter().filter_map(|r| r.cost).collect();
        let cost_raw = (!costs.is_empty()).then(|| costs.iter().map(|&c| i128::from(c)).sum());
        let mut quality = BTreeMap::new();
        for r in &self.readings {
            for &q in &r.quality {
                *quality.entry(quality_name(q)).or_default() += 1;
            }
        }
        let interval_s = self.interval_s();
        Summary {
            usage_point: self.usage_point.clone(),
            meter_reading: self.meter_reading.clone(),
            commodity: self.commodity(),
            uom: self.reading_type.uom,
            unit: unit(self.reading_type.uom),
            power_of_ten_multiplier: self.reading_type.power_of_ten_multiplier,
            flow_direction: self.reading_type.flow_direction,
            flow: flow_name(self.reading_type.flow_direction),
            interval_s,
            uniform: interval_s.is_some_and(|d| self.readings.iter().all(|r| r.duration == d)),
            billing_periods: self.billing_periods(),
            reading_count: self.readings.len(),
            blocks: self.blocks,
            block_order: self.block_order,
            first_start: self.readings.first().map(|r| rfc3339(r.start)),
            last_end: self.readings.iter().map(Reading::end).max().map(rfc3339),
            tz_offset_s: self.tz_offset_s,
            gaps,
            gap_count,
            overlaps,
            duplicates,
            conflicting_duplicates: conflicting,
            total_raw,
            total: scaled(total_raw, self.reading_type.power_of_ten_multiplier),
            cost: cost_raw.map(|c| scaled(c, -5)),
            cost_raw,
            currency: self.reading_type.currency.map(currency_code),
            quality,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_writes_the_exact_decimal() {
        assert_eq!(scaled(1_391_666, -3), "1391.666");
        assert_eq!(scaled(1_391_000, -3), "1391");
        assert_eq!(scaled(-5, -3), "-0.005");
        assert_eq!(scaled(12, 2), "1200");
        assert_eq!(scaled(0, 3), "0");
        assert_eq!(scaled(0, -3), "0");
        assert_eq!(scaled(14_999_132, -5), "149.99132");
    }

    #[test]
    fn hrefs_compare_without_host_or_trailing_slash() {
        assert_eq!(
            normalize("https://x.example:8443/espi/1_1/resource/ReadingType/1/"),
            "/espi/1_1/resource/ReadingType/1"
        );
        assert_eq!(normalize(" /v1/ReadingType/1 "), "/v1/ReadingType/1");
        assert!(under("/a/UsagePoint/1/MeterReading/1", "/a/UsagePoint/1"));
        assert!(!under("/a/UsagePoint/10", "/a/UsagePoint/1"));
    }

    #[test]
    fn rfc3339_is_utc() {
        assert_eq!(rfc3339(1_330_578_000), "2012-03-01T05:00:00Z");
    }
}
