//! Extension schemas defined as data ([`crate::schema::ExtensionSchema`],
//! `docs/extensions.md`): which definitions are in effect at a causal position, the gate's
//! rules for a new definition, and validating an extension's body against the schema in
//! effect at the entry's position.
//!
//! The definitions of a category are read from the entry's causal past only, whatever
//! later happens to their authors' grants, so every replica decides alike in any arrival
//! order. In a past holding several definitions, the highest version is in effect; two
//! definitions of one version exist only when written concurrently, both compatible with
//! the version before, and a body then needs to be valid under one of them.

use super::{EntryId, Record, Rejection};
use crate::category::Category;
use crate::entry::{Entry, Payload};
use crate::schema::{self, DefinitionError, ExtensionSchema, SchemaError};
use crate::value::Value;

impl Record {
    fn definition(&self, id: &EntryId) -> Option<&ExtensionSchema> {
        match self.nodes.get(id)?.payload()? {
            Payload::DefineSchema(d) => Some(d),
            _ => None,
        }
    }

    /// The definitions of `c` in effect at a causal position (`past`): those of the highest
    /// version in it, smallest entry id first (one, unless written concurrently).
    pub(crate) fn definitions_in(
        &self,
        c: &Category,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Vec<(EntryId, &ExtensionSchema)> {
        let mut found: Vec<(EntryId, &ExtensionSchema)> = self
            .schema_defs
            .get(c)
            .into_iter()
            .flatten()
            .filter(|id| past(id))
            .filter_map(|id| Some((*id, self.definition(id)?)))
            .collect();
        let top = found.iter().map(|(_, d)| d.version).max();
        found.retain(|(_, d)| Some(d.version) == top);
        found.sort_by_key(|(id, _)| *id);
        found
    }

    /// The schema in effect for an extension category now (of everything held): its
    /// definition entry and the schema; `None` if none is defined (or `c` is built in).
    pub fn extension_schema(&self, c: &Category) -> Option<(EntryId, &ExtensionSchema)> {
        self.definitions_in(c, &|_| true).into_iter().next()
    }

    /// Every extension category with a schema defined here, with the one in effect now,
    /// by category name.
    pub fn extension_schemas(&self) -> Vec<(EntryId, &ExtensionSchema)> {
        let mut cats: Vec<&Category> = self.schema_defs.keys().collect();
        cats.sort();
        cats.into_iter()
            .filter_map(|c| self.extension_schema(c))
            .collect()
    }

    /// Every version of an extension category's schema held here, by version (then entry
    /// id): its history.
    pub fn schema_versions(&self, c: &Category) -> Vec<(EntryId, &ExtensionSchema)> {
        let mut all: Vec<(EntryId, &ExtensionSchema)> = self
            .schema_defs
            .get(c)
            .into_iter()
            .flatten()
            .filter_map(|id| Some((*id, self.definition(id)?)))
            .collect();
        all.sort_by_key(|(id, d)| (d.version, *id));
        all
    }

    /// Checks a body of category `c` as the gate does at a causal position: against the
    /// built-in schema, or an extension's schema in effect there (valid under one of them
    /// if several), or, for an extension with none defined, any non-empty map.
    ///
    /// # Errors
    /// The [`SchemaError`] naming the field (the first definition's, if none accepts it).
    pub(crate) fn validate_body_in(
        &self,
        c: &Category,
        body: &Value,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Result<(), SchemaError> {
        if !c.is_extension() {
            return schema::validate(c, body);
        }
        let defs = self.definitions_in(c, past);
        let mut first = None;
        for (_, d) in &defs {
            match d.validate(body) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        match first {
            Some(e) => Err(e),
            None => schema::validate(c, body),
        }
    }

    /// Checks a body of category `c` against the schema in effect now (everything held):
    /// what a writer checks before writing.
    ///
    /// # Errors
    /// As [`Record::apply`] would refuse it.
    pub fn validate_body(&self, c: &Category, body: &Value) -> Result<(), SchemaError> {
        self.validate_body_in(c, body, &|_| true)
    }

    /// The gate's rule for a new definition: version 1 if none is in its causal past, else
    /// the next version, compatible with every definition in effect there. (Who may
    /// define is checked with the author's other rights: the patient, or a grantee with
    /// write on the category.)
    pub(super) fn check_definition(
        &self,
        e: &Entry,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Result<(), Rejection> {
        let Payload::DefineSchema(d) = &e.payload else {
            return Ok(());
        };
        let heads = self.definitions_in(&d.category, past);
        if heads.is_empty() && d.version != 1 {
            return Err(DefinitionError::VersionNotNext {
                category: d.category.name().to_owned(),
                given: d.version,
                expected: 1,
            }
            .into());
        }
        for (_, old) in heads {
            d.compatible_with(old)?;
        }
        Ok(())
    }

    /// Indexes an applied definition.
    pub(super) fn index_definition(&mut self, id: EntryId, e: &Entry) {
        if let Payload::DefineSchema(d) = &e.payload {
            self.schema_defs
                .entry(d.category.clone())
                .or_default()
                .push(id);
        }
    }

    /// Rebuilds the definitions' index from the administrative entries held (always in
    /// memory), after a restore.
    pub(super) fn reindex_definitions(&mut self) {
        let found: Vec<(EntryId, Category)> = self
            .nodes
            .values()
            .filter_map(|n| match n.payload()? {
                Payload::DefineSchema(d) => Some((n.h.id, d.category.clone())),
                _ => None,
            })
            .collect();
        self.schema_defs = HashMap::default();
        for (id, c) in found {
            self.schema_defs.entry(c).or_default().push(id);
        }
    }
}

use super::HashMap;

impl Record {
    /// The extension schemas in effect now that `viewer` may see (their definition
    /// entries are in the administrative stream, which every reader holds), by category.
    pub fn visible_schemas(
        &self,
        viewer: &crate::fold::Viewer,
    ) -> Vec<(EntryId, &ExtensionSchema)> {
        self.extension_schemas()
            .into_iter()
            .filter(|(id, _)| self.can_see(viewer, id))
            .collect()
    }
}
