//! What FHIR resources a record holds, by identity: the index an import (the CLI's
//! `cophr fhir import`, the FHIR API's `POST`) checks a resource against, so a resource
//! held already stores nothing, a changed one amends its entry (a new version), and only a
//! new one creates an entry (`docs/fhir-import.md`, "Updates are versions").
//!
//! Built from the record's current state as the importer sees it: every item the importer
//! wrote (only its author may amend an item, so another author's resource of the same id
//! is another resource) whose body keeps its original FHIR JSON (`schema::FHIR_RESOURCE`),
//! by `fhir::identity` (type and id), with the digest of its content
//! (`fhir::content_hash`, which ignores `meta`); and the keys of the record's Patient
//! resources and the names of its named resources (Medication, Practitioner, Encounter …),
//! whoever wrote them.

use std::collections::HashMap;

use cophr_protocol::fhir::{self, PatientIndex, PatientKey};
use cophr_protocol::{fold, schema, ActorId, Category, EntryId, RecordId, Timestamp, Value};
use serde_json::Value as Json;

use super::{Store, StoreError};

/// What the record holds of one resource identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The entry's current version (`None` while its creation waits to be written).
    pub current: Option<EntryId>,
    /// Its category.
    pub category: Category,
    /// The digest of its content (`fhir::content_hash`).
    pub hash: [u8; 32],
}

/// What a record holds: resources by identity, those without an id by the digest of their
/// content (with their current version), and the keys of its Patient resources.
#[derive(Debug, Clone, Default)]
pub struct Holdings {
    /// Resources by identity (`fhir::identity`: type and id).
    pub by_id: HashMap<(String, String), Held>,
    /// Resources without an id, by content digest: their current version, if written.
    pub no_id: HashMap<[u8; 32], Option<EntryId>>,
    /// The keys (ids, identifiers) of the record's Patient resources.
    pub patient_keys: Vec<PatientKey>,
    /// The names of the record's Medication, Practitioner, Encounter … resources, whoever
    /// wrote them, by `Type/<id>` (`fhir::reference_names`): what a resource imported
    /// later that references them is summarised with.
    pub names: fhir::Names,
}

impl Store {
    /// What `record` holds of FHIR resources that `me` wrote, as `me` sees it at `now`
    /// ([`Holdings`]).
    pub fn fhir_holdings(
        &self,
        record: &RecordId,
        me: &ActorId,
        now: Timestamp,
    ) -> Result<Holdings, StoreError> {
        self.with_record(record, |r| {
            let viewer = r.viewer(me, now);
            let mut h = Holdings::default();
            for item in &fold::current(r, &viewer).items {
                let Some(text) = item
                    .body
                    .get(schema::FHIR_RESOURCE)
                    .and_then(Value::as_text)
                else {
                    continue;
                };
                let Ok(resource) = serde_json::from_str::<Json>(text) else {
                    continue;
                };
                let hash = fhir::content_hash(&resource);
                for (k, v) in fhir::reference_names(&resource, None) {
                    if h.names.len() < fhir::MAX_NAMES {
                        h.names.insert(k, v);
                    }
                }
                if resource["resourceType"] == "Patient" {
                    // By id and identifiers: a `fullUrl` names an entry of one Bundle only.
                    h.patient_keys
                        .extend(PatientIndex::keys_of(&resource, None));
                }
                if r.author_of_entry(&item.id) != Some(*me) {
                    continue;
                }
                match fhir::identity(&resource) {
                    Some(key) => {
                        h.by_id.insert(
                            key,
                            Held {
                                current: Some(item.current),
                                category: item.category.clone(),
                                hash,
                            },
                        );
                    }
                    None => {
                        h.no_id.insert(hash, Some(item.current));
                    }
                }
            }
            h
        })
    }
}
