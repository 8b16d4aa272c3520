//! Questionnaires (patient-reported outcome measures): a published definition, answered by
//! the patient, scored by the definition's own rule (`docs/care-team.md`, "Questionnaires").
//!
//! A **definition** is an entry in `questionnaires` whose `definition` field holds a FHIR R4
//! Questionnaire (JSON text, at most [`MAX_DEFINITION_BYTES`]). [`Definition::parse`] reads
//! and validates it: flat items, each with a `linkId` (unique, at most [`MAX_LINK_ID`]
//! bytes) and a type among `choice`, `integer`, `string`, `boolean` (and `display`, which
//! takes no answer); a choice item's `answerOption`s carry a `valueCoding` and, to be scored,
//! an integer ordinal value (the `ordinalValue` extension, [`ORDINAL_VALUE`], or
//! `itemWeight`, [`ITEM_WEIGHT`]). The scoring rule rides in the cophr extension
//! [`SCORING`]: `method` `sum` (the sum of the ordinal values of the options chosen), and
//! optional `band`s (`low`, `high`, `label`), in order, none overlapping.
//!
//! A **response** is an entry in `questionnaires` naming the definition's version it answers
//! (`questionnaire-entry`), with `answers` (`question` the linkId, `answer` a choice's code,
//! an integer, a text or true/false), and the `score` and `band` the rule gives.
//! [`check_response`] checks a response against its definition: every linkId known, each
//! answer of the item's type, each required item answered, a choice among its options, the
//! stated score and band those computed. It is pure; [`crate::record::Record::apply`] calls
//! it for every plain response (the definition read in the writer's causal past), and the
//! writer calls it before sealing one.
//!
//! PHQ-9 and GAD-7 ship as [`BUILT_IN`] definitions: both are free to reproduce, translate,
//! display and distribute without permission (Pfizer; <https://www.phqscreeners.com>).

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::value::Value;

/// Largest definition (the Questionnaire's JSON text), in bytes.
pub const MAX_DEFINITION_BYTES: usize = 64 * 1024;
/// Most items in one definition.
pub const MAX_ITEMS: usize = 100;
/// Most answer options on one item.
pub const MAX_OPTIONS: usize = 32;
/// Most severity bands in one scoring rule.
pub const MAX_BANDS: usize = 16;
/// Most flags over the total score on one definition.
pub const MAX_SCORE_FLAGS: usize = 4;
/// The `question` of a flag tripped by the total score ([`Tripped::total`]).
pub const TOTAL: &str = "total";
/// Longest `linkId`, in bytes.
pub const MAX_LINK_ID: usize = 64;
/// Longest text (title, item text, option display, band label), in bytes.
pub const MAX_TEXT: usize = crate::schema::MAX_TEXT;
/// Largest ordinal value (and band bound), in magnitude: sums of [`MAX_ITEMS`] of them
/// cannot overflow.
pub const MAX_ORDINAL: i64 = 1_000_000;

/// The FHIR extension giving an answer option's ordinal value (R4).
pub const ORDINAL_VALUE: &str = "http://hl7.org/fhir/StructureDefinition/ordinalValue";
/// The FHIR extension giving an answer option's weight (also read as its ordinal value).
pub const ITEM_WEIGHT: &str = "http://hl7.org/fhir/StructureDefinition/itemWeight";
/// The cophr extension carrying a definition's scoring rule.
pub const SCORING: &str = "https://cophr.invalid/questionnaire-scoring";
/// The cophr extension marking a choice item as a clinical flag: an answer whose ordinal
/// value is at least `from` trips it (PHQ-9 question 9 answered above *Not at all*).
pub const FLAG: &str = "https://cophr.invalid/questionnaire-flag";

/// The field of a response naming the definition's version it answers.
pub const DEFINITION_ENTRY: &str = "questionnaire-entry";
/// The field of a definition holding its FHIR Questionnaire.
pub const DEFINITION: &str = "definition";
/// The field of a response naming the task that assigned it.
pub const TASK: &str = "task";
/// The task kind of an assigned questionnaire.
pub const TASK_KIND: &str = "questionnaire";

/// The definitions shipped with cophr, by name: `phq-9` (depression) and `gad-7` (anxiety).
pub const BUILT_IN: [(&str, &str); 2] = [
    ("phq-9", include_str!("instruments/phq-9.json")),
    ("gad-7", include_str!("instruments/gad-7.json")),
];

/// A built-in definition's JSON text by name (case-insensitive).
pub fn built_in(name: &str) -> Option<&'static str> {
    BUILT_IN
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
        .map(|(_, j)| *j)
}

/// Why a definition or a response is refused. Nothing is stored when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuestionnaireError {
    /// The definition is larger than [`MAX_DEFINITION_BYTES`].
    #[error("the questionnaire is {bytes} bytes: at most {max}")]
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The definition is not a well-formed FHIR Questionnaire.
    #[error("malformed Questionnaire: {0}")]
    Malformed(String),
    /// More of something than allowed.
    #[error("the questionnaire has {got} {what}: at most {max}")]
    TooMany {
        /// What.
        what: &'static str,
        /// How many.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// Two items share a linkId.
    #[error("linkId `{0}` is used by two items")]
    DuplicateLinkId(String),
    /// An item type cophr does not take answers for.
    #[error("item `{link_id}` has type `{ty}`: cophr takes choice, integer, string, boolean and display items")]
    UnsupportedType {
        /// The item.
        link_id: String,
        /// Its type.
        ty: String,
    },
    /// The scoring rule is malformed (unknown method, bands out of order or overlapping).
    #[error("scoring rule: {0}")]
    Scoring(String),
    /// A response names a definition that is not in the writer's past.
    #[error("no published questionnaire `{0}` in what the writer had seen")]
    UnknownQuestionnaire(String),
    /// A response names an entry that is not a published questionnaire.
    #[error("entry `{0}` is not a published questionnaire")]
    NotAQuestionnaire(String),
    /// An answer to a question the definition does not have.
    #[error("the questionnaire has no question `{0}`")]
    UnknownLinkId(String),
    /// Two answers to one question.
    #[error("question `{0}` is answered twice")]
    DuplicateAnswer(String),
    /// An answer of the wrong type.
    #[error("question `{link_id}` takes {expected}")]
    WrongType {
        /// The question.
        link_id: String,
        /// What it takes.
        expected: &'static str,
    },
    /// A required question left unanswered.
    #[error("question `{0}` must be answered")]
    MissingRequired(String),
    /// A choice answer that is not one of the options.
    #[error("`{answer}` is not one of the options of question `{link_id}` ({options})")]
    NotAnOption {
        /// The question.
        link_id: String,
        /// The answer given.
        answer: String,
        /// The options' codes, comma separated.
        options: String,
    },
    /// The stated score is not the one the rule gives.
    #[error("the stated score ({}) is not the questionnaire's ({})", show(.stated), show(.computed))]
    ScoreMismatch {
        /// The score stated in the response.
        stated: Option<i64>,
        /// The score the rule gives.
        computed: Option<i64>,
    },
    /// The stated band is not the one the rule gives.
    #[error("the stated band ({}) is not the questionnaire's ({})", show(.stated), show(.computed))]
    BandMismatch {
        /// The band stated in the response.
        stated: Option<String>,
        /// The band the rule gives.
        computed: Option<String>,
    },
}

fn show<T: std::fmt::Display>(x: &Option<T>) -> String {
    x.as_ref()
        .map_or_else(|| "none".to_owned(), ToString::to_string)
}

/// An item's answer type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemType {
    /// One of the answer options (its code).
    Choice,
    /// A whole number.
    Integer,
    /// A text.
    String,
    /// Yes or no.
    Boolean,
    /// Text shown, not answered.
    Display,
}

impl ItemType {
    fn expected(self) -> &'static str {
        match self {
            ItemType::Choice => "one of its options' codes",
            ItemType::Integer => "a whole number",
            ItemType::String => "a text",
            ItemType::Boolean => "true or false",
            ItemType::Display => "no answer",
        }
    }
}

/// One answer option of a choice item.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AnswerOption {
    /// Its code (`valueCoding.code`).
    pub code: String,
    /// Its code system, if given.
    pub system: Option<String>,
    /// What the patient reads.
    pub display: String,
    /// Its ordinal value, scored; `None` if the option is not scored.
    pub ordinal: Option<i64>,
}

/// One question.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Item {
    /// Its linkId.
    pub link_id: String,
    /// The question.
    pub text: String,
    /// The answer type.
    #[serde(rename = "type")]
    pub ty: ItemType,
    /// Whether it must be answered.
    pub required: bool,
    /// A choice item's options.
    pub options: Vec<AnswerOption>,
    /// The clinical flag an answer to it may trip, if it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag: Option<Flag>,
}

/// A clinical flag on a choice item: an answer whose ordinal value is at least `from`
/// trips it, and the care team is told (`docs/care-team.md`, "Clinical flags").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Flag {
    /// The lowest ordinal value that trips it.
    pub from: i64,
    /// What it means (`Thoughts of self-harm`).
    pub label: String,
}

/// A flag a response tripped: the question, the flag's meaning and the answer given; or,
/// for a flag over the total score, [`TOTAL`], its meaning and the score.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Tripped {
    /// The question's linkId ([`TOTAL`] for a flag over the total score).
    pub question: String,
    /// The flag's label.
    pub label: String,
    /// The answer chosen (its display), or `total score N`.
    pub answer: String,
    /// Whether the total score tripped it (not one answer).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub total: bool,
}

/// A clinical flag over the total score: a score of at least `from` trips it (PHQ-9 20 or
/// more, *severe*). Worked out from the answers, never stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScoreFlag {
    /// The lowest total that trips it.
    pub from: i64,
    /// What it means.
    pub label: String,
}

/// A severity band: scores from `low` to `high` (both included) read as `label`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Band {
    /// The lowest score in the band.
    pub low: i64,
    /// The highest score in the band.
    pub high: i64,
    /// Its name (`mild`).
    pub label: String,
}

/// A definition's scoring rule: the sum of the ordinal values chosen, read against bands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Scoring {
    /// The severity bands, lowest first (may be empty).
    pub bands: Vec<Band>,
    /// Flags over the total score (at most [`MAX_SCORE_FLAGS`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<ScoreFlag>,
}

impl Scoring {
    /// The band a score falls in.
    pub fn band(&self, score: i64) -> Option<&Band> {
        self.bands
            .iter()
            .find(|b| b.low <= score && score <= b.high)
    }
}

/// A validated questionnaire definition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Definition {
    /// Its canonical URL, if given.
    pub url: Option<String>,
    /// Its title (else its name).
    pub title: String,
    /// Instructions shown before the questions (`description`), if given.
    pub description: Option<String>,
    /// Its copyright statement, if given.
    pub copyright: Option<String>,
    /// The questions, in order.
    pub items: Vec<Item>,
    /// Its scoring rule, if it has one.
    pub scoring: Option<Scoring>,
}

/// What a response scores.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Scored {
    /// The score (`None` without a scoring rule).
    pub score: Option<i64>,
    /// The band it falls in, if any.
    pub band: Option<String>,
    /// The clinical flags the answers trip, in the questionnaire's order.
    pub flags: Vec<Tripped>,
}

fn malformed(m: impl Into<String>) -> QuestionnaireError {
    QuestionnaireError::Malformed(m.into())
}

fn text_of(o: &Json, k: &str, what: &str) -> Result<Option<String>, QuestionnaireError> {
    match o.get(k) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) if s.len() > MAX_TEXT * 4 => Err(malformed(format!(
            "{what} `{k}` is longer than {} bytes",
            MAX_TEXT * 4
        ))),
        Some(Json::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Json::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(malformed(format!("{what} `{k}` is not a string"))),
    }
}

fn short(s: Option<String>, what: &str) -> Result<Option<String>, QuestionnaireError> {
    match s {
        Some(s) if s.len() > MAX_TEXT => {
            Err(malformed(format!("{what} is longer than {MAX_TEXT} bytes")))
        }
        s => Ok(s),
    }
}

fn integer(j: &Json) -> Option<i64> {
    let n = match j {
        Json::Number(n) => n,
        _ => return None,
    };
    let v = n
        .as_i64()
        .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))?;
    (v.abs() <= MAX_ORDINAL).then_some(v)
}

fn extensions(o: &Json) -> Result<&[Json], QuestionnaireError> {
    match o.get("extension") {
        None => Ok(&[]),
        Some(Json::Array(a)) => Ok(a),
        Some(_) => Err(malformed("`extension` is not a list")),
    }
}

fn ext_url(e: &Json) -> Option<&str> {
    e.get("url").and_then(Json::as_str)
}

fn option_of(link_id: &str, o: &Json) -> Result<AnswerOption, QuestionnaireError> {
    let c = o.get("valueCoding").ok_or_else(|| {
        malformed(format!(
            "an answerOption of item `{link_id}` has no valueCoding"
        ))
    })?;
    let code = text_of(c, "code", "valueCoding")?
        .ok_or_else(|| malformed(format!("an answerOption of item `{link_id}` has no code")))?;
    let code = short(Some(code), "a code")?.unwrap_or_default();
    let system = short(text_of(c, "system", "valueCoding")?, "a code system")?;
    let display = short(text_of(c, "display", "valueCoding")?, "an option's display")?
        .unwrap_or_else(|| code.clone());
    let mut ordinal = None;
    for e in extensions(o)?.iter().chain(extensions(c)?) {
        if matches!(ext_url(e), Some(ORDINAL_VALUE | ITEM_WEIGHT)) {
            let v = e
                .get("valueDecimal")
                .or_else(|| e.get("valueInteger"))
                .and_then(integer)
                .ok_or_else(|| {
                    malformed(format!(
                        "option `{code}` of item `{link_id}`: the ordinal value is not a whole \
                         number of at most {MAX_ORDINAL}"
                    ))
                })?;
            ordinal = Some(v);
        }
    }
    Ok(AnswerOption {
        code,
        system,
        display,
        ordinal,
    })
}

fn scoring_of(e: &Json) -> Result<Scoring, QuestionnaireError> {
    let bad = |m: String| QuestionnaireError::Scoring(m);
    let mut method = None;
    let mut bands = Vec::new();
    let mut flags = Vec::new();
    for sub in extensions(e)? {
        match ext_url(sub) {
            Some("method") => method = sub.get("valueCode").and_then(Json::as_str),
            Some("flag") => {
                if flags.len() == MAX_SCORE_FLAGS {
                    return Err(QuestionnaireError::TooMany {
                        what: "flags over the total score",
                        got: MAX_SCORE_FLAGS + 1,
                        max: MAX_SCORE_FLAGS,
                    });
                }
                let (mut from, mut label) = (None, None);
                for f in extensions(sub)? {
                    match ext_url(f) {
                        Some("from") => from = f.get("valueInteger").and_then(integer),
                        Some("label") => {
                            label = short(
                                text_of(f, "valueString", "a flag's label")?,
                                "a flag's label",
                            )?
                        }
                        _ => {}
                    }
                }
                let (Some(from), Some(label)) = (from, label) else {
                    return Err(bad(
                        "a flag over the total needs `from` (a whole number) and `label`".into(),
                    ));
                };
                flags.push(ScoreFlag { from, label });
            }
            Some("band") => {
                if bands.len() == MAX_BANDS {
                    return Err(QuestionnaireError::TooMany {
                        what: "bands",
                        got: MAX_BANDS + 1,
                        max: MAX_BANDS,
                    });
                }
                let (mut low, mut high, mut label) = (None, None, None);
                for b in extensions(sub)? {
                    match ext_url(b) {
                        Some("low") => low = b.get("valueInteger").and_then(integer),
                        Some("high") => high = b.get("valueInteger").and_then(integer),
                        Some("label") => {
                            label = short(
                                text_of(b, "valueString", "a band's label")?,
                                "a band's label",
                            )?
                        }
                        _ => {}
                    }
                }
                let (Some(low), Some(high), Some(label)) = (low, high, label) else {
                    return Err(bad(
                        "a band needs `low`, `high` (whole numbers) and `label`".into(),
                    ));
                };
                if low > high {
                    return Err(bad(format!(
                        "band `{label}`: low {low} is above high {high}"
                    )));
                }
                bands.push(Band { low, high, label });
            }
            _ => {}
        }
    }
    match method {
        Some("sum") => {}
        Some(m) => return Err(bad(format!("method `{m}`: cophr scores by `sum`"))),
        None => return Err(bad("no `method` (cophr scores by `sum`)".into())),
    }
    for w in bands.windows(2) {
        if w[1].low <= w[0].high {
            return Err(bad(format!(
                "bands `{}` and `{}` overlap or are out of order",
                w[0].label, w[1].label
            )));
        }
    }
    Ok(Scoring { bands, flags })
}

/// An item's clinical flag ([`FLAG`]): on a choice item only, given once, with a whole
/// number `from` that at least one option's ordinal value reaches, and a `label`.
fn flag_of(
    link_id: &str,
    it: &Json,
    ty: ItemType,
    options: &[AnswerOption],
) -> Result<Option<Flag>, QuestionnaireError> {
    let mut flag = None;
    for e in extensions(it)? {
        if ext_url(e) != Some(FLAG) {
            continue;
        }
        let bad = |m: &str| malformed(format!("item `{link_id}`: the flag {m}"));
        if flag.is_some() {
            return Err(bad("is given twice"));
        }
        if ty != ItemType::Choice {
            return Err(bad("is on an item that is not a choice"));
        }
        let (mut from, mut label) = (None, None);
        for sub in extensions(e)? {
            match ext_url(sub) {
                Some("from") => from = sub.get("valueInteger").and_then(integer),
                Some("label") => {
                    label = short(
                        text_of(sub, "valueString", "a flag's label")?,
                        "a flag's label",
                    )?
                }
                _ => {}
            }
        }
        let (Some(from), Some(label)) = (from, label) else {
            return Err(bad("needs `from` (a whole number) and `label`"));
        };
        if !options.iter().any(|o| o.ordinal.is_some_and(|v| v >= from)) {
            return Err(bad(&format!(
                "can never trip: no option's value reaches {from}"
            )));
        }
        flag = Some(Flag { from, label });
    }
    Ok(flag)
}

impl Definition {
    /// Reads and validates a FHIR R4 Questionnaire given as JSON text.
    ///
    /// # Errors
    /// [`QuestionnaireError::TooLarge`], [`QuestionnaireError::Malformed`],
    /// [`QuestionnaireError::TooMany`], [`QuestionnaireError::DuplicateLinkId`],
    /// [`QuestionnaireError::UnsupportedType`], [`QuestionnaireError::Scoring`].
    pub fn parse(json: &str) -> Result<Definition, QuestionnaireError> {
        if json.len() > MAX_DEFINITION_BYTES {
            return Err(QuestionnaireError::TooLarge {
                bytes: json.len(),
                max: MAX_DEFINITION_BYTES,
            });
        }
        let j: Json =
            serde_json::from_str(json).map_err(|e| malformed(format!("not JSON: {e}")))?;
        Definition::from_json(&j)
    }

    /// Validates a FHIR R4 Questionnaire (see [`Definition::parse`]; the size bound is the
    /// caller's).
    ///
    /// # Errors
    /// As [`Definition::parse`].
    pub fn from_json(j: &Json) -> Result<Definition, QuestionnaireError> {
        if !j.is_object() {
            return Err(malformed("not a JSON object"));
        }
        if j.get("resourceType").and_then(Json::as_str) != Some("Questionnaire") {
            return Err(malformed("`resourceType` is not `Questionnaire`"));
        }
        let title = short(
            text_of(j, "title", "Questionnaire")?.or(text_of(j, "name", "Questionnaire")?),
            "the title",
        )?
        .ok_or_else(|| malformed("no `title` or `name`"))?;
        let mut scoring = None;
        for e in extensions(j)? {
            if ext_url(e) == Some(SCORING) {
                if scoring.is_some() {
                    return Err(QuestionnaireError::Scoring("given twice".into()));
                }
                scoring = Some(scoring_of(e)?);
            }
        }
        let raw = match j.get("item") {
            Some(Json::Array(a)) if !a.is_empty() => a,
            _ => return Err(malformed("no `item` list")),
        };
        if raw.len() > MAX_ITEMS {
            return Err(QuestionnaireError::TooMany {
                what: "items",
                got: raw.len(),
                max: MAX_ITEMS,
            });
        }
        let mut items: Vec<Item> = Vec::with_capacity(raw.len());
        for it in raw {
            let link_id = text_of(it, "linkId", "an item's")?
                .ok_or_else(|| malformed("an item has no `linkId`"))?;
            if link_id.len() > MAX_LINK_ID {
                return Err(malformed(format!(
                    "a linkId is longer than {MAX_LINK_ID} bytes"
                )));
            }
            if items.iter().any(|i| i.link_id == link_id) {
                return Err(QuestionnaireError::DuplicateLinkId(link_id));
            }
            if it.get("item").is_some() {
                return Err(malformed(format!(
                    "item `{link_id}` has nested items: cophr takes flat questionnaires"
                )));
            }
            let ty_name = text_of(it, "type", "an item's")?
                .ok_or_else(|| malformed(format!("item `{link_id}` has no `type`")))?;
            let ty = match ty_name.as_str() {
                "choice" => ItemType::Choice,
                "integer" => ItemType::Integer,
                "string" => ItemType::String,
                "boolean" => ItemType::Boolean,
                "display" => ItemType::Display,
                _ => {
                    return Err(QuestionnaireError::UnsupportedType {
                        link_id,
                        ty: crate::schema::clip_quote(&ty_name),
                    })
                }
            };
            let text = short(text_of(it, "text", "an item's")?, "an item's text")?
                .unwrap_or_else(|| link_id.clone());
            let required = match it.get("required") {
                None => false,
                Some(Json::Bool(b)) => *b,
                Some(_) => {
                    return Err(malformed(format!(
                        "item `{link_id}`: `required` is not true or false"
                    )))
                }
            };
            let mut options = Vec::new();
            match (ty, it.get("answerOption")) {
                (ItemType::Choice, Some(Json::Array(a))) if !a.is_empty() => {
                    if a.len() > MAX_OPTIONS {
                        return Err(QuestionnaireError::TooMany {
                            what: "answer options on one item",
                            got: a.len(),
                            max: MAX_OPTIONS,
                        });
                    }
                    for o in a {
                        let o = option_of(&link_id, o)?;
                        if options.iter().any(|x: &AnswerOption| x.code == o.code) {
                            return Err(malformed(format!(
                                "item `{link_id}` has option `{}` twice",
                                o.code
                            )));
                        }
                        options.push(o);
                    }
                }
                (ItemType::Choice, _) => {
                    return Err(malformed(format!(
                        "choice item `{link_id}` has no answerOption list"
                    )))
                }
                (_, None) => {}
                (_, Some(_)) => {
                    return Err(malformed(format!(
                        "item `{link_id}` of type `{ty_name}` cannot have answer options"
                    )))
                }
            }
            let flag = flag_of(&link_id, it, ty, &options)?;
            if ty == ItemType::Display && required {
                return Err(malformed(format!(
                    "display item `{link_id}` cannot be required"
                )));
            }
            items.push(Item {
                link_id,
                text,
                ty,
                required,
                options,
                flag,
            });
        }
        if scoring.is_some()
            && !items
                .iter()
                .flat_map(|i| &i.options)
                .any(|o| o.ordinal.is_some())
        {
            return Err(QuestionnaireError::Scoring(
                "no answer option has an ordinal value to sum".into(),
            ));
        }
        if let Some(rule) = &scoring {
            // The highest total the answers can give: a flag above it never trips.
            let most: i64 = items
                .iter()
                .filter_map(|i| i.options.iter().filter_map(|o| o.ordinal).max())
                .map(|m| m.max(0))
                .sum();
            if let Some(f) = rule.flags.iter().find(|f| f.from > most) {
                return Err(QuestionnaireError::Scoring(format!(
                    "flag `{}`: no answers reach a total of {} (at most {most})",
                    f.label, f.from
                )));
            }
        }
        Ok(Definition {
            url: short(text_of(j, "url", "Questionnaire")?, "the url")?,
            title,
            description: text_of(j, "description", "Questionnaire")?,
            copyright: text_of(j, "copyright", "Questionnaire")?,
            items,
            scoring,
        })
    }

    /// The item of a linkId.
    pub fn item(&self, link_id: &str) -> Option<&Item> {
        self.items.iter().find(|i| i.link_id == link_id)
    }

    /// Validates `answers` (a body's `answers`: a list of `{question, answer}` maps) and
    /// computes the score and band by the definition's rule.
    ///
    /// # Errors
    /// [`QuestionnaireError::UnknownLinkId`], [`QuestionnaireError::DuplicateAnswer`],
    /// [`QuestionnaireError::WrongType`], [`QuestionnaireError::NotAnOption`],
    /// [`QuestionnaireError::MissingRequired`].
    pub fn score(&self, answers: &Value) -> Result<Scored, QuestionnaireError> {
        let empty = Vec::new();
        let list = match answers {
            Value::List(l) => l,
            _ => &empty,
        };
        let mut given: BTreeMap<&str, &Value> = BTreeMap::new();
        for a in list {
            let (Some(q), Some(v)) = (a.get("question").and_then(Value::as_text), a.get("answer"))
            else {
                return Err(malformed("an answer is not a {question, answer} map"));
            };
            let item = self
                .item(q)
                .ok_or_else(|| QuestionnaireError::UnknownLinkId(q.to_owned()))?;
            if given.insert(q, v).is_some() {
                return Err(QuestionnaireError::DuplicateAnswer(q.to_owned()));
            }
            let wrong = || QuestionnaireError::WrongType {
                link_id: q.to_owned(),
                expected: item.ty.expected(),
            };
            match (item.ty, v) {
                (ItemType::Choice, Value::Text(code)) => {
                    if !item.options.iter().any(|o| o.code == *code) {
                        return Err(QuestionnaireError::NotAnOption {
                            link_id: q.to_owned(),
                            answer: crate::schema::clip_quote(code),
                            options: item
                                .options
                                .iter()
                                .map(|o| o.code.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                        });
                    }
                }
                (ItemType::Integer, Value::Int(n)) if n.abs() <= MAX_ORDINAL * 1000 => {}
                (ItemType::String, Value::Text(_)) | (ItemType::Boolean, Value::Bool(_)) => {}
                _ => return Err(wrong()),
            }
        }
        if let Some(missing) = self
            .items
            .iter()
            .find(|i| i.required && !given.contains_key(i.link_id.as_str()))
        {
            return Err(QuestionnaireError::MissingRequired(missing.link_id.clone()));
        }
        let flags = self
            .items
            .iter()
            .filter_map(|item| {
                let flag = item.flag.as_ref()?;
                let Some(Value::Text(code)) = given.get(item.link_id.as_str()) else {
                    return None;
                };
                let o = item.options.iter().find(|o| o.code == *code)?;
                o.ordinal.filter(|v| *v >= flag.from)?;
                Some(Tripped {
                    question: item.link_id.clone(),
                    label: flag.label.clone(),
                    answer: o.display.clone(),
                    total: false,
                })
            })
            .collect();
        let Some(rule) = &self.scoring else {
            return Ok(Scored {
                flags,
                ..Scored::default()
            });
        };
        let mut score = 0i64;
        for item in &self.items {
            if let Some(Value::Text(code)) = given.get(item.link_id.as_str()) {
                let o = item.options.iter().find(|o| o.code == *code);
                score += o.and_then(|o| o.ordinal).unwrap_or(0);
            }
        }
        let mut flags = flags;
        flags.extend(
            rule.flags
                .iter()
                .filter(|f| score >= f.from)
                .map(|f| Tripped {
                    question: TOTAL.to_owned(),
                    label: f.label.clone(),
                    answer: format!("total score {score}"),
                    total: true,
                }),
        );
        Ok(Scored {
            score: Some(score),
            band: rule.band(score).map(|b| b.label.clone()),
            flags,
        })
    }

    /// Reads an answer to `link_id` written as text (on a command line): a choice's code,
    /// its display (case-insensitive) or its ordinal value; a whole number; `true`/`false`
    /// (`yes`/`no`); or the text itself.
    ///
    /// # Errors
    /// [`QuestionnaireError::UnknownLinkId`], [`QuestionnaireError::WrongType`],
    /// [`QuestionnaireError::NotAnOption`].
    pub fn answer_from_text(&self, link_id: &str, text: &str) -> Result<Value, QuestionnaireError> {
        let item = self
            .item(link_id)
            .ok_or_else(|| QuestionnaireError::UnknownLinkId(link_id.to_owned()))?;
        let t = text.trim();
        let wrong = || QuestionnaireError::WrongType {
            link_id: link_id.to_owned(),
            expected: item.ty.expected(),
        };
        Ok(match item.ty {
            ItemType::Choice => {
                let by_ordinal = t.parse::<i64>().ok();
                let o = item
                    .options
                    .iter()
                    .find(|o| o.code == t)
                    .or_else(|| {
                        item.options
                            .iter()
                            .find(|o| o.display.eq_ignore_ascii_case(t))
                    })
                    .or_else(|| {
                        let n = by_ordinal?;
                        let mut m = item.options.iter().filter(|o| o.ordinal == Some(n));
                        let first = m.next();
                        first.filter(|_| m.next().is_none())
                    })
                    .ok_or_else(|| QuestionnaireError::NotAnOption {
                        link_id: link_id.to_owned(),
                        answer: crate::schema::clip_quote(t),
                        options: item
                            .options
                            .iter()
                            .map(|o| o.code.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })?;
                Value::Text(o.code.clone())
            }
            ItemType::Integer => Value::Int(t.parse().map_err(|_| wrong())?),
            ItemType::Boolean => match t.to_ascii_lowercase().as_str() {
                "true" | "yes" => Value::Bool(true),
                "false" | "no" => Value::Bool(false),
                _ => return Err(wrong()),
            },
            ItemType::String => Value::Text(text.to_owned()),
            ItemType::Display => return Err(wrong()),
        })
    }
}

/// A Questionnaire as cophr publishes it: validated, its `id` and `meta` removed (the
/// published entry gives it its id), as compact JSON text.
///
/// # Errors
/// As [`Definition::parse`].
pub fn canonical(json: &str) -> Result<String, QuestionnaireError> {
    Definition::parse(json)?;
    let mut j: Json = serde_json::from_str(json).map_err(|e| malformed(e.to_string()))?;
    canonical_json(&mut j);
    Ok(j.to_string())
}

/// Removes what a published Questionnaire does not keep: its `id` and `meta`.
pub fn canonical_json(j: &mut Json) {
    if let Some(o) = j.as_object_mut() {
        o.remove("id");
        o.remove("meta");
    }
}

/// The definition of a published questionnaire's body (`None` if the body is not one).
///
/// # Errors
/// As [`Definition::parse`].
pub fn definition_of(body: &Value) -> Option<Result<Definition, QuestionnaireError>> {
    body.get(DEFINITION)
        .and_then(Value::as_text)
        .map(Definition::parse)
}

/// The clinical flags the response `id` in `r` trips: its answers read against the
/// published questionnaire it names (`questionnaire-entry`), as `r` holds and can open
/// both. Empty when it is not such a response, or either cannot be read. The caller
/// decides who may see the response: a flag is part of it.
pub fn flags_of_response(r: &crate::record::Record, id: &crate::ids::EntryId) -> Vec<Tripped> {
    use crate::entry::Payload;
    let body_of = |id: &crate::ids::EntryId| match r.payload(id).as_deref() {
        Some(Payload::Create { body, .. } | Payload::Amend { body, .. }) => Some(body.clone()),
        _ => None,
    };
    let Some(body) = body_of(id) else {
        return Vec::new();
    };
    let Some(def_id) = body
        .get(DEFINITION_ENTRY)
        .and_then(Value::as_text)
        .and_then(|t| t.parse::<crate::ids::EntryId>().ok())
    else {
        return Vec::new();
    };
    let Some(Ok(def)) = body_of(&def_id).as_ref().and_then(definition_of) else {
        return Vec::new();
    };
    def.score(body.get("answers").unwrap_or(&Value::List(Vec::new())))
        .map(|s| s.flags)
        .unwrap_or_default()
}

/// How long before the end of an assignment's due day its reminder is given: two days, so
/// a questionnaire due on the 20th is reminded from the start of the 19th (UTC).
pub const DUE_NOTICE_MS: u64 = 2 * 86_400_000;

/// One assignment coming due (or overdue) for its owner.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DueReminder {
    /// The assignment (the task's item id).
    pub task: crate::ids::EntryId,
    /// Its current version.
    pub version: crate::ids::EntryId,
    /// The due date as written.
    pub due: String,
    /// When the reminder is given (ms since the epoch).
    pub at: crate::entry::Timestamp,
    /// Whether the due day is over.
    pub overdue: bool,
}

/// The end of a due date (`2026-12-20`: the start of the 21st, UTC) or the date-time itself,
/// in ms since the epoch.
fn due_end(due: &str) -> Option<u64> {
    let ms = match crate::schema::date_time_ms(due) {
        Some(ms) => ms,
        None if due.len() == 10 => {
            crate::schema::date_time_ms(&format!("{due}T00:00:00Z"))?.checked_add(86_400_000)?
        }
        None => return None,
    };
    u64::try_from(ms).ok()
}

/// The reminders of open questionnaire assignments in `state` (a viewer's fold: only what
/// they may see) owned by someone `owns` says the viewer acts as, given at `now`: from
/// [`DUE_NOTICE_MS`] before the end of the due day, for as long as the assignment is open.
/// Closed assignments and those without a due date that reads give none. Pure.
pub fn due_reminders(
    state: &crate::fold::State,
    now: crate::entry::Timestamp,
    owns: &dyn Fn(&crate::ids::ActorId) -> bool,
) -> Vec<DueReminder> {
    let mut out = Vec::new();
    for item in state.items.iter().filter(|i| {
        i.category == crate::category::Category::Tasks
            && i.body.get("kind").and_then(Value::as_text) == Some(TASK_KIND)
    }) {
        let text = |k: &str| item.body.get(k).and_then(Value::as_text);
        let open = text("status")
            .and_then(super::TaskStatus::parse)
            .is_some_and(|s| !s.is_closed());
        let owner = text("owner").and_then(|o| o.parse::<crate::ids::ActorId>().ok());
        let (true, Some(owner), Some(due)) = (open, owner, text("due")) else {
            continue;
        };
        let Some(end) = due_end(due) else { continue };
        let at = end.saturating_sub(DUE_NOTICE_MS);
        if !owns(&owner) || now < at {
            continue;
        }
        out.push(DueReminder {
            task: item.id,
            version: item.current,
            due: due.to_owned(),
            at,
            overdue: now >= end,
        });
    }
    out.sort_by_key(|a| (a.at, a.task));
    out
}

/// Checks a response body against its definition: the answers valid, and the stated
/// `score` and `band` those the rule gives. Returns what it scores.
///
/// # Errors
/// As [`Definition::score`], and [`QuestionnaireError::ScoreMismatch`],
/// [`QuestionnaireError::BandMismatch`].
pub fn check_response(def: &Definition, body: &Value) -> Result<Scored, QuestionnaireError> {
    let scored = def.score(body.get("answers").unwrap_or(&Value::List(Vec::new())))?;
    let stated = match body.get("score") {
        None => None,
        Some(Value::Int(n)) => Some(*n),
        Some(Value::Float(f)) if f.fract() == 0.0 && f.abs() < 1e15 => Some(*f as i64),
        Some(_) => {
            return Err(QuestionnaireError::ScoreMismatch {
                stated: None,
                computed: scored.score,
            })
        }
    };
    if stated != scored.score {
        return Err(QuestionnaireError::ScoreMismatch {
            stated,
            computed: scored.score,
        });
    }
    let band = body.get("band").and_then(Value::as_text).map(str::to_owned);
    if band != scored.band {
        return Err(QuestionnaireError::BandMismatch {
            stated: band,
            computed: scored.band,
        });
    }
    Ok(scored)
}

/// The schema's cross-field rules for `questionnaires`: a published questionnaire
/// (`definition`) is a valid definition and carries no answers, score, band or task; a
/// response's `band` and `questionnaire-entry` come with answers.
pub(crate) fn check_fields(
    map: &BTreeMap<String, Value>,
) -> Result<(), crate::schema::SchemaError> {
    let rule = |m: String| {
        Err(crate::schema::SchemaError::Rule(format!(
            "questionnaires: {m}"
        )))
    };
    if let Some(d) = map.get(DEFINITION).and_then(Value::as_text) {
        if let Err(e) = Definition::parse(d) {
            return rule(e.to_string());
        }
        for k in ["answers", "score", "band", DEFINITION_ENTRY, TASK] {
            if map.contains_key(k) {
                return rule(format!(
                    "a published questionnaire (`{DEFINITION}`) has no `{k}`"
                ));
            }
        }
        return Ok(());
    }
    if !map.contains_key("answers") {
        return rule(
            "a response needs `answers` (or publish a questionnaire with `definition`)".into(),
        );
    }
    Ok(())
}

/// The body of a response to `def` (published as version `entry`) with `answers` (linkId
/// and answer), completed at `completed` (RFC 3339), for the assigning `task` if any: the
/// answers checked and the score and band computed.
///
/// # Errors
/// As [`Definition::score`].
pub fn response_json(
    def: &Definition,
    entry: &crate::ids::EntryId,
    answers: &[(String, Value)],
    completed: &str,
    task: Option<&crate::ids::EntryId>,
) -> Result<Json, QuestionnaireError> {
    let list = Value::List(
        answers
            .iter()
            .map(|(q, a)| {
                let mut m = BTreeMap::new();
                m.insert("question".to_owned(), Value::Text(q.clone()));
                m.insert("answer".to_owned(), a.clone());
                Value::Map(m)
            })
            .collect(),
    );
    let scored = def.score(&list)?;
    let mut o = serde_json::Map::new();
    o.insert("questionnaire".into(), def.title.clone().into());
    o.insert(DEFINITION_ENTRY.into(), entry.to_string().into());
    o.insert("answers".into(), list.to_json());
    o.insert("completed".into(), completed.into());
    if let Some(s) = scored.score {
        o.insert("score".into(), s.into());
    }
    if let Some(b) = scored.band {
        o.insert("band".into(), b.into());
    }
    if let Some(t) = task {
        o.insert(TASK.into(), t.to_string().into());
    }
    Ok(Json::Object(o))
}

#[cfg(test)]
mod tests;
