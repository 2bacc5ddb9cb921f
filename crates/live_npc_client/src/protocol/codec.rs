//! Wire encodings: base64 bytes (both alphabets), 16-bit PCM, audio MIME types, proto3
//! durations and int64-as-string.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use base64_simd::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::error::DecodeError;

/// Base64 text of a `bytes` field, kept undecoded and (when parsed from a frame) borrowed from
/// it, so that audio is decoded once, straight into the caller's buffer.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Base64Data<'a>(Cow<'a, str>);

impl fmt::Debug for Base64Data<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Megabytes of base64 in a log line help nobody.
        write!(f, "Base64Data({} chars)", self.0.len())
    }
}

impl<'a> Base64Data<'a> {
    /// Wraps base64 text as it is (standard or URL-safe, padded or not).
    pub fn from_base64(text: impl Into<Cow<'a, str>>) -> Self {
        Self(text.into())
    }

    /// Encodes bytes with the standard alphabet, padded (canonical proto3 JSON).
    pub fn encode(bytes: &[u8]) -> Base64Data<'static> {
        Base64Data(Cow::Owned(STANDARD.encode_type::<String>(bytes)))
    }

    /// Encodes 16-bit PCM samples as little-endian bytes, without an intermediate copy on
    /// little-endian machines.
    pub fn encode_pcm16(samples: &[i16]) -> Base64Data<'static> {
        if cfg!(target_endian = "little") {
            Self::encode(bytemuck::cast_slice(samples))
        } else {
            let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
            Self::encode(&bytes)
        }
    }

    /// The base64 text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Length of the base64 text in bytes.
    pub fn encoded_len(&self) -> usize {
        self.0.len()
    }

    /// Copies borrowed text so the value outlives the frame it came from.
    pub fn into_owned(self) -> Base64Data<'static> {
        Base64Data(Cow::Owned(self.0.into_owned()))
    }

    /// Decodes into a new vector.
    pub fn decode(&self) -> Result<Vec<u8>, DecodeError> {
        let mut out = Vec::new();
        self.decode_into(&mut out)?;
        Ok(out)
    }

    /// Decodes into `out` (cleared first), reusing its allocation.
    pub fn decode_into(&self, out: &mut Vec<u8>) -> Result<(), DecodeError> {
        let src = self.0.as_bytes();
        out.clear();
        out.resize(decoded_len_upper(src.len()), 0);
        let n = decode_any(src, out.as_mut_slice())?;
        out.truncate(n);
        Ok(())
    }

    /// Decodes 16-bit little-endian PCM into `out` (cleared first), reusing its allocation and
    /// decoding straight into the sample storage.
    pub fn decode_pcm16_into(&self, out: &mut Vec<i16>) -> Result<(), DecodeError> {
        let src = self.0.as_bytes();
        out.clear();
        let upper = decoded_len_upper(src.len());
        out.resize(upper.div_ceil(2), 0);
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(out.as_mut_slice());
        let n = decode_any(src, bytes)?;
        if n % 2 != 0 {
            out.clear();
            return Err(DecodeError::OddPcmLength { bytes: n });
        }
        out.truncate(n / 2);
        if cfg!(target_endian = "big") {
            for s in out.iter_mut() {
                *s = i16::from_le(*s);
            }
        }
        Ok(())
    }

    /// Appends decoded 16-bit PCM to `out`, returning how many samples were added.
    pub fn append_pcm16(&self, out: &mut Vec<i16>) -> Result<usize, DecodeError> {
        let start = out.len();
        let src = self.0.as_bytes();
        let upper = decoded_len_upper(src.len()).div_ceil(2);
        out.resize(start + upper, 0);
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut out[start..]);
        let n = match decode_any(src, bytes) {
            Ok(n) => n,
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        };
        if n % 2 != 0 {
            out.truncate(start);
            return Err(DecodeError::OddPcmLength { bytes: n });
        }
        out.truncate(start + n / 2);
        if cfg!(target_endian = "big") {
            for s in out[start..].iter_mut() {
                *s = i16::from_le(*s);
            }
        }
        Ok(n / 2)
    }
}

impl From<Vec<u8>> for Base64Data<'static> {
    fn from(bytes: Vec<u8>) -> Self {
        Base64Data::encode(&bytes)
    }
}

/// An upper bound of the decoded length of `n` base64 characters.
fn decoded_len_upper(n: usize) -> usize {
    n.div_ceil(4) * 3
}

/// Decodes standard or URL-safe base64, padded or not, into `dst` (which is long enough).
fn decode_any(src: &[u8], dst: &mut [u8]) -> Result<usize, DecodeError> {
    // Fast path: what the server and canonical clients send.
    if let Ok(out) = STANDARD.decode(src, base64_simd::Out::from_slice(dst)) {
        return Ok(out.len());
    }
    let url = src.iter().any(|&b| b == b'-' || b == b'_');
    let padded = src.last() == Some(&b'=');
    let engine = match (url, padded) {
        (true, true) => URL_SAFE,
        (true, false) => URL_SAFE_NO_PAD,
        (false, true) => STANDARD,
        (false, false) => STANDARD_NO_PAD,
    };
    engine
        .decode(src, base64_simd::Out::from_slice(dst))
        .map(|out| out.len())
        .map_err(|_| DecodeError::Base64 { len: src.len() })
}

impl Serialize for Base64Data<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Base64Data<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Base64Data<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("base64 text")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Base64Data(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Base64Data(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Base64Data(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A parsed media type such as `audio/pcm;rate=16000`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MimeType {
    /// `type/subtype`, lower case (`audio/pcm`).
    pub essence: String,
    /// The `rate=` parameter, if present.
    pub rate: Option<u32>,
}

impl MimeType {
    /// PCM at the given sample rate: `audio/pcm;rate=RATE`.
    pub fn pcm(rate: u32) -> String {
        format!("audio/pcm;rate={rate}")
    }

    /// Parses `type/subtype;param=value;...`. A malformed `rate` is an error, not a default.
    pub fn parse(text: &str) -> Result<MimeType, DecodeError> {
        let mut parts = text.split(';');
        let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let valid = essence.split_once('/').is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !b.contains('/'));
        if !valid {
            return Err(DecodeError::MimeType { text: text.chars().take(64).collect() });
        }
        let mut rate = None;
        for param in parts {
            let Some((k, v)) = param.split_once('=') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("rate") {
                let parsed = v.trim().trim_matches('"').parse::<u32>().ok().filter(|r| *r > 0);
                match parsed {
                    Some(r) => rate = Some(r),
                    None => {
                        return Err(DecodeError::MimeType { text: text.chars().take(64).collect() });
                    }
                }
            }
        }
        Ok(MimeType { essence, rate })
    }

    /// Whether this is raw 16-bit PCM (`audio/pcm`, `audio/l16`, `audio/raw`).
    pub fn is_pcm(&self) -> bool {
        matches!(self.essence.as_str(), "audio/pcm" | "audio/l16" | "audio/raw")
    }

    /// Whether this is any audio type.
    pub fn is_audio(&self) -> bool {
        self.essence.starts_with("audio/")
    }
}

/// Formats a duration as proto3 JSON (`"50s"`, `"1.5s"`).
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        format!("{secs}s")
    } else {
        let frac = format!("{nanos:09}");
        format!("{secs}.{}s", frac.trim_end_matches('0'))
    }
}

/// Parses a proto3 JSON duration (`"50s"`, `"1.5s"`; `"-0.2s"` clamps to zero, anything longer
/// than [`MAX_DURATION`] to it).
pub fn parse_duration(text: &str) -> Option<Duration> {
    parse_duration_unclamped(text).map(|d| d.min(MAX_DURATION))
}

/// The longest duration proto3 can carry (10 000 years): longer values from a peer are clamped to
/// it, so that no time computed from the wire can overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(315_576_000_000);

fn parse_duration_unclamped(text: &str) -> Option<Duration> {
    let body = text.trim().strip_suffix('s')?;
    let negative = body.starts_with('-');
    let body = body.trim_start_matches(['-', '+']);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if frac.len() > 9 {
        return None;
    }
    let secs: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let nanos: u32 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().ok()? };
    if negative {
        return Some(Duration::ZERO);
    }
    Some(Duration::new(secs, nanos))
}

/// serde helpers for `Option<Duration>` as a proto3 duration string.
pub(crate) mod opt_duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<Duration>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"1.5s\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_duration(v).map(Some).ok_or_else(|| {
                    E::custom(format_args!("invalid duration {:?}", super::super::mode::truncate_value(v)))
                })
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(V)
            }
        }
        d.deserialize_option(V)
    }
}

/// serde helpers for `Option<i64>` emitted as a JSON string and parsed from a number or a string.
pub(crate) mod opt_int64 {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<i64>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an int64 as a number or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Some(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v).map(Some).map_err(|_| E::custom("int64 out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                if v.fract() == 0.0 && v >= i64::MIN as f64 && v < i64::MAX as f64 {
                    Ok(Some(v as i64))
                } else {
                    Err(E::custom("int64 out of range or not integral"))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.trim().parse::<i64>().map(Some).map_err(|_| E::custom("invalid int64 string"))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(V)
            }
        }
        d.deserialize_option(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("50s"), Some(Duration::from_secs(50)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.000000001s"), Some(Duration::from_nanos(1)));
        assert_eq!(parse_duration("1.5"), None);
        // From a hostile peer: clamped, never a `Duration` that overflows an `Instant`.
        assert_eq!(parse_duration("18446744073709551615s"), Some(MAX_DURATION));
        assert_eq!(parse_duration("315576000001.5s"), Some(MAX_DURATION));
        assert_eq!(parse_duration("18446744073709551616s"), None, "beyond u64: not a number");
        assert_eq!(parse_duration("abc s"), None);
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(10)), "10s");
    }

    #[test]
    fn both_alphabets() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        let std = STANDARD.encode_type::<String>(&bytes);
        let url = URL_SAFE.encode_type::<String>(&bytes);
        let url_np = URL_SAFE_NO_PAD.encode_type::<String>(&bytes);
        for t in [std, url, url_np] {
            assert_eq!(Base64Data::from_base64(t).decode().unwrap(), bytes);
        }
    }
}
