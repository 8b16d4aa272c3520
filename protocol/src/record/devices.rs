//! Devices and patient keys: whom an entry's author acts for.
//!
//! ## Devices
//! A person (the patient, or a grantee) adds a device key with an `AddDevice` entry signed
//! by their own key (for the patient, the current patient key; a grantee writes it under
//! their grant). From then on the device acts for that person in every rule: a device of
//! the patient writes without a grant (`auth: None`) and counts as the patient (it amends
//! what the patient wrote on another device or key, principle 9; it grants, revokes,
//! moves the record); a grantee's device writes under its owner's grants (named in `auth`
//! as usual) and counts as its owner (an item written on one of the owner's devices is the
//! owner's). A device may not add or remove devices, name guardians or rotate the patient
//! key. A key may be the device of several people; which one an entry acts for is what its
//! `auth` says (none: the patient; a grant: that grant's grantee).
//!
//! A `RemoveDevice` retires the device for its owner from its causal position on, exactly
//! as a revocation retires a grant: it is written as one part in each category stream the
//! device wrote in, then one in the administrative stream. An entry by the device (acting
//! for that owner) is refused if a part is in its causal past, and otherwise in effect only
//! if it is in the causal past of a part in its own stream (void if not: written
//! concurrently). Nothing already written changes; a removed device is never added again.
//!
//! ## Patient keys, guardians and rotation
//! The patient's first key is the record id. `SetGuardians` (current patient key only)
//! names up to [`MAX_GUARDIANS`](crate::entry::MAX_GUARDIANS) guardians and a threshold.
//! A `RotateKey` entry is authored by the new key and carries approvals, signatures under
//! [`Domain::KeyRotation`](crate::keys::Domain::KeyRotation) over a [`RotationClaim`]
//! (record, old key, new key, the `SetGuardians` entry relied on): at least `threshold`
//! distinct guardians of the set in effect for the old key at the rotation's causal
//! position, or the old key itself (a planned rotation). The set in effect for a key is
//! the latest `SetGuardians` that key wrote, else the one in effect for the key before it
//! at the rotation that made it current.
//!
//! The current patient key at a causal position is found by following, from the record id,
//! the rotations in that position's past; of two rotations away from the same key (only
//! possible concurrently) a guardians' rotation wins over a planned one (which a thief
//! holding the old key could write), then the one with the smaller entry id; the other is
//! void, with every entry that depends on it. After a rotation the old key is retired exactly
//! as a removed device is: the `RotateKey` is the retirement's administrative part, and the
//! new key writes a `RotationPart` in each category stream the old key wrote in (in the
//! same action, [`Record::prepare_all`]). The record id never changes; entries keep
//! verifying against the keys that signed them; grants stay the patient's, whichever
//! patient key or device signed them. Devices the old key added stay the patient's until
//! removed (recovery is about a lost root key; the new key reviews and removes devices).

use std::collections::BTreeSet;

use super::{AccessError, Held, Node, Record, Rejection, Status, Stream};
use crate::entry::{Approval, Entry, Payload, RotationClaim, Timestamp, Verified};
use crate::ids::{ActorId, EntryId};

/// Whom an entry's author acts for, and what makes it so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Acting {
    /// The person: the record id for the patient (any patient key or patient device),
    /// else the grantee the entry's grant names.
    pub(crate) principal: ActorId,
    /// For an entry by a patient key: the rotation that made it the current key (`None`
    /// for the record id's own key). For a rotation: the one that made its old key current.
    pub(crate) rotation: Option<EntryId>,
    /// For an entry by a device: the `AddDevice` entries in its causal past that make the
    /// author a device of `principal` (empty: the author is the person's own key).
    pub(crate) via: Vec<EntryId>,
}

impl Acting {
    fn own(principal: ActorId, rotation: Option<EntryId>) -> Self {
        Acting {
            principal,
            rotation,
            via: Vec::new(),
        }
    }

    /// Whether the author is a device acting for `principal`.
    pub(crate) fn is_device(&self) -> bool {
        !self.via.is_empty()
    }
}

/// One device of one person, as [`Record::devices_of`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device key.
    pub device: ActorId,
    /// Its label.
    pub label: String,
    /// The `AddDevice` entry.
    pub added: EntryId,
    /// Author time of the addition.
    pub time: Timestamp,
    /// A held removal (its administrative part when held), if removed.
    pub removed: Option<EntryId>,
}

/// The guardians in effect for the current patient key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guardians {
    /// The `SetGuardians` entry.
    pub entry: EntryId,
    /// The guardians, sorted.
    pub guardians: Vec<ActorId>,
    /// How many must approve a rotation.
    pub threshold: u8,
}

/// A chain of patient keys: each key with the rotation that made it current.
type KeyChain = Vec<(ActorId, Option<EntryId>)>;

impl Record {
    /// Decides whom the entry's author acts for at its causal position, refusing a retired
    /// patient key, a removed device, or a key that is neither the person nor their device.
    pub(crate) fn check_actor(
        &self,
        e: &Entry,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Result<Acting, Rejection> {
        if let Payload::JoinOrg { proof } = &e.payload {
            return self.check_join(e, proof, past);
        }
        if let Some(auth) = e.auth {
            // The grant's existence and kind are checked here so the refusal names it.
            let Some(info) = self.grants.get(&auth) else {
                return Err(if self.nodes.contains_key(&auth) {
                    AccessError::NotAGrant(auth)
                } else {
                    AccessError::GrantNotFound(auth)
                }
                .into());
            };
            let person = info.grant.grantee;
            if e.author == person {
                return Ok(Acting::own(person, None));
            }
            let via = self.adds_in(&e.author, &person, past);
            if via.is_empty() {
                return Err(AccessError::NotGrantee(auth).into());
            }
            if let Some(by) = self.retired_in(&e.author, &person, past) {
                return Err(AccessError::DeviceRemoved {
                    device: e.author,
                    by,
                }
                .into());
            }
            return Ok(Acting {
                principal: person,
                rotation: None,
                via,
            });
        }
        if let Payload::RotateKey {
            old,
            guardians,
            approvals,
        } = &e.payload
        {
            return self.check_rotation(&e.author, old, guardians, approvals, past);
        }
        if matches!(e.payload, Payload::Genesis { .. }) {
            return Ok(Acting::own(self.id, None));
        }
        let chain = self.patient_chain_in(past);
        let (current, rotation) = chain[chain.len() - 1];
        if e.author == current {
            return Ok(Acting::own(self.id, rotation));
        }
        if self.is_patient_key_in(&e.author, past) {
            if let Some(by) = self.retired_in(&e.author, &self.id, past) {
                return Err(AccessError::KeyRetired { key: e.author, by }.into());
            }
        }
        if let Some(by) = self.lost_rotation_in(&e.author, past) {
            return Err(AccessError::KeyRetired { key: e.author, by }.into());
        }
        let via = self.adds_in(&e.author, &self.id, past);
        if via.is_empty() {
            return Err(AccessError::NoGrant.into());
        }
        if let Some(by) = self.retired_in(&e.author, &self.id, past) {
            return Err(AccessError::DeviceRemoved {
                device: e.author,
                by,
            }
            .into());
        }
        Ok(Acting {
            principal: self.id,
            rotation: None,
            via,
        })
    }

    /// Checks a rotation (authored by the new key) at its causal position.
    fn check_rotation(
        &self,
        new: &ActorId,
        old: &ActorId,
        guardians: &Option<EntryId>,
        approvals: &[Approval],
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Result<Acting, Rejection> {
        let chain = self.patient_chain_in(past);
        let (current, rotation) = chain[chain.len() - 1];
        if *old != current {
            return Err(AccessError::RotationFrom {
                named: *old,
                current,
            }
            .into());
        }
        let new = *new;
        let ever_device = self
            .device_adds
            .get(&new)
            .is_some_and(|adds| adds.iter().any(past));
        if self.is_patient_key_in(&new, past) || ever_device {
            return Err(AccessError::KeyInUse(new).into());
        }
        let claim = RotationClaim {
            record: self.id,
            old: *old,
            new,
            guardians: *guardians,
        };
        let ok = Acting::own(self.id, rotation);
        // A planned rotation: the old key approves it itself.
        if let Some(a) = approvals.iter().find(|a| a.by == *old) {
            claim
                .verify(a)
                .map_err(|_| AccessError::BadApproval(a.by))?;
            return Ok(ok);
        }
        let set = self
            .guardian_set_in(&chain, past)
            .ok_or(AccessError::NoGuardians)?;
        if *guardians != Some(set.entry) {
            return Err(AccessError::GuardiansNotCurrent {
                named: *guardians,
                current: set.entry,
            }
            .into());
        }
        for a in approvals {
            if !set.guardians.contains(&a.by) {
                return Err(AccessError::NotAGuardian(a.by).into());
            }
            claim
                .verify(a)
                .map_err(|_| AccessError::BadApproval(a.by))?;
        }
        // Approvals are distinct (checked with the entry's structure).
        if approvals.len() < usize::from(set.threshold) {
            return Err(AccessError::TooFewApprovals {
                have: approvals.len(),
                need: set.threshold,
            }
            .into());
        }
        Ok(ok)
    }

    /// Checks that guardians' `approvals` (over the guardian set `guardians`, rotating away
    /// from `old`) would let `new` rotate the patient key now, exactly as the gate would
    /// check the rotation entry: the key a recovering person proves may then pull the whole
    /// record before it holds any of it (sync's recovery proof), to write the rotation.
    /// Approvals must be distinct signers, 1 to [`crate::entry::MAX_GUARDIANS`].
    pub fn check_recovery(
        &self,
        new: &ActorId,
        old: &ActorId,
        guardians: &Option<EntryId>,
        approvals: &[Approval],
    ) -> Result<(), Rejection> {
        let mut signers: Vec<ActorId> = approvals.iter().map(|a| a.by).collect();
        signers.sort();
        if let Some(w) = signers.windows(2).find(|w| w[0] == w[1]) {
            return Err(crate::entry::EntryError::DuplicateApproval(w[0]).into());
        }
        if approvals.is_empty() || approvals.len() > crate::entry::MAX_GUARDIANS {
            return Err(crate::entry::EntryError::Approvals(
                "none, or more than a guardian set holds",
            )
            .into());
        }
        self.check_rotation(new, old, guardians, approvals, &|_| true)
            .map(drop)
    }

    /// Checks `person` may add `device` at a causal position.
    pub(crate) fn check_add_device(
        &self,
        device: &ActorId,
        person: &ActorId,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Result<(), Rejection> {
        if !self.adds_in(device, person, past).is_empty() {
            return Err(AccessError::DeviceExists(*device).into());
        }
        if self.is_patient_in(device, past) {
            return Err(AccessError::KeyInUse(*device).into());
        }
        Ok(())
    }

    /// Checks `device` is a device of `person` at a causal position.
    pub(crate) fn check_remove_device(
        &self,
        device: &ActorId,
        person: &ActorId,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Result<(), Rejection> {
        if self.adds_in(device, person, past).is_empty() {
            return Err(AccessError::NotADevice(*device).into());
        }
        Ok(())
    }

    /// The `AddDevice` entries of `device` by `person` in a causal past.
    pub(crate) fn adds_in(
        &self,
        device: &ActorId,
        person: &ActorId,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Vec<EntryId> {
        self.device_adds
            .get(device)
            .into_iter()
            .flatten()
            .filter(|a| past(a) && self.principal_of(&self.nodes[*a]) == *person)
            .copied()
            .collect()
    }

    /// A part of a retirement of `key` acting for `person` in a causal past.
    pub(crate) fn retired_in(
        &self,
        key: &ActorId,
        person: &ActorId,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Option<EntryId> {
        let parts: Vec<EntryId> = self
            .retirements
            .get(&(*key, *person))
            .into_iter()
            .flatten()
            .filter(|r| past(r))
            .copied()
            .collect();
        self.main_part(&parts)
    }

    /// The part that names a retirement, whatever order its parts arrived in: the
    /// administrative one (the smallest id if several), else the smallest id.
    fn main_part(&self, parts: &[EntryId]) -> Option<EntryId> {
        parts
            .iter()
            .min_by_key(|p| (self.stream_of(p) != Some(&None), **p))
            .copied()
    }

    /// How concurrent rotations away from one key are ranked, best first: a guardians'
    /// rotation before a planned one (approved by the old key alone, which a thief holding
    /// that key can write too: the guardians' recovery must not lose to it), then the
    /// smaller entry id.
    fn rotation_rank(&self, r: &EntryId) -> (bool, EntryId) {
        let planned = matches!(
            self.nodes.get(r).and_then(Node::payload),
            Some(Payload::RotateKey {
                guardians: None,
                ..
            })
        );
        (planned, *r)
    }

    /// For a key made current by a rotation in a causal past that lost to a concurrent one
    /// (ranked by [`Record::rotation_rank`]) also in that past: the winner.
    fn lost_rotation_in(&self, key: &ActorId, past: &dyn Fn(&EntryId) -> bool) -> Option<EntryId> {
        for rs in self.rotations_from.values() {
            let mine = rs
                .iter()
                .any(|r| past(r) && self.author_of(&self.nodes[r]) == *key);
            if mine {
                return rs
                    .iter()
                    .filter(|r| past(r))
                    .min_by_key(|r| self.rotation_rank(r))
                    .copied();
            }
        }
        None
    }

    /// Whether `actor` is one of the patient's keys (the record id, or a rotation's new
    /// key) in a causal past.
    fn is_patient_key_in(&self, actor: &ActorId, past: &dyn Fn(&EntryId) -> bool) -> bool {
        *actor == self.id
            || self
                .rotations_from
                .values()
                .flatten()
                .any(|r| past(r) && self.author_of(&self.nodes[r]) == *actor)
    }

    /// Whether `actor` is one of the patient's keys or devices in a causal past.
    pub(crate) fn is_patient_in(&self, actor: &ActorId, past: &dyn Fn(&EntryId) -> bool) -> bool {
        self.is_patient_key_in(actor, past) || !self.adds_in(actor, &self.id, past).is_empty()
    }

    /// The patient's keys in a causal past, from the record id to the current one, each
    /// with the rotation that made it current. Of concurrent rotations away from one key,
    /// a guardians' rotation wins over a planned one, then the smallest entry id.
    pub(crate) fn patient_chain_in(&self, past: &dyn Fn(&EntryId) -> bool) -> KeyChain {
        let mut chain: KeyChain = vec![(self.id, None)];
        for _ in 0..self.rotations_from.len() {
            let current = chain[chain.len() - 1].0;
            let next = self
                .rotations_from
                .get(&current)
                .into_iter()
                .flatten()
                .filter(|r| past(r))
                .min_by_key(|r| self.rotation_rank(r));
            let Some(r) = next else { break };
            let new = self.author_of(&self.nodes[r]);
            if chain.iter().any(|(k, _)| *k == new) {
                break;
            }
            chain.push((new, Some(*r)));
        }
        chain
    }

    /// The guardian set in effect for the last key of `chain`: the latest `SetGuardians` it
    /// wrote in the causal past, else the one in effect for the key before it in the past of
    /// the rotation that made it current, and so on.
    pub(crate) fn guardian_set_in(
        &self,
        chain: &[(ActorId, Option<EntryId>)],
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Option<Guardians> {
        let mut limit: Option<EntryId> = None;
        for (key, made_by) in chain.iter().rev() {
            let within = |id: &EntryId| match &limit {
                None => past(id),
                Some(l) => self.in_past(id, l),
            };
            let found = self
                .chains
                .get(&(*key, None))
                .into_iter()
                .flatten()
                .rev()
                .filter(|id| within(id))
                .find_map(|id| match self.nodes.get(id)?.payload()? {
                    Payload::SetGuardians {
                        guardians,
                        threshold,
                    } => Some(Guardians {
                        entry: *id,
                        guardians: guardians.clone(),
                        threshold: *threshold,
                    }),
                    _ => None,
                });
            if found.is_some() {
                return found;
            }
            limit = *made_by;
        }
        None
    }

    /// Whether an entry is in effect as far as keys go, given what is held: void if the
    /// rotation that made its author the patient key is void, if it is a rotation that
    /// lost to a concurrent one, if every device addition it relies on is void, or if a
    /// retirement of its author is held and no part of it in the entry's own stream has the
    /// entry in its causal past (`kept`).
    pub(crate) fn key_status(
        &self,
        id: &EntryId,
        author: &ActorId,
        rotates: Option<ActorId>,
        acting: &Acting,
        kept: &dyn Fn(&[EntryId]) -> bool,
        held: Held<'_>,
    ) -> Status {
        if let Some(r) = &acting.rotation {
            if let Some(Status::Void { revocation }) = self.status_held(r, held) {
                return Status::Void { revocation };
            }
        }
        if let Some(old) = rotates {
            let winner = self
                .rotations_from
                .get(&old)
                .into_iter()
                .flatten()
                .filter(|r| *r != id && held.has(r))
                .min_by_key(|r| self.rotation_rank(r));
            if let Some(w) = winner.filter(|w| self.rotation_rank(w) < self.rotation_rank(id)) {
                return Status::Void { revocation: *w };
            }
        }
        if acting.is_device()
            && acting
                .via
                .iter()
                .all(|a| self.status_held(a, held) != Some(Status::Valid))
        {
            let revocation = acting
                .via
                .iter()
                .map(|a| match self.status_held(a, held) {
                    Some(Status::Void { revocation }) => revocation,
                    _ => *a,
                })
                .min()
                .unwrap_or(acting.via[0]);
            return Status::Void { revocation };
        }
        if let Some(parts) = self.retirements.get(&(*author, acting.principal)) {
            let parts = held.narrow(parts);
            if let Some(main) = self.main_part(&parts) {
                if !kept(&parts) {
                    return Status::Void { revocation: main };
                }
            }
        }
        Status::Valid
    }

    /// Indexes a device or key entry being inserted; whether held entries' statuses may
    /// change because of it.
    pub(crate) fn index_keys(&mut self, id: EntryId, e: &Entry, acting: &Acting) -> bool {
        match &e.payload {
            Payload::AddDevice { device, .. } => {
                self.device_adds.entry(*device).or_default().push(id);
                false
            }
            // A member joining acts for the organisation as its device does.
            Payload::JoinOrg { .. } => {
                self.device_adds.entry(e.author).or_default().push(id);
                false
            }
            Payload::RemoveDevice { device, .. } => {
                self.retirements
                    .entry((*device, acting.principal))
                    .or_default()
                    .push(id);
                true
            }
            Payload::RotateKey { old, .. } => {
                self.rotations_from.entry(*old).or_default().push(id);
                self.retirements
                    .entry((*old, self.id))
                    .or_default()
                    .push(id);
                true
            }
            Payload::RotationPart { rotation, .. } => {
                let old = match self.nodes.get(rotation).and_then(Node::payload) {
                    Some(Payload::RotateKey { old, .. }) => *old,
                    _ => return false,
                };
                self.retirements.entry((old, self.id)).or_default().push(id);
                true
            }
            _ => false,
        }
    }

    /// Whether a held entry is a device addition.
    pub(crate) fn is_device_add(&self, id: &EntryId) -> bool {
        self.get(id).is_some_and(|v| {
            matches!(
                v.entry().payload,
                Payload::AddDevice { .. } | Payload::JoinOrg { .. }
            )
        })
    }

    /// Recomputes, in causal order, the status of every entry by a patient key or a
    /// device. Returns those that were in effect and became void.
    pub(crate) fn recompute_keys(&mut self) -> Vec<EntryId> {
        let mut voided = Vec::new();
        let patient = self.actors.find(&self.id);
        let held: Vec<super::Ix> = self.nodes.held_positions().collect();
        for i in held {
            let n = self.nodes.at(i);
            if Some(n.principal) != patient && !n.device {
                continue;
            }
            let status = self.compute_status(n);
            if status != *self.status_of(n) {
                let id = n.h.id;
                if !n.void {
                    voided.push(id);
                }
                self.set_status(&id, status);
            }
        }
        voided
    }

    /// Everything a device removal writes: a part in each category stream held where the
    /// device wrote, then the administrative part.
    pub(crate) fn prepare_removal(
        &self,
        key: &crate::keys::Keypair,
        device: ActorId,
        reason: String,
        now: Timestamp,
        label: Option<String>,
    ) -> Result<Vec<Verified>, Rejection> {
        let streams: Vec<Stream> = self
            .streams()
            .into_iter()
            .filter(|s| s.is_some() && !self.author_chain(&device, s).is_empty())
            .chain(std::iter::once(None))
            .collect();
        let mut trial = self.clone();
        let mut out = Vec::new();
        for category in streams {
            let payload = Payload::RemoveDevice {
                device,
                category,
                reason: reason.clone(),
            };
            let v = trial.prepare_as(key, payload, now, label.clone())?;
            trial.apply(v.clone())?;
            out.push(v);
        }
        Ok(out)
    }

    /// Everything a rotation writes: the `RotateKey` (by the new key), then a
    /// `RotationPart` in each category stream held where the old key wrote.
    pub(crate) fn prepare_rotation(
        &self,
        key: &crate::keys::Keypair,
        payload: Payload,
        now: Timestamp,
        label: Option<String>,
    ) -> Result<Vec<Verified>, Rejection> {
        let Payload::RotateKey { old, .. } = &payload else {
            return Ok(vec![self.prepare_as(key, payload, now, label)?]);
        };
        let old = *old;
        let r = self.prepare(key, payload, None, now, label.clone())?;
        let mut trial = self.clone();
        trial.apply(r.clone())?;
        let mut out = vec![r.clone()];
        for s in self.streams() {
            let Some(category) = s.clone() else { continue };
            if self.author_chain(&old, &s).is_empty() {
                continue;
            }
            let part = Payload::RotationPart {
                rotation: r.id(),
                category,
            };
            let v = trial.prepare(key, part, None, now, label.clone())?;
            trial.apply(v.clone())?;
            out.push(v);
        }
        Ok(out)
    }

    /// The patient's keys, from the record id to the current one.
    pub fn patient_keys(&self) -> Vec<ActorId> {
        self.patient_chain_in(&|_| true)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// The patient's current key (the record id until a rotation).
    pub fn current_patient_key(&self) -> ActorId {
        let chain = self.patient_chain_in(&|_| true);
        chain[chain.len() - 1].0
    }

    /// Whether `actor` is the patient's current key.
    pub fn is_patient_key(&self, actor: &ActorId) -> bool {
        *actor == self.current_patient_key()
    }

    /// Whether `actor` is or was a patient key (the record id, or a key rotated to).
    pub fn is_patient_key_ever(&self, actor: &ActorId) -> bool {
        self.patient_keys().contains(actor)
    }

    /// Whether `actor` acts as the patient now: the current patient key, or a device of
    /// the patient not removed (and whose addition is in effect). The one question for
    /// "is this the patient?" (sync's patient-only requests, the viewer, the CLI).
    pub fn is_patient(&self, actor: &ActorId) -> bool {
        self.is_patient_key(actor) || self.owners_of(actor).contains(&self.id)
    }

    /// The people a device acts for now (the record id stands for the patient): those
    /// whose addition of it is in effect and who have not removed it. Patient first.
    pub fn owners_of(&self, device: &ActorId) -> Vec<ActorId> {
        let mut out: BTreeSet<(bool, ActorId)> = BTreeSet::new();
        for a in self.device_adds.get(device).into_iter().flatten() {
            let Some(n) = self.nodes.get(a) else { continue };
            let p = self.principal_of(n);
            let removed = self
                .retirements
                .get(&(*device, p))
                .is_some_and(|r| !r.is_empty());
            if !n.void && !removed {
                out.insert((p != self.id, p));
            }
        }
        out.into_iter().map(|(_, p)| p).collect()
    }

    /// Those who removed `device` (as their device, or an organisation as its member) and
    /// the removal's parts in effect, one per stream it was written in; not those who
    /// added it again since. Sorted by person.
    pub fn removals_of(&self, device: &ActorId) -> Vec<(ActorId, Vec<EntryId>)> {
        let owners = self.owners_of(device);
        let mut out: Vec<(ActorId, Vec<EntryId>)> = self
            .retirements
            .iter()
            .filter(|((d, p), _)| d == device && !owners.contains(p))
            .map(|((_, p), parts)| {
                let parts: Vec<EntryId> = parts
                    .iter()
                    .filter(|r| self.status(r) == Some(&Status::Valid))
                    .copied()
                    .collect();
                (*p, parts)
            })
            .filter(|(_, parts)| !parts.is_empty())
            .collect();
        out.sort_by_key(|(p, _)| *p);
        out
    }

    /// Whose rights `actor` exercises now: the patient (the record id) for the current
    /// patient key or a patient's device; the owner for another person's device (the
    /// first by [`Record::owners_of`]); the actor itself for anyone else. `None` for a
    /// retired patient key or a device removed by every owner.
    pub fn acts_for(&self, actor: &ActorId) -> Option<ActorId> {
        if self.is_patient(actor) {
            return Some(self.id);
        }
        if self.is_patient_key_in(actor, &|_| true) {
            return None;
        }
        if let Some(o) = self.owners_of(actor).first() {
            return Some(*o);
        }
        if self.device_adds.contains_key(actor) {
            return None;
        }
        Some(*actor)
    }

    /// The devices `person` added (the record id for the patient's), removed ones included,
    /// oldest first.
    pub fn devices_of(&self, person: &ActorId) -> Vec<DeviceInfo> {
        let mut out: Vec<DeviceInfo> = Vec::new();
        for (device, adds) in &self.device_adds {
            let first = adds
                .iter()
                .filter_map(|a| self.nodes.get(a).map(|n| (a, n)))
                .filter(|(_, n)| self.principal_of(n) == *person)
                .min_by_key(|(a, n)| (n.h.time, **a));
            let Some((a, n)) = first else { continue };
            let Some(Payload::AddDevice { label, .. }) = n.payload() else {
                continue;
            };
            let parts = self.retirements.get(&(*device, *person));
            let removed = parts.and_then(|p| {
                p.iter()
                    .find(|r| self.stream_of(r) == Some(&None))
                    .or(p.first())
                    .copied()
            });
            out.push(DeviceInfo {
                device: *device,
                label: label.clone(),
                added: *a,
                time: n.h.time,
                removed,
            });
        }
        out.sort_by_key(|d| (d.time, d.added));
        out
    }

    /// The guardians in effect for the current patient key, if any were named.
    pub fn guardians(&self) -> Option<Guardians> {
        let chain = self.patient_chain_in(&|_| true);
        self.guardian_set_in(&chain, &|_| true)
    }

    /// What the approvals of a rotation from the current patient key to `new` sign: over
    /// the guardian set in effect, or (`planned`) over none, for the old key to approve.
    pub fn rotation_claim(&self, new: &ActorId, planned: bool) -> RotationClaim {
        RotationClaim {
            record: self.id,
            old: self.current_patient_key(),
            new: *new,
            guardians: if planned {
                None
            } else {
                self.guardians().map(|g| g.entry)
            },
        }
    }
}
