//! The command line and one module per subcommand.

use clap::{Parser, Subcommand};

use crate::context::{Ctx, Global};
use crate::error::Result;

pub mod add;
pub mod amend;
pub mod annotate;
pub mod audit;
pub mod delete;
pub mod demo;
pub mod export;
pub mod grant;
pub mod grants;
pub mod history;
pub mod import;
pub mod init;
pub mod record;
pub mod records;
pub mod repair;
pub mod revoke;
pub mod schema;
pub mod show;
pub mod verify;
pub mod whoami;

const ABOUT: &str = "cophr: a co-produced personal health record, kept by the patient and \
                     written by everyone who cares for them";

const LONG_ABOUT: &str = "cophr: a co-produced personal health record, kept by the patient and \
written by everyone who cares for them.

Every entry is signed by its author. The patient decides, with grants, who may view and who \
may write which categories; nothing is ever overwritten, so every past state and every \
version stays available; every view, change and export is recorded in an audit trail. Until \
networking exists, people exchange records with `cophr export` and `cophr import`.

Getting started:
  cophr init --name 'George Jones' --role patient
  cophr record create
  cophr add vital-signs --systolic 140 --diastolic 90
  cophr show";

const AFTER_HELP: &str = "Exit codes:
  0  success
  1  other error (I/O, configuration, storage)
  2  usage error (bad flags or arguments)
  3  not authorised (no access to the record, or a write your grants do not allow)
  4  not found (unknown record or entry)
  5  invalid input (unknown category, bad field or body, malformed JSON, bad time or id)
  6  verification failed (a corrupt or tampered export file or store)
  7  fork or conflict (e.g. the record already exists)

Environment:
  COPHR_HOME    the home directory (as --home)
  COPHR_DEVICE  the device name recorded on entries (as --device)
  RUST_LOG      log filter for stderr (overrides -v)";

/// The `cophr` command line.
#[derive(Parser, Debug)]
#[command(
    name = "cophr",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = AFTER_HELP,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Options every subcommand accepts.
    #[command(flatten)]
    pub global: Global,

    /// Print machine-readable JSON (one document) instead of tables and messages
    #[arg(long)]
    pub json: bool,

    /// The subcommand.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create your identity: a new signing key and your name, role and organisation
    Init(init::Args),
    /// Show your identity: actor id, name, role, organisation, device
    Whoami(whoami::Args),
    /// Records: create yours
    #[command(subcommand)]
    Record(record::Command),
    /// List the records this store holds
    Records(records::Args),
    /// List the categories, or one category's fields
    Schema(schema::Args),
    /// Add an entry: `cophr add CATEGORY --FIELD VALUE …`
    Add(add::Args),
    /// Show the record's current state (or its state at a past time) as you may see it
    Show(show::Args),
    /// Show every version and annotation of an entry, with who, when and on which device
    History(history::Args),
    /// Amend an entry: a new version with the given fields changed (the original is kept)
    Amend(amend::Args),
    /// Delete an entry logically (it stays in its history)
    Delete(delete::Args),
    /// Add a note to an entry (anyone's: you need the annotate level)
    Annotate(annotate::Args),
    /// Grant someone access to the record
    Grant(grant::Args),
    /// Revoke a grant (what the grantee saw or wrote before stays valid)
    Revoke(revoke::Args),
    /// List the grants of the record you may see
    Grants(grants::Args),
    /// Show the record's audit trail: who viewed, added, changed and exported what
    Audit(audit::Args),
    /// Export the whole record, with its audit trail, to a file anyone can verify
    Export(export::Args),
    /// Import an export file (everything is verified before anything is stored)
    Import(import::Args),
    /// Verify an export file offline, or this store
    Verify(verify::Args),
    /// Repair the store after a crash or damage: cut a torn log tail, rebuild the indexes
    Repair(repair::Args),
    /// Build a local demo (George and the people who care for him) and walk through it
    Demo(demo::Args),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    let mut ctx = Ctx::new(cli.global, cli.json)?;
    match cli.command {
        Command::Init(a) => init::run(&ctx, a),
        Command::Whoami(a) => whoami::run(&ctx, a),
        Command::Record(c) => record::run(&ctx, c),
        Command::Records(a) => records::run(&ctx, a),
        Command::Schema(a) => schema::run(&ctx, a),
        Command::Add(a) => add::run(&mut ctx, a),
        Command::Show(a) => show::run(&ctx, a),
        Command::History(a) => history::run(&ctx, a),
        Command::Amend(a) => amend::run(&mut ctx, a),
        Command::Delete(a) => delete::run(&ctx, a),
        Command::Annotate(a) => annotate::run(&ctx, a),
        Command::Grant(a) => grant::run(&ctx, a),
        Command::Revoke(a) => revoke::run(&ctx, a),
        Command::Grants(a) => grants::run(&ctx, a),
        Command::Audit(a) => audit::run(&ctx, a),
        Command::Export(a) => export::run(&ctx, a),
        Command::Import(a) => import::run(&ctx, a),
        Command::Verify(a) => verify::run(&ctx, a),
        Command::Repair(a) => repair::run(&ctx, a),
        Command::Demo(a) => demo::run(&ctx, a),
    }
}
