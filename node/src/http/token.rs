//! The API token: 32 random bytes, base32 lowercase without padding, in `<home>/api-token`
//! (created mode 0600 before the secret is written; a file others may read is refused).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rand_core::{OsRng, RngCore};

/// The token file's name in the home.
pub const TOKEN_FILE: &str = "api-token";

/// A new random token.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    data_encoding::BASE32_NOPAD
        .encode(&bytes)
        .to_ascii_lowercase()
}

/// Writes a new token to `path` (replacing any), mode 0600, fsync'd. Returns it.
pub fn create(path: &Path) -> io::Result<String> {
    let token = generate();
    if path.exists() {
        fs::remove_file(path)?;
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    f.write_all(format!("{token}\n").as_bytes())?;
    f.sync_all()?;
    Ok(token)
}

/// Reads the token at `path`, refusing a file that group or others may read, or one that
/// does not hold a token.
pub fn read(path: &Path) -> io::Result<String> {
    let meta = fs::metadata(path)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing to use {}: its permissions are {mode:04o}, so other users may read \
                 it; run `chmod 600 {}`",
                path.display(),
                path.display()
            ),
        ));
    }
    if meta.len() > 1024 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is too large to be a token", path.display()),
        ));
    }
    let text = fs::read_to_string(path)?;
    let token = text.trim();
    if token.len() < 16 || !token.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} does not hold an API token", path.display()),
        ));
    }
    Ok(token.to_owned())
}

/// Reads the token at `path`, creating it if there is none.
pub fn read_or_create(path: &Path) -> io::Result<String> {
    match fs::metadata(path) {
        Ok(_) => read(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(path),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_created_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKEN_FILE);
        let t = read_or_create(&path).unwrap();
        assert_eq!(t.len(), 52);
        assert!(t
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_or_create(&path).unwrap(), t);
        assert_ne!(generate(), generate());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            read(&path).unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
    }
}
