//! The command's errors and the exit code each maps to.

use std::fmt;
use std::path::Path;

use cophr_protocol::category::UnknownCategory;
use cophr_protocol::export::ExportError;
use cophr_protocol::ids::IdParseError;
use cophr_protocol::record::Rejection;
use cophr_protocol::schema::SchemaError;

use crate::store::{LogError, StoreError};

/// The exit codes, as documented in `cophr --help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Any other error (I/O, configuration, storage).
    Other = 1,
    /// Usage error (also what clap exits with).
    Usage = 2,
    /// Not authorised.
    Access = 3,
    /// Unknown record or entry.
    NotFound = 4,
    /// Invalid input: category, body, JSON, time, id.
    Invalid = 5,
    /// Verification failed: corrupt or tampered file or store.
    Verify = 6,
    /// A fork or conflict.
    Conflict = 7,
}

/// The text printed after `error: ` and the exit code.
#[derive(Debug)]
pub struct CliError {
    /// The exit code.
    pub code: Code,
    /// What went wrong, for people.
    pub message: String,
}

/// Result with a [`CliError`].
pub type Result<T, E = CliError> = std::result::Result<T, E>;

impl CliError {
    /// An error with a code and message.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
        }
    }

    /// Not authorised (exit 3).
    pub fn access(message: impl Into<String>) -> Self {
        CliError::new(Code::Access, message)
    }

    /// Not found (exit 4).
    pub fn not_found(message: impl Into<String>) -> Self {
        CliError::new(Code::NotFound, message)
    }

    /// Invalid input (exit 5).
    pub fn invalid(message: impl Into<String>) -> Self {
        CliError::new(Code::Invalid, message)
    }

    /// Verification failed (exit 6).
    pub fn verify(message: impl Into<String>) -> Self {
        CliError::new(Code::Verify, message)
    }

    /// Other (exit 1).
    pub fn other(message: impl Into<String>) -> Self {
        CliError::new(Code::Other, message)
    }

    /// An I/O error on a path.
    pub fn io(what: &str, path: &Path, e: &std::io::Error) -> Self {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            Code::NotFound
        } else {
            Code::Other
        };
        CliError::new(code, format!("{what} {}: {e}", path.display()))
    }

    /// Prefixes the message with some context.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The exit code for an entry refused by the record's rules.
pub fn rejection_code(r: &Rejection) -> Code {
    use cophr_protocol::care::TaskError;
    match r {
        Rejection::Access(_)
        | Rejection::Task(TaskError::NotOwner { .. } | TaskError::NotRequester { .. }) => {
            Code::Access
        }
        Rejection::Release(cophr_protocol::care::ReleaseError::ByPatient) => Code::Access,
        // Writing into a thread one does not take part in, or naming someone without
        // access, is an access refusal; any other break of a thread's rules, invalid.
        Rejection::Thread(
            cophr_protocol::care::ThreadError::NotParticipant { .. }
            | cophr_protocol::care::ThreadError::NoAccess(_),
        ) => Code::Access,
        Rejection::Thread(_) => Code::Invalid,
        Rejection::Task(TaskError::Stale { .. })
        | Rejection::Release(cophr_protocol::care::ReleaseError::AlreadyReleased { .. }) => {
            Code::Conflict
        }
        Rejection::Task(_)
        | Rejection::Appointment(_)
        | Rejection::Release(_)
        | Rejection::Questionnaire(_)
        | Rejection::Definition(_) => Code::Invalid,
        Rejection::Body(_)
        | Rejection::Target { .. }
        | Rejection::WrongRecord(_)
        | Rejection::Malformed(_)
        | Rejection::NoGenesis => Code::Invalid,
        Rejection::GenesisExists | Rejection::Fork { .. } | Rejection::Sealing(_) => Code::Conflict,
        Rejection::MissingParents(_)
        | Rejection::Backlink(_)
        | Rejection::CrossStream(_)
        | Rejection::TimeTravel => Code::Verify,
        // Never returned by the store (it asks the whole record instead).
        Rejection::NeedsWholeRecord => Code::Other,
    }
}

impl From<Rejection> for CliError {
    fn from(r: Rejection) -> Self {
        CliError::new(rejection_code(&r), r.to_string())
    }
}

impl From<SchemaError> for CliError {
    fn from(e: SchemaError) -> Self {
        CliError::invalid(e.to_string())
    }
}

impl From<UnknownCategory> for CliError {
    fn from(e: UnknownCategory) -> Self {
        CliError::invalid(e.to_string())
    }
}

impl From<ExportError> for CliError {
    fn from(e: ExportError) -> Self {
        CliError::verify(format!("verification failed: {e}"))
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        let code = match &e {
            StoreError::Rejected(r) => rejection_code(r),
            StoreError::NotFound(_) => Code::NotFound,
            StoreError::Log(LogError::Corrupt { .. } | LogError::BadHeader)
            | StoreError::Export(_)
            | StoreError::Corrupt(_)
            | StoreError::Entry(_)
            | StoreError::Audit(_) => Code::Verify,
            _ => Code::Other,
        };
        let message = match &e {
            StoreError::Export(x) => format!("verification failed: {x}"),
            _ => e.to_string(),
        };
        CliError::new(code, message)
    }
}

/// Parses an id, turning a parse error into an invalid-input error naming what was expected.
pub fn parse_id<T: std::str::FromStr<Err = IdParseError>>(what: &str, s: &str) -> Result<T> {
    s.parse().map_err(|e: IdParseError| {
        CliError::invalid(format!("`{s}` is not a valid {what} id: {e}"))
    })
}
