//! The benchmark commands, run small: they start their own network, offer load, and report
//! what they measured. (The figures themselves are in docs/BENCHMARKS.md; no test asserts a
//! timing.)

mod common;

use common::{assert_ok, bcte, json_of};

#[test]
fn bench_market_streams_bids_across_gate_closures_and_reports_them() {
    let out = bcte(&[
        "--json",
        "bench",
        "market",
        "--validators",
        "4",
        "--sites",
        "60",
        "--nodes",
        "12",
        "--aggregators",
        "2",
        "--rate",
        "240",
        "--interval-ms",
        "1000",
        "--lead-ms",
        "300",
        "--warmup",
        "1",
        "--duration",
        "4",
    ]);
    assert_ok(&out);
    let r = json_of(&out);
    assert_eq!(r["load"], "batch");
    assert!(r["final_bids_per_s"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["gate_closures"].as_u64().unwrap() >= 2, "{r}");
    assert_eq!(r["gates_not_cleared"], serde_json::json!([]), "{r}");
    // Each cleared interval had every site's bid (the stream revises each one several times).
    assert_eq!(
        r["bids_cleared"].as_u64().unwrap(),
        60 * r["gate_closures"].as_u64().unwrap(),
        "{r}"
    );
    assert!(r["gate_to_final_ms"]["p99"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn bench_market_with_one_transaction_per_bid_and_bench_chain_run_on_one_validator() {
    let out = bcte(&[
        "--json",
        "bench",
        "market",
        "--load",
        "single",
        "--validators",
        "1",
        "--sites",
        "30",
        "--nodes",
        "8",
        "--rate",
        "60",
        "--interval-ms",
        "1000",
        "--lead-ms",
        "300",
        "--warmup",
        "1",
        "--duration",
        "3",
    ]);
    assert_ok(&out);
    let r = json_of(&out);
    assert_eq!(r["load"], "single");
    assert_eq!(r["final_bids_per_s"], r["final_txs_per_s"], "{r}");
    assert!(r["final_bids_per_s"].as_f64().unwrap() > 0.0, "{r}");

    let out = bcte(&[
        "--json",
        "bench",
        "chain",
        "--validators",
        "1",
        "--senders",
        "4",
        "--rate",
        "100",
        "--warmup",
        "1",
        "--duration",
        "2",
    ]);
    assert_ok(&out);
    let r = json_of(&out);
    assert!(r["finalized_tx_per_s"].as_f64().unwrap() > 0.0, "{r}");
}

#[test]
fn bench_market_refuses_bad_arguments_with_the_reason() {
    let out = bcte(&["bench", "market", "--interval-ms", "10"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("interval_ms 10"), "{err}");
    let out = bcte(&["bench", "market", "--sites", "70000"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("feeder limit"));
}
