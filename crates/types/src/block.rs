//! Blocks: a fixed-size header that commits to everything, and the ordered transactions.
//!
//! The block's hash (its digest, what consensus votes on) is SHA-256 of the encoded header. The
//! header commits to the transactions through `tx_root`, to the state after executing this block
//! through `state_root`, and to this block's receipts through `receipts_root`. The header also
//! embeds the consensus context the block was proposed in (round, leader, parent), so a node that
//! missed the proposal can still check it.
//!
//! Invariant: a decoded [`Block`] is self-consistent: its `tx_root` matches its transactions and
//! it respects the [`BlockLimits`] it was decoded with. The decoder refuses anything else.

use crate::{
    ids::{Hash, Height, len_size, read_len, write_len},
    receipt::Receipt,
    tx::{Payload, Tx},
};
use bytes::BufMut;
use commonware_codec::{
    Buf, Encode, EncodeSize, Error as CodecError, FixedSize, Read, ReadExt, Write,
};
use commonware_cryptography::{Hasher, Sha256};
use commonware_storage::bmt;

/// The most transactions a block may hold.
pub const BLOCK_TXS_MAX: usize = 8_192;

/// The largest encoded block, in bytes (header, count and transactions).
pub const BLOCK_BYTES_MAX: usize = 2 * 1024 * 1024;

/// Limits a block decoder enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLimits {
    /// Most transactions.
    pub txs_max: usize,
    /// Most encoded bytes.
    pub bytes_max: usize,
}

impl Default for BlockLimits {
    fn default() -> Self {
        Self {
            txs_max: BLOCK_TXS_MAX,
            bytes_max: BLOCK_BYTES_MAX,
        }
    }
}

/// The consensus round a block was proposed in, as the engine (simplex) describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsensusContext {
    /// Epoch of the round.
    pub epoch: u64,
    /// View of the round.
    pub view: u64,
    /// The round's leader (the proposer), as a validator public key.
    pub leader: [u8; 32],
    /// The view of the parent block.
    pub parent_view: u64,
    /// The parent block's hash.
    pub parent: Hash,
}

impl ConsensusContext {
    /// The all-zero context of the genesis block.
    pub const GENESIS: Self = Self {
        epoch: 0,
        view: 0,
        leader: [0; 32],
        parent_view: 0,
        parent: <Hash as commonware_cryptography::Digest>::EMPTY,
    };
}

impl Write for ConsensusContext {
    fn write(&self, buf: &mut impl BufMut) {
        self.epoch.write(buf);
        self.view.write(buf);
        buf.put_slice(&self.leader);
        self.parent_view.write(buf);
        self.parent.write(buf);
    }
}

impl Read for ConsensusContext {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            epoch: u64::read(buf)?,
            view: u64::read(buf)?,
            leader: <[u8; 32]>::read(buf)?,
            parent_view: u64::read(buf)?,
            parent: Hash::read(buf)?,
        })
    }
}

impl FixedSize for ConsensusContext {
    const SIZE: usize = 8 + 8 + 32 + 8 + Hash::SIZE;
}

/// A block header: fixed size, hashed to give the block's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The parent block's hash (all zero for genesis).
    pub parent: Hash,
    /// The block's height (0 for genesis).
    pub height: Height,
    /// The proposer's clock when it built the block, in ms since the Unix epoch. The only time
    /// the ledger ever knows; strictly greater than the parent's.
    pub timestamp_ms: u64,
    /// The consensus round the block was proposed in (all zero for genesis).
    pub context: ConsensusContext,
    /// Root of the binary Merkle tree over the transaction hashes, in block order.
    pub tx_root: Hash,
    /// Root of the authenticated state after executing this block.
    pub state_root: Hash,
    /// Root of the binary Merkle tree over this block's receipt hashes, in block order.
    pub receipts_root: Hash,
}

impl Header {
    /// The block hash: SHA-256 of the encoded header.
    pub fn hash(&self) -> Hash {
        Sha256::hash(&[&self.encode()])
    }
}

impl Write for Header {
    fn write(&self, buf: &mut impl BufMut) {
        self.parent.write(buf);
        self.height.write(buf);
        self.timestamp_ms.write(buf);
        self.context.write(buf);
        self.tx_root.write(buf);
        self.state_root.write(buf);
        self.receipts_root.write(buf);
    }
}

impl Read for Header {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        Ok(Self {
            parent: Hash::read(buf)?,
            height: Height::read(buf)?,
            timestamp_ms: u64::read(buf)?,
            context: ConsensusContext::read(buf)?,
            tx_root: Hash::read(buf)?,
            state_root: Hash::read(buf)?,
            receipts_root: Hash::read(buf)?,
        })
    }
}

impl FixedSize for Header {
    const SIZE: usize = Hash::SIZE + 8 + 8 + ConsensusContext::SIZE + 3 * Hash::SIZE;
}

/// Root of a binary Merkle tree over `leaves` (commonware's BMT: position-hashed leaves, the
/// leaf count folded into the root, a fixed root for the empty tree).
pub fn merkle_root(leaves: impl ExactSizeIterator<Item = Hash>) -> Hash {
    let mut builder = bmt::Builder::<Sha256>::new(leaves.len());
    for leaf in leaves {
        builder.add(&leaf);
    }
    builder.build().root()
}

/// Root over the hashes of `txs`, in order.
pub fn tx_root(txs: &[Tx]) -> Hash {
    merkle_root(txs.iter().map(Tx::hash))
}

/// Root over the hashes of the encoded `receipts`, in order.
pub fn receipts_root(receipts: &[Receipt]) -> Hash {
    merkle_root(receipts.iter().map(|r| Sha256::hash(&[&r.encode()])))
}

/// A block: header and transactions. Immutable; its hash is computed once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    header: Header,
    txs: Vec<Tx>,
    hash: Hash,
}

impl Block {
    /// Builds a block, computing its `tx_root` from `txs`.
    ///
    /// `header.tx_root` is ignored and replaced.
    pub fn new(mut header: Header, txs: Vec<Tx>) -> Self {
        header.tx_root = tx_root(&txs);
        let hash = header.hash();
        Self { header, txs, hash }
    }

    /// The header.
    pub const fn header(&self) -> &Header {
        &self.header
    }

    /// The transactions, in execution order.
    pub fn txs(&self) -> &[Tx] {
        &self.txs
    }

    /// The block hash (SHA-256 of the encoded header).
    pub const fn hash(&self) -> Hash {
        self.hash
    }

    /// The height.
    pub const fn height(&self) -> Height {
        self.header.height
    }

    /// The parent's hash.
    pub const fn parent(&self) -> Hash {
        self.header.parent
    }

    /// An upper bound on the encoded size of any block the decoder admits under `limits`.
    pub const fn max_encode_size(limits: &BlockLimits) -> usize {
        limits.bytes_max
    }
}

impl Write for Block {
    fn write(&self, buf: &mut impl BufMut) {
        self.header.write(buf);
        write_len(self.txs.len(), buf);
        for tx in &self.txs {
            tx.write(buf);
        }
    }
}

impl EncodeSize for Block {
    fn encode_size(&self) -> usize {
        Header::SIZE
            + len_size(self.txs.len())
            + self.txs.iter().map(EncodeSize::encode_size).sum::<usize>()
    }
}

impl Read for Block {
    type Cfg = BlockLimits;
    fn read_cfg(buf: &mut impl Buf, limits: &BlockLimits) -> Result<Self, CodecError> {
        let start = buf.remaining();
        let header = Header::read(buf)?;
        let count = read_len(buf, limits.txs_max)?;
        // Every transaction is at least this long (the shortest chain id, sender, nonce, the
        // shortest payload and the signature); refuse a count the input cannot hold before
        // reserving memory for it.
        const TX_BYTES_MIN: usize = 1 + 1 + 32 + 8 + Payload::ENCODED_SIZE_MIN + 64;
        if count.saturating_mul(TX_BYTES_MIN) > buf.remaining() {
            return Err(CodecError::EndOfBuffer);
        }
        let mut txs = Vec::with_capacity(count);
        for _ in 0..count {
            txs.push(Tx::read(buf)?);
            if start - buf.remaining() > limits.bytes_max {
                return Err(CodecError::InvalidLength(start - buf.remaining()));
            }
        }
        if start - buf.remaining() > limits.bytes_max {
            return Err(CodecError::InvalidLength(start - buf.remaining()));
        }
        if tx_root(&txs) != header.tx_root {
            return Err(CodecError::Invalid(
                "Block",
                "tx_root does not match transactions",
            ));
        }
        let hash = header.hash();
        Ok(Self { header, txs, hash })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ids::{AccountId, ChainId},
        tx::{Payload, TxBody},
        units::Amount,
    };
    use commonware_codec::{Copying, Decode};
    use commonware_cryptography::{Signer, ed25519::PrivateKey};

    fn sample_block(n: u64) -> Block {
        let key = PrivateKey::from_seed(1);
        let txs = (0..n)
            .map(|nonce| {
                Tx::sign(
                    TxBody {
                        chain_id: ChainId::new("t").unwrap(),
                        sender: AccountId::from_public_key(&key.public_key()),
                        signer: None,
                        nonce,
                        payload: Payload::Burn { amount: Amount(1) },
                    },
                    &key,
                )
            })
            .collect();
        let header = Header {
            parent: Hash::from([7; 32]),
            height: Height(3),
            timestamp_ms: 1_700_000_000_000,
            context: ConsensusContext::GENESIS,
            tx_root: Hash::from([0; 32]),
            state_root: Hash::from([1; 32]),
            receipts_root: Hash::from([2; 32]),
        };
        Block::new(header, txs)
    }

    #[test]
    fn blocks_round_trip_and_hash_is_header_hash() {
        let block = sample_block(3);
        let bytes = block.encode();
        let back = Block::decode_cfg(bytes.clone(), &BlockLimits::default()).unwrap();
        assert_eq!(back, block);
        assert_eq!(back.hash(), block.header().hash());
        assert_eq!(back.encode(), bytes);
    }

    #[test]
    fn decoder_enforces_limits_and_tx_root() {
        let block = sample_block(3);
        let bytes = block.encode().to_vec();
        let tight = BlockLimits {
            txs_max: 2,
            bytes_max: BLOCK_BYTES_MAX,
        };
        assert!(Block::decode_cfg(Copying(&bytes), &tight).is_err());
        let small = BlockLimits {
            txs_max: 10,
            bytes_max: 300,
        };
        assert!(Block::decode_cfg(Copying(&bytes), &small).is_err());
        // Flip a byte of the tx_root field (offset: parent, height, timestamp, context).
        let mut bad = bytes.clone();
        bad[32 + 8 + 8 + ConsensusContext::SIZE] ^= 1;
        assert!(Block::decode_cfg(Copying(&bad), &BlockLimits::default()).is_err());
        // A huge claimed count with no bytes behind it fails fast.
        let mut lying = Header::SIZE;
        let mut huge = bytes[..Header::SIZE].to_vec();
        huge.extend_from_slice(&[0xff, 0x3f]); // varint 8191
        lying += 2;
        assert_eq!(huge.len(), lying);
        assert!(Block::decode_cfg(Copying(&huge), &BlockLimits::default()).is_err());
    }
}
