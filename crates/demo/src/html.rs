//! The HTML report (DM-5.3): one self-contained page (no scripts, no network) with the
//! summary table, plots of the day drawn by `plotters` as inline SVG, the chain's figures and
//! every site's bill in both runs.
//!
//! The plots are presentation only: the figures they draw are the report's integers,
//! converted to floats here and nowhere else.

use crate::{Outcome, report::Report};
use plotters::prelude::*;
use std::fmt::Write as _;

/// Colours of the two runs and of the grid modes' bands.
const LEGACY: RGBColor = RGBColor(0x99, 0x99, 0x99);
const MARKET: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const PV: RGBColor = RGBColor(0xe6, 0xa1, 0x00);
const LOAD: RGBColor = RGBColor(0x44, 0x44, 0x44);
const BATTERY: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const LIMIT: RGBColor = RGBColor(0xd6, 0x27, 0x28);
const ALERT: RGBColor = RGBColor(0xff, 0xbf, 0x00);
const ISLANDED: RGBColor = RGBColor(0xd6, 0x27, 0x28);

/// One line of a plot: its name, colour, width and one value per interval (drawn as steps:
/// the value holds for the whole interval).
struct Series<'a> {
    name: &'a str,
    color: RGBColor,
    width: u32,
    values: Vec<f64>,
}

/// A step plot of `series` over the day's intervals (hours on the x axis), with the grid
/// modes' intervals shaded and horizontal `lines` (name, colour, value).
fn plot(
    title: &str,
    y_label: &str,
    modes: &[&str],
    series: &[Series<'_>],
    lines: &[(&str, RGBColor, f64)],
) -> Result<String, String> {
    let n = modes.len();
    let hours = n as f64 / 4.0;
    let values = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .chain(lines.iter().map(|l| l.2));
    let (lo, hi) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let pad = ((hi - lo) * 0.08).max(1e-3);
    let (lo, hi) = (if lo < 0.0 { lo - pad } else { 0.0 }, hi + pad);
    let mut svg = String::new();
    {
        let e = |e: DrawingAreaErrorKind<std::io::Error>| format!("{title}: {e}");
        let root = SVGBackend::with_string(&mut svg, (900, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..hours, lo..hi)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc("hour of the day")
            .y_desc(y_label)
            .x_labels((hours as usize).min(24) + 1)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .light_line_style(RGBColor(0xee, 0xee, 0xee))
            .draw()
            .map_err(e)?;
        // The modes' bands first, under the lines.
        let bands = modes.iter().enumerate().filter_map(|(k, m)| {
            let color = match *m {
                "alert" => ALERT,
                "islanded" => ISLANDED,
                _ => return None,
            };
            let x = k as f64 / 4.0;
            Some(Rectangle::new(
                [(x, lo), (x + 0.25, hi)],
                color.mix(0.15).filled(),
            ))
        });
        chart.draw_series(bands).map_err(e)?;
        for &(name, color, v) in lines {
            chart
                .draw_series(LineSeries::new(
                    [(0.0, v), (hours, v)],
                    ShapeStyle::from(color).stroke_width(1),
                ))
                .map_err(e)?
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color));
        }
        for s in series {
            let points = s.values.iter().enumerate().flat_map(|(k, v)| {
                let x = k as f64 / 4.0;
                [(x, *v), (x + 0.25, *v)]
            });
            let color = s.color;
            chart
                .draw_series(LineSeries::new(
                    points,
                    ShapeStyle::from(color).stroke_width(s.width),
                ))
                .map_err(e)?
                .label(s.name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(0xcc, 0xcc, 0xcc))
            .draw()
            .map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(svg)
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn kw(w: i64) -> f64 {
    w as f64 / 1_000.0
}

fn money(b: i64) -> String {
    format!("{:.2}", b as f64 / 1_000_000.0)
}

/// The plots of the day, each as inline SVG (or a line saying why it could not be drawn).
fn plots(r: &Report) -> Vec<String> {
    let iv = &r.intervals;
    let modes: Vec<&str> = iv.iter().map(|i| i.mode.as_str()).collect();
    let col = |f: &dyn Fn(&crate::report::IntervalReport) -> f64| iv.iter().map(f).collect();
    let mut out = vec![];
    let limit: Vec<(&str, RGBColor, f64)> = r
        .transformer_limit_w
        .map(|w| vec![("transformer limit", LIMIT, kw(w))])
        .unwrap_or_default();
    out.push(plot(
        "Import at the transformer",
        "kW (negative: export)",
        &modes,
        &[
            Series {
                name: "legacy tariff",
                color: LEGACY,
                width: 2,
                values: col(&|i| kw(i.legacy_import_w)),
            },
            Series {
                name: "transactive market",
                color: MARKET,
                width: 2,
                values: col(&|i| kw(i.import_w)),
            },
        ],
        &limit,
    ));
    // Prices: the cheapest and the dearest node of each interval, and the root's (equal
    // unless a limit binds somewhere), in currency per MWh.
    let cur = |p: i64| p as f64 / 1_000_000.0;
    out.push(plot(
        "Node prices (transactive market)",
        "currency per MWh",
        &modes,
        &[
            Series {
                name: "root node",
                color: MARKET,
                width: 2,
                values: col(&|i| cur(i.prices.first().copied().unwrap_or(0))),
            },
            Series {
                name: "dearest node",
                color: LIMIT,
                width: 1,
                values: col(&|i| cur(i.prices.iter().copied().max().unwrap_or(0))),
            },
            Series {
                name: "cheapest node",
                color: BATTERY,
                width: 1,
                values: col(&|i| cur(i.prices.iter().copied().min().unwrap_or(0))),
            },
        ],
        &[("legacy tariff", LEGACY, cur(r.tariff))],
    ));
    out.push(plot(
        "Load, PV and batteries (transactive market)",
        "kW",
        &modes,
        &[
            Series {
                name: "base load",
                color: LOAD,
                width: 2,
                values: col(&|i| kw(i.load_w)),
            },
            Series {
                name: "PV available",
                color: PV,
                width: 1,
                values: col(&|i| kw(i.pv_available_w)),
            },
            Series {
                name: "PV fed in",
                color: PV,
                width: 3,
                values: col(&|i| kw(i.pv_w)),
            },
            Series {
                name: "batteries (positive: charging)",
                color: BATTERY,
                width: 2,
                values: col(&|i| kw(i.battery_w)),
            },
        ],
        &[],
    ));
    out.push(plot(
        "Batteries' state of charge (transactive market)",
        "% of capacity",
        &modes,
        &[Series {
            name: "mean state of charge",
            color: BATTERY,
            width: 2,
            values: col(&|i| i.battery_soc_ppm as f64 / 10_000.0),
        }],
        &[],
    ));
    if iv.iter().any(|i| i.ev_w != 0 || i.legacy_ev_w != 0) {
        out.push(plot(
            "EV charging",
            "kW",
            &modes,
            &[
                Series {
                    name: "legacy tariff (full power on arrival)",
                    color: LEGACY,
                    width: 2,
                    values: col(&|i| kw(i.legacy_ev_w)),
                },
                Series {
                    name: "transactive market (EV contracts)",
                    color: MARKET,
                    width: 2,
                    values: col(&|i| kw(i.ev_w)),
                },
            ],
            &[],
        ));
    }
    if iv.iter().any(|i| i.shed_w != 0 || i.legacy_shed_w != 0) {
        out.push(plot(
            "Load not served (the shutoff)",
            "kW",
            &modes,
            &[
                Series {
                    name: "legacy tariff",
                    color: LEGACY,
                    width: 2,
                    values: col(&|i| kw(i.legacy_shed_w)),
                },
                Series {
                    name: "transactive market",
                    color: MARKET,
                    width: 2,
                    values: col(&|i| kw(i.shed_w)),
                },
            ],
            &[],
        ));
    }
    out.into_iter()
        .map(|p| p.unwrap_or_else(|e| format!("<p class=\"err\">plot not drawn: {}</p>", esc(&e))))
        .collect()
}

/// The report as one offline HTML page.
pub fn render(o: &Outcome) -> String {
    let r = &o.report;
    let mut h = String::new();
    let title = format!(
        "bcte demo: {} on {}, {} day, seed {}",
        r.feeder, r.date, r.scenario, r.seed
    );
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}svg{{max-width:100%;height:auto;display:block;margin:1em 0}}\
         .err{{color:#b00}}.key span{{display:inline-block;padding:0 .5em;margin-right:.5em}}\
         </style></head><body>\n<h1>{t}</h1>\n",
        t = esc(&title)
    );
    let _ = writeln!(
        h,
        "<p>The same households, devices and profiles, first under the legacy flat tariff \
         ({} per kWh, net metering, no control), then under the transactive market{}. \
         Shaded: <span style=\"background:#ffbf0026\">alert</span> and \
         <span style=\"background:#d6272826\">islanded</span> intervals.</p>",
        esc(&format!("{:.4}", r.tariff as f64 / 1e9)),
        match &r.chain {
            Some(c) => format!(
                " cleared and settled on {} validators in-process",
                c.validators
            ),
            None => " without the chain (research mode)".into(),
        }
    );
    h.push_str("<h2>Summary</h2>\n<table><tr><th></th><th>legacy</th><th>transactive</th></tr>\n");
    for (name, a, b) in crate::summary_rows(r) {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            esc(&a),
            esc(&b)
        );
    }
    h.push_str("</table>\n<h2>The day</h2>\n");
    for p in plots(r) {
        h.push_str(&p);
        h.push('\n');
    }
    if let Some(c) = &r.chain {
        let _ = writeln!(
            h,
            "<h2>The chain</h2>\n<table>\
             <tr><td>validators</td><td>{}</td></tr>\
             <tr><td>market clock speed</td><td>{}×</td></tr>\
             <tr><td>blocks in the day</td><td>{}</td></tr>\
             <tr><td>final height</td><td>{}</td></tr>\
             <tr><td>transactions</td><td>{}</td></tr>\
             <tr><td>EV charging contracts settled</td><td>{}</td></tr>\
             <tr><td>paid by the upstream account</td><td>{}</td></tr>\
             <tr><td>congestion rent</td><td>{}</td></tr>\
             <tr><td>state root</td><td><code>{}</code></td></tr></table>",
            c.validators,
            c.clock_speed,
            c.blocks,
            c.height,
            c.transactions,
            c.ev_contracts,
            money(c.upstream_charge),
            money(c.congestion_rent),
            esc(&c.state_root)
        );
    }
    h.push_str(
        "<h2>Sites</h2>\n<table><tr><th>site</th><th>node</th><th>devices</th>\
         <th>legacy kWh</th><th>legacy cost</th><th>market kWh</th><th>market cost</th>\
         <th>unserved kWh (legacy / market)</th></tr>\n",
    );
    const SITES_SHOWN: usize = 200;
    for s in r.sites.iter().take(SITES_SHOWN) {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{:.1}</td>\
             <td>{}</td><td>{:.1} / {:.1}</td></tr>",
            esc(&s.site),
            esc(&s.node),
            esc(&if s.der.is_empty() {
                "-".to_string()
            } else {
                s.der.join(", ")
            }),
            kw(s.legacy.metered_wh),
            money(s.legacy.cost),
            kw(s.transactive.metered_wh),
            money(s.transactive.cost),
            kw(s.legacy.unserved_wh),
            kw(s.transactive.unserved_wh),
        );
    }
    h.push_str("</table>\n");
    if r.sites.len() > SITES_SHOWN {
        let _ = writeln!(
            h,
            "<p>The first {SITES_SHOWN} of {} sites; the JSON report has every one.</p>",
            r.sites.len()
        );
    }
    h.push_str("<p>Figures: kWh, currency units; the JSON report holds every figure as an integer (docs/demo.md).</p>\n</body></html>\n");
    h
}

/// The report of many seeds (DM-6) as one offline HTML page: the spread of every KPI.
pub fn render_seeds(scenario: &crate::scenario::Scenario, s: &crate::seeds::SeedsReport) -> String {
    let mut h = String::new();
    let title = format!(
        "bcte demo: {} seeds of the {} day {}",
        s.seeds.len(),
        match scenario.scenario {
            crate::scenario::Kind::Normal => "normal",
            crate::scenario::Kind::Psps => "psps",
        },
        scenario.date
    );
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}}\
         table{{border-collapse:collapse}}td,th{{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:right}}\
         td:first-child{{text-align:left}}</style></head><body>\n<h1>{t}</h1>\n\
         <p>Seeds {}; every KPI of both runs as min / median / max over the seeds, in the report's \
         integer units (docs/demo.md, DM-5.1).</p>\n<table><tr><th>KPI</th><th>legacy</th>\
         <th>transactive</th></tr>\n",
        esc(&s
            .seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")),
        t = esc(&title)
    );
    let cell = |m: &std::collections::BTreeMap<String, crate::seeds::Spread>, k: &str| {
        m.get(k).map_or("-".to_string(), |v| {
            format!("{} / {} / {}", v.min, v.median, v.max)
        })
    };
    for name in crate::seeds::names(s) {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            esc(&cell(&s.legacy, name)),
            esc(&cell(&s.transactive, name))
        );
    }
    h.push_str("</table>\n</body></html>\n");
    h
}
