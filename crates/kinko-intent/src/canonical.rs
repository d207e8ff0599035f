//! Canonical JSON: sorted keys, no whitespace, no floats.
//!
//! Written by hand rather than relying on `serde_json::Value`'s map order, because another crate
//! in the build can turn on `serde_json/preserve_order` through feature unification, which would
//! silently change the order of keys and every digest with it.

use serde_json::Value;

/// Errors producing canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CanonicalError {
    /// A floating-point number: canonical JSON carries integers only.
    #[error("canonical JSON has no floating-point numbers (found {0})")]
    Float(String),
    /// The value could not be serialized to JSON at all.
    #[error("cannot serialize to JSON: {0}")]
    Serialize(String),
}

/// Writes `value` as canonical JSON: object keys sorted by UTF-8 bytes, no insignificant
/// whitespace, integers only, strings escaped as `serde_json` escapes them.
pub fn to_canonical_json(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(512);
    write(value, &mut out)?;
    Ok(out)
}

fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if n.is_f64() {
                return Err(CanonicalError::Float(n.to_string()));
            }
            out.extend_from_slice(n.to_string().as_bytes());
        }
        Value::String(s) => write_str(s, out)?,
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(k, out)?;
                out.push(b':');
                write(v, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_str(s: &str, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    serde_json::to_writer(&mut *out, s).map_err(|e| CanonicalError::Serialize(e.to_string()))
}
