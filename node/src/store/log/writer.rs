//! The writer thread: gathers queued appends into groups and fsyncs each group once (group
//! commit); a failed fsync poisons the log.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use super::*;

pub(super) struct Writer {
    pub(super) file: SharedFile,
    pub(super) core: Arc<Core>,
    /// Bytes written to the file (durable or not).
    pub(super) len: u64,
    pub(super) sync_each: bool,
}

pub(super) fn clone_io(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

pub(super) fn reply(req: Request, result: Result<Vec<u64>, LogError>) {
    let Request { data, reply, .. } = req;
    drop(data);
    // The appender waits for this; if it is gone there is nobody to tell.
    let _ = reply.send(result);
}

/// Requests written to the file (not yet fsync'd), with their frames' offsets.
type Written = Vec<(Request, Vec<u64>)>;

impl Writer {
    pub(super) fn run(mut self, rx: Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            if self.sync_each {
                self.commit_each(first);
                continue;
            }
            let mut bytes = first.data.len();
            let mut group = vec![first];
            while bytes < MAX_GROUP_BYTES && group.len() < QUEUE_CAPACITY {
                match rx.try_recv() {
                    Ok(req) => {
                        bytes += req.data.len();
                        group.push(req);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
    }

    fn poisoned_error(&self) -> LogError {
        self.core.poisoned().unwrap_or(LogError::Closed)
    }

    /// Undo a failed (possibly partial) append; if even that fails, the file's tail is unknown.
    fn rollback(&mut self, file: &mut dyn LogFile, to: u64) {
        if let Err(e) = file.truncate(to) {
            self.core
                .poison(format!("could not undo a failed write: {e}"));
        }
    }

    fn commit_group(&mut self, group: Vec<Request>) {
        if self.core.poison.get().is_some() {
            for req in group {
                reply(req, Err(self.poisoned_error()));
            }
            return;
        }
        let file_arc = Arc::clone(&self.file);
        let mut guard = match lock_file(&file_arc) {
            Ok(g) => g,
            Err(e) => {
                self.core.poison(e.to_string());
                for req in group {
                    reply(req, Err(LogError::Io(clone_io(&e))));
                }
                return;
            }
        };
        let file: &mut dyn LogFile = &mut **guard;
        let (written, failed, write_err) = self.write_group(file, group);
        if !written.is_empty() {
            self.sync_group(file, written);
        }
        drop(guard);

        for req in failed {
            let err = match &write_err {
                Some(e) => LogError::Io(clone_io(e)),
                None => LogError::Closed,
            };
            reply(req, Err(err));
        }
    }

    /// Writes each request of a group in turn, noting each frame's offset. After a failed
    /// write (rolled back) the rest are not written. Returns the requests written with their
    /// offsets, those not written, and the write error.
    fn write_group(
        &mut self,
        file: &mut dyn LogFile,
        group: Vec<Request>,
    ) -> (Written, Vec<Request>, Option<io::Error>) {
        let mut written: Written = Vec::with_capacity(group.len());
        let mut failed: Vec<Request> = Vec::new();
        let mut write_err: Option<io::Error> = None;
        for req in group {
            if write_err.is_some() {
                failed.push(req);
                continue;
            }
            let start = self.len;
            match file.append(&req.data) {
                Ok(()) => {
                    let mut offsets = Vec::with_capacity(req.frames.len());
                    let mut off = start;
                    for &n in &req.frames {
                        offsets.push(off);
                        off += n as u64;
                    }
                    self.len = off;
                    written.push((req, offsets));
                }
                Err(e) => {
                    self.rollback(file, start);
                    write_err = Some(e);
                    failed.push(req);
                }
            }
        }
        (written, failed, write_err)
    }

    /// One fsync for the requests written; acknowledges them once it succeeded. A failed
    /// fsync (or a write that could not be undone) fails them all and poisons the log.
    fn sync_group(&mut self, file: &mut dyn LogFile, written: Written) {
        if self.core.poison.get().is_some() {
            // A write could not be undone: do not acknowledge anything of this group.
            for (req, _) in written {
                reply(req, Err(self.poisoned_error()));
            }
            return;
        }
        match file.sync() {
            Ok(()) => {
                self.core.durable_len.store(self.len, Ordering::Release);
                for (req, offsets) in written {
                    reply(req, Ok(offsets));
                }
            }
            Err(e) => {
                self.core.poison(format!("fsync failed: {e}"));
                for (req, _) in written {
                    reply(req, Err(LogError::Io(clone_io(&e))));
                }
            }
        }
    }

    /// `sync_each`: write and fsync every frame on its own.
    fn commit_each(&mut self, req: Request) {
        if let Some(e) = self.core.poisoned() {
            reply(req, Err(e));
            return;
        }
        let file_arc = Arc::clone(&self.file);
        let mut guard = match lock_file(&file_arc) {
            Ok(g) => g,
            Err(e) => {
                self.core.poison(e.to_string());
                reply(req, Err(LogError::Io(e)));
                return;
            }
        };
        let file: &mut dyn LogFile = &mut **guard;
        let mut offsets = Vec::with_capacity(req.frames.len());
        let mut at = 0usize;
        for &n in &req.frames {
            let start = self.len;
            let Some(frame) = req.data.get(at..at + n) else {
                reply(req, Err(LogError::Closed));
                return;
            };
            if let Err(e) = file.append(frame) {
                self.rollback(file, start);
                drop(guard);
                reply(req, Err(LogError::Io(e)));
                return;
            }
            self.len += n as u64;
            if let Err(e) = file.sync() {
                self.core.poison(format!("fsync failed: {e}"));
                drop(guard);
                reply(req, Err(LogError::Io(e)));
                return;
            }
            self.core.durable_len.store(self.len, Ordering::Release);
            offsets.push(start);
            at += n;
        }
        drop(guard);
        reply(req, Ok(offsets));
    }
}
