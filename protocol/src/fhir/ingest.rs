//! What an importer of whole exports needs: a resource's identity, its content without
//! `meta`, the references naming its patient, and an index of the patients met, so that
//! each resource is matched to the record's patient or reported as another patient's.

use std::collections::HashMap;

use serde_json::Value as Json;

/// Most distinct patients one [`PatientIndex`] holds (a whole-practice export of more is
/// imported in parts).
pub const MAX_PATIENTS: usize = 100_000;
/// Most keys (ids, `fullUrl`s, identifiers) kept per patient.
const MAX_KEYS_PER_PATIENT: usize = 64;
/// Longest key kept, in bytes (longer identifiers and URLs are not used for matching).
const MAX_KEY: usize = 1024;

/// A resource's identity within a record: its type and `id` (`None` without an id).
pub fn identity(resource: &Json) -> Option<(String, String)> {
    let ty = resource.get("resourceType")?.as_str()?;
    let id = resource.get("id")?.as_str()?;
    Some((ty.to_owned(), id.to_owned()))
}

/// The resource without its `meta` (version id, last updated, source, profiles: what a
/// server sets, not what the resource says).
pub fn strip_meta(resource: &Json) -> Json {
    let mut r = resource.clone();
    if let Some(o) = r.as_object_mut() {
        o.remove("meta");
    }
    r
}

/// Whether two resources say the same, `meta` aside.
pub fn same_content(a: &Json, b: &Json) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(x), Some(y)) => {
            x.len() - usize::from(x.contains_key("meta"))
                == y.len() - usize::from(y.contains_key("meta"))
                && x.iter()
                    .filter(|(k, _)| *k != "meta")
                    .all(|(k, v)| y.get(k) == Some(v))
        }
        _ => a == b,
    }
}

/// A digest of what a resource says, `meta` aside, independent of key order and
/// whitespace: equal for resources [`same_content`] finds equal.
pub fn content_hash(resource: &Json) -> [u8; 32] {
    fn feed(h: &mut blake3::Hasher, v: &Json) {
        match v {
            Json::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                h.update(b"{");
                for k in keys {
                    h.update(serde_json::to_string(k).unwrap_or_default().as_bytes());
                    h.update(b":");
                    feed(h, &m[k]);
                    h.update(b",");
                }
                h.update(b"}");
            }
            Json::Array(a) => {
                h.update(b"[");
                for x in a {
                    feed(h, x);
                    h.update(b",");
                }
                h.update(b"]");
            }
            other => {
                h.update(other.to_string().as_bytes());
            }
        }
    }
    let mut h = blake3::Hasher::new();
    match resource.as_object() {
        Some(m) => {
            let stripped: serde_json::Map<String, Json> = m
                .iter()
                .filter(|(k, _)| *k != "meta")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            feed(&mut h, &Json::Object(stripped));
        }
        None => feed(&mut h, resource),
    }
    *h.finalize().as_bytes()
}

/// Makes resources stand on their own, without the `fullUrl`s of a Bundle (for NDJSON):
/// each resource without an `id` gets one (the UUID of its `urn:uuid:` full URL, else
/// `fallback`'s), and every `reference` naming another resource's full URL is rewritten
/// to `Type/id`, so nothing that resolved in a Bundle dangles. `items` are (full URL,
/// fallback id, resource).
pub fn localise_references(items: &mut [(String, String, Json)]) {
    let mut to: HashMap<String, String> = HashMap::new();
    for (url, fallback, r) in items.iter_mut() {
        let Some(ty) = r
            .get("resourceType")
            .and_then(Json::as_str)
            .map(str::to_owned)
        else {
            continue;
        };
        if r.get("id").and_then(Json::as_str).is_none() {
            let uuid = url.strip_prefix("urn:uuid:").filter(|u| {
                u.len() <= 64
                    && u.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            });
            let id = uuid.map_or_else(|| fallback.clone(), str::to_owned);
            if let Some(o) = r.as_object_mut() {
                o.insert("id".into(), Json::String(id));
            }
        }
        let id = r.get("id").and_then(Json::as_str).unwrap_or_default();
        let local = format!("{ty}/{id}");
        if *url != local {
            to.insert(url.clone(), local);
        }
    }
    if to.is_empty() {
        return;
    }
    for (_, _, r) in items.iter_mut() {
        rewrite_references(r, &to);
    }
}

/// Most nesting [`rewrite_references`] follows (a resource is at most
/// [`crate::fhir::MAX_RESOURCE`] bytes; FHIR resources nest a few levels).
pub const MAX_REFERENCE_DEPTH: usize = 64;

/// Rewrites every `reference` in `resource` that `to` names (from → to), at any depth up
/// to [`MAX_REFERENCE_DEPTH`]; a reference not in `to` is left as it is.
pub fn rewrite_references(resource: &mut Json, to: &HashMap<String, String>) {
    fn walk(v: &mut Json, to: &HashMap<String, String>, depth: usize) {
        if depth > MAX_REFERENCE_DEPTH {
            return;
        }
        match v {
            Json::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if k == "reference" {
                        if let Some(new) = x.as_str().and_then(|s| to.get(s)) {
                            *x = Json::String(new.clone());
                            continue;
                        }
                    }
                    walk(x, to, depth + 1);
                }
            }
            Json::Array(a) => a.iter_mut().for_each(|x| walk(x, to, depth + 1)),
            _ => {}
        }
    }
    if !to.is_empty() {
        walk(resource, to, 0);
    }
}

/// The references a resource names its patient by: `subject`, `patient`, `beneficiary`
/// (Coverage), `for` (Task), an Appointment's participants naming a Patient and, for a Provenance, its `target`s (the index keeps only those naming a
/// patient). Empty for a Patient and for resources about no patient (Practitioner,
/// Organization, Medication, …).
pub fn patient_refs(resource: &Json) -> Vec<&str> {
    let mut out = Vec::new();
    fn reference(r: &Json) -> Option<&str> {
        r.get("reference").and_then(Json::as_str)
    }
    for el in ["subject", "patient", "beneficiary", "for"] {
        if let Some(r) = resource.get(el).and_then(reference) {
            out.push(r);
        }
    }
    // An Appointment names its patient among its participants.
    if resource.get("resourceType").and_then(Json::as_str) == Some("Appointment") {
        if let Some(ps) = resource.get("participant").and_then(Json::as_array) {
            out.extend(
                ps.iter()
                    .filter_map(|p| p.get("actor").and_then(reference))
                    .filter(|r| r.starts_with("Patient/") || r.starts_with("urn:")),
            );
        }
    }
    if resource.get("resourceType").and_then(Json::as_str) == Some("Provenance") {
        if let Some(targets) = resource.get("target").and_then(Json::as_array) {
            out.extend(targets.iter().filter_map(reference));
        }
    }
    out
}

/// A key a patient is known by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PatientKey {
    /// `Patient/<id>`.
    Id(String),
    /// The `fullUrl` it came with (e.g. `urn:uuid:…`).
    Url(String),
    /// An identifier, `system|value` (e.g. `https://fhir.nhs.uk/Id/nhs-number|9434765919`).
    Identifier(String),
}

impl PatientKey {
    /// The key as written by a person choosing a patient (`--patient`): `Patient/<id>`,
    /// a URL, or `system|value`.
    pub fn parse(s: &str) -> PatientKey {
        if let Some(id) = s.strip_prefix("Patient/") {
            PatientKey::Id(id.to_owned())
        } else if s.contains('|') {
            PatientKey::Identifier(s.to_owned())
        } else if s.contains(':') {
            PatientKey::Url(s.to_owned())
        } else {
            PatientKey::Id(s.to_owned())
        }
    }
}

impl std::fmt::Display for PatientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PatientKey::Id(id) => write!(f, "Patient/{id}"),
            PatientKey::Url(u) | PatientKey::Identifier(u) => f.write_str(u),
        }
    }
}

/// The patients met (in the record and in the input), each with every key it is known by:
/// two Patient resources sharing a key (the same id, `fullUrl` or identifier, e.g. an NHS
/// number) are one patient.
#[derive(Debug, Default, Clone)]
pub struct PatientIndex {
    keys: HashMap<PatientKey, usize>,
    /// Per patient: a label (its first key) and how many keys it has.
    patients: Vec<(String, usize)>,
    /// Patients merged into another (union-find parent).
    parent: Vec<usize>,
}

/// Who a resource is about, as far as the index knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A patient of the index.
    Patient(usize),
    /// A patient reference the index does not know (`Patient/…` named but not met).
    Unknown(String),
    /// No patient: a resource about no one in particular (Practitioner, Medication, …).
    Nobody,
}

/// The index holds [`MAX_PATIENTS`] patients already.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("more than {MAX_PATIENTS} patients in one import; import them in parts")]
pub struct TooManyPatients;

impl PatientIndex {
    /// The keys of a Patient resource: `Patient/<id>`, its `fullUrl` and identifiers.
    pub fn keys_of(resource: &Json, full_url: Option<&str>) -> Vec<PatientKey> {
        let mut keys = Vec::new();
        if let Some(id) = resource.get("id").and_then(Json::as_str) {
            keys.push(PatientKey::Id(id.to_owned()));
        }
        if let Some(u) = full_url {
            keys.push(PatientKey::Url(u.to_owned()));
            // `…/Patient/<id>` names the same patient as `Patient/<id>`.
            if let Some((_, id)) = u.rsplit_once("/Patient/") {
                keys.push(PatientKey::Id(id.to_owned()));
            }
        }
        if let Some(ids) = resource.get("identifier").and_then(Json::as_array) {
            for i in ids {
                let system = i.get("system").and_then(Json::as_str);
                let value = i.get("value").and_then(Json::as_str);
                if let (Some(s), Some(v)) = (system, value) {
                    keys.push(PatientKey::Identifier(format!("{s}|{v}")));
                }
            }
        }
        keys.retain(|k| match k {
            PatientKey::Id(s) | PatientKey::Url(s) | PatientKey::Identifier(s) => {
                !s.is_empty() && s.len() <= MAX_KEY
            }
        });
        keys.truncate(MAX_KEYS_PER_PATIENT);
        keys
    }

    fn root(&self, mut i: usize) -> usize {
        while self.parent[i] != i {
            i = self.parent[i];
        }
        i
    }

    /// Adds a Patient resource (with its `fullUrl`, if any), merging it with the patients
    /// it shares a key with; gives its patient.
    ///
    /// # Errors
    /// [`MAX_PATIENTS`] patients held already.
    pub fn add(
        &mut self,
        resource: &Json,
        full_url: Option<&str>,
    ) -> Result<usize, TooManyPatients> {
        let keys = Self::keys_of(resource, full_url);
        self.add_keys(&keys)
    }

    /// Adds a patient known by `keys` (see [`PatientIndex::add`]).
    ///
    /// # Errors
    /// [`MAX_PATIENTS`] patients held already.
    pub fn add_keys(&mut self, keys: &[PatientKey]) -> Result<usize, TooManyPatients> {
        let mut found: Vec<usize> = keys
            .iter()
            .filter_map(|k| self.keys.get(k).map(|i| self.root(*i)))
            .collect();
        found.sort_unstable();
        found.dedup();
        let me = match found.first() {
            Some(first) => *first,
            None => {
                if self.patients.len() >= MAX_PATIENTS {
                    return Err(TooManyPatients);
                }
                let label = keys
                    .first()
                    .map_or_else(|| "Patient (no id)".to_owned(), |k| k.to_string());
                self.patients.push((label, 0));
                self.parent.push(self.patients.len() - 1);
                self.patients.len() - 1
            }
        };
        for other in found.iter().skip(1) {
            self.parent[*other] = me;
        }
        for k in keys {
            if self.patients[me].1 < MAX_KEYS_PER_PATIENT * 4 && !self.keys.contains_key(k) {
                self.keys.insert(k.clone(), me);
                self.patients[me].1 += 1;
            }
        }
        Ok(me)
    }

    /// The patient `p` is now (after merges), as [`PatientIndex::owner`] and
    /// [`PatientIndex::find`] give it.
    pub fn canonical(&self, p: usize) -> usize {
        self.root(p)
    }

    /// How many distinct patients the index holds.
    pub fn len(&self) -> usize {
        (0..self.parent.len())
            .filter(|i| self.parent[*i] == *i)
            .count()
    }

    /// Whether the index holds no patient.
    pub fn is_empty(&self) -> bool {
        self.patients.is_empty()
    }

    /// The patients (their canonical numbers).
    pub fn patients(&self) -> Vec<usize> {
        (0..self.parent.len())
            .filter(|i| self.parent[*i] == *i)
            .collect()
    }

    /// A label for a patient: the first key it was met by (e.g. `Patient/123`).
    pub fn label(&self, patient: usize) -> &str {
        &self.patients[self.root(patient)].0
    }

    /// The patient a key names, if met.
    pub fn find(&self, key: &PatientKey) -> Option<usize> {
        self.keys.get(key).map(|i| self.root(*i))
    }

    /// The patient a reference names, if met: `urn:uuid:…` and absolute URLs by `fullUrl`,
    /// `Patient/<id>` (relative or at the end of a URL) by id, and a conditional reference
    /// `Patient?identifier=system|value` by identifier.
    pub fn resolve(&self, reference: &str) -> Option<usize> {
        if let Some(p) = self.find(&PatientKey::Url(reference.to_owned())) {
            return Some(p);
        }
        if let Some(q) = reference.strip_prefix("Patient?identifier=") {
            return self.find(&PatientKey::Identifier(q.to_owned()));
        }
        let id = reference
            .strip_prefix("Patient/")
            .or_else(|| reference.rsplit_once("/Patient/").map(|(_, id)| id))?;
        // `Patient/<id>/_history/<n>` names the same patient.
        let id = id.split('/').next().unwrap_or(id);
        self.find(&PatientKey::Id(id.to_owned()))
    }

    /// Who a resource is about: for a Patient, the patient of its keys (added first);
    /// for others, the first patient reference that names a patient met, else the first
    /// `Patient/…` reference not met, else nobody.
    pub fn owner(&self, resource: &Json, full_url: Option<&str>) -> Owner {
        if resource.get("resourceType").and_then(Json::as_str) == Some("Patient") {
            return Self::keys_of(resource, full_url)
                .iter()
                .find_map(|k| self.find(k))
                .map_or(Owner::Nobody, Owner::Patient);
        }
        let refs = patient_refs(resource);
        if let Some(p) = refs.iter().find_map(|r| self.resolve(r)) {
            return Owner::Patient(p);
        }
        let is_provenance =
            resource.get("resourceType").and_then(Json::as_str) == Some("Provenance");
        refs.iter()
            .filter(|_| !is_provenance)
            .find(|r| r.starts_with("Patient/") || r.contains("/Patient/"))
            .map_or(Owner::Nobody, |r| {
                Owner::Unknown(r.chars().take(200).collect())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identity_and_content_ignore_meta() {
        let a = json!({"resourceType": "Condition", "id": "c1", "meta": {"versionId": "1"},
            "clinicalStatus": {"text": "active"}});
        let b = json!({"resourceType": "Condition", "id": "c1",
            "meta": {"versionId": "2", "lastUpdated": "2024-01-01T00:00:00Z"},
            "clinicalStatus": {"text": "active"}});
        let c = json!({"resourceType": "Condition", "id": "c1",
            "clinicalStatus": {"text": "resolved"}});
        assert_eq!(identity(&a), Some(("Condition".into(), "c1".into())));
        assert!(same_content(&a, &b));
        assert!(same_content(&a, &strip_meta(&b)));
        assert!(!same_content(&a, &c));
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(content_hash(&a), content_hash(&c));
        assert_eq!(identity(&json!({"resourceType": "Condition"})), None);
    }

    #[test]
    fn references_to_full_urls_become_type_and_id() {
        let mut items = vec![
            (
                "urn:uuid:9e0c0b9a-1".to_owned(),
                "e-1".to_owned(),
                json!({"resourceType": "Patient"}),
            ),
            (
                "urn:uuid:2".to_owned(),
                "e-2".to_owned(),
                json!({"resourceType": "Medication", "id": "m1"}),
            ),
            (
                "http://x/Encounter/enc".to_owned(),
                "e-3".to_owned(),
                json!({"resourceType": "Encounter", "id": "enc"}),
            ),
            (
                "urn:uuid:4".to_owned(),
                "e-4".to_owned(),
                json!({"resourceType": "MedicationRequest", "id": "r",
                    "subject": {"reference": "urn:uuid:9e0c0b9a-1", "display": "G"},
                    "medicationReference": {"reference": "urn:uuid:2"},
                    "encounter": {"reference": "http://x/Encounter/enc"},
                    "note": [{"text": "urn:uuid:2"}],
                    "basedOn": [{"reference": "urn:uuid:unknown"}]}),
            ),
        ];
        localise_references(&mut items);
        assert_eq!(items[0].2["id"], "9e0c0b9a-1");
        let r = &items[3].2;
        assert_eq!(r["subject"]["reference"], "Patient/9e0c0b9a-1");
        assert_eq!(r["subject"]["display"], "G");
        assert_eq!(r["medicationReference"]["reference"], "Medication/m1");
        assert_eq!(r["encounter"]["reference"], "Encounter/enc");
        assert_eq!(r["note"][0]["text"], "urn:uuid:2");
        assert_eq!(r["basedOn"][0]["reference"], "urn:uuid:unknown");
    }

    #[test]
    fn patients_are_matched_by_id_url_and_identifier() {
        let nhs = "https://fhir.nhs.uk/Id/nhs-number";
        let mut ix = PatientIndex::default();
        let george = ix
            .add(
                &json!({"resourceType": "Patient", "id": "g",
                    "identifier": [{"system": nhs, "value": "9434765919"}]}),
                Some("urn:uuid:aaa"),
            )
            .expect("add");
        let other = ix
            .add(&json!({"resourceType": "Patient", "id": "o"}), None)
            .expect("add");
        assert_ne!(george, other);
        // The same person from another system, by NHS number: one patient.
        let again = ix
            .add(
                &json!({"resourceType": "Patient", "id": "x9",
                    "identifier": [{"system": nhs, "value": "9434765919"}]}),
                None,
            )
            .expect("add");
        assert_eq!(again, george);
        assert_eq!(ix.len(), 2);
        let obs = |r: &str| json!({"resourceType": "Observation", "subject": {"reference": r}});
        assert_eq!(ix.owner(&obs("urn:uuid:aaa"), None), Owner::Patient(george));
        assert_eq!(ix.owner(&obs("Patient/x9"), None), Owner::Patient(george));
        assert_eq!(
            ix.owner(&obs("https://gp.example/fhir/Patient/o/_history/2"), None),
            Owner::Patient(other)
        );
        assert_eq!(
            ix.owner(&obs(&format!("Patient?identifier={nhs}|9434765919")), None),
            Owner::Patient(george)
        );
        assert_eq!(
            ix.owner(&obs("Patient/zzz"), None),
            Owner::Unknown("Patient/zzz".into())
        );
        assert_eq!(ix.owner(&obs("Group/1"), None), Owner::Nobody);
        assert_eq!(
            ix.owner(&json!({"resourceType": "Practitioner", "id": "p"}), None),
            Owner::Nobody
        );
        let prov = json!({"resourceType": "Provenance",
            "target": [{"reference": "urn:uuid:obs1"}, {"reference": "Patient/o"}]});
        assert_eq!(ix.owner(&prov, None), Owner::Patient(other));
        assert_eq!(PatientKey::parse("Patient/g"), PatientKey::Id("g".into()));
        assert_eq!(
            ix.find(&PatientKey::parse(&format!("{nhs}|9434765919"))),
            Some(george)
        );
    }

    #[test]
    fn a_patient_known_by_two_keys_merges_two_patients() {
        let mut ix = PatientIndex::default();
        let a = ix
            .add(&json!({"resourceType": "Patient", "id": "a"}), None)
            .expect("add");
        let b = ix
            .add(
                &json!({"resourceType": "Patient", "id": "b"}),
                Some("urn:uuid:b"),
            )
            .expect("add");
        assert_eq!(ix.len(), 2);
        let both = ix
            .add_keys(&[
                PatientKey::Id("a".into()),
                PatientKey::Url("urn:uuid:b".into()),
            ])
            .expect("add");
        assert_eq!(ix.len(), 1);
        assert_eq!(ix.resolve("Patient/a"), Some(both));
        assert_eq!(ix.resolve("Patient/b"), Some(both));
        assert!(a == both || b == both);
    }
}
