//! `bcte openadr client add|list|revoke|rotate`: the DSO's OpenADR VEN clients on a node
//! (docs/openadr.md). The secret is printed once, when a client is added or rotated; the node
//! keeps only its hash.
//!
//! Exit codes: 0 done, 1 the node failed or refused, 2 invalid arguments.

use crate::{
    chain_cmds::{emit, fail},
    pii_cmds::Who,
};
use bcte_node::vtn_admin_api::{AddClient, ClientSecret, VenClientView};
use clap::Subcommand;
use serde_json::json;
use std::process::ExitCode;

/// `bcte openadr` subcommands.
#[derive(Subcommand, Debug)]
pub enum OpenAdrCommand {
    /// The VEN clients of the node's OpenADR 3 VTN (a DSO adds, revokes and rotates).
    #[command(subcommand)]
    Client(ClientCommand),
}

/// `bcte openadr client` subcommands.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Register a VEN client: prints its client id and secret (shown only now).
    Add {
        /// Its name (1 to 128 characters, unique among the clients not revoked).
        #[arg(long)]
        name: String,
        /// The participant's ACCOUNT it speaks for, if any.
        #[arg(long, value_name = "ACCOUNT")]
        participant: Option<String>,
        #[command(flatten)]
        who: Who,
    },
    /// List the node's clients (never their secrets).
    List {
        #[command(flatten)]
        who: Who,
    },
    /// Revoke a client: its secret and tokens stop working at once.
    Revoke {
        /// The client id.
        id: String,
        #[command(flatten)]
        who: Who,
    },
    /// Give a client a new secret (printed only now); the old one stops working.
    Rotate {
        /// The client id.
        id: String,
        #[command(flatten)]
        who: Who,
    },
}

fn secret_text(s: &ClientSecret) -> String {
    format!(
        "client_id:     {}\nclient_secret: {}\nname:          {}\n(the secret is shown only now; the node keeps its hash)",
        s.client.client_id, s.client_secret, s.client.name
    )
}

/// Runs `bcte openadr ...`.
pub fn run(cmd: OpenAdrCommand, json: bool) -> ExitCode {
    let OpenAdrCommand::Client(cmd) = cmd;
    let run = || -> anyhow::Result<()> {
        match cmd {
            ClientCommand::Add {
                name,
                participant,
                who,
            } => {
                let s: ClientSecret = who
                    .client()?
                    .post("/v1/openadr/clients", &AddClient { name, participant })?;
                emit(json, &json!(s), || secret_text(&s));
            }
            ClientCommand::List { who } => {
                let list: Vec<VenClientView> = who.client()?.get("/v1/openadr/clients")?;
                emit(json, &json!(list), || {
                    if list.is_empty() {
                        return "no OpenADR clients".into();
                    }
                    list.iter()
                        .map(|c| {
                            format!(
                                "{}  {:<24} {}{}",
                                c.client_id,
                                c.name,
                                c.participant.as_deref().unwrap_or("-"),
                                if c.revoked { "  (revoked)" } else { "" }
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                });
            }
            ClientCommand::Revoke { id, who } => {
                let c: VenClientView = who.client()?.delete(&format!(
                    "/v1/openadr/clients/{}",
                    crate::market_cmds::enc(&id)
                ))?;
                emit(json, &json!(c), || {
                    format!("client {} revoked", c.client_id)
                });
            }
            ClientCommand::Rotate { id, who } => {
                let s: ClientSecret = who.client()?.post(
                    &format!(
                        "/v1/openadr/clients/{}/rotate",
                        crate::market_cmds::enc(&id)
                    ),
                    &json!({}),
                )?;
                emit(json, &json!(s), || secret_text(&s));
            }
        }
        Ok(())
    };
    run().map_or_else(|e| fail(&e), |()| ExitCode::SUCCESS)
}
