//! The raw data behind a head-end batch (docs/settlement-rules.md, ST-1.5): every reading signed
//! by its own meter, the batch's binary Merkle tree over them, and the proof that one reading is
//! in a batch whose root is on the chain.
//!
//! A meter signs, in the domain [`READING_NAMESPACE`], the message
//! `chain_id feeder interval:u64 site wh:i64` (the canonical encodings of each), so a reading is
//! worthless for another chain, feeder, interval or site. A [`RawBatch`] holds one interval's
//! signed readings of one feeder in the order of the [`MeterBatch`] transaction that carries
//! their energies; leaf `i` of its tree is `SHA-256(message_i ‖ meter_i ‖ signature_i)`, and the
//! tree is commonware's BMT (position-hashed leaves, the leaf count folded into the root), as for
//! the block's transaction root. The batch's root is its address in the off-chain store.
//!
//! A reading no meter signed (a head-end's import of a utility's file, such as Green Button:
//! ST-1.6) is in the batch without a signature and marked estimated; its leaf is
//! `SHA-256(message ‖ meter)`, which no signed reading's leaf can equal (the message is
//! self-delimiting and a signature adds 64 bytes).

use crate::{
    AccountId, ChainId, Hash, WattHours,
    ids::{len_size, read_len, write_len},
    market::{FeederId, Interval, SiteId},
    meter::{MeterBatch, READINGS_PER_TX_MAX, SiteEnergy},
};
use bytes::{BufMut, Bytes};
use commonware_codec::{
    Buf, DecodeExt, Encode, EncodeSize, Error as CodecError, FixedSize, Read, ReadExt, Write,
};
use commonware_cryptography::{
    BatchVerifier, Hasher, Sha256, Signer, Verifier,
    ed25519::{PrivateKey, PublicKey, Signature},
};
use commonware_storage::bmt;
use thiserror::Error;

/// The signing domain of a meter's reading.
pub const READING_NAMESPACE: &[u8] = b"bcte/reading/v1";

/// The first eight bytes of an encoded [`RawBatch`] (format version 2: a reading may be
/// unsigned).
pub const RAW_BATCH_MAGIC: [u8; 8] = *b"bcte-mb2";

/// The first eight bytes of a version 1 raw batch (every reading signed), still read.
pub const RAW_BATCH_MAGIC_V1: [u8; 8] = *b"bcte-mb1";

/// The most sibling hashes a proof of one reading can need (a tree of at most
/// [`READINGS_PER_TX_MAX`] leaves has at most 15 levels; 32 is the BMT's own bound).
const PROOF_SIBLINGS_MAX: usize = 32;

/// The bytes a meter signs for its reading of `site` in `interval` of `feeder` on `chain`.
pub fn reading_message(
    chain: &ChainId,
    feeder: &FeederId,
    interval: Interval,
    site: &SiteId,
    wh: WattHours,
) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(chain.encode_size() + feeder.encode_size() + site.encode_size() + 16);
    chain.write(&mut out);
    feeder.write(&mut out);
    interval.write(&mut out);
    site.write(&mut out);
    wh.write(&mut out);
    out
}

/// One site's reading, signed by its meter (or, marked estimated, by none: ST-1.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedReading {
    /// The site.
    pub site: SiteId,
    /// The energy over the interval (Wh; positive consumed, negative fed in).
    pub wh: WattHours,
    /// The meter's account (its public key): the site's registered meter.
    pub meter: AccountId,
    /// The meter's signature over [`reading_message`]; `None` for a reading no meter signed,
    /// which is therefore estimated (ST-1.6).
    pub signature: Option<Signature>,
}

impl SignedReading {
    /// Signs a reading with the meter's `key`.
    pub fn sign(
        chain: &ChainId,
        feeder: &FeederId,
        interval: Interval,
        site: SiteId,
        wh: WattHours,
        key: &PrivateKey,
    ) -> Self {
        let message = reading_message(chain, feeder, interval, &site, wh);
        Self {
            signature: Some(key.sign(READING_NAMESPACE, &message)),
            meter: AccountId::from_public_key(&key.public_key()),
            site,
            wh,
        }
    }

    /// A reading of `site`'s `meter` that no meter signed: estimated (ST-1.6).
    pub fn unsigned(site: SiteId, wh: WattHours, meter: AccountId) -> Self {
        Self {
            site,
            wh,
            meter,
            signature: None,
        }
    }

    /// The signature in hex (128 characters), `None` for an unsigned reading.
    pub fn signature_hex(&self) -> Option<String> {
        self.signature.as_ref().map(|s| hex::encode(s.encode()))
    }

    /// Whether the reading is estimated: no meter signed it (ST-1.6).
    pub fn estimated(&self) -> bool {
        self.signature.is_none()
    }

    /// Whether the reading carries the meter's signature over it (an unsigned reading does not).
    pub fn verify(&self, chain: &ChainId, feeder: &FeederId, interval: Interval) -> bool {
        let (Some(key), Some(signature)) = (self.meter.to_public_key(), &self.signature) else {
            return false;
        };
        let message = reading_message(chain, feeder, interval, &self.site, self.wh);
        key.verify(READING_NAMESPACE, &message, signature)
    }

    /// The reading's leaf in its batch's tree.
    pub fn leaf(&self, chain: &ChainId, feeder: &FeederId, interval: Interval) -> Hash {
        let message = reading_message(chain, feeder, interval, &self.site, self.wh);
        match &self.signature {
            Some(sig) => Sha256::hash(&[&message, self.meter.as_bytes(), sig.encode().as_ref()]),
            None => Sha256::hash(&[&message, self.meter.as_bytes()]),
        }
    }

    /// Reads a version 1 reading (always signed).
    fn read_v1(buf: &mut impl Buf) -> Result<Self, CodecError> {
        Ok(Self {
            site: SiteId::read(buf)?,
            wh: WattHours::read(buf)?,
            meter: AccountId::read(buf)?,
            signature: Some(Signature::read(buf)?),
        })
    }
}

impl Write for SignedReading {
    fn write(&self, buf: &mut impl BufMut) {
        self.site.write(buf);
        self.wh.write(buf);
        self.meter.write(buf);
        match &self.signature {
            Some(sig) => {
                buf.put_u8(1);
                sig.write(buf);
            }
            None => buf.put_u8(0),
        }
    }
}

impl EncodeSize for SignedReading {
    fn encode_size(&self) -> usize {
        self.site.encode_size()
            + 8
            + AccountId::SIZE
            + 1
            + self.signature.as_ref().map_or(0, |_| Signature::SIZE)
    }
}

impl Read for SignedReading {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let site = SiteId::read(buf)?;
        let wh = WattHours::read(buf)?;
        let meter = AccountId::read(buf)?;
        let signature = match u8::read(buf)? {
            0 => None,
            1 => Some(Signature::read(buf)?),
            _ => {
                return Err(CodecError::Invalid(
                    "SignedReading",
                    "signed flag not 0 or 1",
                ));
            }
        };
        Ok(Self {
            site,
            wh,
            meter,
            signature,
        })
    }
}

/// Why a raw batch, or a reading's proof, does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    /// The bytes are not a raw batch.
    #[error("not a raw meter batch: {0}")]
    Malformed(String),
    /// A reading's signature is not its meter's.
    #[error("reading {index} (site {site:?}): the signature is not its meter's ({meter})")]
    BadSignature {
        /// Its position in the batch.
        index: usize,
        /// Its site.
        site: String,
        /// The meter it names.
        meter: AccountId,
    },
    /// The batch does not say what the transaction says.
    #[error("the batch does not match the transaction: {0}")]
    Mismatch(String),
    /// The proof does not lead to the root.
    #[error("the reading is not in the batch with root {root}: {reason}")]
    NotIncluded {
        /// The root.
        root: String,
        /// What failed.
        reason: String,
    },
}

/// One interval's meter-signed readings of a feeder's sites: the raw data a head-end batch
/// commits to. At most [`READINGS_PER_TX_MAX`] readings, each site at most once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawBatch {
    /// The chain the readings are for.
    pub chain_id: ChainId,
    /// The feeder.
    pub feeder: FeederId,
    /// The interval.
    pub interval: Interval,
    /// The readings, in the order of the transaction.
    pub readings: Vec<SignedReading>,
}

impl RawBatch {
    /// Decodes an encoded batch, refusing trailing bytes, a wrong magic, more than
    /// [`READINGS_PER_TX_MAX`] readings or an empty batch.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BatchError> {
        if bytes.len() < RAW_BATCH_MAGIC.len()
            || (bytes[..8] != RAW_BATCH_MAGIC && bytes[..8] != RAW_BATCH_MAGIC_V1)
        {
            return Err(BatchError::Malformed(format!(
                "it does not start with {:?} (or version 1's {:?})",
                String::from_utf8_lossy(&RAW_BATCH_MAGIC),
                String::from_utf8_lossy(&RAW_BATCH_MAGIC_V1)
            )));
        }
        let batch = Self::decode(Bytes::copy_from_slice(bytes))
            .map_err(|e| BatchError::Malformed(e.to_string()))?;
        if batch.readings.is_empty() {
            return Err(BatchError::Malformed("it holds no reading".into()));
        }
        Ok(batch)
    }

    /// The leaves of the batch's tree, in order.
    pub fn leaves(&self) -> Vec<Hash> {
        self.readings
            .iter()
            .map(|r| r.leaf(&self.chain_id, &self.feeder, self.interval))
            .collect()
    }

    /// The batch's Merkle tree.
    pub fn tree(&self) -> bmt::Tree<Hash> {
        let leaves = self.leaves();
        let mut builder = bmt::Builder::<Sha256>::new(leaves.len());
        for leaf in &leaves {
            builder.add(leaf);
        }
        builder.build()
    }

    /// The batch's Merkle root: its address in the store and the root its transaction carries.
    pub fn root(&self) -> Hash {
        self.tree().root()
    }

    /// The transaction payload carrying this batch's energies and root.
    pub fn to_payload(&self) -> MeterBatch {
        MeterBatch {
            feeder: self.feeder.clone(),
            interval: self.interval,
            root: self.root(),
            readings: self
                .readings
                .iter()
                .map(|r| SiteEnergy {
                    site: r.site.clone(),
                    wh: r.wh,
                })
                .collect(),
        }
    }

    /// Checks every signed reading's meter signature, batch-verified; the error names the first
    /// bad reading. Unsigned readings (estimated, ST-1.6) have nothing to check. `rng` seeds
    /// the batch verifier's coefficients only.
    pub fn verify_signatures(&self, rng: &mut impl rand_core::CryptoRng) -> Result<(), BatchError> {
        self.verify_signatures_in(0..self.readings.len(), rng)
    }

    /// [`Self::verify_signatures`] for the readings in `range` only (to spread one batch over
    /// several threads); the error's index is the reading's position in the whole batch.
    pub fn verify_signatures_in(
        &self,
        range: std::ops::Range<usize>,
        rng: &mut impl rand_core::CryptoRng,
    ) -> Result<(), BatchError> {
        let start = range.start;
        // (position in the batch, reading, signature) of the signed readings.
        let readings: Vec<(usize, &SignedReading, &Signature)> = self.readings[range]
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.signature.as_ref().map(|s| (start + i, r, s)))
            .collect();
        let bad = |i: usize| {
            let (index, r, _) = readings[i];
            BatchError::BadSignature {
                index,
                site: r.site.to_string(),
                meter: r.meter,
            }
        };
        let mut keys = Vec::with_capacity(readings.len());
        let mut messages = Vec::with_capacity(readings.len());
        for (i, (_, r, _)) in readings.iter().enumerate() {
            keys.push(r.meter.to_public_key().ok_or_else(|| bad(i))?);
            messages.push(reading_message(
                &self.chain_id,
                &self.feeder,
                self.interval,
                &r.site,
                r.wh,
            ));
        }
        if readings.is_empty()
            || PublicKey::verify_batch(
                rng,
                &readings,
                |i, (_, _, signature)| commonware_cryptography::BatchEntry {
                    namespace: READING_NAMESPACE,
                    message: &messages[i],
                    public_key: &keys[i],
                    signature,
                },
                &commonware_parallel::Sequential,
            )
        {
            return Ok(());
        }
        // The batch failed: find the first culprit one by one, so the error is precise.
        let first = readings
            .iter()
            .enumerate()
            .position(|(i, (_, _, sig))| !keys[i].verify(READING_NAMESPACE, &messages[i], sig))
            .unwrap_or(0);
        Err(bad(first))
    }

    /// Splits one interval's signed readings into batches a transaction each can carry: at
    /// most [`READINGS_PER_TX_MAX`] readings and an encoded transaction within
    /// [`BULK_TX_BYTES_MAX`](crate::tx::BULK_TX_BYTES_MAX), in the given order.
    pub fn split(
        chain_id: &ChainId,
        feeder: &FeederId,
        interval: Interval,
        readings: Vec<SignedReading>,
    ) -> Vec<Self> {
        // A transaction's fixed part: chain id, sender, nonce, kind, feeder, interval, root,
        // list length and signature, with room to spare.
        let fixed = chain_id.encode_size() + feeder.encode_size() + 32 + 8 + 1 + 8 + 32 + 5 + 64;
        let budget = crate::tx::BULK_TX_BYTES_MAX - fixed - 64;
        let mut out = Vec::new();
        let mut current: Vec<SignedReading> = Vec::new();
        let mut size = 0;
        for r in readings {
            let item = r.site.encode_size() + 8;
            if !current.is_empty() && (current.len() == READINGS_PER_TX_MAX || size + item > budget)
            {
                out.push(std::mem::take(&mut current));
                size = 0;
            }
            size += item;
            current.push(r);
        }
        if !current.is_empty() {
            out.push(current);
        }
        out.into_iter()
            .map(|readings| Self {
                chain_id: chain_id.clone(),
                feeder: feeder.clone(),
                interval,
                readings,
            })
            .collect()
    }

    /// Checks that `tx` carries exactly this batch: its feeder, interval, root and every site's
    /// energy in order.
    pub fn check_payload(&self, tx: &MeterBatch) -> Result<(), BatchError> {
        self.check_energies(tx)?;
        let root = self.root();
        if tx.root != root {
            return Err(BatchError::Mismatch(format!(
                "root {} in the transaction, {} computed from the batch",
                hex::encode(tx.root),
                hex::encode(root)
            )));
        }
        Ok(())
    }

    /// [`Self::check_payload`] but for the root: for a batch already known to have the root the
    /// transaction names (one stored under it after the root was checked).
    pub fn check_energies(&self, tx: &MeterBatch) -> Result<(), BatchError> {
        let mismatch = |what: String| Err(BatchError::Mismatch(what));
        if tx.feeder != self.feeder {
            return mismatch(format!(
                "feeder {} in the transaction, {} in the batch",
                tx.feeder, self.feeder
            ));
        }
        if tx.interval != self.interval {
            return mismatch(format!(
                "interval {} in the transaction, {} in the batch",
                tx.interval.0, self.interval.0
            ));
        }
        if tx.readings.len() != self.readings.len() {
            return mismatch(format!(
                "{} readings in the transaction, {} in the batch",
                tx.readings.len(),
                self.readings.len()
            ));
        }
        for (i, (t, r)) in tx.readings.iter().zip(&self.readings).enumerate() {
            if t.site != r.site || t.wh != r.wh {
                return mismatch(format!(
                    "reading {i}: site {:?} {} Wh in the transaction, site {:?} {} Wh in the batch",
                    t.site.to_string(),
                    t.wh.0,
                    r.site.to_string(),
                    r.wh.0
                ));
            }
        }
        Ok(())
    }

    /// The proof that `site`'s reading is in this batch (`None`: the batch has no such site).
    pub fn proof(&self, site: &SiteId) -> Option<ReadingProof> {
        let position = self.readings.iter().position(|r| &r.site == site)?;
        let proof = self.tree().proof(position as u32).ok()?;
        Some(ReadingProof {
            chain_id: self.chain_id.clone(),
            feeder: self.feeder.clone(),
            interval: self.interval,
            reading: self.readings[position].clone(),
            position: position as u32,
            proof,
        })
    }
}

impl Write for RawBatch {
    fn write(&self, buf: &mut impl BufMut) {
        buf.put_slice(&RAW_BATCH_MAGIC);
        self.chain_id.write(buf);
        self.feeder.write(buf);
        self.interval.write(buf);
        write_len(self.readings.len(), buf);
        for r in &self.readings {
            r.write(buf);
        }
    }
}

impl EncodeSize for RawBatch {
    fn encode_size(&self) -> usize {
        RAW_BATCH_MAGIC.len()
            + self.chain_id.encode_size()
            + self.feeder.encode_size()
            + 8
            + len_size(self.readings.len())
            + self
                .readings
                .iter()
                .map(EncodeSize::encode_size)
                .sum::<usize>()
    }
}

impl Read for RawBatch {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        if buf.remaining() < RAW_BATCH_MAGIC.len() {
            return Err(CodecError::EndOfBuffer);
        }
        let mut magic = [0u8; 8];
        buf.copy_to_slice(&mut magic);
        let v1 = match magic {
            RAW_BATCH_MAGIC => false,
            RAW_BATCH_MAGIC_V1 => true,
            _ => return Err(CodecError::Invalid("RawBatch", "bad magic")),
        };
        let chain_id = ChainId::read(buf)?;
        let feeder = FeederId::read(buf)?;
        let interval = Interval::read(buf)?;
        let n = read_len(buf, READINGS_PER_TX_MAX)?;
        // Each reading is at least 2 + 8 + 32 + 1 bytes (2 + 8 + 32 + 64 in version 1): refuse
        // a count the bytes cannot hold before allocating for it.
        let least = if v1 { 106 } else { 43 };
        if buf.remaining() < n.saturating_mul(least) {
            return Err(CodecError::EndOfBuffer);
        }
        let mut readings = Vec::with_capacity(n);
        for _ in 0..n {
            readings.push(if v1 {
                SignedReading::read_v1(buf)?
            } else {
                SignedReading::read(buf)?
            });
        }
        Ok(Self {
            chain_id,
            feeder,
            interval,
            readings,
        })
    }
}

/// The proof that one meter-signed reading is in the batch with a given root: the reading, its
/// position and the BMT siblings. Checking it needs no trust in the head-end or the node that
/// served it: only the root on the chain and the meter's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadingProof {
    /// The chain.
    pub chain_id: ChainId,
    /// The feeder.
    pub feeder: FeederId,
    /// The interval.
    pub interval: Interval,
    /// The reading with its meter and signature.
    pub reading: SignedReading,
    /// Its position in the batch.
    pub position: u32,
    /// The tree's siblings on its path, and the leaf count.
    pub proof: bmt::Proof<Hash>,
}

impl ReadingProof {
    /// Checks the meter's signature (an unsigned, estimated reading has none: ST-1.6) and the
    /// inclusion under `root`.
    pub fn verify(&self, root: &Hash) -> Result<(), BatchError> {
        if !self.reading.estimated()
            && !self
                .reading
                .verify(&self.chain_id, &self.feeder, self.interval)
        {
            return Err(BatchError::BadSignature {
                index: self.position as usize,
                site: self.reading.site.to_string(),
                meter: self.reading.meter,
            });
        }
        let leaf = self
            .reading
            .leaf(&self.chain_id, &self.feeder, self.interval);
        self.proof
            .verify_element_inclusion::<Sha256>(&leaf, self.position, root)
            .map_err(|e| BatchError::NotIncluded {
                root: hex::encode(root),
                reason: e.to_string(),
            })
    }

    /// The siblings as hex, for JSON.
    pub fn siblings_hex(&self) -> Vec<String> {
        self.proof.siblings.iter().map(hex::encode).collect()
    }

    /// Rebuilds a proof from its JSON parts.
    pub fn from_parts(
        chain_id: ChainId,
        feeder: FeederId,
        interval: Interval,
        reading: SignedReading,
        position: u32,
        leaf_count: u32,
        siblings: &[String],
    ) -> Result<Self, BatchError> {
        if siblings.len() > PROOF_SIBLINGS_MAX {
            return Err(BatchError::Malformed(format!(
                "{} siblings: a proof has at most {PROOF_SIBLINGS_MAX}",
                siblings.len()
            )));
        }
        let siblings = siblings
            .iter()
            .map(|s| crate::ids::parse_hash(s).map_err(|e| BatchError::Malformed(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            chain_id,
            feeder,
            interval,
            reading,
            position,
            proof: bmt::Proof {
                leaf_count,
                siblings,
            },
        })
    }
}

/// Parses a signature from 128 hex characters.
pub fn parse_signature(s: &str) -> Result<Signature, BatchError> {
    let raw =
        crate::ids::parse_hex_array::<64>(s).map_err(|e| BatchError::Malformed(e.to_string()))?;
    Signature::decode(commonware_codec::Copying(&raw[..]))
        .map_err(|e| BatchError::Malformed(format!("signature: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn batch(n: usize, seed: u64) -> (RawBatch, Vec<PrivateKey>) {
        let chain = ChainId::new("test-chain").unwrap();
        let feeder = FeederId::new("f").unwrap();
        let keys: Vec<_> = (0..n)
            .map(|i| PrivateKey::from_seed(seed * 1000 + i as u64))
            .collect();
        let readings = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                SignedReading::sign(
                    &chain,
                    &feeder,
                    Interval(4),
                    SiteId::new(format!("s{i}")).unwrap(),
                    WattHours(i as i64 * 37 - 100),
                    k,
                )
            })
            .collect();
        (
            RawBatch {
                chain_id: chain,
                feeder,
                interval: Interval(4),
                readings,
            },
            keys,
        )
    }

    #[test]
    fn a_raw_batch_round_trips_and_its_signatures_verify() {
        let (b, _) = batch(5, 1);
        let bytes = b.encode();
        assert_eq!(bytes.len(), b.encode_size());
        assert_eq!(RawBatch::from_bytes(&bytes).unwrap(), b);
        assert!(RawBatch::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut junk = bytes.to_vec();
        junk.push(0);
        assert!(RawBatch::from_bytes(&junk).is_err(), "trailing bytes");
        assert!(RawBatch::from_bytes(b"bcte-mb2").is_err());
        b.verify_signatures(&mut rand::rng()).unwrap();
        b.verify_signatures_in(1..3, &mut rand::rng()).unwrap();
        let p = b.to_payload();
        b.check_payload(&p).unwrap();
    }

    #[test]
    fn an_unsigned_reading_is_estimated_provable_and_never_passes_for_a_signed_one() {
        let (mut b, _) = batch(4, 3);
        let signed = b.readings[1].clone();
        b.readings[1] = SignedReading::unsigned(signed.site.clone(), signed.wh, signed.meter);
        let bytes = b.encode();
        assert_eq!(bytes.len(), b.encode_size());
        let back = RawBatch::from_bytes(&bytes).unwrap();
        assert_eq!(back, b);
        assert!(back.readings[1].estimated() && !back.readings[0].estimated());
        // Nothing to check for the unsigned one; the signed ones still are.
        b.verify_signatures(&mut rand::rng()).unwrap();
        b.readings[2].wh = WattHours(b.readings[2].wh.0 + 1);
        assert!(matches!(
            b.verify_signatures(&mut rand::rng()),
            Err(BatchError::BadSignature { index: 2, .. })
        ));
        b.readings[2].wh = WattHours(b.readings[2].wh.0 - 1);
        // Its leaf is not the signed reading's, so the root tells them apart; its proof holds
        // without a signature, and fails for another energy.
        let (c, i) = (&b.chain_id, b.interval);
        assert_ne!(
            b.readings[1].leaf(c, &b.feeder, i),
            signed.leaf(c, &b.feeder, i)
        );
        let root = b.root();
        let p = b.proof(&signed.site).unwrap();
        assert!(p.reading.estimated());
        p.verify(&root).unwrap();
        let mut q = p.clone();
        q.reading.wh = WattHours(q.reading.wh.0 + 1);
        assert!(matches!(
            q.verify(&root),
            Err(BatchError::NotIncluded { .. })
        ));
        // A bad flag byte is refused.
        let mut bad = bytes.to_vec();
        let flag = bad.len() - b.readings[2].encode_size() - b.readings[3].encode_size() - 1;
        assert_eq!(bad[flag], 0, "the unsigned reading's flag");
        bad[flag] = 2;
        assert!(RawBatch::from_bytes(&bad).is_err());
    }

    #[test]
    fn a_version_1_batch_is_still_read() {
        let (b, _) = batch(3, 4);
        let mut v1 = RAW_BATCH_MAGIC_V1.to_vec();
        b.chain_id.write(&mut v1);
        b.feeder.write(&mut v1);
        b.interval.write(&mut v1);
        write_len(b.readings.len(), &mut v1);
        for r in &b.readings {
            r.site.write(&mut v1);
            r.wh.write(&mut v1);
            r.meter.write(&mut v1);
            r.signature.as_ref().unwrap().write(&mut v1);
        }
        let back = RawBatch::from_bytes(&v1).unwrap();
        assert_eq!(back, b);
        assert_eq!(
            back.root(),
            b.root(),
            "the version does not change the root"
        );
    }

    #[test]
    fn a_forged_reading_is_named() {
        let (mut b, keys) = batch(4, 2);
        // Reading 2 claims one more Wh than its meter signed.
        b.readings[2].wh = WattHours(b.readings[2].wh.0 + 1);
        match b.verify_signatures(&mut rand::rng()) {
            Err(BatchError::BadSignature { index: 2, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            b.verify_signatures_in(2..4, &mut rand::rng()),
            Err(BatchError::BadSignature { index: 2, .. })
        ));
        b.verify_signatures_in(0..2, &mut rand::rng()).unwrap();
        // Signed by another meter than the one it names.
        let (mut b, _) = batch(4, 2);
        b.readings[1].signature = SignedReading::sign(
            &b.chain_id,
            &b.feeder,
            b.interval,
            b.readings[1].site.clone(),
            b.readings[1].wh,
            &keys[0],
        )
        .signature;
        assert!(matches!(
            b.verify_signatures(&mut rand::rng()),
            Err(BatchError::BadSignature { index: 1, .. })
        ));
    }

    #[test]
    fn a_payload_that_differs_from_its_batch_is_refused() {
        let (b, _) = batch(3, 3);
        let mut p = b.to_payload();
        p.readings[1].wh = WattHours(5);
        let e = b.check_payload(&p).unwrap_err().to_string();
        assert!(e.contains("reading 1"), "{e}");
        let mut p = b.to_payload();
        p.root = Hash::from([0; 32]);
        assert!(
            b.check_payload(&p)
                .unwrap_err()
                .to_string()
                .contains("root")
        );
    }

    #[test]
    fn readings_split_by_count_and_by_transaction_size() {
        let chain = ChainId::new("c").unwrap();
        let feeder = FeederId::new("f").unwrap();
        let key = PrivateKey::from_seed(9);
        let sign = |name: String| {
            SignedReading::sign(
                &chain,
                &feeder,
                Interval(1),
                SiteId::new(name.as_str()).unwrap(),
                WattHours(1),
                &key,
            )
        };
        let short: Vec<_> = (0..READINGS_PER_TX_MAX + 5)
            .map(|i| sign(format!("{i}")))
            .collect();
        let parts = RawBatch::split(&chain, &feeder, Interval(1), short);
        assert_eq!(
            parts.iter().map(|b| b.readings.len()).collect::<Vec<_>>(),
            vec![READINGS_PER_TX_MAX, 5]
        );
        // 128-character site ids: 137 bytes a reading, so about 7,650 fit in 1 MiB.
        let long: Vec<_> = (0..10_000).map(|i| sign(format!("{i:0>128}"))).collect();
        let parts = RawBatch::split(&chain, &feeder, Interval(1), long);
        assert_eq!(parts.len(), 2);
        for p in &parts {
            let size = p.to_payload().encode_size() + 200;
            assert!(size <= crate::tx::BULK_TX_BYTES_MAX, "{size}");
        }
        assert_eq!(parts[0].readings.len() + parts[1].readings.len(), 10_000);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Every reading of a batch is provable against its root, and no altered reading,
        /// position or sibling is.
        #[test]
        fn every_reading_proves_and_no_altered_one_does(n in 1usize..40, seed in 0u64..1000, delta in 1i64..1000) {
            let (b, keys) = batch(n, seed);
            let root = b.root();
            for (i, r) in b.readings.iter().enumerate() {
                let p = b.proof(&r.site).unwrap();
                prop_assert!(p.verify(&root).is_ok());
                let mut q = p.clone();
                q.reading.wh = WattHours(q.reading.wh.0 + delta);
                prop_assert!(matches!(q.verify(&root), Err(BatchError::BadSignature { .. })), "altered energy");
                // Even re-signed by its own meter, an altered reading is not the one in the tree.
                q.reading = SignedReading::sign(&b.chain_id, &b.feeder, b.interval, r.site.clone(), q.reading.wh, &keys[i]);
                prop_assert!(matches!(q.verify(&root), Err(BatchError::NotIncluded { .. })), "re-signed altered energy");
                if n > 1 {
                    let mut q = p.clone();
                    q.position = (q.position + 1) % n as u32;
                    prop_assert!(q.verify(&root).is_err(), "moved position");
                    let mut q = p.clone();
                    if let Some(s) = q.proof.siblings.first_mut() {
                        let mut raw = [0u8; 32];
                        raw.copy_from_slice(s.as_ref());
                        raw[0] ^= 1;
                        *s = Hash::from(raw);
                        prop_assert!(q.verify(&root).is_err(), "altered sibling");
                    }
                }
                let mut q = p.clone();
                q.proof.leaf_count += 1;
                prop_assert!(q.verify(&root).is_err(), "altered leaf count");
            }
            let other = batch(n, seed + 1).0.root();
            let p = b.proof(&b.readings[0].site).unwrap();
            prop_assert!(p.verify(&other).is_err(), "another root");
        }
    }
}
