//! The record as FHIR resources, as the node's identity sees it: items of record data
//! (exported by `cophr_protocol::fhir`), the patient, and the derived Provenance,
//! AuditEvent and Consent resources. Pure functions of a [`Record`] (and audit events).

use std::collections::HashMap;

use cophr_protocol::audit::SignedAudit;
use cophr_protocol::fhir::{self, ExportMeta, IdPolicy, SearchKeys};
use cophr_protocol::fold::{self, Viewer};
use cophr_protocol::record::Record;
use cophr_protocol::{ActorId, Category, EntryId, Payload, RecordId, Timestamp, Value};
use serde_json::Value as Json;

use super::resources;
use super::search::{self, Search};
use crate::session::{Cancel, Cancelled};

/// One version of an item.
#[derive(Debug, Clone)]
pub struct Version {
    /// 1-based, in time order (the FHIR `versionId`).
    pub n: usize,
    /// The entry.
    pub entry: EntryId,
    /// Author time.
    pub time: Timestamp,
    /// The resource at this version (`None`: a delete).
    pub resource: Option<Json>,
}

/// One item of record data as a resource.
#[derive(Debug, Clone)]
pub struct Res {
    /// The record.
    pub record: RecordId,
    /// The item (its root create).
    pub item: EntryId,
    /// The FHIR id (the record id for the record's patient, else the item id).
    pub id: String,
    /// The resource type.
    pub resource_type: String,
    /// The current resource with `meta` set (`None`: deleted).
    pub resource: Option<Json>,
    /// The current version's entry.
    pub current: EntryId,
    /// The current version's number.
    pub version: usize,
    /// When the current version was written.
    pub updated: Timestamp,
    /// What search matches it by.
    pub keys: SearchKeys,
    /// The id it came in with, if imported (searchable by `_id`).
    pub original: Option<String>,
}

/// Exports a body as the resource of `item`, with the entry id as its id.
pub fn export(
    record: &RecordId,
    item: &EntryId,
    category: &Category,
    body: &Value,
) -> Option<Json> {
    fhir::export(
        record,
        item,
        category,
        body,
        &ExportMeta {
            ids: IdPolicy::Entry,
            link_patient: false,
        },
    )
    .ok()
}

/// The record's patient item: its oldest current demographics item exported as a Patient.
pub fn primary_patient(record: &Record, state: &fold::State) -> Option<EntryId> {
    state
        .in_category(&Category::Demographics)
        .filter(|i| {
            export(&record.id(), &i.id, &i.category, &i.body)
                .is_some_and(|r| r["resourceType"] == "Patient")
        })
        .min_by_key(|i| (i.created, i.id))
        .map(|i| i.id)
}

/// The versions of an item (creates, amends and deletes in effect, in time order), their
/// references naming the record's resources as served ([`served_names`]).
pub fn versions(record: &Record, viewer: &Viewer, item: &EntryId, id: &str) -> Vec<Version> {
    let state = fold::current(record, viewer);
    let names = served_names(record, &state, primary_patient(record, &state));
    let mut vs = versions_of(
        record,
        fold::history_with(record, viewer, &state, item),
        item,
        id,
    );
    for r in vs.iter_mut().filter_map(|v| v.resource.as_mut()) {
        fhir::rewrite_references(r, &names);
    }
    vs
}

/// The original resource's type and id, when the body keeps it (`fhir-resource`).
pub fn original_head(body: &Value) -> Option<(String, Option<String>)> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "resourceType")]
        ty: String,
        id: Option<String>,
    }
    let text = body
        .get(cophr_protocol::schema::FHIR_RESOURCE)
        .and_then(Value::as_text)?;
    let head: Head = serde_json::from_str(text).ok()?;
    Some((head.ty, head.id))
}

/// One current item as the viewer sees it, as [`items`] gives it (folding only that item;
/// `primary` is the record's patient item, served as `Patient/<record id>`), its references
/// not yet rewritten. `None` if it is not current for the viewer or exports as nothing.
pub fn item_res(
    record: &Record,
    viewer: &Viewer,
    root: &EntryId,
    primary: Option<EntryId>,
) -> Option<Res> {
    let rid = record.id();
    let Some(fold::ItemState::Current(i)) = fold::item(record, viewer, root) else {
        return None;
    };
    let id = if Some(i.id) == primary {
        rid.to_string()
    } else {
        i.id.to_string()
    };
    let mut r = export(&rid, &i.id, &i.category, &i.body)?;
    let version = if i.versions <= 1 {
        1
    } else {
        let one = fold::State {
            items: vec![(*i).clone()],
            ..fold::State::default()
        };
        versions_with(record, viewer, &one, &i.id, &id)
            .iter()
            .find(|v| v.entry == i.current)
            .map_or(i.versions, |v| v.n)
    };
    r["id"] = Json::String(id.clone());
    resources::set_meta(&mut r, version, i.updated);
    Some(Res {
        record: rid,
        item: i.id,
        id,
        resource_type: r["resourceType"].as_str().unwrap_or_default().to_owned(),
        keys: {
            let mut k = fhir::search_keys(&i.category, &i.body);
            k.category_codes.push(i.category.name().to_owned());
            k
        },
        original: original_head(&i.body).and_then(|(_, id)| id),
        resource: Some(r),
        current: i.current,
        version,
        updated: i.updated,
    })
}

/// The standalone `ServiceRequest` of a referral: a referral task is served as a `Task`
/// carrying its ServiceRequest `contained`, and that ServiceRequest is served alone too,
/// under the item's id (same version and time, the item's search keys).
pub fn service_request_of(task: &Res) -> Option<Res> {
    if task.resource_type != "Task" {
        return None;
    }
    let r = task.resource.as_ref()?;
    let mut sr = r["contained"]
        .as_array()?
        .iter()
        .find(|c| c["resourceType"] == "ServiceRequest")?
        .clone();
    sr["id"] = Json::String(task.id.clone());
    if let Some(m) = r.get("meta") {
        sr["meta"] = m.clone();
    }
    Some(Res {
        resource_type: "ServiceRequest".into(),
        resource: Some(sr),
        ..task.clone()
    })
}

/// Every `reference` string in a resource (nested at most 64 deep).
pub fn references_in(j: &Json, out: &mut Vec<String>) {
    fn walk(j: &Json, out: &mut Vec<String>, depth: usize) {
        if depth > 64 {
            return;
        }
        match j {
            Json::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("reference", Json::String(s)) => out.push(s.clone()),
                        _ => walk(v, out, depth + 1),
                    }
                }
            }
            Json::Array(a) => a.iter().for_each(|v| walk(v, out, depth + 1)),
            _ => {}
        }
    }
    walk(j, out, 0);
}

/// The versions of an item as [`versions`] gives them, with references rewritten by the
/// `names` the caller found (from the index) rather than by folding the whole record.
pub fn versions_named(
    record: &Record,
    viewer: &Viewer,
    item: &EntryId,
    id: &str,
    names: &dyn Fn(&[&Json]) -> HashMap<String, String>,
) -> Vec<Version> {
    let one = match fold::item(record, viewer, item) {
        Some(fold::ItemState::Current(i)) => fold::State {
            items: vec![*i],
            ..fold::State::default()
        },
        _ => fold::State::default(),
    };
    let mut vs = versions_of(
        record,
        fold::history_with(record, viewer, &one, item),
        item,
        id,
    );
    let map = names(
        &vs.iter()
            .filter_map(|v| v.resource.as_ref())
            .collect::<Vec<_>>(),
    );
    for r in vs.iter_mut().filter_map(|v| v.resource.as_mut()) {
        fhir::rewrite_references(r, &map);
    }
    vs
}

/// How the record's resources named each other as they came in → how they are served:
/// `Type/<original id>` and the `fullUrl` of every resource imported (whose body keeps its
/// original JSON) → `Type/<entry id>`, or `Patient/<record id>` for the record's patient
/// (`primary`). So a reference that resolved in what was imported resolves in what is
/// served.
pub fn served_names(
    record: &Record,
    state: &fold::State,
    primary: Option<EntryId>,
) -> HashMap<String, String> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "resourceType")]
        ty: String,
        id: Option<String>,
    }
    let rid = record.id();
    let mut names = HashMap::new();
    for i in &state.items {
        let Some(text) = i
            .body
            .get(cophr_protocol::schema::FHIR_RESOURCE)
            .and_then(Value::as_text)
        else {
            continue;
        };
        let Ok(head) = serde_json::from_str::<Head>(text) else {
            continue;
        };
        let served = if Some(i.id) == primary {
            format!("{}/{rid}", head.ty)
        } else {
            format!("{}/{}", head.ty, i.id)
        };
        if let Some(original) = head.id {
            names.insert(format!("{}/{original}", head.ty), served.clone());
        }
        names.insert(fhir::full_url(&i.id, &i.body), served);
    }
    names.retain(|from, to| from != to);
    names
}

/// [`versions`], given the viewer's current state (folded once for many items).
fn versions_with(
    record: &Record,
    viewer: &Viewer,
    state: &fold::State,
    item: &EntryId,
    id: &str,
) -> Vec<Version> {
    versions_of(
        record,
        fold::history_with(record, viewer, state, item),
        item,
        id,
    )
}

fn versions_of(
    record: &Record,
    h: Option<fold::History>,
    item: &EntryId,
    id: &str,
) -> Vec<Version> {
    let Some(h) = h else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for v in h.versions {
        if !v.in_effect || !matches!(v.kind, "create" | "amend" | "delete") {
            continue;
        }
        let n = out.len() + 1;
        let resource = match v.kind {
            "delete" => None,
            _ => export(&record.id(), item, &h.category, &v.content).map(|mut r| {
                r["id"] = Json::String(id.to_owned());
                resources::set_meta(&mut r, n, v.provenance.time);
                r
            }),
        };
        out.push(Version {
            n,
            entry: v.id,
            time: v.provenance.time,
            resource,
        });
    }
    out
}

/// Every item of the record the viewer sees, current and deleted, as resources (`Err` once
/// `stop` is cancelled: checked at every item).
pub fn items(record: &Record, viewer: &Viewer, stop: &Cancel) -> Result<Vec<Res>, Cancelled> {
    let rid = record.id();
    let state = fold::current(record, viewer);
    let primary = primary_patient(record, &state);
    let mut out = Vec::new();
    for i in &state.items {
        stop.check()?;
        let id = if Some(i.id) == primary {
            rid.to_string()
        } else {
            i.id.to_string()
        };
        let Some(mut r) = export(&rid, &i.id, &i.category, &i.body) else {
            continue;
        };
        let version = if i.versions <= 1 {
            1
        } else {
            versions_with(record, viewer, &state, &i.id, &id)
                .iter()
                .find(|v| v.entry == i.current)
                .map_or(i.versions, |v| v.n)
        };
        r["id"] = Json::String(id.clone());
        resources::set_meta(&mut r, version, i.updated);
        out.push(Res {
            record: rid,
            item: i.id,
            id,
            resource_type: r["resourceType"].as_str().unwrap_or_default().to_owned(),
            keys: {
                let mut k = fhir::search_keys(&i.category, &i.body);
                k.category_codes.push(i.category.name().to_owned());
                k
            },
            resource: Some(r),
            current: i.current,
            version,
            updated: i.updated,
            original: original_head(&i.body).and_then(|(_, id)| id),
        });
    }
    let referrals: Vec<Res> = out.iter().filter_map(service_request_of).collect();
    out.extend(referrals);
    for d in &state.deleted {
        stop.check()?;
        let vs = versions_with(record, viewer, &state, d, &d.to_string());
        let (Some(last), Some(shown)) =
            (vs.last(), vs.iter().rev().find_map(|v| v.resource.as_ref()))
        else {
            continue;
        };
        out.push(Res {
            record: rid,
            item: *d,
            id: d.to_string(),
            resource_type: shown["resourceType"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            resource: None,
            current: last.entry,
            version: last.n,
            updated: last.time,
            keys: SearchKeys::default(),
            original: None,
        });
    }
    // References among the record's resources name them as served, so none that resolved
    // as they came in dangles.
    let names = served_names(record, &state, primary);
    for r in out.iter_mut().filter_map(|r| r.resource.as_mut()) {
        fhir::rewrite_references(r, &names);
    }
    if primary.is_none() {
        out.extend(profile_patient(record));
    }
    Ok(out)
}

/// The record's patient from the genesis entry's profile, for a record whose patient has
/// no demographics item exported as a Patient.
pub fn profile_patient(record: &Record) -> Option<Res> {
    let rid = record.id();
    let mut p = resources::patient_from_profile(record);
    let g = record
        .entries()
        .find(|e| matches!(e.entry().payload, Payload::Genesis { .. }))?;
    resources::set_meta(&mut p, 1, g.entry().time);
    Some(Res {
        record: rid,
        item: g.id(),
        id: rid.to_string(),
        resource_type: "Patient".into(),
        resource: Some(p),
        current: g.id(),
        version: 1,
        updated: g.entry().time,
        keys: SearchKeys::default(),
        original: None,
    })
}

/// The item (root create) an entry belongs to: its targets walked back to the create
/// (as `fold::history` does), if the viewer sees it.
fn item_root(record: &Record, viewer: &Viewer, id: &EntryId) -> Option<EntryId> {
    let mut root = *id;
    for _ in 0..record.len() {
        let held = record.get(&root)?;
        let e = held.entry();
        match e.payload.target() {
            Some(t) if !e.payload.is_create() => root = t,
            _ => break,
        }
    }
    let is_create = record.get(&root)?.entry().payload.is_create();
    (is_create && record.can_see(viewer, &root)).then_some(root)
}

/// Lookups built once per read of many Provenances, so each entry costs no scan of the
/// record: resources by item, and (for items with several versions) version numbers by
/// entry, computed once per item.
struct Lookup<'a> {
    by_item: std::collections::HashMap<EntryId, &'a Res>,
    numbers: std::collections::HashMap<EntryId, std::collections::HashMap<EntryId, usize>>,
    /// The viewer's current state, folded once when first needed.
    state: Option<fold::State>,
}

impl<'a> Lookup<'a> {
    fn new(all: &'a [Res]) -> Self {
        Lookup {
            by_item: all.iter().map(|r| (r.item, r)).collect(),
            numbers: Default::default(),
            state: None,
        }
    }

    /// The version number of `entry` in `item` (the nth create, amend or delete in effect).
    fn number(
        &mut self,
        record: &Record,
        viewer: &Viewer,
        r: &Res,
        entry: &EntryId,
    ) -> Option<usize> {
        if r.version == 1 && *entry == r.item {
            // The create of an item with one version in effect.
            return Some(1);
        }
        let state = self
            .state
            .get_or_insert_with(|| fold::current(record, viewer));
        let numbers = self.numbers.entry(r.item).or_insert_with(|| {
            versions_with(record, viewer, state, &r.item, &r.id)
                .iter()
                .map(|v| (v.entry, v.n))
                .collect()
        });
        numbers.get(entry).copied()
    }
}

/// The reference to the resource version an entry is (or is about), for Provenance.
fn provenance_target(
    record: &Record,
    viewer: &Viewer,
    look: &mut Lookup<'_>,
    id: &EntryId,
) -> Option<String> {
    let held = record.get(id)?;
    let e = held.entry();
    let rid = record.id();
    match &e.payload {
        Payload::Genesis { .. } | Payload::Profile(_) => Some(format!("Patient/{rid}")),
        Payload::Grant(_) => Some(format!("Consent/{id}")),
        Payload::Revoke { grant, .. } => Some(format!("Consent/{grant}")),
        Payload::Annotate { target, .. } | Payload::SealedAnnotate { target, .. } => {
            let root = item_root(record, viewer, target)?;
            let r = look.by_item.get(&root)?;
            Some(format!("{}/{}", r.resource_type, r.id))
        }
        Payload::Create { .. }
        | Payload::Amend { .. }
        | Payload::Delete { .. }
        | Payload::SealedCreate { .. }
        | Payload::SealedAmend { .. }
        | Payload::SealedDelete { .. } => {
            let root = item_root(record, viewer, id)?;
            let r: &Res = look.by_item.get(&root)?;
            let n = look.number(record, viewer, r, id)?;
            Some(format!("{}/{}/_history/{n}", r.resource_type, r.id))
        }
        Payload::MoveHome { .. }
        | Payload::AddDevice { .. }
        | Payload::RemoveDevice { .. }
        | Payload::SetGuardians { .. }
        | Payload::RotateKey { .. }
        | Payload::KeyWrap { .. }
        | Payload::RotationPart { .. }
        | Payload::AddMember { .. }
        | Payload::RemoveMember { .. }
        | Payload::JoinOrg { .. }
        | Payload::DefineSchema(_) => None,
    }
}

/// The Provenance of one entry the viewer sees.
fn provenance(
    record: &Record,
    viewer: &Viewer,
    look: &mut Lookup<'_>,
    id: &EntryId,
) -> Option<Json> {
    if !record.can_see(viewer, id) {
        return None;
    }
    let target = provenance_target(record, viewer, look, id)?;
    provenance_to(record, id, &target)
}

/// The Provenance of one entry, given the reference to what it is about.
pub fn provenance_to(record: &Record, id: &EntryId, target: &str) -> Option<Json> {
    let prov = fold::provenance(record, id)?;
    let source = match &*record.payload(id)? {
        Payload::Create { body, .. } | Payload::Amend { body, .. } => body
            .get(cophr_protocol::schema::FHIR_SOURCE)
            .and_then(Value::as_text)
            .map(str::to_owned),
        _ => None,
    };
    let mut p = resources::provenance(record, id, &prov, target, source.as_deref())?;
    resources::set_meta(&mut p, 1, prov.time);
    Some(p)
}

/// Every Provenance the viewer sees in the record (entries in record order; `Err` once
/// `stop` is cancelled: checked at every entry).
pub fn provenances(
    record: &Record,
    viewer: &Viewer,
    all: &[Res],
    stop: &Cancel,
) -> Result<Vec<(EntryId, Timestamp, Json)>, Cancelled> {
    let mut look = Lookup::new(all);
    let mut out = Vec::new();
    for e in record.entries() {
        stop.check()?;
        if let Some(p) = provenance(record, viewer, &mut look, &e.id()) {
            out.push((e.id(), e.entry().time, p));
        }
    }
    Ok(out)
}

/// The people who write into the record as practitioners ([`resources::is_practitioner`]),
/// from the latest profile of each the viewer sees: actor, that profile entry, its time and
/// the `Practitioner` (`Err` once `stop` is cancelled).
pub fn practitioners(
    record: &Record,
    viewer: &Viewer,
    stop: &Cancel,
) -> Result<Vec<(ActorId, EntryId, Timestamp, Json)>, Cancelled> {
    let mut latest: std::collections::BTreeMap<ActorId, (EntryId, Timestamp)> = Default::default();
    for e in record.entries() {
        stop.check()?;
        if !matches!(e.entry().payload, Payload::Profile(_)) || !record.can_see(viewer, &e.id()) {
            continue;
        }
        let t = e.entry().time;
        let slot = latest.entry(e.entry().author).or_insert((e.id(), t));
        if (t, e.id()) > (slot.1, slot.0) {
            *slot = (e.id(), t);
        }
    }
    let mut out = Vec::new();
    for (actor, (id, t)) in latest {
        if !resources::is_practitioner(record, &actor) {
            continue;
        }
        let held = record.get(&id);
        let Some(Payload::Profile(p)) = held.as_ref().map(|e| &e.entry().payload) else {
            continue;
        };
        let mut j = resources::practitioner(record, &actor, p);
        resources::set_meta(&mut j, 1, t);
        out.push((actor, id, t, j));
    }
    Ok(out)
}

/// The care organisations granted access that the viewer sees the grants of, as
/// `Organization` resources: (id, the grants naming it, latest grant time, resource).
pub fn organizations(
    record: &Record,
    viewer: &Viewer,
) -> Vec<(String, Vec<EntryId>, Timestamp, Json)> {
    let mut out: Vec<(String, Vec<EntryId>, Timestamp, Json)> = Vec::new();
    let mut grants: Vec<_> = record
        .grants()
        .filter(|g| record.can_see(viewer, &g.id))
        .filter(|g| resources::is_organisation(record, &g.grant.grantee))
        .collect();
    grants.sort_by_key(|g| (g.time, g.id));
    for g in grants {
        let id = g.grant.grantee.to_string();
        if let Some(o) = out.iter_mut().find(|o| o.0 == id) {
            o.1.push(g.id);
            o.2 = o.2.max(g.time);
            continue;
        }
        let mut j = resources::organization(record, &g.grant.grantee);
        resources::set_meta(&mut j, 1, g.time);
        out.push((id, vec![g.id], g.time, j));
    }
    out
}

/// The members of care organisations who joined the record, whose joins the viewer sees,
/// as `PractitionerRole` resources: (id, the join, its time, resource); and in an
/// organisation's own record, its members as its membership log lists them (id: the
/// `AddMember`; version 2 once removed).
pub fn practitioner_roles(
    record: &Record,
    viewer: &Viewer,
) -> Vec<(String, Vec<EntryId>, Timestamp, Json)> {
    let joined = record
        .joined_members()
        .into_iter()
        .filter(|m| record.can_see(viewer, &m.joined))
        .map(|m| {
            let t = record.time_of(&m.joined).unwrap_or(0);
            let mut j = resources::practitioner_role(record, &m);
            resources::set_meta(&mut j, 1, t);
            let mut seen = vec![m.joined];
            seen.extend(m.removed);
            (m.joined.to_string(), seen, t, j)
        });
    let staff = record
        .members()
        .into_iter()
        .filter(|m| record.can_see(viewer, &m.added))
        .map(|m| {
            let removed = m.removed.filter(|r| record.can_see(viewer, r));
            let t = removed
                .or(Some(m.added))
                .and_then(|e| record.time_of(&e))
                .unwrap_or(0);
            let mut shown = m.clone();
            shown.removed = removed;
            let mut j = resources::staff_role(record, &shown);
            resources::set_meta(&mut j, 1 + usize::from(removed.is_some()), t);
            let mut seen = vec![m.added];
            seen.extend(removed);
            (m.added.to_string(), seen, t, j)
        });
    joined.chain(staff).collect()
}

/// The record's `CareTeam` (everyone with access whose grant the viewer sees): one
/// resource, id the record id, as of the latest grant shown.
pub fn care_teams(
    record: &Record,
    viewer: &Viewer,
    now: Timestamp,
) -> Vec<(String, Vec<EntryId>, Timestamp, Json)> {
    let mut grants: Vec<_> = record
        .grants()
        .filter(|g| record.can_see(viewer, &g.id))
        .collect();
    if grants.is_empty() {
        return Vec::new();
    }
    grants.sort_by_key(|g| (g.time, g.id));
    let t = grants.iter().map(|g| g.time).max().unwrap_or(0);
    let mut j = resources::care_team(record, &grants, now);
    resources::set_meta(&mut j, 1, t);
    let seen = grants.iter().map(|g| g.id).collect();
    vec![(record.id().to_string(), seen, t, j)]
}

/// The Consent resources for the record's grants the viewer sees.
pub fn consents(
    record: &Record,
    viewer: &Viewer,
    now: Timestamp,
) -> Vec<(EntryId, Timestamp, Json)> {
    let types = |c: &str| -> Vec<String> {
        c.parse::<Category>()
            .map(|c| {
                fhir::types_for(&c)
                    .iter()
                    .map(|t| (*t).to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out: Vec<(EntryId, Timestamp, Json)> = record
        .grants()
        .filter(|g| record.can_see(viewer, &g.id))
        .map(|g| {
            let mut c = resources::consent(record, g, now, &types);
            let updated = g
                .revoked_by
                .iter()
                .filter(|r| record.can_see(viewer, r))
                .filter_map(|r| record.get(r).map(|e| e.entry().time))
                .max()
                .unwrap_or(g.time);
            resources::set_meta(&mut c, 1, updated);
            (g.id, g.time, c)
        })
        .collect();
    out.sort_by_key(|(id, t, _)| (*t, *id));
    out
}

/// AuditEvents of the record (only for a viewer with the audit right; `Err` once `stop`
/// is cancelled: checked at every event).
pub fn audit_events(
    record: &Record,
    viewer: &Viewer,
    events: &[SignedAudit],
    all: &[Res],
    stop: &Cancel,
) -> Result<Vec<(EntryId, Timestamp, Json)>, Cancelled> {
    if !viewer.may_audit() {
        return Ok(Vec::new());
    }
    let mut by_entry: std::collections::HashMap<EntryId, &Res> = Default::default();
    // The first resource in `all` wins, for its item and for its current version.
    for r in all.iter().rev() {
        by_entry.insert(r.current, r);
        by_entry.insert(r.item, r);
    }
    let entity = |e: &EntryId| -> Option<Json> {
        if !record.can_see(viewer, e) {
            // Entries outside the viewer's grants are not named.
            return None;
        }
        if let Some(r) = by_entry.get(e) {
            return Some(serde_json::json!({"reference": format!("{}/{}", r.resource_type, r.id)}));
        }
        Some(
            serde_json::json!({"identifier": {"system": resources::ENTRY_SYSTEM, "value": e.to_string()}}),
        )
    };
    let mut out = Vec::new();
    for a in events {
        stop.check()?;
        let mut j = resources::audit_event(a, entity);
        resources::set_meta(&mut j, 1, a.event.time);
        out.push((a.id(), a.event.time, j));
    }
    Ok(out)
}

/// Whether a resource matches a search's parameters (`patient` is checked by the caller).
pub fn matches(s: &Search, id: &str, keys: &SearchKeys, date: Option<search::Range>) -> bool {
    if !s.ids.is_empty() && !s.ids.iter().any(|i| i == id) {
        return false;
    }
    for alts in &s.codes {
        if !alts.iter().any(|t| {
            keys.codes
                .iter()
                .any(|(sys, c)| t.matches(sys.as_deref(), c))
        }) {
            return false;
        }
    }
    for alts in &s.categories {
        if !alts.iter().any(|t| {
            keys.category_codes
                .iter()
                .any(|c| t.code.as_deref() == Some(c.as_str()))
        }) {
            return false;
        }
    }
    if !s.dates.is_empty() {
        let Some(r) = date else { return false };
        if !s.dates.iter().all(|d| d.matches(r)) {
            return false;
        }
    }
    true
}
