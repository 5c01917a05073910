//! `bcte tx enroll`, `bcte tx role grant|revoke`, `bcte tx key rotate|reset` and
//! `bcte tx revoke`: the registrar's transactions and a member's key rotation
//! (docs/access-rules.md).

use crate::chain_cmds::{InputError, TxCommon, fail, submit_noting};
use bcte_node::files;
use bcte_types::{
    AccountId, Hash, ParticipantId, Payload, Role, Roles,
    role::{AccountRevoke, Enroll, Enrollment, KeyReset, KeyRotate, RoleSet},
};
use clap::{Args, Subcommand};
use commonware_cryptography::Signer;
use std::process::ExitCode;

/// Arguments of `bcte tx enroll`.
#[derive(Args, Debug)]
pub struct EnrollArgs {
    #[command(flatten)]
    common: TxCommon,
    /// The participant's id (a UUID); by default a fresh random one, printed.
    #[arg(long, value_name = "UUID")]
    participant: Option<ParticipantId>,
    /// A role its accounts receive (repeat for several): registrar, dso, aggregator,
    /// prosumer, consumer, meter, auditor, regulator, data_service.
    #[arg(long = "role", value_name = "ROLE", required = true)]
    roles: Vec<Role>,
    /// An account of the participant (repeat for several, at most 16).
    #[arg(long = "account", value_name = "ACCOUNT", required = true)]
    accounts: Vec<AccountId>,
    /// The salted commitment to its off-chain personal data (hex, AC-2.3), as `bcte pii put`
    /// prints it; by default none (all zero).
    #[arg(long, value_name = "HEX")]
    commitment: Option<String>,
}

/// `bcte tx role` subcommands.
#[derive(Subcommand, Debug)]
pub enum RoleCommand {
    /// Grant roles to a member.
    Grant(RoleArgs),
    /// Revoke roles of a member.
    Revoke(RoleArgs),
}

/// Arguments of `bcte tx role grant|revoke`.
#[derive(Args, Debug)]
pub struct RoleArgs {
    #[command(flatten)]
    common: TxCommon,
    /// The member's ACCOUNT.
    #[arg(long, value_name = "ACCOUNT")]
    account: AccountId,
    /// A role (repeat for several).
    #[arg(long = "role", value_name = "ROLE", required = true)]
    roles: Vec<Role>,
}

/// `bcte tx key` subcommands.
#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Replace the sender's signing key (signed with its current key). The account keeps its
    /// id; sign later transactions with the new key and `--sender ACCOUNT`.
    Rotate {
        #[command(flatten)]
        common: TxCommon,
        /// The new key: a key file (`bcte keys new`) or its public key (hex).
        #[arg(long, value_name = "FILE|ACCOUNT")]
        new_key: String,
    },
    /// Set a member's key when it lost its own (registrar).
    Reset {
        #[command(flatten)]
        common: TxCommon,
        /// The member's ACCOUNT.
        #[arg(long, value_name = "ACCOUNT")]
        account: AccountId,
        /// Its new public key (hex).
        #[arg(long, value_name = "ACCOUNT")]
        new_key: AccountId,
    },
}

/// Arguments of `bcte tx revoke`.
#[derive(Args, Debug)]
pub struct RevokeArgs {
    #[command(flatten)]
    common: TxCommon,
    /// An ACCOUNT to revoke for good (repeat for several, at most 16).
    #[arg(long = "account", value_name = "ACCOUNT", required = true)]
    accounts: Vec<AccountId>,
}

/// Runs `bcte tx enroll`: prints the participant's id with the outcome.
pub fn run_enroll(args: EnrollArgs, json: bool) -> ExitCode {
    let result = (|| -> anyhow::Result<ExitCode> {
        let participant = args
            .participant
            .unwrap_or_else(|| ParticipantId::random(&mut rand::rng()));
        let commitment = match &args.commitment {
            None => Hash::from([0; 32]),
            Some(h) => Hash::from(
                bcte_types::ids::parse_hex_array::<32>(h)
                    .map_err(|e| InputError(format!("--commitment: {e}")))?,
            ),
        };
        let payload = Payload::Enroll(Enroll {
            participants: vec![Enrollment {
                participant,
                commitment,
                roles: args.roles.iter().copied().collect(),
                accounts: args.accounts.clone(),
            }],
        });
        submit_noting(
            &args.common,
            payload,
            json,
            &[("participant", participant.to_string())],
        )
    })();
    result.unwrap_or_else(|e| fail(&e))
}

/// The transaction of `bcte tx role grant|revoke`.
pub fn role(cmd: RoleCommand) -> (TxCommon, Payload) {
    let (grant, args) = match cmd {
        RoleCommand::Grant(a) => (true, a),
        RoleCommand::Revoke(a) => (false, a),
    };
    let roles: Roles = args.roles.iter().copied().collect();
    (
        args.common,
        Payload::RoleSet(RoleSet {
            account: args.account,
            grant,
            roles,
        }),
    )
}

/// The transaction of `bcte tx key rotate|reset`.
pub fn key(cmd: KeyCommand) -> anyhow::Result<(TxCommon, Payload)> {
    Ok(match cmd {
        KeyCommand::Rotate { common, new_key } => {
            let new_key = match new_key.parse::<AccountId>() {
                Ok(id) => id,
                Err(_) => AccountId::from_public_key(
                    &files::read_key(std::path::Path::new(&new_key))
                        .map_err(|e| InputError(format!("--new-key: {e:#}")))?
                        .public_key(),
                ),
            };
            (common, Payload::KeyRotate(KeyRotate { new_key }))
        }
        KeyCommand::Reset {
            common,
            account,
            new_key,
        } => (common, Payload::KeyReset(KeyReset { account, new_key })),
    })
}

/// The transaction of `bcte tx revoke`.
pub fn revoke(args: RevokeArgs) -> (TxCommon, Payload) {
    (
        args.common,
        Payload::AccountRevoke(AccountRevoke {
            accounts: args.accounts,
        }),
    )
}
