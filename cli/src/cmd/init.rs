//! `cophr init`: create an identity.

use clap::Args as ClapArgs;
use cophr_protocol::entry::MAX_SHORT_TEXT;
use cophr_protocol::Keypair;
use serde_json::json;

use crate::context::Ctx;
use crate::error::{CliError, Result};
use crate::home::IdentityInfo;
use crate::output;

/// Create your identity: a new ed25519 signing key (kept in HOME/identity.key, mode 0600)
/// and your profile, published in every record you write into. The device name comes from
/// the global --device (or COPHR_DEVICE).
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Example:\n  cophr --home ~/.cophr-mary init --name 'Mary Jones' --role carer --device mary-phone"
)]
pub struct Args {
    /// Your name, as others will see it on your entries
    #[arg(long)]
    name: String,

    /// Your role, e.g. patient, carer, family, gp, consultant, nurse, pharmacist, home-care
    #[arg(long)]
    role: String,

    /// Your organisation, if you write for one (e.g. "Leeds Teaching Hospitals")
    #[arg(long)]
    organisation: Option<String>,

    /// Replace an existing identity (its key is lost unless you kept a copy)
    #[arg(long)]
    force: bool,
}

fn check_text(what: &str, s: &str) -> Result<String> {
    let t = s.trim();
    if t.is_empty() || t.len() > MAX_SHORT_TEXT || t.chars().any(char::is_control) {
        return Err(CliError::invalid(format!(
            "--{what} must be 1 to {MAX_SHORT_TEXT} bytes of text on one line"
        )));
    }
    Ok(t.to_owned())
}

/// Runs `init`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let home = &ctx.home;
    let name = check_text("name", &args.name)?;
    let role = check_text("role", &args.role)?;
    let organisation = args
        .organisation
        .as_deref()
        .map(|o| check_text("organisation", o))
        .transpose()?;
    let device = ctx
        .global
        .device
        .as_deref()
        .map(|d| check_text("device", d))
        .transpose()?;
    if home.has_identity() && !args.force {
        let who = home
            .identity()
            .map(|i| format!(" ({}, {})", i.info.name, i.actor()))
            .unwrap_or_default();
        return Err(CliError::new(
            crate::error::Code::Conflict,
            format!(
                "{} already holds an identity{who}; use --force to replace it (its key is then \
                 lost), or choose another --home",
                home.dir.display()
            ),
        ));
    }
    let key = Keypair::generate(&mut rand_core::OsRng);
    let info = IdentityInfo {
        actor: key.actor(),
        name,
        role,
        organisation,
        device,
        attestations: Vec::new(),
    };
    home.write_identity(&key, &info)?;
    // The node's own key, which signs the audit events this home's store records.
    home.node_key_or_create()?;
    // The HTTP API's bearer token (a new identity gets a new token).
    let token_path = home.api_token();
    cophr_node::http::token::create(&token_path)
        .map_err(|e| CliError::io("cannot create the API token", &token_path, &e))?;
    tracing::info!(actor = %info.actor, "identity created");
    if ctx.json {
        return output::json(&json!({
            "actor": info.actor,
            "name": info.name,
            "role": info.role,
            "organisation": info.organisation,
            "device": info.device,
            "home": home.dir,
        }));
    }
    output::line(format!("Created identity {}", info.actor))?;
    output::line(format!(
        "  {} ({}{})",
        info.name,
        info.role,
        info.organisation
            .as_deref()
            .map(|o| format!(", {o}"))
            .unwrap_or_default()
    ))?;
    output::line(format!(
        "  key: {} (mode 0600)",
        home.identity_key().display()
    ))?;
    output::line("Next: `cophr record create` to start your own record, or `cophr import FILE` to hold someone's record.")
}
