//! `cophr whoami`: show the identity.

use clap::Args as ClapArgs;
use serde_json::json;

use crate::context::{Ctx, Out};
use crate::error::Result;
use crate::output;

/// Show your identity: actor id (what others grant access to), name, role, organisation
/// and device.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    out: Out,
}

/// Runs `whoami`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let me = ctx.identity()?;
    let device = ctx.device(&me);
    let i = &me.info;
    if ctx.json(args.out) {
        return output::json(&json!({
            "actor": i.actor,
            "name": i.name,
            "role": i.role,
            "organisation": i.organisation,
            "device": device,
            "home": ctx.home.dir,
        }));
    }
    output::line(i.actor.to_string())?;
    output::line(format!("  name:         {}", i.name))?;
    output::line(format!("  role:         {}", i.role))?;
    output::line(format!(
        "  organisation: {}",
        i.organisation.as_deref().unwrap_or("-")
    ))?;
    output::line(format!(
        "  device:       {}",
        device.as_deref().unwrap_or("-")
    ))?;
    output::line(format!("  home:         {}", ctx.home.dir.display()))
}
