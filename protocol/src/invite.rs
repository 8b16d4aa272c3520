//! Invitations: instead of pasting a 52-character actor id, the patient gives someone a
//! one-time, expiring link (or QR code) for a chosen access; the invitee accepts it over the
//! network, proving they hold the link's secret and sending who they are; the patient sees
//! who accepted (verified or not) and confirms; only then is the grant written.
//!
//! - The link carries an [`Invitation`]: the record, a 32-byte secret, how to reach the
//!   record's home host, when it expires. From the secret both sides derive the invitation
//!   key ([`Invitation::key`]); its public half is the invitation's id.
//! - The patient registers an [`Offer`] with the home host: the id (never the secret), the
//!   expiry and the [`Terms`] offered. The host keeps offers in an [`InvitationBox`].
//! - The invitee sends a [`SignedAcceptance`]: their actor id, profile and the record,
//!   signed with the invitation key (so only a holder of the link can make one), bound to a
//!   time. The host checks it and marks the offer used: a second acceptance, or one after
//!   the expiry, opens nothing.
//! - The patient fetches the box, sees each acceptance with the invitee's profile and
//!   attestations, and confirms (a grant of the offered terms to the invitee) or declines.
//!
//! Nothing here does I/O; time and randomness come in as arguments.

use serde::{Deserialize, Serialize};

use crate::access::{Grant, Level, Requirement, Scope};
use crate::entry::{check_profile, from_cbor_canonical, to_cbor, EntryError, Profile, Timestamp};
use crate::ids::{ActorId, RecordId, Sig};
use crate::keys::{self, Domain, Keypair};

/// Invitation format version.
pub const INVITATION_VERSION: u8 = 1;
/// The scheme and path every invitation link starts with.
pub const LINK_PREFIX: &str = "cophr://invite/";
/// Longest invitation link accepted.
pub const MAX_LINK_LEN: usize = 4096;
/// Longest an invitation may stay open.
pub const MAX_INVITATION_MS: u64 = 30 * 24 * 3600 * 1000;
/// Most open or accepted invitations a host keeps per record.
pub const MAX_OFFERS: usize = 64;
/// Largest encoded invitation box a host keeps per record.
pub const MAX_BOX_BYTES: usize = 512 * 1024;
/// Largest encoded offer or acceptance accepted.
pub const MAX_ACCEPTANCE_BYTES: usize = 48 * 1024;
/// How far an acceptance's time may be from the host's.
pub const ACCEPT_WINDOW_MS: u64 = 5 * 60 * 1000;
/// Most addresses an invitation names.
pub const MAX_ADDRS: usize = 8;
/// Longest address or label.
pub const MAX_TEXT: usize = 512;

/// The access an invitation offers: a grant's terms, without the grantee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    /// The access level.
    pub level: Level,
    /// The categories.
    pub scope: Scope,
    /// Valid from, if limited.
    pub not_before: Option<Timestamp>,
    /// Valid until, if limited.
    pub until: Option<Timestamp>,
    /// May read the audit trail.
    pub audit: bool,
    /// May delegate.
    pub delegate: bool,
    /// The grant's label ("Pharmacy").
    pub label: Option<String>,
    /// An identity requirement on the grantee.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires: Option<Requirement>,
}

impl Terms {
    /// The grant these terms give `grantee`.
    pub fn grant(&self, grantee: ActorId) -> Grant {
        Grant {
            grantee,
            level: self.level,
            scope: self.scope.clone(),
            not_before: self.not_before,
            until: self.until,
            audit: self.audit,
            delegate: self.delegate,
            label: self.label.clone(),
            requires: self.requires.clone(),
        }
    }
}

/// What the link carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// Format version.
    pub v: u8,
    /// The record.
    pub record: RecordId,
    /// The secret the invitation key is derived from.
    #[serde(with = "serde_bytes")]
    pub secret: [u8; 32],
    /// The home host's transport identity (libp2p peer id bytes).
    #[serde(with = "serde_bytes")]
    pub host: Vec<u8>,
    /// Its addresses (multiaddr text).
    pub addrs: Vec<String>,
    /// Until when it may be accepted.
    pub expires: Timestamp,
    /// Who invites, as shown to the invitee ("George Jones").
    pub from: String,
    /// What for ("Pharmacy: medications, allergies").
    pub label: Option<String>,
}

/// An invitation's id: the public half of the key derived from its secret.
pub type InvitationId = ActorId;

/// How an invitation id is shown to people: `i-` and the key's base32 (so it is not taken
/// for an actor id).
pub fn display_id(id: &InvitationId) -> String {
    let text = id.to_string();
    format!("i-{}", text.strip_prefix("a-").unwrap_or(&text))
}

/// Why an invitation, offer or acceptance is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    /// The link is not an invitation link, or is malformed.
    #[error("not a cophr invitation link: {0}")]
    Link(String),
    /// Malformed offer, acceptance or box.
    #[error("malformed: {0}")]
    Malformed(String),
    /// A text field is empty or too long, or too many addresses.
    #[error("invitation field `{0}` is empty, too long or too many")]
    Text(&'static str),
    /// The invitation has expired.
    #[error("the invitation has expired")]
    Expired,
    /// The invitation was already accepted.
    #[error("the invitation was already used")]
    Used,
    /// No such invitation is open for the record.
    #[error("no such invitation is open: it was never made, or was already used or withdrawn")]
    Unknown,
    /// The acceptance is not signed with the invitation's key (the secret is not held).
    #[error("the acceptance is not signed with the invitation's key")]
    Forged,
    /// The acceptance is too old or from the future.
    #[error("the acceptance's time is outside the accepted window")]
    Stale,
    /// An expiry in the past or further ahead than [`MAX_INVITATION_MS`].
    #[error("an invitation expires within 30 days")]
    Period,
    /// Too many invitations open for the record.
    #[error("too many invitations are open for this record ({MAX_OFFERS}): close some")]
    Full,
    /// The invitee's profile is invalid.
    #[error("invitee profile: {0}")]
    Profile(String),
}

impl From<EntryError> for InviteError {
    fn from(e: EntryError) -> Self {
        InviteError::Malformed(e.to_string())
    }
}

fn text(field: &'static str, s: &str) -> Result<(), InviteError> {
    if s.trim().is_empty() || s.len() > MAX_TEXT {
        return Err(InviteError::Text(field));
    }
    Ok(())
}

fn check_terms(t: &Terms) -> Result<(), InviteError> {
    if let Some(l) = &t.label {
        text("label", l)?;
    }
    if let (Some(a), Some(b)) = (t.not_before, t.until) {
        if a > b {
            return Err(InviteError::Text("period"));
        }
    }
    if let Some(r) = &t.requires {
        if r.issuers.is_empty()
            || r.issuers.len() > crate::access::MAX_REQUIREMENT_ISSUERS
            || r.issuers.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(InviteError::Text("requires.issuers"));
        }
    }
    Ok(())
}

impl Invitation {
    /// A new invitation to `record`, reachable at `host`/`addrs`, open until `expires`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        record: RecordId,
        secret: [u8; 32],
        host: Vec<u8>,
        addrs: Vec<String>,
        expires: Timestamp,
        from: String,
        label: Option<String>,
        now: Timestamp,
    ) -> Result<Invitation, InviteError> {
        let inv = Invitation {
            v: INVITATION_VERSION,
            record,
            secret,
            host,
            addrs,
            expires,
            from,
            label,
        };
        inv.check()?;
        if expires <= now || expires - now > MAX_INVITATION_MS {
            return Err(InviteError::Period);
        }
        Ok(inv)
    }

    fn check(&self) -> Result<(), InviteError> {
        if self.v != INVITATION_VERSION {
            return Err(InviteError::Link(format!("unsupported version {}", self.v)));
        }
        if self.host.is_empty() || self.host.len() > 128 {
            return Err(InviteError::Text("host"));
        }
        if self.addrs.is_empty() || self.addrs.len() > MAX_ADDRS {
            return Err(InviteError::Text("addrs"));
        }
        for a in &self.addrs {
            text("addrs", a)?;
        }
        text("from", &self.from)?;
        if let Some(l) = &self.label {
            text("label", l)?;
        }
        Ok(())
    }

    /// The invitation key, derived from the secret (both sides derive the same one).
    pub fn key(&self) -> Keypair {
        Keypair::from_secret(&blake3::derive_key("cophr v1 invitation key", &self.secret))
    }

    /// The invitation's id (its key's public half).
    pub fn id(&self) -> InvitationId {
        self.key().actor()
    }

    /// The link: [`LINK_PREFIX`] and the invitation as base64url of its canonical CBOR.
    pub fn to_link(&self) -> String {
        format!(
            "{LINK_PREFIX}{}",
            data_encoding::BASE64URL_NOPAD.encode(&to_cbor(self))
        )
    }

    /// Parses a link (bounded, canonical only, fields checked). Expiry is checked by the
    /// host, whose clock counts.
    pub fn from_link(link: &str) -> Result<Invitation, InviteError> {
        let link = link.trim();
        if link.len() > MAX_LINK_LEN {
            return Err(InviteError::Link("too long".into()));
        }
        let body = link
            .strip_prefix(LINK_PREFIX)
            .ok_or_else(|| InviteError::Link(format!("it does not start with {LINK_PREFIX}")))?;
        let bytes = data_encoding::BASE64URL_NOPAD
            .decode(body.as_bytes())
            .map_err(|e| InviteError::Link(format!("not base64url: {e}")))?;
        let inv: Invitation =
            from_cbor_canonical(&bytes).map_err(|e| InviteError::Link(e.to_string()))?;
        inv.check()?;
        Ok(inv)
    }

    /// The offer the patient registers with the host for this invitation.
    pub fn offer(&self, terms: Terms, now: Timestamp) -> Result<Offer, InviteError> {
        check_terms(&terms)?;
        Ok(Offer {
            id: self.id(),
            record: self.record,
            expires: self.expires,
            created: now,
            terms,
        })
    }

    /// The invitee's acceptance, signed with the invitation key.
    pub fn accept(
        &self,
        invitee: ActorId,
        profile: Profile,
        nonce: [u8; 16],
        now: Timestamp,
    ) -> Result<SignedAcceptance, InviteError> {
        check_profile(&invitee, &profile).map_err(|e| InviteError::Profile(e.to_string()))?;
        let acceptance = Acceptance {
            invitation: self.id(),
            record: self.record,
            invitee,
            profile,
            nonce,
            time: now,
        };
        let sig = self.key().sign(Domain::Invitation, &to_cbor(&acceptance));
        Ok(SignedAcceptance { acceptance, sig })
    }
}

/// What the patient registers with the home host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The invitation's id.
    pub id: InvitationId,
    /// The record.
    pub record: RecordId,
    /// Until when it may be accepted.
    pub expires: Timestamp,
    /// When the patient made it.
    pub created: Timestamp,
    /// The access offered.
    pub terms: Terms,
}

impl Offer {
    /// Encodes.
    pub fn encode(&self) -> Vec<u8> {
        to_cbor(self)
    }

    /// Decodes (bounded, canonical) and checks an untrusted offer.
    pub fn decode(bytes: &[u8]) -> Result<Offer, InviteError> {
        if bytes.len() > MAX_ACCEPTANCE_BYTES {
            return Err(InviteError::Malformed("offer too large".into()));
        }
        let o: Offer = from_cbor_canonical(bytes)?;
        check_terms(&o.terms)?;
        Ok(o)
    }
}

/// The invitee's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acceptance {
    /// The invitation accepted.
    pub invitation: InvitationId,
    /// The record.
    pub record: RecordId,
    /// Who accepts (the grant will be to this key).
    pub invitee: ActorId,
    /// Who they say they are, with their attestations.
    pub profile: Profile,
    /// Fresh randomness.
    pub nonce: [u8; 16],
    /// When.
    pub time: Timestamp,
}

/// An acceptance signed with the invitation key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAcceptance {
    /// The acceptance.
    pub acceptance: Acceptance,
    /// Signature by the invitation key.
    pub sig: Sig,
}

impl SignedAcceptance {
    /// Encodes.
    pub fn encode(&self) -> Vec<u8> {
        to_cbor(self)
    }

    /// Decodes (bounded, canonical) and verifies: signed with the key of the invitation it
    /// names, the invitee's profile valid (and its attestations about the invitee).
    pub fn decode(bytes: &[u8]) -> Result<SignedAcceptance, InviteError> {
        if bytes.len() > MAX_ACCEPTANCE_BYTES {
            return Err(InviteError::Malformed("acceptance too large".into()));
        }
        let a: SignedAcceptance = from_cbor_canonical(bytes)?;
        keys::verify(
            &a.acceptance.invitation,
            Domain::Invitation,
            &to_cbor(&a.acceptance),
            &a.sig,
        )
        .map_err(|_| InviteError::Forged)?;
        check_profile(&a.acceptance.invitee, &a.acceptance.profile)
            .map_err(|e| InviteError::Profile(e.to_string()))?;
        Ok(a)
    }
}

/// One offer as the host keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferState {
    /// The offer.
    pub offer: Offer,
    /// Its acceptance, once accepted (then it is used).
    pub accepted: Option<SignedAcceptance>,
}

impl OfferState {
    /// `accepted`, `expired` (at `now`, unaccepted) or `open`.
    pub fn status(&self, now: Timestamp) -> &'static str {
        match (&self.accepted, now > self.offer.expires) {
            (Some(_), _) => "accepted",
            (None, true) => "expired",
            (None, false) => "open",
        }
    }
}

/// A record's invitations at its home host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationBox {
    /// Open and accepted offers, oldest first.
    pub offers: Vec<OfferState>,
}

impl InvitationBox {
    /// Decodes a stored box (bounded).
    pub fn decode(bytes: &[u8]) -> Result<InvitationBox, InviteError> {
        if bytes.len() > MAX_BOX_BYTES {
            return Err(InviteError::Malformed("invitation box too large".into()));
        }
        Ok(from_cbor_canonical(bytes)?)
    }

    /// Encodes.
    pub fn encode(&self) -> Vec<u8> {
        to_cbor(self)
    }

    /// Registers an offer (replacing one with the same id), first forgetting offers that
    /// expired unaccepted.
    pub fn offer(&mut self, offer: Offer, now: Timestamp) -> Result<(), InviteError> {
        if offer.expires <= now || offer.expires - now > MAX_INVITATION_MS {
            return Err(InviteError::Period);
        }
        self.offers
            .retain(|o| o.accepted.is_some() || o.offer.expires > now);
        self.offers.retain(|o| o.offer.id != offer.id);
        if self.offers.len() >= MAX_OFFERS {
            return Err(InviteError::Full);
        }
        let before = self.encode().len();
        if before + offer.encode().len() > MAX_BOX_BYTES / 2 {
            return Err(InviteError::Full);
        }
        self.offers.push(OfferState {
            offer,
            accepted: None,
        });
        Ok(())
    }

    /// Takes an acceptance (already decoded and verified), from `invitee` as proven by the
    /// request, at the host's time `now`: the offer must exist, be unexpired and unused.
    pub fn accept(
        &mut self,
        a: SignedAcceptance,
        invitee: &ActorId,
        now: Timestamp,
    ) -> Result<(), InviteError> {
        let acc = &a.acceptance;
        if acc.invitee != *invitee {
            return Err(InviteError::Forged);
        }
        if acc.time.abs_diff(now) > ACCEPT_WINDOW_MS {
            return Err(InviteError::Stale);
        }
        let slot = self
            .offers
            .iter_mut()
            .find(|o| o.offer.id == acc.invitation && o.offer.record == acc.record)
            .ok_or(InviteError::Unknown)?;
        if slot.accepted.is_some() {
            return Err(InviteError::Used);
        }
        if now > slot.offer.expires {
            return Err(InviteError::Expired);
        }
        if self.encode().len() + a.encode().len() > MAX_BOX_BYTES {
            return Err(InviteError::Full);
        }
        let slot = self
            .offers
            .iter_mut()
            .find(|o| o.offer.id == a.acceptance.invitation)
            .ok_or(InviteError::Unknown)?;
        slot.accepted = Some(a);
        Ok(())
    }

    /// Removes an invitation (confirmed, declined or withdrawn). Whether it was there.
    pub fn close(&mut self, id: &InvitationId) -> bool {
        let before = self.offers.len();
        self.offers.retain(|o| o.offer.id != *id);
        before != self.offers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{key, profile};

    const NOW: u64 = 1_800_000_000_000;
    const DAY: u64 = 24 * 3600 * 1000;

    fn invitation() -> Invitation {
        Invitation::new(
            key(1, "George").actor(),
            [7; 32],
            b"host-peer".to_vec(),
            vec!["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWhost".into()],
            NOW + 7 * DAY,
            "George Jones".into(),
            Some("Pharmacy".into()),
            NOW,
        )
        .unwrap()
    }

    fn terms() -> Terms {
        Terms {
            level: Level::View,
            scope: Scope::All,
            not_before: None,
            until: None,
            audit: false,
            delegate: false,
            label: Some("Pharmacy".into()),
            requires: None,
        }
    }

    #[test]
    fn a_link_round_trips_and_garbage_is_refused() {
        let inv = invitation();
        let link = inv.to_link();
        assert!(link.starts_with(LINK_PREFIX));
        assert_eq!(Invitation::from_link(&link).unwrap(), inv);
        assert!(matches!(
            Invitation::from_link("https://example.org/x"),
            Err(InviteError::Link(_))
        ));
        assert!(Invitation::from_link(&format!("{LINK_PREFIX}!!!")).is_err());
        assert!(Invitation::from_link(&link[..link.len() - 4]).is_err());
        assert!(Invitation::from_link(&"a".repeat(MAX_LINK_LEN + 1)).is_err());
    }

    #[test]
    fn an_invitation_is_accepted_once_before_it_expires_and_only_with_the_secret() {
        let inv = invitation();
        let mut b = InvitationBox::default();
        b.offer(inv.offer(terms(), NOW).unwrap(), NOW).unwrap();
        let rena = key(2, "Rena");
        let acc = inv
            .accept(
                rena.actor(),
                profile("Rena", "pharmacist", None),
                [1; 16],
                NOW,
            )
            .unwrap();
        let decoded = SignedAcceptance::decode(&acc.encode()).unwrap();
        // Someone else cannot use Rena's acceptance as theirs.
        assert_eq!(
            b.clone()
                .accept(decoded.clone(), &key(3, "Eve").actor(), NOW),
            Err(InviteError::Forged)
        );
        // Too late.
        let mut late = b.clone();
        let acc_late = inv
            .accept(
                rena.actor(),
                profile("Rena", "pharmacist", None),
                [2; 16],
                NOW + 8 * DAY,
            )
            .unwrap();
        assert_eq!(
            late.accept(acc_late, &rena.actor(), NOW + 8 * DAY),
            Err(InviteError::Expired)
        );
        // Stale (replayed later within the period).
        assert_eq!(
            b.clone().accept(decoded.clone(), &rena.actor(), NOW + DAY),
            Err(InviteError::Stale)
        );
        b.accept(decoded.clone(), &rena.actor(), NOW).unwrap();
        // Used: a second acceptance (even a fresh one) opens nothing.
        let again = inv
            .accept(
                rena.actor(),
                profile("Rena", "pharmacist", None),
                [3; 16],
                NOW,
            )
            .unwrap();
        assert_eq!(b.accept(again, &rena.actor(), NOW), Err(InviteError::Used));
        // Without the secret: an acceptance signed with another key is forged.
        let mut other = inv.clone();
        other.secret = [8; 32];
        let forged = other
            .accept(
                rena.actor(),
                profile("Rena", "pharmacist", None),
                [4; 16],
                NOW,
            )
            .unwrap();
        let mut tampered = forged.clone();
        tampered.acceptance.invitation = inv.id();
        assert_eq!(
            SignedAcceptance::decode(&tampered.encode()),
            Err(InviteError::Forged)
        );
        // An unknown invitation.
        let mut fresh = InvitationBox::default();
        assert_eq!(
            fresh.accept(forged, &rena.actor(), NOW),
            Err(InviteError::Unknown)
        );
        assert_eq!(InvitationBox::decode(&b.encode()).unwrap(), b);
        assert!(b.close(&inv.id()));
        assert!(b.offers.is_empty());
    }

    #[test]
    fn offers_are_bounded_and_expire() {
        let mut b = InvitationBox::default();
        let base = invitation();
        for i in 0..MAX_OFFERS {
            let mut inv = base.clone();
            inv.secret = [i as u8; 32];
            b.offer(inv.offer(terms(), NOW).unwrap(), NOW).unwrap();
        }
        let mut one_more = base.clone();
        one_more.secret = [200; 32];
        assert_eq!(
            b.offer(one_more.offer(terms(), NOW).unwrap(), NOW),
            Err(InviteError::Full)
        );
        // After they expired unaccepted, there is room again.
        let later = NOW + 8 * DAY;
        let mut o = one_more.offer(terms(), later).unwrap();
        o.expires = later + DAY;
        b.offer(o, later).unwrap();
        assert_eq!(b.offers.len(), 1);
        assert!(Invitation::new(
            base.record,
            [1; 32],
            base.host.clone(),
            base.addrs.clone(),
            NOW + 31 * DAY,
            "George".into(),
            None,
            NOW
        )
        .is_err());
    }
}
