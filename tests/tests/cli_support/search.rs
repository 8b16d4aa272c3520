//! Searching what a node keeps for plaintext: every file under a directory, and a running
//! process's memory (its anonymous mappings: heap, stacks, and allocations; file-backed
//! mappings are skipped, since the program's own text holds example strings).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use memchr::memmem;

/// For each of `needles`, the times it occurs in the files under `dir` (recursively).
pub fn in_files(dir: &Path, needles: &[&str]) -> Vec<usize> {
    let bytes: Vec<&[u8]> = needles.iter().map(|n| n.as_bytes()).collect();
    bytes_in_files(dir, &bytes)
}

/// For each of `needles` (any bytes), the times it occurs in the files under `dir`
/// (recursively).
pub fn bytes_in_files(dir: &Path, needles: &[&[u8]]) -> Vec<usize> {
    let mut found = vec![0; needles.len()];
    let Ok(list) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in list.flatten() {
        let path = e.path();
        let more = if path.is_dir() {
            bytes_in_files(&path, needles)
        } else if let Ok(bytes) = std::fs::read(&path) {
            needles
                .iter()
                .map(|n| memmem::find_iter(&bytes, n).count())
                .collect()
        } else {
            continue;
        };
        for (f, m) in found.iter_mut().zip(more) {
            *f += m;
        }
    }
    found
}

/// For each of `needles`, the times it occurs in the anonymous memory of process `pid`
/// (read through `/proc/PID/mem`; panics if it cannot be read at all, so a search never
/// passes by not looking).
pub fn in_memory(pid: u32, needles: &[&str]) -> Vec<usize> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))
        .unwrap_or_else(|e| panic!("cannot read the memory map of process {pid}: {e}"));
    // Each mapping's header line, and whether any of it is resident (untouched
    // reservations read as zeros: skipped).
    let mut maps: Vec<(&str, bool)> = Vec::new();
    for line in smaps.lines() {
        if let Some(kb) = line.strip_prefix("Rss:") {
            if let Some(last) = maps.last_mut() {
                last.1 = kb.trim().trim_end_matches("kB").trim() != "0";
            }
        } else if line
            .split_whitespace()
            .next()
            .is_some_and(|f| f.contains('-') && !f.ends_with(':'))
        {
            maps.push((line, false));
        }
    }
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem"))
        .unwrap_or_else(|e| panic!("cannot open the memory of process {pid}: {e}"));
    let longest = needles.iter().map(|n| n.len()).max().unwrap_or(0);
    let mut found = vec![0; needles.len()];
    let mut read_any = 0u64;
    for (line, resident) in maps {
        if !resident {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else {
            continue;
        };
        // offset, device, inode, then the path (absent for anonymous memory).
        let path = parts.nth(3).unwrap_or("");
        let anonymous = path.is_empty() || path == "[heap]" || path.starts_with("[stack");
        if !perms.starts_with('r') || !anonymous {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        // Chunks overlapping by the longest needle; a match is counted in the chunk it
        // starts in.
        const CHUNK: u64 = 4 << 20;
        let mut buf = Vec::new();
        let mut at = start;
        while at < end {
            let len = CHUNK.min(end - at) as usize;
            let want = (len + longest).min((end - at) as usize);
            buf.resize(want, 0);
            if mem.seek(SeekFrom::Start(at)).is_err() {
                break;
            }
            let Ok(n) = mem.read(&mut buf[..want]) else {
                break;
            };
            if n == 0 {
                break;
            }
            read_any += n as u64;
            for (i, needle) in needles.iter().enumerate() {
                found[i] += memmem::find_iter(&buf[..n], needle.as_bytes())
                    .filter(|p| *p < len)
                    .count();
            }
            at += len as u64;
        }
    }
    assert!(read_any > 0, "read none of the memory of process {pid}");
    found
}

fn counts(hay: &[u8], needles: &[&str]) -> Vec<usize> {
    needles
        .iter()
        .map(|n| memmem::find_iter(hay, n.as_bytes()).count())
        .collect()
}
