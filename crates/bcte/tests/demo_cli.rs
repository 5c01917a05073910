//! `bcte demo` as a user runs it: the reports it writes (docs/demo.md, DM-5), a scenario
//! file under the flags, and bad input refused with exit code 2, one line and nothing written.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BCTE: &str = env!("CARGO_BIN_EXE_bcte");

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new(BCTE)
        .current_dir(dir)
        .args(args)
        .output()
        .expect("bcte runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bcte-demo-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

#[test]
fn a_day_without_the_chain_writes_both_reports_where_it_says() {
    let dir = scratch("ok");
    let out = run(&dir, &["demo", "--no-chain", "--intervals", "8"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("legacy") && stdout.contains("transactive"),
        "{stdout}"
    );
    assert!(stdout.contains("bcte-demo/report.json"), "{stdout}");
    let report: Value = serde_json::from_slice(
        &std::fs::read(dir.join("bcte-demo/report.json")).expect("report.json"),
    )
    .expect("JSON");
    for key in [
        "legacy",
        "transactive",
        "intervals",
        "sites",
        "nodes",
        "feeder",
    ] {
        assert!(report.get(key).is_some(), "report has no `{key}`");
    }
    assert!(report["chain"].is_null(), "no chain without the chain");
    let intervals = report["intervals"].as_array().expect("intervals");
    assert_eq!(intervals.len(), 8);
    assert_eq!(intervals[4]["time"], "01:00");
    let nodes = report["nodes"].as_array().expect("nodes").len();
    assert_eq!(
        intervals[0]["prices"].as_array().expect("prices").len(),
        nodes
    );
    assert!(report["legacy"]["import_wh"].as_i64().expect("import") > 0);
    let html = std::fs::read_to_string(dir.join("bcte-demo/report.html")).expect("report.html");
    assert!(html.starts_with("<!doctype html>"));
    assert!(
        html.matches("<svg").count() >= 4,
        "the plots are in the page"
    );
    assert!(
        !html.contains("<script"),
        "the page runs no script and needs no network"
    );
}

#[test]
fn a_scenario_file_sets_what_the_flags_set_and_the_flags_win() {
    let dir = scratch("config");
    std::fs::write(
        dir.join("day.toml"),
        "scenario = \"psps\"\ndate = \"2016-01-15\"\nintervals = 4\nno_chain = true\nseed = 7\n",
    )
    .expect("write");
    let out = run(
        &dir,
        &[
            "--json", "demo", "--config", "day.toml", "--seed", "9", "--report", "r.json",
            "--html", "r.html",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["summary"]["scenario"], "psps");
    assert_eq!(v["summary"]["date"], "2016-01-15");
    assert_eq!(v["summary"]["seed"], 9);
    assert_eq!(
        v["summary"]["intervals"]
            .as_array()
            .expect("intervals")
            .len(),
        4
    );
    assert!(dir.join("r.json").is_file() && dir.join("r.html").is_file());

    // A file in another folder: its relative paths are the file's, a synthetic feeder stays
    // one.
    std::fs::create_dir_all(dir.join("cfg")).expect("dir");
    std::fs::write(
        dir.join("cfg/day.toml"),
        "feeder = \"synthetic:20\"\nintervals = 2\nno_chain = true\n",
    )
    .expect("write");
    let out = run(&dir, &["--json", "demo", "--config", "cfg/day.toml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["summary"]["feeder"], "synthetic-20");
}

#[test]
fn bad_input_is_one_line_exit_2_and_writes_nothing() {
    let dir = scratch("bad");
    std::fs::write(dir.join("shares.toml"), "battery_share = 1.5\n").expect("write");
    std::fs::write(dir.join("typo.toml"), "validatorz = 4\n").expect("write");
    std::fs::create_dir_all(dir.join("empty")).expect("dir");
    // A size that rounds to nothing in the devices' integer units.
    std::fs::write(
        dir.join("tiny.toml"),
        "battery_share = 1.0\n[battery]\ncapacity_kwh = 1e-7\n",
    )
    .expect("write");
    let cases: &[(&[&str], &str)] = &[
        (&["demo", "--date", "2016-13-01"], "date"),
        (&["demo", "--date", "2019-06-21"], "2016"),
        (&["demo", "--validators", "0"], "validators"),
        (&["demo", "--der", "shares.toml"], "shares.toml"),
        (&["demo", "--feeder", "empty"], "empty"),
        (&["demo", "--feeder", "missing"], "missing"),
        (&["demo", "--config", "typo.toml"], "validatorz"),
        (&["demo", "--scenario", "storm"], "storm"),
        (&["demo", "--feeder", "synthetic:0"], "synthetic:0"),
        (&["demo", "--feeder", "synthetic:+5"], "synthetic:+5"),
        (&["demo", "--date", "2016-+6-21"], "date"),
        (&["demo", "--der", "tiny.toml", "--no-chain"], "battery"),
        (&["demo", "--seeds", "3..1"], "3..1"),
        (&["demo", "--seeds", "1..3", "--seed", "2"], "--seed"),
    ];
    for (args, what) in cases {
        let out = run(&dir, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(what), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        // One line (clap adds usage and its pointer to --help after blank lines).
        let lines = stderr
            .lines()
            .filter(|l| {
                !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("Usage:")
            })
            .count();
        assert_eq!(lines, 1, "{args:?}: {stderr}");
        assert!(!dir.join("bcte-demo").exists(), "{args:?} wrote a report");
    }
}

#[test]
fn many_seeds_of_a_synthetic_feeder_report_the_spread_of_every_kpi() {
    let dir = scratch("seeds");
    let out = run(
        &dir,
        &[
            "--json",
            "demo",
            "--no-chain",
            "--feeder",
            "synthetic:40",
            "--intervals",
            "8",
            "--seeds",
            "3..5",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let s = &v["summary"];
    assert_eq!(s["seeds"], serde_json::json!([3, 4, 5]));
    let runs = s["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 3);
    // The spread is the runs' own figures: min ≤ median ≤ max of each seed's import.
    let imports: Vec<i64> = runs
        .iter()
        .map(|r| r["transactive"]["import_wh"].as_i64().expect("import"))
        .collect();
    let spread = &s["transactive"]["import_wh"];
    assert_eq!(spread["min"].as_i64(), imports.iter().min().copied());
    assert_eq!(spread["max"].as_i64(), imports.iter().max().copied());
    let mut sorted = imports.clone();
    sorted.sort_unstable();
    assert_eq!(spread["median"].as_i64(), Some(sorted[1]));
    assert_eq!(spread["seeds"], 3);
    // Each seed draws its own feeder: the imports are not all the same.
    assert!(sorted[0] != sorted[2], "{imports:?}");
    for name in [
        "cost_per_household",
        "peak_import_w",
        "co2_g",
        "unserved_metered_wh",
    ] {
        assert!(s["legacy"].get(name).is_some(), "no spread of {name}");
    }
    assert!(dir.join("bcte-demo/report.html").is_file());
}

#[test]
fn the_shipped_example_scenario_runs_with_its_der_mix_beside_it() {
    let dir = scratch("example");
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/demo/winter-shutoff.toml");
    let example = example.to_str().expect("a UTF-8 path");
    let out = run(
        &dir,
        &[
            "--json",
            "demo",
            "--config",
            example,
            "--no-chain",
            "--intervals",
            "48",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let r = &v["summary"];
    assert_eq!(r["scenario"], "psps");
    assert_eq!(r["date"], "2016-12-01");
    assert_eq!(r["seed"], 7);
    // Alert from 09:00 and islanded from 11:00, as the file says.
    assert_eq!(r["intervals"][35]["mode"], "normal");
    assert_eq!(r["intervals"][36]["mode"], "alert");
    assert_eq!(r["intervals"][44]["mode"], "islanded");
    // Its DER mix gives batteries to two households of three.
    let households = r["sites"]
        .as_array()
        .expect("sites")
        .iter()
        .filter(|s| s["household"] == true);
    let (with, all) = households.fold((0, 0), |(w, a), s| {
        let battery = s["der"]
            .as_array()
            .expect("der")
            .iter()
            .any(|d| d == "battery");
        (w + usize::from(battery), a + 1)
    });
    assert!(
        3 * with >= 2 * all - 3 && with < all,
        "{with} of {all} households"
    );
}

/// DM-7: the day against a local network's validator processes over HTTP, and their data
/// directories pass `bcte verify` afterwards. Slow (real processes, about two minutes): run it
/// with `cargo test -p bcte --test demo_cli -- --ignored`.
#[test]
#[ignore = "starts a local network of four validator processes; about two minutes"]
fn a_day_on_a_local_network_over_http_settles_and_its_data_directories_verify() {
    let dir = scratch("network");
    let net = dir.join("net");
    let net_s = net.to_str().expect("a UTF-8 path");
    let out = run(
        &dir,
        &[
            "localnet",
            "init",
            "--dir",
            net_s,
            "--validators",
            "4",
            "--market-clock-speed",
            "60",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut localnet = Command::new(BCTE)
        .args(["localnet", "run", "--dir", net_s, "--stop-after", "600"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the network starts");
    let out = run(
        &dir,
        &["--json", "demo", "--network", net_s, "--intervals", "3"],
    );
    // Ctrl-C stops every node of `localnet run` cleanly.
    let _ = Command::new("kill")
        .args(["-INT", &localnet.id().to_string()])
        .status();
    let _ = localnet.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout).expect("JSON");
    let chain = &v["summary"]["chain"];
    assert_eq!(chain["validators"], 4);
    assert_eq!(chain["clock_speed"], 60);
    assert!(chain["blocks"].as_u64().expect("blocks") > 0);
    assert!(
        v["summary"]["transactive"]["import_wh"]
            .as_i64()
            .expect("import")
            > 0
    );
    for i in 0..4 {
        let data = net.join(format!("node{i}"));
        let out = run(
            &dir,
            &["verify", "--data-dir", data.to_str().expect("UTF-8")],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "node{i}: {text}");
        assert!(text.contains("intact"), "node{i}: {text}");
    }
}
