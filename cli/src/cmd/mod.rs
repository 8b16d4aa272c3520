//! The command line and one module per subcommand.

use clap::{Parser, Subcommand};

use crate::context::{Ctx, Global};
use crate::error::Result;
use crate::home::Home;

pub mod accept;
pub mod add;
pub mod ais;
pub mod amend;
pub mod annotate;
pub mod appointment;
pub mod attach;
pub mod audit;
pub mod delete;
pub mod demo;
pub mod device;
pub mod download;
pub mod export;
pub mod fhir;
pub mod follow;
pub mod grant;
pub mod grants;
pub mod guardians;
pub mod history;
pub mod host;
pub mod identity;
pub mod import;
pub mod init;
pub mod invitations;
pub mod invite;
pub mod key;
pub mod move_home;
pub mod node;
pub mod notifications;
pub mod openehr;
pub mod org;
pub mod peers;
pub mod questionnaire;
pub mod record;
pub mod records;
pub mod recover;
pub mod reminders;
pub mod repair;
pub mod result;
pub mod revoke;
pub mod schema;
pub mod share;
pub mod show;
pub mod status;
pub mod sync;
pub mod task;
pub mod thread;
pub mod token;
pub mod trust;
pub mod verify;
pub mod watch;
pub mod whoami;
pub mod worklist;

const ABOUT: &str = "cophr: a co-produced personal health record, kept by the patient and \
                     written by everyone who cares for them";

const LONG_ABOUT: &str = "cophr: a co-produced personal health record, kept by the patient and \
written by everyone who cares for them.

Every entry is signed by its author. The patient decides, with grants, who may view and who \
may write which categories; nothing is ever overwritten, so every past state and every \
version stays available; every view, change and export is recorded in an audit trail.

Each person's home is a node: `cophr node run` connects it to the others (over libp2p), \
and while it runs every other command runs inside it, so entries replicate as they are \
written. Without a node, records also travel as signed files (`cophr export`, `cophr import`).

Getting started:
  cophr init --name 'George Jones' --role patient
  cophr record create
  cophr add vital-signs --systolic 140 --diastolic 90
  cophr show
  cophr node run            (in another terminal; then `cophr host ADDR`, `cophr status`)";

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
    /// Your key: an encrypted backup (to a file or your home host), and restoring it
    #[command(subcommand)]
    Key(key::Command),
    /// Print the HTTP API's bearer token (HOME/api-token)
    Token(token::Args),
    /// Your verified identity: attestations from identity assurance services
    #[command(subcommand)]
    Identity(identity::Command),
    /// The identity assurance services this home trusts (verified vs self-asserted)
    #[command(subcommand)]
    Trust(trust::Command),
    /// Records: create yours
    #[command(subcommand)]
    Record(record::Command),
    /// List the records this store holds
    Records(records::Args),
    /// The records shared with you: search, changes since you looked, results to review
    Worklist(worklist::Args),
    /// List the categories, or one category's fields
    Schema(schema::Args),
    /// Add an entry: `cophr add CATEGORY --FIELD VALUE …`
    Add(add::Args),
    /// Attach a document (PDF, image, DICOM, OpenDocument, text) stored apart, up to 4 GiB
    Attach(attach::Args),
    /// Save a document's file
    Download(download::Args),
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
    /// Appointments: book, change, cancel (versions of one entry), list
    #[command(subcommand)]
    Appointment(appointment::Command),
    /// Referrals and care-team tasks: send, step (each step by its party), list
    #[command(subcommand)]
    Task(task::Command),
    /// Questionnaires (PROMs): publish PHQ-9, GAD-7 or your own, assign with a due date,
    /// answer, see scores and severity bands
    #[command(subcommand)]
    Questionnaire(questionnaire::Command),
    /// The reminders of your appointments: due now and upcoming
    Reminders(reminders::Args),
    /// Conversations: threads private to their participants (start, send, list, show,
    /// read)
    #[command(subcommand)]
    Thread(thread::Command),
    /// Results: release a reviewed result to the patient (what notifies them)
    #[command(subcommand)]
    Result(result::Command),
    /// Notifications: subscribe to events (a result released, a task's status, a new
    /// message, a reminder due), list them, mark them read
    #[command(subcommand)]
    Notifications(notifications::Command),
    /// Grant someone access to the record
    Grant(grant::Args),
    /// Invite someone: a one-time, expiring link and QR code for the access you choose
    Invite(invite::Args),
    /// Accept an invitation to someone's record (a `cophr://invite/…` link)
    Accept(accept::Args),
    /// Who accepted your invitations: confirm (writes their grant) or decline
    #[command(subcommand)]
    Invitations(invitations::Command),
    /// Share an emergency summary by a time-limited link and QR code; list or end shares
    #[command(subcommand)]
    Share(share::Command),
    /// Revoke a grant (what the grantee saw or wrote before stays valid)
    Revoke(revoke::Args),
    /// Your devices: other keys (phone, laptop, glucometer) that act for you
    #[command(subcommand)]
    Device(device::Command),
    /// Guardians who can together approve a new key if yours is lost; approve as one
    #[command(subcommand)]
    Guardians(guardians::Command),
    /// A care organisation's staff: add and remove members with roles; use a membership
    #[command(subcommand)]
    Org(org::Command),
    /// Recover your record with a new key, approved by your guardians
    #[command(subcommand)]
    Recover(recover::Command),
    /// List the grants of the record you may see
    Grants(grants::Args),
    /// Show the record's audit trail: who viewed, added, changed and exported what
    Audit(audit::Args),
    /// Export the whole record, with its audit trail, to a file anyone can verify
    Export(export::Args),
    /// Import an export file (everything is verified before anything is stored)
    Import(import::Args),
    /// FHIR R4 connectors: import Bundles or NDJSON as signed entries, export as FHIR
    #[command(subcommand)]
    Fhir(fhir::Command),
    /// openEHR compositions: export the record's as files, import composition files
    #[command(subcommand)]
    Openehr(openehr::Command),
    /// Verify an export file offline, or this store
    Verify(verify::Args),
    /// Repair the store after a crash or damage: cut a torn log tail, rebuild the indexes
    Repair(repair::Args),
    /// Build a local demo (George and the people who care for him) and walk through it
    Demo(demo::Args),
    /// Run this home's node: replicate records with peers over libp2p
    #[command(subcommand)]
    Node(node::Command),
    /// Show the running node: peer id, addresses, records and where each replicates from
    Status(status::Args),
    /// Show or set where a record replicates from: its home host and other replicas
    Peers(peers::Args),
    /// Sync a record now with its home host (or another replica, or a given peer)
    Sync(sync::Args),
    /// Host your record on a home host: it takes the whole record and serves it to others
    Host(host::Args),
    /// Move your record to another home host, keeping every grant
    #[command(name = "move")]
    Move(move_home::Args),
    /// Follow someone's record: find its home host and replicate what you may see
    Follow(follow::Args),
    /// Watch for new entries you may see (e.g. lab results), one line each, as they arrive
    Watch(watch::Args),
    /// Identity assurance: attest keys as an AIS (in person or by OpenID Connect), or ask one
    #[command(subcommand)]
    Ais(ais::Command),
}

impl Command {
    /// Whether the command runs inside the node when one runs in the home.
    pub fn forwards(&self) -> bool {
        !matches!(
            self,
            Command::Init(_)
                | Command::Demo(_)
                | Command::Node(node::Command::Run(_))
                | Command::Watch(_)
                | Command::Token(_)
                | Command::Ais(_)
        ) && !matches!(self, Command::Key(k) if !k.forwards())
    }

    /// Whether the command reads standard input.
    pub fn reads_stdin(&self) -> bool {
        match self {
            Command::Add(a) => a.reads_stdin(),
            Command::Amend(a) => a.reads_stdin(),
            Command::Import(a) => a.reads_stdin(),
            Command::Verify(a) => a.reads_stdin(),
            _ => false,
        }
    }

    /// `--home DIR` written among an entry's fields (it overrides the global option).
    pub fn home_override(&self) -> Option<std::path::PathBuf> {
        match self {
            Command::Add(a) => a.home_override(),
            Command::Amend(a) => a.home_override(),
            _ => None,
        }
    }
}

/// Runs the parsed command line: inside the home's node if one runs (and the command
/// goes through it), else here. Returns the exit code.
pub fn run(cli: Cli) -> Result<u8> {
    let mut ctx = Ctx::new(cli.global, cli.json)?;
    if cli.command.forwards() {
        let home = cli
            .command
            .home_override()
            .map(Home::new)
            .unwrap_or_else(|| ctx.home.clone());
        let stdin = cli.command.reads_stdin();
        if let Some(code) = crate::control::forward(&home.dir, &ctx, stdin)? {
            return Ok(code);
        }
    }
    dispatch(&mut ctx, cli.command)?;
    Ok(0)
}

/// Runs one command in this context.
pub fn dispatch(ctx: &mut Ctx, command: Command) -> Result<()> {
    // People are shown as verified or self-asserted by this home's trust list (a home
    // without one, or with an unreadable one, shows everyone as self-asserted).
    if ctx.home.dir.exists() {
        let trust = ctx.home.trust_list().unwrap_or_default();
        crate::output::assess_with(trust, ctx.now().unwrap_or(0));
    }
    match command {
        Command::Init(a) => init::run(ctx, a),
        Command::Whoami(a) => whoami::run(ctx, a),
        Command::Key(c) => key::run(ctx, c),
        Command::Token(a) => token::run(ctx, a),
        Command::Identity(c) => identity::run(ctx, c),
        Command::Invite(a) => invite::run(ctx, a),
        Command::Accept(a) => accept::run(ctx, a),
        Command::Invitations(c) => invitations::run(ctx, c),
        Command::Trust(c) => trust::run(ctx, c),
        Command::Record(c) => record::run(ctx, c),
        Command::Records(a) => records::run(ctx, a),
        Command::Worklist(a) => worklist::run(ctx, a),
        Command::Schema(a) => schema::run(ctx, a),
        Command::Add(a) => add::run(ctx, a),
        Command::Attach(a) => attach::run(ctx, a),
        Command::Download(a) => download::run(ctx, a),
        Command::Show(a) => show::run(ctx, a),
        Command::History(a) => history::run(ctx, a),
        Command::Amend(a) => amend::run(ctx, a),
        Command::Delete(a) => delete::run(ctx, a),
        Command::Annotate(a) => annotate::run(ctx, a),
        Command::Appointment(c) => appointment::run(ctx, c),
        Command::Task(c) => task::run(ctx, c),
        Command::Questionnaire(c) => questionnaire::run(ctx, c),
        Command::Reminders(a) => reminders::run(ctx, a),
        Command::Thread(c) => thread::run(ctx, c),
        Command::Result(c) => result::run(ctx, c),
        Command::Notifications(c) => notifications::run(ctx, c),
        Command::Grant(a) => grant::run(ctx, a),
        Command::Share(c) => share::run(ctx, c),
        Command::Revoke(a) => revoke::run(ctx, a),
        Command::Device(c) => device::run(ctx, c),
        Command::Guardians(c) => guardians::run(ctx, c),
        Command::Org(c) => org::run(ctx, c),
        Command::Recover(c) => recover::run(ctx, c),
        Command::Grants(a) => grants::run(ctx, a),
        Command::Audit(a) => audit::run(ctx, a),
        Command::Export(a) => export::run(ctx, a),
        Command::Import(a) => import::run(ctx, a),
        Command::Fhir(c) => fhir::run(ctx, c),
        Command::Openehr(c) => openehr::run(ctx, c),
        Command::Verify(a) => verify::run(ctx, a),
        Command::Repair(a) => repair::run(ctx, a),
        Command::Demo(a) => demo::run(ctx, a),
        Command::Node(c) => node::run(ctx, c),
        Command::Status(a) => status::run(ctx, a),
        Command::Peers(a) => peers::run(ctx, a),
        Command::Sync(a) => sync::run(ctx, a),
        Command::Host(a) => host::run(ctx, a),
        Command::Move(a) => move_home::run(ctx, a),
        Command::Follow(a) => follow::run(ctx, a),
        Command::Watch(a) => watch::run(ctx, a),
        Command::Ais(c) => ais::run(ctx, c),
    }
}
