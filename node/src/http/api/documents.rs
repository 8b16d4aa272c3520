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

/// `GET /records/{rid}/entries/{eid}/document`: the file of a document (the version in
/// effect of the item `eid` belongs to, or the version `eid` names).
pub(super) async fn get_document(
    State(st): State<AppState>,
    Path((rid, eid)): Path<(String, String)>,
    super::QueryParams(q): super::QueryParams<DocumentQuery>,
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
    st.ensure_document(record, file.blob_ref())
        .await
        .map_err(missing)?;
    let store = st.store().clone();
    let size = file.size;
    let reader = store
        .open_document(&file)
        .map_err(|e| ApiError::internal(format!("the file could not be read: {e}")))?;
    let body = stream_document(reader);
    let disposition = format!(
        "{}; filename=\"{}\"",
        if inline { "inline" } else { "attachment" },
        crate::store::document_file_name(&title, &media_type)
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
        body,
    )
        .into_response())
}

/// A document that could not be served: not found without a network node, 503 when its
/// record's peers could not give it now.
pub(crate) fn missing(m: crate::http::DocumentMissing) -> ApiError {
    match m {
        crate::http::DocumentMissing::NotHeld | crate::http::DocumentMissing::NoPeer => {
            ApiError::not_found(m.message())
        }
        crate::http::DocumentMissing::Unavailable(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "document_unavailable",
            m.message(),
        ),
    }
}

/// A document's bytes as a response body: a blocking thread reads (and so checks and
/// opens) the file piece by piece, a few pieces ahead of the client; a piece that does not
/// check out ends the response with an error (the client sees a body shorter than its
/// length, never wrong bytes).
pub(crate) fn stream_document(reader: impl Read + Send + 'static) -> Body {
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
    Body::from_stream(stream)
}

#[derive(Debug, Deserialize)]
pub(super) struct NewDocument {
    title: String,
    #[serde(rename = "media-type")]
    media_type: Option<String>,
    date: Option<String>,
    description: Option<String>,
}

/// Chunks of a request body on their way to a blocking import.
const UPLOAD_QUEUE: usize = 8;

/// Reads a request body's chunks, sent from the async side, on a blocking thread.
pub(crate) struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Result<axum::body::Bytes, String>>,
    buf: axum::body::Bytes,
}

impl ChannelReader {
    /// Reads what arrives on `rx` (an `Err` is the body failing).
    pub(crate) fn new(
        rx: tokio::sync::mpsc::Receiver<Result<axum::body::Bytes, String>>,
    ) -> ChannelReader {
        ChannelReader {
            rx,
            buf: axum::body::Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        e,
                    ))
                }
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
        Ok(n)
    }
}

/// An upload's length (`Content-Length`, required: the file is sealed in segments counted
/// from it), at most [`MAX_DOCUMENT_BYTES`] (else 413).
///
/// [`MAX_DOCUMENT_BYTES`]: cophr_protocol::blob::MAX_DOCUMENT_BYTES
pub(crate) fn upload_size(headers: &axum::http::HeaderMap) -> Result<u64, ApiError> {
    use cophr_protocol::blob::MAX_DOCUMENT_BYTES;
    let size: u64 = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::LENGTH_REQUIRED,
                "length_required",
                "give the file's length (Content-Length)",
            )
        })?;
    if size > MAX_DOCUMENT_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("a document may be at most {MAX_DOCUMENT_BYTES} bytes; this one is {size}"),
        ));
    }
    Ok(size)
}

use crate::store::{import_recognised, Received, Upload};

/// The error code of a file whose content is of another type than the one declared.
const DECLARED_TYPE: &str = "declared_type_differs";

impl From<Upload> for ApiError {
    fn from(u: Upload) -> Self {
        match u {
            Upload::Type => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "not a file of an accepted type ({}), as far as its content shows",
                    schema::DOCUMENT_MEDIA_TYPES.join(", ")
                ),
            ),
            Upload::Declared(declared, found) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                DECLARED_TYPE,
                format!("the file is {found}, not {declared}"),
            ),
            Upload::Failed(e) => ApiError::invalid(format!("the file was not stored: {e}")),
            Upload::Full(e) => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                format!("the file was not stored: {e}"),
            ),
        }
    }
}

/// Receives a request body of `size` bytes (checked against [`MAX_DOCUMENT_BYTES`] by the
/// caller) as a document: recognised by its content (a `declared` type must agree), sealed
/// as it streams into the blob store, never whole in memory. No entry names it yet.
///
/// [`MAX_DOCUMENT_BYTES`]: cophr_protocol::blob::MAX_DOCUMENT_BYTES
pub(crate) async fn receive(
    st: &AppState,
    body: Body,
    size: u64,
    drain: Drain,
    declared: Option<String>,
) -> Result<Received, ApiError> {
    use cophr_protocol::schema::SNIFF_BYTES;
    use futures::StreamExt;
    // Room for the sealed file on the disk, before a byte of it is read: a client that
    // waits for `100 Continue` then never sends a file that cannot be kept.
    let room = {
        let store = st.store().clone();
        st.blocking(move |_| {
            store
                .room_for(
                    cophr_protocol::blob::sealed_len(size),
                    crate::store::Room::Write,
                )
                .map_err(|e| ApiError::from(Upload::from(e)))
        })
        .await
    };
    if let Err(e) = room {
        return Err(refused(body, drain, e).await);
    }
    let (tx, rx) = tokio::sync::mpsc::channel(UPLOAD_QUEUE);
    let store = st.store().clone();
    let import = tokio::task::spawn_blocking(move || {
        let mut reader = ChannelReader {
            rx,
            buf: axum::body::Bytes::new(),
        };
        let mut head = Vec::with_capacity(SNIFF_BYTES);
        (&mut reader)
            .take(SNIFF_BYTES as u64)
            .read_to_end(&mut head)
            .map_err(|e| Upload::Failed(e.to_string()))?;
        import_recognised(&store, head, reader, size, declared)
    });
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| e.to_string());
        let failed = chunk.is_err();
        if tx.send(chunk).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    let result = match import.await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) => Err(ApiError::internal(format!("the upload failed: {e}"))),
    };
    if result.is_err() {
        drain.read(chunks).await;
    }
    result
}

/// The most of a refused upload's body the node still reads, and discards, before it
/// answers (1 MiB). A client that sends its whole body before it reads the answer (one
/// that does not wait for `100 Continue`) then gets the answer, not a broken pipe; a
/// larger body is answered at once and its connection closed.
pub const DRAIN_BYTES: u64 = 1 << 20;

/// Whether what is left of a refused upload's body is read before the answer: only when
/// the body is at most [`DRAIN_BYTES`] and the client sends it unasked. A client that
/// waits for `100 Continue` is answered at once, never asked for its body.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Drain(bool);

impl Drain {
    /// For an upload of `size` bytes with these request headers.
    pub(crate) fn of(headers: &axum::http::HeaderMap, size: u64) -> Drain {
        let waits = headers
            .get(header::EXPECT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
        Drain(!waits && size <= DRAIN_BYTES)
    }

    async fn read(self, mut chunks: axum::body::BodyDataStream) {
        use futures::StreamExt;
        if !self.0 {
            return;
        }
        let mut read = 0u64;
        while let Some(Ok(chunk)) = chunks.next().await {
            read = read.saturating_add(chunk.len() as u64);
            if read > DRAIN_BYTES {
                return;
            }
        }
    }
}

/// Reads and discards what is left of a refused upload's `body`, as `drain` says, and
/// returns `err`, the refusal.
pub(crate) async fn refused(body: Body, drain: Drain, err: ApiError) -> ApiError {
    drain.read(body.into_data_stream()).await;
    err
}

/// Stores a document held in memory (a FHIR Binary's or attachment's decoded data), as
/// [`receive`] does a streamed one. Blocking.
pub(crate) fn import_bytes(
    store: &crate::store::Store,
    bytes: &[u8],
    declared: Option<String>,
) -> Result<Received, ApiError> {
    use cophr_protocol::schema::SNIFF_BYTES;
    let cut = bytes.len().min(SNIFF_BYTES);
    Ok(import_recognised(
        store,
        bytes[..cut].to_vec(),
        &bytes[cut..],
        bytes.len() as u64,
        declared,
    )?)
}

/// `POST /records/{rid}/documents?title=…[&media-type=…&date=…&description=…]`, the file as
/// the body (its length given): the file is sealed as it streams into the blob store
/// (never whole in memory), its type recognised from its content (a declared one must
/// agree), then a documents entry naming it is written.
pub(super) async fn add_document(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    super::QueryParams(q): super::QueryParams<NewDocument>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let size = upload_size(&headers)?;
    let drain = Drain::of(&headers, size);
    let category = Category::Documents;
    let mut fields = BTreeMap::new();
    fields.insert("title".to_owned(), cophr_protocol::Value::Text(q.title));
    if let Some(d) = q.date {
        fields.insert("date".to_owned(), cophr_protocol::Value::Text(d));
    }
    if let Some(d) = q.description {
        fields.insert("description".to_owned(), cophr_protocol::Value::Text(d));
    }
    // The fields are checked before a byte is stored (with a stand-in for the file).
    let mut check = fields.clone();
    check.insert(
        "media-type".to_owned(),
        cophr_protocol::Value::Text("application/pdf".into()),
    );
    check.insert(
        "file".to_owned(),
        DocumentFile {
            hash: cophr_protocol::blob::BlobHash::of(b""),
            size,
            key: None,
        }
        .to_value(),
    );
    let checked = async {
        let record = parse_record(&rid)?;
        schema::validate(&category, &cophr_protocol::Value::Map(check))
            .map_err(|e| ApiError::unprocessable(format!("{category}: {e}")))?;
        st.blocking(move |st| held(st, &record)).await?;
        Ok(record)
    }
    .await;
    let record = match checked {
        Ok(record) => record,
        Err(e) => return Err(refused(body, drain, e).await),
    };

    let Received {
        file,
        media_type: found,
        dicom,
    } = receive(&st, body, size, drain, q.media_type.clone())
        .await
        .map_err(|e| {
            // The content against the `media-type` parameter: a rule the OpenAPI document
            // cannot state, answered 409 as it documents.
            if e.code == DECLARED_TYPE {
                ApiError::new(StatusCode::CONFLICT, e.code, e.message)
            } else {
                e
            }
        })?;
    fields.insert(
        "media-type".to_owned(),
        cophr_protocol::Value::Text(found.to_owned()),
    );
    fields.insert("file".to_owned(), file.to_value());
    if let Some(h) = dicom {
        h.fill(&mut fields);
    }
    let body = cophr_protocol::Value::Map(fields);
    let summary = schema::summary(&category, &body);
    let id = st
        .blocking(move |st| {
            Ok(st
                .session()
                .write(&record, Payload::Create { category, body }, st.now())?)
        })
        .await?;
    st.changed(record).await;
    Ok(created(json!({
        "id": id,
        "record": record,
        "category": "documents",
        "summary": summary,
        "media-type": found,
        "size": size,
    })))
}
