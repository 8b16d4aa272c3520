//! Who viewed what: the audit trail, filtered, grouped and paged by
//! [`cophr_protocol::audit::query`].

use cophr_protocol::audit::{Action, AuditQuery, AuditRow, Own};

use super::*;

/// Most actors one audit query names.
const MAX_ACTORS: usize = 64;

fn audit_json(r: &Record, a: &SignedAudit) -> Value {
    let e = &a.event;
    let known = r
        .profile(&e.actor, Some(e.time))
        .or_else(|| r.profile(&e.actor, None));
    let first = e.entries.first();
    let category = first
        .and_then(|id| r.category_of(id))
        .map(|c| c.name().to_owned());
    json!({
        "id": a.id(),
        "time": format_time(e.time),
        "actor": {
            "actor": e.actor,
            "name": e.actor_name.clone().or_else(|| known.map(|p| p.name.clone())),
            "role": e.actor_role.clone().or_else(|| known.map(|p| p.role.clone())),
            "organisation": e.actor_organisation.clone()
                .or_else(|| known.and_then(|p| p.organisation.clone())),
            "assurance": person(r, &e.actor, None)["assurance"].clone(),
        },
        "action": e.action.name(),
        "entry": first,
        "entries": e.entries,
        "category": category,
        "detail": e.detail,
        "node": e.node,
        "seq": e.seq,
        "device": e.device,
    })
}

/// The audit trail's query parameters (see [`cophr_protocol::audit::AuditQuery`]).
#[derive(Debug, Deserialize)]
pub(super) struct AuditParams {
    /// Actor ids, comma-separated.
    actor: Option<String>,
    /// Action names, comma-separated.
    action: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// `hide-reads` (default), `include` or `only`.
    own: Option<String>,
    /// Group runs of sync reads (default true).
    group: Option<bool>,
    page: Option<usize>,
    limit: Option<usize>,
}

fn audit_query(me: ActorId, p: &AuditParams) -> Result<AuditQuery, ApiError> {
    // A filter given is a comma-separated list of names, none empty (`actor=` and `a,,b`
    // are refused, as the document's patterns say, not read as no filter).
    let list = |what: &str, s: &Option<String>| -> Result<Vec<String>, ApiError> {
        let Some(s) = s.as_deref() else {
            return Ok(Vec::new());
        };
        let items: Vec<String> = s.split(',').map(|x| x.trim().to_owned()).collect();
        if items.iter().any(String::is_empty) {
            return Err(ApiError::invalid(format!(
                "{what} is a comma-separated list with no empty name"
            )));
        }
        Ok(items)
    };
    let mut q = AuditQuery::new(me);
    let actors = list("actor", &p.actor)?;
    if actors.len() > MAX_ACTORS {
        return Err(ApiError::invalid(format!(
            "at most {MAX_ACTORS} actors at once"
        )));
    }
    q.actors = actors
        .iter()
        .map(|a| {
            a.parse::<ActorId>()
                .map_err(|e| ApiError::invalid(format!("actor `{a}` is not an actor id: {e}")))
        })
        .collect::<Result<_, _>>()?;
    q.actions = list("action", &p.action)?
        .iter()
        .map(|a| {
            Action::from_name(a).ok_or_else(|| {
                let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
                ApiError::invalid(format!("action `{a}` is not one of {}", names.join(", ")))
            })
        })
        .collect::<Result<_, _>>()?;
    q.since = p
        .since
        .as_deref()
        .map(|t| parse_time_or_day("since", t, true))
        .transpose()?;
    q.until = p
        .until
        .as_deref()
        .map(|t| parse_time_or_day("until", t, false))
        .transpose()?;
    if let (Some(a), Some(b)) = (q.since, q.until) {
        if a > b {
            // A rule across two parameters (the schema cannot compare them): 409, documented.
            return Err(ApiError::conflict("since is after until"));
        }
    }
    q.own = match p.own.as_deref().map(str::trim) {
        None | Some("hide-reads") => Own::HideReads,
        Some("include") => Own::Include,
        Some("only") => Own::Only,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "own `{other}` is not one of hide-reads, include, only"
            )))
        }
    };
    q.group_sync = p.group.unwrap_or(true);
    q.page = match p.page {
        Some(0) => return Err(ApiError::invalid("page must be at least 1")),
        Some(n) => n,
        None => 1,
    };
    q.limit = limit(&LimitQuery { limit: p.limit })?;
    Ok(q)
}

fn audit_row_json(r: &Record, row: &AuditRow<'_>) -> Value {
    match row {
        AuditRow::Event(a) => {
            let mut j = audit_json(r, a);
            j["kind"] = json!("event");
            j
        }
        AuditRow::Sync(run) => {
            let first = audit_json(r, run.first);
            let l = &run.last.event;
            json!({
                "kind": "sync",
                "time": format_time(l.time),
                "first": first["time"],
                "last": format_time(l.time),
                "count": run.count,
                "entries_served": run.entries,
                "actor": first["actor"],
                "action": l.action.name(),
                "detail": l.detail,
                "node": l.node,
                "device": l.device,
            })
        }
    }
}

pub(super) async fn audit_trail(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    QueryParams(p): QueryParams<AuditParams>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let q = audit_query(st.actor(), &p)?;
    let out = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            st.read(now, |rd| {
                let events = rd.audit_events(&record)?;
                rd.record(&record, |r, seen| {
                    let v = viewer(r, &me, now)?;
                    if !v.may_audit() {
                        return Err(ApiError::forbidden(
                            "not authorised: your grant does not include the audit right, so \
                             you may not read this record's audit trail",
                        ));
                    }
                    let page = cophr_protocol::audit::query(&events, &q);
                    seen.audit_trail();
                    seen.detail(format!(
                        "{} of {} events (API)",
                        page.matched, page.events
                    ));
                    Ok(json!({
                        "record": record,
                        "rows": page.rows.iter().map(|row| audit_row_json(r, row)).collect::<Vec<_>>(),
                        "page": page.page,
                        "limit": page.limit,
                        "pages": page.pages(),
                        "total": page.total_rows,
                        "matched": page.matched,
                        "events": page.events,
                    }))
                })?
            })
        })
        .await?;
    Ok(Json(out))
}
