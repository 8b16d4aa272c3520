//! What a DICOM file says it holds — the patient named in it, the study, the modality and
//! the study's date — read from its header with the `dicom-object` crate (never parsed by
//! hand), to be shown beside the document. Only the header is read: reading stops at the
//! pixel data, and at most [`MAX_HEADER_BYTES`] of the file are given.
//!
//! **Bounded before parsed.** The parser allocates (and zeroes) each element's declared
//! length before reading it, so a file declaring a 4 GiB element in a few bytes would make
//! it take gigabytes. So first every element header up to the pixel data is decoded with
//! the same crates' own decoder (`dicom-parser`'s `StatefulDecoder`, headers only: no value
//! is allocated) and each declared length checked against the bytes that remain; only a
//! file whose every length fits is parsed. Tested with every byte of a real file altered.

use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::OpenFileOptions;

/// The most of a DICOM file's first bytes read for its header.
pub const MAX_HEADER_BYTES: usize = 1 << 20;

/// Longest text kept of one header field.
const MAX_FIELD: usize = 200;

/// What a DICOM file's header says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DicomHeader {
    /// The patient named in the file, as "Given Family".
    pub patient: Option<String>,
    /// The study's description.
    pub study: Option<String>,
    /// The modality (CT, MR, US, …).
    pub modality: Option<String>,
    /// The study's date, YYYY-MM-DD.
    pub date: Option<String>,
}

impl DicomHeader {
    /// The header of a DICOM file from its first bytes (preamble included), or `None` if
    /// they do not read as one (or are cut before the fields shown).
    pub fn read(first: &[u8]) -> Option<DicomHeader> {
        let first = &first[..first.len().min(MAX_HEADER_BYTES)];
        lengths_fit(first)?;
        let obj = OpenFileOptions::new()
            .read_preamble(ReadPreamble::Always)
            .read_until(tags::PIXEL_DATA)
            .from_reader(first)
            .ok()?;
        let text = |tag| {
            obj.element(tag)
                .ok()
                .and_then(|e| e.to_str().ok().map(|s| clean(&s)))
                .filter(|s| !s.is_empty())
        };
        Some(DicomHeader {
            patient: text(tags::PATIENT_NAME).map(|n| person_name(&n)),
            study: text(tags::STUDY_DESCRIPTION),
            modality: text(tags::MODALITY),
            date: text(tags::STUDY_DATE).and_then(|d| date(&d)),
        })
    }
}

impl DicomHeader {
    /// Adds what the header says to a documents body: `dicom-patient`, `dicom-study`,
    /// `dicom-modality`, and the study's date as the document's `date` unless one is given.
    pub fn fill(&self, body: &mut std::collections::BTreeMap<String, cophr_protocol::Value>) {
        use cophr_protocol::Value;
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                body.entry(k.to_owned())
                    .or_insert_with(|| Value::Text(v.clone()));
            }
        };
        put("dicom-patient", &self.patient);
        put("dicom-study", &self.study);
        put("dicom-modality", &self.modality);
        put("date", &self.date);
    }
}

/// Whether every element up to the pixel data declares a length within the bytes given
/// (see the module docs), read with the crates' header decoder only.
fn lengths_fit(first: &[u8]) -> Option<()> {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    use dicom_core::VR;
    use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
    use dicom_parser::stateful::decode::{StatefulDecode, StatefulDecoder};
    use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

    if first.get(128..132) != Some(b"DICM".as_slice()) {
        return None;
    }
    let body = &first[132..];
    // The file meta group: explicit VR little endian; its group length element first, then
    // elements until that many bytes are read — exactly as the parser reads it, so both
    // find the data set at the same place. Every length defined and within the file.
    let explicit =
        TransferSyntaxRegistry.get(dicom_dictionary_std::uids::EXPLICIT_VR_LITTLE_ENDIAN)?;
    let mut meta = StatefulDecoder::new_with_ts(body, explicit, 0).ok()?;
    let h = meta.decode_header().ok()?;
    if h.tag != tags::FILE_META_INFORMATION_GROUP_LENGTH || h.vr != VR::UL || h.len.get() != Some(4)
    {
        return None;
    }
    let group_length = u64::from(meta.read_value(&h).ok()?.to_int::<u32>().ok()?);
    let start = meta.position();
    let mut syntax = None;
    while meta.position() - start < group_length {
        let h = meta.decode_header().ok()?;
        let len = h.len.get()?;
        if u64::from(len) > (body.len() as u64).checked_sub(meta.position())? {
            return None;
        }
        if fixed_size(h.vr).is_some_and(|n| len % n != 0) {
            return None;
        }
        if h.tag == tags::TRANSFER_SYNTAX_UID && h.vr == VR::UI && len <= 64 {
            let v = meta.read_value(&h).ok()?;
            syntax = Some(v.to_str().trim_end_matches(['\0', ' ']).to_owned());
        } else {
            meta.skip_bytes(len).ok()?;
        }
    }
    let meta_end = meta.position();
    let syntax = syntax?;
    let ts = TransferSyntaxRegistry.get(&syntax)?;
    if !ts.can_decode_dataset() {
        return None;
    }
    let implicit = syntax == dicom_dictionary_std::uids::IMPLICIT_VR_LITTLE_ENDIAN;
    // The data set, up to the pixel data: sequences and items are entered (their elements
    // are checked too), every other value skipped.
    let rest = body.get(usize::try_from(meta_end).ok()?..)?;
    let mut data = StatefulDecoder::new_with_ts(rest, ts, 0).ok()?;
    let dictionary = dicom_dictionary_std::StandardDataDictionary;
    while data.position() < rest.len() as u64 {
        let h = data.decode_header().ok()?;
        if h.tag == tags::PIXEL_DATA {
            break;
        }
        // In an explicit-VR file, an element of unknown type that is, or may be, a
        // sequence is read by the parser as implicit VR inside: refused rather than
        // followed differently.
        if !implicit
            && h.vr == VR::UN
            && (h.len.get().is_none()
                || dictionary
                    .by_tag(h.tag)
                    .is_some_and(|e| e.vr() == VirtualVr::Exact(VR::SQ)))
        {
            return None;
        }
        let Some(len) = h.len.get() else {
            continue; // undefined length: a sequence or item whose elements follow
        };
        if u64::from(len) > (rest.len() as u64).checked_sub(data.position())? {
            return None;
        }
        // The type the parser will read the value as (the dictionary's, for implicit VR).
        let vr = match h.vr {
            VR::UN if implicit => match dictionary.by_tag(h.tag).map(|e| e.vr()) {
                Some(VirtualVr::Exact(vr)) => vr,
                _ => VR::UN,
            },
            vr => vr,
        };
        // A value of fixed-size numbers whose length is not a whole number of them would
        // be read short by the parser, and everything after it misread.
        if fixed_size(vr).is_some_and(|n| len % n != 0) {
            return None;
        }
        if vr != VR::SQ && h.tag.group() != 0xFFFE {
            data.skip_bytes(len).ok()?;
        }
    }
    Some(())
}

/// The size of one number of a fixed-size value type.
fn fixed_size(vr: dicom_core::VR) -> Option<u32> {
    use dicom_core::VR;
    match vr {
        VR::SS | VR::US | VR::OW => Some(2),
        VR::SL | VR::UL | VR::FL | VR::AT | VR::OF | VR::OL => Some(4),
        VR::FD | VR::OD | VR::OV | VR::SV | VR::UV => Some(8),
        _ => None,
    }
}

/// Printable text, one line, bounded.
fn clean(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let t = t.trim();
    match t.char_indices().nth(MAX_FIELD) {
        Some((i, _)) => t[..i].to_owned(),
        None => t.to_owned(),
    }
}

/// A DICOM person name (`Family^Given^Middle^Prefix^Suffix`) as people write it.
fn person_name(pn: &str) -> String {
    let parts: Vec<&str> = pn
        .split('=')
        .next()
        .unwrap_or("")
        .split('^')
        .map(str::trim)
        .collect();
    let pick = |i: usize| parts.get(i).copied().filter(|p| !p.is_empty());
    [pick(3), pick(1), pick(2), pick(0), pick(4)]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A DICOM date (`YYYYMMDD`) as YYYY-MM-DD.
fn date(d: &str) -> Option<String> {
    let d = d.trim();
    (d.len() == 8 && d.bytes().all(|c| c.is_ascii_digit()))
        .then(|| format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &[u8] = include_bytes!("../../tests/data/ct-head.dcm");

    #[test]
    fn a_dicom_files_header_names_its_patient_study_and_modality() {
        let h = DicomHeader::read(CT).expect("a DICOM header");
        assert_eq!(h.patient.as_deref(), Some("George Jones"));
        assert_eq!(h.study.as_deref(), Some("CT head without contrast"));
        assert_eq!(h.modality.as_deref(), Some("CT"));
        assert_eq!(h.date.as_deref(), Some("2026-11-20"));
    }

    #[test]
    fn anything_else_reads_as_no_header_and_never_panics() {
        assert_eq!(DicomHeader::read(b""), None);
        assert_eq!(DicomHeader::read(b"%PDF-1.7"), None);
        // Cut anywhere, or any byte changed: no panic (a header or none).
        for cut in 0..CT.len() {
            let _ = DicomHeader::read(&CT[..cut]);
        }
        for i in 0..CT.len() {
            let mut b = CT.to_vec();
            b[i] ^= 0xA5;
            let _ = DicomHeader::read(&b);
        }
        assert_eq!(person_name("Jones^George^A^Dr"), "Dr George A Jones");
    }

    /// Found by fuzzing (`dicom_header`): a transfer syntax element of the wrong type once
    /// made the length check's subtraction overflow (a panic). A header or none, never that.
    #[test]
    fn a_misshapen_meta_group_found_by_fuzzing_reads_as_none() {
        let mut file = vec![0u8; 128];
        file.extend_from_slice(b"DICM");
        file.extend_from_slice(&[
            0x02, 0x00, 0x10, 0x00, 0x41, 0x54, 0x0d, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
            0x00, 0x00, 0x00, 0x00, 0xc4, 0x00, 0x02, 0x00, 0x81, 0x02, 0x00, 0x00, 0x00, 0x54,
            0x54, 0x54, 0x54, 0x54,
        ]);
        assert_eq!(DicomHeader::read(&file), None);
    }

    /// An element declaring far more bytes than the file has is refused before the parser
    /// sees it (the parser would allocate and zero the declared length first: ~2 GiB for
    /// some single-byte changes of this 572-byte file).
    #[test]
    fn a_declared_length_beyond_the_file_is_refused_before_parsing() {
        assert_eq!(lengths_fit(CT), Some(()));
        // The study description's length (explicit VR LO: a 2-byte length after the VR).
        let at = CT
            .windows(4)
            .position(|w| w == [0x08, 0x00, 0x30, 0x10])
            .expect("the study description's tag");
        let mut long = CT.to_vec();
        long[at + 6] = 0xFF;
        long[at + 7] = 0xFF;
        assert_eq!(lengths_fit(&long), None);
        assert_eq!(DicomHeader::read(&long), None);
        // The meta group's own lengths too (the transfer syntax's, say).
        let at = CT
            .windows(4)
            .position(|w| w == [0x02, 0x00, 0x10, 0x00])
            .expect("the transfer syntax's tag");
        let mut long = CT.to_vec();
        long[at + 6] = 0xFF;
        long[at + 7] = 0xFF;
        assert_eq!(lengths_fit(&long), None);
        assert_eq!(date("2026112"), None);
    }
}
