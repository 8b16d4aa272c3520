//! `cophr ais …`: act as an identity assurance service (attest, revoke, list, serve), or ask
//! one to verify you (request). The logic lives in `cophr_node::ais`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args as ClapArgs, Subcommand};
use cophr_node::ais::client::AisClient;
use cophr_node::ais::{AisConfig, AisError, AisService, AisStore};
use cophr_protocol::trust::attestation::{
    Attestation, NationalNumber, OrganisationRef, Registration, ATTESTATION_VERSION,
};
use cophr_protocol::trust::{AssuranceLevel, AttestationId, Attributes, Method, SignedAttestation};
use cophr_protocol::ActorId;
use rand_core::RngCore;
use serde_json::json;

use crate::context::Ctx;
use crate::error::{parse_id, CliError, Code, Result};
use crate::output::{self, Table};
use crate::times;

/// Identity assurance: this home as an AIS, or a person asking one.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Attest a key after checking its holder in person (this home's key signs)
    Attest(AttestArgs),
    /// Revoke an attestation this AIS issued (published at /ais/v1/revocations)
    Revoke(RevokeArgs),
    /// List the attestations this AIS issued, and which are revoked
    List(ListArgs),
    /// Run the AIS's HTTP service: OpenID Connect verification, collection, revocations
    Serve(ServeArgs),
    /// Ask an AIS to verify you: prints the URL to open, then collects the attestation
    Request(RequestArgs),
}

/// `ais attest`.
#[derive(ClapArgs, Debug)]
#[command(after_help = "Examples:
  cophr ais attest --subject a-… --level P9 --person --name 'George Jones' \\
      --birth-date 1948-02-03 --nhs-number 9434765919 -o george.att
  cophr ais attest --subject a-… --level P9 --professional --name 'Rena Patel' \\
      --profession doctor --registration GMC:7123456 --organisation 'Leeds Teaching Hospitals' \\
      --ods RR8 -o patel.att
  cophr ais attest --subject a-… --level P5 --organisation 'Leeds Teaching Hospitals' --ods RR8 -o org.att
  cophr ais attest --subject a-… --level P5 --label glucometer --owner a-… -o meter.att")]
pub struct AttestArgs {
    /// The key attested (`a-…`)
    #[arg(long, value_name = "ACTOR")]
    pub subject: String,
    /// The assurance level: P0, P5 or P9
    #[arg(long)]
    pub level: AssuranceLevel,
    /// A person (patient or anyone acting for themselves)
    #[arg(long, group = "kind")]
    pub person: bool,
    /// A registered professional
    #[arg(long, group = "kind")]
    pub professional: bool,
    /// Full name (person, professional)
    #[arg(long)]
    pub name: Option<String>,
    /// Date of birth, YYYY-MM-DD (person)
    #[arg(long, value_name = "DATE")]
    pub birth_date: Option<String>,
    /// NHS number (person; its check digit is checked)
    #[arg(long)]
    pub nhs_number: Option<String>,
    /// Profession, e.g. doctor, nurse, pharmacist (professional)
    #[arg(long)]
    pub profession: Option<String>,
    /// Registration, BODY:NUMBER, e.g. GMC:7123456 (professional)
    #[arg(long, value_name = "BODY:NUMBER")]
    pub registration: Option<String>,
    /// The organisation: the professional's employer, or, alone, the organisation attested
    #[arg(long, value_name = "NAME")]
    pub organisation: Option<String>,
    /// The organisation's ODS code
    #[arg(long, value_name = "CODE")]
    pub ods: Option<String>,
    /// A device: what it is (with --owner; `--device` is taken by the global option)
    #[arg(long, group = "kind", requires = "owner")]
    pub label: Option<String>,
    /// A device: the person it acts for (with --label)
    #[arg(long, value_name = "ACTOR", requires = "label")]
    pub owner: Option<String>,
    /// How long the attestation is valid
    #[arg(long, default_value_t = 365, value_name = "DAYS")]
    pub valid_days: u32,
    /// Where to write the signed attestation (canonical CBOR)
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: PathBuf,
}

/// `ais revoke`.
#[derive(ClapArgs, Debug)]
pub struct RevokeArgs {
    /// The attestation (`t-…`, from `cophr ais list`)
    pub attestation: String,
    /// Why (kept in the signed revocation, which is public)
    #[arg(long)]
    pub reason: String,
}

/// `ais list`.
#[derive(ClapArgs, Debug)]
pub struct ListArgs {}

/// `ais serve`.
#[derive(ClapArgs, Debug)]
#[command(after_help = "See docs/ais.md for the configuration file.")]
pub struct ServeArgs {
    /// The address to listen on (port 0: any free port; the address is printed)
    #[arg(long, default_value = "127.0.0.1:7390")]
    pub listen: SocketAddr,
    /// The configuration file (TOML): the OpenID Connect providers
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// `ais request`.
#[derive(ClapArgs, Debug)]
pub struct RequestArgs {
    /// The AIS's base URL, e.g. `https://ais.example.org`
    #[arg(long, value_name = "URL")]
    pub ais: String,
    /// The AIS's key (`a-…`), if you know it; otherwise it is asked for
    #[arg(long, value_name = "ACTOR")]
    pub ais_id: Option<String>,
    /// Which of its identity providers (default: its first)
    #[arg(long)]
    pub provider: Option<String>,
    /// Where to write the attestation (canonical CBOR)
    #[arg(
        short = 'o',
        long = "out",
        value_name = "FILE",
        default_value = "attestation.cbor"
    )]
    pub out: PathBuf,
    /// How long to wait for the verification in the browser
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    pub timeout: u64,
}

fn ais_error(e: AisError) -> CliError {
    let code = match &e {
        AisError::NotFound(_) => Code::NotFound,
        AisError::AlreadyRevoked(_) => Code::Conflict,
        AisError::Attestation(_) | AisError::Malformed(_) => Code::Invalid,
        AisError::Corrupt(_) => Code::Verify,
        _ => Code::Other,
    };
    CliError::new(code, e.to_string())
}

/// Runs an `ais` subcommand.
pub fn run(ctx: &Ctx, cmd: Command) -> Result<()> {
    match cmd {
        Command::Attest(a) => attest(ctx, a),
        Command::Revoke(a) => revoke(ctx, a),
        Command::List(a) => list(ctx, a),
        Command::Serve(a) => serve(ctx, a),
        Command::Request(a) => request(ctx, a),
    }
}

fn required(v: Option<String>, flag: &str, kind: &str) -> Result<String> {
    v.ok_or_else(|| CliError::new(Code::Usage, format!("{kind} needs --{flag}")))
}

fn attributes(a: &AttestArgs) -> Result<Attributes> {
    let org = |name: Option<String>| {
        name.map(|name| OrganisationRef {
            name,
            ods: a.ods.clone(),
        })
    };
    if a.person {
        return Ok(Attributes::Person {
            name: required(a.name.clone(), "name", "--person")?,
            birth_date: a.birth_date.clone(),
            national_number: a.nhs_number.clone().map(|n| NationalNumber {
                system: "nhs".into(),
                value: n.replace(' ', ""),
            }),
        });
    }
    if a.professional {
        let registration = match &a.registration {
            None => None,
            Some(r) => {
                let (body, number) = r.split_once(':').ok_or_else(|| {
                    CliError::invalid(format!("--registration `{r}` is not BODY:NUMBER"))
                })?;
                Some(Registration {
                    body: body.trim().into(),
                    number: number.trim().into(),
                })
            }
        };
        return Ok(Attributes::Professional {
            name: required(a.name.clone(), "name", "--professional")?,
            profession: required(a.profession.clone(), "profession", "--professional")?,
            registration,
            organisation: org(a.organisation.clone()),
        });
    }
    if let (Some(label), Some(owner)) = (&a.label, &a.owner) {
        return Ok(Attributes::Device {
            label: label.clone(),
            owner: parse_id("actor", owner)?,
        });
    }
    match org(a.organisation.clone()) {
        Some(o) => Ok(Attributes::Organisation(o)),
        None => Err(CliError::new(
            Code::Usage,
            "say what is attested: --person, --professional, --organisation NAME, or a device \
             with --label and --owner",
        )),
    }
}

fn write_attestation(path: &std::path::Path, a: &SignedAttestation) -> Result<()> {
    cophr_node::ais::store::write_file(path, &a.encode(), 0o640).map_err(ais_error)
}

fn attest(ctx: &Ctx, a: AttestArgs) -> Result<()> {
    let me = ctx.identity()?;
    let subject: ActorId = parse_id("actor", &a.subject)?;
    if !(1..=3660).contains(&a.valid_days) {
        return Err(CliError::invalid("--valid-days must be 1 to 3660"));
    }
    let attributes = attributes(&a)?;
    let now = ctx.now()?;
    let mut serial = vec![0u8; 16];
    rand_core::OsRng.fill_bytes(&mut serial);
    let signed = Attestation {
        v: ATTESTATION_VERSION,
        issuer: me.actor(),
        subject,
        attributes,
        level: a.level,
        method: Method::InPerson,
        not_before: now,
        not_after: now + u64::from(a.valid_days) * 24 * 3600 * 1000,
        serial,
    }
    .sign(&me.key)
    .map_err(|e| CliError::invalid(e.to_string()))?;
    let id = AisStore::new(&ctx.home.dir)
        .issue(&signed)
        .map_err(ais_error)?;
    let path = output::resolve(&a.out);
    write_attestation(&path, &signed)?;
    if ctx.json {
        return output::json(&json!({
            "attestation": id.to_string(),
            "subject": subject,
            "level": a.level.to_string(),
            "file": path,
        }));
    }
    output::line(format!(
        "Attested {subject} at level {} in person: {id}, written to {}",
        a.level,
        path.display()
    ))
}

fn revoke(ctx: &Ctx, a: RevokeArgs) -> Result<()> {
    let me = ctx.identity()?;
    let id: AttestationId = a.attestation.parse().map_err(CliError::invalid)?;
    let r = AisStore::new(&ctx.home.dir)
        .revoke(&me.key, &id, &a.reason, ctx.now()?)
        .map_err(ais_error)?;
    if ctx.json {
        return output::json(&json!({
            "attestation": id.to_string(),
            "subject": r.revocation.subject,
            "revoked": r.revocation.time,
        }));
    }
    output::line(format!(
        "Revoked {id} (about {}); `cophr ais serve` publishes it at /ais/v1/revocations",
        r.revocation.subject
    ))
}

fn list(ctx: &Ctx, _a: ListArgs) -> Result<()> {
    let issued = AisStore::new(&ctx.home.dir).list().map_err(ais_error)?;
    let now = ctx.now()?;
    let status = |i: &cophr_node::ais::Issued| {
        if i.revocation.is_some() {
            "revoked"
        } else if !i.attestation.attestation.valid_at(now) {
            "expired"
        } else {
            "valid"
        }
    };
    let method = |m: &Method| match m {
        Method::InPerson => "in person".to_string(),
        Method::Oidc { issuer } => format!("oidc {issuer}"),
    };
    if ctx.json {
        let rows: Vec<_> = issued
            .iter()
            .map(|i| {
                let a = &i.attestation.attestation;
                json!({
                    "attestation": i.attestation.id().to_string(),
                    "subject": a.subject,
                    "level": a.level.to_string(),
                    "method": method(&a.method),
                    "not_before": a.not_before,
                    "not_after": a.not_after,
                    "status": status(i),
                    "attributes": a.attributes,
                    "revocation_reason": i.revocation.as_ref().map(|r| r.revocation.reason.clone()),
                })
            })
            .collect();
        return output::json(&json!({ "issued": rows }));
    }
    if issued.is_empty() {
        return output::line("This AIS has issued no attestation.");
    }
    let mut t = Table::new(&[
        "ATTESTATION",
        "SUBJECT",
        "LEVEL",
        "METHOD",
        "UNTIL",
        "STATUS",
        "ABOUT",
    ]);
    for i in &issued {
        let a = &i.attestation.attestation;
        t.row(vec![
            i.attestation.id().to_string(),
            a.subject.to_string(),
            a.level.to_string(),
            method(&a.method),
            times::format(a.not_after),
            status(i).to_string(),
            a.attributes.summary(),
        ]);
    }
    output::print(&t.render())
}

fn serve(ctx: &Ctx, a: ServeArgs) -> Result<()> {
    let me = ctx.identity()?;
    let config = AisConfig::load(&output::resolve(&a.config)).map_err(ais_error)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::other(format!("cannot start the runtime: {e}")))?;
    let home = ctx.home.dir.clone();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .map_err(|e| CliError::other(format!("cannot listen on {}: {e}", a.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| CliError::other(format!("cannot listen on {}: {e}", a.listen)))?;
        let service = AisService::new(
            me.key,
            &home,
            &config,
            &format!("http://{addr}"),
            times::system_now,
        )
        .map_err(ais_error)?;
        output::line(format!("ais {}", service.actor()))?;
        for (name, url) in service.redirect_urls() {
            output::line(format!("callback {name} {url}"))?;
        }
        output::line(format!("listening http://{addr}"))?;
        let signal = |kind| {
            tokio::signal::unix::signal(kind)
                .map_err(|e| CliError::other(format!("cannot handle signals: {e}")))
        };
        let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        cophr_node::ais::server::serve(listener, Arc::new(service), shutdown)
            .await
            .map_err(|e| CliError::other(format!("the AIS service stopped: {e}")))
    })
}

fn request(ctx: &Ctx, a: RequestArgs) -> Result<()> {
    let me = ctx.identity()?;
    let client = AisClient::new(&a.ais);
    let ais: ActorId = match &a.ais_id {
        Some(id) => parse_id("actor", id)?,
        None => client.info().map_err(ais_error)?.ais,
    };
    let now = times::system_now();
    let before: Vec<AttestationId> = client
        .collect(&me.key, &ais, now)
        .map_err(ais_error)?
        .iter()
        .map(SignedAttestation::id)
        .collect();
    let url = client
        .start(&me.key, &ais, a.provider.as_deref(), now)
        .map_err(ais_error)?;
    output::write_err(&format!(
        "Open this address in your browser and sign in; this waits up to {} s for the AIS \
         ({ais}) to attest your key {}:\n",
        a.timeout,
        me.actor()
    ));
    output::line(&url)?;
    let deadline = Instant::now() + Duration::from_secs(a.timeout);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let got = client
            .collect(&me.key, &ais, times::system_now())
            .map_err(ais_error)?;
        let new: Vec<&SignedAttestation> =
            got.iter().filter(|x| !before.contains(&x.id())).collect();
        if let Some(newest) = new.iter().max_by_key(|x| x.attestation.not_before).copied() {
            let path = output::resolve(&a.out);
            write_attestation(&path, newest)?;
            let at = &newest.attestation;
            if ctx.json {
                return output::json(&json!({
                    "attestation": newest.id().to_string(),
                    "issuer": at.issuer,
                    "level": at.level.to_string(),
                    "file": path,
                }));
            }
            return output::line(format!(
                "Received attestation {} at level {} from {}, written to {}",
                newest.id(),
                at.level,
                at.issuer,
                path.display()
            ));
        }
        if Instant::now() >= deadline {
            return Err(CliError::other(format!(
                "no attestation arrived within {} s (the verification in the browser was not \
                 completed, or was refused)",
                a.timeout
            )));
        }
    }
}
