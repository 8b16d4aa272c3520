//! What a node does for organisations ([`cophr_protocol::org`]), in the store: a member's
//! node joins a record before acting in it (see `Session::join_if_member`); an
//! organisation's node gives its members the epoch keys it holds, and writes the removal
//! of a member its own record removed into every record the member joined.

use cophr_protocol::entry::Payload;
use cophr_protocol::{ActorId, Keypair, RecordId, Timestamp};

use super::{Store, StoreError};

/// What an organisation's node did for one record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrgDuties {
    /// Key-wrap entries giving members the organisation's keys.
    pub keys_given: usize,
    /// Members whose removal was written into the record.
    pub removed: Vec<ActorId>,
}

impl Store {
    /// For a node whose identity is an organisation (it holds its own record, the record
    /// id being its key, with members in it): in `record`, removes every member the
    /// organisation's record removed who joined here and whose removal is not here yet
    /// (a `RemoveDevice` as the organisation; a new epoch follows in each sealed stream),
    /// then gives the members still joined the epoch keys held here. Nothing for a node
    /// that is no organisation, or a record the organisation has no grant in.
    pub fn org_duties(
        &self,
        record: &RecordId,
        org: &Keypair,
        now: Timestamp,
    ) -> Result<OrgDuties, StoreError> {
        let me = org.actor();
        let mut done = OrgDuties::default();
        if *record == me || !self.holds(&me)? {
            return Ok(done);
        }
        let departed = {
            let own = self.handle(&me)?;
            let own = own.read().unwrap_or_else(|p| p.into_inner());
            if !own.has_members() {
                return Ok(done);
            }
            self.with_record(record, |r| r.departed_members(&own))?
        };
        for member in departed {
            self.write(
                record,
                org,
                Payload::RemoveDevice {
                    device: member,
                    category: None,
                    reason: "removed from the organisation".into(),
                },
                now,
                None,
            )?;
            done.removed.push(member);
        }
        let h = self.handle(record)?;
        let mut r = self.write_lock(record, &h)?;
        if !r.unlocked_for(&me) {
            r.unlock(org);
        }
        let all = r.prepare_member_keys(org, now, &None, &mut rand_core::OsRng)?;
        done.keys_given = all.len();
        if !all.is_empty() {
            self.commit(
                record,
                &mut r,
                org,
                all,
                cophr_protocol::audit::Action::Keys,
                Some("keys given to the organisation's members".into()),
                None,
                now,
            )?;
        }
        Ok(done)
    }

    /// The records held here, other than the organisation's own, that `member` joined
    /// for the organisation `org` and was not removed from yet.
    pub fn joined_by(&self, member: &ActorId, org: &ActorId) -> Result<Vec<RecordId>, StoreError> {
        let mut out = Vec::new();
        for id in self.records()? {
            if id == *org {
                continue;
            }
            let joined = self.with_record(&id, |r| {
                r.joined_members()
                    .iter()
                    .any(|m| m.member == *member && m.org == *org && m.removed.is_none())
            })?;
            if joined {
                out.push(id);
            }
        }
        Ok(out)
    }
}
