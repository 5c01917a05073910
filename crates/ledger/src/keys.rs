//! State keys: what the ledger stores, each with one byte layout and one string form.
//!
//! | key                      | bytes                                  | value | string form |
//! |--------------------------|----------------------------------------|-------|-------------|
//! | an account               | `0x01 ‖ id:32`                         | [`AccountState`](crate::AccountState) | `account/<ACCOUNT>` |
//! | total supply             | `0x02`                                 | `Amount` | `supply` |
//! | chain head               | `0x03`                                 | [`Head`](crate::Head) | `head` |
//! | chain config             | `0x04`                                 | [`ChainConfig`](crate::ChainConfig) | `config` |
//! | the market clock         | `0x05`                                 | [`MarketClock`](crate::MarketClock) | `market-clock` |
//! | the feeders              | `0x06`                                 | [`FeederIndex`](crate::market_state::FeederIndex) | `feeders` |
//! | a feeder                 | `0x10 ‖ F`                             | [`FeederState`](crate::market_state::FeederState) | `feeder/<F>` |
//! | its schedule             | `0x11 ‖ F`                             | [`Schedule`](crate::market_state::Schedule) | `schedule/<F>` |
//! | its site table           | `0x12 ‖ F`                             | [`SiteTable`](crate::market_state::SiteTable) | `sites/<F>` |
//! | a site                   | `0x13 ‖ F ‖ S`                         | [`SiteState`](crate::market_state::SiteState) | `site/<F>/<S>` |
//! | an interval's book index | `0x14 ‖ F ‖ K:u64`                     | [`BookIndex`](crate::market_state::BookIndex) | `book/<F>/<K>` |
//! | a bucket of its bids     | `0x15 ‖ F ‖ K:u64 ‖ B:u16`             | [`BidBucket`](crate::market_state::BidBucket) | `bids/<F>/<K>/<B>` |
//! | an interval's result     | `0x16 ‖ F ‖ K:u64`                     | [`IntervalResult`](crate::market_state::IntervalResult) | `result/<F>/<K>` |
//! | an interval's upstream prices | `0x17 ‖ F ‖ K:u64`                | [`UpstreamPrice`](bcte_types::market::UpstreamPrice) | `upstream/<F>/<K>` |
//! | a bucket of its site results | `0x18 ‖ F ‖ K:u64 ‖ B:u16`         | [`ResultBucket`](crate::market_state::ResultBucket) | `results/<F>/<K>/<B>` |
//! | a feeder's meters        | `0x19 ‖ F`                             | [`MeterTable`](crate::settle_state::MeterTable) | `meters/<F>` |
//! | a bucket of an interval's readings | `0x1a ‖ F ‖ K:u64 ‖ B:u16`   | [`ReadingBucket`](crate::settle_state::ReadingBucket) | `readings/<F>/<K>/<B>` |
//! | an interval's settlement index | `0x1b ‖ F ‖ K:u64`               | [`SettleIndex`](crate::settle_state::SettleIndex) | `settling/<F>/<K>` |
//! | a bucket of its site settlements | `0x1c ‖ F ‖ K:u64 ‖ B:u16`     | [`SettledBucket`](crate::settle_state::SettledBucket) | `settled/<F>/<K>/<B>` |
//! | an interval's settlement totals | `0x1d ‖ F ‖ K:u64`              | [`IntervalSettlement`](crate::settle_state::IntervalSettlement) | `settlement/<F>/<K>` |
//! | a bucket of adjustments booked in an interval | `0x1e ‖ F ‖ K:u64 ‖ B:u16` | [`AdjustBucket`](crate::settle_state::AdjustBucket) | `adjustments/<F>/<K>/<B>` |
//! | owners that may be in debt | `0x1f ‖ F`                           | [`Debtors`](crate::settle_state::Debtors) | `debtors/<F>` |
//! | a feeder's P2P contracts  | `0x20 ‖ F`                            | [`ContractTable`](crate::contract::ContractTable) | `contracts/<F>` |
//! | an enrolled participant   | `0x07 ‖ id:16`                        | [`ParticipantState`](crate::identity::ParticipantState) | `participant/<UUID>` |
//!
//! `F` and `S` are a feeder and a site id, each `len:u8 ‖ bytes`; `K` an interval; `B` a book
//! bucket, a function of the site id ([`book_bucket`]). Ids hold no `/`, so the string forms
//! parse back unambiguously. The authenticated tree is keyed by `SHA-256(key bytes)`; the bytes
//! above are the preimage.
//!
//! Why buckets: an interval's bids and its sites' results are kept in [`BOOK_BUCKETS`] values
//! per interval, each holding the sites whose id hashes to it, rather than one value per site.
//! A clearing of 10,000 bids then writes 256 values, not ten thousand (the state root's and
//! the store's costs are per value written), a site's bucket is known from its id alone (so the keys
//! a bid touches follow from the transaction), and a site's proof of its result is the proof of
//! one bucket: its own result and those of the 1/256 of the sites that share it (about 40
//! results, 1.6 KB, on a feeder of 10,000 sites).

use bcte_types::{
    AccountId, FeederId, IdError, Interval, ParticipantId, SiteId, market::MarketIdError,
};
use core::{fmt, str::FromStr};
use thiserror::Error;

/// A key of the ledger state.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StateKey {
    /// An account's balance and nonce.
    Account(AccountId),
    /// The total supply of the settlement token.
    Supply,
    /// The height, time and parent of the last executed block.
    Head,
    /// The chain's fixed configuration (chain id, authority, validators).
    Config,
    /// The genesis market clock: genesis time and speed (absent: speed 1).
    MarketClock,
    /// Every feeder with its next gate closure.
    Feeders,
    /// A feeder's nodes and epoch.
    Feeder(FeederId),
    /// A feeder's schedule: the next interval to clear, configurations, modes, limit changes.
    Schedule(FeederId),
    /// A feeder's sites by index: node, priority and connection limit.
    Sites(FeederId),
    /// A site's owner, aggregator and the intervals it has bids for.
    Site(FeederId, SiteId),
    /// How many bids an interval has, and which of its buckets hold any.
    Book(FeederId, Interval),
    /// The bids of the sites of one bucket for an interval.
    Bids(FeederId, Interval, u16),
    /// An interval's result.
    Result(FeederId, Interval),
    /// Upstream prices the DSO posted for an interval.
    Upstream(FeederId, Interval),
    /// The results of the sites of one bucket for a cleared interval.
    Results(FeederId, Interval, u16),
    /// A feeder's meters.
    Meters(FeederId),
    /// The readings of the sites of one bucket for an interval.
    Readings(FeederId, Interval, u16),
    /// An interval's settlement index.
    Settling(FeederId, Interval),
    /// The settlements of the sites of one bucket for a settled interval.
    Settled(FeederId, Interval, u16),
    /// An interval's settlement totals.
    Settlement(FeederId, Interval),
    /// The adjustments booked in an interval for the sites of one bucket.
    Adjustments(FeederId, Interval, u16),
    /// The owners that may be in debt to a feeder's market account.
    Debtors(FeederId),
    /// A feeder's peer-to-peer contracts.
    Contracts(FeederId),
    /// A feeder's flexibility requests and their offers.
    Flex(FeederId),
    /// An enrolled participant: its commitment and accounts (AC-2).
    Participant(ParticipantId),
}

/// Buckets of an interval's bids and results (see the [module documentation](self)).
pub const BOOK_BUCKETS: u16 = 256;

/// The signing-free domain of the bucket hash. Changing it or [`BOOK_BUCKETS`] moves every site
/// to another bucket: a breaking change of the state layout.
const BUCKET_DOMAIN: &[u8] = b"bcte/book/v1";

/// The bucket of a site: the first two bytes of `SHA-256(domain ‖ site id)`, modulo
/// [`BOOK_BUCKETS`].
pub fn book_bucket(site: &SiteId) -> u16 {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(BUCKET_DOMAIN)
        .chain_update(site.as_str().as_bytes())
        .finalize();
    u16::from_be_bytes([digest[0], digest[1]]) % BOOK_BUCKETS
}

/// Why bytes or a string are not a state key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum KeyError {
    /// Unknown tag byte or bad length.
    #[error("not a state key encoding")]
    Bytes,
    /// Unknown string form.
    #[error(
        "unknown state key {0:?}: expected account/<ACCOUNT>, supply, head, config, \
         market-clock, feeders, feeder/<F>, schedule/<F>, sites/<F>, site/<F>/<S>, \
         book/<F>/<K>, bids/<F>/<K>/<B>, result/<F>/<K>, upstream/<F>/<K>, \
         results/<F>/<K>/<B>, meters/<F>, readings/<F>/<K>/<B>, settling/<F>/<K>, \
         settled/<F>/<K>/<B>, settlement/<F>/<K>, adjustments/<F>/<K>/<B>, debtors/<F>, \
         contracts/<F>, flex/<F> or participant/<UUID>"
    )]
    Unknown(String),
    /// The account part is not an account.
    #[error("bad account in state key: {0}")]
    Account(#[from] IdError),
    /// A feeder or site part is not an id.
    #[error("bad id in state key: {0}")]
    Id(#[from] MarketIdError),
    /// The interval part is not a number.
    #[error("bad interval in state key: {0:?} is not a non-negative integer")]
    Interval(String),
    /// The bucket part is not a bucket.
    #[error("bad bucket in state key: {0:?} is not a bucket from 0 to 255")]
    Bucket(String),
}

impl StateKey {
    const TAG_ACCOUNT: u8 = 0x01;
    const TAG_SUPPLY: u8 = 0x02;
    const TAG_HEAD: u8 = 0x03;
    const TAG_CONFIG: u8 = 0x04;
    const TAG_MARKET_CLOCK: u8 = 0x05;
    const TAG_FEEDERS: u8 = 0x06;
    const TAG_PARTICIPANT: u8 = 0x07;
    const TAG_FEEDER: u8 = 0x10;
    const TAG_SCHEDULE: u8 = 0x11;
    const TAG_SITES: u8 = 0x12;
    const TAG_SITE: u8 = 0x13;
    const TAG_BOOK: u8 = 0x14;
    const TAG_BIDS: u8 = 0x15;
    const TAG_RESULT: u8 = 0x16;
    const TAG_UPSTREAM: u8 = 0x17;
    const TAG_RESULTS: u8 = 0x18;
    const TAG_METERS: u8 = 0x19;
    const TAG_READINGS: u8 = 0x1a;
    const TAG_SETTLING: u8 = 0x1b;
    const TAG_SETTLED: u8 = 0x1c;
    const TAG_SETTLEMENT: u8 = 0x1d;
    const TAG_ADJUSTMENTS: u8 = 0x1e;
    const TAG_DEBTORS: u8 = 0x1f;
    const TAG_CONTRACTS: u8 = 0x20;
    const TAG_FLEX: u8 = 0x21;

    /// The key's bytes (the preimage of its tree key).
    pub fn to_bytes(&self) -> Vec<u8> {
        fn id(out: &mut Vec<u8>, s: &str) {
            out.push(s.len() as u8);
            out.extend_from_slice(s.as_bytes());
        }
        let mut v = Vec::with_capacity(48);
        match self {
            Self::Account(a) => {
                v.push(Self::TAG_ACCOUNT);
                v.extend_from_slice(a.as_bytes());
            }
            Self::Supply => v.push(Self::TAG_SUPPLY),
            Self::Head => v.push(Self::TAG_HEAD),
            Self::Config => v.push(Self::TAG_CONFIG),
            Self::MarketClock => v.push(Self::TAG_MARKET_CLOCK),
            Self::Feeders => v.push(Self::TAG_FEEDERS),
            Self::Participant(p) => {
                v.push(Self::TAG_PARTICIPANT);
                v.extend_from_slice(&p.0);
            }
            Self::Feeder(f)
            | Self::Schedule(f)
            | Self::Sites(f)
            | Self::Meters(f)
            | Self::Debtors(f)
            | Self::Contracts(f)
            | Self::Flex(f) => {
                v.push(match self {
                    Self::Feeder(_) => Self::TAG_FEEDER,
                    Self::Schedule(_) => Self::TAG_SCHEDULE,
                    Self::Meters(_) => Self::TAG_METERS,
                    Self::Debtors(_) => Self::TAG_DEBTORS,
                    Self::Contracts(_) => Self::TAG_CONTRACTS,
                    Self::Flex(_) => Self::TAG_FLEX,
                    _ => Self::TAG_SITES,
                });
                id(&mut v, f.as_str());
            }
            Self::Site(f, s) => {
                v.push(Self::TAG_SITE);
                id(&mut v, f.as_str());
                id(&mut v, s.as_str());
            }
            Self::Book(f, k)
            | Self::Result(f, k)
            | Self::Upstream(f, k)
            | Self::Settling(f, k)
            | Self::Settlement(f, k) => {
                v.push(match self {
                    Self::Book(..) => Self::TAG_BOOK,
                    Self::Result(..) => Self::TAG_RESULT,
                    Self::Settling(..) => Self::TAG_SETTLING,
                    Self::Settlement(..) => Self::TAG_SETTLEMENT,
                    _ => Self::TAG_UPSTREAM,
                });
                id(&mut v, f.as_str());
                v.extend_from_slice(&k.0.to_be_bytes());
            }
            Self::Bids(f, k, b)
            | Self::Results(f, k, b)
            | Self::Readings(f, k, b)
            | Self::Settled(f, k, b)
            | Self::Adjustments(f, k, b) => {
                v.push(match self {
                    Self::Bids(..) => Self::TAG_BIDS,
                    Self::Results(..) => Self::TAG_RESULTS,
                    Self::Readings(..) => Self::TAG_READINGS,
                    Self::Settled(..) => Self::TAG_SETTLED,
                    _ => Self::TAG_ADJUSTMENTS,
                });
                id(&mut v, f.as_str());
                v.extend_from_slice(&k.0.to_be_bytes());
                v.extend_from_slice(&b.to_be_bytes());
            }
        }
        v
    }

    /// Parses key bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        struct Cursor<'a>(&'a [u8]);
        impl Cursor<'_> {
            fn id(&mut self) -> Result<String, KeyError> {
                let (&len, rest) = self.0.split_first().ok_or(KeyError::Bytes)?;
                let len = usize::from(len);
                if rest.len() < len {
                    return Err(KeyError::Bytes);
                }
                let (s, rest) = rest.split_at(len);
                self.0 = rest;
                String::from_utf8(s.to_vec()).map_err(|_| KeyError::Bytes)
            }
            fn bucket(&mut self) -> Result<u16, KeyError> {
                if self.0.len() < 2 {
                    return Err(KeyError::Bytes);
                }
                let (b, rest) = self.0.split_at(2);
                self.0 = rest;
                let b = u16::from_be_bytes([b[0], b[1]]);
                if b >= BOOK_BUCKETS {
                    return Err(KeyError::Bytes);
                }
                Ok(b)
            }
            fn interval(&mut self) -> Result<Interval, KeyError> {
                if self.0.len() < 8 {
                    return Err(KeyError::Bytes);
                }
                let (k, rest) = self.0.split_at(8);
                self.0 = rest;
                Ok(Interval(u64::from_be_bytes(k.try_into().expect("8 bytes"))))
            }
        }
        let (&tag, rest) = bytes.split_first().ok_or(KeyError::Bytes)?;
        let mut c = Cursor(rest);
        let feeder = |c: &mut Cursor<'_>| -> Result<FeederId, KeyError> {
            FeederId::new(c.id()?).map_err(|_| KeyError::Bytes)
        };
        let site = |c: &mut Cursor<'_>| -> Result<SiteId, KeyError> {
            SiteId::new(c.id()?).map_err(|_| KeyError::Bytes)
        };
        let interval_of = |c: &mut Cursor<'_>| -> Result<(FeederId, Interval), KeyError> {
            let f = feeder(c)?;
            Ok((f, c.interval()?))
        };
        let key = match tag {
            Self::TAG_ACCOUNT if rest.len() == 32 => {
                let mut id = [0u8; 32];
                id.copy_from_slice(rest);
                c.0 = &[];
                Self::Account(AccountId(id))
            }
            Self::TAG_PARTICIPANT if rest.len() == 16 => {
                let mut id = [0u8; 16];
                id.copy_from_slice(rest);
                c.0 = &[];
                Self::Participant(ParticipantId(id))
            }
            Self::TAG_SUPPLY => Self::Supply,
            Self::TAG_HEAD => Self::Head,
            Self::TAG_CONFIG => Self::Config,
            Self::TAG_MARKET_CLOCK => Self::MarketClock,
            Self::TAG_FEEDERS => Self::Feeders,
            Self::TAG_FEEDER => Self::Feeder(feeder(&mut c)?),
            Self::TAG_SCHEDULE => Self::Schedule(feeder(&mut c)?),
            Self::TAG_SITES => Self::Sites(feeder(&mut c)?),
            Self::TAG_SITE => {
                let f = feeder(&mut c)?;
                Self::Site(f, site(&mut c)?)
            }
            Self::TAG_BOOK => {
                let (f, k) = interval_of(&mut c)?;
                Self::Book(f, k)
            }
            Self::TAG_RESULT => {
                let (f, k) = interval_of(&mut c)?;
                Self::Result(f, k)
            }
            Self::TAG_UPSTREAM => {
                let (f, k) = interval_of(&mut c)?;
                Self::Upstream(f, k)
            }
            Self::TAG_BIDS => {
                let (f, k) = interval_of(&mut c)?;
                Self::Bids(f, k, c.bucket()?)
            }
            Self::TAG_RESULTS => {
                let (f, k) = interval_of(&mut c)?;
                Self::Results(f, k, c.bucket()?)
            }
            Self::TAG_METERS => Self::Meters(feeder(&mut c)?),
            Self::TAG_DEBTORS => Self::Debtors(feeder(&mut c)?),
            Self::TAG_CONTRACTS => Self::Contracts(feeder(&mut c)?),
            Self::TAG_FLEX => Self::Flex(feeder(&mut c)?),

            Self::TAG_SETTLING => {
                let (f, k) = interval_of(&mut c)?;
                Self::Settling(f, k)
            }
            Self::TAG_SETTLEMENT => {
                let (f, k) = interval_of(&mut c)?;
                Self::Settlement(f, k)
            }
            Self::TAG_READINGS => {
                let (f, k) = interval_of(&mut c)?;
                Self::Readings(f, k, c.bucket()?)
            }
            Self::TAG_SETTLED => {
                let (f, k) = interval_of(&mut c)?;
                Self::Settled(f, k, c.bucket()?)
            }
            Self::TAG_ADJUSTMENTS => {
                let (f, k) = interval_of(&mut c)?;
                Self::Adjustments(f, k, c.bucket()?)
            }
            _ => return Err(KeyError::Bytes),
        };
        if !c.0.is_empty() {
            return Err(KeyError::Bytes);
        }
        Ok(key)
    }

    /// The key of the authenticated tree: SHA-256 of the key bytes.
    pub fn tree_key(&self) -> jmt::KeyHash {
        jmt::KeyHash::with::<sha2::Sha256>(self.to_bytes())
    }

    /// The feeder the key belongs to, if it is a market key of one.
    pub fn feeder(&self) -> Option<&FeederId> {
        match self {
            Self::Feeder(f)
            | Self::Schedule(f)
            | Self::Sites(f)
            | Self::Site(f, _)
            | Self::Book(f, _)
            | Self::Bids(f, _, _)
            | Self::Result(f, _)
            | Self::Upstream(f, _)
            | Self::Results(f, _, _)
            | Self::Meters(f)
            | Self::Readings(f, _, _)
            | Self::Settling(f, _)
            | Self::Settled(f, _, _)
            | Self::Settlement(f, _)
            | Self::Adjustments(f, _, _)
            | Self::Debtors(f)
            | Self::Contracts(f)
            | Self::Flex(f) => Some(f),
            _ => None,
        }
    }
}

impl fmt::Display for StateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Account(id) => write!(f, "account/{id}"),
            Self::Supply => f.write_str("supply"),
            Self::Head => f.write_str("head"),
            Self::Config => f.write_str("config"),
            Self::MarketClock => f.write_str("market-clock"),
            Self::Feeders => f.write_str("feeders"),
            Self::Feeder(x) => write!(f, "feeder/{x}"),
            Self::Schedule(x) => write!(f, "schedule/{x}"),
            Self::Sites(x) => write!(f, "sites/{x}"),
            Self::Site(x, s) => write!(f, "site/{x}/{s}"),
            Self::Book(x, k) => write!(f, "book/{x}/{k}"),
            Self::Bids(x, k, b) => write!(f, "bids/{x}/{k}/{b}"),
            Self::Result(x, k) => write!(f, "result/{x}/{k}"),
            Self::Upstream(x, k) => write!(f, "upstream/{x}/{k}"),
            Self::Results(x, k, b) => write!(f, "results/{x}/{k}/{b}"),
            Self::Meters(x) => write!(f, "meters/{x}"),
            Self::Readings(x, k, b) => write!(f, "readings/{x}/{k}/{b}"),
            Self::Settling(x, k) => write!(f, "settling/{x}/{k}"),
            Self::Settled(x, k, b) => write!(f, "settled/{x}/{k}/{b}"),
            Self::Settlement(x, k) => write!(f, "settlement/{x}/{k}"),
            Self::Adjustments(x, k, b) => write!(f, "adjustments/{x}/{k}/{b}"),
            Self::Debtors(x) => write!(f, "debtors/{x}"),
            Self::Contracts(x) => write!(f, "contracts/{x}"),
            Self::Flex(x) => write!(f, "flex/{x}"),
            Self::Participant(p) => write!(f, "participant/{p}"),
        }
    }
}

impl FromStr for StateKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let s = s.trim();
        let unknown = || KeyError::Unknown(s.chars().take(80).collect());
        // Numbers in canonical decimal only ("7", not "07" or "+7"), so a key has one string form.
        let canonical = |n: &str| {
            !n.is_empty()
                && n.bytes().all(|c| c.is_ascii_digit())
                && (n == "0" || !n.starts_with('0'))
        };
        let interval = |k: &str| -> Result<Interval, KeyError> {
            k.parse::<u64>()
                .ok()
                .filter(|_| canonical(k))
                .map(Interval)
                .ok_or_else(|| KeyError::Interval(k.chars().take(24).collect()))
        };
        let bucket = |b: &str| -> Result<u16, KeyError> {
            b.parse::<u16>()
                .ok()
                .filter(|&n| canonical(b) && n < BOOK_BUCKETS)
                .ok_or_else(|| KeyError::Bucket(b.chars().take(24).collect()))
        };
        let parts: Vec<&str> = s.split('/').collect();
        Ok(match parts.as_slice() {
            ["supply"] => Self::Supply,
            ["head"] => Self::Head,
            ["config"] => Self::Config,
            ["market-clock"] => Self::MarketClock,
            ["feeders"] => Self::Feeders,
            ["account", id] => Self::Account(id.parse()?),
            ["participant", id] => Self::Participant(id.parse()?),
            ["feeder", f] => Self::Feeder(FeederId::new(*f)?),
            ["schedule", f] => Self::Schedule(FeederId::new(*f)?),
            ["sites", f] => Self::Sites(FeederId::new(*f)?),
            ["site", f, x] => Self::Site(FeederId::new(*f)?, SiteId::new(*x)?),
            ["book", f, k] => Self::Book(FeederId::new(*f)?, interval(k)?),
            ["bids", f, k, b] => Self::Bids(FeederId::new(*f)?, interval(k)?, bucket(b)?),
            ["result", f, k] => Self::Result(FeederId::new(*f)?, interval(k)?),
            ["upstream", f, k] => Self::Upstream(FeederId::new(*f)?, interval(k)?),
            ["results", f, k, b] => Self::Results(FeederId::new(*f)?, interval(k)?, bucket(b)?),
            ["meters", f] => Self::Meters(FeederId::new(*f)?),
            ["debtors", f] => Self::Debtors(FeederId::new(*f)?),
            ["contracts", f] => Self::Contracts(FeederId::new(*f)?),
            ["flex", f] => Self::Flex(FeederId::new(*f)?),
            ["readings", f, k, b] => Self::Readings(FeederId::new(*f)?, interval(k)?, bucket(b)?),
            ["settling", f, k] => Self::Settling(FeederId::new(*f)?, interval(k)?),
            ["settled", f, k, b] => Self::Settled(FeederId::new(*f)?, interval(k)?, bucket(b)?),
            ["settlement", f, k] => Self::Settlement(FeederId::new(*f)?, interval(k)?),
            ["adjustments", f, k, b] => {
                Self::Adjustments(FeederId::new(*f)?, interval(k)?, bucket(b)?)
            }
            _ => return Err(unknown()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_cryptography::{Signer, ed25519::PrivateKey};

    fn all() -> Vec<StateKey> {
        let id = AccountId::from_public_key(&PrivateKey::from_seed(1).public_key());
        let f = FeederId::new("LV1.101").unwrap();
        let s = SiteId::new("LV1.101 Load 7").unwrap();
        let k = Interval(96 * 365);
        vec![
            StateKey::Account(id),
            StateKey::Supply,
            StateKey::Head,
            StateKey::Config,
            StateKey::MarketClock,
            StateKey::Feeders,
            StateKey::Feeder(f.clone()),
            StateKey::Schedule(f.clone()),
            StateKey::Sites(f.clone()),
            StateKey::Site(f.clone(), s.clone()),
            StateKey::Book(f.clone(), k),
            StateKey::Bids(f.clone(), k, book_bucket(&s)),
            StateKey::Result(f.clone(), k),
            StateKey::Upstream(f.clone(), k),
            StateKey::Results(f.clone(), k, BOOK_BUCKETS - 1),
            StateKey::Meters(f.clone()),
            StateKey::Readings(f.clone(), k, 3),
            StateKey::Settling(f.clone(), k),
            StateKey::Settled(f.clone(), k, 0),
            StateKey::Settlement(f.clone(), k),
            StateKey::Adjustments(f.clone(), k, 77),
            StateKey::Debtors(f.clone()),
            StateKey::Contracts(f.clone()),
            StateKey::Flex(f),
            StateKey::Participant(ParticipantId([0x5a; 16])),
        ]
    }

    #[test]
    fn keys_round_trip_through_bytes_and_strings() {
        for key in all() {
            assert_eq!(StateKey::from_bytes(&key.to_bytes()), Ok(key.clone()));
            assert_eq!(
                key.to_string().parse::<StateKey>(),
                Ok(key.clone()),
                "{key}"
            );
        }
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        assert_eq!(StateKey::from_bytes(&[]), Err(KeyError::Bytes));
        assert_eq!(StateKey::from_bytes(&[1, 2, 3]), Err(KeyError::Bytes));
        assert_eq!(StateKey::from_bytes(&[0x10, 3, b'a']), Err(KeyError::Bytes));
        assert_eq!(StateKey::from_bytes(&[0x10, 1, b'/']), Err(KeyError::Bytes));
        let mut trailing = StateKey::Feeder(FeederId::new("f").unwrap()).to_bytes();
        trailing.push(0);
        assert_eq!(StateKey::from_bytes(&trailing), Err(KeyError::Bytes));
        assert!(matches!(
            "balance".parse::<StateKey>(),
            Err(KeyError::Unknown(_))
        ));
        assert!(matches!(
            "account/xyz".parse::<StateKey>(),
            Err(KeyError::Account(_))
        ));
        assert!(matches!(
            "result/f/-1".parse::<StateKey>(),
            Err(KeyError::Interval(_))
        ));
        assert!(matches!(
            "result/f/07".parse::<StateKey>(),
            Err(KeyError::Interval(_))
        ));
        assert!(matches!(
            "site/f/#x".parse::<StateKey>(),
            Err(KeyError::Id(_))
        ));
        for k in ["result/f/+7", "result/f/", "result/f/7x"] {
            assert!(
                matches!(k.parse::<StateKey>(), Err(KeyError::Interval(_))),
                "{k}"
            );
        }
        for k in ["bids/f/1/256", "bids/f/1/+3", "bids/f/1/03", "bids/f/1/"] {
            assert!(
                matches!(k.parse::<StateKey>(), Err(KeyError::Bucket(_))),
                "{k}"
            );
        }
        assert_eq!(
            "results/f/0/0".parse::<StateKey>(),
            Ok(StateKey::Results(
                FeederId::new("f").unwrap(),
                Interval(0),
                0
            ))
        );
        let mut bad_bucket = StateKey::Bids(FeederId::new("f").unwrap(), Interval(1), 3).to_bytes();
        let n = bad_bucket.len();
        bad_bucket[n - 2..].copy_from_slice(&BOOK_BUCKETS.to_be_bytes());
        assert_eq!(StateKey::from_bytes(&bad_bucket), Err(KeyError::Bytes));
    }

    #[test]
    fn buckets_spread_sites_and_are_pinned() {
        let bucket = |s: &str| book_bucket(&SiteId::new(s).unwrap());
        // Pinned, computed with Python's hashlib: changing the hash moves every site.
        assert_eq!(bucket("house-7"), 112);
        assert_eq!(bucket("site-0"), 185);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..1_000 {
            seen.insert(bucket(&format!("site-{i}")));
        }
        assert!(
            seen.len() > 240,
            "1,000 sites fill nearly all of the 256 buckets: {}",
            seen.len()
        );
        assert!(seen.iter().all(|&b| b < BOOK_BUCKETS));
    }
}
