//! Ids, fixed-point quantities, transactions and blocks of bcte, with their canonical encoding.
//!
//! This crate is the vocabulary every other bcte crate speaks. It is pure: it never touches a
//! clock, a socket or a file. Every quantity is an integer newtype with its unit in its name
//! and its documentation, so no float ever reaches state, the wire or money. Every decoder takes
//! or embeds limits and refuses non-canonical input, so `encode(decode(b)) == b` for every `b`
//! it accepts.

pub mod auth;
pub mod batch;
pub mod block;
pub mod contract;
pub mod flex;
#[doc(hidden)]
pub mod fuzzing;
pub mod genesis;
pub mod ids;
pub mod market;
pub mod meter;
pub mod receipt;
pub mod role;
pub mod tx;
pub use bcte_units as units;

pub use block::{Block, BlockLimits, ConsensusContext, Header};
pub use genesis::{Allocation, Genesis, GenesisError, KeyFile, Validator};
pub use ids::{AccountId, ChainId, Hash, Height, IdError};
pub use market::{
    BidEntry, CurveSpec, FeederId, GridMode, Interval, MarketConfig, NodeId, NodeSpec, SiteId,
    SiteSpec,
};
pub use receipt::{Outcome, Receipt, RejectReason};
pub use role::{ParticipantId, Role, Roles};
pub use tx::{Payload, SignatureError, Tx, TxBody, TxKind};
pub use units::{Amount, Price, WattHours, Watts};
