//! Bearer-token authentication with per-topic read and write permissions.
//!
//! # Tokens file
//!
//! ```json
//! {"tokens": [
//!   {"principal": "team-a", "token": "s3cr3t-0123456789abcdef",
//!    "read": ["orders", "corral.events"], "write": ["orders*"]}
//! ]}
//! ```
//!
//! `principal` names who holds the token (1 to 128 characters, no control
//! characters). `token` is at least [`MIN_TOKEN_LEN`] and at most
//! [`MAX_TOKEN_LEN`] visible ASCII characters (no spaces), unique across the
//! file. `read` and `write` are lists of [`TopicPattern`]s (`orders`,
//! `orders*`, `*`); both default to empty. Write does not imply read.
//!
//! Only the SHA-256 digest of each token is kept after loading; a presented
//! token is hashed and compared with **every** stored digest in constant time
//! ([`subtle`]), so neither the position of a match nor the length of a
//! common prefix shows in the timing. Tokens never appear in `Debug` output
//! or in error messages.
//!
//! Clients send `Authorization: Bearer <token>`; [`Authenticator::authorize`]
//! takes that header's value and answers `Ok(principal)`,
//! [`AuthError::Unauthenticated`] (401) or [`AuthError::Forbidden`] (403).

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::{ClientError, TopicError, TopicPattern};

/// The shortest token accepted in a tokens file.
pub const MIN_TOKEN_LEN: usize = 16;
/// The longest token accepted (in a file or in a header).
pub const MAX_TOKEN_LEN: usize = 512;
/// The longest principal name.
pub const MAX_PRINCIPAL_LEN: usize = 128;

/// Reading or writing a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// Reading events (allocating a session to read, reading, acking).
    Read,
    /// Writing events.
    Write,
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Read => "read",
            Access::Write => "write",
        })
    }
}

/// Who a token belongs to and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The principal's name.
    pub name: String,
    /// Topics it may read.
    pub read: Vec<TopicPattern>,
    /// Topics it may write.
    pub write: Vec<TopicPattern>,
}

impl Principal {
    /// Whether the principal may `access` `topic`.
    pub fn may(&self, topic: &str, access: Access) -> bool {
        let patterns = match access {
            Access::Read => &self.read,
            Access::Write => &self.write,
        };
        patterns.iter().any(|p| p.matches(topic))
    }
}

/// Why a request is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No usable credentials: no `Authorization` header, not a bearer
    /// token, or an unknown token. Answered with 401.
    #[error("{0}")]
    Unauthenticated(Unauthenticated),
    /// The principal is known but lacks the permission. Answered with 403.
    #[error("principal {principal:?} may not {access} topic {topic:?}")]
    Forbidden {
        /// The principal.
        principal: String,
        /// The topic.
        topic: String,
        /// What it tried.
        access: Access,
    },
}

/// The reason for a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unauthenticated {
    /// There is no `Authorization` header.
    #[error("header \"Authorization\" is missing; send \"Authorization: Bearer <token>\"")]
    MissingHeader,
    /// The header is not `Bearer <token>`.
    #[error("header \"Authorization\" is not of the form \"Bearer <token>\"")]
    NotBearer,
    /// The token is not known.
    #[error("header \"Authorization\": the bearer token is not valid")]
    InvalidToken,
}

impl ClientError for AuthError {
    fn status(&self) -> u16 {
        match self {
            AuthError::Unauthenticated(_) => 401,
            AuthError::Forbidden { .. } => 403,
        }
    }
    fn code(&self) -> &'static str {
        match self {
            AuthError::Unauthenticated(Unauthenticated::MissingHeader) => "missing_credentials",
            AuthError::Unauthenticated(Unauthenticated::NotBearer) => "malformed_credentials",
            AuthError::Unauthenticated(Unauthenticated::InvalidToken) => "invalid_token",
            AuthError::Forbidden { .. } => "forbidden",
        }
    }
}

/// A tokens file that cannot be used; the message names the file and the
/// entry (by index and principal; never by token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenFileError {
    /// The file could not be read.
    #[error("tokens file {file}: cannot read: {message}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        message: String,
    },
    /// The file is not the expected JSON.
    #[error("tokens file {file}: {message}")]
    Json {
        /// The file.
        file: String,
        /// serde_json's message (line and column; never the token).
        message: String,
    },
    /// One entry is invalid.
    #[error("tokens file {file}: entry tokens[{entry}] (principal {principal:?}): {problem}")]
    Entry {
        /// The file.
        file: String,
        /// The entry's index in `tokens`.
        entry: usize,
        /// The entry's principal as written.
        principal: String,
        /// What is wrong.
        problem: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensJson {
    tokens: Vec<TokenJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenJson {
    principal: String,
    token: String,
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    write: Vec<String>,
}

struct Entry {
    digest: [u8; 32],
    principal: Principal,
}

/// The known tokens. `Debug` lists principals only.
pub struct Authenticator {
    entries: Vec<Entry>,
    /// With no tokens file: every request is the principal `anonymous`, who
    /// may read and write everything.
    open: Option<Principal>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field(
                "principals",
                &self
                    .entries
                    .iter()
                    .map(|e| e.principal.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("open", &self.open.is_some())
            .finish()
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

fn check_token(token: &str) -> Result<(), String> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "field \"token\" is {} characters long, at least {MIN_TOKEN_LEN} are required",
            token.len()
        ));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(format!(
            "field \"token\" is {} characters long, at most {MAX_TOKEN_LEN} are allowed",
            token.len()
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "field \"token\" may only contain visible ASCII characters (no spaces)".to_owned(),
        );
    }
    Ok(())
}

impl Authenticator {
    /// Authentication switched off (no tokens file given, e.g. `corral dev`):
    /// every request is the principal `anonymous` with every permission.
    pub fn open() -> Authenticator {
        let all = TopicPattern::parse("*").expect("valid pattern");
        Authenticator {
            entries: Vec::new(),
            open: Some(Principal {
                name: "anonymous".to_owned(),
                read: vec![all.clone()],
                write: vec![all],
            }),
        }
    }

    /// Parses a tokens file's contents; `file` is only used in messages.
    pub fn from_source(file: &str, contents: &str) -> Result<Authenticator, TokenFileError> {
        let parsed: TokensJson = serde_json::from_str(contents).map_err(|e| {
            // serde's message can quote an unexpected string value; on a
            // tokens file that could be a token, so keep only its position.
            let message = if e.is_data() {
                format!(
                    "invalid tokens file at line {} column {} (expected {{\"tokens\": [{{\"principal\", \"token\", \"read\", \"write\"}}]}}): {}",
                    e.line(),
                    e.column(),
                    redact_serde(&e.to_string())
                )
            } else {
                e.to_string()
            };
            TokenFileError::Json {
                file: file.to_owned(),
                message,
            }
        })?;
        let mut entries: Vec<Entry> = Vec::with_capacity(parsed.tokens.len());
        for (i, t) in parsed.tokens.into_iter().enumerate() {
            let err = |problem: String| TokenFileError::Entry {
                file: file.to_owned(),
                entry: i,
                principal: t.principal.clone(),
                problem,
            };
            if t.principal.is_empty()
                || t.principal.len() > MAX_PRINCIPAL_LEN
                || t.principal.chars().any(char::is_control)
            {
                return Err(err(format!(
                    "field \"principal\" must be 1 to {MAX_PRINCIPAL_LEN} characters without control characters"
                )));
            }
            check_token(&t.token).map_err(&err)?;
            let parse = |field: &str, list: &[String]| -> Result<Vec<TopicPattern>, String> {
                list.iter()
                    .enumerate()
                    .map(|(j, p)| {
                        TopicPattern::parse(p)
                            .map_err(|e: TopicError| format!("field \"{field}[{j}]\": {e}"))
                    })
                    .collect()
            };
            let read = parse("read", &t.read).map_err(&err)?;
            let write = parse("write", &t.write).map_err(&err)?;
            let d = digest(t.token.as_bytes());
            if let Some(j) = entries.iter().position(|e| e.digest == d) {
                return Err(err(format!(
                    "field \"token\" is the same as the token of tokens[{j}] (principal {:?})",
                    entries[j].principal.name
                )));
            }
            entries.push(Entry {
                digest: d,
                principal: Principal {
                    name: t.principal.clone(),
                    read,
                    write,
                },
            });
        }
        Ok(Authenticator {
            entries,
            open: None,
        })
    }

    /// Reads and parses a tokens file.
    pub fn load(path: &Path) -> Result<Authenticator, TokenFileError> {
        let file = path.display().to_string();
        let contents = std::fs::read_to_string(path).map_err(|e| TokenFileError::Read {
            file: file.clone(),
            message: e.to_string(),
        })?;
        Authenticator::from_source(&file, &contents)
    }

    /// Whether authentication is switched off.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// How many tokens are known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no token is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal of a raw token, compared in constant time against every
    /// known token.
    pub fn lookup(&self, token: &str) -> Option<&Principal> {
        if let Some(p) = &self.open {
            return Some(p);
        }
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let d = digest(token.as_bytes());
        let mut found = subtle::Choice::from(0u8);
        let mut index = 0u32;
        for (i, e) in self.entries.iter().enumerate() {
            let eq = e.digest.ct_eq(&d);
            index = u32::conditional_select(&index, &(i as u32), eq);
            found |= eq;
        }
        bool::from(found).then(|| &self.entries[index as usize].principal)
    }

    /// Authenticates an `Authorization` header value (`None` when the header
    /// is absent). The scheme `Bearer` is matched case-insensitively.
    pub fn authenticate(&self, header: Option<&str>) -> Result<&Principal, AuthError> {
        if let Some(p) = &self.open {
            return Ok(p);
        }
        let header = header.ok_or(AuthError::Unauthenticated(Unauthenticated::MissingHeader))?;
        let token =
            bearer_token(header).ok_or(AuthError::Unauthenticated(Unauthenticated::NotBearer))?;
        self.lookup(token)
            .ok_or(AuthError::Unauthenticated(Unauthenticated::InvalidToken))
    }

    /// Authenticates the header and checks that its principal may `access`
    /// `topic`: 401 for bad credentials, 403 for a missing permission.
    pub fn authorize(
        &self,
        header: Option<&str>,
        topic: &str,
        access: Access,
    ) -> Result<&Principal, AuthError> {
        let p = self.authenticate(header)?;
        if p.may(topic, access) {
            Ok(p)
        } else {
            Err(AuthError::Forbidden {
                principal: p.name.clone(),
                topic: topic.to_owned(),
                access,
            })
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header value, or `None`
/// if the value is not of that form.
pub fn bearer_token(header: &str) -> Option<&str> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim_start();
    (!token.is_empty() && !token.contains(char::is_whitespace)).then_some(token)
}

/// Removes quoted values from a serde message (they could be secrets).
fn redact_serde(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut in_quote = false;
    for c in message.chars() {
        match (c, in_quote) {
            ('"', false) => {
                in_quote = true;
                out.push_str("\"…");
            }
            ('"', true) => {
                in_quote = false;
                out.push('"');
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: &str = "team-a-token-0123456789";
    const B: &str = "team-b-token-9876543210";

    fn auth() -> Authenticator {
        Authenticator::from_source(
            "tokens.json",
            &format!(
                r#"{{"tokens":[
                {{"principal":"team-a","token":"{A}","read":["orders","corral.events"],"write":["orders*"]}},
                {{"principal":"team-b","token":"{B}","read":["*"]}}
            ]}}"#
            ),
        )
        .unwrap()
    }

    #[test]
    fn authorize_distinguishes_401_and_403() {
        let a = auth();
        let h = format!("Bearer {A}");
        assert_eq!(
            a.authorize(Some(&h), "orders", Access::Read).unwrap().name,
            "team-a"
        );
        assert!(a.authorize(Some(&h), "orders.eu", Access::Write).is_ok());
        let e = a
            .authorize(Some(&h), "orders.eu", Access::Read)
            .unwrap_err();
        assert_eq!(e.status(), 403);
        assert_eq!(
            e.to_string(),
            "principal \"team-a\" may not read topic \"orders.eu\""
        );
        let hb = format!("bearer   {B}");
        assert!(a.authorize(Some(&hb), "anything", Access::Read).is_ok());
        assert_eq!(
            a.authorize(Some(&hb), "anything", Access::Write)
                .unwrap_err()
                .status(),
            403
        );
        for (h, code) in [
            (None, "missing_credentials"),
            (Some("Basic abc"), "malformed_credentials"),
            (Some("Bearer"), "malformed_credentials"),
            (Some("Bearer a b"), "malformed_credentials"),
            (Some("Bearer team-a-token-012345678"), "invalid_token"),
            (Some("Bearer team-a-token-01234567890"), "invalid_token"),
        ] {
            let e = a.authorize(h, "orders", Access::Read).unwrap_err();
            assert_eq!((e.status(), e.code()), (401, code), "{h:?}");
        }
    }

    #[test]
    fn tokens_never_in_debug_or_errors() {
        let a = auth();
        let dbg = format!("{a:?}");
        assert!(dbg.contains("team-a") && !dbg.contains(A) && !dbg.contains(B));
        let e = Authenticator::from_source(
            "t.json",
            r#"{"tokens":[{"principal":"p","token":12345678901234567890123}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("tokens file t.json: "), "{e}");
        let e = Authenticator::from_source(
            "t.json",
            r#"{"tokens":[{"principal":"p","token":"very-secret-token-value","read":"orders"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("very-secret"), "{e}");
        let e = Authenticator::from_source(
            "t.json",
            r#"{"tokens":[{"principal":"p","token":"short"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("short\""), "{e}");
    }

    #[test]
    fn bad_files_name_file_and_entry() {
        let e = |json: &str| {
            Authenticator::from_source("/etc/tokens.json", json)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            e(r#"{"tokens":[{"principal":"p","token":"short"}]}"#),
            "tokens file /etc/tokens.json: entry tokens[0] (principal \"p\"): field \"token\" is 5 characters long, at least 16 are required"
        );
        assert!(e(&format!(
            r#"{{"tokens":[{{"principal":"p","token":"{A}","read":["a b"]}}]}}"#
        ))
        .contains("tokens[0] (principal \"p\"): field \"read[0]\""));
        assert!(e(&format!(
            r#"{{"tokens":[{{"principal":"p","token":"{A}"}},{{"principal":"q","token":"{A}"}}]}}"#
        ))
        .contains(
            "tokens[1] (principal \"q\"): field \"token\" is the same as the token of tokens[0]"
        ));
        assert!(e(&format!(
            r#"{{"tokens":[{{"principal":"","token":"{A}"}}]}}"#
        ))
        .contains("field \"principal\""));
        assert!(
            e(r#"{"tokens":[{"principal":"p","token":"has a space in the token"}]}"#)
                .contains("visible ASCII")
        );
        assert!(e(r#"{"tokenz":[]}"#).starts_with("tokens file /etc/tokens.json: "));
        assert!(e(&format!(
            r#"{{"tokens":[{{"principal":"p","token":"{A}","admin":true}}]}}"#
        ))
        .contains("unknown field"));
    }

    #[test]
    fn open_mode_and_load() {
        let o = Authenticator::open();
        assert!(o.is_open());
        assert_eq!(
            o.authorize(None, "x", Access::Write).unwrap().name,
            "anonymous"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens.json");
        std::fs::write(
            &p,
            format!(r#"{{"tokens":[{{"principal":"p","token":"{A}","write":["*"]}}]}}"#),
        )
        .unwrap();
        let a = Authenticator::load(&p).unwrap();
        assert_eq!(a.len(), 1);
        assert!(!a.is_open());
        assert!(Authenticator::load(&dir.path().join("missing"))
            .unwrap_err()
            .to_string()
            .contains("missing"));
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("  BEARER abc  "), Some("abc"));
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
        assert_eq!(bearer_token("Token abc"), None);
    }

    proptest! {
        #[test]
        fn only_exact_tokens_authenticate(t in "[!-~]{0,40}") {
            let a = auth();
            let got = a.lookup(&t).map(|p| p.name.clone());
            let want = if t == A { Some("team-a".to_owned()) } else if t == B { Some("team-b".to_owned()) } else { None };
            prop_assert_eq!(got, want);
        }

        #[test]
        fn header_parsing_never_panics(h in ".{0,80}") {
            let a = auth();
            let _ = a.authorize(Some(&h), "orders", Access::Read);
        }
    }
}
