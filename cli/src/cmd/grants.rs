//! `cophr grants`: who has access.

use clap::Args as ClapArgs;
use cophr_node::session::Cancel;
use cophr_protocol::record::{GrantInfo, Record};
use cophr_protocol::{ActorId, EntryId, GrantStatus, Level, Timestamp};
use serde::Serialize;

use crate::context::{self, Ctx, Out};
use crate::error::{CliError, Result};
use crate::output::{self, yes_no, Person, Table};
use crate::times;

/// List the record's grants you may see (all of them for the patient and for those with the
/// audit right; otherwise your own): grantee, level, categories, rights, period and status.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Only grants that have not ended (active or not yet valid; not revoked, under a
    /// revoked grant, expired or void)
    #[arg(long)]
    active: bool,

    #[command(flatten)]
    out: Out,
}

/// One grant, as shown.
#[derive(Debug, Serialize)]
struct GrantOut {
    grant: EntryId,
    grantee: Person,
    label: Option<String>,
    level: Level,
    categories: String,
    audit: bool,
    delegate: bool,
    from: Option<String>,
    until: Option<String>,
    status: GrantStatus,
    issued_by: Person,
    issued: String,
    parent: Option<EntryId>,
    revoked_by: Vec<EntryId>,
    /// For a grant to an organisation: its members who joined the record (as far as the
    /// record knows them), removed ones included.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    members: Vec<MemberOut>,
}

/// A member of an organisation, as a grant to it shows them.
#[derive(Debug, Serialize)]
struct MemberOut {
    member: Person,
    role: String,
    label: String,
    joined: EntryId,
    removed: Option<EntryId>,
}

fn list(r: &Record, me: &ActorId, now: Timestamp, active: bool) -> Result<Vec<GrantOut>> {
    let viewer = r.viewer(me, now);
    if !viewer.has_access() {
        return Err(CliError::access("no access to this record"));
    }
    let mut grants: Vec<&GrantInfo> = r.grants().filter(|g| r.can_see(&viewer, &g.id)).collect();
    grants.sort_by_key(|g| (g.time, g.id));
    Ok(grants
        .into_iter()
        .filter_map(|g| Some((g, r.grant_status(&g.id, now)?)))
        .filter(|(_, s)| !active || !s.has_ended())
        .map(|(g, s)| GrantOut {
            grant: g.id,
            grantee: Person::of(r, &g.grant.grantee, None),
            label: g.grant.label.clone(),
            level: g.grant.level,
            categories: g.grant.scope.to_string(),
            audit: g.grant.audit,
            delegate: g.grant.delegate,
            from: g.grant.not_before.map(times::format),
            until: g.grant.until.map(times::format),
            status: s,
            issued_by: Person::of(r, &g.issuer, None),
            issued: times::format(g.time),
            parent: g.parent,
            revoked_by: g.revoked_by.clone(),
            members: r
                .joined_members()
                .into_iter()
                .filter(|m| m.org == g.grant.grantee)
                .map(|m| MemberOut {
                    member: Person::of(r, &m.member, None),
                    role: m.role.to_string(),
                    label: m.label,
                    joined: m.joined,
                    removed: m.removed,
                })
                .collect(),
        })
        .collect())
}

/// Runs `grants`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let session = context::session(ctx, &store, &me);
    let grants = session.read(&Cancel::new(), now, |rd| {
        rd.record(&record, |r, seen| {
            let grants = list(r, &me.actor(), now, args.active)?;
            seen.add(grants.iter().map(|g| g.grant));
            seen.detail(format!("grants: {}", grants.len()));
            Ok::<_, CliError>(grants)
        })?
    })?;
    if ctx.json(args.out) {
        return output::json(&serde_json::json!({ "record": record, "grants": grants }));
    }
    if grants.is_empty() {
        return output::line("No grants you may see.");
    }
    let mut t = Table::new(&[
        "GRANT",
        "GRANTEE",
        "LABEL",
        "LEVEL",
        "CATEGORIES",
        "AUDIT",
        "DELEGATE",
        "PERIOD",
        "STATUS",
        "ISSUED BY",
    ]);
    for g in &grants {
        let period = match (&g.from, &g.until) {
            (None, None) => "always".to_owned(),
            (Some(f), None) => format!("from {f}"),
            (None, Some(u)) => format!("until {u}"),
            (Some(f), Some(u)) => format!("{f} to {u}"),
        };
        t.row(vec![
            g.grant.short(),
            match &g.grantee.name {
                Some(_) => format!("{} {}", g.grantee.short(), g.grantee.id.short()),
                None => g.grantee.id.to_string(),
            },
            g.label.clone().unwrap_or_default(),
            g.level.to_string(),
            g.categories.clone(),
            yes_no(g.audit),
            yes_no(g.delegate),
            period,
            g.status.to_string(),
            g.issued_by.short(),
        ]);
    }
    output::print(&t.render())?;
    for g in grants.iter().filter(|g| !g.members.is_empty()) {
        output::line(format!(
            "\nMembers of {} acting under grant {}:",
            g.grantee.short(),
            g.grant.short()
        ))?;
        let mut t = Table::new(&["MEMBER", "LABEL", "ROLE", "STATUS"]);
        for m in &g.members {
            t.row(vec![
                m.member.short(),
                m.label.clone(),
                m.role.clone(),
                match m.removed {
                    Some(r) => format!("removed ({})", r.short()),
                    None => "member".into(),
                },
            ]);
        }
        output::print(&t.render())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cophr_protocol::testkit::{grant, key, Fixture};
    use cophr_protocol::{Category, Payload};

    /// A grant Mary delegated stops showing as active once George revokes Mary's own.
    #[test]
    fn a_grant_delegated_under_a_revoked_one_shows_parent_revoked() {
        let mut f = Fixture::new(21, "George");
        let george = f.patient.clone();
        let mary = key(21, "Mary");
        let son = key(21, "Son");
        let marys = f.grant(grant(&mary, Level::Delete, &[], true, true));
        let sons = f
            .write(
                &mary,
                Payload::Grant(grant(
                    &son,
                    Level::View,
                    &[Category::Allergies],
                    false,
                    false,
                )),
            )
            .unwrap()
            .id();
        f.write(
            &george,
            Payload::Revoke {
                grant: marys,
                category: None,
                reason: "moved away".into(),
            },
        )
        .unwrap();
        let shown = list(&f.record, &george.actor(), f.now, false).unwrap();
        let status = |id: EntryId| shown.iter().find(|g| g.grant == id).unwrap().status;
        assert_eq!(status(marys), GrantStatus::Revoked);
        assert_eq!(status(sons), GrantStatus::ParentRevoked);
        let json = serde_json::to_value(shown.iter().find(|g| g.grant == sons).unwrap()).unwrap();
        assert_eq!(json["status"], "parent-revoked");
        // `--active` leaves out both.
        assert!(list(&f.record, &george.actor(), f.now, true)
            .unwrap()
            .is_empty());
    }
}
