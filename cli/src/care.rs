//! What `cophr appointment`, `cophr task` and `cophr reminders` share: reading the current
//! items of one category as the caller may see them (audited as views, like `cophr show`),
//! writing a new item, and writing a new version of one.

use cophr_protocol::entry::Payload;
use cophr_protocol::fold::{self, Item, Viewer};
use cophr_protocol::record::Record;
use cophr_protocol::{schema, ActorId, Category, EntryId, RecordId, Timestamp, Value};
use serde_json::json;

use crate::context::{self, Ctx};
use crate::error::{CliError, Result};
use crate::output;
use cophr_node::session::{Cancel, Seen};

/// The person the caller writes as in `r`: the record id for the patient (any of their keys
/// or devices), the person a device acts for, else the caller's own actor id. A task's
/// requester and owner are persons.
pub fn person(r: &Record, me: &ActorId) -> ActorId {
    if r.is_patient(me) {
        return r.id();
    }
    r.owners_of(me).into_iter().next().unwrap_or(*me)
}

/// Reads the record as the caller, with `f` given the record, the caller's viewer, the
/// current state's items of `category`, and what was shown (to add the entries it shows).
/// The read is audited with `detail`.
pub fn read<T>(
    ctx: &Ctx,
    category: &Category,
    detail: &str,
    f: impl FnOnce(&Record, &Viewer, Vec<&Item>, &mut Seen) -> Result<T>,
) -> Result<(RecordId, T)> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let session = context::session(ctx, &store, &me);
    let out = session.read(&Cancel::new(), now, |rd| {
        rd.record(&record, |r, seen| {
            let viewer = r.viewer(&me.actor(), now);
            if !viewer.has_access() {
                return Err(CliError::access("no access to this record"));
            }
            let state = fold::current(r, &viewer);
            let items: Vec<&Item> = state
                .items
                .iter()
                .filter(|i| i.category == *category)
                .collect();
            seen.detail(detail.to_owned());
            f(r, &viewer, items, seen)
        })?
    })?;
    Ok((record, out))
}

/// Writes a new item of `category` from JSON fields that `fields` gives from the record
/// and the person the caller writes as (checked against the schema; the record's rules are
/// checked when it is written).
pub fn create(
    ctx: &Ctx,
    category: Category,
    fields: impl FnOnce(&ActorId) -> Result<serde_json::Value>,
) -> Result<()> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let person = store.with_record(&record, |r| person(r, &me.actor()))?;
    let body = schema::body_from_json(&category, &fields(&person)?)?;
    schema::validate(&category, &body)?;
    let summary = schema::summary(&category, &body);
    let id = context::write(
        ctx,
        &store,
        &me,
        &record,
        Payload::Create { category, body },
    )?;
    written(ctx, id, None, &summary)
}

/// Writes a new version of the item `entry` (any of its versions, or a unique prefix) of
/// `category`: `change` gives the new body from the current one and the person the caller
/// writes as.
pub fn amend(
    ctx: &Ctx,
    entry: &str,
    category: Category,
    change: impl FnOnce(&Value, &ActorId) -> Result<serde_json::Value>,
) -> Result<()> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let (item, person) = store.with_record(&record, |r| {
        crate::cmd::amend::current_item(r, &me.actor(), now, entry)
            .map(|i| (i, person(r, &me.actor())))
    })??;
    if item.category != category {
        return Err(CliError::invalid(format!(
            "{} is an entry in {}, not in {category}",
            item.id.short(),
            item.category
        )));
    }
    let new = change(&item.body, &person)?;
    let body = schema::body_from_json(&category, &new)?;
    schema::validate(&category, &body)?;
    if body == *item.body {
        return Err(CliError::invalid(
            "nothing to change: the new version would equal the current one",
        ));
    }
    let summary = schema::summary(&category, &body);
    let id = context::write(
        ctx,
        &store,
        &me,
        &record,
        Payload::Amend {
            target: item.current,
            body,
        },
    )?;
    written(ctx, id, Some((item.id, item.current)), &summary)
}

fn written(ctx: &Ctx, id: EntryId, item: Option<(EntryId, EntryId)>, summary: &str) -> Result<()> {
    if ctx.json {
        return output::json(&json!({
            "entry": id,
            "item": item.map_or(id, |i| i.0),
            "supersedes": item.map(|i| i.1),
            "summary": summary,
        }));
    }
    output::line(id.to_string())
}

/// A text field of a body.
pub fn text<'a>(body: &'a Value, k: &str) -> Option<&'a str> {
    body.get(k).and_then(Value::as_text)
}

/// A body as a JSON object, to change fields of.
pub fn object(body: &Value) -> serde_json::Map<String, serde_json::Value> {
    match body.to_json() {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}

/// Parses a time given on the command line and writes it as RFC 3339 UTC.
pub fn time(flag: &str, s: &str) -> Result<String> {
    let t: Timestamp =
        crate::times::parse(s, crate::times::DayEnd::Start).map_err(|e| e.context(flag))?;
    Ok(crate::times::format(t))
}

/// The people a command line may name in `r` for `category`: the grantees in effect whose
/// grant covers it at `level` or above, each under the names they go by here (the name in
/// their profile and their grants' labels), and, with `patient`, the patient under theirs.
pub fn named_people(
    r: &Record,
    category: &Category,
    level: cophr_protocol::Level,
    patient: bool,
) -> Vec<(ActorId, String)> {
    let mut out: Vec<(ActorId, String)> = Vec::new();
    for g in r
        .grants()
        .filter(|g| g.grant.level >= level && g.grant.scope.covers(category))
    {
        let a = g.grant.grantee;
        if !r.grants_of(&a).contains(&g.id) {
            continue;
        }
        if let Some(l) = &g.grant.label {
            out.push((a, l.clone()));
        }
        if let Some(p) = r.latest_profile(&a) {
            out.push((a, p.name.clone()));
        }
    }
    if patient {
        if let Some(p) = r.latest_profile(&r.id()) {
            out.push((r.id(), p.name.clone()));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The value of `flag`: an actor id, or the name (case aside) of exactly one of `people`
/// ([`named_people`]; `who` says who they are). No match is "not found"; several are
/// invalid, listing their actor ids.
pub fn person_named(
    people: &[(ActorId, String)],
    flag: &str,
    value: &str,
    who: &str,
) -> Result<ActorId> {
    let w = value.trim();
    if let Ok(id) = w.parse::<ActorId>() {
        return Ok(id);
    }
    let mut found: Vec<&ActorId> = people
        .iter()
        .filter(|(_, name)| name.trim().to_lowercase() == w.to_lowercase())
        .map(|(a, _)| a)
        .collect();
    found.dedup();
    match found.as_slice() {
        [one] => Ok(**one),
        [] => Err(CliError::not_found(format!(
            "{flag} `{w}`: neither an actor id nor the name of {who} (`cophr grants` lists them)"
        ))),
        many => Err(CliError::invalid(format!(
            "{flag} `{w}` names {} people ({}): give the actor id",
            many.len(),
            many.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}
