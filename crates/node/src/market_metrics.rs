//! The market's metrics on `GET /metrics`, by feeder (never by site or account: AC-6.1).
//!
//! Counted when a block is finalized here, from what its execution did
//! ([`bcte_ledger::MarketEvent`]) and from its accepted meter transactions; the clearing and
//! settlement times are this node's wall time for each piece of work, measured around the
//! pure core by [`Stopwatch`] when the block was executed. The names and their meaning are
//! listed in `docs/metrics.md`.

use bcte_ledger::{MarketClock, MarketEvent, Probe};
use bcte_types::{Block, Outcome, Payload, Receipt};
use commonware_runtime::{
    Metrics,
    telemetry::metrics::{CounterFamily, EncodeLabelSet, Registered, raw},
};
use std::time::{Duration, Instant};

/// The one label of every market metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeederLabel {
    /// The feeder's id.
    pub feeder: String,
}

type HistogramFamily = Registered<raw::Family<FeederLabel, raw::Histogram, fn() -> raw::Histogram>>;

/// Seconds, for work on one core: 100 µs to 10 s.
const WORK_BUCKETS: [f64; 12] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0, 10.0,
];
/// Seconds from a gate closure to finality: 100 ms to 5 min.
const LATENCY_BUCKETS: [f64; 11] = [0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0];
/// Bids per interval: 1 to 100,000.
const BID_BUCKETS: [f64; 11] = [
    1.0, 10.0, 50.0, 100.0, 500.0, 1_000.0, 5_000.0, 10_000.0, 25_000.0, 50_000.0, 100_000.0,
];

fn work_histogram() -> raw::Histogram {
    raw::Histogram::new(WORK_BUCKETS)
}
fn latency_histogram() -> raw::Histogram {
    raw::Histogram::new(LATENCY_BUCKETS)
}
fn bid_histogram() -> raw::Histogram {
    raw::Histogram::new(BID_BUCKETS)
}

/// Measures each piece of a block's end-of-block market work (a [`Probe`]): one lap per piece
/// that did something, in the order of the execution's [`MarketEvent`]s.
#[derive(Debug, Default)]
pub struct Stopwatch {
    started: Option<Instant>,
    /// The laps.
    pub laps: Vec<Duration>,
}

impl Probe for Stopwatch {
    fn begin(&mut self) {
        self.started = Some(Instant::now());
    }

    fn end(&mut self, done: Option<&MarketEvent>) {
        if let (Some(start), Some(_)) = (self.started.take(), done) {
            self.laps.push(start.elapsed());
        }
    }
}

/// The market's metrics of one node.
#[derive(Clone)]
pub struct MarketMetrics {
    intervals_cleared: CounterFamily<FeederLabel>,
    intervals_settled: CounterFamily<FeederLabel>,
    bids_per_interval: HistogramFamily,
    clearing_seconds: HistogramFamily,
    settlement_seconds: HistogramFamily,
    gate_to_final_seconds: HistogramFamily,
    sites_settled: CounterFamily<FeederLabel>,
    readings_received: CounterFamily<FeederLabel>,
    readings_missing: CounterFamily<FeederLabel>,
}

impl MarketMetrics {
    /// Registers the metrics in `context` (their names take its prefix).
    pub fn register(context: &impl Metrics) -> Self {
        let counters = |name: &str, help: &str| {
            context.register(
                name,
                help,
                raw::Family::<FeederLabel, raw::Counter>::default(),
            )
        };
        let histograms = |name: &str, help: &str, make: fn() -> raw::Histogram| {
            context.register(name, help, raw::Family::new_with_constructor(make))
        };
        Self {
            intervals_cleared: counters("intervals_cleared", "Market intervals cleared (MC-7)"),
            intervals_settled: counters("intervals_settled", "Market intervals settled (ST-2)"),
            bids_per_interval: histograms(
                "bids_per_interval",
                "Site bids in each cleared interval",
                bid_histogram,
            ),
            clearing_seconds: histograms(
                "clearing_seconds",
                "Wall time of clearing one interval inside block execution, on this node",
                work_histogram,
            ),
            settlement_seconds: histograms(
                "settlement_seconds",
                "Wall time of settling one interval inside block execution, on this node",
                work_histogram,
            ),
            gate_to_final_seconds: histograms(
                "gate_to_final_seconds",
                "From an interval's gate closure to the finality, here, of the block that cleared it",
                latency_histogram,
            ),
            sites_settled: counters("sites_settled", "Site settlements of cleared intervals"),
            readings_received: counters(
                "readings_received",
                "Meter readings accepted on chain (single readings and bulk batch entries)",
            ),
            readings_missing: counters(
                "readings_missing",
                "Sites settled on their schedule for want of a reading (ST-3.1)",
            ),
        }
    }

    /// Counts what a block finalized at wall time `now_ms` did: its market `events` (with the
    /// `laps` measured for them), and its accepted meter transactions. `clock` maps a gate's
    /// market time to the block time at which it closed.
    pub fn on_finalized(
        &self,
        block: &Block,
        receipts: &[Receipt],
        events: &[MarketEvent],
        laps: &[Duration],
        clock: MarketClock,
        now_ms: u64,
    ) {
        for (tx, receipt) in block.txs().iter().zip(receipts) {
            if receipt.outcome != Outcome::Accepted {
                continue;
            }
            let (feeder, count) = match &tx.body().payload {
                Payload::Reading(r) => (&r.feeder, 1),
                Payload::MeterBatch(b) => (&b.feeder, b.readings.len() as u64),
                _ => continue,
            };
            self.readings_received
                .get_or_create(&label(feeder))
                .inc_by(count);
        }
        for (i, event) in events.iter().enumerate() {
            let lap = laps.get(i).map(Duration::as_secs_f64);
            match event {
                MarketEvent::Cleared {
                    feeder,
                    gate_ms,
                    bids,
                    ..
                } => {
                    let l = label(feeder);
                    self.intervals_cleared.get_or_create(&l).inc();
                    self.bids_per_interval
                        .get_or_create(&l)
                        .observe(f64::from(*bids));
                    if let Some(s) = lap {
                        self.clearing_seconds.get_or_create(&l).observe(s);
                    }
                    let closed_ms = clock.block_time_of(*gate_ms);
                    let latency_ms = now_ms.saturating_sub(closed_ms);
                    self.gate_to_final_seconds
                        .get_or_create(&l)
                        .observe(latency_ms as f64 / 1_000.0);
                }
                MarketEvent::Settled {
                    feeder,
                    sites,
                    estimated,
                    ..
                } => {
                    let l = label(feeder);
                    self.intervals_settled.get_or_create(&l).inc();
                    self.sites_settled
                        .get_or_create(&l)
                        .inc_by(u64::from(*sites));
                    self.readings_missing
                        .get_or_create(&l)
                        .inc_by(u64::from(*estimated));
                    if let Some(s) = lap {
                        self.settlement_seconds.get_or_create(&l).observe(s);
                    }
                }
            }
        }
    }
}

fn label(feeder: &bcte_types::FeederId) -> FeederLabel {
    FeederLabel {
        feeder: feeder.to_string(),
    }
}
