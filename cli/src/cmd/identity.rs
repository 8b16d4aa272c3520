//! `cophr identity`: attestations of who you are, from identity assurance services.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use cophr_protocol::entry::MAX_PROFILE_ATTESTATIONS;
use cophr_protocol::trust::attestation::MAX_ATTESTATION_BYTES;
use cophr_protocol::trust::{AttestationId, SignedAttestation};

use crate::context::{self, Ctx, Out};
use crate::error::{CliError, Result};
use crate::home::read_limited;
use crate::output::{self, Table};

/// Your verified identity: add an attestation an identity assurance service (AIS) issued
/// you, see how this home assesses yours, or remove one. Attestations are published with
/// your profile in every record you write into, so others can see you are who you say.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Add an attestation (a file from `cophr ais attest` or `cophr ais request`)
    Add(AddArgs),
    /// Show your attestations and how this home's trust list assesses them
    Show(Out),
    /// Remove an attestation (`t-…`) from your profile
    Remove(RemoveArgs),
}

/// `cophr identity add`.
#[derive(Args, Debug)]
pub struct AddArgs {
    /// The attestation file (its signed CBOR, or that as base64url text)
    pub file: PathBuf,
}

/// `cophr identity remove`.
#[derive(Args, Debug)]
pub struct RemoveArgs {
    /// The attestation's id (`t-…`)
    pub id: String,
}

/// Runs `identity`.
pub fn run(ctx: &Ctx, cmd: Command) -> Result<()> {
    match cmd {
        Command::Add(a) => add(ctx, a),
        Command::Show(out) => show(ctx, out),
        Command::Remove(a) => remove(ctx, a),
    }
}

/// Reads an attestation file: CBOR bytes or base64url text; decoded and verified.
pub fn read_attestation(path: &std::path::Path) -> Result<SignedAttestation> {
    let path = output::resolve(path);
    let bytes = read_limited(&path, (MAX_ATTESTATION_BYTES * 2) as u64)?;
    let decoded = match std::str::from_utf8(&bytes) {
        Ok(text) => SignedAttestation::from_text(text.trim()),
        Err(_) => SignedAttestation::decode(&bytes),
    };
    decoded.map_err(|e| {
        CliError::new(
            crate::error::Code::Verify,
            format!("{} is not a valid attestation: {e}", path.display()),
        )
    })
}

fn add(ctx: &Ctx, a: AddArgs) -> Result<()> {
    let mut me = ctx.identity()?;
    let att = read_attestation(&a.file)?;
    if att.attestation.subject != me.actor() {
        return Err(CliError::invalid(format!(
            "this attestation is about {}, not about you ({})",
            att.attestation.subject,
            me.actor()
        )));
    }
    let now = ctx.now()?;
    if now > att.attestation.not_after {
        return Err(CliError::invalid("this attestation has expired"));
    }
    let id = att.id();
    let mut kept: Vec<SignedAttestation> = me
        .info
        .signed_attestations()
        .into_iter()
        .filter(|x| x.id() != id && now <= x.attestation.not_after)
        .collect();
    if kept.len() >= MAX_PROFILE_ATTESTATIONS {
        return Err(CliError::invalid(format!(
            "a profile carries at most {MAX_PROFILE_ATTESTATIONS} attestations: remove one \
             first (`cophr identity remove t-…`)"
        )));
    }
    kept.push(att.clone());
    me.info.attestations = kept.iter().map(SignedAttestation::to_text).collect();
    ctx.home.write_identity(&me.key, &me.info)?;
    let published = publish(ctx, &me)?;
    let assurance = ctx.home.trust_list()?.assess(&me.actor(), &[att], now);
    output::line(format!(
        "added {id}: {} ({} by {}); here: {assurance}; published in {published} record(s)",
        att_summary(&me.info.signed_attestations(), &id),
        level_of(&me.info.signed_attestations(), &id),
        issuer_of(&me.info.signed_attestations(), &id),
    ))
}

fn att_summary(list: &[SignedAttestation], id: &AttestationId) -> String {
    list.iter()
        .find(|a| a.id() == *id)
        .map(|a| a.attestation.attributes.summary())
        .unwrap_or_default()
}

fn level_of(list: &[SignedAttestation], id: &AttestationId) -> String {
    list.iter()
        .find(|a| a.id() == *id)
        .map(|a| a.attestation.level.to_string())
        .unwrap_or_default()
}

fn issuer_of(list: &[SignedAttestation], id: &AttestationId) -> String {
    list.iter()
        .find(|a| a.id() == *id)
        .map(|a| a.attestation.issuer.short())
        .unwrap_or_default()
}

/// Publishes the (changed) profile in every record held that the identity may write a
/// profile into, and gives the running node the attestations to present. How many.
fn publish(ctx: &Ctx, me: &crate::home::Identity) -> Result<usize> {
    let store = ctx.store()?;
    let mut n = 0;
    for record in store.records()? {
        if context::publish_profile(ctx, &store, me, &record).unwrap_or(false) {
            ctx.mark_changed(&record);
            n += 1;
        }
    }
    if let Some((node, _)) = &ctx.node {
        node.set_attestations(me.info.signed_attestations());
    }
    Ok(n)
}

fn show(ctx: &Ctx, out: Out) -> Result<()> {
    let me = ctx.identity()?;
    let now = ctx.now()?;
    let list = me.info.signed_attestations();
    let trust = ctx.home.trust_list()?;
    let assurance = trust.assess(&me.actor(), &list, now);
    if ctx.json(out) {
        return output::json(&json!({
            "actor": me.actor(),
            "assurance": assurance,
            "shown_as": assurance.to_string(),
            "attestations": list.iter().map(|a| json!({
                "id": a.id(),
                "issuer": a.attestation.issuer,
                "level": a.attestation.level,
                "attributes": a.attestation.attributes,
                "method": a.attestation.method,
                "not_before": a.attestation.not_before,
                "not_after": a.attestation.not_after,
                "here": trust.why_not(&me.actor(), a, now).map_or("accepted".to_owned(), |w| w.to_string()),
            })).collect::<Vec<_>>(),
        }));
    }
    output::line(format!("{}: {assurance}", me.actor()))?;
    if list.is_empty() {
        return output::line(
            "no attestations: get one from an identity assurance service (`cophr ais request`, \
             or in person: `cophr ais attest`), then `cophr identity add FILE`",
        );
    }
    let mut t = Table::new(&["ATTESTATION", "ISSUER", "LEVEL", "WHO", "UNTIL", "HERE"]);
    for a in &list {
        t.row(vec![
            short_id(&a.id()),
            trust
                .issuer(&a.attestation.issuer)
                .map_or_else(|| a.attestation.issuer.short(), |i| i.name.clone()),
            a.attestation.level.to_string(),
            a.attestation.attributes.summary(),
            crate::times::format(a.attestation.not_after),
            trust
                .why_not(&me.actor(), a, now)
                .map_or("accepted".to_owned(), |w| w.to_string()),
        ]);
    }
    output::print(&t.render())
}

fn short_id(id: &AttestationId) -> String {
    id.to_string().chars().take(14).collect()
}

fn remove(ctx: &Ctx, a: RemoveArgs) -> Result<()> {
    let mut me = ctx.identity()?;
    let want = a.id.trim().to_ascii_lowercase();
    let list = me.info.signed_attestations();
    let matching: Vec<_> = list
        .iter()
        .filter(|x| x.id().to_string().starts_with(&want))
        .collect();
    let id = match matching.as_slice() {
        [one] => one.id(),
        [] => return Err(CliError::not_found(format!("no attestation {want}"))),
        _ => {
            return Err(CliError::invalid(format!(
                "{want} matches several attestations"
            )))
        }
    };
    me.info.attestations = list
        .iter()
        .filter(|x| x.id() != id)
        .map(SignedAttestation::to_text)
        .collect();
    ctx.home.write_identity(&me.key, &me.info)?;
    let published = publish(ctx, &me)?;
    output::line(format!(
        "removed {id} from your profile; published in {published} record(s)"
    ))
}
