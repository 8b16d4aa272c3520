//! Why a composition was refused.

use super::{MAX_COMPOSITION_BYTES, MAX_CONTENT, MAX_DEPTH, MAX_NODES};
use crate::schema::SchemaError;

/// A composition refused by the mapping; nothing is stored on any of these.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpenEhrError {
    /// The input is larger than [`MAX_COMPOSITION_BYTES`].
    #[error("the composition is {got} bytes; at most {MAX_COMPOSITION_BYTES} are accepted")]
    TooLarge {
        /// Its size in bytes.
        got: usize,
    },
    /// Nested deeper than [`MAX_DEPTH`], or more than [`MAX_NODES`] objects, or more than
    /// [`MAX_CONTENT`] content entries.
    #[error("the composition is too complex: {what} (limits: depth {MAX_DEPTH}, {MAX_NODES} objects, {MAX_CONTENT} content entries)")]
    TooComplex {
        /// Which limit was passed.
        what: String,
    },
    /// Not JSON.
    #[error("not JSON: {0}")]
    Json(String),
    /// A value of the wrong RM type at a path (`expected` names the types accepted).
    #[error("{path}: expected {expected}, found {found}")]
    WrongType {
        /// Where (an archetype path, or an RM attribute).
        path: String,
        /// What was expected.
        expected: String,
        /// What was found.
        found: String,
    },
    /// A composition's template is not one cophr maps.
    #[error(
        "template `{found}` is not a cophr template (GET /definition/template/adl1.4 lists them)"
    )]
    UnknownTemplate {
        /// The template id given (clipped).
        found: String,
    },
    /// A content entry's archetype is not part of the composition's template.
    #[error("content[{index}]: archetype `{found}` is not part of template {template} (expected one of {expected})")]
    WrongArchetype {
        /// The position in `content`.
        index: usize,
        /// The archetype id found (clipped).
        found: String,
        /// The template.
        template: String,
        /// The archetypes it accepts, comma separated.
        expected: String,
    },
    /// The same archetype twice in one composition.
    #[error("content[{index}]: archetype {archetype} is given twice (one entry per archetype)")]
    DuplicateArchetype {
        /// The position of the second one.
        index: usize,
        /// The archetype.
        archetype: String,
    },
    /// A mandatory element or RM attribute is missing.
    #[error("{path}: mandatory, missing")]
    MissingMandatory {
        /// Where.
        path: String,
    },
    /// An element at a path the template does not define.
    #[error("{archetype}{path}: no such element in template {template}")]
    UnknownPath {
        /// The entry's archetype.
        archetype: String,
        /// The element's path within it (clipped).
        path: String,
        /// The template.
        template: String,
    },
    /// The category has no openEHR template in cophr (yet).
    #[error("category {0} has no openEHR template in cophr")]
    Unmapped(String),
    /// One version of a CONTRIBUTION is refused (and so the whole contribution).
    #[error("versions[{index}]: {error}")]
    InVersion {
        /// The version's position in `versions`.
        index: usize,
        /// Why.
        error: Box<OpenEhrError>,
    },
    /// The body the composition maps to breaks the category's rules.
    #[error("{0}")]
    Schema(#[from] SchemaError),
}
