//! Bulk meter data from the command line (docs/settlement-rules.md, ST-1.5):
//! `bcte meter sign` (what the meters do: sign their readings), `bcte meter submit` (what a
//! head-end does: check every signature, build the batches and their Merkle trees, store the raw
//! data on the node, submit the energies and roots) and `bcte meter proof` (what anyone
//! disputing a value does: prove one reading against the root on the chain and its meter's
//! signature, trusting neither the head-end nor the node).
//!
//! The signed readings file is CSV with a header line and the columns
//! `site,interval,wh,meter,signature` (the meter's ACCOUNT and its signature in hex; an empty
//! signature is a reading no meter signed, submitted marked estimated: ST-1.6); see
//! docs/api.md, "Raw meter batches". Exit codes: 0 done, 1 the node failed or refused, 2 invalid
//! input (the line is named), 3 a transaction was rejected or a proof does not hold.

use crate::{
    chain_cmds::{chain_of, emit, fail, submit_in_order},
    client::Client,
    market_cmds::{enc, input, resolve_feeder, site_id},
};
use anyhow::{Context as _, anyhow};
use bcte_node::{
    batch_api::{BatchStored, ReadingProofView},
    files,
    market_api::SiteView,
    settle_api::SettlementView,
};
use bcte_types::{
    AccountId, ChainId, FeederId, Interval, Payload, SiteId, WattHours,
    batch::{RawBatch, ReadingProof, SignedReading, parse_signature},
    ids::parse_hash,
    meter::MeterBatch,
};
use clap::{Args, Subcommand};
use commonware_codec::Encode;
use commonware_cryptography::ed25519::PrivateKey;
use serde::Serialize;
use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

/// `bcte meter` subcommands.
#[derive(Subcommand, Debug)]
pub enum MeterBulkCommand {
    /// Sign readings as their meters do (a meter simulator): READINGS.csv
    /// (`site,interval,wh`) and the meters' key files in, signed readings CSV out.
    Sign(SignArgs),
    /// Submit signed readings in bulk as a head-end: check every signature, store each
    /// interval's raw batch on the node and submit its energies and Merkle root.
    Submit(SubmitArgs),
    /// Prove a site's reading from a head-end batch against the root on the chain and check
    /// its meter's signature.
    Proof(ProofArgs),
    /// Read a Green Button (ESPI) file: its series checked and totalled; with --site, the
    /// site's interval readings on the feeder's intervals; with --submit, sent as the site's
    /// meter's or, marked estimated, a head-end's (docs/greenbutton.md).
    Greenbutton(crate::greenbutton_cmds::GreenButtonArgs),
}

/// Arguments of `bcte meter sign`.
#[derive(Args, Debug)]
pub struct SignArgs {
    /// The readings: CSV with the header `site,interval,wh`.
    #[arg(long = "in", value_name = "FILE")]
    input: PathBuf,
    /// The meters: CSV with the header `site,key_file` (a key file per meter).
    #[arg(long, value_name = "FILE")]
    meters: PathBuf,
    /// Where to write the signed readings (`site,interval,wh,meter,signature`).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The feeder (optional when the chain has one).
    #[arg(long)]
    feeder: Option<String>,
    /// The node's API URL (for the chain id and the feeder).
    #[arg(long, value_name = "URL", default_value = crate::chain_cmds::DEFAULT_NODE, env = "BCTE_NODE")]
    node: String,
}

/// Arguments of `bcte meter submit`.
#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// The signed readings (`site,interval,wh,meter,signature`), any number of intervals.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The head-end system's key file.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The feeder (optional when the chain has one).
    #[arg(long)]
    feeder: Option<String>,
    /// The node's API URL.
    #[arg(long, value_name = "URL", default_value = crate::chain_cmds::DEFAULT_NODE, env = "BCTE_NODE")]
    node: String,
    /// How long to wait for the transactions to be final, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
}

/// Arguments of `bcte meter proof`.
#[derive(Args, Debug)]
pub struct ProofArgs {
    /// The site.
    #[arg(long)]
    site: String,
    /// The interval.
    #[arg(long)]
    interval: u64,
    /// The feeder (optional when the chain has one).
    #[arg(long)]
    feeder: Option<String>,
    /// The node's API URL.
    #[arg(long, value_name = "URL", default_value = crate::chain_cmds::DEFAULT_NODE, env = "BCTE_NODE")]
    node: String,
    /// Read as this key's account (AC-6); without it, only what is public.
    #[arg(long, value_name = "FILE", env = "BCTE_KEY")]
    key: Option<PathBuf>,
}

/// Runs `bcte meter ...`.
pub fn run(cmd: MeterBulkCommand, json: bool) -> ExitCode {
    let result = match cmd {
        MeterBulkCommand::Sign(a) => sign(&a, json).map(|()| ExitCode::SUCCESS),
        MeterBulkCommand::Submit(a) => submit_cmd(&a, json),
        MeterBulkCommand::Proof(a) => proof(&a, json),
        MeterBulkCommand::Greenbutton(a) => return crate::greenbutton_cmds::run(a, json),
    };
    result.unwrap_or_else(|e| fail(&e))
}

fn csv_reader(path: &Path) -> anyhow::Result<csv::Reader<std::fs::File>> {
    let f = std::fs::File::open(path)
        .map_err(|e| input(format!("{}: cannot read: {e}", path.display())))?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(f))
}

/// Checks the header of a CSV file against `want`.
fn check_header(
    path: &Path,
    r: &mut csv::Reader<std::fs::File>,
    want: &[&str],
) -> anyhow::Result<()> {
    let header = r
        .headers()
        .map_err(|e| input(format!("{}: {e}", path.display())))?;
    let got: Vec<&str> = header.iter().collect();
    if got != want {
        return Err(input(format!(
            "{} line 1: the header must be `{}`, not `{}`",
            path.display(),
            want.join(","),
            got.join(",")
        )));
    }
    Ok(())
}

fn field<'a>(
    path: &Path,
    line: u64,
    rec: &'a csv::StringRecord,
    i: usize,
    name: &str,
) -> anyhow::Result<&'a str> {
    rec.get(i)
        .ok_or_else(|| input(format!("{} line {line}: no {name} column", path.display())))
}

fn at(path: &Path, line: u64, what: impl std::fmt::Display) -> anyhow::Error {
    input(format!("{} line {line}: {what}", path.display()))
}

/// Runs `bcte meter sign`.
fn sign(a: &SignArgs, json: bool) -> anyhow::Result<()> {
    let client = Client::new(&a.node);
    let chain = chain_of(&client)?;
    let feeder = resolve_feeder(&client, a.feeder.as_deref())?;
    let mut keys: HashMap<SiteId, PrivateKey> = HashMap::new();
    let mut r = csv_reader(&a.meters)?;
    check_header(&a.meters, &mut r, &["site", "key_file"])?;
    let base = a.meters.parent().unwrap_or(Path::new("."));
    for (n, rec) in r.records().enumerate() {
        let line = n as u64 + 2;
        let rec = rec.map_err(|e| at(&a.meters, line, e))?;
        let site = SiteId::new(field(&a.meters, line, &rec, 0, "site")?)
            .map_err(|e| at(&a.meters, line, e))?;
        let file = base.join(field(&a.meters, line, &rec, 1, "key_file")?);
        let key = files::read_key(&file).map_err(|e| at(&a.meters, line, e))?;
        keys.insert(site, key);
    }
    let mut r = csv_reader(&a.input)?;
    check_header(&a.input, &mut r, &["site", "interval", "wh"])?;
    let mut w = csv::Writer::from_path(&a.out)
        .map_err(|e| input(format!("{}: cannot write: {e}", a.out.display())))?;
    w.write_record(["site", "interval", "wh", "meter", "signature"])?;
    let mut count = 0u64;
    for (n, rec) in r.records().enumerate() {
        let line = n as u64 + 2;
        let rec = rec.map_err(|e| at(&a.input, line, e))?;
        let site = SiteId::new(field(&a.input, line, &rec, 0, "site")?)
            .map_err(|e| at(&a.input, line, e))?;
        let interval: u64 = field(&a.input, line, &rec, 1, "interval")?
            .parse()
            .map_err(|_| at(&a.input, line, "interval: expected a non-negative integer"))?;
        let wh: i64 = field(&a.input, line, &rec, 2, "wh")?
            .parse()
            .map_err(|_| at(&a.input, line, "wh: expected an integer number of Wh"))?;
        let key = keys.get(&site).ok_or_else(|| {
            at(
                &a.input,
                line,
                format!(
                    "site {:?} has no meter key in {}",
                    site.as_str(),
                    a.meters.display()
                ),
            )
        })?;
        let s = SignedReading::sign(
            &chain,
            &feeder,
            Interval(interval),
            site,
            WattHours(wh),
            key,
        );
        w.write_record([
            s.site.as_str(),
            &interval.to_string(),
            &wh.to_string(),
            &s.meter.to_string(),
            &s.signature_hex().unwrap_or_default(),
        ])?;
        count += 1;
    }
    w.flush()
        .map_err(|e| input(format!("{}: cannot write: {e}", a.out.display())))?;
    let value = serde_json::json!({ "signed": count, "out": a.out });
    emit(json, &value, || {
        format!("signed {count} readings into {}", a.out.display())
    });
    Ok(())
}

/// Signed readings grouped into batches, with the file line of every reading.
pub struct Batches {
    /// The batches, by interval then site.
    pub batches: Vec<RawBatch>,
    /// `lines[b][i]`: the file line of reading `i` of batch `b`.
    pub lines: Vec<Vec<u64>>,
}

/// Parses the signed readings in `chunk`, whose first line is line `first_line` of `path`.
fn parse_rows(
    path: &Path,
    chunk: &[u8],
    first_line: u64,
) -> anyhow::Result<Vec<(u64, SignedReading, u64)>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        .from_reader(chunk);
    let mut rec = csv::StringRecord::new();
    let mut out = Vec::new();
    let mut line = first_line;
    loop {
        match r.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(at(path, line, e)),
        }
        line = first_line - 1 + rec.position().map_or(1, |p| p.line());
        let site =
            SiteId::new(field(path, line, &rec, 0, "site")?).map_err(|e| at(path, line, e))?;
        let interval: u64 = field(path, line, &rec, 1, "interval")?
            .parse()
            .map_err(|_| at(path, line, "interval: expected a non-negative integer"))?;
        let wh: i64 = field(path, line, &rec, 2, "wh")?
            .parse()
            .map_err(|_| at(path, line, "wh: expected an integer number of Wh"))?;
        let meter: AccountId = field(path, line, &rec, 3, "meter")?
            .parse()
            .map_err(|e| at(path, line, format!("meter: {e}")))?;
        // ST-1.6: an empty signature is a reading no meter signed, estimated.
        let signature = match field(path, line, &rec, 4, "signature")? {
            "" => None,
            hex => {
                Some(parse_signature(hex).map_err(|e| at(path, line, format!("signature: {e}")))?)
            }
        };
        if rec.len() > 5 {
            return Err(at(path, line, "more than the 5 columns of the header"));
        }
        out.push((
            interval,
            SignedReading {
                site,
                wh: WattHours(wh),
                meter,
                signature,
            },
            line,
        ));
    }
    Ok(out)
}

/// Reads a signed readings file into batches for `feeder` on `chain`: one interval's readings
/// sorted by site, split where a transaction would be too large. A malformed line, or a site
/// read twice in an interval, is an input error naming the line. The file is parsed on every
/// core (no field can hold a line break: sites are printable ASCII).
pub fn read_signed(path: &Path, chain: &ChainId, feeder: &FeederId) -> anyhow::Result<Batches> {
    let mut r = csv_reader(path)?;
    check_header(
        path,
        &mut r,
        &["site", "interval", "wh", "meter", "signature"],
    )?;
    drop(r);
    let bytes =
        std::fs::read(path).map_err(|e| input(format!("{}: cannot read: {e}", path.display())))?;
    let body_start = bytes
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |i| i + 1);
    // Split the body at line breaks into one chunk per core, each with its first line number.
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let body = &bytes[body_start..];
    let mut chunks: Vec<(&[u8], u64)> = Vec::new();
    let mut from = 0;
    let mut line = 2u64;
    while from < body.len() {
        let mut to = (from + body.len().div_ceil(threads)).min(body.len());
        while to < body.len() && body[to - 1] != b'\n' {
            to += 1;
        }
        let chunk = &body[from..to];
        chunks.push((chunk, line));
        line += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        from = to;
    }
    let parsed: Vec<anyhow::Result<Vec<(u64, SignedReading, u64)>>> = std::thread::scope(|s| {
        let workers: Vec<_> = chunks
            .iter()
            .map(|(chunk, first)| s.spawn(move || parse_rows(path, chunk, *first)))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow!("a parsing thread failed")))
            })
            .collect()
    });
    let mut by_interval: BTreeMap<u64, Vec<(SignedReading, u64)>> = BTreeMap::new();
    for part in parsed {
        for (k, reading, line) in part? {
            by_interval.entry(k).or_default().push((reading, line));
        }
    }
    if by_interval.is_empty() {
        return Err(input(format!("{}: no readings", path.display())));
    }
    let mut out = Batches {
        batches: Vec::new(),
        lines: Vec::new(),
    };
    for (k, mut rows) in by_interval {
        rows.sort_by(|a, b| a.0.site.cmp(&b.0.site).then(a.1.cmp(&b.1)));
        for w in rows.windows(2) {
            if w[0].0.site == w[1].0.site {
                return Err(at(
                    path,
                    w[1].1,
                    format!(
                        "site {:?} is read twice in interval {k} (also line {})",
                        w[1].0.site.as_str(),
                        w[0].1
                    ),
                ));
            }
        }
        let lines: Vec<u64> = rows.iter().map(|(_, l)| *l).collect();
        let parts = RawBatch::split(
            chain,
            feeder,
            Interval(k),
            rows.into_iter().map(|(r, _)| r).collect(),
        );
        let mut offset = 0;
        for b in parts {
            out.lines
                .push(lines[offset..offset + b.readings.len()].to_vec());
            offset += b.readings.len();
            out.batches.push(b);
        }
    }
    Ok(out)
}

/// Every batch's transaction payload (its Merkle root computed), on every core.
pub fn payloads(b: &Batches) -> Vec<MeterBatch> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per = b.batches.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let workers: Vec<_> = b
            .batches
            .chunks(per)
            .map(|part| s.spawn(move || part.iter().map(RawBatch::to_payload).collect::<Vec<_>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Checks every reading's meter signature, on every core, in chunks batch-verified. The error
/// names the file line of the first bad reading found.
pub fn verify_all(path: &Path, b: &Batches) -> anyhow::Result<()> {
    const CHUNK: usize = 1_024;
    let chunks: Vec<(usize, std::ops::Range<usize>)> = b
        .batches
        .iter()
        .enumerate()
        .flat_map(|(i, batch)| {
            (0..batch.readings.len())
                .step_by(CHUNK)
                .map(move |s| (i, s..(s + CHUNK).min(batch.readings.len())))
        })
        .collect();
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let failures: Vec<(usize, bcte_types::batch::BatchError)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut rng = rand::rng();
                    let mut bad = Vec::new();
                    loop {
                        let c = next.fetch_add(1, Ordering::Relaxed);
                        let Some((i, range)) = chunks.get(c) else {
                            break bad;
                        };
                        if let Err(e) = b.batches[*i].verify_signatures_in(range.clone(), &mut rng)
                        {
                            bad.push((*i, e));
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let first = failures
        .into_iter()
        .map(|(i, e)| match e {
            bcte_types::batch::BatchError::BadSignature { index, .. } => (b.lines[i][index], e),
            _ => (b.lines[i][0], e),
        })
        .min_by_key(|(line, _)| *line);
    match first {
        None => Ok(()),
        Some((line, e)) => Err(at(path, line, e)),
    }
}

/// What became of one batch.
#[derive(Debug, Serialize)]
pub struct Imported {
    /// The interval.
    pub interval: u64,
    /// Its root (hex).
    pub root: String,
    /// Readings.
    pub readings: usize,
    /// The transaction.
    pub hash: String,
    /// Its block.
    pub height: Option<u64>,
    /// `accepted` or `rejected`.
    pub status: String,
    /// Why it was rejected.
    pub reason: Option<String>,
}

/// Stores every batch on the node, then submits their transactions (signed by `key` with
/// consecutive nonces) and waits for all to be final.
pub fn import(
    client: &Client,
    key: &PrivateKey,
    chain: &ChainId,
    b: &Batches,
    timeout: Duration,
) -> anyhow::Result<Vec<Imported>> {
    let payloads = payloads(b);
    let roots: Vec<String> = payloads.iter().map(|p| hex::encode(p.root)).collect();
    let statuses = submit_in_order(
        client,
        key,
        chain,
        payloads.into_iter().map(Payload::MeterBatch).collect(),
        timeout,
        |n| {
            let batch = &b.batches[n];
            let stored: BatchStored = client.post_bytes("/v1/meter-batches", &batch.encode())?;
            if stored.root != roots[n] {
                return Err(anyhow!(
                    "the node stored interval {}'s batch under root {}, not {}",
                    batch.interval.0,
                    stored.root,
                    roots[n]
                ));
            }
            Ok(())
        },
    )?;
    Ok(statuses
        .into_iter()
        .zip(&b.batches)
        .zip(roots)
        .map(|((status, batch), root)| Imported {
            interval: batch.interval.0,
            root,
            readings: batch.readings.len(),
            hash: status.hash,
            height: status.height,
            status: status.status,
            reason: status.reason,
        })
        .collect())
}

/// Runs `bcte meter submit`.
fn submit_cmd(a: &SubmitArgs, json: bool) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let key = files::read_key(&a.key)?;
    let client = Client::new(&a.node).with_key(key.clone());
    let chain = chain_of(&client)?;
    let feeder = resolve_feeder(&client, a.feeder.as_deref())?;
    let batches = read_signed(&a.file, &chain, &feeder)?;
    // Progress for a person at a terminal; a pipe or a log gets only the result or the error.
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let count: usize = batches.batches.iter().map(|b| b.readings.len()).sum();
    if progress {
        eprintln!(
            "{count} readings in {} batches parsed ({:.1} s); checking every meter signature ...",
            batches.batches.len(),
            started.elapsed().as_secs_f64()
        );
    }
    verify_all(&a.file, &batches)?;
    if progress {
        eprintln!(
            "signatures checked ({:.1} s); storing the batches and submitting them ...",
            started.elapsed().as_secs_f64()
        );
    }
    let imported = import(
        &client,
        &key,
        &chain,
        &batches,
        Duration::from_secs(a.timeout_s),
    )?;
    let readings: usize = imported.iter().map(|i| i.readings).sum();
    let rejected = imported.iter().filter(|i| i.status == "rejected").count();
    let value = serde_json::json!({
        "feeder": feeder.as_str(),
        "readings": readings,
        "batches": imported,
        "rejected": rejected,
        "seconds": started.elapsed().as_secs_f64(),
    });
    emit(json, &value, || {
        let mut s = format!(
            "{readings} readings in {} batches for feeder {} ({rejected} rejected, {:.1} s)",
            imported.len(),
            feeder.as_str(),
            started.elapsed().as_secs_f64()
        );
        for i in &imported {
            s.push_str(&format!(
                "\ninterval {:>6}: {:>6} readings, root {}, {} at height {}{}",
                i.interval,
                i.readings,
                i.root,
                i.status,
                i.height.unwrap_or_default(),
                i.reason
                    .as_ref()
                    .map_or(String::new(), |r| format!(" ({r})"))
            ));
        }
        s
    });
    Ok(if rejected > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs `bcte meter proof`: every check is made here, from the chain's root and the meter's
/// key; the node only supplies the data.
fn proof(a: &ProofArgs, json: bool) -> anyhow::Result<ExitCode> {
    let client = Client::reading(&a.node, a.key.as_deref())?;
    let feeder = resolve_feeder(&client, a.feeder.as_deref())?;
    let site = site_id(&a.site)?;
    let view: SettlementView = client.get(&format!(
        "/v1/feeders/{}/intervals/{}/settlement",
        enc(feeder.as_str()),
        a.interval
    ))?;
    let reading = view.readings.get(site.as_str()).ok_or_else(|| {
        anyhow!(
            "site {:?} has no reading of interval {} on the chain",
            site.as_str(),
            a.interval
        )
    })?;
    let Some(root_hex) = &reading.batch_root else {
        return Err(anyhow!(
            "site {:?}'s reading of interval {} was signed by its meter as a transaction: the \
             transaction itself is the proof (`bcte query tx`)",
            site.as_str(),
            a.interval
        ));
    };
    let root = parse_hash(root_hex).context("the node reports a bad batch root")?;
    let p: ReadingProofView = client.get(&format!(
        "/v1/meter-batches/{root_hex}/proofs/{}",
        enc(site.as_str())
    ))?;
    let site_view: SiteView = client.get(&format!(
        "/v1/feeders/{}/sites/{}",
        enc(feeder.as_str()),
        enc(site.as_str())
    ))?;
    let chain = chain_of(&client)?;
    let built = ReadingProof::from_parts(
        ChainId::new(p.chain_id.clone()).context("the proof's chain id")?,
        FeederId::new(p.feeder.clone()).context("the proof's feeder")?,
        Interval(p.interval),
        SignedReading {
            site: SiteId::new(p.site.clone()).context("the proof's site")?,
            wh: WattHours(p.wh),
            meter: p.meter.parse().context("the proof's meter")?,
            signature: p
                .signature
                .as_deref()
                .map(parse_signature)
                .transpose()
                .context("the proof's signature")?,
        },
        p.position,
        p.leaf_count,
        &p.siblings,
    )
    .context("the node's proof is malformed")?;
    // Each check, in the order a dispute would go.
    let mut problems = Vec::new();
    if built.chain_id != chain
        || built.feeder != feeder
        || built.interval != Interval(a.interval)
        || built.reading.site != site
    {
        problems.push("the proof is for another chain, feeder, interval or site".to_owned());
    }
    if let Err(e) = built.verify(&root) {
        problems.push(e.to_string());
    }
    if built.reading.wh.0 != reading.wh {
        problems.push(format!(
            "the meter signed {} Wh but the chain holds {} Wh",
            built.reading.wh.0, reading.wh
        ));
    }
    let meter = built.reading.meter.to_string();
    let current_meter = site_view.meter.as_deref() == Some(meter.as_str());
    if !current_meter {
        problems.push(format!(
            "the reading is signed by meter {meter}, which is not the site's meter now ({}): \
             check the meter's registration history (a swap)",
            site_view.meter.as_deref().unwrap_or("none")
        ));
    }
    let ok = problems.is_empty();
    let value = serde_json::json!({
        "verified": ok,
        "feeder": feeder.as_str(),
        "interval": a.interval,
        "site": site.as_str(),
        "wh": built.reading.wh.0,
        "chain_wh": reading.wh,
        "meter": meter,
        "estimated": built.reading.estimated(),
        "root": root_hex,
        "position": p.position,
        "leaf_count": p.leaf_count,
        "problems": problems,
    });
    emit(json, &value, || {
        if ok && built.reading.estimated() {
            format!(
                "verified, estimated: site {} read {} Wh in interval {} (no meter signed it: \
                 ST-1.6), reading {} of {} in batch {root_hex} on the chain",
                site.as_str(),
                reading.wh,
                a.interval,
                p.position,
                p.leaf_count
            )
        } else if ok {
            format!(
                "verified: site {} read {} Wh in interval {}, signed by its meter {meter}, reading {} of {} in batch {root_hex} on the chain",
                site.as_str(),
                reading.wh,
                a.interval,
                p.position,
                p.leaf_count
            )
        } else {
            format!("NOT verified: {}", problems.join("; "))
        }
    });
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_cryptography::Signer as _;

    fn signed_csv(rows: usize, chain: &ChainId, feeder: &FeederId) -> String {
        let key = commonware_cryptography::ed25519::PrivateKey::from_seed(5);
        let mut out = String::from("site,interval,wh,meter,signature\n");
        for i in 0..rows {
            let site = SiteId::new(format!("site-{i}")).unwrap();
            let r = SignedReading::sign(
                chain,
                feeder,
                Interval(1 + (i % 3) as u64),
                site,
                WattHours(i as i64),
                &key,
            );
            out.push_str(&format!(
                "{},{},{},{},{}\n",
                r.site.as_str(),
                1 + i % 3,
                i,
                r.meter,
                r.signature_hex().unwrap_or_default()
            ));
        }
        out
    }

    fn error_of(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, text).unwrap();
        let chain = ChainId::new("c").unwrap();
        let feeder = FeederId::new("f").unwrap();
        match read_signed(&path, &chain, &feeder).and_then(|b| verify_all(&path, &b)) {
            Ok(()) => String::new(),
            Err(e) => {
                assert!(
                    e.downcast_ref::<crate::chain_cmds::InputError>().is_some(),
                    "{e}"
                );
                e.to_string()
            }
        }
    }

    #[test]
    fn a_signed_readings_file_is_grouped_by_interval_and_sorted_by_site() {
        let chain = ChainId::new("c").unwrap();
        let feeder = FeederId::new("f").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.csv");
        std::fs::write(&path, signed_csv(3_000, &chain, &feeder)).unwrap();
        let b = read_signed(&path, &chain, &feeder).unwrap();
        assert_eq!(
            b.batches.iter().map(|x| x.interval.0).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(
            b.batches.iter().map(|x| x.readings.len()).sum::<usize>(),
            3_000
        );
        for (batch, lines) in b.batches.iter().zip(&b.lines) {
            assert!(batch.readings.windows(2).all(|w| w[0].site < w[1].site));
            // Each reading's line is the one it came from: site-i is on line i + 2.
            for (r, line) in batch.readings.iter().zip(lines) {
                let i: u64 = r.site.as_str()["site-".len()..].parse().unwrap();
                assert_eq!(*line, i + 2);
            }
        }
        verify_all(&path, &b).unwrap();
    }

    #[test]
    fn bad_lines_are_named_wherever_the_parse_split_the_file() {
        let chain = ChainId::new("c").unwrap();
        let feeder = FeederId::new("f").unwrap();
        let good = signed_csv(5_000, &chain, &feeder);
        let mut lines: Vec<String> = good.lines().map(str::to_owned).collect();
        // Line 4,321 (site-4319) signed for another energy; line 3,000 not hex; a site twice.
        let forged = lines[4_320].replacen(",4319,", ",4320,", 1);
        let mut forged_file = lines.clone();
        forged_file[4_320] = forged;
        let e = error_of(&(forged_file.join("\n") + "\n"));
        assert!(
            e.contains("line 4321") && e.contains("not its meter's"),
            "{e}"
        );
        lines[2_999] = "site-2997,1,2997,zz,zz".into();
        let e = error_of(&(lines.join("\n") + "\n"));
        assert!(e.contains("line 3000") && e.contains("meter"), "{e}");
        let twice = format!("{}{}", good, good.lines().nth(10).unwrap());
        let e = error_of(&twice);
        assert!(
            e.contains("line 5002") && e.contains("read twice") && e.contains("also line 11"),
            "{e}"
        );
        let e = error_of("site,wh\nx,1\n");
        assert!(
            e.contains("line 1") && e.contains("the header must be"),
            "{e}"
        );
        let e = error_of("site,interval,wh,meter,signature\n");
        assert!(e.contains("no readings"), "{e}");
    }
}
