//! The bcte block as the consensus engine sees it: a newtype that implements commonware's traits.
//!
//! The block's digest (what validators vote on) is the header hash; the header embeds the simplex
//! context the block was proposed in, so the digest commits to it, as marshal's `Deferred`
//! verification requires of a [`CertifiableBlock`].

use bcte_types::{Block, BlockLimits, ConsensusContext};
use bytes::BufMut;
use commonware_codec::{Buf, EncodeSize, Error as CodecError, Read, Write};
use commonware_consensus::{
    Block as ConsensusBlock, BoundedBlock, CertifiableBlock, Heightable,
    simplex::types::Context,
    types::{Epoch, Height, Round, View},
};
use commonware_cryptography::{Digestible, ed25519, sha256};
use std::{ops::Deref, sync::Arc};

/// The digest type of blocks and consensus payloads.
pub type Digest = sha256::Digest;

/// Validator identity: the ed25519 key used for p2p and consensus votes.
pub type PublicKey = ed25519::PublicKey;

/// The simplex context embedded in every block.
pub type Ctx = Context<Digest, PublicKey>;

/// A bcte block wrapped for the consensus engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainBlock(pub Arc<Block>);

impl Deref for ChainBlock {
    type Target = Block;
    fn deref(&self) -> &Block {
        &self.0
    }
}

/// Converts the engine's context into the header's plain form.
pub fn context_to_header(ctx: &Ctx) -> ConsensusContext {
    let mut leader = [0u8; 32];
    leader.copy_from_slice(ctx.leader.as_ref());
    ConsensusContext {
        epoch: ctx.round.epoch().get(),
        view: ctx.round.view().get(),
        leader,
        parent_view: ctx.parent.0.get(),
        parent: ctx.parent.1,
    }
}

/// Converts a header context back into the engine's form. `None` if the leader bytes are not a
/// public key (a block built by a faulty proposer).
pub fn context_from_header(ctx: &ConsensusContext) -> Option<Ctx> {
    use commonware_codec::DecodeExt;
    // The genesis block's all-zero leader decodes too (y = 0 is a point of the curve).
    let leader = PublicKey::decode(commonware_codec::Copying(&ctx.leader)).ok()?;
    Some(Ctx {
        round: Round::new(Epoch::new(ctx.epoch), View::new(ctx.view)),
        leader,
        parent: (View::new(ctx.parent_view), ctx.parent),
    })
}

impl Write for ChainBlock {
    fn write(&self, buf: &mut impl BufMut) {
        self.0.write(buf);
    }
}

impl EncodeSize for ChainBlock {
    fn encode_size(&self) -> usize {
        self.0.encode_size()
    }
}

impl Read for ChainBlock {
    type Cfg = BlockLimits;
    fn read_cfg(buf: &mut impl Buf, cfg: &BlockLimits) -> Result<Self, CodecError> {
        let block = Block::read_cfg(buf, cfg)?;
        // The engine needs the context back from the header; refuse a block whose context
        // cannot be represented rather than fail later.
        if context_from_header(&block.header().context).is_none() {
            return Err(CodecError::Invalid(
                "Block",
                "context leader is not a public key",
            ));
        }
        Ok(Self(Arc::new(block)))
    }
}

impl Digestible for ChainBlock {
    type Digest = Digest;
    fn digest(&self) -> Digest {
        self.0.hash()
    }
}

impl Heightable for ChainBlock {
    fn height(&self) -> Height {
        Height::new(self.0.height().get())
    }
}

impl ConsensusBlock for ChainBlock {
    fn parent(&self) -> Digest {
        self.0.parent()
    }
}

impl CertifiableBlock for ChainBlock {
    type Context = Ctx;
    fn context(&self) -> Ctx {
        context_from_header(&self.0.header().context)
            .expect("decoded and built blocks carry a representable context")
    }
}

impl BoundedBlock for ChainBlock {
    fn max_encode_size(cfg: &BlockLimits) -> usize {
        Block::max_encode_size(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_genesis_context_is_representable() {
        assert!(context_from_header(&ConsensusContext::GENESIS).is_some());
    }

    #[test]
    fn contexts_round_trip_through_the_header() {
        use commonware_cryptography::Signer;
        let ctx = Ctx {
            round: Round::new(Epoch::new(2), View::new(9)),
            leader: ed25519::PrivateKey::from_seed(3).public_key(),
            parent: (View::new(7), Digest::from([5; 32])),
        };
        assert_eq!(context_from_header(&context_to_header(&ctx)), Some(ctx));
    }
}
