//! Identity and access on the chain (docs/access-rules.md): the documented authorization table
//! is the code's, every kind sent by every role gets exactly the table's verdict, and
//! enrollment, roles, key rotation, revocation and feeder operators follow AC-1 to AC-5.

mod common;

use bcte_ledger::{AccountState, Object, StateKey, identity::ParticipantState, rule_of};
use bcte_types::{
    AccountId, Amount, Hash, Outcome, ParticipantId, Payload, RejectReason, Role, Roles, Tx,
    TxBody, TxKind,
    role::{AccountRevoke, Enroll, Enrollment, KeyReset, KeyRotate, RoleSet},
};
use common::{Chain, account, key};
use commonware_cryptography::ed25519::PrivateKey;
use std::collections::BTreeMap;

const DOC: &str = include_str!("../../../docs/access-rules.md");

/// The table of docs/access-rules.md (the one after its "parsed by" marker): kind → (roles,
/// object name).
fn documented() -> BTreeMap<String, (Roles, String)> {
    let mut rows = BTreeMap::new();
    let table = DOC
        .split_once("<!-- The table below is parsed by crates/ledger/tests/access.rs")
        .expect("the table's marker")
        .1;
    let table = table
        .split("\n\n")
        .nth(1)
        .expect("the table after its marker");
    for line in table.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // `| `kind` | roles | object |`
        if cells.len() != 5 || !cells[1].starts_with('`') {
            continue;
        }
        let kind = cells[1].trim_matches('`').to_owned();
        let roles: Roles = cells[2]
            .split(',')
            .map(|r| {
                r.trim()
                    .parse::<Role>()
                    .unwrap_or_else(|e| panic!("{kind}: {e}"))
            })
            .collect();
        assert!(
            rows.insert(kind.clone(), (roles, cells[3].to_owned()))
                .is_none(),
            "{kind} has two rows"
        );
    }
    rows
}

#[test]
fn the_documented_table_is_the_code_table() {
    let doc = documented();
    assert_eq!(doc.len(), TxKind::ALL.len(), "one row per kind, no more");
    for kind in TxKind::ALL {
        let (roles, object) = doc
            .get(kind.name())
            .unwrap_or_else(|| panic!("docs/access-rules.md has no row for {kind}"));
        let rule = rule_of(kind);
        assert_eq!(*roles, rule.roles, "{kind}: roles");
        assert_eq!(object, rule.object.name(), "{kind}: object");
    }
    // The key rotation row names every role; nothing else does.
    assert!(
        TxKind::ALL
            .iter()
            .filter(|k| rule_of(**k).roles == Roles::of(&Role::ALL))
            .eq([TxKind::KeyRotate].iter())
    );
    assert_eq!(rule_of(TxKind::KeyRotate).object, Object::Itself);
}

/// A chain where account `holder(r)` holds exactly role `r` (enrolled by the registrar, the
/// genesis validator for `validator`), plus one account with no role.
fn matrix_chain() -> Chain {
    let mut c = Chain::new(1);
    let participants = Role::ALL
        .iter()
        .filter(|r| **r != Role::Validator)
        .map(|r| Enrollment {
            participant: ParticipantId::derived(&account(&holder(*r))),
            commitment: Hash::from([0; 32]),
            roles: Roles::one(*r),
            accounts: vec![account(&holder(*r))],
        })
        .collect();
    let dso = c.dso.clone();
    accepted(&c.send(&dso, Payload::Enroll(Enroll { participants })));
    c
}

/// The key holding only role `r` in [`matrix_chain`].
fn holder(r: Role) -> PrivateKey {
    match r {
        // The genesis validator (AC-1.3).
        Role::Validator => key(0),
        _ => key(500 + r as u64),
    }
}

fn accepted(o: &Outcome) {
    assert_eq!(*o, Outcome::Accepted);
}

fn rejected(o: &Outcome) -> RejectReason {
    match o {
        Outcome::Rejected(r) => r.clone(),
        Outcome::Accepted => panic!("accepted"),
    }
}

#[test]
fn every_kind_sent_by_every_role_gets_the_tables_verdict() {
    let examples = bcte_types::tx::examples();
    let mut checked = 0;
    for example in examples {
        let kind = example.tx_kind();
        let rule = rule_of(kind);
        // A fresh chain per kind: an accepted rotation or revocation must not leak into the
        // next kind's verdicts.
        let mut c = matrix_chain();
        let senders = Role::ALL
            .iter()
            .map(|r| (Some(*r), holder(*r)))
            .chain([(None, key(900))]);
        for (role, k) in senders {
            let outcome = c.send(&k, example.clone());
            let allowed = role.is_some_and(|r| rule.roles.has(r));
            if allowed {
                assert!(
                    !matches!(outcome, Outcome::Rejected(RejectReason::MissingRole { .. })),
                    "{kind} by {role:?}: {outcome:?}"
                );
            } else {
                let reason = rejected(&outcome);
                assert_eq!(
                    reason,
                    RejectReason::MissingRole {
                        kind,
                        needs: rule.roles
                    },
                    "{kind} by {role:?}"
                );
                // The reason names the kind and the roles that may send it.
                let text = reason.to_string();
                assert!(text.contains(kind.name()), "{text}");
                for r in rule.roles.iter() {
                    assert!(text.contains(r.name()), "{text}");
                }
            }
            checked += 1;
        }
    }
    assert_eq!(checked, TxKind::ALL.len() * (Role::ALL.len() + 1));
}

fn signed_by(c: &Chain, sender: &PrivateKey, signer: &PrivateKey, nonce: u64, p: Payload) -> Tx {
    let signer_id = account(signer);
    let sender_id = account(sender);
    Tx::sign(
        TxBody {
            chain_id: c.chain_id.clone(),
            sender: sender_id,
            signer: (signer_id != sender_id).then_some(signer_id),
            nonce,
            payload: p,
        },
        signer,
    )
}

fn state(c: &Chain, k: &PrivateKey) -> AccountState {
    c.read::<AccountState>(&StateKey::Account(account(k)))
        .unwrap_or_default()
}

fn transfer(to: &PrivateKey, amount: u64) -> Payload {
    Payload::Transfer {
        to: account(to),
        amount: Amount(amount),
    }
}

#[test]
fn genesis_members_hold_their_roles() {
    let c = Chain::new(1);
    assert_eq!(
        state(&c, &c.dso).roles,
        Roles::of(&[Role::Registrar, Role::Dso])
    );
    assert_eq!(state(&c, &key(0)).roles, Roles::one(Role::Validator));
    assert_eq!(state(&c, &key(900)).roles, Roles::NONE);
}

/// 32 bytes that are no ed25519 public key (some small y is not on the curve).
fn not_a_key() -> AccountId {
    (0u8..=255)
        .map(|v| {
            let mut b = [0u8; 32];
            b[0] = v;
            AccountId(b)
        })
        .find(|a| a.to_public_key().is_none())
        .unwrap()
}

#[test]
fn enrollment_records_the_commitment_and_refuses_duplicates() {
    let mut c = Chain::new(1);
    let dso = c.dso.clone();
    let id: ParticipantId = "67e55044-10b1-426f-9247-bb680e5fe0c8".parse().unwrap();
    let one = |id, accounts: Vec<AccountId>, roles| Enrollment {
        participant: id,
        commitment: Hash::from([7; 32]),
        roles,
        accounts,
    };
    let enroll = |ps| Payload::Enroll(Enroll { participants: ps });
    let (a, b) = (key(600), key(601));
    accepted(&c.send(
        &dso,
        enroll(vec![one(
            id,
            vec![account(&a), account(&b)],
            Roles::one(Role::Prosumer),
        )]),
    ));
    let p = c
        .read::<ParticipantState>(&StateKey::Participant(id))
        .unwrap();
    assert_eq!(p.commitment, Hash::from([7; 32]));
    assert_eq!(p.accounts, vec![account(&a), account(&b)]);
    let s = state(&c, &b);
    assert_eq!(
        (s.roles, s.participant),
        (Roles::one(Role::Prosumer), Some(id))
    );
    // Now a member, it may send.
    assert_eq!(
        rejected(&c.send(&a, transfer(&b, 5))),
        RejectReason::InsufficientBalance {
            balance: Amount(0),
            needed: Amount(5)
        }
    );
    let other: ParticipantId = "0b5c2c3a-1c6e-4a57-9d5e-3f4e2f0a9b11".parse().unwrap();
    for (payload, says) in [
        (
            enroll(vec![one(
                id,
                vec![account(&key(602))],
                Roles::one(Role::Consumer),
            )]),
            "is enrolled already",
        ),
        (
            enroll(vec![one(
                other,
                vec![account(&a)],
                Roles::one(Role::Consumer),
            )]),
            "is a member already",
        ),
        (
            enroll(vec![one(
                other,
                vec![account(&key(603))],
                Roles::one(Role::Validator),
            )]),
            "the validator role",
        ),
        (
            enroll(vec![
                one(other, vec![account(&key(604))], Roles::one(Role::Consumer)),
                one(other, vec![account(&key(605))], Roles::one(Role::Consumer)),
            ]),
            "appears twice",
        ),
        (
            enroll(vec![one(
                other,
                vec![not_a_key()],
                Roles::one(Role::Consumer),
            )]),
            "not an ed25519 public key",
        ),
    ] {
        let outcome = c.send(&dso, payload);
        assert!(
            matches!(&outcome, Outcome::Rejected(r) if r.to_string().contains(says)),
            "{outcome:?} / {says}"
        );
    }
    // All or none: the second participant of a failed enrollment was not enrolled.
    assert!(!state(&c, &key(604)).is_member());
}

#[test]
fn roles_are_granted_and_revoked_by_the_registrar_only() {
    let mut c = matrix_chain();
    let dso = c.dso.clone();
    let auditor = holder(Role::Auditor);
    let grant = |grant, roles| {
        Payload::RoleSet(RoleSet {
            account: account(&auditor),
            grant,
            roles,
        })
    };
    // The auditor may not transfer; granted the consumer role, it may.
    assert!(matches!(
        rejected(&c.send(&auditor, transfer(&dso, 0))),
        RejectReason::MissingRole { .. }
    ));
    accepted(&c.send(&dso, grant(true, Roles::one(Role::Consumer))));
    assert_eq!(
        state(&c, &auditor).roles,
        Roles::of(&[Role::Consumer, Role::Auditor])
    );
    assert_eq!(
        rejected(&c.send(&auditor, transfer(&dso, 5))),
        RejectReason::InsufficientBalance {
            balance: Amount(0),
            needed: Amount(5)
        }
    );
    accepted(&c.send(&dso, grant(false, Roles::one(Role::Consumer))));
    assert_eq!(state(&c, &auditor).roles, Roles::one(Role::Auditor));
    // A DSO that is not the registrar may not.
    let r = rejected(&c.send(&holder(Role::Dso), grant(true, Roles::one(Role::Dso))));
    assert!(matches!(
        r,
        RejectReason::MissingRole {
            kind: TxKind::RoleSet,
            ..
        }
    ));
    // Nobody becomes a validator; a registrar keeps its own role.
    assert!(
        rejected(&c.send(&dso, grant(true, Roles::one(Role::Validator))))
            .to_string()
            .contains("validator")
    );
    let drop_own = Payload::RoleSet(RoleSet {
        account: account(&dso),
        grant: false,
        roles: Roles::one(Role::Registrar),
    });
    assert!(
        rejected(&c.send(&dso, drop_own))
            .to_string()
            .contains("its own registrar role")
    );
    // Roles of an account nobody enrolled are refused.
    let stranger = Payload::RoleSet(RoleSet {
        account: account(&key(900)),
        grant: true,
        roles: Roles::one(Role::Consumer),
    });
    assert!(
        rejected(&c.send(&dso, stranger))
            .to_string()
            .contains("not enrolled")
    );
}

#[test]
fn a_rotated_key_signs_and_the_replaced_one_is_refused_without_using_a_nonce() {
    let mut c = matrix_chain();
    let dso = c.dso.clone();
    let owner = holder(Role::Prosumer);
    let (k2, k3) = (key(700), key(701));
    accepted(&c.send(&dso, transfer(&owner, 100)));
    // AC-4.1: the owner rotates to k2 (signed with its id key, nonce 0).
    accepted(&c.send(
        &owner,
        Payload::KeyRotate(KeyRotate {
            new_key: account(&k2),
        }),
    ));
    let s = state(&c, &owner);
    assert_eq!((s.key, s.nonce), (Some(account(&k2)), 1));
    // AC-4.2: its old key is refused, the nonce stays; the new key signs.
    let old = signed_by(&c, &owner, &owner, 1, transfer(&dso, 1));
    let r = c.block(1, vec![old]).receipts[0].outcome.clone();
    assert_eq!(
        rejected(&r),
        RejectReason::KeyRotated {
            current: account(&k2)
        }
    );
    assert_eq!(state(&c, &owner).nonce, 1);
    // A key that was never the account's.
    let forged = signed_by(&c, &owner, &k3, 1, transfer(&dso, 1));
    let r = c.block(1, vec![forged]).receipts[0].outcome.clone();
    assert!(matches!(rejected(&r), RejectReason::KeyRotated { .. }));
    let new = signed_by(&c, &owner, &k2, 1, transfer(&dso, 1));
    accepted(&c.block(1, vec![new]).receipts[0].outcome);
    assert_eq!(state(&c, &owner).balance, Amount(99));
    // An account that never rotated, signed by another key: a wrong key.
    let never = holder(Role::Consumer);
    let r = c
        .block(1, vec![signed_by(&c, &never, &k3, 0, transfer(&dso, 1))])
        .receipts[0]
        .outcome
        .clone();
    assert_eq!(rejected(&r), RejectReason::NotAccountKey);
    // AC-4.3: the registrar resets a lost key to k3.
    accepted(&c.send(
        &dso,
        Payload::KeyReset(KeyReset {
            account: account(&owner),
            new_key: account(&k3),
        }),
    ));
    let r = c
        .block(1, vec![signed_by(&c, &owner, &k2, 2, transfer(&dso, 1))])
        .receipts[0]
        .outcome
        .clone();
    assert!(matches!(rejected(&r), RejectReason::KeyRotated { .. }));
    accepted(
        &c.block(1, vec![signed_by(&c, &owner, &k3, 2, transfer(&dso, 1))])
            .receipts[0]
            .outcome,
    );
    // Rotating back to the id stores no key.
    accepted(
        &c.block(
            1,
            vec![signed_by(
                &c,
                &owner,
                &k3,
                3,
                Payload::KeyRotate(KeyRotate {
                    new_key: account(&owner),
                }),
            )],
        )
        .receipts[0]
            .outcome,
    );
    assert_eq!(state(&c, &owner).key, None);
}

#[test]
fn a_revoked_account_sends_nothing_and_keeps_its_records() {
    let mut c = matrix_chain();
    let dso = c.dso.clone();
    let owner = holder(Role::Prosumer);
    accepted(&c.send(&dso, transfer(&owner, 100)));
    let revoke = |a: &PrivateKey| {
        Payload::AccountRevoke(AccountRevoke {
            accounts: vec![account(a)],
        })
    };
    // Only the registrar revokes, and not itself.
    assert!(matches!(
        rejected(&c.send(&holder(Role::Dso), revoke(&owner))),
        RejectReason::MissingRole { .. }
    ));
    assert!(
        rejected(&c.send(&dso, revoke(&dso)))
            .to_string()
            .contains("itself")
    );
    accepted(&c.send(&dso, revoke(&owner)));
    let before = state(&c, &owner);
    assert!(before.revoked);
    assert_eq!(
        rejected(&c.send(&owner, transfer(&dso, 1))),
        RejectReason::Revoked {
            account: account(&owner)
        }
    );
    // Nothing changed, not even the nonce; it still receives.
    accepted(&c.send(&dso, transfer(&owner, 5)));
    let after = state(&c, &owner);
    assert_eq!((after.nonce, after.balance), (before.nonce, Amount(105)));
    // For good: no role can be granted to it again, and it cannot be revoked twice.
    let grant = Payload::RoleSet(RoleSet {
        account: account(&owner),
        grant: true,
        roles: Roles::one(Role::Consumer),
    });
    assert!(matches!(
        rejected(&c.send(&dso, grant)),
        RejectReason::Revoked { .. }
    ));
    assert!(matches!(
        rejected(&c.send(&dso, revoke(&owner))),
        RejectReason::Revoked { .. }
    ));
}

#[test]
fn a_dso_operates_only_the_feeders_it_registered() {
    use bcte_types::{
        GridMode, Interval, MarketConfig, NodeSpec,
        market::{FeederRegister, GridModeSet},
    };
    let mut c = matrix_chain();
    let dso = c.dso.clone();
    let other = holder(Role::Dso);
    let f = bcte_types::FeederId::new("f1").unwrap();
    accepted(&c.send(
        &dso,
        Payload::FeederRegister(FeederRegister {
            feeder: f.clone(),
            epoch_ms: None,
            config: MarketConfig::DEFAULT,
            nodes: vec![NodeSpec {
                id: bcte_types::NodeId::new("root").unwrap(),
                parent: None,
                import_limit: None,
                export_limit: None,
            }],
            market_account: None,
            upstream_account: None,
        }),
    ));
    let mode = Payload::GridMode(GridModeSet {
        feeder: f.clone(),
        from: Interval(5),
        mode: GridMode::Alert,
    });
    assert_eq!(
        rejected(&c.send(&other, mode.clone())),
        RejectReason::NotFeederOperator { feeder: f }
    );
    accepted(&c.send(&dso, mode));
}

#[test]
fn a_site_is_delegated_only_to_an_aggregator_in_good_standing() {
    use bcte_types::{
        MarketConfig, NodeId, NodeSpec, SiteId, SiteSpec,
        market::{FeederRegister, SiteDelegate, SitesRegister},
    };
    let mut c = matrix_chain();
    let dso = c.dso.clone();
    let owner = holder(Role::Prosumer);
    let f = bcte_types::FeederId::new("f1").unwrap();
    let s = SiteId::new("home").unwrap();
    let root = NodeId::new("root").unwrap();
    accepted(&c.send(
        &dso,
        Payload::FeederRegister(FeederRegister {
            feeder: f.clone(),
            epoch_ms: None,
            config: MarketConfig::DEFAULT,
            nodes: vec![NodeSpec {
                id: root.clone(),
                parent: None,
                import_limit: None,
                export_limit: None,
            }],
            market_account: None,
            upstream_account: None,
        }),
    ));
    accepted(&c.send(
        &dso,
        Payload::SitesRegister(SitesRegister {
            feeder: f.clone(),
            sites: vec![SiteSpec {
                site: s.clone(),
                node: root,
                owner: account(&owner),
                priority: 0,
                import_limit: None,
                export_limit: None,
            }],
        }),
    ));
    let delegate = |to: &PrivateKey| {
        Payload::SiteDelegate(SiteDelegate {
            feeder: f.clone(),
            site: s.clone(),
            aggregator: account(to),
        })
    };
    let r = rejected(&c.send(&owner, delegate(&holder(Role::Consumer))));
    assert!(
        r.to_string().contains("does not hold the aggregator role"),
        "{r}"
    );
    let aggregator = holder(Role::Aggregator);
    accepted(&c.send(&owner, delegate(&aggregator)));
    // Revoked, it cannot be delegated to again.
    accepted(&c.send(
        &dso,
        Payload::AccountRevoke(AccountRevoke {
            accounts: vec![account(&aggregator)],
        }),
    ));
    let other = key(950);
    let enroll = Enroll::each([(account(&other), Roles::one(Role::Aggregator))]).remove(0);
    accepted(&c.send(&dso, Payload::Enroll(enroll)));
    accepted(&c.send(&owner, delegate(&other)));
    assert_eq!(
        rejected(&c.send(&owner, delegate(&aggregator))),
        RejectReason::Revoked {
            account: account(&aggregator)
        }
    );
}
