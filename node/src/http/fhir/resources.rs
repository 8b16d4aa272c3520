//! Pure builders of the FHIR R4 JSON this server derives from the record: Provenance from
//! entry signatures, AuditEvent from audit events, Consent from grants, the
//! CapabilityStatement, Bundles and OperationOutcomes. No I/O; the handlers in the parent
//! module choose what to build.

use cophr_protocol::audit::{Action, SignedAudit};
use cophr_protocol::fold::Provenance as Prov;
use cophr_protocol::record::{GrantInfo, Record};
use cophr_protocol::{ActorId, EntryId, GrantStatus, Level, RecordId, Scope, Timestamp};
use serde_json::{json, Map, Value};

/// The FHIR JSON media type.
pub const FHIR_JSON: &str = "application/fhir+json";
/// Identifier system of cophr actors (the value is the printed public key, `a-…`).
pub const ACTOR_SYSTEM: &str = "urn:cophr:actor";
/// Identifier system of cophr entries (`e-…`).
pub const ENTRY_SYSTEM: &str = "urn:cophr:entry";
/// Code system of cophr categories.
pub const CATEGORY_SYSTEM: &str = "urn:cophr:category";
/// Code system of cophr access levels.
pub const LEVEL_SYSTEM: &str = "urn:cophr:level";
/// Extension on `Provenance.signature` holding, base64, the exact message the ed25519
/// signature is over (domain tag `cophr/v1/entry\0` followed by the entry's canonical
/// CBOR), so anyone with the author's public key can verify it.
pub const SIGNED_MESSAGE_EXT: &str = "urn:cophr:fhir:signed-message";
/// The extension on a Provenance or AuditEvent agent saying whether who the agent says
/// they are is verified (by which identity assurance service, at which level) or
/// self-asserted, by this node's trust list.
pub const ASSURANCE_EXT: &str = "urn:cophr:fhir:identity-assurance";

/// The identity-assurance extension for `actor` (assessed from their latest profile's
/// attestations against the node's trust list).
pub fn assurance_ext(record: &Record, actor: &ActorId) -> Value {
    let attestations = record
        .latest_profile(actor)
        .map_or(&[][..], |p| p.attestations.as_slice());
    let a = crate::http::api::assess(actor, attestations);
    let mut parts = vec![
        json!({"url": "status", "valueCode": match &a {
            cophr_protocol::trust::Assurance::Verified(_) => "verified",
            cophr_protocol::trust::Assurance::SelfAsserted { .. } => "self-asserted",
        }}),
        json!({"url": "display", "valueString": a.to_string()}),
    ];
    if let cophr_protocol::trust::Assurance::Verified(v) = &a {
        parts.push(json!({"url": "level", "valueCode": v.level.to_string()}));
        parts.push(json!({"url": "ial", "valueInteger": v.level.ial()}));
        parts.push(
            json!({"url": "issuer", "valueReference": actor_ref(&v.issuer, Some(&v.issuer_name))}),
        );
    }
    json!({"url": ASSURANCE_EXT, "extension": parts})
}

/// The domain-separation tag of entry signatures (see `cophr_protocol::keys`).
pub const ENTRY_DOMAIN_TAG: &[u8] = b"cophr/v1/entry\0";

/// The types derived from the record rather than stored as entries.
pub const DERIVED_TYPES: [&str; 7] = [
    "Provenance",
    "AuditEvent",
    "Consent",
    "Practitioner",
    "Organization",
    "PractitionerRole",
    "CareTeam",
];

/// Roles of people who write into a record for themselves or as family, not as
/// practitioners: they are not derived as `Practitioner` resources.
pub const LAY_ROLES: [&str; 12] = [
    "patient", "carer", "family", "friend", "relative", "parent", "child", "spouse", "partner",
    "guardian", "self", "host",
];

/// Whether `actor` is a care organisation in this record: members joined under its grant,
/// or its profile says so (role `organisation`, or an organisation's attestation).
pub fn is_organisation(record: &Record, actor: &ActorId) -> bool {
    if record.joined_members().iter().any(|m| m.org == *actor) {
        return true;
    }
    record.latest_profile(actor).is_some_and(|p| {
        p.role.trim().eq_ignore_ascii_case("organisation")
            || p.attestations.iter().any(|a| {
                matches!(
                    a.attestation.attributes,
                    cophr_protocol::trust::Attributes::Organisation(_)
                )
            })
    })
}

/// Whether `actor` is shown as a `Practitioner` of the record: someone other than the
/// patient (any of their keys or devices) with a profile in the record and a role that is
/// not a lay one ([`LAY_ROLES`]), or a professional attestation.
pub fn is_practitioner(record: &Record, actor: &ActorId) -> bool {
    if record.is_patient_key_ever(actor)
        || record.owners_of(actor).contains(&record.id())
        || is_organisation(record, actor)
    {
        return false;
    }
    let Some(p) = record.latest_profile(actor) else {
        return false;
    };
    let professional = p.attestations.iter().any(|a| {
        matches!(
            a.attestation.attributes,
            cophr_protocol::trust::Attributes::Professional { .. }
        )
    });
    professional || !LAY_ROLES.contains(&p.role.trim().to_lowercase().as_str())
}

/// The identifier system of a UK professional register, by its short name.
fn register_system(body: &str) -> String {
    match body.to_ascii_uppercase().as_str() {
        "GMC" => "https://fhir.hl7.org.uk/Id/gmc-number".into(),
        "NMC" => "https://fhir.hl7.org.uk/Id/nmc-number".into(),
        "GPHC" => "https://fhir.hl7.org.uk/Id/gphc-number".into(),
        "HCPC" => "https://fhir.hl7.org.uk/Id/hcpc-number".into(),
        other => format!("urn:cophr:register:{}", other.to_ascii_lowercase()),
    }
}

/// A person who writes into the record as a `Practitioner` (id: their actor id): name,
/// role and organisation as their profile says, and whether that is verified (the
/// identity-assurance extension). The registration number, profession and organisation
/// (with its ODS code) an identity assurance service this node trusts attested are added
/// as identifier and qualification; self-asserted ones are not.
pub fn practitioner(
    record: &Record,
    actor: &ActorId,
    profile: &cophr_protocol::entry::Profile,
) -> Value {
    let mut identifiers = vec![json!({"system": ACTOR_SYSTEM, "value": actor.to_string()})];
    let mut qualification = vec![json!({"code": {"text": profile.role}})];
    let a = crate::http::api::assess(actor, &profile.attestations);
    let mut organisation = profile.organisation.clone().map(|o| json!({"display": o}));
    if let cophr_protocol::trust::Assurance::Verified(v) = &a {
        if let cophr_protocol::trust::Attributes::Professional {
            profession,
            registration,
            organisation: org,
            ..
        } = &v.attributes
        {
            let mut q = json!({"code": {"text": profession}});
            if let Some(r) = registration {
                identifiers.push(json!({"system": register_system(&r.body), "value": r.number}));
                q["identifier"] = json!([{"system": register_system(&r.body), "value": r.number}]);
                q["issuer"] = json!({"display": r.body});
            }
            qualification = vec![q];
            if let Some(o) = org {
                let mut r = json!({"display": o.name});
                if let Some(ods) = &o.ods {
                    r["identifier"] = json!({"system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": ods});
                }
                organisation = Some(r);
            }
        }
    }
    let mut p = json!({
        "resourceType": "Practitioner",
        "id": actor.to_string(),
        "extension": [assurance_ext(record, actor)],
        "identifier": identifiers,
        "active": true,
        "name": [{"text": profile.name}],
        "qualification": qualification,
    });
    if let Some(o) = organisation {
        // Practitioner has no organisation element (PractitionerRole has): the employer
        // travels in an extension.
        if let Some(e) = p["extension"].as_array_mut() {
            e.push(json!({"url": ORGANISATION_EXT, "valueReference": o}));
        }
    }
    p
}

/// A care organisation granted access to the record, as an `Organization` (id: its actor
/// id): its name as its profile says, its ODS code when an identity assurance service this
/// node trusts attested it.
pub fn organization(record: &Record, org: &ActorId) -> Value {
    let p = record.latest_profile(org);
    let mut identifiers = vec![json!({"system": ACTOR_SYSTEM, "value": org.to_string()})];
    let mut name = p.map(|p| p.name.clone());
    if let Some(p) = p {
        if let cophr_protocol::trust::Assurance::Verified(v) =
            crate::http::api::assess(org, &p.attestations)
        {
            if let cophr_protocol::trust::Attributes::Organisation(o) = &v.attributes {
                name = Some(o.name.clone());
                if let Some(ods) = &o.ods {
                    identifiers.push(json!({
                        "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": ods}));
                }
            }
        }
    }
    let mut o = json!({
        "resourceType": "Organization",
        "id": org.to_string(),
        "extension": [assurance_ext(record, org)],
        "identifier": identifiers,
        "active": true,
    });
    if let Some(n) = name {
        o["name"] = json!(n);
    }
    o
}

/// A member of a care organisation acting in the record, as a `PractitionerRole` (id: the
/// `JoinOrg` entry): the member (`Practitioner`), the organisation, their role, and
/// whether they still act for it.
pub fn practitioner_role(record: &Record, m: &cophr_protocol::record::JoinedMember) -> Value {
    let name = |a: &ActorId| record.latest_profile(a).map(|p| p.name.clone());
    let mut practitioner = json!({"reference": format!("Practitioner/{}", m.member)});
    if let Some(n) = name(&m.member).or_else(|| Some(m.label.clone())) {
        practitioner["display"] = json!(n);
    }
    let mut organization = json!({"reference": format!("Organization/{}", m.org)});
    if let Some(n) = name(&m.org) {
        organization["display"] = json!(n);
    }
    json!({
        "resourceType": "PractitionerRole",
        "id": m.joined.to_string(),
        "identifier": [{"system": ACTOR_SYSTEM, "value": m.member.to_string()}],
        "active": m.removed.is_none(),
        "practitioner": practitioner,
        "organization": organization,
        "code": [{"text": m.role.name}],
    })
}

/// A member of the organisation whose own record this is, as listed in its membership
/// log, as a `PractitionerRole` (id: the `AddMember` entry; `active` false once removed).
pub fn staff_role(record: &Record, m: &cophr_protocol::org::MemberInfo) -> Value {
    let mut organization = json!({"reference": format!("Organization/{}", record.id())});
    if let Some(p) = record.latest_profile(&record.id()) {
        organization["display"] = json!(p.name);
    }
    json!({
        "resourceType": "PractitionerRole",
        "id": m.added.to_string(),
        "identifier": [{"system": ACTOR_SYSTEM, "value": m.member.to_string()}],
        "active": m.removed.is_none(),
        "practitioner": {"reference": format!("Practitioner/{}", m.member), "display": m.label},
        "organization": organization,
        "code": [{"text": m.role.name}],
    })
}

/// The people and organisations with access to the record, as its `CareTeam` (id: the
/// record id): each unrevoked grant's grantee (an organisation as `Organization`, anyone
/// else by identifier, with the grant's label as their role), and each organisation's
/// members who joined (as their `PractitionerRole`s' practitioners, on behalf of it).
pub fn care_team(record: &Record, grants: &[&GrantInfo], now: Timestamp) -> Value {
    let name = |a: &ActorId| record.latest_profile(a).map(|p| p.name.clone());
    let mut participants = Vec::new();
    for g in grants {
        let active = record
            .grant_status(&g.id, now)
            .is_some_and(|s| !s.has_ended());
        if !active {
            continue;
        }
        let who = g.grant.grantee;
        let member = if is_organisation(record, &who) {
            let mut r = json!({"reference": format!("Organization/{who}")});
            if let Some(n) = name(&who) {
                r["display"] = json!(n);
            }
            r
        } else if is_practitioner(record, &who) {
            let mut r = json!({"reference": format!("Practitioner/{who}")});
            if let Some(n) = name(&who) {
                r["display"] = json!(n);
            }
            r
        } else {
            actor_ref(&who, name(&who).as_deref())
        };
        let mut p = json!({"member": member});
        if let Some(l) = &g.grant.label {
            p["role"] = json!([{"text": l}]);
        }
        participants.push(p);
        for m in record
            .joined_members()
            .into_iter()
            .filter(|m| m.org == who && m.removed.is_none())
        {
            let mut r = json!({"reference": format!("Practitioner/{}", m.member)});
            if let Some(n) = name(&m.member).or_else(|| Some(m.label.clone())) {
                r["display"] = json!(n);
            }
            participants.push(json!({
                "role": [{"text": m.role.name}],
                "member": r,
                "onBehalfOf": {"reference": format!("Organization/{who}")},
            }));
        }
    }
    json!({
        "resourceType": "CareTeam",
        "id": record.id().to_string(),
        "status": "active",
        "name": "Everyone with access to this record",
        "subject": {"reference": format!("Patient/{}", record.id())},
        "participant": participants,
    })
}

/// The extension on a derived `Practitioner` naming the organisation they write for.
pub const ORGANISATION_EXT: &str = "urn:cophr:fhir:organisation";

/// A node timestamp as a FHIR `instant` (RFC 3339, UTC, milliseconds).
pub fn instant(t: Timestamp) -> String {
    let nanos = i128::from(t) * 1_000_000;
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|d| d.format(&fmt).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".into())
}

/// An OperationOutcome with one issue.
pub fn outcome(severity: &str, code: &str, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}]
    })
}

/// An OperationOutcome of warnings raised by a write that was stored (implausible values),
/// one issue per warning (`path: message`, as kept in the entry's `fhir-warnings`), each
/// with its element as `expression`.
pub fn warnings_outcome(warnings: &str) -> Value {
    let issues: Vec<Value> = warnings
        .lines()
        .map(|w| {
            let mut issue = json!({"severity": "warning", "code": "value", "diagnostics": w});
            if let Some((path, _)) = w.split_once(": ") {
                issue["expression"] = json!([path]);
            }
            issue
        })
        .collect();
    json!({"resourceType": "OperationOutcome", "issue": issues})
}

/// An OperationOutcome for a success (used in batch/transaction responses).
pub fn ok_outcome(diagnostics: &str) -> Value {
    outcome("information", "informational", diagnostics)
}

/// A reference to an actor: its identifier, and its name when known.
pub fn actor_ref(actor: &ActorId, name: Option<&str>) -> Value {
    let mut r = json!({"identifier": {"system": ACTOR_SYSTEM, "value": actor.to_string()}});
    if let Some(n) = name {
        r["display"] = json!(n);
    }
    r
}

/// A Bundle of `kind` (`searchset`, `history`, `transaction-response`, …) with `total`
/// (search and history) and a `self` link.
pub fn bundle(kind: &str, self_link: &str, entries: Vec<Value>, total: Option<usize>) -> Value {
    let mut b = json!({
        "resourceType": "Bundle",
        "type": kind,
        "link": [{"relation": "self", "url": self_link}],
        "entry": entries,
    });
    if let Some(t) = total {
        b["total"] = json!(t);
    }
    b
}

/// Sets `meta.versionId` and `meta.lastUpdated` on a resource (keeping other `meta`).
pub fn set_meta(resource: &mut Value, version: usize, updated: Timestamp) {
    let Some(obj) = resource.as_object_mut() else {
        return;
    };
    let meta = obj
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta["versionId"] = json!(version.to_string());
    meta["lastUpdated"] = json!(instant(updated));
}

/// Provenance of one entry (a version of an item, or a grant): who signed it (agent with
/// role and organisation), when, which resource version it is about, the ed25519
/// signature with the exact signed message, and the source system when imported.
pub fn provenance(
    record: &Record,
    id: &EntryId,
    prov: &Prov,
    target: &str,
    source: Option<&str>,
) -> Option<Value> {
    let held = record.get(id)?;
    let signed = held.signed();
    let b64 = data_encoding::BASE64;
    let profile = prov.profile.as_ref();
    let mut agent = json!({
        "type": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
            "code": "author", "display": "Author"}]},
        "who": actor_ref(&prov.author, profile.map(|p| p.name.as_str())),
        "extension": [assurance_ext(record, &prov.author)],
    });
    if is_practitioner(record, &prov.author) {
        agent["who"]["reference"] = json!(format!("Practitioner/{}", prov.author));
    }
    if let Some(p) = profile {
        agent["role"] = json!([{"text": p.role}]);
        if let Some(o) = &p.organisation {
            agent["onBehalfOf"] = json!({"display": o});
        }
    }
    let mut message = ENTRY_DOMAIN_TAG.to_vec();
    message.extend_from_slice(&signed.entry().signing_bytes());
    let activity = match Action::for_payload(&signed.entry().payload) {
        Action::Add | Action::Grant => "CREATE",
        Action::Delete => "DELETE",
        _ => "UPDATE",
    };
    let mut p = json!({
        "resourceType": "Provenance",
        "id": id.to_string(),
        "target": [{"reference": target}],
        "recorded": instant(prov.time),
        "activity": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
            "code": activity}]},
        "agent": [agent],
        "signature": [{
            "type": [{"system": "urn:iso-astm:E1762-95:2013",
                      "code": "1.2.840.10065.1.12.1.1", "display": "Author's Signature"}],
            "when": instant(prov.time),
            "who": actor_ref(&prov.author, profile.map(|p| p.name.as_str())),
            "targetFormat": "application/cbor",
            "sigFormat": "application/ed25519-signature",
            "data": b64.encode(&signed.sig().0),
            "extension": [{"url": SIGNED_MESSAGE_EXT, "valueBase64Binary": b64.encode(&message)}],
        }],
    });
    if let Some(d) = &prov.device {
        if let Some(a) = p["agent"].as_array_mut() {
            a.push(json!({"type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                "code": "assembler", "display": "Assembler"}]},
                "who": {"display": d}}));
        }
    }
    if let Some(s) = source {
        p["entity"] = json!([{"role": "source", "what": {"display": s}}]);
    }
    Some(p)
}

fn audit_action(a: Action) -> (&'static str, &'static str) {
    match a {
        Action::View | Action::AuditRead => ("R", "read"),
        Action::Add | Action::Import => ("C", "create"),
        Action::Edit
        | Action::Annotate
        | Action::Grant
        | Action::Revoke
        | Action::Profile
        | Action::Device
        | Action::Keys
        | Action::Membership => ("U", "update"),
        Action::Delete => ("D", "delete"),
        Action::Export | Action::Move => ("E", "execute"),
    }
}

/// An AuditEvent from a signed audit event. `entity` gives each touched entry as a
/// reference (a resource when it maps to one, else the entry's identifier), or `None` to
/// leave it out.
pub fn audit_event(a: &SignedAudit, entity: impl Fn(&EntryId) -> Option<Value>) -> Value {
    let ev = &a.event;
    let (code, interaction) = audit_action(ev.action);
    let mut who = actor_ref(&ev.actor, ev.actor_name.as_deref());
    let mut agent = json!({"requestor": true});
    if let Some(role) = &ev.actor_role {
        agent["role"] = json!([{"text": role}]);
    }
    if let Some(org) = &ev.actor_organisation {
        who["display"] = json!(match &ev.actor_name {
            Some(n) => format!("{n} ({org})"),
            None => org.clone(),
        });
    }
    agent["who"] = who;
    if let Some(d) = &ev.device {
        agent["network"] = json!({"address": d, "type": "5"});
    }
    let mut entities: Vec<Value> = ev
        .entries
        .iter()
        .filter_map(|e| entity(e).map(|w| json!({"what": w})))
        .collect();
    entities.push(json!({
        "what": {"reference": format!("Patient/{}", ev.record)},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                 "code": "1", "display": "Person"},
    }));
    let mut out = json!({
        "resourceType": "AuditEvent",
        "id": a.id().to_string(),
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                 "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": interaction},
                    {"system": "urn:cophr:audit-action", "code": ev.action.name()}],
        "action": code,
        "recorded": instant(ev.time),
        "outcome": "0",
        "agent": [agent],
        "source": {"observer": actor_ref(&ev.node, None)},
        "entity": entities,
    });
    if let Some(d) = &ev.detail {
        out["outcomeDesc"] = json!(d);
    }
    out
}

/// The Consent a grant amounts to: the grantee (provision.actor), the categories
/// (provision.class as resource types, provision.code as cophr categories; absent for
/// all), the level (provision.action), the validity period, and the status of
/// [`GrantStatus::fhir_consent_status`] (`active`; `draft` before its period; `inactive`
/// once revoked, under a revoked grant or expired; `entered-in-error` when void).
pub fn consent(
    record: &Record,
    g: &GrantInfo,
    now: Timestamp,
    types: &dyn Fn(&str) -> Vec<String>,
) -> Value {
    let status = record
        .grant_status(&g.id, now)
        .map_or("entered-in-error", GrantStatus::fhir_consent_status);
    let name = |a: &ActorId| record.profile(a, None).map(|p| p.name.clone());
    let mut grantee = actor_ref(&g.grant.grantee, name(&g.grant.grantee).as_deref());
    if let Some(l) = &g.grant.label {
        grantee["display"] = json!(l);
    }
    if is_organisation(record, &g.grant.grantee) {
        // A grant to a care organisation names it as one (its staff act under it).
        grantee["type"] = json!("Organization");
        grantee["reference"] = json!(format!("Organization/{}", g.grant.grantee));
    }
    let actions: Vec<Value> = Level::ALL
        .iter()
        // A relay's one action is to pass the record on; a reader's start at access.
        .filter(|l| **l <= g.grant.level && (l.reads() || g.grant.level == Level::Relay))
        .map(|l| {
            let std = match l {
                Level::Relay => "disclose",
                Level::View => "access",
                Level::Annotate => "use",
                Level::Write => "collect",
                Level::Delete => "correct",
            };
            json!({"coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": std},
                {"system": LEVEL_SYSTEM, "code": l.name()}]})
        })
        .collect();
    let mut provision = json!({
        "type": "permit",
        "actor": [{"role": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
            "code": "IRCP", "display": "information recipient"}]},
            "reference": grantee}],
        "action": actions,
    });
    if let Scope::Only(cats) = &g.grant.scope {
        let mut classes: Vec<Value> = Vec::new();
        for c in cats {
            for t in types(c.name()) {
                let v = json!({"system": "http://hl7.org/fhir/resource-types", "code": t});
                if !classes.contains(&v) {
                    classes.push(v);
                }
            }
        }
        provision["class"] = json!(classes);
        provision["code"] = json!(cats
            .iter()
            .map(
                |c| json!({"coding": [{"system": CATEGORY_SYSTEM, "code": c.name(),
                                        "display": c.title()}]})
            )
            .collect::<Vec<_>>());
    }
    let mut period = Map::new();
    period.insert(
        "start".into(),
        json!(instant(g.grant.not_before.unwrap_or(g.time))),
    );
    if let Some(u) = g.grant.until {
        period.insert("end".into(), json!(instant(u)));
    }
    provision["period"] = Value::Object(period);
    let mut extension = Vec::new();
    if g.grant.audit {
        extension.push(json!({"url": "urn:cophr:fhir:audit-right", "valueBoolean": true}));
    }
    if g.grant.delegate {
        extension.push(json!({"url": "urn:cophr:fhir:delegate-right", "valueBoolean": true}));
    }
    let mut c = json!({
        "resourceType": "Consent",
        "id": g.id.to_string(),
        "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0",
                                  "display": "Patient Consent"}]}],
        "patient": {"reference": format!("Patient/{}", record.id())},
        "dateTime": instant(g.time),
        "performer": [actor_ref(&g.issuer, name(&g.issuer).as_deref())],
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                   "code": "OPTIN"}]},
        "provision": provision,
    });
    if !extension.is_empty() {
        c["extension"] = json!(extension);
    }
    c
}

/// One resource type's entry in the CapabilityStatement.
#[derive(Debug, Clone)]
pub struct TypeCapability {
    /// The resource type.
    pub name: String,
    /// Interactions (`read`, `vread`, `search-type`, `history-instance`, `history-type`).
    pub interactions: Vec<&'static str>,
    /// Search parameters: (name, type).
    pub search: Vec<(&'static str, &'static str)>,
    /// Operations: (name, definition).
    pub operations: Vec<(&'static str, &'static str)>,
}

/// The CapabilityStatement: exactly the types, interactions and search parameters served.
pub fn capability_statement(base: &str, types: &[TypeCapability], now: Timestamp) -> Value {
    let resources: Vec<Value> = types
        .iter()
        .map(|t| {
            let mut r = json!({
                "type": t.name,
                "interaction": t.interactions.iter().map(|i| json!({"code": i})).collect::<Vec<_>>(),
                "versioning": "versioned",
                "readHistory": t.interactions.contains(&"vread"),
                "updateCreate": false,
                "searchParam": t.search.iter().map(|(n, ty)| json!({"name": n, "type": ty})).collect::<Vec<_>>(),
            });
            if !t.operations.is_empty() {
                r["operation"] = json!(t
                    .operations
                    .iter()
                    .map(|(n, d)| json!({"name": n, "definition": d}))
                    .collect::<Vec<_>>());
            }
            r
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": instant(now),
        "publisher": "cophr",
        "kind": "instance",
        "software": {"name": "cophr", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "cophr node: a co-produced personal health record", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": false,
                "description": "Bearer token (`cophr token`) in the Authorization header; metadata is open."
            },
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}],
        }],
    })
}

/// The name of an actor as the record knows it.
pub fn actor_name(record: &Record, a: &ActorId) -> Option<String> {
    record.profile(a, None).map(|p| p.name.clone())
}

/// A minimal Patient for a record that has no demographics entry: the name the patient
/// published in the genesis entry.
pub fn patient_from_profile(record: &Record) -> Value {
    let rid: RecordId = record.id();
    let mut p = json!({
        "resourceType": "Patient",
        "id": rid.to_string(),
        "identifier": [{"system": ACTOR_SYSTEM, "value": rid.to_string()}],
    });
    if let Some(n) = actor_name(record, &rid) {
        p["name"] = json!([{"text": n}]);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants() {
        assert_eq!(instant(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(instant(1_600_000_000_123), "2020-09-13T12:26:40.123Z");
    }

    #[test]
    fn outcome_shape() {
        let o = outcome("error", "invalid", "bad");
        assert_eq!(o["issue"][0]["code"], "invalid");
    }
}
