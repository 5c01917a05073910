//! The market on the chain through the `bcte` CLI against a real dev node: the README's walk
//! through, `market replay` of every example, modes and priority shedding, an aggregator's
//! batch and its revocation, and bad input getting exit code 2 (input) or 3 (rejected by the
//! ledger) with one line that says why.

use serde_json::{Value, json};
use std::{
    path::Path,
    process::{Command, Output},
};

mod common;

use common::{BIN, Dev, assert_ok, example, json_of};

impl Dev {
    fn write(&self, name: &str, value: &Value) -> String {
        let path = self.path(name);
        std::fs::write(&path, value.to_string()).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// Registers a feeder of 2-second intervals whose gate closes a second before.
    fn fast_feeder(&self, id: &str, nodes: Value) {
        let file = self.write(
            &format!("{id}.json"),
            &json!({
                "id": id,
                "config": {
                    "interval_ms": 2000, "gate_lead_ms": 1000,
                    "import_price": 80.0, "export_price": 20.0,
                    "import_limit_kw": 100.0, "export_limit_kw": 100.0,
                    "alert_import_limit_kw": 30.0
                },
                "nodes": nodes
            }),
        );
        self.register_feeder(&file);
    }

    /// The first interval whose gate is at least a few seconds away.
    /// Registers `meter` as `site`'s meter (DSO).
    fn register_meter(&self, site: &str, meter: &str) {
        self.dso_tx(&["meter", "register", "--site", site, "--meter", meter]);
    }

    /// Mints `amount` base units to `to` (DSO).
    fn mint(&self, to: &str, amount: &str) {
        self.dso_tx(&["mint", "--to", to, "--amount", amount]);
    }

    /// Waits (at most a minute) until the chain's market time reaches `ms`.
    fn wait_market_time(&self, ms: u64) {
        let started = std::time::Instant::now();
        while self.ok(&["market", "status"])["market_time_ms"]
            .as_u64()
            .unwrap()
            < ms
        {
            assert!(
                started.elapsed().as_secs() < 60,
                "market time {ms} was not reached"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    fn next_open(&self, feeder: &str, ahead: u64) -> u64 {
        let s = self.ok(&["market", "status", "--feeder", feeder]);
        s["next_interval"].as_u64().unwrap() + ahead
    }
}

/// stderr as one line, asserting it is one line starting with `error: `.
fn one_error_line(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    err
}

#[test]
fn the_readme_walkthrough_clears_a_bid_at_its_gate_and_proves_the_sites_result() {
    let dev = Dev::start();
    dev.register_demo_feeder();
    let (house_key, house) = dev.key("house");
    let v = dev.ok(&[
        "tx",
        "site",
        "register",
        "--key",
        dev.dso(),
        "--site",
        "house-7",
        "--node",
        "t1",
        "--owner",
        &house,
    ]);
    assert_eq!(v["status"], "accepted");
    // Only one feeder: --feeder may be left out everywhere.
    let k = dev.next_open("demo", 1).to_string();
    let v = dev.ok(&[
        "tx",
        "bid",
        "--key",
        &house_key,
        "--site",
        "house-7",
        "--interval",
        &k,
        "--curve",
        "[[0, 6.5], [120, 2]]",
    ]);
    assert_eq!(v["status"], "accepted");
    let r = dev.ok(&["market", "result", &k, "--wait", "60"]);
    assert_eq!(r["prices"], json!({"substation": 80.0, "t1": 80.0}));
    assert_eq!(r["allocations"], json!({"house-7": 3.5, "upstream": -3.5}));
    assert_eq!(r["mode"], "normal");
    assert_eq!(r["upstream_kw"], 3.5);
    assert_eq!(r["welfare"], 5.87);
    let site = dev.ok(&["market", "result", &k, "--site", "house-7"]);
    assert_eq!(site["verified"], true);
    assert_eq!(site["allocation_kw"], 3.5);
    // house-7 falls in bucket 112 of 256 (MC-7.3).
    assert_eq!(site["key"], format!("results/demo/{k}/112"));
    // The public sees the prices, no site (AC-6.4); the owner its own result, unproven (its
    // proof's bucket is the operator's, AC-6.5).
    let public = dev.public(&["market", "result", &k]);
    assert_eq!(public["prices"], r["prices"]);
    assert_eq!(
        (
            public["scope"].clone(),
            public["sites"].clone(),
            public["allocations"].clone()
        ),
        (json!("own"), json!({}), json!({}))
    );
    let own = dev.ok(&[
        "market", "result", &k, "--site", "house-7", "--key", &house_key,
    ]);
    assert_eq!(
        (own["allocation_kw"].clone(), own["verified"].clone()),
        (json!(3.5), json!(false))
    );
    // Once cleared, the interval's bids are the operator's, and each bid its owner's.
    let bids = dev.ok(&["market", "bids", &k]);
    assert_eq!(bids["bids"][0]["curve"], json!([[0.0, 6.5], [120.0, 2.0]]));
    let own = dev.ok(&["market", "bids", &k, "--key", &house_key]);
    assert_eq!(own["bids"].as_array().unwrap().len(), 1);
    let out = Command::new(BIN)
        .args(["market", "bids", &k])
        .env("BCTE_NODE", &dev.url)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "not public"
    );
}

#[test]
fn replaying_every_example_on_the_chain_matches_clearing_it_locally() {
    let dev = Dev::start();
    for name in [
        "market/feeder-small.json",
        "market/feeder-congested.json",
        "market/microgrid-islanded.json",
    ] {
        let keys = dev.path(&format!("keys-{}", name.replace('/', "-")));
        let out = dev.run(&[
            "--json",
            "market",
            "replay",
            &example(name),
            "--key",
            dev.dso(),
            "--keys-dir",
            keys.to_str().unwrap(),
        ]);
        assert_ok(&out);
        let v = json_of(&out);
        assert_eq!(v["matches_local"], true, "{name}: {v}");
        assert_eq!(v["mode"], "islanded");
        assert!(v["proofs_checked"].as_u64().unwrap() > 0);
        // The chain's result carries bcte clear's fields exactly.
        let local = dev.run(&["clear", &example(name)]);
        let mut local = json_of(&local);
        local.as_object_mut().unwrap().remove("stats");
        for (field, value) in local.as_object().unwrap() {
            assert_eq!(&v[field], value, "{name}: {field}");
        }
    }
    // A kept key is a key file of its site's owner.
    let kept = dev
        .path("keys-market-feeder-small.json")
        .join("house-7.key");
    assert!(kept.exists());
}

#[test]
fn each_grid_mode_gives_its_upstream_bid_and_islanded_shortage_sheds_the_lowest_class_first() {
    let dev = Dev::start();
    dev.fast_feeder(
        "mg",
        json!([{"id": "r"}, {"id": "c", "parent": "r", "import_limit_kw": 500.0}]),
    );
    let (house_key, house) = dev.key("house");
    let (clinic_key, clinic) = dev.key("clinic");
    let sites = dev.write(
        "sites.json",
        &json!([
            {"site": "house", "node": "c", "owner": house},
            {"site": "clinic", "node": "c", "owner": clinic, "priority": 7}
        ]),
    );
    let v = dev.ok(&[
        "tx",
        "site",
        "register",
        "--key",
        dev.dso(),
        "--file",
        &sites,
    ]);
    assert_eq!(v["status"], "accepted");
    let k = dev.next_open("mg", 2);
    for (offset, mode) in [(1, "alert"), (2, "islanded"), (3, "normal")] {
        let from = (k + offset).to_string();
        let v = dev.ok(&[
            "tx",
            "grid-mode",
            mode,
            "--key",
            dev.dso(),
            "--from-interval",
            &from,
        ]);
        assert_eq!(v["status"], "accepted", "{mode}");
    }
    // Each site bids 40 kW for the four intervals in one transaction.
    for (key, site) in [(&house_key, "house"), (&clinic_key, "clinic")] {
        let bids: Vec<Value> = (k..k + 4)
            .map(|i| json!({"site": site, "interval": i, "curve": [[0.0, 40.0]]}))
            .collect();
        let file = dev.write(&format!("{site}-bids.json"), &json!({"bids": bids}));
        let v = dev.ok(&["tx", "bid", "--key", key, "--file", &file]);
        assert_eq!(v["status"], "accepted");
    }
    let result = |i: u64| dev.ok(&["market", "result", &i.to_string(), "--wait", "60"]);
    // Normal: the upstream grid supplies all 80 kW (its limit is 100).
    let r = result(k);
    assert_eq!(
        (r["mode"].clone(), r["allocations"]["upstream"].clone()),
        (json!("normal"), json!(-80.0))
    );
    assert_eq!(r["shed_kw"], json!({}));
    // Alert: import capped at 30 kW; 50 kW are shed, the house (class 0) first, in full.
    let r = result(k + 1);
    assert_eq!(r["mode"], "alert");
    assert_eq!(r["allocations"]["upstream"], -30.0);
    assert_eq!(r["bid_shed_kw"], json!({"house": 40.0, "clinic": 10.0}));
    // Islanded: no upstream bid at all; everything is shed.
    let r = result(k + 2);
    assert_eq!(r["mode"], "islanded");
    assert!(r["allocations"].get("upstream").is_none());
    assert_eq!(r["sites"]["clinic"]["served_kw"], 0.0);
    // Normal again.
    let r = result(k + 3);
    assert_eq!(r["allocations"]["upstream"], -80.0);
}

#[test]
fn a_delegated_aggregator_bids_for_its_sites_in_one_batch_until_revoked() {
    let dev = Dev::start();
    dev.fast_feeder("agg", json!([{"id": "r"}]));
    let (aggregator_key, aggregator) = dev.key("aggregator");
    let owners: Vec<(String, String)> = (0..3).map(|i| dev.key(&format!("owner{i}"))).collect();
    let sites: Vec<Value> = owners
        .iter()
        .enumerate()
        .map(|(i, (_, owner))| json!({"site": format!("s{i}"), "node": "r", "owner": owner}))
        .collect();
    let file = dev.write("sites.json", &Value::Array(sites));
    dev.ok(&[
        "tx",
        "site",
        "register",
        "--key",
        dev.dso(),
        "--file",
        &file,
    ]);
    for (i, (key, _)) in owners.iter().enumerate() {
        let site = format!("s{i}");
        let v = dev.ok(&[
            "tx",
            "site",
            "delegate",
            "--key",
            key,
            "--site",
            &site,
            "--aggregator",
            &aggregator,
        ]);
        assert_eq!(v["status"], "accepted");
    }
    let k = dev.next_open("agg", 2);
    let bids: Vec<Value> = (0..3)
        .map(|i| json!({"site": format!("s{i}"), "interval": k, "curve": [[0.0, 2.0]]}))
        .collect();
    let file = dev.write("batch.json", &json!({"feeder": "agg", "bids": bids}));
    let v = dev.ok(&["tx", "bid", "--key", &aggregator_key, "--file", &file]);
    assert_eq!(v["status"], "accepted");
    // s1's owner revokes: the aggregator's open bid for s1 goes, and it may not bid again.
    let v = dev.ok(&[
        "tx",
        "site",
        "revoke",
        "--key",
        &owners[1].0,
        "--site",
        "s1",
    ]);
    assert_eq!(v["status"], "accepted");
    let out = dev.run(&[
        "tx",
        "bid",
        "--key",
        &aggregator_key,
        "--site",
        "s1",
        "--interval",
        &(k + 1).to_string(),
        "--curve",
        "[[0, 1]]",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("only the owner of site \"s1\" or its delegated aggregator may bid for it"),
        "{text}"
    );
    let r = dev.ok(&["market", "result", &k.to_string(), "--wait", "60"]);
    assert_eq!(
        r["allocations"],
        json!({"s0": 2.0, "s2": 2.0, "upstream": -4.0})
    );
}

#[test]
fn bad_input_gets_exit_code_2_and_a_rejection_exit_code_3_each_with_its_reason() {
    let dev = Dev::start();
    // A malformed feeder file: exit 2, one line naming the file and the place.
    let bad = dev.write(
        "bad.json",
        &json!({"id": "x", "nodes": [{"id": "r", "colour": 1}]}),
    );
    let out = dev.run(&[
        "tx",
        "feeder",
        "register",
        "--key",
        dev.dso(),
        "--file",
        &bad,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = one_error_line(&out);
    assert!(
        err.contains("bad.json") && err.contains("unknown field `colour`"),
        "{err}"
    );
    // An id the chain does not allow.
    let slash = dev.write("slash.json", &json!({"id": "a/b", "nodes": [{"id": "r"}]}));
    let out = dev.run(&[
        "tx",
        "feeder",
        "register",
        "--key",
        dev.dso(),
        "--file",
        &slash,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("invalid feeder id \"a/b\""));
    // No feeder yet: a market command says so.
    let out = dev.run(&["market", "status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("the chain has no feeder yet"));
    // Registered by someone who is not the DSO: refused at admission with the role it
    // lacks (AC-3.2), exit 1.
    let (stranger, _) = dev.key("stranger");
    let ok = dev.write("ok.json", &json!({"id": "f", "nodes": [{"id": "r"}]}));
    let out = dev.run(&[
        "tx", "feeder", "register", "--key", &stranger, "--file", &ok,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        one_error_line(&out).contains("unauthorized: feeder_register needs the role dso"),
        "{}",
        one_error_line(&out)
    );
    dev.fast_feeder("f", json!([{"id": "r"}, {"id": "t", "parent": "r"}]));
    let (owner_key, owner) = dev.key("owner");
    dev.ok(&[
        "tx",
        "site",
        "register",
        "--key",
        dev.dso(),
        "--site",
        "s",
        "--node",
        "t",
        "--owner",
        &owner,
    ]);
    let k = dev.next_open("f", 2).to_string();
    // A curve whose power rises: rejected naming the bid and the point.
    let out = dev.run(&[
        "--json",
        "tx",
        "bid",
        "--key",
        &owner_key,
        "--site",
        "s",
        "--interval",
        &k,
        "--curve",
        "[[0, 1], [10, 5]]",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let v = json_of(&out);
    assert_eq!(
        v["reason"],
        format!(
            "bids[0] (site \"s\", interval {k}), curve: point 1: its power is above the previous point's"
        )
    );
    // Too far ahead.
    let out = dev.run(&[
        "--json",
        "tx",
        "bid",
        "--key",
        &owner_key,
        "--site",
        "s",
        "--interval",
        "100000",
        "--curve",
        "[[0, 1]]",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        json_of(&out)["reason"]
            .as_str()
            .unwrap()
            .contains("beyond the bidding horizon")
    );
    // A curve that is not JSON: exit 2 before anything is sent.
    let out = dev.run(&[
        "tx",
        "bid",
        "--key",
        &owner_key,
        "--site",
        "s",
        "--interval",
        &k,
        "--curve",
        "[[0,",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("--curve"));
    // A limit on a node that does not exist.
    let out = dev.run(&[
        "--json",
        "tx",
        "feeder",
        "limit",
        "--key",
        dev.dso(),
        "--node",
        "nowhere",
        "--import-kw",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(json_of(&out)["reason"], "unknown node \"nowhere\"");
    // Sealed bids and results not there yet: the node refuses, exit 1, one line.
    let out = dev.run(&["market", "bids", &k]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_error_line(&out).contains("sealed until it clears"));
    let out = dev.run(&["market", "result", &k]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_error_line(&out).contains("is not cleared yet"));
    // Replay refuses a file beyond the chain's rules before sending anything.
    let reserved = dev.write(
        "reserved.json",
        &json!({"nodes": [{"id": "r"}], "bids": [{"id": "upstream", "node": "r", "curve": [[0, 1]]}]}),
    );
    let out = dev.run(&["market", "replay", &reserved, "--key", dev.dso()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("reserved on the chain"));
}

#[test]
fn a_cleared_interval_is_metered_and_settled_by_the_rules_through_the_cli() {
    let dev = Dev::start();
    dev.register_demo_feeder();
    let (house_key, house) = dev.key("house");
    let (meter_key, meter) = dev.key("meter");
    dev.register_site("house-7", &house);
    dev.register_meter("house-7", &meter);
    dev.mint(&house, "1000000");
    let site = dev.ok(&["query", "account", &house]);
    assert_eq!(site["balance"], 1_000_000);
    let k = dev.next_open("demo", 1).to_string();
    let bid = [
        "tx",
        "bid",
        "--key",
        &house_key,
        "--site",
        "house-7",
        "--interval",
        &k,
        "--curve",
        "[[0, 6.5], [120, 2]]",
    ];
    assert_eq!(dev.ok(&bid)["status"], "accepted");
    let r = dev.ok(&["market", "result", &k, "--wait", "60"]);
    assert_eq!(r["allocations"]["house-7"], 3.5);
    // Before the interval ends its readings are closed: rejected (exit 3) with the window.
    let reading = |key: &str, wh: &str| {
        dev.run(&[
            "tx",
            "reading",
            "--key",
            key,
            "--site",
            "house-7",
            "--interval",
            &k,
            "--wh",
            wh,
        ])
    };
    // A rejection is printed on stdout with its reason, exit 3.
    let reason = |out: &Output| String::from_utf8_lossy(&out.stdout).into_owned();
    let early = reading(&meter_key, "12");
    assert_eq!(early.status.code(), Some(3), "{early:?}");
    assert!(reason(&early).contains("are accepted from"));
    let open = dev.ok(&["market", "settlement", &k]);
    assert_eq!(open["status"], "open");
    assert_eq!(open["missing_readings"], 1);
    let end_ms = open["end_ms"].as_u64().unwrap();
    dev.wait_market_time(end_ms);
    // Only a meter may read (refused at admission, AC-3.2), and only the site's own.
    let wrong = reading(&house_key, "12");
    assert_eq!(wrong.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("reading needs the role meter"));
    assert_ok(&reading(&meter_key, "12"));
    let twice = reading(&meter_key, "12");
    assert_eq!(twice.status.code(), Some(3));
    assert!(reason(&twice).contains("has a reading"));
    // ST-2.2 to ST-2.4 by hand: 3.5 kW for 10 s is 9.72 Wh, scheduled 10 Wh; 3.5 kW × 10 s at
    // 80/MWh is 777.8 base units, 778; read 12 Wh: +2 Wh at 80 + 20/MWh, 200 base units.
    let s = dev.ok(&["market", "settlement", &k, "--wait", "30"]);
    assert_eq!(s["status"], "settled", "{s}");
    let h = &s["sites"]["house-7"];
    assert_eq!(
        (&h["scheduled_wh"], &h["metered_wh"], &h["deviation_wh"]),
        (&json!(10), &json!(12), &json!(2))
    );
    assert_eq!(
        (
            &h["energy_charge"],
            &h["imbalance_charge"],
            &h["total"],
            &h["estimated"]
        ),
        (&json!(778), &json!(200), &json!(978), &json!(false))
    );
    assert_eq!(s["readings"]["house-7"]["source"], "meter");
    // The upstream supplied the 3.5 kW at the root's 80/MWh: the DSO is both the market and
    // the upstream account here, so it pays itself; the congestion rent is 0.
    let t = &s["totals"];
    assert_eq!(
        (&t["energy_charges"], &t["upstream_charge"]),
        (&json!(778), &json!(-778))
    );
    assert_eq!(
        (&t["congestion_rent"], &t["residue"]),
        (&json!(0), &json!(0))
    );
    let one = dev.ok(&["market", "settlement", &k, "--site", "house-7"]);
    assert_eq!(one["settlement"]["total"], 978);
    assert_eq!(
        dev.ok(&["query", "account", &house])["balance"],
        1_000_000 - 978
    );
    // A correction by the DSO, and one by anyone else.
    let adjust = [
        "tx",
        "adjust",
        "--key",
        dev.dso(),
        "--site",
        "house-7",
        "--interval",
        &k,
        "--amount",
        "-100",
        "--memo",
        "goodwill",
    ];
    assert_eq!(dev.ok(&adjust)["status"], "accepted");
    assert_eq!(
        dev.ok(&["query", "account", &house])["balance"],
        1_000_000 - 878
    );
    let out = dev.run(&[
        "tx",
        "adjust",
        "--key",
        &house_key,
        "--site",
        "house-7",
        "--interval",
        &k,
        "--amount",
        "-1",
        "--memo",
        "me",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("settlement_adjust needs the role dso"));
    let out = dev.run(&[
        "tx",
        "adjust",
        "--key",
        dev.dso(),
        "--site",
        "house-7",
        "--interval",
        &k,
        "--amount",
        "5",
        "--memo",
        " ",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("--memo"));
}

#[test]
fn bulk_readings_are_signed_submitted_proven_settled_and_audited_through_the_cli() {
    let dev = Dev::start();
    dev.register_demo_feeder();
    let (house_key, house) = dev.key("house");
    let (head_end_key, head_end) = dev.key("head-end");
    let sites = ["house-1", "house-2", "house-3"];
    let mut meters_csv = String::from("site,key_file\n");
    for s in sites {
        let (meter_key, meter) = dev.key(&format!("meter-{s}"));
        meters_csv.push_str(&format!("{s},{meter_key}\n"));
        dev.register_site(s, &house);
        dev.register_meter(s, &meter);
    }
    dev.dso_tx(&["meter", "head-end", "--account", &head_end]);
    dev.mint(&house, "1000000");
    // Only house-1 bids: the others are metered sites without a result (served 0, ST-2.2).
    let k = dev.next_open("demo", 1).to_string();
    let bid = [
        "tx",
        "bid",
        "--key",
        &house_key,
        "--site",
        "house-1",
        "--interval",
        &k,
        "--curve",
        "[[0, 6.5], [120, 2]]",
    ];
    assert_eq!(dev.ok(&bid)["status"], "accepted");
    dev.ok(&["market", "result", &k, "--wait", "60"]);
    let end_ms = dev.ok(&["market", "settlement", &k])["end_ms"]
        .as_u64()
        .unwrap();
    dev.wait_market_time(end_ms);

    // The meters sign their readings.
    let meters = dev.path("meters.csv");
    std::fs::write(&meters, meters_csv).unwrap();
    let readings = dev.path("readings.csv");
    std::fs::write(
        &readings,
        format!("site,interval,wh\nhouse-1,{k},10\nhouse-2,{k},30\nhouse-3,{k},-40\n"),
    )
    .unwrap();
    let signed = dev.path("signed.csv");
    let v = dev.ok(&[
        "meter",
        "sign",
        "--in",
        readings.to_str().unwrap(),
        "--meters",
        meters.to_str().unwrap(),
        "--out",
        signed.to_str().unwrap(),
    ]);
    assert_eq!(v["signed"], 3);
    let text = std::fs::read_to_string(&signed).unwrap();

    // A head-end that alters a reading is caught before anything is stored or sent: the line
    // (house-2's, line 3) and the cause are named, exit 2.
    let forged = dev.path("forged.csv");
    std::fs::write(
        &forged,
        text.replacen(&format!("house-2,{k},30,"), &format!("house-2,{k},31,"), 1),
    )
    .unwrap();
    let out = dev.run(&[
        "meter",
        "submit",
        forged.to_str().unwrap(),
        "--key",
        &head_end_key,
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = one_error_line(&out);
    assert!(
        err.contains("line 3") && err.contains("not its meter's"),
        "{err}"
    );

    let v = dev.ok(&[
        "meter",
        "submit",
        signed.to_str().unwrap(),
        "--key",
        &head_end_key,
    ]);
    assert_eq!(
        (v["readings"].as_u64(), v["rejected"].as_u64()),
        (Some(3), Some(0)),
        "{v}"
    );
    let root = v["batches"][0]["root"].as_str().unwrap().to_owned();
    assert_eq!(v["batches"][0]["status"], "accepted");

    // ST-2 by hand (node t1 at 80/MWh, π = 20/MWh): house-1 served 3.5 kW for 10 s, 10 Wh
    // scheduled and read, energy 778, no imbalance; house-2 served 0 and took 30 Wh:
    // 30 × (80 + 20) = 3,000; house-3 served 0 and fed in 40 Wh: −40 × (80 − 20) = −2,400.
    let s = dev.ok(&["market", "settlement", &k, "--wait", "30"]);
    assert_eq!(s["status"], "settled", "{s}");
    let site = |name: &str| {
        let x = &s["sites"][name];
        (
            x["scheduled_wh"].as_i64().unwrap(),
            x["metered_wh"].as_i64().unwrap(),
            x["energy_charge"].as_i64().unwrap(),
            x["imbalance_charge"].as_i64().unwrap(),
        )
    };
    assert_eq!(site("house-1"), (10, 10, 778, 0));
    assert_eq!(site("house-2"), (0, 30, 0, 3_000));
    assert_eq!(site("house-3"), (0, -40, 0, -2_400));
    for name in sites {
        assert_eq!(s["readings"][name]["source"], "batch");
        assert_eq!(s["readings"][name]["batch_root"], root.as_str());
    }
    assert_eq!(s["batches"][0], root.as_str());
    assert_eq!(
        dev.ok(&["query", "account", &house])["balance"],
        1_000_000 - 778 - 3_000 + 2_400
    );

    // Anyone can prove house-2's reading against the root on the chain and its meter's key.
    let p = dev.ok(&["meter", "proof", "--site", "house-2", "--interval", &k]);
    assert_eq!(
        (p["verified"].as_bool(), p["wh"].as_i64()),
        (Some(true), Some(30)),
        "{p}"
    );
    // After a meter swap the proof still holds for the root and the signature but names a
    // meter that is no longer the site's: not verified, exit 3, saying so.
    let (_, new_meter) = dev.key("meter-house-2-new");
    dev.register_meter("house-2", &new_meter);
    let out = dev.run(&["meter", "proof", "--site", "house-2", "--interval", &k]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("not the site's meter now"));
    // house-2 and house-3 delegate their bidding to an aggregator: its portfolio statement.
    let (_, aggregator) = dev.key("aggregator");
    for site in ["house-2", "house-3"] {
        let v = dev.ok(&[
            "tx",
            "site",
            "delegate",
            "--key",
            &house_key,
            "--site",
            site,
            "--aggregator",
            &aggregator,
        ]);
        assert_eq!(v["status"], "accepted", "{v}");
    }
    // The billing export of the period [k, k] (BL-2, BL-3): the same figures, per site, in
    // currency, kWh and base units; one owner, three sites. BL-4 by hand: the portfolio's
    // deviations +30 and -40 Wh at 80/MWh net to -10 Wh; netted, (30 × 80 - 40 × 80 + 20 × 10)
    // = -600 base units, where its sites were charged 3,000 - 2,400 = 600.
    let csv_out = dev.path("billing.csv");
    let out = dev.run(&[
        "export",
        "billing",
        "--from-interval",
        &k,
        "--to-interval",
        &k,
        "--format",
        "csv",
        "--out",
        csv_out.to_str().unwrap(),
    ]);
    assert_ok(&out);
    let text = std::fs::read_to_string(&csv_out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "participant,role,site,period,intervals,estimated,kwh_bought,kwh_sold,energy_charge,imbalance,adjustments,contracts,flexibility,total,total_base_units,net_deviation_kwh,netted_imbalance"
    );
    let period = format!("{k}-{k}");
    assert_eq!(lines.len(), 5, "{text}");
    assert_eq!(
        lines[4],
        format!(
            "{aggregator},aggregator,*,{period},2,0,0.030,0.040,0.000000,0.000600,0.000000,0.000000,0.000000,0.000600,600,-0.010,-0.000600"
        )
    );
    assert_eq!(
        lines[1],
        format!(
            "{house},owner,house-1,{period},1,0,0.010,0.000,0.000778,0.000000,0.000000,0.000000,0.000000,0.000778,778,,"
        )
    );
    assert_eq!(
        lines[2],
        format!(
            "{house},owner,house-2,{period},1,0,0.030,0.000,0.000000,0.003000,0.000000,0.000000,0.000000,0.003000,3000,,"
        )
    );
    assert_eq!(
        lines[3],
        format!(
            "{house},owner,house-3,{period},1,0,0.000,0.040,0.000000,-0.002400,0.000000,0.000000,0.000000,-0.002400,-2400,,"
        )
    );
    let bill = dev.ok(&[
        "export",
        "billing",
        "--from-interval",
        &k,
        "--to-interval",
        &k,
        "--format",
        "json",
    ]);
    assert_eq!(bill["statements"][0]["total"]["total"], 778 + 3_000 - 2_400);
    let portfolio = &bill["portfolios"][0];
    assert_eq!(
        (
            portfolio["net_deviation_wh"].as_i64(),
            portfolio["netted_imbalance"].as_i64(),
            portfolio["netting_benefit"].as_i64()
        ),
        (Some(-10), Some(-600), Some(1_200)),
        "{portfolio}"
    );
    assert_eq!(bill["open_intervals"], json!([]));
    // An inverted period, and one with nothing settled yet: exit 2, one line.
    let ahead = (k.parse::<u64>().unwrap() + 100).to_string();
    for (from, to, says) in [
        (&ahead, &k, "inverted"),
        (&ahead, &ahead, "nothing to bill"),
    ] {
        let out = dev.run(&[
            "export",
            "billing",
            "--from-interval",
            from,
            "--to-interval",
            to,
        ]);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(one_error_line(&out).contains(says), "{out:?}");
    }

    // The same batch again: every site already has a reading, the ledger rejects it (exit 3).
    let out = dev.run(&[
        "meter",
        "submit",
        signed.to_str().unwrap(),
        "--key",
        &head_end_key,
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");

    // Offline, the audit checks the stored batch against the chain, and catches a tampered one.
    let mut dev = dev;
    let _ = dev.child.kill();
    let _ = dev.child.wait();
    let data = dev.path("chain");
    let out = Command::new(BIN)
        .args(["--json", "verify", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert_ok(&out);
    let report = json_of(&out);
    assert_eq!(
        (
            report["batches_checked"].as_u64(),
            report["batches_missing"].as_u64()
        ),
        (Some(1), Some(0)),
        "{report}"
    );
    // A tampered reading (the batch's transaction in its stored block) and a tampered
    // settlement (a site's settled bucket in the stored state) are caught too, naming where.
    let batch_height = v["batches"][0]["height"].as_u64().unwrap();
    let settled_height = s["totals"]["height"].as_u64().unwrap();
    let tampered = |name: &str, table: bcte_store::Table, key: Vec<u8>| -> String {
        use bcte_store::{Batch, RedbStore, Store};
        let copy = dev.path(name);
        std::fs::create_dir_all(&copy).unwrap();
        std::fs::copy(data.join("bcte.redb"), copy.join("bcte.redb")).unwrap();
        {
            let store = RedbStore::open(copy.join("bcte.redb")).unwrap();
            let mut value = store
                .get(table, &key)
                .unwrap()
                .expect("the entry is stored");
            let last = value.len() - 1;
            value[last] ^= 1;
            let mut b = Batch::new();
            b.put(table, key, value);
            store.commit(b).unwrap();
        }
        let out = Command::new(BIN)
            .args(["verify", "--data-dir", copy.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = tampered(
        "tampered-block",
        bcte_store::Table::Blocks,
        batch_height.to_be_bytes().to_vec(),
    );
    assert!(err.contains(&format!("block {batch_height}")), "{err}");
    let settled_key = bcte_ledger::StateKey::Settled(
        bcte_types::FeederId::new("demo").unwrap(),
        bcte_types::Interval(k.parse().unwrap()),
        bcte_ledger::book_bucket(&bcte_types::SiteId::new("house-2").unwrap()),
    );
    let err = tampered(
        "tampered-settlement",
        bcte_store::Table::TreeValues,
        bcte_store::chain::value_key_bytes(&settled_key.tree_key(), settled_height).to_vec(),
    );
    assert!(err.contains(&format!("block {settled_height}")), "{err}");

    let file = data.join("batches").join(&root[..2]).join(&root);
    let mut bytes = std::fs::read(&file).unwrap();
    // The last reading's energy sits 8 + 32 + 64 bytes before the end.
    let at = bytes.len() - 104 - 1;
    bytes[at] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let out = Command::new(BIN)
        .args(["verify", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stored batch") && err.contains(&root), "{err}");
}

/// A Green Button feed of one usage point's readings: `(start_s, duration_s, value)` at the
/// power of ten `power`, flowing `flow` (1 forward, 19 reverse).
fn green_button(readings: &[(u64, u32, i64)], power: i32, flow: u32) -> String {
    let rows: String = readings
        .iter()
        .map(|(start, duration, value)| {
            format!(
                "<IntervalReading><timePeriod><duration>{duration}</duration><start>{start}</start>\
                 </timePeriod><value>{value}</value></IntervalReading>"
            )
        })
        .collect();
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
 <entry><link rel="self" href="/espi/UsagePoint/9"/><link rel="related" href="/espi/UsagePoint/9/MeterReading"/>
  <title>12 Example Street</title>
  <content><UsagePoint xmlns="http://naesb.org/espi"><ServiceCategory><kind>0</kind></ServiceCategory></UsagePoint></content></entry>
 <entry><link rel="self" href="/espi/UsagePoint/9/MeterReading/1"/><link rel="up" href="/espi/UsagePoint/9/MeterReading"/>
  <link rel="related" href="/espi/UsagePoint/9/MeterReading/1/IntervalBlock"/><link rel="related" href="/espi/ReadingType/1"/>
  <content><MeterReading xmlns="http://naesb.org/espi"/></content></entry>
 <entry><link rel="self" href="/espi/ReadingType/1"/>
  <content><ReadingType xmlns="http://naesb.org/espi"><commodity>1</commodity><flowDirection>{flow}</flowDirection>
   <powerOfTenMultiplier>{power}</powerOfTenMultiplier><uom>72</uom></ReadingType></content></entry>
 <entry><link rel="self" href="/espi/UsagePoint/9/MeterReading/1/IntervalBlock/1"/><link rel="up" href="/espi/UsagePoint/9/MeterReading/1/IntervalBlock"/>
  <content><IntervalBlock xmlns="http://naesb.org/espi">{rows}</IntervalBlock></content></entry>
</feed>"#
    )
}

#[test]
fn green_button_readings_are_converted_submitted_by_the_meter_or_as_estimated_and_settled() {
    let dev = Dev::start();
    dev.register_demo_feeder();
    let (house_key, house) = dev.key("house");
    let (meter_key, meter) = dev.key("meter-gb-1");
    let (_, meter_2) = dev.key("meter-gb-2");
    let (head_end_key, head_end) = dev.key("head-end");
    for (site, m) in [("gb-1", &meter), ("gb-2", &meter_2)] {
        dev.register_site(site, &house);
        dev.register_meter(site, m);
    }
    dev.dso_tx(&["meter", "head-end", "--account", &head_end]);
    dev.mint(&house, "1000000");
    // gb-1 bids (t1's price is then the import price, 80/MWh, as in the bulk test).
    let k = dev.next_open("demo", 1).to_string();
    let bid = [
        "tx",
        "bid",
        "--key",
        &house_key,
        "--site",
        "gb-1",
        "--interval",
        &k,
        "--curve",
        "[[0, 6.5], [120, 2]]",
    ];
    assert_eq!(dev.ok(&bid)["status"], "accepted");
    let r = dev.ok(&["market", "result", &k, "--wait", "60"]);
    let start_s = r["start_ms"].as_u64().unwrap() / 1_000;
    assert_eq!(r["interval_ms"], 10_000);
    let end_ms = dev.ok(&["market", "settlement", &k])["end_ms"]
        .as_u64()
        .unwrap();
    dev.wait_market_time(end_ms);

    // gb-1's utility file: two 5-second readings, 4 and 6 Wh, consumed.
    let gb1 = dev.path("gb-1.xml");
    std::fs::write(
        &gb1,
        green_button(&[(start_s, 5, 4), (start_s + 5, 5, 6)], 0, 1),
    )
    .unwrap();
    // Read on its own: one series, totalled, no address anywhere in the output.
    let out = dev.run(&["--json", "meter", "greenbutton", gb1.to_str().unwrap()]);
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        !text.contains("Example Street"),
        "no address printed: {text}"
    );
    let v = json_of(&out);
    assert_eq!(v["series"][0]["total_raw"], 10);
    assert_eq!(v["series"][0]["usage_point"], "/espi/UsagePoint/9");
    // With the site, a dry run: interval k, 10 Wh (GB-5).
    let v = dev.ok(&[
        "meter",
        "greenbutton",
        gb1.to_str().unwrap(),
        "--site",
        "gb-1",
    ]);
    assert_eq!(
        v["readings"],
        json!([{"interval": k.parse::<u64>().unwrap(), "wh": 10}]),
        "{v}"
    );
    // gb-2's file: 15,000 + 15,000 mWh fed in (reverse flow, ×10⁻³): -30 Wh, submitted by
    // the head-end, which no meter signed: marked estimated in the raw batch (ST-1.6).
    let gb2 = dev.path("gb-2.xml");
    std::fs::write(
        &gb2,
        green_button(&[(start_s, 5, 15_000), (start_s + 5, 5, 15_000)], -3, 19),
    )
    .unwrap();
    // Someone neither the meter nor a head-end is refused by the node (the raw batch upload is
    // a head-end's, AC-6.2): exit 1, the reason on one line.
    let out = dev.run(&[
        "meter",
        "greenbutton",
        gb2.to_str().unwrap(),
        "--site",
        "gb-2",
        "--submit",
        "--key",
        &house_key,
        "--meter",
        &meter_2,
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        one_error_line(&out).contains("for a head-end or a DSO"),
        "{out:?}"
    );
    let v = dev.ok(&[
        "meter",
        "greenbutton",
        gb2.to_str().unwrap(),
        "--site",
        "gb-2",
        "--submit",
        "--key",
        &head_end_key,
        "--meter",
        &meter_2,
    ]);
    assert_eq!(v["submitted"][0]["status"], "accepted", "{v}");
    assert_eq!(v["submitted"][0]["estimated"], true);

    // Submitted by gb-1's meter: its own reading, signed by it. gb-1 is the one site with a
    // result, so this reading completes the interval, which settles (ST-2.1).
    let v = dev.ok(&[
        "meter",
        "greenbutton",
        gb1.to_str().unwrap(),
        "--site",
        "gb-1",
        "--submit",
        "--key",
        &meter_key,
    ]);
    assert_eq!(
        (
            v["rejected"].as_u64(),
            v["submitted"][0]["estimated"].as_bool()
        ),
        (Some(0), Some(false)),
        "{v}"
    );
    assert_eq!(v["submitted"][0]["status"], "accepted", "{v}");

    // ST-2 by hand (t1 at 80/MWh, π = 20/MWh): gb-1 served 3.5 kW for 10 s, 10 Wh scheduled
    // and read, energy 778 (as house-1 in the bulk test), no imbalance; gb-2 served nothing and
    // fed in 30 Wh: −30 × (80 − 20) = −1,800.
    let s = dev.ok(&["market", "settlement", &k, "--wait", "30"]);
    assert_eq!(s["status"], "settled", "{s}");
    let site = |name: &str| {
        let x = &s["sites"][name];
        (
            x["metered_wh"].as_i64().unwrap(),
            x["imbalance_charge"].as_i64().unwrap(),
        )
    };
    assert_eq!(site("gb-1"), (10, 0));
    assert_eq!(s["sites"]["gb-1"]["energy_charge"], 778);
    assert_eq!(site("gb-2"), (-30, -1_800));
    assert_eq!(s["readings"]["gb-1"]["source"], "meter");
    assert_eq!(s["readings"]["gb-2"]["source"], "batch");
    // The proof of gb-2's reading holds, and says no meter signed it.
    let p = dev.ok(&["meter", "proof", "--site", "gb-2", "--interval", &k]);
    assert_eq!(
        (
            p["verified"].as_bool(),
            p["estimated"].as_bool(),
            p["wh"].as_i64()
        ),
        (Some(true), Some(true), Some(-30)),
        "{p}"
    );

    // Gas billing data is read but refused for settlement, exit 2 with the reason.
    let gas = format!(
        "{}/../greenbutton/testdata/Gas.xml",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = dev.run(&["meter", "greenbutton", &gas, "--site", "gb-1"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(one_error_line(&out).contains("series 0 is gas"), "{out:?}");
    // A file that is not XML: exit 2, one line naming where.
    let bad = dev.path("bad.xml");
    std::fs::write(&bad, "<feed><entry>").unwrap();
    let out = dev.run(&["meter", "greenbutton", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let line = one_error_line(&out);
    assert!(
        line.contains("bad.xml") && line.contains("line 1"),
        "{line}"
    );
    // Offline, the audit checks the estimated reading's batch: root, energy and meter, and no
    // signature to check.
    let mut dev = dev;
    let _ = dev.child.kill();
    let _ = dev.child.wait();
    let data = dev.path("chain");
    let out = Command::new(BIN)
        .args(["--json", "verify", "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert_ok(&out);
    let report = json_of(&out);
    assert_eq!(report["batches_checked"].as_u64(), Some(1), "{report}");
}

#[test]
fn a_p2p_contract_is_consented_entered_settled_billed_and_cancelled_through_the_cli() {
    let dev = Dev::start();
    dev.register_demo_feeder();
    let (seller_key, seller) = dev.key("seller");
    let (buyer_key, buyer) = dev.key("buyer");
    dev.register_site("pv", &seller);
    dev.register_site("home", &buyer);
    dev.mint(&buyer, "1000000");
    let k = dev.next_open("demo", 1);
    let (from, to) = (k.to_string(), (k + 5).to_string());
    let terms = |v: &mut Vec<String>, kw: &str| {
        for a in [
            "--seller-site",
            "pv",
            "--buyer-site",
            "home",
            "--kw",
            kw,
            "--from-interval",
            &from,
            "--to-interval",
            &to,
            "--price",
            "60",
        ] {
            v.push(a.to_owned());
        }
    };
    let run = |args: Vec<String>| dev.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // The seller consents offline; the buyer submits.
    let mut consent = vec![
        "--json".into(),
        "contract".into(),
        "consent".into(),
        "p2p".into(),
        "--key".into(),
        seller_key.clone(),
    ];
    terms(&mut consent, "2");
    let out = run(consent);
    assert_ok(&out);
    let c = json_of(&out);
    let (sig, id) = (
        c["consent"].as_str().unwrap().to_owned(),
        c["id"].as_str().unwrap().to_owned(),
    );
    let submit = |kw: &str, consent: &str| {
        let mut v: Vec<String> = vec![
            "--json".into(),
            "tx".into(),
            "contract".into(),
            "p2p".into(),
            "--key".into(),
            buyer_key.clone(),
            "--consent".into(),
            consent.into(),
        ];
        terms(&mut v, kw);
        run(v)
    };
    // A negative power is bad input (exit 2); a consent the buyer signed itself is one
    // signature, not two: rejected by the ledger (exit 3).
    let out = submit("-2", &sig);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(one_error_line(&out).contains("--kw"));
    let mut own = vec![
        "--json".into(),
        "contract".into(),
        "consent".into(),
        "p2p".into(),
        "--key".into(),
        buyer_key.clone(),
    ];
    terms(&mut own, "2");
    let own_sig = json_of(&run(own))["consent"].as_str().unwrap().to_owned();
    let out = submit("2", &own_sig);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("both parties must sign"));
    let out = submit("2", &sig);
    assert_ok(&out);
    assert_eq!(json_of(&out)["status"], "accepted");
    let list = dev.ok(&["market", "contracts"]);
    assert_eq!(list["contracts"][0]["id"], id.as_str());
    assert_eq!(list["contracts"][0]["power_kw"], 2.0);

    // CT-2.1 by hand: nobody bids, so t1 clears at the midpoint of the upstream's 80 and
    // 20/MWh, 50/MWh; 2 kW for 10 s at 60 − 50 = 10/MWh is 2,000 × 10,000 × 10⁷ / 3.6·10¹²
    // = 55.6, 56 base units, paid by the buyer's owner to the seller's.
    let s = dev.ok(&["market", "settlement", &from, "--wait", "60"]);
    assert_eq!(s["status"], "settled", "{s}");
    let flows = &s["totals"]["contracts"];
    assert_eq!(
        (flows[0]["id"].as_str(), flows[0]["amount"].as_i64()),
        (Some(id.as_str()), Some(56)),
        "{s}"
    );
    let bill = dev.ok(&[
        "export",
        "billing",
        "--from-interval",
        &from,
        "--to-interval",
        &from,
        "--format",
        "json",
    ]);
    let contracts_of = |who: &str, site: &str| {
        bill["statements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|st| st["participant"] == who)
            .map(|st| st["sites"][site]["contracts"].as_i64().unwrap())
    };
    assert_eq!(
        (contracts_of(&buyer, "home"), contracts_of(&seller, "pv")),
        (Some(56), Some(-56)),
        "{bill}"
    );

    // Cancelled from the next open interval on, with the seller's consent.
    let cut = dev.next_open("demo", 1).to_string();
    let c = dev.ok(&[
        "contract",
        "consent",
        "cancel",
        "--key",
        &seller_key,
        "--id",
        &id,
        "--from-interval",
        &cut,
    ]);
    let v = dev.ok(&[
        "tx",
        "contract",
        "cancel",
        "--key",
        &buyer_key,
        "--id",
        &id,
        "--from-interval",
        &cut,
        "--consent",
        c["consent"].as_str().unwrap(),
    ]);
    assert_eq!(v["status"], "accepted", "{v}");
    let list = dev.ok(&["market", "contracts"]);
    assert_eq!(
        list["contracts"][0]["until_interval"].as_u64(),
        Some(cut.parse::<u64>().unwrap() - 1),
        "{list}"
    );
}

#[test]
fn a_flexibility_request_is_offered_accepted_verified_against_the_baseline_and_paid() {
    let dev = Dev::start();
    // A feeder of 4-second intervals whose baseline "day" is one interval, one day long
    // (FX-3.1): interval K's baseline is the reading of K − 1.
    let file = dev.write(
        "flex.json",
        &json!({
            "id": "flex",
            "config": {
                "interval_ms": 4000, "gate_lead_ms": 2000,
                "import_price": 80.0, "export_price": 20.0,
                "import_limit_kw": 100.0, "export_limit_kw": 100.0,
                "alert_import_limit_kw": 30.0,
                "baseline_days": 1, "baseline_day_intervals": 1
            },
            "nodes": [{"id": "substation"}, {"id": "t1", "parent": "substation"}]
        }),
    );
    dev.dso_tx(&["feeder", "register", "--file", &file]);
    let (house_key, house) = dev.key("house");
    let (pv_key, pv_owner) = dev.key("pv-owner");
    let (meter_key, meter) = dev.key("meter");
    let (pv_meter_key, pv_meter) = dev.key("pv-meter");
    dev.register_site("home", &house);
    dev.register_site("pv", &pv_owner);
    dev.register_meter("home", &meter);
    dev.register_meter("pv", &pv_meter);
    dev.mint(&house, "1000000");
    dev.mint(&pv_owner, "1000000");
    let k = dev.next_open("flex", 5);
    let (ks, before) = (k.to_string(), (k - 1).to_string());
    dev.dso_tx(&[
        "contract",
        "flex",
        "request",
        "--direction",
        "reduce",
        "--at-node",
        "t1",
        "--kw",
        "6",
        "--from-interval",
        &ks,
        "--to-interval",
        &ks,
        "--price",
        "200",
        "--gate-interval",
        &ks,
    ]);
    let list = dev.ok(&["market", "flex"]);
    let id = list["requests"][0]["id"].as_str().unwrap().to_owned();
    let offer = |key: &str, site: &str, kw: &str| {
        dev.run(&[
            "--json",
            "tx",
            "contract",
            "flex",
            "offer",
            "--key",
            key,
            "--request",
            &id,
            "--sites",
            site,
            "--kw",
            kw,
        ])
    };
    // FX-2.1: more than requested is rejected by the ledger (exit 3), a bad id is bad input.
    let out = offer(&house_key, "home", "7");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("at most the 6000 W requested"));
    let out = dev.run(&[
        "tx",
        "contract",
        "flex",
        "offer",
        "--key",
        &house_key,
        "--request",
        "zz",
        "--sites",
        "home",
        "--kw",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(one_error_line(&out).contains("--request"));
    assert_ok(&offer(&house_key, "home", "5"));
    assert_ok(&offer(&pv_key, "pv", "1"));
    dev.dso_tx(&[
        "contract",
        "flex",
        "accept",
        "--request",
        &id,
        "--offers",
        "0,1",
    ]);
    let list = dev.ok(&["market", "flex"]);
    assert_eq!(list["requests"][0]["accepted_kw"], 6.0, "{list}");
    assert_eq!(list["requests"][0]["offers"][1]["accepted"], true);

    // The baseline interval's readings: home 10 Wh, pv 5 Wh.
    let read = |key: &str, site: &str, k: &str, wh: &str| {
        let v = dev.ok(&[
            "tx",
            "reading",
            "--key",
            key,
            "--site",
            site,
            "--interval",
            k,
            "--wh",
            wh,
        ]);
        assert_eq!(v["status"], "accepted", "{v}");
    };
    let end_of = |k: &str| {
        let s = dev.ok(&["market", "settlement", k]);
        s["end_ms"].as_u64().unwrap_or_else(|| panic!("{s}"))
    };
    dev.ok(&["market", "result", &before, "--wait", "60"]);
    dev.wait_market_time(end_of(&before));
    read(&meter_key, "home", &before, "10");
    read(&pv_meter_key, "pv", &before, "5");
    // FX-2.1: the gate has closed for offers.
    let out = offer(&house_key, "home", "1");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    // The interval itself: home 6 Wh, pv 7 Wh; it waits for both (FX-3.2).
    dev.ok(&["market", "result", &ks, "--wait", "60"]);
    let open = dev.ok(&["market", "settlement", &ks]);
    assert_eq!(open["missing_readings"], 2, "{open}");
    dev.wait_market_time(end_of(&ks));
    read(&meter_key, "home", &ks, "6");
    read(&pv_meter_key, "pv", &ks, "7");
    // FX-3 by hand: home delivered 10 − 6 = 4 Wh, under its cap of 5 kW × 4 s = 5.6 → 6 Wh:
    // 4 Wh × 200/MWh = 800 base units. pv took 2 Wh more than its baseline: nothing.
    let s = dev.ok(&["market", "settlement", &ks, "--wait", "30"]);
    assert_eq!(s["status"], "settled", "{s}");
    let flex = &s["totals"]["flexibility"];
    assert_eq!(
        (
            &flex[0]["offer"],
            &flex[0]["delivered_wh"],
            &flex[0]["amount"]
        ),
        (&json!(0), &json!(4), &json!(800)),
        "{s}"
    );
    assert_eq!(flex[0]["sites"][0]["baseline_wh"], 10);
    assert_eq!(
        (
            &flex[1]["delivered_wh"],
            &flex[1]["amount"],
            &flex[1]["sites"][0]["delivered_wh"]
        ),
        (&json!(0), &json!(0), &json!(-2))
    );
    assert_eq!(s["totals"]["flexibility_paid"], 800);
    let bill = dev.ok(&[
        "export",
        "billing",
        "--from-interval",
        &ks,
        "--to-interval",
        &ks,
        "--format",
        "json",
    ]);
    let flex_of = |who: &str, site: &str| {
        bill["statements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|st| st["participant"] == who)
            .map(|st| st["sites"][site]["flexibility"].as_i64().unwrap())
    };
    assert_eq!(
        (flex_of(&house, "home"), flex_of(&pv_owner, "pv")),
        (Some(-800), Some(0)),
        "{bill}"
    );
}

#[test]
fn an_ev_charging_contract_is_consented_bid_for_metered_and_settled_through_the_cli() {
    let dev = Dev::start();
    dev.register_demo_feeder();
    let (driver_key, driver) = dev.key("driver");
    let (provider_key, provider) = dev.key("provider");
    let (meter_key, meter) = dev.key("ev-meter");
    dev.register_site("ev", &driver);
    dev.register_meter("ev", &meter);
    dev.mint(&driver, "1000000");
    let k = dev.next_open("demo", 1);
    let ks: Vec<String> = (k..k + 3).map(|x| x.to_string()).collect();
    let terms: Vec<String> = [
        "--site",
        "ev",
        "--provider",
        &provider,
        "--kwh",
        "0.05",
        "--from-interval",
        &ks[0],
        "--deadline-interval",
        &ks[2],
        "--slow-kw",
        "3.7",
        "--slow-price",
        "250",
        "--fast-kw",
        "11",
        "--fast-price",
        "400",
        "--choice",
        "fast",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let with_terms = |head: &[&str]| {
        let mut v: Vec<&str> = head.to_vec();
        v.extend(terms.iter().map(String::as_str));
        dev.run(&v)
    };
    // The driver consents offline; the provider submits.
    let out = with_terms(&["--json", "contract", "consent", "ev", "--key", &driver_key]);
    assert_ok(&out);
    let c = json_of(&out);
    let (sig, id) = (
        c["consent"].as_str().unwrap().to_owned(),
        c["id"].as_str().unwrap().to_owned(),
    );
    let out = with_terms(&[
        "--json",
        "tx",
        "contract",
        "ev",
        "--key",
        &provider_key,
        "--consent",
        &driver_key,
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "a key file is no consent: {out:?}"
    );
    assert!(one_error_line(&out).contains("--consent"));
    let out = with_terms(&[
        "--json",
        "tx",
        "contract",
        "ev",
        "--key",
        &provider_key,
        "--consent",
        &sig,
    ]);
    assert_ok(&out);
    assert_eq!(json_of(&out)["status"], "accepted");
    let list = dev.ok(&["market", "contracts"]);
    let ev = &list["ev"][0];
    assert_eq!(
        (
            ev["id"].as_str(),
            ev["owner"].as_str(),
            ev["choice"].as_str(),
            ev["remaining_wh"].as_i64()
        ),
        (
            Some(id.as_str()),
            Some(driver.as_str()),
            Some("fast"),
            Some(50)
        ),
        "{list}"
    );

    // CT-3.4 by hand, Δ = 10 s, nobody else bidding, upstream energy at 80/MWh: interval K
    // bids 11 kW at 400 × 50 / (3 × 30.56) = 218.18/MWh, served: 31 Wh; K + 1 the 19 Wh left,
    // 6.84 kW at 124.36, served: 19 Wh; K + 2 nothing is left to bid. The meter reads the
    // schedule, and is waited for in all three (CT-4.1).
    let end_of = |k: &str| {
        let s = dev.ok(&["market", "settlement", k]);
        s["end_ms"].as_u64().unwrap_or_else(|| panic!("{s}"))
    };
    for (k, wh, kw) in [
        (&ks[0], "31", 11.0),
        (&ks[1], "19", 6.84),
        (&ks[2], "0", 0.0),
    ] {
        dev.ok(&["market", "result", k, "--wait", "60"]);
        if kw > 0.0 {
            let r = dev.ok(&["market", "result", k, "--site", "ev"]);
            assert_eq!(r["served_kw"].as_f64(), Some(kw), "{r}");
        }
        dev.wait_market_time(end_of(k));
        let v = dev.ok(&[
            "tx",
            "reading",
            "--key",
            &meter_key,
            "--site",
            "ev",
            "--interval",
            k,
            "--wh",
            wh,
        ]);
        assert_eq!(v["status"], "accepted", "{v}");
    }
    // CT-4.2: 50 Wh × 400/MWh = 20,000 base units; the market charged 11 kW × 10 s × 80/MWh
    // = 2,444.4 → 2,444 and 6.84 kW × 10 s × 80/MWh = 1,520: the driver pays the provider
    // 20,000 − 3,964 = 16,036.
    let s = dev.ok(&["market", "settlement", &ks[2], "--wait", "60"]);
    assert_eq!(s["status"], "settled", "{s}");
    let flow = &s["totals"]["ev"][0];
    assert_eq!(
        (
            flow["id"].as_str(),
            flow["delivered_wh"].as_i64(),
            flow["shortfall_wh"].as_i64(),
            flow["charge"].as_i64(),
            flow["market_charges"].as_i64(),
            flow["difference"].as_i64()
        ),
        (
            Some(id.as_str()),
            Some(50),
            Some(0),
            Some(20_000),
            Some(3_964),
            Some(16_036)
        ),
        "{s}"
    );
    assert_eq!(dev.ok(&["query", "account", &provider])["balance"], 16_036);
    // BL-2.5: the charger's bill carries the difference, and the provider has a statement.
    let bill = dev.ok(&[
        "export",
        "billing",
        "--from-interval",
        &ks[0],
        "--to-interval",
        &ks[2],
        "--format",
        "json",
    ]);
    let driver_bill = bill["statements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|st| st["participant"] == driver.as_str())
        .map(|st| {
            (
                st["sites"]["ev"]["contracts"].as_i64(),
                st["sites"]["ev"]["total"].as_i64(),
            )
        });
    assert_eq!(driver_bill, Some((Some(16_036), Some(20_000))), "{bill}");
    assert_eq!(
        bill["providers"][0]["provider"],
        provider.as_str(),
        "{bill}"
    );
    assert_eq!(
        bill["providers"][0]["chargers"]["ev"]["total"], -16_036,
        "{bill}"
    );
    let out = dev.run(&[
        "export",
        "billing",
        "--from-interval",
        &ks[0],
        "--to-interval",
        &ks[2],
        "--format",
        "csv",
    ]);
    assert_ok(&out);
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(
        csv.lines()
            .any(|l| l.starts_with(&format!("{provider},provider,ev,"))
                && l.contains(",-0.016036,-16036,")),
        "{csv}"
    );
}

#[test]
fn a_simbench_grid_is_imported_registered_and_its_sites_placed_and_a_broken_one_is_named() {
    let dev = Dev::start();
    let grid = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/simbench/1-LV-rural1--0-sw");
    let grid = grid.to_str().unwrap();
    let out = dev.path("rural1.json");
    let out = out.to_str().unwrap();
    let v = dev.ok(&["feeder", "import-simbench", grid, "--out", out]);
    // The data set's own figures: 14 LV buses and the 20 kV bus, a 160 kVA transformer, 13
    // loads of 80 kW and 4 PV units.
    assert_eq!(
        (
            &v["feeder"],
            &v["nodes"],
            &v["loads"],
            &v["generators"],
            &v["transformer_kw"]
        ),
        (
            &json!("LV1.101"),
            &json!(15),
            &json!(13),
            &json!(4),
            &json!(160.0)
        ),
        "{v}"
    );
    let model: Value = serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap();
    assert_eq!(model["nodes"][2]["import_limit_kw"], 187.061, "{model}");
    // The model is a feeder file: it registers as it is, and its sites go on its nodes.
    dev.dso_tx(&["feeder", "register", "--file", out]);
    let (_, owner) = dev.key("owner");
    let site = &model["sites"][0];
    dev.dso_tx(&[
        "site",
        "register",
        "--feeder",
        "LV1.101",
        "--site",
        site["site"].as_str().unwrap(),
        "--node",
        site["node"].as_str().unwrap(),
        "--owner",
        &owner,
    ]);
    // A broken copy: exit 2, one line naming the file, the line and the column; no output.
    let broken = dev.path("broken");
    std::fs::create_dir_all(&broken).unwrap();
    for f in std::fs::read_dir(grid).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, broken.join(f.file_name().unwrap())).unwrap();
    }
    let line = std::fs::read_to_string(broken.join("Line.csv")).unwrap();
    std::fs::write(broken.join("Line.csv"), line.replacen(";100;", ";lots;", 1)).unwrap();
    let bad_out = dev.path("broken.json");
    let run = dev.run(&[
        "feeder",
        "import-simbench",
        broken.to_str().unwrap(),
        "--out",
        bad_out.to_str().unwrap(),
    ]);
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    let err = one_error_line(&run);
    assert!(
        err.ends_with("Line.csv, line 2, column loadingMax: not a number: \"lots\""),
        "{err}"
    );
    assert!(!bad_out.exists());
}
