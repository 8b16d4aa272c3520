//! `cophr trust`: the identity assurance services this home trusts.

use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::json;

use cophr_protocol::trust::{AssuranceLevel, SignedRevocation};

use crate::context::{Ctx, Out};
use crate::error::{parse_id, CliError, Result};
use crate::output::{self, Table};
use crate::trust::{check_url, IssuerEntry};

/// Most bytes of a revocation list fetched from an issuer.
const MAX_REVOCATION_LIST: u64 = 16 * 1024 * 1024;

/// Trust an identity assurance service (AIS), list or remove trusted ones, refresh
/// revocations. Everyone's attestations are checked against this list: people attested by
/// a trusted AIS show as "verified P9 by …", everyone else as "self-asserted".
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Trust an AIS: its attestations, up to `--max-level`, count as verified here
    Add(AddArgs),
    /// List the trusted issuers
    List(Out),
    /// Stop trusting an AIS
    Remove(RemoveArgs),
    /// Fetch each trusted AIS's revocations (from its `--url`) and keep them
    Refresh(Out),
}

/// `cophr trust add`.
#[derive(Args, Debug)]
pub struct AddArgs {
    /// The AIS's actor id (`a-…`)
    pub issuer: String,
    /// Its name, as shown ("verified P9 by NAME")
    #[arg(long)]
    pub name: String,
    /// The highest level accepted from it: P0, P5 or P9 (or IAL1..IAL3)
    #[arg(long, default_value = "P9")]
    pub max_level: AssuranceLevel,
    /// Where it publishes revocations (`URL/ais/v1/revocations`)
    #[arg(long)]
    pub url: Option<String>,
}

/// `cophr trust remove`.
#[derive(Args, Debug)]
pub struct RemoveArgs {
    /// The AIS's actor id (`a-…`)
    pub issuer: String,
}

/// Runs `trust`.
pub fn run(ctx: &Ctx, cmd: Command) -> Result<()> {
    match cmd {
        Command::Add(a) => add(ctx, a),
        Command::List(out) => list(ctx, out),
        Command::Remove(a) => remove(ctx, a),
        Command::Refresh(out) => refresh(ctx, out),
    }
}

fn add(ctx: &Ctx, a: AddArgs) -> Result<()> {
    let id = parse_id("issuer", &a.issuer)?;
    let name = a.name.trim().to_owned();
    if name.is_empty() || name.len() > 256 {
        return Err(CliError::invalid("--name must be 1 to 256 characters"));
    }
    check_url(a.url.as_deref())?;
    let mut file = ctx.home.trust_entries()?;
    let entry = IssuerEntry {
        id,
        name: name.clone(),
        max_level: a.max_level,
        url: a.url,
    };
    match file.issuers.iter_mut().find(|i| i.id == id) {
        Some(old) => *old = entry,
        None => file.issuers.push(entry),
    }
    ctx.home.write_trust_entries(&file)?;
    apply(ctx)?;
    output::line(format!("trusting {name} ({id}) up to {}", a.max_level))
}

fn list(ctx: &Ctx, out: Out) -> Result<()> {
    let file = ctx.home.trust_entries()?;
    if ctx.json(out) {
        return output::json(&json!({
            "issuers": file.issuers,
            "revocations": ctx.home.revocations()?.len(),
        }));
    }
    if file.issuers.is_empty() {
        return output::line(
            "no trusted identity assurance services: everyone shows as self-asserted \
             (add one with `cophr trust add a-… --name NAME`)",
        );
    }
    let mut t = Table::new(&["ISSUER", "NAME", "UP TO", "REVOCATIONS FROM"]);
    for i in &file.issuers {
        t.row(vec![
            i.id.to_string(),
            i.name.clone(),
            i.max_level.to_string(),
            i.url.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    output::print(&t.render())
}

fn remove(ctx: &Ctx, a: RemoveArgs) -> Result<()> {
    let id = parse_id("issuer", &a.issuer)?;
    let mut file = ctx.home.trust_entries()?;
    let before = file.issuers.len();
    file.issuers.retain(|i| i.id != id);
    if file.issuers.len() == before {
        return Err(CliError::not_found(format!("{id} is not a trusted issuer")));
    }
    ctx.home.write_trust_entries(&file)?;
    apply(ctx)?;
    output::line(format!(
        "no longer trusting {id}: its attestations count as self-asserted here"
    ))
}

#[derive(Deserialize)]
struct Published {
    revocations: Vec<String>,
}

fn refresh(ctx: &Ctx, out: Out) -> Result<()> {
    let file = ctx.home.trust_entries()?;
    let mut kept = ctx.home.revocations()?;
    let mut list = ctx.home.trust_list()?;
    let mut report = Vec::new();
    for issuer in file.issuers.iter().filter(|i| i.url.is_some()) {
        let url = format!(
            "{}/ais/v1/revocations",
            issuer
                .url
                .as_deref()
                .unwrap_or_default()
                .trim_end_matches('/')
        );
        let fetched = fetch(&url).map_err(|e| {
            CliError::other(format!("cannot fetch revocations of {}: {e}", issuer.name))
        })?;
        let (mut new, mut refused) = (0, 0);
        for text in fetched.revocations {
            match SignedRevocation::from_text(&text) {
                Ok(r) if r.revocation.issuer == issuer.id => match list.add_revocation(&r) {
                    Ok(true) => {
                        new += 1;
                        kept.push(r);
                    }
                    Ok(false) => {}
                    Err(_) => refused += 1,
                },
                _ => refused += 1,
            }
        }
        report.push((issuer.name.clone(), new, refused));
    }
    ctx.home.write_revocations(&kept)?;
    apply(ctx)?;
    if ctx.json(out) {
        return output::json(&json!({
            "issuers": report.iter().map(|(n, new, refused)| json!({
                "name": n, "new": new, "refused": refused,
            })).collect::<Vec<_>>(),
            "revocations": kept.len(),
        }));
    }
    for (name, new, refused) in &report {
        output::line(format!(
            "{name}: {new} new revocation(s){}",
            if *refused > 0 {
                format!(", {refused} refused (not signed by it)")
            } else {
                String::new()
            }
        ))?;
    }
    output::line(format!("{} revocation(s) known", kept.len()))
}

fn fetch(url: &str) -> std::result::Result<Published, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into();
    let mut resp = agent.get(url).call().map_err(|e| e.to_string())?;
    resp.body_mut()
        .with_config()
        .limit(MAX_REVOCATION_LIST)
        .read_json::<Published>()
        .map_err(|e| e.to_string())
}

/// Tells the running node (when this runs inside it) to use the new list.
fn apply(ctx: &Ctx) -> Result<()> {
    if let Some((node, _)) = &ctx.node {
        node.set_trust(ctx.home.trust_list()?);
    }
    Ok(())
}
