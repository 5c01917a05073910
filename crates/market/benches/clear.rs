//! Criterion benchmarks of the clearing engine on generated three-level feeders: 100,000 bids
//! on about 2,500 nodes and 1,000,000 bids on about 25,000 nodes, a tenth of the edges
//! congested, for sloped (mixed) and step-only curves.
//!
//! Run with `cargo bench -p bcte-market --bench clear`. `BCTE_BENCH_QUICK=1` runs only the
//! 100,000-bid cases.

use bcte_market::clear;
use bcte_market::generate::{CurveMix, Params, generate};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Duration;

fn bench_clear(c: &mut Criterion) {
    let mut group = c.benchmark_group("clear");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    let quick = std::env::var_os("BCTE_BENCH_QUICK").is_some();
    let sizes: &[(usize, usize)] = if quick {
        &[(100_000, 2_500)]
    } else {
        &[(100_000, 2_500), (1_000_000, 25_000)]
    };
    for &(bids, nodes) in sizes {
        for (mix, name) in [(CurveMix::Mixed, "mixed"), (CurveMix::Steps, "steps")] {
            let params = Params {
                bids,
                nodes,
                levels: 3,
                seed: 1,
                congested_permille: 100,
                mix,
            };
            let generated = generate(&params).expect("generate");
            let market = generated.market;
            group.bench_with_input(BenchmarkId::new(name, bids), &market, |b, m| {
                b.iter(|| clear(black_box(m)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_clear);
criterion_main!(benches);
