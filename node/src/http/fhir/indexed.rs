//! Reads answered through the per-record index ([`super::index`]): searches of the types
//! items are served as, reads by id, the versions of an item, and the pages of
//! `$everything` up to its derived resources. Each finds candidates in the index, decides a
//! match from the settled state where that is exact for the viewer (else by folding the
//! item for them), and builds each resource it returns by folding that one item for the
//! viewer ([`view::item_res`]), as the full scan does; the caller audits what is delivered,
//! as before. `Ok(None)`: the record is too big to index, so the caller scans.

use std::collections::HashMap;

use cophr_protocol::fhir::SearchKeys;
use cophr_protocol::fold::Viewer;
use cophr_protocol::record::Record;
use cophr_protocol::{Category, EntryId, RecordId};
use serde_json::Value as Json;

use super::index::{self, RecordIndex};
use super::search::{self, Search};
use super::view::{self, Res};
use super::{full_url, Ctx, Found, Outcome, PageEntry};
use crate::http::AppState;
use crate::session::Cancelled;

/// The record's patient item as the viewer sees it: its oldest current demographics item
/// served as a Patient (as [`view::primary_patient`]).
pub(super) fn primary(ix: &RecordIndex, rec: &Record, viewer: &Viewer) -> Option<EntryId> {
    let demographics = index::rank(&Category::Demographics);
    ix.of_type("Patient")
        .iter()
        .filter(|r| ix.item(r).is_some_and(|i| i.order.0 == demographics))
        .find(|r| {
            ix.current_for(rec, viewer, r)
                .is_some_and(|(_, k)| k.ty == "Patient")
        })
        .copied()
}

/// How the references in `resources` that name the record's resources as they came in are
/// served (as [`view::served_names`] gives them for the whole record).
pub(super) fn names_for(
    ix: &RecordIndex,
    rec: &Record,
    viewer: &Viewer,
    primary: Option<EntryId>,
    resources: &[&Json],
) -> HashMap<String, String> {
    let rid = rec.id();
    let mut refs = Vec::new();
    for r in resources {
        view::references_in(r, &mut refs);
    }
    let mut map = HashMap::new();
    let mut done = std::collections::HashSet::new();
    for r in refs {
        if !done.insert(r.clone()) {
            continue;
        }
        // The last item in served order known by the name wins, as in the scan.
        for root in ix.named(&r).iter().rev() {
            let Some((_, k)) = ix.current_for(rec, viewer, root) else {
                continue;
            };
            if !k.names.contains(&r) {
                continue;
            }
            let ty = k.original_ty.clone().unwrap_or_default();
            let served = if Some(*root) == primary {
                format!("{ty}/{rid}")
            } else {
                format!("{ty}/{root}")
            };
            if served != r {
                map.insert(r.clone(), served);
            }
            break;
        }
    }
    map
}

/// A resource found, from one item's [`Res`].
pub(super) fn found(r: Res) -> Found {
    let alt = (r.id != r.item.to_string()).then(|| r.item.to_string());
    let date = r.keys.date.as_deref().and_then(search::date_range);
    Found {
        ty: r.resource_type,
        record: r.record,
        id: r.id,
        alt_id: alt,
        item: Some(r.item),
        current: Some(r.current),
        resource: r.resource,
        version: r.version,
        updated: r.updated,
        date,
        keys: r.keys,
        entries: vec![r.item, r.current],
        audit_read: false,
        original: r.original,
    }
}

/// The items of `roots` as resources of type `ty` for the viewer, references rewritten.
fn materialise(
    ix: &RecordIndex,
    rec: &Record,
    viewer: &Viewer,
    primary: Option<EntryId>,
    ty: &str,
    roots: &[EntryId],
) -> Vec<Found> {
    let mut res: Vec<Res> = roots
        .iter()
        .filter_map(|r| view::item_res(rec, viewer, r, primary))
        .filter_map(|r| {
            if r.resource_type == ty {
                Some(r)
            } else {
                // A referral's Task, read as its ServiceRequest.
                view::service_request_of(&r).filter(|sr| sr.resource_type == ty)
            }
        })
        .collect();
    let map = names_for(
        ix,
        rec,
        viewer,
        primary,
        &res.iter()
            .filter_map(|r| r.resource.as_ref())
            .collect::<Vec<_>>(),
    );
    for r in res.iter_mut().filter_map(|r| r.resource.as_mut()) {
        cophr_protocol::fhir::rewrite_references(r, &map);
    }
    res.into_iter().map(found).collect()
}

/// The items of type `ty` current for the viewer matching `s` (`_id` aside from the
/// caller's `ids`), in served order, and the profile's Patient when it is one.
fn matches(
    ix: &RecordIndex,
    rec: &Record,
    viewer: &Viewer,
    primary: Option<EntryId>,
    ty: &str,
    s: &Search,
    stop: &crate::session::Cancel,
) -> Result<Vec<EntryId>, Cancelled> {
    let rid = rec.id().to_string();
    let mut rest = s.clone();
    rest.ids.clear();
    let mut out = Vec::new();
    for root in ix.candidates(ty, s, primary) {
        stop.check()?;
        let Some((_, k)) = ix.current_for(rec, viewer, &root) else {
            continue;
        };
        if !k.is(ty) {
            continue;
        }
        let id_ok = s.ids.is_empty() || {
            let served = if Some(root) == primary {
                rid.clone()
            } else {
                root.to_string()
            };
            s.ids.iter().any(|i| {
                *i == served || *i == root.to_string() || k.original_id.as_deref() == Some(i)
            })
        };
        // `_id` is decided above (`rest` has none), so the id given here is not read.
        if id_ok && view::matches(&rest, "", &k.search, k.date) {
            out.push(root);
        }
    }
    Ok(out)
}

/// The profile's Patient of a record with no patient item, if it matches `s`.
fn profile_match(rec: &Record, s: &Search) -> Option<Found> {
    let p = view::profile_patient(rec)?;
    let mut rest = s.clone();
    rest.ids.clear();
    let id_ok = s.ids.is_empty() || s.ids.iter().any(|i| *i == p.id || *i == p.item.to_string());
    (id_ok && view::matches(&rest, &p.id, &p.keys, None)).then(|| found(p))
}

/// A search of an item type over `records`: the total and the page (`count` from
/// `offset`).
pub(super) fn search(
    st: &AppState,
    records: &[RecordId],
    ty: &str,
    s: &Search,
    offset: usize,
    count: usize,
) -> Result<Option<(usize, Vec<Found>)>, Outcome> {
    let me = st.actor();
    let now = st.now();
    let stop = st.cancel();
    let mut total = 0;
    let mut page = Vec::new();
    for rid in records {
        let done = st.store().with_record(rid, |rec| {
            let viewer = rec.viewer(&me, now);
            if !viewer.has_access() {
                return Ok(Some(()));
            }
            st.fhir_index()
                .with(rec, stop, |ix| {
                    let primary = primary(ix, rec, &viewer);
                    // The patient, or a viewer who sees every entry of the type's
                    // categories: the patient's counts hold.
                    let whole = ix.seen_whole(ty, &viewer);
                    let unfiltered = whole
                        && s.ids.is_empty()
                        && s.codes.is_empty()
                        && s.categories.is_empty()
                        && s.dates.is_empty();
                    // Every item of a type asked for: counted by the index, and only the
                    // items up to the page's end looked at.
                    let want = offset.saturating_add(count).saturating_sub(total);
                    let counted = whole && s.ids.is_empty() && s.categories.is_empty();
                    let by_code = match s.codes.as_slice() {
                        [alts] if counted && s.dates.is_empty() => match alts.as_slice() {
                            [t] => ix.code_count(ty, t).map(|n| (t, n)),
                            _ => None,
                        },
                        _ => None,
                    };
                    let (matched, n_items) = if let Some((token, n)) = by_code {
                        // A search by one code: counted by the index, and
                        // only the items up to the page's end looked at (the items that
                        // ever had the code, in served order).
                        let mut rest = s.clone();
                        rest.ids.clear();
                        let mut m = Vec::new();
                        for root in ix.with_code(token.code.as_deref().unwrap_or_default()) {
                            if m.len() >= want {
                                break;
                            }
                            stop.check()?;
                            if ix.current_for(rec, &viewer, root).is_some_and(|(_, k)| {
                                k.is(ty) && view::matches(&rest, "", &k.search, k.date)
                            }) {
                                m.push(*root);
                            }
                        }
                        (m, n)
                    } else if counted && s.codes.is_empty() && !s.dates.is_empty() {
                        // A search by date alone: the dates of the items
                        // current as the type are read from the index, no item visited.
                        let m = ix.dated_matches(ty, &s.dates);
                        let n = m.len();
                        (m, n)
                    } else if unfiltered {
                        let mut m = Vec::new();
                        for root in ix.of_type(ty) {
                            if m.len() >= want {
                                break;
                            }
                            stop.check()?;
                            if ix
                                .current_for(rec, &viewer, root)
                                .is_some_and(|(_, k)| k.is(ty))
                            {
                                m.push(*root);
                            }
                        }
                        (m, ix.current_count(ty))
                    } else {
                        let m = matches(ix, rec, &viewer, primary, ty, s, stop)?;
                        let n = m.len();
                        (m, n)
                    };
                    let mut extra = None;
                    if ty == "Patient" && primary.is_none() {
                        extra = profile_match(rec, s);
                    }
                    let n = n_items + usize::from(extra.is_some());
                    let from = offset.saturating_sub(total).min(n);
                    let to = offset
                        .saturating_add(count)
                        .saturating_sub(total)
                        .min(n)
                        .max(from);
                    let take: Vec<EntryId> = matched
                        .get(from.min(matched.len())..to.min(matched.len()))
                        .unwrap_or_default()
                        .to_vec();
                    page.extend(materialise(ix, rec, &viewer, primary, ty, &take));
                    if let Some(p) = extra {
                        if from <= n_items && n_items < to {
                            page.push(p);
                        }
                    }
                    total += n;
                    Ok::<_, Cancelled>(())
                })?
                .transpose()
        })??;
        if done.is_none() {
            return Ok(None);
        }
    }
    Ok(Some((total, page)))
}

/// What a read by id finds through the index.
pub(super) enum Lookup {
    /// The resource.
    Found(Box<Found>),
    /// Held, but not current for the viewer (deleted, say): the scan says what it is.
    Scan,
    /// No such resource.
    None,
}

/// Reads an item-type resource by id (the record id for the record's patient).
pub(super) fn find(
    st: &AppState,
    records: &[RecordId],
    ty: &str,
    id: &str,
) -> Result<Lookup, Outcome> {
    let me = st.actor();
    let now = st.now();
    let stop = st.cancel();
    let parsed = id.parse::<EntryId>().ok();
    for rid in records {
        let got = st.store().with_record(rid, |rec| {
            let viewer = rec.viewer(&me, now);
            if !viewer.has_access() {
                return Ok(Some(Lookup::None));
            }
            st.fhir_index().with(rec, stop, |ix| {
                let primary = primary(ix, rec, &viewer);
                let root = if id == rec.id().to_string() {
                    if ty != "Patient" {
                        return Lookup::None;
                    }
                    match primary {
                        Some(p) => p,
                        None => {
                            return match view::profile_patient(rec) {
                                Some(p) => Lookup::Found(Box::new(found(p))),
                                None => Lookup::None,
                            }
                        }
                    }
                } else {
                    match parsed {
                        Some(e) if ix.item(&e).is_some() => e,
                        _ => return Lookup::None,
                    }
                };
                match ix.current_for(rec, &viewer, &root) {
                    Some((_, k)) if k.is(ty) => {
                        match materialise(ix, rec, &viewer, primary, ty, &[root]).pop() {
                            Some(f) => Lookup::Found(Box::new(f)),
                            None => Lookup::Scan,
                        }
                    }
                    Some(_) => Lookup::None,
                    None => Lookup::Scan,
                }
            })
        })??;
        match got {
            Some(Lookup::None) => continue,
            Some(l) => return Ok(l),
            None => return Ok(Lookup::Scan),
        }
    }
    Ok(Lookup::None)
}

/// The versions of an item, references named through the index (`None`: not indexed).
pub(super) fn versions(
    st: &AppState,
    record: &RecordId,
    item: &EntryId,
    id: &str,
) -> Result<Option<Vec<view::Version>>, Outcome> {
    let me = st.actor();
    let now = st.now();
    let stop = st.cancel();
    Ok(st.store().with_record(record, |rec| {
        let viewer = rec.viewer(&me, now);
        st.fhir_index().with(rec, stop, |ix| {
            let primary = primary(ix, rec, &viewer);
            view::versions_named(rec, &viewer, item, id, &|res| {
                names_for(ix, rec, &viewer, primary, res)
            })
        })
    })??)
}

/// One page of `$everything` (`count` from `offset`) up to the derived resources: the
/// patient, then the items by type (the types in `types`, in order). Returns the page
/// entries found among them and how many entries that part holds in all, counted only as
/// far as `offset + count + 1` (enough to know whether a next page exists); `None` if the
/// record is too big to index.
pub(super) fn everything_items(
    st: &AppState,
    ctx: &Ctx,
    patient: &Found,
    types: &[&str],
    offset: usize,
    count: usize,
) -> Result<Option<(Vec<PageEntry>, usize)>, Outcome> {
    let me = st.actor();
    let now = st.now();
    let stop = st.cancel();
    let end = offset.saturating_add(count);
    let entry = |f: Found| -> Option<PageEntry> {
        let r = f.resource?;
        Some(PageEntry {
            key: (f.updated, f.version),
            entry: serde_json::json!({"fullUrl": full_url(ctx, &f.ty, &f.id), "resource": r,
                                      "search": {"mode": "match"}}),
            record: f.record,
            entries: f.entries,
            audit_read: f.audit_read,
        })
    };
    let mut page: Vec<PageEntry> = Vec::new();
    let mut pos = 1;
    if offset == 0 && count > 0 {
        page.extend(entry(patient.clone()));
    }
    let got = st.store().with_record(&patient.record, |rec| {
        let viewer = rec.viewer(&me, now);
        st.fhir_index().with(rec, stop, |ix| {
            let primary = primary(ix, rec, &viewer);
            for ty in types {
                if pos > end {
                    break;
                }
                let mut take = Vec::new();
                for root in ix.of_type(ty) {
                    stop.check()?;
                    if pos > end {
                        break;
                    }
                    let Some((_, k)) = ix.current_for(rec, &viewer, root) else {
                        continue;
                    };
                    if !k.is(ty) || patient.item == Some(*root) {
                        continue;
                    }
                    if (offset..end).contains(&pos) {
                        take.push(*root);
                    }
                    pos += 1;
                }
                page.extend(
                    materialise(ix, rec, &viewer, primary, ty, &take)
                        .into_iter()
                        .filter_map(entry),
                );
            }
            Ok::<_, Cancelled>(pos)
        })
    })??;
    match got {
        Some(r) => Ok(Some((page, r?))),
        None => Ok(None),
    }
}

/// One entry of a type's `_history` as the index places it: the sort key of the scan
/// (newest first; ties in the order the scan lists the resources: record, then current
/// items in served order, referrals' ServiceRequests, deleted items by creation) and
/// which version of which item it is.
type HistKey = (
    std::cmp::Reverse<(cophr_protocol::Timestamp, usize)>,
    usize,
    u8,
    index::Order,
    usize,
);

/// Where an entry of a `_history` page comes from: the record, the item, the type and id
/// it is served under, and the version number.
pub(super) type HistPlace = (RecordId, EntryId, &'static str, String, usize);

/// A page of the `_history` of `types` (one type's, or the system's: `count` from
/// `offset`, newest first) through the index: the total and, per entry of the page, the
/// record, the item, the type and id it is served under and the version number; `None` if
/// a record is too big to index. Only the versions' times and numbers are looked at (from
/// the index where exact for the viewer, else by folding that item for them); the caller
/// builds the page's entries. Ties keep the order of one type's history, then `types`'
/// order.
pub(super) fn type_history(
    st: &AppState,
    records: &[RecordId],
    types: &[&'static str],
    offset: usize,
    count: usize,
) -> Result<Option<(usize, Vec<HistPlace>)>, Outcome> {
    let me = st.actor();
    let now = st.now();
    let stop = st.cancel();
    let mut keys: Vec<HistKey> = Vec::new();
    // Each record's patient item as the viewer sees it (served under the record's id).
    let mut prims: Vec<Option<EntryId>> = Vec::new();
    for (ri, rid) in records.iter().enumerate() {
        prims.push(None);
        let done = st.store().with_record(rid, |rec| {
            let viewer = rec.viewer(&me, now);
            if !viewer.has_access() {
                return Ok(Some(true));
            }
            st.fhir_index()
                .with(rec, stop, |ix| {
                    let primary = primary(ix, rec, &viewer);
                    if let Some(p) = prims.get_mut(ri) {
                        *p = primary;
                    }
                    let patient = viewer.is_patient();
                    for (ti, ty) in types.iter().copied().enumerate() {
                        for root in ix.of_type(ty) {
                            stop.check()?;
                            if !patient && !rec.can_see(&viewer, root) {
                                continue;
                            }
                            let Some(i) = ix.item(root) else { continue };
                            // Groups: 0 current, 1 a referral's ServiceRequest, 2 deleted.
                            let mut push = |group: u8, t, n| {
                                let order = if group == 2 {
                                    (0, i.order.1, i.order.2)
                                } else {
                                    i.order
                                };
                                keys.push((std::cmp::Reverse((t, n)), ri, group, order, ti));
                            };
                            if ix.exact_for(rec, &viewer, i) {
                                let group = match &i.settled {
                                    index::Settled::Current { keys, .. } if keys.is(ty) => {
                                        u8::from(keys.ty != ty)
                                    }
                                    index::Settled::Deleted
                                        if i.hist.as_ref().and_then(|h| h.shown.as_deref())
                                            == Some(ty) =>
                                    {
                                        2
                                    }
                                    _ => continue,
                                };
                                match &i.hist {
                                    Some(h) => {
                                        for (t, n, _) in &h.versions {
                                            push(group, *t, *n);
                                        }
                                    }
                                    None => push(group, i.order.1, 1),
                                }
                            } else if let Some((group, vs)) =
                                folded_history(ix, rec, &viewer, root, ty)
                            {
                                for (t, n) in vs {
                                    push(group, t, n);
                                }
                            }
                        }
                    }
                    // The profile's Patient of a record with no patient item: left to the
                    // scan (rare, and only for `Patient/_history`: the system history lists
                    // stored items only).
                    let profile = types == ["Patient"]
                        && primary.is_none()
                        && view::profile_patient(rec).is_some();
                    Ok::<_, Cancelled>(!profile)
                })?
                .transpose()
        })??;
        if done != Some(true) {
            return Ok(None);
        }
    }
    let total = keys.len();
    let end = offset.saturating_add(count).min(total);
    if end > 0 && end < total {
        keys.select_nth_unstable(end - 1);
        keys.truncate(end);
    }
    keys.sort_unstable();
    let page = keys
        .into_iter()
        .skip(offset)
        .map(|(std::cmp::Reverse((_, n)), ri, group, order, ti)| {
            let root = order.2;
            let id = if group != 2 && Some(root) == prims.get(ri).copied().flatten() {
                records[ri].to_string()
            } else {
                root.to_string()
            };
            (records[ri], root, types[ti], id, n)
        })
        .collect();
    Ok(Some((total, page)))
}

/// An item's place in a type's `_history` for a viewer the index is not exact for,
/// by folding that item for them.
fn folded_history(
    ix: &RecordIndex,
    rec: &Record,
    viewer: &Viewer,
    root: &EntryId,
    ty: &str,
) -> Option<(u8, Vec<(cophr_protocol::Timestamp, usize)>)> {
    let vs = || {
        view::versions_named(rec, viewer, root, "", &|_| HashMap::new())
            .iter()
            .map(|v| (v.time, v.n))
            .collect::<Vec<_>>()
    };
    match ix.current_for(rec, viewer, root) {
        Some((_, k)) if k.is(ty) => Some((u8::from(k.ty != ty), vs())),
        Some(_) => None,
        None => {
            if !matches!(
                cophr_protocol::fold::item(rec, viewer, root),
                Some(cophr_protocol::fold::ItemState::Deleted)
            ) {
                return None;
            }
            let all = view::versions_named(rec, viewer, root, "", &|_| HashMap::new());
            let shown = all
                .iter()
                .rev()
                .find_map(|v| v.resource.as_ref()?["resourceType"].as_str())?;
            (shown == ty).then(|| (2, all.iter().map(|v| (v.time, v.n)).collect()))
        }
    }
}

/// A search of `Provenance` over `records` through the index, for the patient: the
/// derived Provenance of each entry (one per entry, in the record's order, as
/// [`view::provenances`] lists them), then the Provenance resources imported. Which
/// entries have one, and what each is about, is read from the index (the entry log and
/// the settled items), so only the page's resources are built. `None` (the caller
/// scans) for any other viewer, or a record too big to index.
pub(super) fn provenances(
    st: &AppState,
    records: &[RecordId],
    s: &Search,
    offset: usize,
    count: usize,
) -> Result<Option<(usize, Vec<Found>)>, Outcome> {
    let me = st.actor();
    let now = st.now();
    let stop = st.cancel();
    let end = offset.saturating_add(count);
    let mut total = 0;
    let mut page = Vec::new();
    let ids: Vec<Option<EntryId>> = s.ids.iter().map(|i| i.parse().ok()).collect();
    for rid in records {
        let done = st.store().with_record(rid, |rec| {
            let viewer = rec.viewer(&me, now);
            if !viewer.has_access() {
                return Ok(Some(true));
            }
            if !viewer.is_patient() {
                return Ok(Some(false));
            }
            st.fhir_index()
                .with(rec, stop, |ix| {
                    let primary = primary(ix, rec, &viewer);
                    let rid_s = rec.id().to_string();
                    // What `view::items` serves an item as (its type and id), if anything.
                    let served = |root: &EntryId| -> Option<(String, String)> {
                        let i = ix.item(root)?;
                        match &i.settled {
                            index::Settled::Current { keys, .. } => {
                                let ty = if keys.referral {
                                    "ServiceRequest".to_owned()
                                } else {
                                    keys.ty.clone()
                                };
                                let id = if Some(*root) == primary {
                                    rid_s.clone()
                                } else {
                                    root.to_string()
                                };
                                Some((ty, id))
                            }
                            index::Settled::Deleted => {
                                Some((i.history().1?.to_owned(), root.to_string()))
                            }
                            index::Settled::Hidden => None,
                        }
                    };
                    // Whether `view::items` serves the item as anything.
                    let listed = |root: &EntryId| -> bool {
                        ix.item(root).is_some_and(|i| match &i.settled {
                            index::Settled::Current { .. } => true,
                            index::Settled::Deleted => i.history().1.is_some(),
                            index::Settled::Hidden => false,
                        })
                    };
                    let target = |id: &EntryId, t: &index::Target| -> Option<String> {
                        match t {
                            index::Target::Patient => Some(format!("Patient/{rid_s}")),
                            index::Target::Consent(g) => Some(format!("Consent/{g}")),
                            index::Target::Note(root) => {
                                let (ty, sid) = served(root)?;
                                Some(format!("{ty}/{sid}"))
                            }
                            index::Target::Version(root) => {
                                let (ty, sid) = served(root)?;
                                let n = ix.item(root)?.number(id)?;
                                Some(format!("{ty}/{sid}/_history/{n}"))
                            }
                            index::Target::None => None,
                        }
                    };
                    let mut rest = s.clone();
                    rest.ids.clear();
                    for (k, (id, t, tgt)) in ix.log().iter().enumerate() {
                        if k % 1024 == 0 {
                            stop.check()?;
                        }
                        if !ids.is_empty() && !ids.contains(&Some(*id)) {
                            continue;
                        }
                        if !rest.dates.is_empty()
                            && !view::matches(
                                &rest,
                                "",
                                &SearchKeys::default(),
                                Some(search::instant_range(*t)),
                            )
                        {
                            continue;
                        }
                        let has = match tgt {
                            index::Target::Version(root) => {
                                listed(root) && ix.item(root).and_then(|i| i.number(id)).is_some()
                            }
                            // Their content must be readable (an annotation sealed under
                            // a key not held has no Provenance).
                            index::Target::Note(root) => listed(root) && rec.payload(id).is_some(),
                            index::Target::Patient | index::Target::Consent(_) => {
                                rec.payload(id).is_some()
                            }
                            index::Target::None => false,
                        };
                        if !has {
                            continue;
                        }
                        if (offset..end).contains(&total) {
                            let Some(p) = target(id, tgt)
                                .and_then(|reference| view::provenance_to(rec, id, &reference))
                            else {
                                continue;
                            };
                            page.push(Found {
                                ty: "Provenance".into(),
                                record: rec.id(),
                                id: id.to_string(),
                                alt_id: None,
                                item: None,
                                current: None,
                                resource: Some(p),
                                version: 1,
                                updated: *t,
                                date: Some(search::instant_range(*t)),
                                keys: SearchKeys::default(),
                                entries: vec![*id],
                                audit_read: false,
                                original: None,
                            });
                        }
                        total += 1;
                    }
                    // The Provenance resources imported, after the derived ones.
                    let m = matches(ix, rec, &viewer, primary, "Provenance", s, stop)?;
                    let from = offset.saturating_sub(total).min(m.len());
                    let to = end.saturating_sub(total).min(m.len()).max(from);
                    page.extend(materialise(
                        ix,
                        rec,
                        &viewer,
                        primary,
                        "Provenance",
                        m.get(from..to).unwrap_or_default(),
                    ));
                    total += m.len();
                    Ok::<_, Cancelled>(true)
                })?
                .transpose()
        })??;
        if done != Some(true) {
            return Ok(None);
        }
    }
    Ok(Some((total, page)))
}
