//! The shipped Green Button samples (testdata/SOURCES.md: unedited public files, with their
//! licences and SHA-256), parsed and checked against figures computed by a separate tool
//! (`testdata/totals.py`, Python's standard library, output in `testdata/SOURCES.md`).

use bcte_greenbutton::{
    BlockOrder, GbError,
    convert::{ConvertError, Grid, convert},
    parse,
};
use sha2::{Digest, Sha256};

fn sample(name: &str, sha256: &str) -> String {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(
        hex(&Sha256::digest(&bytes)),
        sha256,
        "{name} is the published file, unedited"
    );
    String::from_utf8(bytes).unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Quarter-hours from 2010-01-01T00:00Z.
const QUARTERS: Grid = Grid {
    epoch_ms: 1_262_304_000_000,
    interval_ms: 900_000,
};

#[test]
fn fifteen_minute_data_across_a_daylight_saving_day() {
    let text = sample(
        "test_usage_data.xml",
        "42aaaa5edee61663a32a9376c642410f7d40c5f0cf202935a8e767abd6ef0623",
    );
    let feed = parse(&text).unwrap();
    assert_eq!(feed.series.len(), 1);
    let s = feed.series[0].summary();
    assert_eq!(s.commodity, "electricity");
    assert_eq!((s.unit.as_str(), s.power_of_ten_multiplier), ("Wh", 0));
    assert_eq!(
        (s.interval_s, s.uniform, s.billing_periods),
        (Some(900), true, false)
    );
    assert_eq!(s.flow, Some("forward"));
    // 13 days of 96 quarter-hours and 2012-03-11, the spring-forward day, of 92.
    assert_eq!((s.reading_count, s.blocks), (13 * 96 + 92, 14));
    assert_eq!(s.block_order, BlockOrder::Ascending);
    assert_eq!(s.first_start.as_deref(), Some("2012-03-01T05:00:00Z"));
    assert_eq!(s.last_end.as_deref(), Some("2012-03-15T04:00:00Z"));
    assert_eq!((s.gap_count, s.overlaps, s.duplicates), (0, 0, 0));
    assert_eq!(s.tz_offset_s, Some(-18_000));
    // The separate tool's figures.
    assert_eq!(s.total_raw, 1_391_666);
    assert_eq!(s.total, "1391666");
    assert_eq!(s.cost_raw, Some(14_999_132));
    assert_eq!(s.cost.as_deref(), Some("149.99132"));
    assert_eq!(s.currency.as_deref(), Some("USD"));
    assert_eq!(s.quality.values().sum::<usize>(), 2);
    assert_eq!(s.quality.get("manually_edited"), Some(&1));
    // Quarter-hours map one to one.
    let c = convert(&[&feed.series[0]], QUARTERS).unwrap();
    assert_eq!(c.readings.len(), 1340);
    assert!(c.partial.is_empty());
    assert_eq!(c.readings.iter().map(|r| r.wh).sum::<i64>(), 1_391_666);
}

#[test]
fn hourly_data_over_a_year_with_both_daylight_saving_days() {
    let text = sample(
        "Coastal_Multi_Family_Daily_Jan_1_2011_to_Jan_1_2012_RetailCustomer_4.xml",
        "cb5bb27bf2a5394071358ed49d644b60b505eb05656a1112058583ad2d98b41c",
    );
    let feed = parse(&text).unwrap();
    let s = feed.series[0].summary();
    assert_eq!((s.interval_s, s.uniform), (Some(3600), true));
    // 365 local days: one of 23 hours, one of 25, so 8,760 hours and no gap or overlap in UTC
    // although both of those blocks claim 24 hours.
    assert_eq!((s.reading_count, s.blocks), (8_760, 365));
    assert_eq!((s.gap_count, s.overlaps, s.duplicates), (0, 0, 0));
    assert_eq!(s.first_start.as_deref(), Some("2011-01-01T08:00:00Z"));
    assert_eq!(s.last_end.as_deref(), Some("2012-01-01T08:00:00Z"));
    assert_eq!(s.tz_offset_s, Some(-28_800));
    assert_eq!(s.total_raw, 4_425_305);
    assert_eq!(s.cost_raw, None);
    // Each hour splits into four quarter-hours that sum back to it exactly (GB-4).
    let c = convert(&[&feed.series[0]], QUARTERS).unwrap();
    assert_eq!(c.readings.len(), 4 * 8_760);
    assert_eq!(c.readings.iter().map(|r| r.wh).sum::<i64>(), 4_425_305);
    for hour in c.readings.chunks(4) {
        let spread =
            hour.iter().map(|r| r.wh).max().unwrap() - hour.iter().map(|r| r.wh).min().unwrap();
        assert!(spread <= 1, "an hour splits evenly: {hour:?}");
    }
}

#[test]
fn a_utility_export_that_bends_the_standard() {
    // PG&E through Opower: the meter reading links straight to the block, the block has no up
    // link, the block's interval claims 398 days, the reading type has only its unit, and two
    // quarter-hours are missing.
    let text = sample(
        "pge_electric_interval_data.xml",
        "e71aeab1ed84aa4c5a6fd3369be054c164ea7c3430c088fdf7bb71baa234ac2a",
    );
    let feed = parse(&text).unwrap();
    assert_eq!(feed.series.len(), 1);
    let s = feed.series[0].summary();
    assert_eq!(
        s.commodity, "electricity",
        "from the usage point's service kind"
    );
    assert_eq!((s.interval_s, s.reading_count), (Some(900), 95));
    assert_eq!(s.gap_count, 2);
    assert_eq!(s.gaps[0].from, "2011-03-07T00:45:00Z");
    assert_eq!(s.gaps[1].from, "2011-03-07T03:45:00Z");
    assert!(s.gaps.iter().all(|g| g.seconds == 900));
    assert_eq!(s.total_raw, 319_800);
    assert_eq!(
        s.usage_point.as_deref(),
        Some("/v1/User/6040272/UsagePoint/290243")
    );
    // The missing quarter-hours are simply absent: they settle as missing (ST-3.1).
    let c = convert(&[&feed.series[0]], QUARTERS).unwrap();
    assert_eq!(c.readings.len(), 95);
    assert!(c.partial.is_empty());
    assert_eq!(c.readings.iter().map(|r| r.wh).sum::<i64>(), 319_800);
}

#[test]
fn monthly_gas_billing_data_is_printed_but_refused_for_settlement() {
    let text = sample(
        "Gas.xml",
        "e9630c2177571032d6fc7cbdfda7093e29e82d95dc526c30cd6f1c7794d9ceac",
    );
    let feed = parse(&text).unwrap();
    let s = feed.series[0].summary();
    assert_eq!((s.commodity, s.unit.as_str()), ("gas", "therm"));
    assert!(s.billing_periods);
    assert!(!s.uniform, "calendar months");
    assert_eq!(s.reading_count, 13);
    assert_eq!(s.total_raw, 1_081_119);
    assert_eq!(s.total, "1081.119");
    assert_eq!(s.cost_raw, Some(313_266_454));
    assert!(matches!(
        convert(&[&feed.series[0]], QUARTERS),
        Err(ConvertError::NotElectricity {
            commodity: "gas",
            ..
        })
    ));
}

/// A feed written newest first, with its own namespace prefixes and absolute links on another
/// host than the blocks' (as some exports do).
const NEWEST_FIRST: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<a:feed xmlns:a="http://www.w3.org/2005/Atom" xmlns:espi="http://naesb.org/espi">
  <a:entry>
    <a:link rel="self" href="https://u.example/espi/UsagePoint/1/MeterReading/1/IntervalBlock/2"/>
    <a:link rel="up" href="https://u.example/espi/UsagePoint/1/MeterReading/1/IntervalBlock"/>
    <a:content><espi:IntervalBlock>
      <espi:interval><espi:duration>1800</espi:duration><espi:start>1000001800</espi:start></espi:interval>
      <espi:IntervalReading><espi:timePeriod><espi:duration>900</espi:duration><espi:start>1000002700</espi:start></espi:timePeriod><espi:value>4</espi:value></espi:IntervalReading>
      <espi:IntervalReading><espi:timePeriod><espi:duration>900</espi:duration><espi:start>1000001800</espi:start></espi:timePeriod><espi:value>3</espi:value></espi:IntervalReading>
    </espi:IntervalBlock></a:content>
  </a:entry>
  <a:entry>
    <a:link rel="self" href="/espi/UsagePoint/1/MeterReading/1/IntervalBlock/1"/>
    <a:link rel="up" href="/espi/UsagePoint/1/MeterReading/1/IntervalBlock"/>
    <a:content><espi:IntervalBlock>
      <espi:interval><espi:duration>1800</espi:duration><espi:start>1000000000</espi:start></espi:interval>
      <espi:IntervalReading><espi:timePeriod><espi:duration>900</espi:duration><espi:start>1000000900</espi:start></espi:timePeriod><espi:value>2</espi:value></espi:IntervalReading>
      <espi:IntervalReading><espi:timePeriod><espi:duration>900</espi:duration><espi:start>1000000000</espi:start></espi:timePeriod><espi:value>1</espi:value></espi:IntervalReading>
    </espi:IntervalBlock></a:content>
  </a:entry>
  <a:entry>
    <a:link rel="self" href="http://other.example/espi/UsagePoint/1/MeterReading/1"/>
    <a:link rel="related" href="http://other.example/espi/UsagePoint/1/MeterReading/1/IntervalBlock"/>
    <a:link rel="related" href="http://other.example/espi/ReadingType/7"/>
    <a:content><espi:MeterReading/></a:content>
  </a:entry>
  <a:entry>
    <a:link rel="self" href="/espi/ReadingType/7"/>
    <a:content><espi:ReadingType><espi:commodity>1</espi:commodity><espi:uom>72</espi:uom><espi:powerOfTenMultiplier>3</espi:powerOfTenMultiplier><espi:flowDirection>19</espi:flowDirection></espi:ReadingType></a:content>
  </a:entry>
</a:feed>"#;

#[test]
fn newest_first_blocks_are_sorted_and_links_match_across_hosts() {
    let feed = parse(NEWEST_FIRST).unwrap();
    let s = &feed.series[0];
    assert_eq!(s.block_order, BlockOrder::Descending);
    let values: Vec<i64> = s.readings.iter().map(|r| r.value).collect();
    assert_eq!(values, vec![1, 2, 3, 4]);
    let sum = s.summary();
    assert_eq!(
        (sum.gap_count, sum.total.as_str(), sum.flow),
        (0, "10000", Some("reverse"))
    );
    // kWh fed in: -1,000 Wh per quarter-hour and so on.
    let grid = Grid {
        epoch_ms: 1_000_000_000_000,
        interval_ms: 900_000,
    };
    let c = convert(&[s], grid).unwrap();
    let wh: Vec<i64> = c.readings.iter().map(|r| r.wh).collect();
    assert_eq!(wh, vec![-1_000, -2_000, -3_000, -4_000]);
}

fn error_of(xml: &str) -> GbError {
    parse(xml).expect_err("refused")
}

#[test]
fn bad_files_name_the_element_and_where() {
    let e = error_of("<feed><entry><content>");
    assert_eq!(e.element, "document");
    assert_eq!(e.line, 1);
    assert!(e.message.contains("not well-formed"), "{e}");
    // A meter reading whose reading type is absent.
    let no_type = NEWEST_FIRST.replace(
        r#"<espi:ReadingType><espi:commodity>1</espi:commodity><espi:uom>72</espi:uom><espi:powerOfTenMultiplier>3</espi:powerOfTenMultiplier><espi:flowDirection>19</espi:flowDirection></espi:ReadingType>"#,
        "<espi:LocalTimeParameters/>",
    );
    let e = error_of(&no_type);
    assert_eq!(e.element, "MeterReading");
    assert_eq!(e.line, 25);
    assert!(e.message.contains("no ReadingType"), "{e}");
    // A value that is not an integer.
    let e = error_of(
        &NEWEST_FIRST.replace("<espi:value>3</espi:value>", "<espi:value>3.5</espi:value>"),
    );
    assert_eq!((e.element.as_str(), e.line), ("value", 9));
    // Not a feed at all.
    let e = error_of("<html><body/></html>");
    assert_eq!(e.element, "html");
    // A DTD (entity expansion) is refused.
    let e = error_of("<!DOCTYPE feed [<!ENTITY a \"b\">]><feed/>");
    assert_eq!(e.element, "document");
}
