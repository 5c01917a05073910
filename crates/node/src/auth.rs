//! Authenticated reads (AC-6): challenges, read tokens, and who is asking.
//!
//! An account proves it holds its current key by signing a single-use challenge
//! ([`bcte_types::auth`]); the node answers with a short-lived bearer token, a JWT signed with
//! the node's own API key (`api.key` in its data directory, never the consensus key), one
//! algorithm (EdDSA), audience `<chain id>/<node API key>`. The token names the account only:
//! every request re-reads the account's roles and revocation at the tip ([`Viewer`]), so a
//! revocation takes effect on every node as soon as it is final (AC-6.2).
//!
//! This is the node's shell: it reads the wall clock (challenge and token lifetimes) and draws
//! randomness; the chain never sees either.

use crate::{
    api::{ApiError, ApiState},
    market_api::read,
};
use bcte_ledger::{
    AccountState, StateKey,
    identity::ParticipantState,
    market_state::{FeederState, SiteState},
};
use bcte_store::Store;
use bcte_types::{AccountId, ChainId, Role, Roles, auth::CHALLENGE_LEN};
use commonware_codec::Encode as _;
use commonware_cryptography::{Signer as _, ed25519};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// How long a challenge may be answered (AC-6.1).
pub const CHALLENGE_TTL: Duration = Duration::from_secs(60);

/// How long a read token is valid, seconds (AC-6.1).
pub const TOKEN_TTL_S: u64 = 300;

/// The most challenges a node holds unanswered; past it, new ones are refused (429) until old
/// ones expire, so a flood of challenges cannot exhaust the node's memory.
pub const CHALLENGES_MAX: usize = 65_536;

/// The PKCS#8 v1 DER prefix of an ed25519 private key (RFC 8410): the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A read token's claims.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The node that issued it (its API key, hex).
    pub iss: String,
    /// The account (hex).
    pub sub: String,
    /// `<chain id>/<node API key>`.
    pub aud: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
    /// A random id (hex), so no two tokens are equal.
    pub jti: String,
}

/// The node's issuer of read tokens and keeper of challenges.
pub struct Auth {
    chain_id: ChainId,
    issuer: String,
    audience: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    challenges: Mutex<HashMap<[u8; CHALLENGE_LEN], Instant>>,
}

/// The JWT keys of the node's API key: the encoding (private) and decoding (public) halves, and
/// the issuer name (the public key, hex). Every token the node issues (read tokens, OpenADR
/// tokens, each with its own audience) is signed with them.
pub(crate) fn jwt_keys(key: &ed25519::PrivateKey) -> (EncodingKey, DecodingKey, String) {
    let seed = key.encode();
    let mut der = ED25519_PKCS8_PREFIX.to_vec();
    der.extend_from_slice(&seed);
    let public = key.public_key();
    (
        EncodingKey::from_ed_der(&der),
        DecodingKey::from_ed_der(public.as_ref()),
        hex::encode(public.as_ref()),
    )
}

/// How the node checks its own tokens: EdDSA only, this issuer and audience, an expiry and a
/// subject required, no leeway.
pub(crate) fn jwt_validation(audience: &str, issuer: &str) -> Validation {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    validation.leeway = 0;
    validation
}

impl Auth {
    /// An issuer for `chain_id` signing with `key` (the node's API key).
    pub fn new(key: &ed25519::PrivateKey, chain_id: ChainId) -> Self {
        let (encoding, decoding, issuer) = jwt_keys(key);
        let audience = format!("{}/{issuer}", chain_id.as_str());
        let validation = jwt_validation(&audience, &issuer);
        Self {
            chain_id,
            encoding,
            decoding,
            issuer,
            audience,
            validation,
            challenges: Mutex::new(HashMap::new()),
        }
    }

    /// The chain the tokens are for.
    pub const fn chain_id(&self) -> &ChainId {
        &self.chain_id
    }

    /// The node's API key (hex): the tokens' issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The tokens' audience, `<chain id>/<node API key>`.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// A new single-use challenge, valid for [`CHALLENGE_TTL`] from `now`.
    pub fn challenge(&self, now: Instant) -> Result<[u8; CHALLENGE_LEN], ApiError> {
        let mut map = self.challenges.lock().expect("challenge map poisoned");
        if map.len() >= CHALLENGES_MAX {
            map.retain(|_, expires| *expires > now);
            if map.len() >= CHALLENGES_MAX {
                return Err(ApiError::too_many(
                    "too many unanswered challenges: try again in a minute",
                ));
            }
        }
        let mut c = [0u8; CHALLENGE_LEN];
        rand::rng().fill_bytes(&mut c);
        map.insert(c, now + CHALLENGE_TTL);
        Ok(c)
    }

    /// Spends `challenge`: true if it was issued and has not expired by `now`. Either way it can
    /// never be used again.
    pub fn take_challenge(&self, challenge: &[u8; CHALLENGE_LEN], now: Instant) -> bool {
        let mut map = self.challenges.lock().expect("challenge map poisoned");
        map.remove(challenge).is_some_and(|expires| expires > now)
    }

    /// A token for `account`, issued at `now_s` (seconds since the Unix epoch).
    pub fn issue(&self, account: &AccountId, now_s: u64) -> String {
        self.issue_for(account, now_s, now_s + TOKEN_TTL_S)
    }

    /// A token with any lifetime (tests of expiry).
    #[doc(hidden)]
    pub fn issue_for(&self, account: &AccountId, iat: u64, exp: u64) -> String {
        let mut jti = [0u8; 16];
        rand::rng().fill_bytes(&mut jti);
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: account.to_string(),
            aud: self.audience.clone(),
            iat,
            exp,
            jti: hex::encode(jti),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .expect("an ed25519 key signs any claims")
    }

    /// The account a token speaks for, or why it does not (401).
    pub fn verify(&self, token: &str) -> Result<AccountId, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                ApiError::unauthorized(match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired: get a new one",
                    ErrorKind::InvalidAudience => "the token is for another chain or node",
                    ErrorKind::InvalidIssuer => "the token was issued by another node",
                    ErrorKind::InvalidSignature => "the token's signature is not this node's",
                    ErrorKind::InvalidAlgorithm => "the token's algorithm is not EdDSA",
                    ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
                    _ => "the token is malformed",
                })
            })?;
        data.claims
            .sub
            .parse::<AccountId>()
            .map_err(|_| ApiError::unauthorized("the token is malformed"))
    }
}

/// Seconds since the Unix epoch by the node's wall clock.
pub fn unix_now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The wall clock, ms since the Unix epoch (the shell's: the core never reads a clock).
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `account`'s record at the tip of `st` (an unknown account reads as empty).
pub fn tip_account<S: Store>(
    st: &ApiState<S>,
    account: &AccountId,
) -> Result<AccountState, ApiError> {
    let tip = st.shared.executor.tip();
    Ok(st
        .shared
        .executor
        .account_at(&tip.hash, account)
        .map_err(ApiError::internal)?
        .unwrap_or_default())
}

/// 403 if `state`, `account`'s record, is revoked (AC-5.1).
pub fn refuse_revoked(account: &AccountId, state: &AccountState) -> Result<(), ApiError> {
    if state.revoked {
        return Err(ApiError::forbidden(format!(
            "account {account} is revoked (AC-5.1)"
        )));
    }
    Ok(())
}

/// Who is asking (AC-6.2): the public, or an account with its roles as of the tip and the
/// accounts it speaks for (itself and the other accounts of its participant).
#[derive(Debug, Clone, Default)]
pub struct Viewer {
    /// The authenticated account, if any.
    pub account: Option<AccountId>,
    /// Its roles at the tip.
    pub roles: Roles,
    /// It and its participant's accounts.
    pub accounts: Vec<AccountId>,
}

impl Viewer {
    /// The public: no credentials.
    pub fn public() -> Self {
        Self::default()
    }

    /// The viewer that `account` is at the tip of `st`; 403 when it is revoked.
    pub fn of<S: Store>(st: &ApiState<S>, account: AccountId) -> Result<Self, ApiError> {
        let tip = st.shared.executor.tip();
        let state = tip_account(st, &account)?;
        refuse_revoked(&account, &state)?;
        let mut accounts = vec![account];
        if let Some(p) = state.participant
            && let Some(p) = read::<S, ParticipantState>(st, tip.height, &StateKey::Participant(p))?
        {
            accounts.extend(p.accounts.into_iter().filter(|a| *a != account));
        }
        Ok(Self {
            account: Some(account),
            roles: state.roles,
            accounts,
        })
    }

    /// Whether it holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.has(role)
    }

    /// Auditors and regulators read everything, read-only (AC-6.3).
    pub fn reads_all(&self) -> bool {
        self.has(Role::Auditor) || self.has(Role::Regulator)
    }

    /// Whether it speaks for `account`.
    pub fn is(&self, account: &AccountId) -> bool {
        self.accounts.contains(account)
    }

    /// Whether it reads all of a feeder's data: the feeder's operator, an auditor or a
    /// regulator (AC-6.3).
    pub fn reads_feeder(&self, feeder: &FeederState) -> bool {
        self.reads_all() || (self.has(Role::Dso) && self.is(&feeder.operator))
    }

    /// Whether it reads a site's own data: the site's owner or its delegated aggregator (AC-6.3).
    pub fn owns_site(&self, site: &SiteState) -> bool {
        self.is(&site.owner) || site.aggregator.as_ref().is_some_and(|a| self.is(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(
            &ed25519::PrivateKey::from_seed(42),
            ChainId::new("bcte-test").unwrap(),
        )
    }

    fn account(seed: u64) -> AccountId {
        AccountId::from_public_key(&ed25519::PrivateKey::from_seed(seed).public_key())
    }

    #[test]
    fn a_token_names_its_account_until_it_expires() {
        let a = auth();
        let t = a.issue(&account(1), unix_now_s());
        assert_eq!(a.verify(&t).unwrap(), account(1));
        let old = a.issue_for(&account(1), 1_000, 1_300);
        assert!(a.verify(&old).unwrap_err().message().contains("expired"));
    }

    #[test]
    fn another_nodes_or_chains_token_or_a_forged_one_is_refused() {
        let a = auth();
        let other_node = Auth::new(
            &ed25519::PrivateKey::from_seed(43),
            ChainId::new("bcte-test").unwrap(),
        );
        let t = other_node.issue(&account(1), unix_now_s());
        assert_eq!(a.verify(&t).unwrap_err().status(), 401);
        // A token whose payload is altered no longer checks.
        let t = a.issue(&account(1), unix_now_s());
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        parts[1] = parts[1].chars().rev().collect();
        assert_eq!(a.verify(&parts.join(".")).unwrap_err().status(), 401);
        // An unsigned ("none") or HMAC token is refused.
        for header in ["eyJhbGciOiJub25lIn0", "eyJhbGciOiJIUzI1NiJ9"] {
            let forged = format!("{header}.{}.", t.split('.').nth(1).unwrap());
            assert_eq!(a.verify(&forged).unwrap_err().status(), 401);
        }
        for junk in ["", ".", "a.b.c", "x", &"A".repeat(10_000)] {
            assert_eq!(a.verify(junk).unwrap_err().status(), 401);
        }
    }

    #[test]
    fn a_challenge_is_spent_once_and_expires() {
        let a = auth();
        let now = Instant::now();
        let c = a.challenge(now).unwrap();
        assert!(a.take_challenge(&c, now));
        assert!(!a.take_challenge(&c, now), "single use");
        let c = a.challenge(now).unwrap();
        assert!(!a.take_challenge(&c, now + CHALLENGE_TTL), "expired");
        assert!(!a.take_challenge(&[0; CHALLENGE_LEN], now), "never issued");
    }
}
