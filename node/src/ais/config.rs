//! The AIS's configuration file (TOML): the OpenID Connect providers it accepts.
//!
//! ```toml
//! # Where people's browsers reach this service; the callback is PUBLIC_URL/ais/v1/callback.
//! # Default: http://LISTEN-ADDRESS (for tests and a service behind nothing).
//! public_url = "https://ais.example.org"
//!
//! [[provider]]
//! name = "nhs-login"
//! issuer = "https://auth.login.nhs.uk"
//! client_id = "cophr-ais"
//! client_secret_file = "/etc/cophr/nhs-login-secret"   # or client_secret = "…"
//! # redirect_url = "https://ais.example.org/ais/v1/callback"   # default: from public_url
//! scopes = ["openid", "profile", "nhs_number"]
//! level_claim = "identity_proofing_level"  # the level, from this claim (P0/P5/P9) …
//! # level = "P5"                           # … or a fixed level
//! max_level = "P9"                         # never more than this
//! nhs_number_claim = "nhs_number"          # the claim carrying the NHS number, if any
//! valid_days = 365
//! ```
//!
//! The name comes from the `name` claim, else `given_name` and `family_name`; the date of
//! birth from `birthdate`.

use std::path::Path;

use cophr_protocol::trust::AssuranceLevel;
use serde::Deserialize;

use super::AisError;

/// Largest configuration file read.
const MAX_CONFIG_BYTES: u64 = 64 * 1024;
/// Most providers one AIS accepts.
pub const MAX_PROVIDERS: usize = 16;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AisConfig {
    /// Where people's browsers reach this service (no trailing slash).
    #[serde(default)]
    pub public_url: Option<String>,
    /// The providers.
    #[serde(default, rename = "provider")]
    pub providers: Vec<ProviderConfig>,
}

/// One OpenID Connect provider.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// A short name (`nhs-login`), chosen by the person with `cophr ais request --provider`.
    pub name: String,
    /// The provider's issuer URL (discovery at ISSUER/.well-known/openid-configuration).
    pub issuer: String,
    /// This service's client id there.
    pub client_id: String,
    /// The client secret, inline …
    #[serde(default)]
    pub client_secret: Option<String>,
    /// … or in a file (first line).
    #[serde(default)]
    pub client_secret_file: Option<std::path::PathBuf>,
    /// The redirect URL registered with the provider (default PUBLIC_URL/ais/v1/callback).
    #[serde(default)]
    pub redirect_url: Option<String>,
    /// The scopes asked for (default `openid profile`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// A fixed level to grant.
    #[serde(default)]
    pub level: Option<AssuranceLevel>,
    /// The claim the level is read from (`P0`/`P5`/`P9`, e.g. NHS login's
    /// `identity_proofing_level`).
    #[serde(default)]
    pub level_claim: Option<String>,
    /// The highest level granted, whatever the claim says.
    pub max_level: AssuranceLevel,
    /// The claim carrying an NHS number.
    #[serde(default)]
    pub nhs_number_claim: Option<String>,
    /// How long attestations are valid (default 365 days).
    #[serde(default = "default_valid_days")]
    pub valid_days: u32,
}

// The secret stays out of debug output and logs.
impl std::fmt::Debug for ProviderConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderConfig")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

fn default_valid_days() -> u32 {
    365
}

/// Whether `url` is https, or http to this machine (tests, development).
pub fn acceptable_url(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl AisConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, AisError> {
        use std::io::Read;
        let f = std::fs::File::open(path)
            .map_err(|e| AisError::Config(format!("cannot read {}: {e}", path.display())))?;
        let mut text = String::new();
        f.take(MAX_CONFIG_BYTES)
            .read_to_string(&mut text)
            .map_err(|e| AisError::Config(format!("cannot read {}: {e}", path.display())))?;
        let mut c: AisConfig = toml::from_str(&text)
            .map_err(|e| AisError::Config(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in &mut c.providers {
            if p.client_secret.is_none() {
                if let Some(file) = &p.client_secret_file {
                    let file = base.join(file);
                    let s = std::fs::read_to_string(&file).map_err(|e| {
                        AisError::Config(format!("cannot read {}: {e}", file.display()))
                    })?;
                    p.client_secret = s.lines().next().map(|l| l.trim().to_string());
                }
            }
        }
        c.check()?;
        Ok(c)
    }

    /// Checks names, URLs, levels and counts.
    pub fn check(&self) -> Result<(), AisError> {
        let bad = |m: String| Err(AisError::Config(m));
        if self.providers.is_empty() {
            return bad("no [[provider]] is configured".into());
        }
        if self.providers.len() > MAX_PROVIDERS {
            return bad(format!("at most {MAX_PROVIDERS} providers"));
        }
        if let Some(u) = &self.public_url {
            if !acceptable_url(u) {
                return bad(format!(
                    "public_url `{u}` must be https (or http to this machine)"
                ));
            }
        }
        for (i, p) in self.providers.iter().enumerate() {
            if p.name.is_empty()
                || p.name.len() > 64
                || !p
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return bad(format!(
                    "provider name `{}` must be 1-64 letters, digits, - or _",
                    p.name
                ));
            }
            if self.providers[..i].iter().any(|q| q.name == p.name) {
                return bad(format!("provider `{}` is configured twice", p.name));
            }
            if !acceptable_url(&p.issuer) {
                return bad(format!(
                    "provider `{}`: issuer `{}` must be https (or http to this machine)",
                    p.name, p.issuer
                ));
            }
            if let Some(r) = &p.redirect_url {
                if !acceptable_url(r) {
                    return bad(format!(
                        "provider `{}`: redirect_url must be https (or http to this machine)",
                        p.name
                    ));
                }
            }
            if p.client_id.is_empty() {
                return bad(format!("provider `{}`: client_id is empty", p.name));
            }
            match (&p.level, &p.level_claim) {
                (Some(_), Some(_)) => {
                    return bad(format!(
                        "provider `{}`: give either level or level_claim, not both",
                        p.name
                    ))
                }
                (None, None) => {
                    return bad(format!(
                        "provider `{}`: give a level or a level_claim",
                        p.name
                    ))
                }
                _ => {}
            }
            if !(1..=3660).contains(&p.valid_days) {
                return bad(format!(
                    "provider `{}`: valid_days must be 1 to 3660",
                    p.name
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_unless_local() {
        assert!(acceptable_url("https://auth.login.nhs.uk"));
        assert!(acceptable_url("http://127.0.0.1:4000"));
        assert!(acceptable_url("http://localhost/x"));
        assert!(!acceptable_url("http://auth.example.org"));
        assert!(!acceptable_url("http://127.0.0.1.evil.org/"));
        assert!(!acceptable_url("ftp://127.0.0.1"));
    }

    #[test]
    fn a_provider_needs_exactly_one_way_to_its_level() {
        let text = |extra: &str| {
            format!(
                "[[provider]]\nname = \"nhs\"\nissuer = \"https://a\"\nclient_id = \"c\"\n\
                 max_level = \"P9\"\n{extra}"
            )
        };
        let parse = |t: String| toml::from_str::<AisConfig>(&t).unwrap().check();
        assert!(parse(text("level = \"P5\"")).is_ok());
        assert!(parse(text("level_claim = \"identity_proofing_level\"")).is_ok());
        assert!(parse(text("")).is_err());
        assert!(parse(text("level = \"P5\"\nlevel_claim = \"x\"")).is_err());
        assert!(toml::from_str::<AisConfig>(&text("levle = \"P5\"")).is_err());
    }
}
