//! `cophr org`: a care organisation's staff — members added and removed by its
//! administrators, and a member's side (using the proof of membership they were given).

use clap::{Args, Subcommand};
use cophr_node::session::Cancel;
use cophr_node::store::memberships::{org_of, proof_from_text, proof_to_text};
use cophr_protocol::entry::Payload;
use cophr_protocol::org::{self, MemberInfo, Role};
use cophr_protocol::{ActorId, RecordId};
use serde_json::json;

use crate::context::{self, Ctx, Out};
use crate::error::{parse_id, CliError, Result};
use crate::output::{self, Table};

/// A care organisation's staff. The organisation's own record (`cophr record create` on
/// its node, its key attested as an organisation) holds its membership: administrators
/// (the organisation's key and its devices, `cophr device add`) add members with a role
/// and remove them. A patient grants the organisation once (`cophr grant ORG_KEY …`); each
/// member then acts under that grant, narrowed by their role, from the proof of
/// membership they are given (`cophr org proof` here, `cophr org use` on their node). A
/// removed member writes nothing from the removal on and pulls only the removal itself
/// (so their node knows); what they wrote before stays.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Add a member of staff with a role (administrators only)
    AddMember(AddArgs),
    /// Remove a member of staff, from now on, in every record they joined
    RemoveMember(RemoveArgs),
    /// List the organisation's members, removed ones included
    Members(Out),
    /// Print a member's proof of membership, to give to them
    Proof(ProofArgs),
    /// On a member's node: keep the proof of membership you were given
    Use(UseArgs),
}

/// `cophr org add-member`.
#[derive(Args, Debug)]
#[command(
    after_help = "Roles: clinician, nurse, doctor, pharmacist (everything the patient's \
grant allows), receptionist (demographics and appointments), viewer (view only).\n\nExample:\n  \
cophr org add-member a-… --role nurse --label \"Nurse Jo Bloggs\""
)]
pub struct AddArgs {
    /// The member's actor id (`a-…`: `cophr whoami` on their node)
    member: String,
    /// Their role: what they may do under the organisation's grants
    #[arg(long)]
    role: String,
    /// Who they are (e.g. "Nurse Jo Bloggs")
    #[arg(long)]
    label: String,
    #[command(flatten)]
    out: Out,
}

/// `cophr org remove-member`.
#[derive(Args, Debug)]
pub struct RemoveArgs {
    /// The member's actor id (see `cophr org members`)
    member: String,
    /// Why (kept in the records, e.g. "left the service")
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    out: Out,
}

/// `cophr org proof`.
#[derive(Args, Debug)]
pub struct ProofArgs {
    /// The member's actor id
    member: String,
    #[command(flatten)]
    out: Out,
}

/// `cophr org use`.
#[derive(Args, Debug)]
pub struct UseArgs {
    /// The proof of membership (`cophr-membership:…`, from `cophr org proof`)
    proof: String,
    #[command(flatten)]
    out: Out,
}

/// Runs `org`.
pub fn run(ctx: &Ctx, cmd: Command) -> Result<()> {
    match cmd {
        Command::AddMember(a) => add(ctx, a),
        Command::RemoveMember(a) => remove(ctx, a),
        Command::Members(out) => members(ctx, out),
        Command::Proof(a) => proof(ctx, a),
        Command::Use(a) => use_proof(ctx, a),
    }
}

/// The organisation's own record, which the caller administers (its key or its device).
fn org_record(ctx: &Ctx, store: &cophr_node::store::Store, me: &ActorId) -> Result<RecordId> {
    let record = ctx.record(store, Some(me))?;
    let admin = store.with_record(&record, |r| r.is_patient(me))?;
    if !admin {
        return Err(CliError::access(format!(
            "you administer no organisation here: record {record} is not yours (create the \
             organisation's own record with `cophr record create` on its node)"
        )));
    }
    Ok(record)
}

fn parse_role(name: &str) -> Result<Role> {
    Role::preset(name.trim()).ok_or_else(|| {
        CliError::new(
            crate::error::Code::Usage,
            format!(
            "unknown role `{name}` (expected clinician, nurse, doctor, pharmacist, receptionist \
             or viewer)"
        ),
        )
    })
}

fn add(ctx: &Ctx, args: AddArgs) -> Result<()> {
    let member: ActorId = parse_id("member", &args.member)?;
    let role = parse_role(&args.role)?;
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = org_record(ctx, &store, &me.actor())?;
    let id = context::write(
        ctx,
        &store,
        &me,
        &record,
        Payload::AddMember {
            member,
            role: role.clone(),
            label: args.label.trim().to_owned(),
        },
    )?;
    if ctx.json(args.out) {
        return output::json(&json!({
            "organisation": record, "member": member, "role": role.name, "added": id,
        }));
    }
    output::line(format!(
        "{member} ({}) is a member as {role} ({id}).",
        args.label.trim()
    ))?;
    output::line(format!(
        "Give them their proof of membership: `cophr org proof {member}`."
    ))
}

fn remove(ctx: &Ctx, args: RemoveArgs) -> Result<()> {
    let member: ActorId = parse_id("member", &args.member)?;
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = org_record(ctx, &store, &me.actor())?;
    let reason = args.reason.trim().to_owned();
    let (id, records) = context::session(ctx, &store, &me)
        .remove_member(&record, member, &reason, ctx.now()?)
        .map_err(context::session_error)?;
    if ctx.json(args.out) {
        return output::json(&json!({
            "organisation": record, "member": member, "removed": id, "records": records,
        }));
    }
    output::line(format!(
        "{member} is no longer a member ({id}); removed from {} record(s) they joined.",
        records.len()
    ))
}

fn members(ctx: &Ctx, out: Out) -> Result<()> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let session = context::session(ctx, &store, &me);
    let list: Vec<MemberInfo> = session.read(&Cancel::new(), now, |rd| {
        rd.record(&record, |r, seen| {
            let viewer = r.viewer(&me.actor(), now);
            if !viewer.has_access() {
                return Err(CliError::access("no access to this record"));
            }
            let list = r.members();
            seen.add(list.iter().map(|m| m.added));
            seen.detail(format!("members: {}", list.len()));
            Ok(list)
        })?
    })?;
    if ctx.json(out) {
        return output::json(&json!({
            "organisation": record,
            "members": list.iter().map(|m| json!({
                "member": m.member,
                "role": m.role.name,
                "level": m.role.level.name(),
                "scope": m.role.scope.to_string(),
                "label": m.label,
                "added": m.added,
                "removed": m.removed,
            })).collect::<Vec<_>>(),
        }));
    }
    if list.is_empty() {
        return output::line("The organisation has no members yet.");
    }
    let mut t = Table::new(&["MEMBER", "LABEL", "ROLE", "STATUS"]);
    for m in &list {
        t.row(vec![
            m.member.to_string(),
            m.label.clone(),
            m.role.to_string(),
            match m.removed {
                Some(r) => format!("removed ({})", r.short()),
                None => "member".into(),
            },
        ]);
    }
    output::print(&t.render())
}

fn proof(ctx: &Ctx, args: ProofArgs) -> Result<()> {
    let member: ActorId = parse_id("member", &args.member)?;
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = org_record(ctx, &store, &me.actor())?;
    let proof = store
        .with_record(&record, |r| r.membership_proof(&member))?
        .ok_or_else(|| CliError::not_found(format!("{member} is not a member now")))?;
    let text = proof_to_text(&proof);
    if ctx.json(args.out) {
        return output::json(&json!({ "organisation": record, "member": member, "proof": text }));
    }
    output::line(text)
}

fn use_proof(ctx: &Ctx, args: UseArgs) -> Result<()> {
    let me = ctx.identity()?;
    let proof = proof_from_text(&args.proof).map_err(|e| CliError::invalid(e.to_string()))?;
    let org = org_of(&proof)
        .ok_or_else(|| CliError::invalid("the proof of membership is not an organisation's"))?;
    let role = org::verify_membership(&org, &me.actor(), &proof)
        .map_err(|e| CliError::invalid(format!("the proof of membership does not hold: {e}")))?
        .0;
    let store = ctx.store()?;
    store.keep_membership(&org, proof)?;
    if ctx.json(args.out) {
        return output::json(&json!({ "organisation": org, "role": role.name }));
    }
    output::line(format!(
        "You act for organisation {org} as {role} in the records it is granted: `cophr follow \
         RECORD` replicates one; your first action there joins it."
    ))
}
