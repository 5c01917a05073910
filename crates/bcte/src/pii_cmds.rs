//! `bcte pii put|get|erase`: a participant's personal data in the registrar's node, off chain
//! (docs/access-rules.md, AC-2.3 and AC-2.4).

use crate::{
    chain_cmds::{DEFAULT_NODE, InputError, emit, fail},
    client::Client,
};
use anyhow::{Context as _, bail};
use bcte_ledger::{StateKey, identity::ParticipantState};
use bcte_node::pii_api::{PiiErased, PiiRecord, PiiStored};
use bcte_types::{AccountId, ParticipantId, ids::parse_hex_array, role::pii_commitment};
use clap::{Args, Subcommand};
use commonware_codec::{Copying, DecodeExt as _};
use serde_json::json;
use std::{path::PathBuf, process::ExitCode};

/// `bcte pii` subcommands.
#[derive(Subcommand, Debug)]
pub enum PiiCommand {
    /// Store a participant's personal data (a JSON object: name, address, contact, contract
    /// number) encrypted on the registrar's node; prints its id and the commitment to enroll
    /// it with (`bcte tx enroll --participant ID --commitment HEX`). Registrar.
    Put {
        #[command(flatten)]
        who: Who,
        /// The participant's id (a UUID); by default a fresh random one, printed.
        #[arg(long, value_name = "UUID")]
        participant: Option<ParticipantId>,
        /// The record, a JSON object (at most 16 KiB).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Read a participant's personal data (the participant itself or the registrar; every read
    /// is logged) and check it against the commitment on chain, proven against the block's
    /// state root.
    Get {
        #[command(flatten)]
        who: Who,
        /// The participant's id.
        #[arg(long, value_name = "UUID")]
        participant: ParticipantId,
    },
    /// Erase a participant's personal data for good (its key is overwritten): the chain keeps
    /// only the commitment, which now opens to nothing. Registrar.
    Erase {
        #[command(flatten)]
        who: Who,
        /// The participant's id.
        #[arg(long, value_name = "UUID")]
        participant: ParticipantId,
    },
}

/// Who signs in, and where.
#[derive(Args, Debug)]
pub struct Who {
    /// The key file to sign in with.
    #[arg(long, value_name = "FILE", env = "BCTE_KEY")]
    key: PathBuf,
    /// The ACCOUNT to sign in as, when it is not the key's own (an account whose key was
    /// rotated: AC-4).
    #[arg(long, value_name = "ACCOUNT")]
    sender: Option<AccountId>,
    /// The node's API URL.
    #[arg(long, value_name = "URL", default_value = DEFAULT_NODE, env = "BCTE_NODE")]
    node: String,
}

impl Who {
    /// A client signed in as it.
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        Client::signed_in(&self.node, &self.key, self.sender)
    }
}

/// Runs `bcte pii ...`.
pub fn run(cmd: PiiCommand, json: bool) -> ExitCode {
    let result = (|| -> anyhow::Result<()> {
        match cmd {
            PiiCommand::Put {
                who,
                participant,
                file,
            } => {
                let record =
                    std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&record)
                    .map_err(|e| {
                        InputError(format!("{}: not a JSON object: {e}", file.display()))
                    })?;
                let participant =
                    participant.unwrap_or_else(|| ParticipantId::random(&mut rand::rng()));
                let stored: PiiStored = who
                    .client()?
                    .put_json_bytes(&format!("/v1/pii/{participant}"), &record)?;
                let value =
                    json!({ "participant": stored.participant, "commitment": stored.commitment });
                emit(json, &value, || {
                    format!(
                        "participant: {}\ncommitment:  {}\nenroll with: bcte tx enroll --participant {} --commitment {} ...",
                        stored.participant,
                        stored.commitment,
                        stored.participant,
                        stored.commitment
                    )
                });
            }
            PiiCommand::Get { who, participant } => {
                let client = who.client()?;
                let r: PiiRecord = client.get(&format!("/v1/pii/{participant}"))?;
                // Recompute the commitment here, and read the chain's through its proof.
                let salt = parse_hex_array::<32>(&r.salt).context("the node sent a bad salt")?;
                let local = pii_commitment(&participant, &salt, r.record.as_bytes());
                let on_chain = proven_commitment(&client, &participant)?;
                let matches = on_chain == Some(local);
                let record: serde_json::Value = serde_json::from_str(&r.record)
                    .context("the node sent a record that is not JSON")?;
                let value = json!({
                    "participant": r.participant,
                    "record": record,
                    "commitment": hex::encode(local),
                    "on_chain": on_chain.map(hex::encode),
                    "matches": matches,
                });
                emit(json, &value, || {
                    format!(
                        "{}\ncommitment {} {}",
                        serde_json::to_string_pretty(&record).unwrap_or_default(),
                        hex::encode(local),
                        match on_chain {
                            Some(_) if matches => "matches the chain's (proven)",
                            Some(_) => "DIFFERS from the chain's",
                            None => "(the participant is not enrolled)",
                        }
                    )
                });
                if on_chain.is_some() && !matches {
                    bail!("the record does not match the commitment on chain");
                }
            }
            PiiCommand::Erase { who, participant } => {
                let e: PiiErased = who.client()?.delete(&format!("/v1/pii/{participant}"))?;
                emit(
                    json,
                    &json!({ "participant": e.participant, "erased": e.erased }),
                    || {
                        format!(
                            "participant {}: personal data erased for good",
                            e.participant
                        )
                    },
                );
            }
        }
        Ok(())
    })();
    result.map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS)
}

/// The commitment the chain holds for `participant`, from a state proof checked against the
/// header of its block (whose hash is recomputed); `None` if it is not enrolled.
fn proven_commitment(
    client: &Client,
    participant: &ParticipantId,
) -> anyhow::Result<Option<bcte_types::Hash>> {
    let (proof, _, _) =
        crate::chain_cmds::proven(client, &StateKey::Participant(*participant), None)?;
    proof
        .value
        .as_deref()
        .map(|v| {
            ParticipantState::decode(Copying(v))
                .map(|p| p.commitment)
                .context("the proven value is not a participant")
        })
        .transpose()
}
