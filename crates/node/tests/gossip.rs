//! Transaction gossip on the simulated network: a transaction submitted to a node reaches its
//! peers even when the first message is lost, is sent again at doubling intervals while it
//! waits, and no longer once a block has included it. Peers that already hold a transaction
//! refuse the resend as a duplicate, before any signature check.

use bcte_node::{
    gossip::{self, RESEND_FIRST, RESEND_MAX},
    mempool::AdmitError,
};
use bcte_sim as sim;
use bcte_sim::{SimNet, config, lan};
use bcte_store::MemStore;
use bcte_types::Tx;
use commonware_codec::{Copying, Decode as _, RangeCfg};
use commonware_p2p::Receiver as _;
use commonware_runtime::{Clock as _, Runner as _, Spawner as _, Supervisor as _, deterministic};
use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

/// Every gossip message a peer received: when, and what.
type Seen = Arc<Mutex<Vec<(SystemTime, Vec<Tx>)>>>;

/// Starts a task that records every gossip message peer 1 receives.
fn record(
    context: &sim::Ctx,
    mut receiver: commonware_p2p::simulated::Receiver<bcte_node::chain_block::PublicKey>,
) -> Seen {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    context.child("peer1").spawn(move |ctx| async move {
        while let Ok((_, bytes)) = receiver.recv().await {
            let cfg = (RangeCfg::new(1..=gossip::BATCH_TXS_MAX), ());
            let txs = Vec::<Tx>::decode_cfg(Copying(bytes.as_ref()), &cfg).expect("a batch of txs");
            log.lock().unwrap().push((ctx.current(), txs));
        }
    });
    seen
}

#[test]
fn a_waiting_transaction_is_sent_again_until_a_block_includes_it() {
    deterministic::Runner::new(config(1)).start(|context| async move {
        let genesis = sim::genesis(2, 2);
        let net = SimNet::new(&context, genesis.clone(), lan()).await;
        // The first send is lost: peer 0 cannot reach peer 1.
        net.partition(&[&[0], &[1]]).await;
        let (node, _) = net.node_state(MemStore::new());
        let from0 = net.register(0).await.txs;
        let to1 = net.register(1).await.txs;
        let seen = record(&context, to1.1);
        let (_task, outbox) = gossip::start(context.child("gossip"), node.clone(), from0);

        let start = context.current();
        let tx = sim::transfer(&genesis, 0, 0, 1, 5);
        node.admit(tx.clone()).expect("admitted");
        outbox.send(tx.clone());
        context.sleep(Duration::from_secs(1)).await;
        assert!(seen.lock().unwrap().is_empty(), "no link, nothing arrives");

        // The link returns: the resends arrive, 2 s after the first send, then 4, 8, 16, 16 s
        // apart (the 2 s resend arrives with the 10 ms link latency).
        net.heal().await;
        let mut expected = Vec::new();
        let (mut at, mut interval) = (RESEND_FIRST, RESEND_FIRST);
        while at <= Duration::from_secs(46) {
            expected.push(at.as_secs());
            interval = (interval * 2).min(RESEND_MAX);
            at += interval;
        }
        assert_eq!(expected, [2, 6, 14, 30, 46]);
        context.sleep(Duration::from_secs(46)).await; // until t = 47 s
        let arrivals: Vec<u64> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|(when, txs)| {
                assert_eq!(
                    txs,
                    std::slice::from_ref(&tx),
                    "each resend carries the waiting transaction"
                );
                when.duration_since(start).unwrap().as_secs()
            })
            .collect();
        assert_eq!(arrivals, expected);

        // A finalized block includes it: it leaves the pool, and no resend follows.
        node.mempool
            .lock()
            .unwrap()
            .on_finalized(std::slice::from_ref(&tx), |_| 1);
        context.sleep(Duration::from_secs(60)).await;
        assert_eq!(seen.lock().unwrap().len(), expected.len());
    });
}

#[test]
fn a_resend_a_peer_already_holds_is_refused_before_any_signature_check() {
    deterministic::Runner::new(config(2)).start(|context| async move {
        let genesis = sim::genesis(1, 2);
        let net = SimNet::new(&context, genesis.clone(), lan()).await;
        let (node, _) = net.node_state(MemStore::new());
        let tx = sim::transfer(&genesis, 0, 0, 1, 5);
        node.admit(tx.clone()).expect("admitted");

        // The same body with a broken signature: were the signature checked first, the
        // refusal would say so; the pool already holds the hash, so it is a duplicate.
        let mut bytes = commonware_codec::Encode::encode(&tx).to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let forged = Tx::decode_cfg(Copying(bytes.as_slice()), &()).expect("still decodes");
        assert_eq!(forged.hash(), tx.hash());
        let mut rng = context.child("rng");
        let results = node.admit_many(
            vec![forged, tx.clone(), sim::transfer(&genesis, 1, 0, 0, 3)],
            &mut rng,
        );
        assert!(
            matches!(results[0], Err(AdmitError::Duplicate(_))),
            "{results:?}"
        );
        assert!(
            matches!(results[1], Err(AdmitError::Duplicate(_))),
            "{results:?}"
        );
        assert!(results[2].is_ok(), "{results:?}");
    });
}
