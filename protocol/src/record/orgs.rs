//! Organisations in the gate: membership entries in an organisation's own record, and a
//! member's join in a patient's record (the rules are in [`crate::org`]).

use super::{AccessError, Acting, Record, Rejection};
use crate::access::{Grant, Scope};
use crate::entry::{Entry, Payload, SignedEntry};
use crate::ids::{ActorId, EntryId};
use crate::org::{self, MemberInfo, OrgError, Role};

impl From<OrgError> for Rejection {
    fn from(e: OrgError) -> Self {
        AccessError::Membership(e).into()
    }
}

/// One member of an organisation as a patient's record knows them: they joined under the
/// organisation's grant (and perhaps were removed since).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// The member's key.
    pub member: ActorId,
    /// The organisation.
    pub org: ActorId,
    /// Their role, as the organisation's proof names it.
    pub role: Role,
    /// The administrator's label for them.
    pub label: String,
    /// The `JoinOrg` entry.
    pub joined: EntryId,
    /// The organisation's removal of them in this record (its administrative part when
    /// held), if removed.
    pub removed: Option<EntryId>,
}

impl Record {
    /// Checks a member's join at its causal position: the grant it names is to an
    /// organisation, the proof makes the author that organisation's member, and the author
    /// has not joined under it before nor been removed from it here.
    pub(crate) fn check_join(
        &self,
        e: &Entry,
        proof: &[serde_bytes::ByteBuf],
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Result<Acting, Rejection> {
        let Some(auth) = e.auth else {
            return Err(AccessError::NoGrant.into());
        };
        let Some(info) = self.grants.get(&auth) else {
            return Err(if self.nodes.contains_key(&auth) {
                AccessError::NotAGrant(auth)
            } else {
                AccessError::GrantNotFound(auth)
            }
            .into());
        };
        let org = info.grant.grantee;
        if e.author == org {
            return Err(OrgError::SelfMember.into());
        }
        org::verify_membership(&org, &e.author, proof)?;
        if let Some(by) = self.retired_in(&e.author, &org, past) {
            return Err(AccessError::DeviceRemoved {
                device: e.author,
                by,
            }
            .into());
        }
        if !self.adds_in(&e.author, &org, past).is_empty() {
            return Err(OrgError::AlreadyJoined(e.author).into());
        }
        Ok(Acting {
            principal: org,
            rotation: None,
            via: Vec::new(),
        })
    }

    /// Prepares `key`'s join under the grants of the organisation whose membership entries
    /// `proof` carries, trying its grants best first (as [`Record::prepare_as`] does).
    pub fn prepare_join(
        &self,
        key: &crate::keys::Keypair,
        proof: Vec<serde_bytes::ByteBuf>,
        now: crate::entry::Timestamp,
        device: Option<String>,
    ) -> Result<crate::entry::Verified, Rejection> {
        let org = proof
            .first()
            .and_then(|b| SignedEntry::decode(b).ok())
            .map(|s| s.entry().record)
            .ok_or(OrgError::ProofSize)?;
        let mut first_err = None;
        for g in self.grants_of(&org) {
            let payload = Payload::JoinOrg {
                proof: proof.clone(),
            };
            match self.prepare(key, payload, Some(g), now, device.clone()) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or(Rejection::Access(AccessError::NoGrant)))
    }

    /// Checks an administrator's `AddMember` in the organisation's own record: not the
    /// organisation's key, not a member already, never removed before.
    pub(crate) fn check_add_member(
        &self,
        member: &ActorId,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Result<(), Rejection> {
        if self.is_patient_in(member, past) {
            return Err(OrgError::SelfMember.into());
        }
        let (adds, removes) = self.membership_entries(member, past);
        if !removes.is_empty() {
            return Err(OrgError::WasRemoved(*member).into());
        }
        if !adds.is_empty() {
            return Err(OrgError::AlreadyMember(*member).into());
        }
        Ok(())
    }

    /// Checks an administrator's `RemoveMember`: the member is one at this position.
    pub(crate) fn check_remove_member(
        &self,
        member: &ActorId,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Result<(), Rejection> {
        let (adds, removes) = self.membership_entries(member, past);
        if adds.is_empty() || !removes.is_empty() {
            return Err(OrgError::NotAMember(*member).into());
        }
        Ok(())
    }

    /// The `AddMember` and `RemoveMember` entries about `member` in a causal past that
    /// count (written as the organisation: by its key or its device, not void).
    fn membership_entries(
        &self,
        member: &ActorId,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> (Vec<EntryId>, Vec<EntryId>) {
        let mut adds = Vec::new();
        let mut removes = Vec::new();
        for id in &self.member_log {
            let Some(n) = self.nodes.get(id) else {
                continue;
            };
            if n.void || !past(&n.h.id) {
                continue;
            }
            match n.payload() {
                Some(Payload::AddMember { member: m, .. }) if m == member => adds.push(n.h.id),
                Some(Payload::RemoveMember { member: m, .. }) if m == member => {
                    removes.push(n.h.id)
                }
                _ => {}
            }
        }
        (adds, removes)
    }

    /// Whether this record holds a membership log (an organisation's record with members
    /// added): a check that costs nothing, to skip organisation duties elsewhere.
    pub fn has_members(&self) -> bool {
        !self.member_log.is_empty()
    }

    /// Indexes an applied `AddMember` or `RemoveMember`.
    pub(super) fn index_membership(&mut self, id: EntryId, e: &crate::entry::Entry) {
        if matches!(
            e.payload,
            Payload::AddMember { .. } | Payload::RemoveMember { .. }
        ) {
            self.member_log.push(id);
        }
    }

    /// Rebuilds the membership log from the administrative entries held (always in
    /// memory), after a restore.
    pub(super) fn reindex_membership(&mut self) {
        self.member_log = self
            .nodes
            .values()
            .filter(|n| {
                matches!(
                    n.payload(),
                    Some(Payload::AddMember { .. } | Payload::RemoveMember { .. })
                )
            })
            .map(|n| n.h.id)
            .collect();
    }

    /// The members of the organisation whose record this is, removed ones included,
    /// in the order they were added (by author time, then id), each once.
    pub fn members(&self) -> Vec<MemberInfo> {
        let mut out: Vec<(crate::entry::Timestamp, MemberInfo)> = Vec::new();
        let mut removed: Vec<(ActorId, EntryId)> = Vec::new();
        for id in &self.member_log {
            let Some(n) = self.nodes.get(id) else {
                continue;
            };
            if n.void {
                continue;
            }
            match n.payload() {
                Some(Payload::AddMember {
                    member,
                    role,
                    label,
                }) => out.push((
                    n.h.time,
                    MemberInfo {
                        member: *member,
                        role: role.clone(),
                        label: label.clone(),
                        added: n.h.id,
                        removed: None,
                    },
                )),
                Some(Payload::RemoveMember { member, .. }) => removed.push((*member, n.h.id)),
                _ => {}
            }
        }
        out.sort_by_key(|(t, m)| (*t, m.added));
        // Additions written concurrently by two administrators name one member once.
        let mut members: Vec<MemberInfo> = Vec::new();
        for (_, m) in out {
            if !members.iter().any(|x| x.member == m.member) {
                members.push(m);
            }
        }
        removed.sort();
        for (who, by) in removed {
            if let Some(m) = members.iter_mut().find(|m| m.member == who) {
                m.removed.get_or_insert(by);
            }
        }
        members
    }

    /// The proof that `member` belongs to the organisation whose record this is, to carry
    /// in a [`Payload::JoinOrg`] or a sync request: the `AddMember` naming them (and the
    /// `AddDevice` of its signer, if an administrator's device signed it). `None` if they
    /// are not a member now.
    pub fn membership_proof(&self, member: &ActorId) -> Option<Vec<serde_bytes::ByteBuf>> {
        let (adds, removes) = self.membership_entries(member, &|_| true);
        if !removes.is_empty() {
            return None;
        }
        let add = self.get(adds.iter().min()?)?;
        let signer = add.entry().author;
        let mut proof = Vec::new();
        if signer != self.id {
            let made = self.device_adds.get(&signer)?.iter().copied().find(|a| {
                self.get(a)
                    .is_some_and(|v| v.entry().author == self.id && v.entry().auth.is_none())
            })?;
            proof.push(serde_bytes::ByteBuf::from(
                self.get(&made)?.signed().bytes().to_vec(),
            ));
        }
        proof.push(serde_bytes::ByteBuf::from(add.signed().bytes().to_vec()));
        Some(proof)
    }

    /// The role a `JoinOrg` entry gives its author (`None` for anything else: a device
    /// added with `AddDevice` has no role, it acts with its owner's full rights).
    pub(crate) fn join_role(&self, add: &EntryId) -> Option<Role> {
        let Some(Payload::JoinOrg { proof }) = self.nodes.get(add).and_then(|n| n.payload()) else {
            return None;
        };
        let last = SignedEntry::decode(proof.last()?).ok()?;
        match last.entry().payload.clone() {
            Payload::AddMember { role, .. } => Some(role),
            _ => None,
        }
    }

    /// The role an acting member writes with (from the join in `acting.via`), if any.
    pub(crate) fn acting_role(&self, acting: &Acting) -> Option<Role> {
        acting.via.iter().filter_map(|a| self.join_role(a)).next()
    }

    /// The role `member` holds for `org` now, if they joined under it here.
    pub fn member_role(&self, member: &ActorId, org: &ActorId) -> Option<Role> {
        self.adds_in(member, org, &|_| true)
            .iter()
            .filter_map(|a| self.join_role(a))
            .next()
    }

    /// Of the membership proofs `actor` holds, the one it should join this record with
    /// before acting in it: for an organisation holding a grant here that `actor` has not
    /// joined under, nor been removed from. `None` when no join is needed (the patient,
    /// joined already, or no proof fits).
    pub fn join_needed(
        &self,
        actor: &ActorId,
        proofs: &[Vec<serde_bytes::ByteBuf>],
    ) -> Option<Vec<serde_bytes::ByteBuf>> {
        if self.is_patient(actor) {
            return None;
        }
        proofs
            .iter()
            .find(|proof| {
                let Some(org) = proof
                    .first()
                    .and_then(|b| SignedEntry::decode(b).ok())
                    .map(|s| s.entry().record)
                else {
                    return false;
                };
                org::verify_membership(&org, actor, proof).is_ok()
                    && !self.grants_of(&org).is_empty()
                    && self.adds_in(actor, &org, &|_| true).is_empty()
                    && !self.member_removed(actor, &org)
            })
            .cloned()
    }

    /// Of the proofs `actor` holds, the one to present when pulling this record (the
    /// organisation holds a grant here), or the first when the record is not known yet.
    pub fn proof_to_present<'a>(
        record: Option<&Record>,
        proofs: &'a [Vec<serde_bytes::ByteBuf>],
    ) -> Option<&'a Vec<serde_bytes::ByteBuf>> {
        let org_of = |p: &Vec<serde_bytes::ByteBuf>| {
            p.first()
                .and_then(|b| SignedEntry::decode(b).ok())
                .map(|s| s.entry().record)
        };
        match record {
            Some(r) => proofs
                .iter()
                .find(|p| org_of(p).is_some_and(|o| !r.grants_of(&o).is_empty())),
            None => proofs.first(),
        }
    }

    /// The members of the organisation whose own record is `org_record` who joined this
    /// record, were removed in the organisation's record, and whose removal this record
    /// does not hold yet: the organisation's node writes it ([`Payload::RemoveDevice`]).
    pub fn departed_members(&self, org_record: &Record) -> Vec<ActorId> {
        let org = org_record.id();
        let gone: Vec<ActorId> = org_record
            .members()
            .into_iter()
            .filter(|m| m.removed.is_some())
            .map(|m| m.member)
            .collect();
        let mut out: Vec<ActorId> = self
            .joined_members()
            .into_iter()
            .filter(|m| m.org == org && m.removed.is_none() && gone.contains(&m.member))
            .map(|m| m.member)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether `org` removed `member` here (a removal part is held).
    pub fn member_removed(&self, member: &ActorId, org: &ActorId) -> bool {
        self.retirements
            .get(&(*member, *org))
            .is_some_and(|r| !r.is_empty())
    }

    /// The members of organisations who joined this (a patient's) record, removed ones
    /// included, oldest first.
    pub fn joined_members(&self) -> Vec<JoinedMember> {
        let mut out: Vec<(crate::entry::Timestamp, JoinedMember)> = self
            .device_adds
            .iter()
            .flat_map(|(member, adds)| self.joins_of(member, adds))
            .collect();
        out.sort_by_key(|(t, m)| (*t, m.joined));
        out.into_iter().map(|(_, m)| m).collect()
    }

    /// `member`'s first join of this record for an organisation, if they joined (removed
    /// or not): what naming one person needs, without listing every member.
    pub fn joined_member(&self, member: &ActorId) -> Option<JoinedMember> {
        let adds = self.device_adds.get(member)?;
        self.joins_of(member, adds)
            .into_iter()
            .min_by_key(|(t, m)| (*t, m.joined))
            .map(|(_, m)| m)
    }

    fn joins_of(
        &self,
        member: &ActorId,
        adds: &[EntryId],
    ) -> Vec<(crate::entry::Timestamp, JoinedMember)> {
        let mut out = Vec::new();
        for a in adds {
            let Some(n) = self.nodes.get(a) else { continue };
            let Some(Payload::JoinOrg { proof }) = n.payload() else {
                continue;
            };
            let Some(Ok(last)) = proof.last().map(|b| SignedEntry::decode(b)) else {
                continue;
            };
            let Payload::AddMember { role, label, .. } = last.entry().payload.clone() else {
                continue;
            };
            let org = self.principal_of(n);
            let parts = self.retirements.get(&(*member, org));
            let removed = parts.and_then(|p| {
                p.iter()
                    .find(|r| self.stream_of(r) == Some(&None))
                    .or(p.first())
                    .copied()
            });
            out.push((
                n.h.time,
                JoinedMember {
                    member: *member,
                    org,
                    role,
                    label,
                    joined: *a,
                    removed,
                },
            ));
        }
        out
    }
}

/// A grant narrowed by a member's role: the categories both cover, at the lower level.
pub fn narrowed(g: &Grant, role: &Role) -> Grant {
    let mut out = g.clone();
    out.level = g.level.min(role.level);
    out.scope = intersect(&g.scope, &role.scope);
    out
}

/// The categories both scopes cover.
pub fn intersect(a: &Scope, b: &Scope) -> Scope {
    match (a, b) {
        (Scope::All, s) | (s, Scope::All) => s.clone(),
        (Scope::Only(x), Scope::Only(y)) => Scope::Only(x.intersection(y).cloned().collect()),
    }
}
