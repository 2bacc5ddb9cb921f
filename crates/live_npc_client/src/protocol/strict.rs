//! Strict parsing, as the real server does it: an unknown field or enum value is an error that
//! names it. One set of types serves both sides; strictness is a mode of the parse, not a second
//! copy of the protocol.

use std::fmt::Write as _;

use serde::Deserialize;

use super::error::DecodeError;
pub use super::mode::truncate_value;
use super::mode::{INVALID_ENUM_MARKER, StrictGuard};

/// Converts a JSON path segment (`generationConfig`) to its proto field name (`generation_config`).
fn snake(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len() + 4);
    for c in segment.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Renders a path as the server does: `setup.generation_config.response_modalities[0]`.
fn proto_path<'a>(segments: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for seg in segments {
        if seg.starts_with('[') {
            out.push_str(seg);
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&snake(seg));
        }
    }
    out
}

fn segments_of_ignored(path: &serde_ignored::Path<'_>, out: &mut Vec<String>) {
    use serde_ignored::Path;
    match path {
        Path::Root => {}
        Path::Seq { parent, index } => {
            segments_of_ignored(parent, out);
            out.push(format!("[{index}]"));
        }
        Path::Map { parent, key } => {
            segments_of_ignored(parent, out);
            out.push(key.clone());
        }
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => {
            segments_of_ignored(parent, out)
        }
    }
}

fn segments_of_error(path: &serde_path_to_error::Path) -> Vec<String> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|s| match s {
            Segment::Seq { index } => Some(format!("[{index}]")),
            Segment::Map { key } => Some(key.clone()),
            Segment::Enum { variant } => Some(variant.clone()),
            Segment::Unknown => None,
        })
        .collect()
}

/// Parses `bytes` strictly: unknown fields and enum values are errors worded as the real
/// server words them (`Unknown name "x" at 'setup': Cannot find field.`).
pub fn from_slice_strict<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, DecodeError> {
    let _guard = StrictGuard::enter();

    let mut first_unknown: Option<Vec<String>> = None;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result = {
        let mut on_ignored = |path: serde_ignored::Path<'_>| {
            if first_unknown.is_none() {
                let mut segs = Vec::new();
                segments_of_ignored(&path, &mut segs);
                first_unknown = Some(segs);
            }
        };
        let ignored = serde_ignored::Deserializer::new(&mut de, &mut on_ignored);
        serde_path_to_error::deserialize::<_, T>(ignored)
    };
    // An unknown name is what the server reports first, even if the message is also incomplete.
    if let Some(segs) = first_unknown {
        return Err(unknown_field(&segs));
    }
    let value = match result {
        Ok(v) => v,
        Err(err) => {
            let segs = segments_of_error(err.path());
            let inner = err.into_inner();
            let text = inner.to_string();
            if let Some(rest) = text.strip_prefix(INVALID_ENUM_MARKER) {
                // rest = `TypeName), "VALUE" at line ...`: drop serde_json's position suffix.
                let rest = rest.split(" at line ").next().unwrap_or(rest);
                let mut msg = String::new();
                let _ = write!(msg, "Invalid value at '{}' ({rest}", proto_path(segs.iter().map(String::as_str)));
                return Err(DecodeError::InvalidValue { message: msg });
            }
            return Err(DecodeError::from_json(inner, bytes.len()));
        }
    };
    de.end().map_err(|e| DecodeError::from_json(e, bytes.len()))?;
    Ok(value)
}

fn unknown_field(segs: &[String]) -> DecodeError {
    let (name, parent) = match segs.split_last() {
        Some((name, parent)) => (name.clone(), proto_path(parent.iter().map(String::as_str))),
        None => (String::new(), String::new()),
    };
    let name = truncate_value(&name).to_owned();
    let message = if parent.is_empty() {
        format!("Invalid JSON payload received. Unknown name \"{name}\": Cannot find field.")
    } else {
        format!("Invalid JSON payload received. Unknown name \"{name}\" at '{parent}': Cannot find field.")
    };
    DecodeError::UnknownField { name, path: parent, message }
}
