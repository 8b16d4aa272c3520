//! Reading an entry body from the command line: `--FIELD VALUE` / `--FIELD=VALUE` pairs,
//! `--json FILE|-`, and `--file PATH` for attachments.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cophr_protocol::schema::{self, FieldType, DOCUMENT_MEDIA_TYPES, MAX_DOCUMENT};
use cophr_protocol::{Category, Value};

use crate::error::{CliError, Result};
use crate::home::read_limited;

/// Largest JSON body read.
const MAX_JSON_BODY: u64 = 16 * 1024 * 1024;

/// What the arguments after the category (or entry) said.
#[derive(Debug, Default)]
pub struct BodyArgs {
    /// `(field, value)` pairs, in order.
    pub pairs: Vec<(String, String)>,
    /// `--json FILE` (`-` for stdin).
    pub json: Option<String>,
    /// `--file PATH`.
    pub file: Option<PathBuf>,
    /// Global options written among the fields.
    pub home: Option<PathBuf>,
    /// `--record`.
    pub record: Option<String>,
    /// `--now`.
    pub now: Option<String>,
    /// `--device` (when the category has no `device` field).
    pub device: Option<String>,
    /// `--help` was among the fields.
    pub help: bool,
}

/// Parses the arguments after the category. `category` decides whether `--device` is a
/// field (wearables has one) or the global option; with no category yet, it is kept as a
/// field pair.
pub fn parse(args: &[String], category: Option<&Category>) -> Result<BodyArgs> {
    let is_field = |name: &str| match category {
        None => true,
        Some(c) => c.is_extension() || schema::schema(c).is_some_and(|s| s.field(name).is_some()),
    };
    let mut out = BodyArgs::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "-h" || arg == "--help" {
            out.help = true;
            continue;
        }
        let Some(flag) = arg.strip_prefix("--").filter(|f| !f.is_empty()) else {
            return Err(CliError::invalid(format!(
                "unexpected argument `{arg}`: give fields as --FIELD VALUE (run `cophr schema \
                 CATEGORY` to list a category's fields)"
            )));
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_owned(), v.to_owned()),
            None => {
                let Some(v) = args.get(i) else {
                    return Err(CliError::invalid(format!("--{flag} needs a value")));
                };
                if v.starts_with("--") && v.len() > 2 {
                    return Err(CliError::invalid(format!(
                        "--{flag} needs a value (write --{flag}=VALUE for a value that starts \
                         with --)"
                    )));
                }
                i += 1;
                (flag.to_owned(), v.clone())
            }
        };
        let name = name.replace('_', "-");
        let once = |slot: &mut Option<String>, v: String| -> Result<()> {
            if slot.replace(v).is_some() {
                return Err(CliError::invalid(format!(
                    "--{name} is given more than once"
                )));
            }
            Ok(())
        };
        match name.as_str() {
            "json" => once(&mut out.json, value)?,
            "file" => {
                if out.file.replace(PathBuf::from(value)).is_some() {
                    return Err(CliError::invalid("--file is given more than once"));
                }
            }
            "home" => out.home = Some(PathBuf::from(value)),
            "record" => out.record = Some(value),
            "now" => out.now = Some(value),
            "device" if !is_field("device") => out.device = Some(value),
            _ => out.pairs.push((name, value)),
        }
    }
    Ok(out)
}

/// Reads `--json FILE|-` as a JSON value.
pub fn read_json(source: &str) -> Result<serde_json::Value> {
    let bytes = if source == "-" {
        let buf = crate::output::read_stdin(MAX_JSON_BODY + 1)
            .map_err(|e| CliError::other(format!("cannot read standard input: {e}")))?;
        if buf.len() as u64 > MAX_JSON_BODY {
            return Err(CliError::invalid(format!(
                "the JSON body is more than {MAX_JSON_BODY} bytes"
            )));
        }
        buf
    } else {
        read_limited(&crate::output::resolve(Path::new(source)), MAX_JSON_BODY)?
    };
    let name = if source == "-" {
        "standard input"
    } else {
        source
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| CliError::invalid(format!("malformed JSON in {name}: {e}")))
}

/// Guesses an attachment's media type from its first bytes, then its extension.
fn media_type(path: &Path, bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"%PDF-") {
        return Some("application/pdf");
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some("image/jpeg");
    }
    if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        return Some("image/png");
    }
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "pdf" => Some("application/pdf"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        "png" => Some("image/png"),
        _ => None,
    }
}

/// Builds a body for `category` from the parsed arguments, merged over `base` (the current
/// version's body, for an amend; empty for a new entry).
pub fn body(
    category: &Category,
    ext: Option<&schema::ExtensionSchema>,
    args: &BodyArgs,
    base: &BTreeMap<String, Value>,
) -> Result<Value> {
    match ext {
        Some(x) => x.with_view(|s| body_in(category, Some(s), args, base)),
        None => body_in(category, schema::schema(category), args, base),
    }
}

/// [`body`] against a given schema (`None`: an extension with none defined).
fn body_in(
    category: &Category,
    s: Option<&schema::CategorySchema<'_>>,
    args: &BodyArgs,
    base: &BTreeMap<String, Value>,
) -> Result<Value> {
    if args.json.is_some() && (args.file.is_some() || !args.pairs.is_empty()) {
        return Err(CliError::invalid(
            "give the body either with --json or as --FIELD flags (and --file), not both",
        ));
    }
    if let Some(source) = &args.json {
        let mut json = read_json(source)?;
        let Some(obj) = json.as_object_mut() else {
            return Err(CliError::invalid(format!(
                "the JSON body for {category} must be an object of fields, e.g. {{\"{}\": …}}",
                s.and_then(|s| s.fields.first()).map_or("field", |f| f.name)
            )));
        };
        // Fields merge over the base; `null` removes a field.
        let mut merged: serde_json::Map<String, serde_json::Value> =
            base.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
        for (k, v) in std::mem::take(obj) {
            merged.insert(k, v);
        }
        return Ok(schema::body_from_json_in(
            category,
            s,
            &serde_json::Value::Object(merged),
        )?);
    }
    let mut prefilled = base.clone();
    for (name, _) in &args.pairs {
        prefilled.remove(name);
    }
    if let Some(path) = &args.file {
        let binary = s.and_then(|s| {
            s.fields
                .iter()
                .find(|f| matches!(f.ty, FieldType::Binary { .. }))
        });
        let Some(field) = binary else {
            return Err(CliError::invalid(format!(
                "{category} has no attachment field: --file is for documents"
            )));
        };
        let bytes = read_limited(&crate::output::resolve(path), MAX_DOCUMENT as u64)?;
        let given = |n: &str| args.pairs.iter().any(|(k, _)| k == n);
        if !given("media-type") {
            let mt = media_type(path, &bytes).ok_or_else(|| {
                CliError::invalid(format!(
                    "cannot tell the type of {}: give --media-type ({})",
                    path.display(),
                    DOCUMENT_MEDIA_TYPES.join(", ")
                ))
            })?;
            prefilled.insert("media-type".into(), Value::Text(mt.into()));
        }
        if !given("title") && !prefilled.contains_key("title") {
            if let Some(name) = path.file_name() {
                prefilled.insert("title".into(), Value::Text(name.to_string_lossy().into()));
            }
        }
        prefilled.insert(field.name.to_owned(), Value::Bytes(bytes));
    }
    if args.pairs.is_empty() && args.file.is_none() && base.is_empty() {
        let known = s.map(|s| s.field_names()).unwrap_or_else(|| "any".into());
        return Err(CliError::invalid(format!(
            "{category}: no fields given: give them as --FIELD VALUE (fields: {known}) or with \
             --json FILE"
        )));
    }
    Ok(schema::body_from_pairs_in(
        category,
        s,
        prefilled,
        &args.pairs,
    )?)
}

/// A short help text listing a category's fields (for `--help` among the fields).
pub fn fields_help(category: &Category) -> String {
    match schema::schema(category) {
        None => format!(
            "{category} is an extension category: any --FIELD VALUE pairs are kept as text\n"
        ),
        Some(s) => {
            let mut out = format!("{} ({}): give fields as --FIELD VALUE\n", s.title, category);
            for f in s.fields {
                out.push_str(&format!(
                    "  --{:<22} {}{}: {}\n",
                    f.name,
                    f.title,
                    if f.required { " (required)" } else { "" },
                    f.ty.describe()
                ));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn pairs_and_globals() {
        let c = Category::VitalSigns;
        let a = parse(
            &strings(&[
                "--systolic",
                "140",
                "--diastolic=90",
                "--now",
                "2026-01-01",
                "--device",
                "phone",
            ]),
            Some(&c),
        )
        .unwrap();
        assert_eq!(
            a.pairs,
            vec![
                ("systolic".into(), "140".into()),
                ("diastolic".into(), "90".into())
            ]
        );
        assert_eq!(a.now.as_deref(), Some("2026-01-01"));
        assert_eq!(a.device.as_deref(), Some("phone"));
        let w = parse(
            &strings(&["--device", "Fitbit"]),
            Some(&Category::Wearables),
        )
        .unwrap();
        assert_eq!(w.pairs, vec![("device".into(), "Fitbit".into())]);
        assert!(parse(&strings(&["loose"]), Some(&c)).is_err());
        assert!(parse(&strings(&["--systolic"]), Some(&c)).is_err());
        assert!(parse(&strings(&["--temperature=-1"]), Some(&c)).is_ok());
    }
}
