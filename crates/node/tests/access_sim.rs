//! Identity and access on a 4-validator network in the deterministic simulation
//! (docs/access-rules.md): an account without a role is refused by every validator's mempool;
//! once the registrar's enrollment is final it may send; after it rotates its key, every
//! validator refuses its old key and accepts the new one, and the account keeps its id; once
//! its revocation is final, every validator refuses it. All validators agree on every block and
//! state root throughout.

use axum::http::HeaderValue;
use bcte_ledger::{AccountState, StateKey, decode_value, tree};
use bcte_node::{
    api::ApiState,
    auth::{Auth, unix_now_s},
    mempool::AdmitError,
    routes::viewer_of,
};
use bcte_sim as sim;
use bcte_sim::{SimNet, SimValidator, Witness, config, for_each_seed, wait_height};
use bcte_types::{
    AccountId, Amount, Hash, Height, Outcome, Payload, Receipt, RejectReason, Role, Roles, Tx,
    TxBody,
    role::{AccountRevoke, Enroll, KeyRotate},
};
use commonware_cryptography::{Signer as _, ed25519::PrivateKey};
use commonware_runtime::{Runner as _, deterministic};
use std::sync::Arc;
use std::time::Duration;

const N: u64 = 4;
const DSO: u64 = 0;
const ALICE: u64 = 1;
const WITHIN: Duration = Duration::from_secs(60);

fn id(k: &PrivateKey) -> AccountId {
    AccountId::from_public_key(&k.public_key())
}

/// Admits `tx` at validator `at` and gossips it.
fn submit(vs: &[&SimValidator], at: usize, tx: &Tx) {
    vs[at].shared().admit(tx.clone()).expect("admitted");
    if let Some(g) = &vs[at].gossip {
        g.send(tx.clone());
    }
}

/// Waits until `hash` is final on every validator and returns its receipt.
async fn final_receipt(
    context: &sim::Ctx,
    vs: &[&SimValidator],
    witness: &mut Witness,
    hash: Hash,
) -> Receipt {
    for _ in 0..100 {
        let goal = witness.height() + 1;
        wait_height(context, vs, goal, WITHIN).await;
        witness.observe(vs, &[hash]);
        let everywhere = vs.iter().all(|v| {
            v.chain()
                .tx_location(&hash)
                .expect("memory store reads")
                .is_some()
        });
        if everywhere && let Some((_, r)) = witness.txs.get(&hash) {
            return r.clone();
        }
    }
    panic!("transaction {} never became final", hex::encode(hash));
}

fn account_at(v: &SimValidator, a: AccountId) -> AccountState {
    tree::read_value(&v.chain(), Height(v.height().get()), &StateKey::Account(a))
        .expect("memory store reads")
        .map(|b| decode_value::<AccountState>(&b).expect("decodes"))
        .unwrap_or_default()
}

/// Every validator's mempool refuses `tx` for `reason`.
fn refused_everywhere(vs: &[&SimValidator], tx: &Tx, reason: &RejectReason) {
    for v in vs {
        match v.shared().admit(tx.clone()) {
            Err(AdmitError::Refused(r)) => assert_eq!(&r, reason, "{}", v.name),
            other => panic!("{}: {other:?}, expected {reason}", v.name),
        }
    }
}

#[test]
fn enrollment_rotation_and_revocation_take_effect_on_every_validator_once_final() {
    for_each_seed(
        "enrollment_rotation_and_revocation_take_effect_on_every_validator_once_final",
        |seed| {
            deterministic::Runner::new(config(seed)).start(|context| async move {
                let mut genesis = sim::genesis(N, 2);
                // Alice is funded at genesis but holds no role.
                genesis.allocations[ALICE as usize].roles = Roles::NONE;
                let net = SimNet::new(&context, genesis.clone(), sim::lan()).await;
                let mut vs: Vec<_> = (0..N).map(SimValidator::new).collect();
                for v in vs.iter_mut() {
                    net.start(&context, v).await;
                }
                let refs: Vec<&SimValidator> = vs.iter().collect();
                let mut witness = Witness::default();
                let alice_key = sim::account_key(ALICE);
                let alice = id(&alice_key);
                let dso = id(&sim::account_key(DSO));

                // AC-1.2: no role, no transaction, on any validator.
                let early = sim::transfer(&genesis, ALICE, 0, DSO, 1);
                refused_everywhere(
                    &refs,
                    &early,
                    &RejectReason::MissingRole {
                        kind: bcte_types::TxKind::Transfer,
                        needs: bcte_ledger::rule_of(bcte_types::TxKind::Transfer).roles,
                    },
                );

                // AC-2.1: the registrar (the genesis authority) enrolls her.
                let enroll = Enroll::each([(alice, Roles::one(Role::Prosumer))]).remove(0);
                let tx = sim::sign(&genesis, DSO, 0, Payload::Enroll(enroll));
                submit(&refs, 0, &tx);
                let r = final_receipt(&context, &refs, &mut witness, tx.hash()).await;
                assert_eq!(r.outcome, Outcome::Accepted);
                for v in &refs {
                    assert_eq!(account_at(v, alice).roles, Roles::one(Role::Prosumer));
                }

                // AC-4.1: she rotates her key, submitted at another validator.
                let new_key = PrivateKey::from_seed(7_777);
                let rotate = sim::sign(
                    &genesis,
                    ALICE,
                    0,
                    Payload::KeyRotate(KeyRotate {
                        new_key: id(&new_key),
                    }),
                );
                submit(&refs, 2, &rotate);
                let r = final_receipt(&context, &refs, &mut witness, rotate.hash()).await;
                assert_eq!(r.outcome, Outcome::Accepted);
                // AC-4.2: her old key is refused everywhere; the new one signs for her id.
                let old = sim::transfer(&genesis, ALICE, 1, DSO, 10);
                refused_everywhere(
                    &refs,
                    &old,
                    &RejectReason::KeyRotated {
                        current: id(&new_key),
                    },
                );
                let new = Tx::sign(
                    TxBody {
                        chain_id: genesis.chain_id.clone(),
                        sender: alice,
                        signer: Some(id(&new_key)),
                        nonce: 1,
                        payload: Payload::Transfer {
                            to: dso,
                            amount: Amount(10),
                        },
                    },
                    &new_key,
                );
                submit(&refs, 3, &new);
                let r = final_receipt(&context, &refs, &mut witness, new.hash()).await;
                assert_eq!(r.outcome, Outcome::Accepted);
                let before = account_at(refs[0], alice);
                assert_eq!(before.nonce, 2);

                // AC-6.2: each validator's API issues her a read token (its own API key); each
                // reads her at its tip.
                let apis: Vec<_> = refs
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let auth = Arc::new(Auth::new(
                            &PrivateKey::from_seed(1_000 + i as u64),
                            genesis.chain_id.clone(),
                        ));
                        ApiState {
                            shared: v.shared().clone(),
                            outbox: None,
                            metrics: None,
                            batches: Arc::new(bcte_store::MemBlobStore::default()),
                            auth,
                            pii: None,
                            vtn: None,
                            tls: false,
                            dashboard: bcte_node::config::DashboardConfig::default(),
                        }
                    })
                    .collect();
                let tokens: Vec<HeaderValue> = apis
                    .iter()
                    .map(|a| {
                        HeaderValue::from_str(&format!(
                            "Bearer {}",
                            a.auth.issue(&alice, unix_now_s())
                        ))
                        .unwrap()
                    })
                    .collect();
                for (api, token) in apis.iter().zip(&tokens) {
                    let viewer = viewer_of(api, Some(token)).expect("a member's token");
                    assert_eq!(viewer.account, Some(alice));
                }
                // Another node's token is refused.
                assert_eq!(
                    viewer_of(&apis[0], Some(&tokens[1])).unwrap_err().status(),
                    401
                );

                // AC-5.1: the registrar revokes her; once final, every validator refuses her.
                let revoke = sim::sign(
                    &genesis,
                    DSO,
                    1,
                    Payload::AccountRevoke(AccountRevoke {
                        accounts: vec![alice],
                    }),
                );
                submit(&refs, 1, &revoke);
                let r = final_receipt(&context, &refs, &mut witness, revoke.hash()).await;
                assert_eq!(r.outcome, Outcome::Accepted);
                let late = Tx::sign(
                    TxBody {
                        chain_id: genesis.chain_id.clone(),
                        sender: alice,
                        signer: Some(id(&new_key)),
                        nonce: 2,
                        payload: Payload::Transfer {
                            to: dso,
                            amount: Amount(1),
                        },
                    },
                    &new_key,
                );
                refused_everywhere(&refs, &late, &RejectReason::Revoked { account: alice });
                // Her unexpired tokens are refused by every validator's API (AC-6.2).
                for (api, token) in apis.iter().zip(&tokens) {
                    let e = viewer_of(api, Some(token)).unwrap_err();
                    assert_eq!(e.status(), 403, "{}", e.message());
                    assert!(e.message().contains("revoked"), "{}", e.message());
                }
                for v in &refs {
                    let a = account_at(v, alice);
                    assert!(a.revoked, "{}", v.name);
                    // Her records remain: balance and nonce as before the revocation.
                    assert_eq!((a.balance, a.nonce), (before.balance, before.nonce));
                }
                let goal = witness.height() + 2;
                wait_height(&context, &refs, goal, WITHIN).await;
                witness.observe(&refs, &[]);
            });
        },
    );
}
