//! Conversations on the record's side ([`crate::care::thread`]): which thread an entry is
//! in, who takes part, the gate's rules for writing into a thread, and (in `fold.rs`) the
//! read rule.
//!
//! The gate reads only what every replica reads alike: plain content and the envelope.
//! Sealed content is checked by its writer before it seals ([`Record::prepare_sealed`]),
//! and readers that open it apply the read rule to what they open (an entry claiming a
//! thread its author does not take part in is shown to no one but the patient and its
//! author).

use std::borrow::Cow;

use super::{Record, Rejection};
use crate::care::thread::{self, Shape, ThreadError};
use crate::category::Category;
use crate::entry::Payload;
use crate::ids::{ActorId, EntryId};

/// How deep annotations of annotations are followed to find a thread.
const MAX_ANNOTATION_DEPTH: usize = 8;

impl Record {
    /// An entry's payload: opened when `open` and sealed content is held open here, else
    /// as signed.
    fn payload_for(&self, id: &EntryId, open: bool) -> Option<Cow<'_, Payload>> {
        if open {
            return self.payload(id);
        }
        let n = self.nodes.get(id)?;
        match n.payload() {
            Some(p) => Some(Cow::Borrowed(p)),
            None => Some(Cow::Owned(self.entry_of(id, n)?.entry().payload.clone())),
        }
    }

    /// The thread shape of the item a create, amend or delete in `messages` belongs to
    /// (read from the item's create), if readable.
    fn item_shape(&self, id: &EntryId, open: bool) -> Option<Shape> {
        let n = self.nodes.get(id)?;
        if self.node_category(n) != Some(&Category::Messages) {
            return None;
        }
        let root = self.nodes.id_at(n.root).unwrap_or(*id);
        match &*self.payload_for(&root, open)? {
            Payload::Create { body, .. } => thread::shape(body).ok(),
            _ => None,
        }
    }

    /// [`Record::thread_of`], from the content as opened here (`open`) or as signed (what a
    /// relay that opens nothing reads: `None` for sealed content).
    pub(crate) fn thread_of_in(&self, id: &EntryId, open: bool) -> Option<EntryId> {
        let mut cur = *id;
        for _ in 0..MAX_ANNOTATION_DEPTH {
            let n = self.nodes.get(&cur)?;
            if self.node_category(n) != Some(&Category::Messages) {
                return None;
            }
            if n.h.is_annotate() {
                cur = self.payload_for(&cur, false)?.target()?;
                continue;
            }
            let root = self.nodes.id_at(n.root).unwrap_or(cur);
            return match self.item_shape(&cur, open)? {
                Shape::Start(_) => Some(root),
                Shape::In(t) => Some(t),
                Shape::Loose => None,
            };
        }
        None
    }

    /// The thread an entry of `messages` is in (its start's id): a thread's start, a
    /// message in it, their versions and their annotations (read receipts). `None` for an
    /// entry outside any thread, or whose content is sealed and not opened here.
    pub fn thread_of(&self, id: &EntryId) -> Option<EntryId> {
        self.thread_of_in(id, true)
    }

    fn participants_in(&self, thread: &EntryId, open: bool) -> Option<Vec<ActorId>> {
        let n = self.nodes.get(thread)?;
        if !n.h.is_create() {
            return None;
        }
        let Shape::Start(mut named) = self.item_shape(thread, open)? else {
            return None;
        };
        for p in [self.id, self.principal_of(n)] {
            if !named.contains(&p) {
                named.push(p);
            }
        }
        named.sort();
        Some(named)
    }

    /// Who takes part in the thread started by `thread`: those its start names, the
    /// patient (the record id) and whoever started it. `None` when `thread` is not a
    /// thread's start (or is sealed and not opened here).
    pub fn thread_participants(&self, thread: &EntryId) -> Option<Vec<ActorId>> {
        self.participants_in(thread, true)
    }

    /// The starts of every thread held and readable here, oldest first.
    pub fn thread_starts(&self) -> Vec<EntryId> {
        self.nodes
            .values()
            .filter(|n| {
                n.h.is_create()
                    && self.node_category(n) == Some(&Category::Messages)
                    && matches!(self.item_shape(&n.h.id, true), Some(Shape::Start(_)))
            })
            .map(|n| n.h.id)
            .collect()
    }

    /// The entries of a thread held and readable here, in the order applied: its start,
    /// the messages in it, their versions and annotations.
    pub fn thread_entries(&self, thread: &EntryId) -> Vec<EntryId> {
        self.nodes
            .values()
            .filter(|n| self.node_category(n) == Some(&Category::Messages))
            .filter(|n| self.thread_of(&n.h.id) == Some(*thread))
            .map(|n| n.h.id)
            .collect()
    }

    /// Whether `actor` may take part in a new thread at the causal position `past`
    /// describes: the patient, or the grantee of a grant in the past, in effect there
    /// (not revoked in the past), that reads `messages`.
    fn may_take_part(&self, actor: &ActorId, past: &dyn Fn(&EntryId) -> bool) -> bool {
        if *actor == self.id || self.is_patient_in(actor, past) {
            return true;
        }
        self.grants().any(|g| {
            g.grant.grantee == *actor
                && past(&g.id)
                && g.grant.level.reads()
                && g.grant.scope.covers(&Category::Messages)
                && !g.revoked_by.iter().any(past)
                && self
                    .chain(g.id)
                    .iter()
                    .all(|l| !l.revoked_by.iter().any(past))
        })
    }

    /// The threads' rules for an entry in `messages` by someone acting for `principal`
    /// (see [`crate::care::thread`]). `open`: read sealed content opened here (the writer,
    /// before sealing); the gate reads only plain content, as every replica can.
    pub(crate) fn check_thread(
        &self,
        payload: &Payload,
        principal: &ActorId,
        category: Option<&Category>,
        past: &dyn Fn(&EntryId) -> bool,
        open: bool,
    ) -> Result<(), Rejection> {
        if category != Some(&Category::Messages) {
            return Ok(());
        }
        let member = |thread: &EntryId| -> Result<(), Rejection> {
            match self.participants_in(thread, open) {
                Some(p) if p.contains(principal) => Ok(()),
                Some(_) => Err(ThreadError::NotParticipant {
                    thread: *thread,
                    actor: *principal,
                }
                .into()),
                None => Err(ThreadError::NotAThread(*thread).into()),
            }
        };
        match payload {
            Payload::Create { body, .. } | Payload::Amend { body, .. } => {
                let after = thread::shape(body)?;
                if let Payload::Amend { target, .. } = payload {
                    if let Some(before) = self.item_shape(target, open) {
                        thread::check_version(&before, &after)?;
                    }
                }
                match &after {
                    Shape::Loose => {}
                    Shape::Start(named) => {
                        if let Payload::Create { .. } = payload {
                            if let Some(p) = named
                                .iter()
                                .find(|p| *p != principal && !self.may_take_part(p, past))
                            {
                                return Err(ThreadError::NoAccess(*p).into());
                            }
                        }
                    }
                    Shape::In(t) => {
                        if !past(t) {
                            return Err(ThreadError::NotAThread(*t).into());
                        }
                        member(t)?;
                        if let Some(r) = thread::reply_to(body) {
                            let here =
                                past(&r) && (r == *t || self.thread_of_in(&r, open) == Some(*t));
                            if !here {
                                return Err(ThreadError::ReplyElsewhere(r).into());
                            }
                        }
                    }
                }
            }
            Payload::Annotate { target, .. }
            | Payload::Delete { target, .. }
            | Payload::SealedAnnotate { target, .. }
            | Payload::SealedDelete { target, .. }
            | Payload::SealedAmend { target, .. } => {
                if let Some(t) = self.thread_of_in(target, open) {
                    member(&t)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl Record {
    /// The person an entry's author acts for (the record id for the patient).
    pub fn person_of(&self, id: &EntryId) -> Option<ActorId> {
        self.nodes.get(id).map(|n| self.principal_of(n))
    }

    /// Who has marked a thread's entry read ([`crate::care::thread::READ_MARK`]): the
    /// person each receipt's author acts for, with the receipt, oldest first, without
    /// repeats. Receipts held but not readable here (sealed, not opened) are left out.
    pub fn read_by(&self, id: &EntryId) -> Vec<(ActorId, EntryId)> {
        let mut out: Vec<(ActorId, EntryId)> = Vec::new();
        for a in self.annotations_of(id) {
            let is_mark = matches!(self.payload(a).as_deref(),
                Some(Payload::Annotate { text, .. }) if thread::is_read_mark(text));
            let Some(n) = self.nodes.get(a) else { continue };
            let who = self.principal_of(n);
            if is_mark && !out.iter().any(|(p, _)| *p == who) {
                out.push((who, *a));
            }
        }
        out
    }
}
