//! Who may do what. A coordinator accepts credentials, each a name, a role and the SHA-256 of a
//! token (the tokens file of `serve --tokens FILE`; never the token itself), and the single
//! `--token`/`JETSWEEP_TOKEN` as an admin named `admin`. Without either it is open: every caller
//! is an admin (a coordinator on loopback for one person).
//!
//! The tokens file, one credential a line (`jetsweep token new NAME ROLE` prints the line):
//!
//! ```text
//! # name  role    token's hash
//! alice   user    sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! node-7  worker  sha256:...
//! ```
//!
//! Roles: `admin` may do everything; `user` submits, cancels its own sweeps and reads all;
//! `viewer` reads (dashboard, results, metrics); `worker` registers, leases, reports and fetches
//! datasets and checkpoints, nothing else.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Shortest token accepted: 16 characters (`jetsweep token new` makes 43).
pub const MIN_TOKEN_CHARS: usize = 16;

/// Most credentials a file may hold.
const MAX_CREDENTIALS: usize = 10_000;

/// What a credential may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    User,
    Viewer,
    Worker,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::User, Role::Viewer, Role::Worker];

    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
            Role::Viewer => "viewer",
            Role::Worker => "worker",
        }
    }

    pub fn parse(text: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == text)
            .ok_or_else(|| {
                format!(
                    "{:?} is not a role: use admin, user, viewer or worker",
                    text.chars().take(40).collect::<String>()
                )
            })
    }

    /// Whether this role may use `verb` at all (a user's cancel is further limited to its own
    /// sweeps, where the sweep is known).
    pub fn may(self, verb: Verb) -> bool {
        match verb {
            Verb::Open => true,
            Verb::Read => matches!(self, Role::Admin | Role::User | Role::Viewer),
            Verb::Submit | Verb::Cancel => matches!(self, Role::Admin | Role::User),
            Verb::Work => matches!(self, Role::Admin | Role::Worker),
            Verb::Administer => matches!(self, Role::Admin),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a call does, as far as permission goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Health checks, the login page, static assets: no credential needed.
    Open,
    /// Sweeps, jobs, results, curves, decisions, workers, metrics, the dashboard.
    Read,
    /// Submitting a sweep.
    Submit,
    /// Cancelling a sweep (a user: only its own).
    Cancel,
    /// A worker's calls: register, heartbeat, lease, report, complete, fail, fetch.
    Work,
    /// What changes others' results: invalidating a worker's.
    Administer,
}

impl Verb {
    pub fn describe(self) -> &'static str {
        match self {
            Verb::Open => "open",
            Verb::Read => "read sweeps, results and metrics",
            Verb::Submit => "submit sweeps",
            Verb::Cancel => "cancel sweeps",
            Verb::Work => "take and report jobs (a worker's calls)",
            Verb::Administer => "invalidate a worker's results",
        }
    }
}

/// Who is calling: a credential's name and role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// The caller of an open coordinator (no credentials at all): may do everything.
    pub fn anonymous() -> Caller {
        Caller {
            name: "anonymous".into(),
            role: Role::Admin,
        }
    }

    /// Whether this caller may cancel the sweep `submitted_by` submitted.
    pub fn may_cancel(&self, submitted_by: &str) -> bool {
        match self.role {
            Role::Admin => true,
            Role::User => self.name == submitted_by,
            Role::Viewer | Role::Worker => false,
        }
    }
}

/// Why a credential was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No token came with the call, and one is required.
    Missing,
    /// A token came, and no credential has it.
    Unknown,
}

/// The credentials a coordinator accepts.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// By the SHA-256 of the token. Empty: the coordinator is open.
    by_hash: HashMap<[u8; 32], Caller>,
}

/// The SHA-256 of a token, as a tokens file's line holds it.
pub fn hash_of(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A token fit to be one: printable ASCII without spaces (it travels in a header), at least
/// [`MIN_TOKEN_CHARS`] characters.
pub fn check_token(token: &str) -> Result<(), String> {
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a token must be printable ASCII without spaces (`jetsweep token new NAME ROLE` makes one)".into());
    }
    if token.len() < MIN_TOKEN_CHARS {
        return Err(format!(
            "a token must have at least {MIN_TOKEN_CHARS} characters, this one has {} (`jetsweep token new NAME ROLE` makes one)",
            token.len()
        ));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), String> {
    let fits = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b));
    if fits {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not a credential name: 1 to 64 of A-Z a-z 0-9 . _ - @",
            name.chars().take(70).collect::<String>()
        ))
    }
}

/// A fresh token: 32 random bytes, base64url without padding (43 characters).
pub fn new_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness for a token: {e}"))?;
    Ok(base64url(&bytes))
}

fn base64url(bytes: &[u8]) -> String {
    base64_with(
        bytes,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        false,
    )
}

/// Standard base64 with padding (as CSP hashes are written).
pub fn base64(bytes: &[u8]) -> String {
    base64_with(
        bytes,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        true,
    )
}

fn base64_with(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(alphabet[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// The tokens file's line for a credential.
pub fn file_line(name: &str, role: Role, token: &str) -> Result<String, String> {
    check_name(name)?;
    check_token(token)?;
    Ok(format!("{name} {role} sha256:{}", hex(&hash_of(token))))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl Credentials {
    /// No credentials: an open coordinator.
    pub fn open() -> Credentials {
        Credentials::default()
    }

    /// Whether calls must carry a token.
    pub fn required(&self) -> bool {
        !self.by_hash.is_empty()
    }

    /// Adds the single shared token as an admin named `admin`.
    pub fn with_admin_token(mut self, token: &str) -> Result<Credentials, String> {
        check_token(token)?;
        let caller = Caller {
            name: "admin".into(),
            role: Role::Admin,
        };
        if let Some(other) = self.by_hash.insert(hash_of(token), caller) {
            return Err(format!(
                "the --token is also the token of credential {:?} in the tokens file: give each its own",
                other.name
            ));
        }
        Ok(self)
    }

    /// The credentials of a tokens file's text. Errors name the line and what is wrong in it.
    pub fn parse(text: &str) -> Result<Credentials, String> {
        let mut by_hash = HashMap::new();
        let mut names = std::collections::HashSet::new();
        for (i, line) in text.lines().enumerate() {
            let at = |m: String| format!("line {}: {m}", i + 1);
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, role, hash] = fields[..] else {
                return Err(at(format!(
                    "expected `NAME ROLE sha256:HEX`, found {} fields (`jetsweep token new NAME ROLE` prints the line)",
                    fields.len()
                )));
            };
            check_name(name).map_err(at)?;
            let role = Role::parse(role).map_err(at)?;
            let hash = hash
                .strip_prefix("sha256:")
                .and_then(unhex)
                .ok_or_else(|| {
                    at("the hash must be sha256: and 64 hex digits; the file holds the token's hash, never the token".into())
                })?;
            if !names.insert(name.to_string()) {
                return Err(at(format!("{name:?} is named twice")));
            }
            let caller = Caller {
                name: name.to_string(),
                role,
            };
            if let Some(other) = by_hash.insert(hash, caller) {
                return Err(at(format!(
                    "{name:?} has the same token as {:?}: give each its own",
                    other.name
                )));
            }
            if by_hash.len() > MAX_CREDENTIALS {
                return Err(at(format!("more than {MAX_CREDENTIALS} credentials")));
            }
        }
        if by_hash.is_empty() {
            return Err(
                "no credentials in it: add lines from `jetsweep token new NAME ROLE`".into(),
            );
        }
        Ok(Credentials { by_hash })
    }

    /// The credentials of the tokens file at `path`. It must not be writable by others (whoever
    /// can write it can make themselves an admin).
    pub fn read(path: &Path) -> Result<Credentials, String> {
        let shown = path.display();
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
            if meta.mode() & 0o022 != 0 {
                return Err(format!(
                    "{shown} is writable by others (mode {:o}): anyone who can write it can make themselves an admin; chmod go-w it",
                    meta.mode() & 0o777
                ));
            }
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
        Credentials::parse(&text).map_err(|e| format!("{shown}: {e}"))
    }

    /// Who presents `token`: the credential whose hash it has; the anonymous admin when the
    /// coordinator is open.
    pub fn identify(&self, token: Option<&str>) -> Result<Caller, Refused> {
        if self.by_hash.is_empty() {
            return Ok(Caller::anonymous());
        }
        let token = token.ok_or(Refused::Missing)?;
        self.by_hash
            .get(&hash_of(token))
            .cloned()
            .ok_or(Refused::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_new_line_is_read_back_as_its_credential() {
        let token = new_token().unwrap();
        assert_eq!(token.len(), 43);
        assert!(check_token(&token).is_ok());
        let line = file_line("alice", Role::User, &token).unwrap();
        let creds = Credentials::parse(&format!("# users\n{line}  # alice's laptop\n\n")).unwrap();
        assert!(creds.required());
        assert_eq!(
            creds.identify(Some(&token)),
            Ok(Caller {
                name: "alice".into(),
                role: Role::User
            })
        );
        assert_eq!(
            creds.identify(Some("x".repeat(43).as_str())),
            Err(Refused::Unknown)
        );
        assert_eq!(creds.identify(None), Err(Refused::Missing));
        // The file holds the hash, never the token.
        assert!(!line.contains(&token));
    }

    #[test]
    fn base64url_matches_the_rfc_vectors() {
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foob"), "Zm9vYg");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(b"fooba"), "Zm9vYmE=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn an_open_coordinator_takes_everyone_as_admin_and_the_shared_token_is_an_admin() {
        assert_eq!(Credentials::open().identify(None), Ok(Caller::anonymous()));
        let creds = Credentials::open()
            .with_admin_token("0123456789abcdef")
            .unwrap();
        assert_eq!(
            creds.identify(Some("0123456789abcdef")).unwrap().role,
            Role::Admin
        );
        assert!(Credentials::open().with_admin_token("short").is_err());
    }

    #[test]
    fn each_role_may_do_exactly_its_verbs() {
        use Verb::*;
        let table = [
            (Role::Admin, [true, true, true, true, true]),
            (Role::User, [true, true, true, true, false]),
            (Role::Viewer, [true, true, false, false, false]),
            (Role::Worker, [true, false, false, false, true]),
        ];
        for (role, allowed) in table {
            for (verb, may) in [Open, Read, Submit, Cancel, Work].into_iter().zip(allowed) {
                assert_eq!(role.may(verb), may, "{role} {verb:?}");
            }
        }
        let alice = Caller {
            name: "alice".into(),
            role: Role::User,
        };
        assert!(alice.may_cancel("alice"));
        assert!(!alice.may_cancel("bob"));
    }

    #[test]
    fn bad_tokens_files_are_refused_naming_the_line() {
        let good = format!("sha256:{}", "ab".repeat(32));
        for (text, says) in [
            ("alice user".to_string(), "line 1: expected"),
            (format!("alice root {good}"), "not a role"),
            ("alice user sha256:zz".to_string(), "64 hex digits"),
            (
                "alice user 0123456789abcdef0123".to_string(),
                "never the token",
            ),
            (format!("al ice user {good}"), "expected"),
            (format!("a/b user {good}"), "not a credential name"),
            (
                format!("a user {good}\na viewer {good}"),
                "line 2: \"a\" is named twice",
            ),
            (format!("a user {good}\nb viewer {good}"), "same token"),
            ("# nothing\n".to_string(), "no credentials"),
        ] {
            let e = Credentials::parse(&text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }
}
