//! `cophr grant`: give someone access.

use std::collections::BTreeSet;

use clap::Args as ClapArgs;
use cophr_protocol::access::{Requirement, MAX_REQUIREMENT_ISSUERS};
use cophr_protocol::entry::Payload;
use cophr_protocol::invite::Terms;
use cophr_protocol::trust::AssuranceLevel;
use cophr_protocol::{ActorId, Category, Level, Scope};
use serde_json::json;

use crate::context::{self, Ctx};
use crate::error::{parse_id, CliError, Result};
use crate::output;
use crate::times::{self, DayEnd};

const AFTER_HELP: &str = "Levels (each includes the ones before it):
  relay     store and serve the record without reading it (a host)
  view      see the categories
  annotate  also add notes to entries
  write     also add entries, and amend their own
  delete    also logically delete their own entries

Examples:
  cophr grant a-… --level delete --categories all --audit --delegate --label 'Mary (wife, carer)'
  cophr grant a-… --level view --categories problems,medications,allergies --label Pharmacy
  cophr grant a-… --level write --categories vital-signs --until 2026-12-31
  cophr grant a-… --level view --categories messages --from-now

Content is sealed: the grantee gets the keys of the categories it may see, with their
history unless --from-now.

A grantee with --delegate may act as your proxy and grant others a part of their own rights.";

/// Grant someone (their actor id, from `cophr whoami`) access to the record: a level on
/// some categories, optionally for a period, with or without the audit and delegate rights.
#[derive(ClapArgs, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The grantee's actor id (`a-…`, as `cophr whoami` prints it)
    actor: String,

    #[command(flatten)]
    access: Access,

    /// Share only what is written from now on: what the categories hold already stays
    /// sealed from the grantee
    #[arg(long)]
    from_now: bool,
}

/// The access a grant (or an invitation) gives: `cophr grant` and `cophr invite` share it.
#[derive(ClapArgs, Debug)]
pub struct Access {
    /// Access level: relay, view, annotate, write or delete
    #[arg(long, value_parser = cophr_node::http::api::grants::grantable_level)]
    level: Level,

    /// `all`, or a comma-separated list of categories (see `cophr schema`)
    #[arg(long, value_name = "all|C1,C2,…")]
    categories: String,

    /// Valid from this time (RFC 3339, or a date: the start of that day, UTC)
    #[arg(long, value_name = "TIME")]
    from: Option<String>,

    /// Valid until this time (RFC 3339, or a date: the end of that day, UTC)
    #[arg(long, value_name = "TIME")]
    until: Option<String>,

    /// May read the record's audit trail
    #[arg(long)]
    audit: bool,

    /// May act as your proxy and grant others a subset of these rights
    #[arg(long)]
    delegate: bool,

    /// A label for the grant, e.g. "Mary (wife, main carer)" or "Pharmacy"
    #[arg(long)]
    label: Option<String>,

    /// Require the grantee to be attested at this level or higher (P0, P5, P9): until
    /// they are, the grant opens nothing (pulls and writes are refused, with the reason)
    #[arg(long, value_name = "LEVEL")]
    require: Option<AssuranceLevel>,

    /// The identity assurance services whose attestations meet --require (actor ids,
    /// comma-separated) [default: every issuer on your trust list, `cophr trust list`]
    #[arg(long, value_name = "a-…,a-…", requires = "require")]
    attested_by: Option<String>,
}

impl Access {
    /// The terms given: scope, period, rights, label and identity requirement, checked.
    pub fn terms(&self, ctx: &Ctx) -> Result<Terms> {
        let scope = parse_scope(&self.categories)?;
        let not_before = self
            .from
            .as_deref()
            .map(|t| times::parse(t, DayEnd::Start).map_err(|e| e.context("--from")))
            .transpose()?;
        let until = self
            .until
            .as_deref()
            .map(|t| times::parse(t, DayEnd::End).map_err(|e| e.context("--until")))
            .transpose()?;
        if let (Some(a), Some(b)) = (not_before, until) {
            if a > b {
                return Err(CliError::invalid("--from is after --until"));
            }
        }
        Ok(Terms {
            level: self.level,
            scope,
            not_before,
            until,
            audit: self.audit,
            delegate: self.delegate,
            label: self
                .label
                .as_deref()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned),
            requires: requirement(ctx, self.require, self.attested_by.as_deref())?,
        })
    }
}

/// The terms as JSON (what `--json` prints about a grant or an invitation).
pub fn terms_json(t: &Terms) -> serde_json::Value {
    json!({
        "level": t.level,
        "categories": t.scope.to_string(),
        "audit": t.audit,
        "delegate": t.delegate,
        "from": t.not_before.map(times::format),
        "until": t.until.map(times::format),
        "label": t.label,
        "requires": t.requires,
    })
}

/// Parses `all` or a list of categories.
pub fn parse_scope(text: &str) -> Result<Scope> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("all") {
        return Ok(Scope::All);
    }
    let set: BTreeSet<Category> = t
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    if set.is_empty() {
        return Err(CliError::invalid(
            "--categories needs `all` or at least one category",
        ));
    }
    Ok(Scope::Only(set))
}

/// The identity requirement of `--require LEVEL [--attested-by a-…,…]`: the issuers given,
/// else every issuer on the home's trust list.
pub fn requirement(
    ctx: &Ctx,
    level: Option<AssuranceLevel>,
    attested_by: Option<&str>,
) -> Result<Option<Requirement>> {
    let Some(level) = level else {
        return Ok(None);
    };
    let mut issuers: Vec<ActorId> = match attested_by {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| parse_id("issuer", s))
            .collect::<Result<_>>()?,
        None => ctx
            .home
            .trust_entries()?
            .issuers
            .iter()
            .map(|i| i.id)
            .collect(),
    };
    issuers.sort();
    issuers.dedup();
    if issuers.is_empty() {
        return Err(CliError::invalid(
            "--require needs the issuers whose attestations count: --attested-by \
             a-…, or trust one first (`cophr trust add a-… --name NAME`)",
        ));
    }
    if issuers.len() > MAX_REQUIREMENT_ISSUERS {
        return Err(CliError::invalid(format!(
            "--attested-by names at most {MAX_REQUIREMENT_ISSUERS} issuers"
        )));
    }
    Ok(Some(Requirement { level, issuers }))
}

/// Runs `grant`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let grantee: ActorId = parse_id("actor", &args.actor)?;
    let terms = args.access.terms(ctx)?;
    let me = ctx.identity()?;
    if grantee == me.actor() {
        return Err(CliError::invalid("you cannot grant access to yourself"));
    }
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let id = context::write_with(
        ctx,
        &store,
        &me,
        &record,
        Payload::Grant(terms.grant(grantee)),
        !args.from_now,
    )?;
    if ctx.json {
        let mut out = terms_json(&terms);
        out["grant"] = json!(id);
        out["record"] = json!(record);
        out["grantee"] = json!(grantee);
        return output::json(&out);
    }
    output::line(id.to_string())
}
