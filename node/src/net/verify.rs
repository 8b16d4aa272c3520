//! Decoding and signature checks for batches of received entries, spread over the
//! machine's cores.
//!
//! A replica pulling a record spends much of its time decoding entries and verifying their
//! signatures, while the serving peer waits for its next request; batches are decoded and
//! verified on up to [`MAX_THREADS`] threads at once.

use cophr_protocol::entry::{verify_batch, EntryError, SignedEntry, Verified};

/// Most threads one batch is verified on.
pub const MAX_THREADS: usize = 4;
/// Fewest entries worth a thread of their own.
const MIN_PER_THREAD: usize = 64;

/// Runs `f` on `items` split into consecutive chunks, one thread per chunk (as many as the
/// machine has cores, at most [`MAX_THREADS`]), and joins the results in order. On
/// failure, the index (in `items`) of the first bad item found.
fn chunked<I: Send, O: Send>(
    items: Vec<I>,
    f: impl Fn(Vec<I>) -> Result<Vec<O>, (usize, EntryError)> + Sync,
) -> Result<Vec<O>, (usize, EntryError)> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores
        .min(MAX_THREADS)
        .min(items.len() / MIN_PER_THREAD)
        .max(1);
    if threads == 1 {
        return f(items);
    }
    let per = items.len().div_ceil(threads);
    let mut chunks = Vec::with_capacity(threads);
    let mut rest = items;
    while rest.len() > per {
        let tail = rest.split_off(per);
        chunks.push(rest);
        rest = tail;
    }
    chunks.push(rest);
    let f = &f;
    let results: Vec<_> = std::thread::scope(|s| {
        let running: Vec<_> = chunks.into_iter().map(|c| s.spawn(move || f(c))).collect();
        running.into_iter().map(|h| h.join()).collect()
    });
    let mut out = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(Ok(v)) => out.extend(v),
            Ok(Err((j, e))) => return Err((i * per + j, e)),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    Ok(out)
}

/// Decodes (with every check of [`SignedEntry::decode`]) and verifies entries received as
/// bytes, on several threads when there are many, keeping their order. On failure, the
/// index of the first bad entry found (undecodable or badly signed). The bytes become the
/// entries' own (not copied).
pub fn decode_verify_all<B: Into<Vec<u8>> + Send>(
    entries: Vec<B>,
) -> Result<Vec<Verified>, (usize, EntryError)> {
    chunked(entries, |chunk| verify_batch(decode_chunk(chunk)?))
}

/// Decodes entries received as bytes (every check of [`SignedEntry::decode`], signatures
/// not yet checked: [`verify_all`]), on several threads when there are many, keeping their
/// order. On failure, the index of the first bad entry found.
pub fn decode_all<B: Into<Vec<u8>> + Send>(
    entries: Vec<B>,
) -> Result<Vec<SignedEntry>, (usize, EntryError)> {
    chunked(entries, decode_chunk)
}

/// Verifies decoded entries' signatures in batches, on several threads when there are
/// many, keeping their order. On failure, the index of the first badly signed entry.
pub fn verify_all(entries: Vec<SignedEntry>) -> Result<Vec<Verified>, (usize, EntryError)> {
    chunked(entries, verify_batch)
}

fn decode_chunk<B: Into<Vec<u8>>>(chunk: Vec<B>) -> Result<Vec<SignedEntry>, (usize, EntryError)> {
    chunk
        .into_iter()
        .enumerate()
        .map(|(i, b)| SignedEntry::decode_vec(b.into()).map_err(|e| (i, e)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cophr_protocol::testkit::{bp, Fixture};
    use cophr_protocol::{Category, Payload};

    fn entries(n: u64) -> (Fixture, Vec<SignedEntry>) {
        let f = Fixture::new(3, "George");
        let es = (0..n)
            .map(|i| {
                f.record
                    .next_entry(
                        &f.patient.actor(),
                        Payload::Create {
                            category: Category::VitalSigns,
                            body: bp(100 + i as i64, 70),
                        },
                        None,
                        f.now + i,
                        None,
                    )
                    .sign(&f.patient)
            })
            .collect();
        (f, es)
    }

    #[test]
    fn received_bytes_are_decoded_and_verified_in_order_and_the_first_bad_one_is_named() {
        let (_f, mut es) = entries(300);
        let ids: Vec<_> = es.iter().map(SignedEntry::id).collect();
        let bytes = |es: &[SignedEntry]| es.iter().map(|e| e.bytes().to_vec()).collect();
        let ok = decode_verify_all(bytes(&es)).expect("all good");
        assert_eq!(ok.iter().map(Verified::id).collect::<Vec<_>>(), ids);
        let two_steps = verify_all(decode_all(bytes(&es)).expect("decodes")).expect("verifies");
        assert_eq!(two_steps, ok);
        // A badly signed entry in the last chunk, and bytes that do not decode before it.
        let other = cophr_protocol::testkit::key(9, "Mallory");
        es[250] = es[250].entry().clone().sign(&other);
        assert_eq!(
            decode_verify_all(bytes(&es)).map(|_| ()).unwrap_err().0,
            250
        );
        let mut raw: Vec<Vec<u8>> = bytes(&es);
        raw[200].truncate(10);
        match decode_verify_all(raw) {
            Err((200, EntryError::Malformed(_))) => {}
            other => panic!(
                "expected a decode error at 200, got {:?}",
                other.map(|_| ())
            ),
        }
    }
}
