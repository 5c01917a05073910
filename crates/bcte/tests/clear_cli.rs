//! End-to-end tests of `bcte clear` and `bcte market gen` as a user runs them: exit codes, the
//! one stderr line of an invalid file, and the JSON on stdout.

use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BCTE: &str = env!("CARGO_BIN_EXE_bcte");

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/market")
        .join(name)
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BCTE)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bcte runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("bcte finishes")
}

/// A scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bcte-clear-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// The result without `stats`, after checking that `stats.clear_ms` is a sane number.
fn result_of(output: &Output) -> Value {
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut result: Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    let stats = result
        .as_object_mut()
        .expect("object")
        .remove("stats")
        .expect("stats");
    let ms = stats["clear_ms"].as_f64().expect("clear_ms is a number");
    assert!((0.0..10_000.0).contains(&ms), "clear_ms {ms}");
    result
}

#[test]
fn the_example_of_the_issue_gives_exactly_the_documented_result() {
    let expected = json!({
        "prices": {"substation": 80.0, "t1": 80.0},
        "allocations": {"grid": -3.5, "house-7": 3.5},
        "flows": {"t1": 3.5},
        "shed_kw": {},
        "spilled_kw": {},
        "bid_shed_kw": {},
        "bid_spilled_kw": {},
        "welfare": 5.87
    });
    let path = example("feeder-small.json");
    let from_file = run(&["clear", path.to_str().expect("utf-8 path")], None);
    assert_eq!(result_of(&from_file), expected);
    assert!(from_file.stderr.is_empty());
    let text = std::fs::read_to_string(&path).expect("example");
    let from_stdin = run(&["clear", "-"], Some(&text));
    assert_eq!(result_of(&from_stdin), expected);
}

#[test]
fn every_shipped_example_clears() {
    for entry in std::fs::read_dir(example("")).expect("examples/market") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let output = run(&["clear", path.to_str().expect("utf-8 path")], None);
            result_of(&output);
        }
    }
}

/// Runs `bcte clear -` on an invalid file and returns its one stderr line.
#[track_caller]
fn refused(text: &str) -> String {
    let output = run(&["clear", "-"], Some(text));
    let stderr = String::from_utf8(output.stderr).expect("utf-8 stderr");
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(output.stdout.is_empty());
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr:?}");
    assert!(lines[0].starts_with("error: <stdin>: "), "{stderr:?}");
    lines[0].to_owned()
}

#[track_caller]
fn assert_refused(text: &str, expected: &str) {
    let line = refused(text);
    assert!(
        line.contains(expected),
        "{line:?} does not contain {expected:?}"
    );
}

/// A valid two-node market with one part replaced.
fn market(nodes: &str, bids: &str) -> String {
    format!(
        "{{\"price_floor\": -500.0, \"price_cap\": 3000.0,\n\"nodes\": [{nodes}],\n\"bids\": [{bids}]}}"
    )
}

const NODES: &str = r#"{"id": "r"}, {"id": "t1", "parent": "r", "import_limit_kw": 10}"#;
const BIDS: &str = r#"{"id": "b", "node": "t1", "curve": [[0, 5], [100, 0]]}"#;

#[test]
fn invalid_files_exit_2_with_one_line_naming_the_problem_and_where() {
    assert_refused(
        "{\"nodes\": [",
        "<stdin>: line 1 column 11: EOF while parsing a list",
    );
    assert_refused(
        "[1, 2]",
        "line 1 column 1: invalid type: sequence, expected an object",
    );
    assert_refused(
        &market(
            r#"{"id": "r"}, {"id": "t1", "parent": "r", "colour": "red"}"#,
            BIDS,
        ),
        r#"node "t1" (nodes[1], line 2): unknown field `colour`, expected one of `id`, `parent`, `import_limit_kw`, `export_limit_kw`"#,
    );
    assert_refused(
        &market(
            NODES,
            r#"{"id": "b", "node": "t1", "curve": [[0, 5]], "price": 3}"#,
        ),
        "bid \"b\" (bids[0], line 3): unknown field `price`",
    );
    assert_refused(
        "{\"nodes\": [], \"extra\": 1}",
        "line 1 column 24: unknown field `extra`",
    );
    // Not a tree: two roots, no root, a cycle, an unknown parent.
    assert_refused(
        &market(r#"{"id": "r"}, {"id": "t1"}"#, ""),
        r#"two roots: nodes "r" and "t1" both have no parent"#,
    );
    assert_refused(
        &market(
            r#"{"id": "a", "parent": "b"}, {"id": "b", "parent": "a"}"#,
            "",
        ),
        "no root",
    );
    assert_refused(
        &market(
            r#"{"id": "r"}, {"id": "a", "parent": "b"}, {"id": "b", "parent": "a"}"#,
            "",
        ),
        r#"node "a", field parent: the parents form a cycle through this node"#,
    );
    assert_refused(
        &market(r#"{"id": "r"}, {"id": "a", "parent": "zz"}"#, ""),
        r#"node "a", field parent: unknown node "zz""#,
    );
    assert_refused(
        &market(NODES, r#"{"id": "b", "node": "zz", "curve": [[0, 1]]}"#),
        r#"bid "b", field node: unknown node "zz""#,
    );
    // Curves.
    assert_refused(
        &market(NODES, r#"{"id": "b", "node": "t1", "curve": []}"#),
        r#"bid "b" (bids[0], line 3), field curve: the curve has no points"#,
    );
    assert_refused(
        &market(
            NODES,
            r#"{"id": "b", "node": "t1", "curve": [[20, 5], [10, 0]]}"#,
        ),
        "field curve: point 1: price 10 falls below the previous point's 20",
    );
    assert_refused(
        &market(
            NODES,
            r#"{"id": "b", "node": "t1", "curve": [[10, 1], [20, 5]]}"#,
        ),
        "field curve: point 1: power 5 kW rises above the previous point's 1 kW",
    );
    assert_refused(
        &market(NODES, r#"{"id": "b", "node": "t1", "curve": [[4000, 1]]}"#),
        "field curve: point 0: price 4000 is outside [price_floor, price_cap] = [-500, 3000]",
    );
    assert_refused(
        &market(NODES, r#"{"id": "b", "node": "t1", "curve": [[0, "5"]]}"#),
        r#"bid "b" (bids[0], line 3), field curve: invalid type: string "5", expected f64"#,
    );
    assert_refused(
        "{\"price_floor\": 100, \"price_cap\": 50, \"nodes\": [{\"id\": \"r\"}]}",
        "field price_floor (line 1): price_floor 100 is not below price_cap 50",
    );
    // NaN, infinity, numbers out of range.
    assert_refused(
        &market(NODES, r#"{"id": "b", "node": "t1", "curve": [[0, NaN]]}"#),
        "line 3 column 50: not a number",
    );
    assert_refused(
        &market(
            NODES,
            r#"{"id": "b", "node": "t1", "curve": [[0, -Infinity]]}"#,
        ),
        "not a number",
    );
    assert_refused(
        &market(NODES, r#"{"id": "b", "node": "t1", "curve": [[0, 1e999]]}"#),
        "field curve: number out of range",
    );
    // Limits and ids.
    assert_refused(
        &market(
            r#"{"id": "r"}, {"id": "t1", "parent": "r", "export_limit_kw": -5}"#,
            "",
        ),
        r#"node "t1" (nodes[1], line 2), field export_limit_kw: negative limit -5 kW"#,
    );
    assert_refused(
        &market(r#"{"id": "r"}, {"id": "r", "parent": "r"}"#, ""),
        r#"node "r": duplicate node id"#,
    );
    assert_refused(
        &market(NODES, &format!("{BIDS}, {BIDS}")),
        r#"bid "b": duplicate bid id"#,
    );
    assert_refused(
        &market(r#"{"id": "r", "id": "s"}"#, ""),
        r#"node "r" (nodes[0], line 2), field id: the field appears twice"#,
    );
    assert_refused(
        &market(r#"{"parent": "r"}"#, ""),
        "nodes[0] (line 2), field id: the field is missing",
    );
}

#[test]
fn an_unreadable_file_exits_2_with_one_line() {
    let missing = scratch("missing").join("no-such-market.json");
    let output = run(&["clear", missing.to_str().expect("utf-8 path")], None);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.contains("no-such-market.json: cannot read:"),
        "{stderr:?}"
    );

    let binary = scratch("binary").join("binary.json");
    std::fs::write(&binary, [0x7b, 0xff, 0xfe, 0x7d]).expect("write");
    let output = run(&["clear", binary.to_str().expect("utf-8 path")], None);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).expect("utf-8");
    assert!(
        stderr.contains("not UTF-8 text: invalid byte at offset 1"),
        "{stderr:?}"
    );
}

#[test]
fn generated_markets_are_reproducible_and_clear() {
    let dir = scratch("gen");
    let (a, b) = (dir.join("a.json"), dir.join("b.json"));
    for path in [&a, &b] {
        let output = run(
            &[
                "market",
                "gen",
                "--bids",
                "300",
                "--nodes",
                "40",
                "--seed",
                "9",
                "--congestion",
                "0.2",
                "-o",
            ]
            .into_iter()
            .chain([path.to_str().expect("utf-8 path")])
            .collect::<Vec<_>>(),
            None,
        );
        assert_eq!(output.status.code(), Some(0));
        let stderr = String::from_utf8(output.stderr).expect("utf-8");
        assert!(
            stderr.contains("generated 300 bids on 40 nodes in 3 levels;"),
            "{stderr:?}"
        );
    }
    assert_eq!(std::fs::read(&a).expect("a"), std::fs::read(&b).expect("b"));
    result_of(&run(&["clear", a.to_str().expect("utf-8 path")], None));

    // Step-curve mode for the LP comparison: every segment is vertical or flat.
    let output = run(
        &["market", "gen", "--bids", "100", "--nodes", "10", "--steps"],
        None,
    );
    let market: Value = serde_json::from_slice(&output.stdout).expect("market JSON");
    for bid in market["bids"].as_array().expect("bids") {
        let curve = bid["curve"].as_array().expect("curve");
        for pair in curve.windows(2) {
            assert!(
                pair[0][0] == pair[1][0] || pair[0][1] == pair[1][1],
                "sloped segment in {bid}"
            );
        }
    }
}

#[test]
fn bad_generator_arguments_exit_2() {
    for args in [
        &["market", "gen", "--congestion", "1.5"][..],
        &["market", "gen", "--bids", "0"],
        &["market", "gen", "--nodes", "3", "--levels", "3"],
        &["market", "gen", "--bids", "many"],
    ] {
        let output = run(args, None);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
    }
}
