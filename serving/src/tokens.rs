//! Access tokens: `sct_<id>_<secret>`, 256 random bits of secret. The token
//! is shown once, when created; the token file keeps only its sha256, its
//! public id (for `list` and `revoke`), a name and dates. The file is
//! JSON, mode 0600, replaced atomically, and changes under a lock file, so
//! `token create` and `token revoke` are safe while a server runs; the
//! server notices the change on the next request.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use semiclass_access::{hex, new_secret, secret_hash, unhex32};
use semiclass_licensing::random_bytes;
use serde::{Deserialize, Serialize};

/// Hashing and constant-time checking are shared with the studio.
pub use semiclass_access::TokenSet;

/// Every token starts with this, so a leaked one is easy to recognise.
pub const TOKEN_PREFIX: &str = "sct_";
const FILE_FORMAT: u32 = 1;

/// One token as stored: never the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    /// Public handle, 8 hex digits, also part of the token.
    pub id: String,
    pub name: String,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds of revocation; a revoked token never authenticates.
    pub revoked: Option<u64>,
    /// Lowercase hex sha256 of the whole token.
    pub sha256: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    format: u32,
    tokens: Vec<TokenRecord>,
}

/// Why the token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{path}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}", path = path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("{path}: no token with id {id:?}: `semiclass-serve token list` shows them", path = path.display())]
    UnknownId { path: PathBuf, id: String },
}

/// The token file.
#[derive(Debug, Clone)]
pub struct TokenStore {
    path: PathBuf,
}

impl TokenStore {
    /// The token file at `path` (it need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> TokenStore {
        TokenStore { path: path.into() }
    }

    /// Where the tokens are kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every record, revoked ones included; none when the file is missing.
    pub fn read(&self) -> Result<Vec<TokenRecord>, TokenError> {
        let path = &self.path;
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(e)),
        };
        let mode = fs::metadata(path).map_err(|e| self.io(e))?.mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(self.invalid(format!(
                "is readable by others (mode {mode:o}): run `chmod 600` on it"
            )));
        }
        let file: TokenFile = serde_json::from_str(&text)
            .map_err(|e| self.invalid(format!("not a token file: {e}")))?;
        if file.format != FILE_FORMAT {
            return Err(self.invalid(format!(
                "token file format {} is not {FILE_FORMAT}: use the matching semiclass-serve",
                file.format
            )));
        }
        Ok(file.tokens)
    }

    /// Makes a new token named `name`; returns its record and the token,
    /// which exists nowhere else: show it once.
    pub fn create(&self, name: &str, now: u64) -> Result<(TokenRecord, String), TokenError> {
        let _lock = self.lock()?;
        let mut records = self.read()?;
        let id = loop {
            let id = hex(&random_bytes::<4>());
            if !records.iter().any(|r| r.id == id) {
                break id;
            }
        };
        let token = format!("{TOKEN_PREFIX}{id}_{}", new_secret());
        let record = TokenRecord {
            id,
            name: name.to_string(),
            created: now,
            revoked: None,
            sha256: hex(&secret_hash(&token)),
        };
        records.push(record.clone());
        self.write(records)?;
        Ok((record, token))
    }

    /// Revokes the token with this id (revoking twice keeps the first date).
    pub fn revoke(&self, id: &str, now: u64) -> Result<TokenRecord, TokenError> {
        let _lock = self.lock()?;
        let mut records = self.read()?;
        let Some(record) = records.iter_mut().find(|r| r.id == id) else {
            return Err(TokenError::UnknownId {
                path: self.path.clone(),
                id: id.to_string(),
            });
        };
        record.revoked.get_or_insert(now);
        let revoked = record.clone();
        self.write(records)?;
        Ok(revoked)
    }

    /// Replaces the file atomically: a reader sees the old or the new one.
    fn write(&self, tokens: Vec<TokenRecord>) -> Result<(), TokenError> {
        let file = TokenFile {
            format: FILE_FORMAT,
            tokens,
        };
        let json = serde_json::to_string_pretty(&file).expect("a token file serializes") + "\n";
        let tmp = self.sibling(".tmp");
        let _ = fs::remove_file(&tmp);
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| self.io(e))?;
        out.write_all(json.as_bytes())
            .and_then(|()| out.sync_all())
            .and_then(|()| fs::rename(&tmp, &self.path))
            .map_err(|e| self.io(e))
    }

    /// Serialises changes between processes.
    fn lock(&self) -> Result<File, TokenError> {
        let path = self.sibling(".lock");
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| self.io(e))?;
        file.lock().map_err(|e| self.io(e))?;
        Ok(file)
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        self.path.with_file_name(name)
    }

    fn io(&self, source: std::io::Error) -> TokenError {
        TokenError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn invalid(&self, reason: String) -> TokenError {
        TokenError::Invalid {
            path: self.path.clone(),
            reason,
        }
    }
}

/// The active tokens of a file, re-read whenever the file changes (one
/// `stat` per check), so a revocation takes effect at the next request.
/// A file that cannot be read authenticates nobody.
#[derive(Debug)]
pub struct LiveTokens {
    store: TokenStore,
    cached: Mutex<(Option<FileStamp>, TokenSet)>,
}

/// What changes when the file is replaced, edited or has its mode
/// changed (`chmod` moves the change time, not the modification time): a
/// file made readable by others while the server runs is noticed at the
/// next request and authenticates nobody, as it would at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    inode: u64,
    len: u64,
    mode: u32,
    mtime_ns: i128,
    ctime_ns: i128,
}

/// The active (not revoked) tokens among `records`; a record whose hash is
/// not 64 hex digits never matches.
pub fn active_tokens(records: &[TokenRecord]) -> TokenSet {
    TokenSet::from_hashes(
        records
            .iter()
            .filter(|r| r.revoked.is_none())
            .filter_map(|r| unhex32(&r.sha256)),
    )
}

impl LiveTokens {
    /// Follows the tokens of `store`.
    pub fn new(store: TokenStore) -> LiveTokens {
        LiveTokens {
            store,
            cached: Mutex::new((None, TokenSet::default())),
        }
    }

    /// Whether `token` is active now.
    pub fn verify(&self, token: &str) -> bool {
        self.current().verify(token)
    }

    /// The active tokens now.
    pub fn current(&self) -> TokenSet {
        let nanos = |s: i64, ns: i64| i128::from(s) * 1_000_000_000 + i128::from(ns);
        let stamp = fs::metadata(self.store.path()).ok().map(|m| FileStamp {
            inode: m.ino(),
            len: m.len(),
            mode: m.mode(),
            mtime_ns: nanos(m.mtime(), m.mtime_nsec()),
            ctime_ns: nanos(m.ctime(), m.ctime_nsec()),
        });
        let mut cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        if cached.0 != stamp {
            let set = match self.store.read() {
                Ok(records) => active_tokens(&records),
                Err(err) => {
                    tracing::error!("{err}; no token is accepted until it is fixed");
                    TokenSet::default()
                }
            };
            *cached = (stamp, set);
        }
        cached.1.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn store() -> (tempfile::TempDir, TokenStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(dir.path().join("tokens.json"));
        (dir, store)
    }

    #[test]
    fn a_created_token_verifies_and_only_its_hash_is_stored() {
        let (_dir, store) = store();
        let (record, token) = store.create("ci", 100).unwrap();
        assert!(token.starts_with(&format!("{TOKEN_PREFIX}{}_", record.id)));
        assert_eq!(token.len(), TOKEN_PREFIX.len() + 8 + 1 + 43);
        let text = fs::read_to_string(store.path()).unwrap();
        assert!(!text.contains(&token[TOKEN_PREFIX.len() + 9..]), "{text}");
        let mode = fs::metadata(store.path()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let set = active_tokens(&store.read().unwrap());
        assert!(set.verify(&token));
        assert!(!set.verify(&token[..token.len() - 1]));
        assert!(!set.verify(""));
    }

    #[test]
    fn revoked_tokens_stop_verifying_and_others_keep_working() {
        let (_dir, store) = store();
        let (first, first_token) = store.create("a", 1).unwrap();
        let (_, second_token) = store.create("b", 2).unwrap();
        let live = LiveTokens::new(store.clone());
        assert!(live.verify(&first_token) && live.verify(&second_token));
        assert_eq!(store.revoke(&first.id, 3).unwrap().revoked, Some(3));
        assert_eq!(store.revoke(&first.id, 4).unwrap().revoked, Some(3));
        assert!(!live.verify(&first_token));
        assert!(live.verify(&second_token));
        let err = store.revoke("nope", 5).unwrap_err();
        assert!(err.to_string().contains("token list"), "{err}");
    }

    #[test]
    fn a_file_others_can_read_authenticates_nobody() {
        let (_dir, store) = store();
        let (_, token) = store.create("a", 1).unwrap();
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o644)).unwrap();
        let err = store.read().unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        assert!(!LiveTokens::new(store).verify(&token));
    }

    #[test]
    fn a_file_made_readable_while_serving_stops_authenticating() {
        let (_dir, store) = store();
        let (_, token) = store.create("a", 1).unwrap();
        let live = LiveTokens::new(store.clone());
        assert!(live.verify(&token));
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!live.verify(&token), "the mode change went unnoticed");
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o600)).unwrap();
        assert!(live.verify(&token));
    }

    #[test]
    fn a_missing_file_means_no_tokens() {
        let (_dir, store) = store();
        assert!(store.read().unwrap().is_empty());
        assert!(LiveTokens::new(store).current().is_empty());
    }
}
