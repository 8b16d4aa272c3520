//! `cophr token`: the HTTP API's bearer token.

use clap::Args as ClapArgs;

use crate::context::Ctx;
use crate::error::Result;
use crate::output;

/// Print the HTTP API's bearer token (from HOME/api-token, mode 0600; created if missing).
/// Apps send it as `Authorization: Bearer TOKEN`; the web app asks for it once.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Example:\n  curl -H \"Authorization: Bearer $(cophr token)\" http://127.0.0.1:7380/api/v1/whoami"
)]
pub struct Args {}

/// Runs `token`.
pub fn run(ctx: &Ctx, _args: Args) -> Result<()> {
    ctx.identity()?;
    let token = ctx.home.api_token_or_create()?;
    output::line(token)
}
