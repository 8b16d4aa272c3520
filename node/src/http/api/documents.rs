//! Documents stored apart (`docs/documents.md`): a document's file, streamed as it is read
//! from the blob store, every stored byte checked against its hash and every segment opened
//! on the way; never whole in memory. Audited as a view of the entry naming it.

use std::io::Read;

use axum::body::Body;
use cophr_protocol::blob::DocumentFile;
use cophr_protocol::schema::FieldType;

use super::*;

#[derive(Debug, Deserialize)]
pub(super) struct DocumentQuery {
    /// `inline` to show it in the page (images and PDFs), else a download.
    disposition: Option<String>,
}

/// Bytes read from the blob store per piece of the response.
const PIECE: usize = 64 * 1024;
/// Pieces read ahead of the client, at most.
const AHEAD: usize = 4;

/// A file name for a title and media type: characters a header and a file system take.
fn file_name(title: &str, media_type: &str) -> String {
    let mut name: String = title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim()
        .to_owned();
    if name.is_empty() {
        name = "document".into();
    }
    let ext = match media_type {
        "application/pdf" => "pdf",
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "application/dicom" => "dcm",
        "application/vnd.oasis.opendocument.text" => "odt",
        "application/vnd.oasis.opendocument.spreadsheet" => "ods",
        "application/vnd.oasis.opendocument.presentation" => "odp",
        "application/vnd.oasis.opendocument.graphics" => "odg",
        "text/plain" => "txt",
        _ => "",
    };
    if !ext.is_empty() && !name.to_ascii_lowercase().ends_with(&format!(".{ext}")) {
        name = format!("{name}.{ext}");
    }
    name
}

/// `GET /records/{rid}/entries/{eid}/document`: the file of a document (the version in
/// effect of the item `eid` belongs to, or the version `eid` names).
pub(super) async fn get_document(
    State(st): State<AppState>,
    Path((rid, eid)): Path<(String, String)>,
    axum::extract::Query(q): axum::extract::Query<DocumentQuery>,
) -> Result<Response, ApiError> {
    let record = parse_record(&rid)?;
    let entry = parse_entry(&eid)?;
    let inline = match q.disposition.as_deref() {
        None | Some("attachment") => false,
        Some("inline") => true,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "disposition is inline or attachment, not {other}"
            )))
        }
    };
    let (file, media_type, title) = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            st.read(now, |rd| {
                rd.record(&record, |r, seen| {
                    let v = viewer(r, &me, now)?;
                    visible(r, &v, &entry)?;
                    let version = fold::current(r, &v)
                        .items
                        .iter()
                        .find(|i| i.id == entry)
                        .map_or(entry, |i| i.current);
                    let body = match r.payload(&version).as_deref() {
                        Some(Payload::Create { body, .. } | Payload::Amend { body, .. }) => {
                            body.clone()
                        }
                        _ => {
                            return Err(ApiError::not_found(format!(
                                "{version} is not a document you can read"
                            )))
                        }
                    };
                    let field = r
                        .category_of(&version)
                        .and_then(schema::schema)
                        .and_then(|s| s.fields.iter().find(|f| f.ty == FieldType::Document))
                        .and_then(|f| body.get(f.name))
                        .ok_or_else(|| {
                            ApiError::not_found(format!(
                                "{version} has no document stored apart (a small file kept \
                                 in the entry is in its body)"
                            ))
                        })?;
                    let file = DocumentFile::from_value(field)
                        .map_err(|e| ApiError::unprocessable(format!("{version}: {e}")))?;
                    let text = |k: &str| match body.get(k) {
                        Some(cophr_protocol::Value::Text(t)) => t.clone(),
                        _ => String::new(),
                    };
                    seen.add([version]);
                    seen.detail(format!("document (API): {}", version.short()));
                    Ok((file, text("media-type"), text("title")))
                })?
            })
        })
        .await?;
    let store = st.store().clone();
    if !store.has_document(&file.blob_ref()) {
        return Err(ApiError::not_found(
            "the file is not held on this node yet: it is fetched from a replica that holds \
             it when this node next syncs",
        ));
    }
    let size = file.size;
    let reader = store
        .open_document(&file)
        .map_err(|e| ApiError::internal(format!("the file could not be read: {e}")))?;
    // A blocking thread reads and opens the file piece by piece, a few pieces ahead of the
    // client; a piece that does not check out ends the response with an error (the client
    // sees a body shorter than its length, never wrong bytes).
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(AHEAD);
    tokio::task::spawn_blocking(move || {
        let mut reader = reader;
        loop {
            let mut piece = vec![0u8; PIECE];
            let n = match reader.read(&mut piece) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "a document did not check out while served");
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            };
            piece.truncate(n);
            if tx.blocking_send(Ok(piece)).is_err() {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|piece| (piece, rx))
    });
    let disposition = format!(
        "{}; filename=\"{}\"",
        if inline { "inline" } else { "attachment" },
        file_name(&title, &media_type)
    );
    let media_type = if media_type.is_empty() {
        "application/octet-stream".to_owned()
    } else {
        media_type
    };
    Ok((
        [
            (header::CONTENT_TYPE, media_type),
            (header::CONTENT_LENGTH, size.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
