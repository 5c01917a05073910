//! `bcte demo --network DIR` (docs/demo.md, DM-7): the transactive day against the validator
//! processes of a local network (`bcte localnet init` and `run`), over their HTTP API. The
//! driver is the in-process run's (`bcte_demo::chain::drive`); only the ledger differs: it
//! signs with the network's faucet key as the DSO (the genesis authority) and with demo
//! accounts it derives for the run, submits to the validators' `POST /v1/txs` and reads the
//! state at the tip through `GET /v1/proofs/{key}`.

use crate::client::Client;
use anyhow::{anyhow, bail};
use bcte_demo::chain::{ChainOutcome, Ledger, drive};
use bcte_ledger::StateKey;
use bcte_node::api::{AccountView, HeadView, ProofView, SubmitRequest, SubmitResponse};
use bcte_types::{AccountId, ChainId, FeederId, Genesis, Payload, Tx, TxBody, batch::RawBatch};
use commonware_codec::Encode as _;
use commonware_cryptography::{Signer as _, ed25519::PrivateKey};
use std::{
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// DM-7.1: a local network as the demo drives it.
pub struct Network {
    /// Its genesis.
    pub genesis: Genesis,
    /// Its validators' HTTP API URLs, in node order.
    pub urls: Vec<String>,
    /// The faucet's key: the genesis authority, the DSO of the demo.
    pub faucet: PrivateKey,
}

impl Network {
    /// Reads the network of `dir`: `genesis.json`, `faucet.key` and the validators' configs.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        let genesis = bcte_node::files::read_genesis(&dir.join("genesis.json"))
            .map_err(|e| anyhow!("not a network of `bcte localnet init`: {e}"))?;
        let faucet = bcte_node::files::read_key(&dir.join("faucet.key"))
            .map_err(|e| anyhow!("the network's faucet key: {e}"))?;
        if AccountId::from_public_key(&faucet.public_key()) != genesis.authority {
            bail!(
                "{}: faucet.key is not the genesis authority, which the demo needs as its DSO",
                dir.display()
            );
        }
        let mut urls = Vec::new();
        for (_, path) in crate::localnet::node_configs(dir)? {
            let cfg = bcte_node::config::NodeConfig::load(&path).map_err(|e| anyhow!("{e}"))?;
            if cfg.role == bcte_node::config::Role::Validator {
                urls.push(format!("http://{}", cfg.http));
            }
        }
        if urls.is_empty() {
            bail!("{}: no validator's config", dir.display());
        }
        Ok(Self {
            genesis,
            urls,
            faucet,
        })
    }
}

/// The ledger of a network over HTTP.
struct Live {
    clients: Vec<Client>,
    chain_id: ChainId,
    /// Account 0 the faucet (the DSO); the others derived for this run.
    faucet: PrivateKey,
    run_tag: u64,
    nonces: std::collections::BTreeMap<u64, u64>,
    submitted: u64,
}

impl Live {
    fn client(&self, from: u64) -> &Client {
        &self.clients[from as usize % self.clients.len()]
    }

    fn head(&self) -> Option<HeadView> {
        self.clients[0].get("/v1/head").ok()
    }
}

impl Ledger for Live {
    fn chain_id(&self) -> ChainId {
        self.chain_id.clone()
    }

    fn account(&self, i: u64) -> AccountId {
        AccountId::from_public_key(&self.key(i).public_key())
    }

    /// DM-7.2: account 0 is the faucet; account `i` is `PrivateKey::from_seed(tag × 2²⁰ + i)`
    /// with the run's tag (its start in seconds): fresh accounts for every run, whose keys
    /// anyone can derive (a local test network's demo accounts, not anyone's money).
    fn key(&self, i: u64) -> PrivateKey {
        if i == 0 {
            self.faucet.clone()
        } else {
            PrivateKey::from_seed(self.run_tag.wrapping_mul(1 << 20).wrapping_add(i))
        }
    }

    fn submit(&mut self, from: u64, payload: Payload) -> Result<(), String> {
        let key = self.key(from);
        let nonce = self.next_nonce(from);
        let tx = Tx::sign(
            TxBody {
                chain_id: self.chain_id.clone(),
                sender: AccountId::from_public_key(&key.public_key()),
                signer: None,
                nonce,
                payload,
            },
            &key,
        );
        let request = SubmitRequest {
            tx: hex::encode(tx.encode()),
        };
        self.client(from)
            .post::<_, SubmitResponse>("/v1/txs", &request)
            .map_err(|e| format!("account {from}'s transaction {nonce}: {e:#}"))?;
        self.nonces.insert(from, nonce + 1);
        self.submitted += 1;
        Ok(())
    }

    fn next_nonce(&self, i: u64) -> u64 {
        self.nonces.get(&i).copied().unwrap_or(0)
    }

    fn read_bytes(&self, key: &StateKey) -> Option<Vec<u8>> {
        let proof: ProofView = self.clients[0].get(&format!("/v1/proofs/{key}")).ok()?;
        hex::decode(proof.value?).ok()
    }

    fn tip(&self) -> u64 {
        self.head().map_or(0, |h| h.height)
    }

    fn state_root(&self) -> Result<String, String> {
        self.head()
            .map(|h| h.state_root)
            .ok_or_else(|| "the node did not answer GET /v1/head".into())
    }

    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn submitted(&self) -> u64 {
        self.submitted
    }

    async fn sleep(&self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }

    fn funded(&self) -> bool {
        false
    }

    /// ME-3: every validator keeps the raw batch its readings' root commits to.
    fn upload_batch(&mut self, raw: &RawBatch) -> Result<(), String> {
        let bytes = raw.encode();
        for c in &self.clients {
            c.post_bytes::<serde_json::Value>("/v1/meter-batches", &bytes)
                .map_err(|e| format!("a raw meter batch of interval {}: {e:#}", raw.interval))?;
        }
        Ok(())
    }
}

/// DM-7: runs the transactive day of `model` on `net`, under a feeder of its own (`demo-<tag>`,
/// so that every run registers a new one). Returns the chain's outcome, the network's
/// validators and its market clock speed.
pub fn run(
    net: &Network,
    model: &bcte_feeders::FeederModel,
    profiles: &bcte_feeders::Profiles,
    agents: &mut [bcte_agents::day::SiteAgent],
    config: &bcte_agents::day::DayConfig,
    progress: &mut dyn FnMut(usize),
) -> Result<(ChainOutcome, u64, u32), String> {
    // The faucet is the DSO and the registrar: it reads the feeder's state and every account
    // (AC-6.3).
    let clients: Vec<Client> = net
        .urls
        .iter()
        .map(|u| Client::new(u).with_key(net.faucet.clone()))
        .collect();
    let faucet_account = AccountId::from_public_key(&net.faucet.public_key());
    // A network just started takes a few seconds to answer: wait up to a minute.
    let mut answer = clients[0].get::<AccountView>(&format!("/v1/accounts/{faucet_account}"));
    for _ in 0..60 {
        if answer.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        answer = clients[0].get(&format!("/v1/accounts/{faucet_account}"));
    }
    let faucet = answer.map_err(|e| {
        format!(
            "{}: the network does not answer (is `bcte localnet run` running?): {e:#}",
            net.urls[0]
        )
    })?;
    let run_tag = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let feeder = FeederId::new(format!("demo-{run_tag}")).map_err(|e| e.to_string())?;
    let mut live = Live {
        clients,
        chain_id: net.genesis.chain_id.clone(),
        faucet: net.faucet.clone(),
        run_tag,
        nonces: [(0, faucet.nonce)].into_iter().collect(),
        submitted: 0,
    };
    let speed = net.genesis.market_clock_speed;
    let out = futures::executor::block_on(drive(
        &mut live, feeder, model, profiles, agents, config, speed, progress,
    ))?;
    Ok((out, net.genesis.validators.len() as u64, speed))
}
