//! Keyed fingerprints: HMAC-SHA256 over canonical JSON.
//!
//! A plain hash of, say, a Secret's data in a status that every CTJ reader can see lets them
//! confirm guesses of the secret offline; keyed with a per-installation secret it reveals
//! nothing.

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::fmt;

use super::canonical::{Sink, write_canonical};

type HmacSha256 = Hmac<Sha256>;

/// The fingerprint recorded for an object that does not exist.
pub const ABSENT: &str = "absent";

/// Minimum key length accepted, in bytes.
pub const MIN_KEY_LEN: usize = 16;

/// The installation's fingerprint key.
#[derive(Clone)]
pub struct FingerprintKey {
    bytes: Vec<u8>,
    id: String,
}

/// A key that is too short to be safe.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the fingerprint key is {0} bytes long; it needs at least {MIN_KEY_LEN}")]
pub struct KeyTooShort(pub usize);

impl FingerprintKey {
    /// Wraps raw key bytes.
    pub fn new(bytes: Vec<u8>) -> Result<Self, KeyTooShort> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(KeyTooShort(bytes.len()));
        }
        let id = mac_hex(&bytes, b"kube-changejob fingerprint key id")[..16].to_string();
        Ok(FingerprintKey { bytes, id })
    }

    /// A fixed, public key for offline debugging (`kube-changejob fields` without `--key-file`).
    /// Fingerprints made with it differ from the cluster's.
    pub fn development() -> Self {
        let bytes = b"kube-changejob development key, not secret".to_vec();
        let id = mac_hex(&bytes, b"kube-changejob fingerprint key id")[..16].to_string();
        FingerprintKey { bytes, id }
    }

    /// A short identifier of the key, safe to publish (an HMAC of a constant, not the key).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Fingerprint of the given selected content.
    pub fn fingerprint(&self, content: &Value) -> Fingerprint {
        let Ok(mut mac) = HmacSha256::new_from_slice(&self.bytes) else {
            return Fingerprint(String::new());
        };
        write_canonical(content, &mut MacSink(&mut mac));
        Fingerprint(hex(&mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FingerprintKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Feeds canonical JSON straight into the MAC.
struct MacSink<'a>(&'a mut HmacSha256);

impl Sink for MacSink<'_> {
    fn push(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn mac_hex(key: &[u8], message: &[u8]) -> String {
    // HMAC accepts keys of any length, so new_from_slice cannot fail here.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return String::new();
    };
    mac.update(message);
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xF)]));
    }
    out
}

/// The fingerprint of a watched object's selected content (lowercase hex), or `absent`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub String);

impl Fingerprint {
    /// The fingerprint of an object that does not exist.
    pub fn absent() -> Self {
        Fingerprint(ABSENT.to_string())
    }

    /// Whether this is the fingerprint of a missing object.
    pub fn is_absent(&self) -> bool {
        self.0 == ABSENT
    }

    /// The text form stored in status.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn key(seed: u8) -> FingerprintKey {
        FingerprintKey::new(vec![seed; 32]).unwrap_or_else(|_| FingerprintKey::development())
    }

    #[test]
    fn fingerprint_is_independent_of_key_order_and_formatting() {
        let a: Value = serde_json::from_str(r#"{"data":{"a":"1","b":"2"},"kind":"ConfigMap"}"#)
            .unwrap_or_default();
        let b: Value = serde_json::from_str(
            "{\n  \"kind\": \"ConfigMap\",\n  \"data\": { \"b\": \"2\", \"a\": \"1\" }\n}",
        )
        .unwrap_or_default();
        assert_eq!(key(1).fingerprint(&a), key(1).fingerprint(&b));
    }

    #[test]
    fn different_content_gives_different_fingerprints() {
        assert_ne!(
            key(1).fingerprint(&json!({"a": 1})),
            key(1).fingerprint(&json!({"a": 2}))
        );
    }

    #[test]
    fn fingerprint_depends_on_the_key() {
        let v = json!({"data": {"password": "hunter2"}});
        assert_ne!(key(1).fingerprint(&v), key(2).fingerprint(&v));
    }

    #[test]
    fn streamed_fingerprint_equals_the_mac_of_the_canonical_text() {
        let v = json!({"b": [1, 2.0, "x\ny"], "a": {"z": null, "y": true}});
        let text = crate::detect::canonical::to_canonical_string(&v);
        assert_eq!(key(7).fingerprint(&v).0, mac_hex(&[7; 32], text.as_bytes()));
    }

    #[test]
    fn fingerprint_is_not_the_plain_sha256() {
        use sha2::Digest;
        let v = json!({"a": 1});
        let plain = format!(
            "{:x}",
            Sha256::digest(crate::detect::canonical::to_canonical_string(&v).as_bytes())
        );
        assert_ne!(key(1).fingerprint(&v).0, plain);
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(FingerprintKey::new(vec![0; 8]).err(), Some(KeyTooShort(8)));
    }

    #[test]
    fn key_id_identifies_the_key_without_revealing_it() {
        assert_eq!(key(1).id(), key(1).id());
        assert_ne!(key(1).id(), key(2).id());
        assert_eq!(key(1).id().len(), 16);
    }

    #[test]
    fn absent_never_collides_with_a_content_fingerprint() {
        assert_ne!(key(1).fingerprint(&json!("absent")), Fingerprint::absent());
        assert_eq!(key(1).fingerprint(&Value::Null).0.len(), 64);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            "[a-z0-9]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,4}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Rebuilds every object with its keys in reverse order and pretty-prints it.
    fn reorder(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut entries: Vec<_> = m.iter().collect();
                entries.reverse();
                let mut out = serde_json::Map::new();
                for (k, v) in entries {
                    out.insert(k.clone(), reorder(v));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(reorder).collect()),
            other => other.clone(),
        }
    }

    proptest! {
        #[test]
        fn fingerprint_ignores_key_order_and_whitespace(v in arb_json()) {
            let pretty = serde_json::to_string_pretty(&reorder(&v)).unwrap_or_default();
            let reparsed: Value = serde_json::from_str(&pretty).unwrap_or(Value::Null);
            prop_assert_eq!(key(3).fingerprint(&v), key(3).fingerprint(&reparsed));
        }

        #[test]
        fn canonical_form_reparses_to_the_same_value(v in arb_json()) {
            let text = crate::detect::canonical::to_canonical_string(&v);
            let back: Value = serde_json::from_str(&text).unwrap_or(Value::Bool(false));
            prop_assert_eq!(back, v);
        }
    }
}
