//! Capabilities: access levels, category scopes, grants, and the narrowing rule for
//! delegation. The checks that need the record (chains, revocation, proxies) live in
//! [`crate::record`].

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::category::Category;
use crate::entry::Timestamp;
use crate::ids::ActorId;
use crate::trust::attestation::{AssuranceLevel, SignedAttestation};

/// Access level (blueprint 8.1.3). Each level includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// Store, verify and serve, never read (blind hosting): the grantee pulls every entry
    /// of its scope, as signed, but no epoch key is wrapped for it, so it opens no sealed
    /// content; it writes nothing. A home host is a relay for the records it hosts.
    Relay,
    /// View only.
    View,
    /// View and annotate.
    Annotate,
    /// View, write and edit (amend).
    Write,
    /// View, write, edit and logically delete.
    Delete,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 5] = [
        Level::Relay,
        Level::View,
        Level::Annotate,
        Level::Write,
        Level::Delete,
    ];

    /// Whether this level reads content (view or above: epoch keys are wrapped for it).
    pub fn reads(self) -> bool {
        self >= Level::View
    }

    /// The name used in flags and on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Level::Relay => "relay",
            Level::View => "view",
            Level::Annotate => "annotate",
            Level::Write => "write",
            Level::Delete => "delete",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown level name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown access level `{0}` (expected relay, view, annotate, write or delete)")]
pub struct UnknownLevel(pub String);

impl FromStr for Level {
    type Err = UnknownLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Level::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| UnknownLevel(s.to_owned()))
    }
}

/// Which categories a grant covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Every category, including ones added later.
    All,
    /// Only these.
    Only(BTreeSet<Category>),
}

impl Scope {
    /// Whether the scope covers a category.
    pub fn covers(&self, c: &Category) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(set) => set.contains(c),
        }
    }

    /// Whether every category of `self` is covered by `outer`.
    pub fn within(&self, outer: &Scope) -> bool {
        match (self, outer) {
            (_, Scope::All) => true,
            (Scope::All, Scope::Only(_)) => false,
            (Scope::Only(a), Scope::Only(b)) => a.is_subset(b),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::All => f.write_str("all"),
            Scope::Only(set) => {
                let names: Vec<&str> = set.iter().map(Category::name).collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

/// A capability grant, carried in a grant entry signed by the patient or by a grantee
/// holding the delegate right (whose own grant the entry's `auth` names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Who receives the rights.
    pub grantee: ActorId,
    /// The access level.
    pub level: Level,
    /// The categories.
    pub scope: Scope,
    /// Valid from (author time of entries written or seen under it), if limited.
    pub not_before: Option<Timestamp>,
    /// Valid until, if limited.
    pub until: Option<Timestamp>,
    /// May read the audit trail.
    pub audit: bool,
    /// May delegate (grant a subset of these rights) and act as the issuer's proxy.
    pub delegate: bool,
    /// A label the issuer gives, e.g. "Mary (wife, main carer)".
    pub label: Option<String>,
    /// The grantee must be attested at this level or higher by one of these issuers, or
    /// the grant opens nothing (no pull, no write). `None`: no requirement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires: Option<Requirement>,
}

/// Most issuers one requirement may name.
pub const MAX_REQUIREMENT_ISSUERS: usize = 16;

/// What a grant requires of its grantee's identity: an attestation at or above `level`,
/// valid at the time of use, signed by one of `issuers` and carried in the grantee's
/// profile. The issuers are named in the grant itself (signed by the patient), so every
/// replica decides alike; each node additionally refuses attestations it knows revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// The lowest level accepted.
    pub level: AssuranceLevel,
    /// The identity assurance services accepted (1 to [`MAX_REQUIREMENT_ISSUERS`]).
    pub issuers: Vec<ActorId>,
}

impl Requirement {
    /// Whether one of `attestations` meets the requirement for `subject` at time `t`
    /// (signatures are checked when the profile carrying them is accepted), skipping those
    /// `revoked` says are revoked.
    pub fn met_by(
        &self,
        subject: &ActorId,
        attestations: &[SignedAttestation],
        t: Timestamp,
        revoked: &dyn Fn(&SignedAttestation) -> bool,
    ) -> bool {
        attestations.iter().any(|a| {
            let s = &a.attestation;
            s.subject == *subject
                && s.level >= self.level
                && self.issuers.contains(&s.issuer)
                && s.valid_at(t)
                && !revoked(a)
        })
    }

    /// Whether `self` is at least as strict as `parent`: a level no lower, and only
    /// issuers the parent accepts.
    pub fn at_least_as_strict_as(&self, parent: &Requirement) -> bool {
        self.level >= parent.level && self.issuers.iter().all(|i| parent.issuers.contains(i))
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "attested {} or higher by {} trusted issuer{}",
            self.level,
            self.issuers.len(),
            if self.issuers.len() == 1 { "" } else { "s" }
        )
    }
}

/// How a delegated grant would exceed its parent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Widening {
    /// The parent grant has no delegate right.
    #[error("the issuer's grant does not include the delegate right")]
    NoDelegateRight,
    /// Higher level than the parent.
    #[error("level {child} exceeds the issuer's {parent}")]
    Level {
        /// Requested.
        child: Level,
        /// Held.
        parent: Level,
    },
    /// Categories outside the parent's scope.
    #[error("categories exceed the issuer's scope")]
    Scope,
    /// Longer validity than the parent.
    #[error("validity period exceeds the issuer's")]
    Period,
    /// Audit right the parent does not have.
    #[error("audit right not held by the issuer")]
    Audit,
    /// A weaker identity requirement than the parent's.
    #[error("identity requirement weaker than the issuer's grant")]
    Assurance,
}

impl Grant {
    /// Checks that `self`, issued under `parent`, grants no more than `parent` holds.
    pub fn narrows(&self, parent: &Grant) -> Result<(), Widening> {
        if !parent.delegate {
            return Err(Widening::NoDelegateRight);
        }
        if self.level > parent.level {
            return Err(Widening::Level {
                child: self.level,
                parent: parent.level,
            });
        }
        if !self.scope.within(&parent.scope) {
            return Err(Widening::Scope);
        }
        let starts_ok = match (self.not_before, parent.not_before) {
            (_, None) => true,
            (Some(c), Some(p)) => c >= p,
            (None, Some(_)) => false,
        };
        let ends_ok = match (self.until, parent.until) {
            (_, None) => true,
            (Some(c), Some(p)) => c <= p,
            (None, Some(_)) => false,
        };
        if !starts_ok || !ends_ok {
            return Err(Widening::Period);
        }
        if self.audit && !parent.audit {
            return Err(Widening::Audit);
        }
        if let Some(p) = &parent.requires {
            if !self
                .requires
                .as_ref()
                .is_some_and(|c| c.at_least_as_strict_as(p))
            {
                return Err(Widening::Assurance);
            }
        }
        Ok(())
    }

    /// Whether `t` falls in the validity period.
    pub fn in_period(&self, t: Timestamp) -> bool {
        self.not_before.is_none_or(|nb| t >= nb) && self.until.is_none_or(|u| t <= u)
    }

    /// Whether it allows `level` on `category`.
    pub fn allows(&self, level: Level, category: &Category) -> bool {
        self.level >= level && self.scope.covers(category)
    }
}

/// Where a grant stands at a given time, computed by
/// [`Record::grant_status`](crate::record::Record::grant_status). The one answer the CLI,
/// the REST API, FHIR `Consent` and the web app show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrantStatus {
    /// In effect: neither revoked nor void, and inside its (and its chain's) validity
    /// period.
    Active,
    /// Not in effect yet: before the `not_before` of the grant or of a grant above it.
    NotYetValid,
    /// No longer in effect: after the `until` of the grant or of a grant above it.
    Expired,
    /// Revoked.
    Revoked,
    /// Delegated under a grant that was revoked (or under one delegated from it): it gives
    /// nothing any more, though it was not revoked itself.
    ParentRevoked,
    /// Never took effect: delegated concurrently with the revocation of a grant above it.
    Void,
}

impl GrantStatus {
    /// Every status.
    pub const ALL: [GrantStatus; 6] = [
        GrantStatus::Active,
        GrantStatus::NotYetValid,
        GrantStatus::Expired,
        GrantStatus::Revoked,
        GrantStatus::ParentRevoked,
        GrantStatus::Void,
    ];

    /// The stable name (the serde form): `active`, `not-yet-valid`, `expired`, `revoked`,
    /// `parent-revoked`, `void`.
    pub fn name(self) -> &'static str {
        match self {
            GrantStatus::Active => "active",
            GrantStatus::NotYetValid => "not-yet-valid",
            GrantStatus::Expired => "expired",
            GrantStatus::Revoked => "revoked",
            GrantStatus::ParentRevoked => "parent-revoked",
            GrantStatus::Void => "void",
        }
    }

    /// The FHIR R4 `Consent.status` (consent-state-codes) of a grant in this state:
    /// `active`; `draft` ("Pending": awaiting use, not yet to be acted upon) while not yet
    /// valid, since the patient has signed it (so not `proposed`, which is still being
    /// negotiated) and it has not ended (so not `inactive`, which is terminated or
    /// replaced); `inactive` once revoked, under a revoked grant or expired;
    /// `entered-in-error` when void.
    pub fn fhir_consent_status(self) -> &'static str {
        match self {
            GrantStatus::Active => "active",
            GrantStatus::NotYetValid => "draft",
            GrantStatus::Expired | GrantStatus::Revoked | GrantStatus::ParentRevoked => "inactive",
            GrantStatus::Void => "entered-in-error",
        }
    }

    /// Whether the grant gives its rights now.
    pub fn is_active(self) -> bool {
        self == GrantStatus::Active
    }

    /// Whether the grant has ended for good (revoked, under a revoked grant, expired or
    /// void): it will never give anything again. An active or not-yet-valid grant has not.
    pub fn has_ended(self) -> bool {
        !matches!(self, GrantStatus::Active | GrantStatus::NotYetValid)
    }
}

impl fmt::Display for GrantStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown grant status name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown grant status `{0}` (expected active, not-yet-valid, expired, revoked, \
     parent-revoked or void)"
)]
pub struct UnknownGrantStatus(pub String);

impl FromStr for GrantStatus {
    type Err = UnknownGrantStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GrantStatus::ALL
            .into_iter()
            .find(|g| g.name() == s)
            .ok_or_else(|| UnknownGrantStatus(s.to_owned()))
    }
}
