//! State at rest: with a key set, the state, its backups and saved plans are
//! encrypted with AES-256-GCM, as OpenTofu encrypts its state. The key comes
//! from STACKCTL_STATE_KEY (base64 of 32 bytes) or STACKCTL_STATE_KEY_FILE;
//! during a rotation, STACKCTL_STATE_KEY_PREVIOUS(_FILE) still reads what the
//! old key wrote. Without the key an encrypted file is refused, never
//! overwritten.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{what} is encrypted with key {key_id}, and {}; set STACKCTL_STATE_KEY (or STACKCTL_STATE_KEY_FILE) to that key, or STACKCTL_STATE_KEY_PREVIOUS while rotating. stackctl never overwrites a state it cannot read", if .have.is_empty() { "no key is set".to_string() } else { format!("the key set is {}", .have) })]
    NoKey {
        what: String,
        key_id: String,
        have: String,
    },
    #[error(
        "{what} cannot be decrypted: it was changed or is damaged (AES-GCM authentication failed)"
    )]
    Damaged { what: String },
    #[error("{var}: {message}")]
    BadKey { var: String, message: String },
    #[error("cannot encrypt {what}: the system's random number generator failed")]
    Random { what: String },
    #[error("{what} is not encrypted, but STACKCTL_STATE_KEY is set: a plain file may have been put in place of the encrypted one. If this state is being encrypted for the first time, run `stackctl state rekey` (it encrypts it); a plain saved plan is made again with `stackctl plan --out`")]
    Plain { what: String },
    #[error("{what} holds the encrypted {found}, not the {expected}: files were swapped or copied over each other")]
    Swapped {
        what: String,
        found: String,
        expected: String,
    },
}

/// A key, and the id stored beside what it encrypts (a hash prefix: it tells
/// keys apart without revealing them).
#[derive(Clone)]
pub struct Key {
    bytes: [u8; 32],
    pub id: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id)
    }
}

impl Key {
    pub fn from_bytes(bytes: [u8; 32]) -> Key {
        let id = Sha256::digest(bytes)
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect();
        Key { bytes, id }
    }

    fn parse(var: &str, text: &[u8]) -> Result<Key, SealError> {
        let bad = |message: String| SealError::BadKey {
            var: var.to_string(),
            message,
        };
        let raw = if text.len() == 32 {
            text.to_vec()
        } else {
            let trimmed = String::from_utf8_lossy(text).trim().to_string();
            B64.decode(trimmed.as_bytes()).map_err(|_| {
                bad("must be 32 bytes, base64-encoded (`openssl rand -base64 32`)".into())
            })?
        };
        let bytes: [u8; 32] = raw
            .try_into()
            .map_err(|v: Vec<u8>| bad(format!("is {} bytes; AES-256 needs 32", v.len())))?;
        Ok(Key::from_bytes(bytes))
    }

    fn from_env(name: &str) -> Result<Option<Key>, SealError> {
        if let Some(v) = std::env::var_os(name).filter(|v| !v.is_empty()) {
            return Key::parse(name, v.as_encoded_bytes()).map(Some);
        }
        let file_var = format!("{name}_FILE");
        if let Some(path) = std::env::var_os(&file_var).filter(|v| !v.is_empty()) {
            let bytes = std::fs::read(&path).map_err(|e| SealError::BadKey {
                var: file_var.clone(),
                message: format!("cannot read {}: {e}", std::path::Path::new(&path).display()),
            })?;
            return Key::parse(&file_var, &bytes).map(Some);
        }
        Ok(None)
    }
}

/// The keys of this run: the one that writes, and one that still reads.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    pub current: Option<Key>,
    pub previous: Option<Key>,
    /// Read a plain file although a key is set: only `state rekey`, which
    /// encrypts a state for the first time, says so.
    pub accept_plain: bool,
}

impl Keys {
    pub fn from_env() -> Result<Keys, SealError> {
        Ok(Keys {
            current: Key::from_env("STACKCTL_STATE_KEY")?,
            previous: Key::from_env("STACKCTL_STATE_KEY_PREVIOUS")?,
            accept_plain: false,
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    stackctl_encrypted: u32,
    algorithm: String,
    key_id: String,
    /// What the ciphertext is (`state of demo`, `journal of demo, serial
    /// 7`, `plan`): authenticated with it, so one file cannot be passed off
    /// as another. Empty in files written before it was.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    context: String,
    nonce: String,
    data: String,
}

/// What a ciphertext is authenticated with: its key's id and its context.
fn aad(key_id: &str, context: &str) -> Vec<u8> {
    match context {
        "" => key_id.as_bytes().to_vec(),
        _ => format!("{key_id}\n{context}").into_bytes(),
    }
}

fn cipher(key: &Key) -> Option<LessSafeKey> {
    UnboundKey::new(&AES_256_GCM, &key.bytes)
        .ok()
        .map(LessSafeKey::new)
}

/// `plain` as written to disk: encrypted with the current key, if any, and
/// bound to `context` (what it is).
pub fn seal(keys: &Keys, plain: &[u8], what: &str, context: &str) -> Result<Vec<u8>, SealError> {
    let Some(key) = &keys.current else {
        return Ok(plain.to_vec());
    };
    let failed = || SealError::Random {
        what: what.to_string(),
    };
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).map_err(|_| failed())?;
    let mut data = plain.to_vec();
    cipher(key)
        .ok_or_else(failed)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(&key.id, context).as_slice()),
            &mut data,
        )
        .map_err(|_| failed())?;
    let envelope = Envelope {
        stackctl_encrypted: 1,
        algorithm: "AES-256-GCM".into(),
        key_id: key.id.clone(),
        context: context.to_string(),
        nonce: B64.encode(nonce),
        data: B64.encode(data),
    };
    let mut out = serde_json::to_vec_pretty(&envelope).unwrap_or_default();
    out.push(b'\n');
    Ok(out)
}

/// Whether these bytes are an encrypted file, and with which key.
pub fn key_id_of(bytes: &[u8]) -> Option<String> {
    serde_json::from_slice::<Envelope>(bytes)
        .ok()
        .filter(|e| e.stackctl_encrypted == 1)
        .map(|e| e.key_id)
}

/// The plain bytes of a file that must be `context`: decrypted with
/// whichever key wrote it, or as they are when the file is not encrypted
/// and no key is set.
pub fn open(keys: &Keys, bytes: &[u8], what: &str, context: &str) -> Result<Vec<u8>, SealError> {
    let (plain, found) = open_any(keys, bytes, what)?;
    match found {
        Some(found) if !found.is_empty() && found != context => Err(SealError::Swapped {
            what: what.to_string(),
            found,
            expected: context.to_string(),
        }),
        _ => Ok(plain),
    }
}

/// The plain bytes of a file, and the context it was encrypted with (None:
/// it was not encrypted; empty: written before contexts were).
pub fn open_any(
    keys: &Keys,
    bytes: &[u8],
    what: &str,
) -> Result<(Vec<u8>, Option<String>), SealError> {
    let Some(envelope) = serde_json::from_slice::<Envelope>(bytes)
        .ok()
        .filter(|e| e.stackctl_encrypted == 1)
    else {
        if keys.current.is_some() && !keys.accept_plain {
            return Err(SealError::Plain {
                what: what.to_string(),
            });
        }
        return Ok((bytes.to_vec(), None));
    };
    let key = [&keys.current, &keys.previous]
        .into_iter()
        .flatten()
        .find(|k| k.id == envelope.key_id)
        .ok_or_else(|| SealError::NoKey {
            what: what.to_string(),
            key_id: envelope.key_id.clone(),
            have: [&keys.current, &keys.previous]
                .into_iter()
                .flatten()
                .map(|k| k.id.clone())
                .collect::<Vec<_>>()
                .join(" and "),
        })?;
    let damaged = || SealError::Damaged {
        what: what.to_string(),
    };
    let nonce: [u8; NONCE_LEN] = B64
        .decode(envelope.nonce.as_bytes())
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(damaged)?;
    let mut data = B64
        .decode(envelope.data.as_bytes())
        .map_err(|_| damaged())?;
    let plain = cipher(key)
        .ok_or_else(damaged)?
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad(&key.id, &envelope.context).as_slice()),
            &mut data,
        )
        .map_err(|_| damaged())?;
    Ok((plain.to_vec(), Some(envelope.context)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(current: u8, previous: Option<u8>) -> Keys {
        Keys {
            current: Some(Key::from_bytes([current; 32])),
            previous: previous.map(|p| Key::from_bytes([p; 32])),
            accept_plain: false,
        }
    }

    #[test]
    fn sealed_bytes_open_with_the_key_and_hide_the_text() {
        let k = keys(1, None);
        let sealed = seal(&k, b"{\"secret\": \"hunter2\"}", "s", "state of s").unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("hunter2"));
        assert_eq!(
            open(&k, &sealed, "state", "state of s").unwrap(),
            b"{\"secret\": \"hunter2\"}"
        );
        assert_ne!(
            seal(&k, b"x", "s", "c").unwrap(),
            seal(&k, b"x", "s", "c").unwrap(),
            "a fresh nonce every time"
        );
    }

    #[test]
    fn without_the_key_a_sealed_file_is_refused_naming_the_key() {
        let sealed = seal(&keys(1, None), b"state", "s", "c").unwrap();
        let err = open(&Keys::default(), &sealed, "state/s.json", "c")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "encrypted with key {}",
                Key::from_bytes([1; 32]).id
            )),
            "{err}"
        );
        assert_contains!(err, "no key is set");
        assert!(open(&keys(2, None), &sealed, "s", "c").is_err());
    }

    #[test]
    fn the_previous_key_reads_during_a_rotation() {
        let sealed = seal(&keys(1, None), b"state", "s", "c").unwrap();
        assert_eq!(
            open(&keys(2, Some(1)), &sealed, "s", "c").unwrap(),
            b"state"
        );
    }

    #[test]
    fn a_changed_byte_is_detected() {
        let k = keys(1, None);
        let mut sealed = seal(&k, b"state", "s", "c").unwrap();
        let text = String::from_utf8(sealed.clone()).unwrap();
        let data_at = text.find("\"data\": \"").unwrap() + 10;
        sealed[data_at] = if sealed[data_at] == b'A' { b'B' } else { b'A' };
        assert!(matches!(
            open(&k, &sealed, "s", "c"),
            Err(SealError::Damaged { .. })
        ));
    }

    #[test]
    fn plain_files_read_as_they_are_only_without_a_key_or_when_told() {
        let plain = b"{\"version\": 1}";
        assert_eq!(open(&Keys::default(), plain, "s", "c").unwrap(), plain);
        assert!(matches!(
            open(&keys(1, None), plain, "s", "c"),
            Err(SealError::Plain { .. })
        ));
        let first_time = Keys {
            accept_plain: true,
            ..keys(1, None)
        };
        assert_eq!(open(&first_time, plain, "s", "c").unwrap(), plain);
    }

    #[test]
    fn a_ciphertext_is_bound_to_what_it_is() {
        let k = keys(1, None);
        let entry = seal(&k, b"entry", "j", "journal of demo, serial 5").unwrap();
        assert!(open(&k, &entry, "j", "journal of demo, serial 5").is_ok());
        let err = open(&k, &entry, "state/demo.json", "state of demo").unwrap_err();
        assert!(matches!(err, SealError::Swapped { .. }), "{err}");
        // The context cannot be edited to pass: it is authenticated.
        let text = String::from_utf8(entry)
            .unwrap()
            .replace("serial 5", "serial 6");
        assert!(matches!(
            open(&k, text.as_bytes(), "j", "journal of demo, serial 6"),
            Err(SealError::Damaged { .. })
        ));
    }

    #[test]
    fn keys_are_base64_of_32_bytes() {
        assert!(Key::parse("K", B64.encode([7u8; 32]).as_bytes()).is_ok());
        let err = Key::parse("K", b"short").unwrap_err().to_string();
        assert_contains!(err, "base64");
    }
}
