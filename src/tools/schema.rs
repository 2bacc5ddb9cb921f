//! JSON schemas for tool arguments: derived with schemars, checked before a tool runs.
//!
//! [`validate`] lists the supported keywords.

use std::cmp::Ordering;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use regex_lite::{Regex, RegexBuilder};
use serde_json::{Map, Number, Value};

/// The parameter schema of an argument type, as a self-contained JSON Schema object
/// (`parametersJsonSchema`). `$schema` and `title` are dropped: the model needs neither.
pub fn schema_for<A: schemars::JsonSchema>() -> Value {
    let schema = schemars::SchemaGenerator::default().into_root_schema_for::<A>();
    let mut value = schema.to_value();
    if let Some(obj) = value.as_object_mut() {
        obj.remove("$schema");
        obj.remove("title");
        if obj.get("type").is_none() && obj.get("properties").is_none() && obj.get("$ref").is_none() {
            obj.insert("type".into(), Value::String("object".into()));
        }
    }
    value
}

/// The schema of a tool without arguments.
pub fn empty_object_schema() -> Value {
    serde_json::json!({"type": "object", "properties": {}})
}

/// How deeply schemas may nest while checking one value: every property, item, `$ref` and
/// combinator branch is one level.
const MAX_DEPTH: usize = 64;
/// The longest `pattern` accepted, in bytes.
const MAX_PATTERN_LEN: usize = 1024;
/// The compiled size limit of a `pattern`, in bytes (regex-lite's search is O(size × input)).
const MAX_REGEX_SIZE: usize = 1 << 18;
/// How deeply values may nest for `uniqueItems`, `enum` and `const` comparisons.
const MAX_VALUE_DEPTH: usize = 128;
/// 2^127: floats at or beyond it do not fit in an `i128`.
const I128_LIMIT: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;

/// Checks `args` against `schema`; returns a message for the model on the first problem.
///
/// The message names the argument's path in backticks (e.g. ``"`items[2]` must be at most 5
/// characters"``). A defect of the schema itself (an invalid `pattern`, a `multipleOf` that is
/// not positive, a `$ref` to nothing, …) is an error that says the tool's schema is invalid.
///
/// The schema is trusted (the game's own argument type derives it), the arguments are not:
/// every check is bounded (nesting depth, pattern length and compiled size, linear-time
/// regexes, no quadratic `uniqueItems`) and nothing in the arguments can make it panic.
/// Supported keywords (JSON Schema 2020-12 as schemars 1 writes it, plus the draft-4 boolean
/// `exclusiveMinimum`/`exclusiveMaximum` and the older tuple `items: [...]`):
///
/// - any value: `type` (a name or a list, e.g. `["string", "null"]`), `enum`, `const` (numbers
///   compare by value: `1` equals `1.0`), the boolean schemas `true` and `false`;
/// - combinators: `$ref` (to `#`, `#/$defs/…` or `#/definitions/…`), `allOf`, `anyOf`, `oneOf`
///   (exactly one branch must match);
/// - numbers: `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` (compared exactly,
///   also for integers beyond 2^53), `multipleOf` (exact for integers, within a few ulps of the
///   quotient for fractions);
/// - strings: `minLength`, `maxLength` (in Unicode characters), `pattern` (regex-lite syntax,
///   close to ECMA-262 without look-around; unanchored search; at most 1024 bytes);
/// - arrays: `items`, `prefixItems`, `additionalItems`, `minItems`, `maxItems`, `uniqueItems`;
/// - objects: `properties`, `required`, `patternProperties`, `additionalProperties`,
///   `unevaluatedProperties`, `minProperties`, `maxProperties`. A property that no matching
///   part of the schema declares is rejected as unknown, even without
///   `additionalProperties: false`, unless `additionalProperties` or `unevaluatedProperties`
///   allows it.
///
/// Annotations (`description`, `format`, `default`, …) and other keywords are ignored.
pub fn validate(schema: &Value, args: &Value) -> Result<(), String> {
    let mut ctx = Ctx { root: schema, regexes: HashMap::new() };
    ctx.check_value(schema, args, "", 0).map_err(|e| match e {
        Error::Invalid(message) | Error::Schema(message) => message,
    })
}

/// Why a value does not pass.
enum Error {
    /// The value breaks the schema: a branch of `anyOf`/`oneOf` may still match.
    Invalid(String),
    /// The schema is broken: stops the whole check.
    Schema(String),
}

type Res<T> = Result<T, Error>;

fn at(path: &str) -> String {
    if path.is_empty() { "arguments".to_owned() } else { format!("`{path}`") }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

fn invalid<T>(message: String) -> Res<T> {
    Err(Error::Invalid(message))
}

fn schema_error<T>(path: &str, problem: impl std::fmt::Display) -> Res<T> {
    Err(Error::Schema(format!("the tool's schema for {} is invalid: {problem}", at(path))))
}

fn unknown<T>(path: &str, key: &str) -> Res<T> {
    invalid(format!("unknown argument `{}`", join(path, key)))
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.as_i64().is_some() || v.as_u64().is_some() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => true,
    }
}

/// A JSON number, exact for every integer `serde_json` holds.
#[derive(Clone, Copy, Debug)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn of(n: &Number) -> Num {
        if let Some(i) = n.as_i64() {
            Num::Int(i128::from(i))
        } else if let Some(u) = n.as_u64() {
            Num::Int(i128::from(u))
        } else {
            Num::Float(n.as_f64().unwrap_or(f64::NAN))
        }
    }

    /// The same number as an integer when it is one and fits.
    fn as_int(self) -> Option<i128> {
        match self {
            Num::Int(i) => Some(i),
            // In range and integral, so the cast is exact.
            Num::Float(f) if f.fract() == 0.0 && (-I128_LIMIT..I128_LIMIT).contains(&f) => Some(f as i128),
            Num::Float(_) => None,
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    /// Exact comparison, also between integers and floats; `None` only for NaN.
    fn cmp(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (Num::Float(a), Num::Float(b)) => a.partial_cmp(&b),
            (Num::Int(a), Num::Float(b)) => cmp_int_float(a, b),
            (Num::Float(a), Num::Int(b)) => cmp_int_float(b, a).map(Ordering::reverse),
        }
    }

    fn is_positive(self) -> bool {
        match self {
            Num::Int(i) => i > 0,
            Num::Float(f) => f > 0.0 && f.is_finite(),
        }
    }
}

fn cmp_int_float(i: i128, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    if f >= I128_LIMIT {
        return Some(Ordering::Less);
    }
    if f < -I128_LIMIT {
        return Some(Ordering::Greater);
    }
    let floor = f.floor();
    // -2^127 <= floor < 2^127 and integral: exact.
    let floor_int = floor as i128;
    Some(match i.cmp(&floor_int) {
        Ordering::Equal if f > floor => Ordering::Less,
        ordering => ordering,
    })
}

/// Whether `v` is a multiple of `m` (`m` > 0): exact for integers, within a few ulps otherwise.
fn is_multiple(v: Num, m: Num) -> bool {
    if let Some(m_int) = m.as_int() {
        return match v.as_int() {
            Some(v_int) => v_int.checked_rem(m_int) == Some(0),
            // Integral but beyond i128: `%` on floats is exact.
            None if v.as_f64().fract() == 0.0 => v.as_f64() % m.as_f64() == 0.0,
            None => false,
        };
    }
    let (v, m) = (v.as_f64(), m.as_f64());
    if m >= I128_LIMIT {
        // An integral `m` beyond i128: only an integral `v` can be a multiple.
        return v.fract() == 0.0 && v % m == 0.0;
    }
    let quotient = v / m;
    if !quotient.is_finite() {
        return false;
    }
    (quotient - quotient.round()).abs() <= quotient.abs().max(1.0) * 64.0 * f64::EPSILON
}

/// JSON equality: numbers compare by value, objects regardless of key order.
fn json_eq(a: &Value, b: &Value, depth: usize) -> bool {
    if depth > MAX_VALUE_DEPTH {
        return false;
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => Num::of(x).cmp(Num::of(y)) == Some(Ordering::Equal),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y, depth + 1))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, xv)| y.get(k).is_some_and(|yv| json_eq(xv, yv, depth + 1)))
        }
        _ => a == b,
    }
}

/// Writes a canonical form of `v` (sorted keys, integral numbers as integers) such that two
/// values have the same form exactly when [`json_eq`]. `false` if `v` nests too deeply.
fn canonical(v: &Value, out: &mut String, depth: usize) -> bool {
    if depth > MAX_VALUE_DEPTH {
        return false;
    }
    match v {
        Value::Number(n) => {
            let n = Num::of(n);
            match n.as_int() {
                Some(i) => out.push_str(&i.to_string()),
                None => out.push_str(&format!("{:?}", n.as_f64())),
            }
        }
        Value::Array(items) => {
            out.push('[');
            for item in items {
                if !canonical(item, out, depth + 1) {
                    return false;
                }
                out.push(',');
            }
            out.push(']');
        }
        Value::Object(obj) => {
            let mut keys: Vec<&String> = obj.keys().collect();
            keys.sort();
            out.push('{');
            for key in keys {
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if !canonical(&obj[key.as_str()], out, depth + 1) {
                    return false;
                }
                out.push(',');
            }
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
    true
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%').then(|| s.get(i + 1..i + 3)).flatten();
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// A limit such as `maxLength`: a non-negative integer.
fn count_limit(schema: &Map<String, Value>, key: &str, path: &str) -> Res<Option<u64>> {
    let Some(value) = schema.get(key) else {
        return Ok(None);
    };
    if let Some(n) = value.as_u64() {
        return Ok(Some(n));
    }
    match value.as_f64() {
        // Saturating cast: no string or array is that long anyway.
        Some(f) if f >= 0.0 && f.fract() == 0.0 => Ok(Some(f as u64)),
        _ => schema_error(path, format!("`{key}` must be a non-negative integer, not {value}")),
    }
}

/// A pair of count keywords (`minItems`/`maxItems`, ...) and how a message names the count.
struct Count {
    min: &'static str,
    max: &'static str,
    verb: &'static str,
    one: &'static str,
    many: &'static str,
}

/// Checks `len` against the pair of count keywords of `unit`.
fn check_count(schema: &Map<String, Value>, unit: &Count, len: u64, path: &str) -> Res<()> {
    if let Some(min) = count_limit(schema, unit.min, path)?
        && len < min
    {
        return invalid(format!("{} must {} at least {}", at(path), unit.verb, plural(min, unit.one, unit.many)));
    }
    if let Some(max) = count_limit(schema, unit.max, path)?
        && len > max
    {
        return invalid(format!("{} must {} at most {}", at(path), unit.verb, plural(max, unit.one, unit.many)));
    }
    Ok(())
}

fn number_keyword<'a>(schema: &'a Map<String, Value>, key: &str, path: &str) -> Res<Option<&'a Number>> {
    match schema.get(key) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(Some(n)),
        Some(other) => schema_error(path, format!("`{key}` must be a number, not {other}")),
    }
}

/// The object keys that the in-place parts of a schema declare, found without checking.
#[derive(Default)]
struct Declared<'a> {
    keys: HashSet<&'a str>,
    has_properties: bool,
    has_patterns: bool,
    /// `additionalProperties`/`unevaluatedProperties` allow other keys (or the search gave up).
    open: bool,
}

/// The object keys that a check covered: declared by a schema part that matched.
#[derive(Default)]
struct Covered<'a> {
    keys: HashSet<&'a str>,
    all: bool,
}

impl<'a> Covered<'a> {
    fn merge(&mut self, other: Covered<'a>) {
        self.all |= other.all;
        self.keys.extend(other.keys);
    }
}

struct Ctx<'a> {
    root: &'a Value,
    regexes: HashMap<&'a str, Regex>,
}

impl<'a> Ctx<'a> {
    fn resolve(&self, reference: &str, path: &str) -> Res<&'a Value> {
        let fragment = reference.strip_prefix('#').and_then(percent_decode);
        let found = match fragment.as_deref() {
            Some("") => Some(self.root),
            Some(pointer) => self.root.pointer(pointer),
            None => None,
        }
        .or_else(|| {
            // Older schemas: `$ref` by the definition's name alone.
            let name = reference.rsplit('/').next().unwrap_or(reference);
            ["$defs", "definitions"].iter().find_map(|defs| self.root.get(defs)?.get(name))
        });
        match found {
            Some(target) => Ok(target),
            None => schema_error(path, format!("`$ref` `{reference}` points to no definition")),
        }
    }

    fn regex(&mut self, pattern: &'a str, path: &str) -> Res<&Regex> {
        match self.regexes.entry(pattern) {
            Entry::Occupied(e) => Ok(e.into_mut()),
            Entry::Vacant(e) => {
                if pattern.len() > MAX_PATTERN_LEN {
                    return schema_error(path, format!("its pattern is longer than {MAX_PATTERN_LEN} bytes"));
                }
                match RegexBuilder::new(pattern).size_limit(MAX_REGEX_SIZE).build() {
                    Ok(regex) => Ok(e.insert(regex)),
                    Err(err) => schema_error(path, format!("its pattern `{pattern}` is not a valid regex: {err}")),
                }
            }
        }
    }

    /// The keys declared by `schema`'s `properties` and those of its `$ref`, `allOf`, `anyOf`
    /// and `oneOf` (all branches: the check afterwards narrows to the matching ones).
    fn declared(&self, schema: &'a Value, depth: usize, out: &mut Declared<'a>) {
        let Some(obj) = schema.as_object() else {
            return;
        };
        if depth > MAX_DEPTH {
            out.open = true;
            return;
        }
        if let Some(props) = obj.get("properties").and_then(Value::as_object) {
            out.has_properties = true;
            out.keys.extend(props.keys().map(String::as_str));
        }
        out.has_patterns |= obj.contains_key("patternProperties");
        for key in ["additionalProperties", "unevaluatedProperties"] {
            out.open |= obj.get(key).is_some_and(|v| v != &Value::Bool(false));
        }
        if let Some(reference) = obj.get("$ref").and_then(Value::as_str)
            && let Ok(target) = self.resolve(reference, "")
        {
            self.declared(target, depth + 1, out);
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            for branch in obj.get(key).and_then(Value::as_array).into_iter().flatten() {
                self.declared(branch, depth + 1, out);
            }
        }
    }

    /// Checks a value on its own (the arguments, a property, an item): also rejects object keys
    /// that no matching part of the schema declares.
    fn check_value(&mut self, schema: &'a Value, v: &'a Value, path: &str, depth: usize) -> Res<()> {
        let Some(obj) = v.as_object() else {
            return self.check(schema, v, path, depth).map(drop);
        };
        let mut declared = Declared::default();
        self.declared(schema, 0, &mut declared);
        let strict = declared.has_properties && !declared.open;
        // Unknown keys first: a misspelt key explains the "missing" one.
        if strict
            && !declared.has_patterns
            && let Some(key) = obj.keys().find(|k| !declared.keys.contains(k.as_str()))
        {
            return unknown(path, key);
        }
        let covered = self.check(schema, v, path, depth)?;
        if strict
            && !covered.all
            && let Some(key) = obj.keys().find(|k| !covered.keys.contains(k.as_str()))
        {
            return unknown(path, key);
        }
        Ok(())
    }

    /// Checks every keyword of `schema` against `v`; returns the object keys it covered.
    fn check(&mut self, schema: &'a Value, v: &'a Value, path: &str, depth: usize) -> Res<Covered<'a>> {
        if depth > MAX_DEPTH {
            return invalid(format!("{} nests too deeply", at(path)));
        }
        let schema = match schema {
            Value::Bool(true) => return Ok(Covered::default()),
            Value::Bool(false) => return invalid(format!("{} is not allowed here", at(path))),
            Value::Object(obj) => obj,
            other => return schema_error(path, format!("a schema must be an object or a boolean, not {other}")),
        };
        check_type(schema, v, path)?;
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.iter().any(|a| json_eq(a, v, 0))
        {
            let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
            return invalid(format!("{} must be one of {}", at(path), list.join(", ")));
        }
        if let Some(c) = schema.get("const")
            && !json_eq(c, v, 0)
        {
            return invalid(format!("{} must be {c}", at(path)));
        }
        let mut covered = Covered::default();
        match v {
            Value::Number(n) => check_number(schema, Num::of(n), path)?,
            Value::String(s) => self.check_string(schema, s, path)?,
            Value::Array(items) => self.check_array(schema, items, path, depth)?,
            Value::Object(obj) => covered = self.check_object(schema, obj, path, depth)?,
            _ => {}
        }
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let target = self.resolve(reference, path)?;
            covered.merge(self.check(target, v, path, depth + 1)?);
        }
        for branch in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
            covered.merge(self.check(branch, v, path, depth + 1)?);
        }
        if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
            covered.merge(self.check_any_of(branches, v, path, depth, false)?);
        }
        if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
            covered.merge(self.check_any_of(branches, v, path, depth, true)?);
        }
        if let (Value::Object(obj), Some(rest)) = (v, schema.get("unevaluatedProperties"))
            && !covered.all
        {
            for (key, value) in obj.iter().filter(|(k, _)| !covered.keys.contains(k.as_str())) {
                if rest == &Value::Bool(false) {
                    return unknown(path, key);
                }
                self.check_value(rest, value, &join(path, key), depth + 1)?;
            }
            covered.all = true;
        }
        Ok(covered)
    }

    /// `anyOf`, or `oneOf` if `exactly_one`.
    fn check_any_of(
        &mut self,
        branches: &'a [Value],
        v: &'a Value,
        path: &str,
        depth: usize,
        exactly_one: bool,
    ) -> Res<Covered<'a>> {
        let mut covered = Covered::default();
        let mut matched = 0;
        let mut errors = Vec::new();
        for branch in branches {
            match self.check(branch, v, path, depth + 1) {
                Ok(c) => {
                    matched += 1;
                    if exactly_one && matched > 1 {
                        return invalid(format!("{} matches more than one allowed form", at(path)));
                    }
                    covered.merge(c);
                    // Only objects need the keys of every matching branch.
                    if !exactly_one && !v.is_object() {
                        return Ok(covered);
                    }
                }
                Err(Error::Invalid(message)) => errors.push((branch, message)),
                Err(schema) => return Err(schema),
            }
        }
        if matched > 0 {
            return Ok(covered);
        }
        Err(Error::Invalid(self.no_match(branches, errors, v, path)))
    }

    /// The message when no branch matches: the one branch that fits `v`'s shape (its type, then
    /// also its required keys) explains best.
    fn no_match(&self, branches: &'a [Value], errors: Vec<(&'a Value, String)>, v: &Value, path: &str) -> String {
        let resolved = |branch: &'a Value| match branch.get("$ref").and_then(Value::as_str) {
            Some(reference) => self.resolve(reference, path).unwrap_or(branch),
            None => branch,
        };
        let type_fits = |branch: &Value| match branch.get("type") {
            Some(Value::String(ty)) => type_matches(ty, v),
            Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).any(|t| type_matches(t, v)),
            _ => true,
        };
        let required_fits = |branch: &Value| {
            let required = branch.get("required").and_then(Value::as_array).into_iter().flatten();
            v.as_object().is_none_or(|obj| required.filter_map(Value::as_str).all(|k| obj.contains_key(k)))
        };
        let only = |fits: &dyn Fn(&Value) -> bool| {
            let mut fitting = errors.iter().filter(|(branch, _)| fits(resolved(branch)));
            match (fitting.next(), fitting.next()) {
                (Some((_, message)), None) => Some(message.clone()),
                _ => None,
            }
        };
        if let Some(message) = only(&|b| type_fits(b) && required_fits(b)).or_else(|| only(&type_fits)) {
            return message;
        }
        let consts: Option<Vec<String>> =
            branches.iter().map(|b| resolved(b).get("const").map(Value::to_string)).collect();
        match consts {
            Some(list) if !list.is_empty() => format!("{} must be one of {}", at(path), list.join(", ")),
            _ => format!("{} does not match any allowed form", at(path)),
        }
    }

    fn check_string(&mut self, schema: &'a Map<String, Value>, s: &str, path: &str) -> Res<()> {
        // Counting characters walks the string: only when a limit asks for it.
        if schema.contains_key("minLength") || schema.contains_key("maxLength") {
            let len = s.chars().count() as u64;
            let unit = Count { min: "minLength", max: "maxLength", verb: "be", one: "character", many: "characters" };
            check_count(schema, &unit, len, path)?;
        }
        match schema.get("pattern") {
            None => Ok(()),
            Some(Value::String(pattern)) => {
                if self.regex(pattern, path)?.is_match(s) {
                    Ok(())
                } else {
                    invalid(format!("{} must match the pattern `{pattern}`", at(path)))
                }
            }
            Some(other) => schema_error(path, format!("`pattern` must be a string, not {other}")),
        }
    }

    fn check_array(&mut self, schema: &'a Map<String, Value>, items: &'a [Value], path: &str, depth: usize) -> Res<()> {
        let unit = Count { min: "minItems", max: "maxItems", verb: "have", one: "item", many: "items" };
        check_count(schema, &unit, items.len() as u64, path)?;
        if schema.get("uniqueItems") == Some(&Value::Bool(true)) {
            let mut seen = HashMap::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let mut form = String::new();
                if !canonical(item, &mut form, 0) {
                    return invalid(format!("{} nests too deeply", at(&format!("{path}[{i}]"))));
                }
                if let Some(first) = seen.insert(form, i) {
                    return invalid(format!(
                        "{} must not contain duplicates: items {first} and {i} are equal",
                        at(path)
                    ));
                }
            }
        }
        // 2020-12 `prefixItems` + `items`, or the older `items: [...]` + `additionalItems`.
        let (prefix, rest) = match (schema.get("prefixItems"), schema.get("items")) {
            (Some(Value::Array(prefix)), rest) => (prefix.as_slice(), rest),
            (_, Some(Value::Array(prefix))) => (prefix.as_slice(), schema.get("additionalItems")),
            (_, rest) => (&[][..], rest),
        };
        if rest == Some(&Value::Bool(false)) && items.len() > prefix.len() {
            return invalid(format!("{} must have at most {}", at(path), plural(prefix.len() as u64, "item", "items")));
        }
        for (i, item) in items.iter().enumerate() {
            if let Some(item_schema) = prefix.get(i).or(rest) {
                self.check_value(item_schema, item, &format!("{path}[{i}]"), depth + 1)?;
            }
        }
        Ok(())
    }

    fn check_object(
        &mut self,
        schema: &'a Map<String, Value>,
        obj: &'a Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Res<Covered<'a>> {
        let unit =
            Count { min: "minProperties", max: "maxProperties", verb: "have", one: "property", many: "properties" };
        check_count(schema, &unit, obj.len() as u64, path)?;
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for key in required.iter().filter_map(Value::as_str) {
                if !obj.contains_key(key) {
                    return invalid(format!("missing argument `{}`", join(path, key)));
                }
            }
        }
        let mut covered = Covered::default();
        let props = schema.get("properties").and_then(Value::as_object);
        for (key, value) in obj {
            if let Some(prop) = props.and_then(|p| p.get(key)) {
                self.check_value(prop, value, &join(path, key), depth + 1)?;
                covered.keys.insert(key);
            }
        }
        if let Some(patterns) = schema.get("patternProperties").and_then(Value::as_object) {
            for (pattern, pattern_schema) in patterns {
                for (key, value) in obj {
                    if self.regex(pattern, path)?.is_match(key) {
                        self.check_value(pattern_schema, value, &join(path, key), depth + 1)?;
                        covered.keys.insert(key);
                    }
                }
            }
        }
        if let Some(rest) = schema.get("additionalProperties") {
            for (key, value) in obj.iter().filter(|(k, _)| !covered.keys.contains(k.as_str())) {
                if rest == &Value::Bool(false) {
                    return unknown(path, key);
                }
                self.check_value(rest, value, &join(path, key), depth + 1)?;
            }
            covered.all = true;
        }
        Ok(covered)
    }
}

fn check_type(schema: &Map<String, Value>, v: &Value, path: &str) -> Res<()> {
    match schema.get("type") {
        Some(Value::String(ty)) if !type_matches(ty, v) => invalid(format!("{} must be of type {ty}", at(path))),
        Some(Value::Array(types)) if !types.iter().filter_map(Value::as_str).any(|t| type_matches(t, v)) => {
            let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            invalid(format!("{} must be of type {}", at(path), names.join(" or ")))
        }
        _ => Ok(()),
    }
}

fn check_number(schema: &Map<String, Value>, x: Num, path: &str) -> Res<()> {
    // Draft 4: `exclusiveMinimum: true` makes `minimum` exclusive.
    let exclusive = |key| schema.get(key) == Some(&Value::Bool(true));
    let bounds = [
        ("minimum", exclusive("exclusiveMinimum"), Ordering::Less),
        ("maximum", exclusive("exclusiveMaximum"), Ordering::Greater),
        ("exclusiveMinimum", true, Ordering::Less),
        ("exclusiveMaximum", true, Ordering::Greater),
    ];
    for (key, strict, beyond) in bounds {
        let bound = match schema.get(key) {
            // The draft-4 boolean form, handled with `minimum`/`maximum`.
            Some(Value::Bool(_)) if key.starts_with("exclusive") => continue,
            _ => number_keyword(schema, key, path)?,
        };
        let Some(bound) = bound else { continue };
        let ordering = x.cmp(Num::of(bound));
        let fails = match ordering {
            Some(Ordering::Equal) => strict,
            Some(o) => o == beyond,
            None => true,
        };
        if fails {
            let relation = match (beyond, strict) {
                (Ordering::Less, false) => "at least",
                (Ordering::Less, true) => "greater than",
                (_, false) => "at most",
                (_, true) => "less than",
            };
            return invalid(format!("{} must be {relation} {bound}", at(path)));
        }
    }
    if let Some(m) = number_keyword(schema, "multipleOf", path)? {
        let step = Num::of(m);
        if !step.is_positive() {
            return schema_error(path, format!("`multipleOf` must be greater than 0, not {m}"));
        }
        if !is_multiple(x, step) {
            return invalid(format!("{} must be a multiple of {m}", at(path)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;
    use serde_json::json;

    #[derive(schemars::JsonSchema, serde::Deserialize)]
    #[allow(dead_code)]
    struct GiveItem {
        item: String,
        #[schemars(range(min = 1, max = 99))]
        #[serde(default = "one")]
        count: u32,
        #[serde(default)]
        quality: Option<Quality>,
    }
    fn one() -> u32 {
        1
    }
    #[derive(schemars::JsonSchema, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    #[allow(dead_code)]
    enum Quality {
        Common,
        Rare,
    }

    /// `{"type": "object", "properties": {"x": prop}}`
    fn prop(prop: Value) -> Value {
        json!({"type": "object", "properties": {"x": prop}})
    }

    fn ok(schema: &Value, x: Value) -> bool {
        validate(schema, &json!({ "x": x })).is_ok()
    }

    fn x_err(schema: &Value, x: Value) -> String {
        validate(schema, &json!({ "x": x })).unwrap_err()
    }

    #[test]
    fn derived_schema_validates() {
        let s = schema_for::<GiveItem>();
        assert_eq!(s["type"], "object");
        assert!(validate(&s, &json!({"item": "sword"})).is_ok());
        assert!(validate(&s, &json!({"item": "sword", "count": 3, "quality": "rare"})).is_ok());
        assert!(validate(&s, &json!({"item": "sword", "quality": null})).is_ok());
        assert_eq!(validate(&s, &json!({"count": 3})).unwrap_err(), "missing argument `item`");
        assert_eq!(validate(&s, &json!({"item": "x", "colour": 1})).unwrap_err(), "unknown argument `colour`");
        assert_eq!(validate(&s, &json!({"item": "x", "count": 0})).unwrap_err(), "`count` must be at least 1");
        assert_eq!(validate(&s, &json!({"item": "x", "count": 100})).unwrap_err(), "`count` must be at most 99");
        // The one `anyOf` branch of the right type explains the problem.
        assert_eq!(
            validate(&s, &json!({"item": "x", "quality": "epic"})).unwrap_err(),
            r#"`quality` must be one of "common", "rare""#
        );
        assert_eq!(validate(&s, &json!({"item": 5})).unwrap_err(), "`item` must be of type string");
        assert!(validate(&s, &json!([1])).is_err());
        // A misspelt key is reported as unknown, not as the missing one.
        assert_eq!(validate(&s, &json!({"itme": "sword"})).unwrap_err(), "unknown argument `itme`");
    }

    #[derive(schemars::JsonSchema, serde::Deserialize)]
    #[allow(dead_code)]
    struct Attrs {
        #[schemars(length(min = 1, max = 8))]
        name: String,
        #[schemars(range(min = 1, max = 10))]
        level: u8,
        #[schemars(regex(pattern = r"^[a-z]+$"))]
        code: String,
        #[schemars(length(min = 1, max = 3), inner(length(max = 4)))]
        tags: Vec<String>,
        #[schemars(length(max = 5))]
        #[serde(default)]
        note: Option<String>,
        #[serde(default)]
        set: HashSet<u8>,
        #[serde(default)]
        scores: HashMap<String, u8>,
        #[serde(default)]
        pair: Option<(u8, String)>,
        #[serde(flatten)]
        target: Target,
    }

    #[derive(schemars::JsonSchema, serde::Deserialize)]
    #[allow(dead_code)]
    enum Target {
        Npc { npc: String },
        Spot { x: f32, y: f32 },
    }

    #[test]
    fn schemars_attributes_are_enforced() {
        let s = schema_for::<Attrs>();
        let base = json!({"name": "Ada", "level": 5, "code": "abc", "tags": ["a"], "Npc": {"npc": "bob"}});
        let with = |key: &str, value: Value| {
            let mut args = base.clone();
            args[key] = value;
            validate(&s, &args)
        };
        assert_eq!(validate(&s, &base), Ok(()));
        assert_eq!(with("name", json!("")).unwrap_err(), "`name` must be at least 1 character");
        assert_eq!(with("name", json!("abcdefghi")).unwrap_err(), "`name` must be at most 8 characters");
        // Characters, not bytes: 8 two-byte characters fit.
        assert_eq!(with("name", json!("éééééééé")), Ok(()));
        assert_eq!(with("level", json!(0)).unwrap_err(), "`level` must be at least 1");
        assert_eq!(with("level", json!(11)).unwrap_err(), "`level` must be at most 10");
        assert_eq!(with("code", json!("ABC")).unwrap_err(), "`code` must match the pattern `^[a-z]+$`");
        assert_eq!(with("code", json!("abc1")).unwrap_err(), "`code` must match the pattern `^[a-z]+$`");
        assert_eq!(with("tags", json!([])).unwrap_err(), "`tags` must have at least 1 item");
        assert_eq!(with("tags", json!(["a", "b", "c", "d"])).unwrap_err(), "`tags` must have at most 3 items");
        assert_eq!(with("tags", json!(["a", "abcde"])).unwrap_err(), "`tags[1]` must be at most 4 characters");
        assert_eq!(with("note", json!(null)), Ok(()));
        assert_eq!(with("note", json!("abcdef")).unwrap_err(), "`note` must be at most 5 characters");
        assert_eq!(with("set", json!([1, 2])), Ok(()));
        assert_eq!(
            with("set", json!([1, 2, 1])).unwrap_err(),
            "`set` must not contain duplicates: items 0 and 2 are equal"
        );
        assert_eq!(with("scores", json!({"ada": 3})), Ok(()));
        assert_eq!(with("scores", json!({"ada": 256})).unwrap_err(), "`scores.ada` must be at most 255");
        assert_eq!(with("pair", json!([1, "a"])), Ok(()));
        assert_eq!(with("pair", json!([1])).unwrap_err(), "`pair` must have at least 2 items");
        assert_eq!(with("pair", json!(["a", "a"])).unwrap_err(), "`pair[0]` must be of type integer");
        // The flattened enum: its variant keys are known, exactly one variant must be present.
        let mut spot = base.clone();
        spot.as_object_mut().unwrap().remove("Npc");
        spot["Spot"] = json!({"x": 1.5, "y": 2});
        assert_eq!(validate(&s, &spot), Ok(()));
        let mut both = spot.clone();
        both["Npc"] = json!({"npc": "bob"});
        assert_eq!(validate(&s, &both).unwrap_err(), "arguments matches more than one allowed form");
        spot["Spot"] = json!({"x": 1.5});
        assert_eq!(validate(&s, &spot).unwrap_err(), "missing argument `Spot.y`");
        spot.as_object_mut().unwrap().remove("Spot");
        assert_eq!(validate(&s, &spot).unwrap_err(), "arguments does not match any allowed form");
    }

    #[test]
    fn one_of_needs_exactly_one_match() {
        let s = prop(json!({"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 10}]}));
        assert!(ok(&s, json!(3)));
        assert!(ok(&s, json!(10.5)));
        assert_eq!(x_err(&s, json!(12)), "`x` matches more than one allowed form");
        assert_eq!(x_err(&s, json!("a")), "`x` does not match any allowed form");
        assert_eq!(x_err(&s, json!(2.5)), "`x` must be at least 10");
        // `anyOf` accepts several matches.
        let s = prop(json!({"anyOf": [{"type": "integer"}, {"type": "number", "minimum": 10}]}));
        assert!(ok(&s, json!(12)));
        // Unit variants with docs: a list of constants.
        let s = prop(json!({"oneOf": [{"const": "a"}, {"const": "b"}]}));
        assert!(ok(&s, json!("b")));
        assert_eq!(x_err(&s, json!("c")), r#"`x` must be one of "a", "b""#);
    }

    #[derive(schemars::JsonSchema, serde::Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        inner: Option<Inner>,
    }

    #[derive(schemars::JsonSchema, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        #[schemars(range(max = 3))]
        a: u8,
        b: String,
    }

    #[test]
    fn optional_struct_reports_the_inner_problem() {
        let s = schema_for::<Outer>();
        assert_eq!(validate(&s, &json!({"inner": null})), Ok(()));
        assert_eq!(validate(&s, &json!({"inner": {"a": 1, "b": "x"}})), Ok(()));
        assert_eq!(validate(&s, &json!({"inner": {"a": 1}})).unwrap_err(), "missing argument `inner.b`");
        assert_eq!(validate(&s, &json!({"inner": {"a": 4, "b": "x"}})).unwrap_err(), "`inner.a` must be at most 3");
        assert_eq!(
            validate(&s, &json!({"inner": {"a": 1, "b": "x", "c": 0}})).unwrap_err(),
            "unknown argument `inner.c`"
        );
        assert_eq!(validate(&s, &json!({"inner": 5})).unwrap_err(), "`inner` does not match any allowed form");
    }

    #[test]
    fn keys_of_unmatched_branches_are_unknown() {
        let s = json!({"type": "object", "anyOf": [
            {"properties": {"npc": {"type": "string"}}, "required": ["npc"]},
            {"properties": {"x": {"type": "number"}}, "required": ["x"]},
        ]});
        assert_eq!(validate(&s, &json!({"npc": "bob"})), Ok(()));
        assert_eq!(validate(&s, &json!({"npc": "bob", "x": 1})), Ok(()));
        assert_eq!(validate(&s, &json!({"npc": "bob", "x": "far"})).unwrap_err(), "unknown argument `x`");
        assert_eq!(validate(&s, &json!({"npc": "bob", "z": 1})).unwrap_err(), "unknown argument `z`");
        let s = json!({"allOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}]});
        assert_eq!(validate(&s, &json!({"a": 1, "b": 2})), Ok(()));
        assert_eq!(validate(&s, &json!({"a": 1, "c": 2})).unwrap_err(), "unknown argument `c`");
    }

    #[test]
    fn string_lengths_count_characters() {
        let s = prop(json!({"type": "string", "minLength": 2, "maxLength": 3}));
        assert!(ok(&s, json!("ab")));
        assert!(ok(&s, json!("🦀🦀🦀")));
        assert!(ok(&s, json!("日本語")));
        assert_eq!(x_err(&s, json!("🦀🦀🦀🦀")), "`x` must be at most 3 characters");
        assert_eq!(x_err(&s, json!("é")), "`x` must be at least 2 characters");
        assert_eq!(x_err(&s, json!("a".repeat(100_000))), "`x` must be at most 3 characters");
        // Only strings are measured.
        assert!(ok(&prop(json!({"maxLength": 1})), json!(12345)));
        let bad = prop(json!({"type": "string", "maxLength": -1}));
        assert!(
            x_err(&bad, json!("a")).contains("schema for `x` is invalid: `maxLength` must be a non-negative integer")
        );
    }

    #[test]
    fn pattern_searches_unanchored() {
        let s = prop(json!({"type": "string", "pattern": "[0-9]{3}"}));
        assert!(ok(&s, json!("room 101, left")));
        assert_eq!(x_err(&s, json!("room 10")), "`x` must match the pattern `[0-9]{3}`");
        let anchored = prop(json!({"type": "string", "pattern": "^[a-z]+$"}));
        assert!(ok(&anchored, json!("a".repeat(100_000))));
        let long = format!("{}!", "a".repeat(100_000));
        assert_eq!(x_err(&anchored, json!(long)), "`x` must match the pattern `^[a-z]+$`");
        // Unicode in the haystack and the pattern.
        assert!(ok(&prop(json!({"pattern": "^é+🦀$"})), json!("éé🦀")));
    }

    #[test]
    fn invalid_pattern_is_a_schema_error() {
        let s = prop(json!({"type": "string", "pattern": "([a-z]"}));
        let e = x_err(&s, json!("abc"));
        assert!(
            e.starts_with("the tool's schema for `x` is invalid: its pattern `([a-z]` is not a valid regex"),
            "{e}"
        );
        // Not hidden by an `anyOf` branch that would match.
        let s = prop(json!({"anyOf": [{"type": "string", "pattern": "(?=a)"}, {"type": "string"}]}));
        assert!(x_err(&s, json!("abc")).contains("is not a valid regex"));
        let s = prop(json!({"pattern": "a".repeat(MAX_PATTERN_LEN + 1)}));
        assert!(x_err(&s, json!("a")).contains("its pattern is longer than 1024 bytes"));
        // Small to write, huge to compile.
        let s = prop(json!({"pattern": "a{1000}{1000}"}));
        assert!(x_err(&s, json!("a")).contains("is not a valid regex"));
        let s = prop(json!({"pattern": 5}));
        assert!(x_err(&s, json!("a")).contains("`pattern` must be a string"));
        // Patterns are cached per check: many items, one compilation.
        let s = json!({"type": "array", "items": {"pattern": "^[a-z]+$"}});
        assert_eq!(validate(&s, &json!(vec!["abc"; 10_000])), Ok(()));
    }

    #[test]
    fn exclusive_bounds() {
        let s = prop(json!({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1.5}));
        assert!(ok(&s, json!(0.5)));
        assert!(ok(&s, json!(1)));
        assert_eq!(x_err(&s, json!(0)), "`x` must be greater than 0");
        assert_eq!(x_err(&s, json!(-0.0)), "`x` must be greater than 0");
        assert_eq!(x_err(&s, json!(1.5)), "`x` must be less than 1.5");
        assert_eq!(x_err(&s, json!(1e308)), "`x` must be less than 1.5");
        // Draft 4: booleans that make `minimum`/`maximum` exclusive.
        let s = prop(json!({"minimum": 1, "exclusiveMinimum": true, "maximum": 5, "exclusiveMaximum": false}));
        assert_eq!(x_err(&s, json!(1)), "`x` must be greater than 1");
        assert!(ok(&s, json!(1.000001)));
        assert!(ok(&s, json!(5)));
        assert_eq!(x_err(&s, json!(5.5)), "`x` must be at most 5");
        let bad = prop(json!({"minimum": "1"}));
        assert!(x_err(&bad, json!(1)).contains("`minimum` must be a number"));
    }

    #[test]
    fn bounds_are_exact_for_huge_numbers() {
        let s = prop(json!({"type": "integer", "minimum": i64::MIN, "maximum": u64::MAX}));
        assert!(ok(&s, json!(u64::MAX)));
        assert!(ok(&s, json!(i64::MIN)));
        assert_eq!(x_err(&s, json!(1e20)), format!("`x` must be at most {}", u64::MAX));
        assert_eq!(x_err(&s, json!(-1e19)), format!("`x` must be at least {}", i64::MIN));
        // 2^53 + 1 is not 2^53, although both are the same f64.
        let s = prop(json!({"maximum": 9_007_199_254_740_992_u64}));
        assert!(ok(&s, json!(9_007_199_254_740_992_u64)));
        assert_eq!(x_err(&s, json!(9_007_199_254_740_993_u64)), "`x` must be at most 9007199254740992");
        let s = prop(json!({"maximum": u64::MAX - 1}));
        assert!(x_err(&s, json!(u64::MAX)).contains("at most 18446744073709551614"));
        let s = prop(json!({"minimum": -1e308, "maximum": 1e308}));
        assert!(ok(&s, json!(1e308)));
        assert!(ok(&s, json!(u64::MAX)));
        assert!(ok(&s, json!(i64::MIN)));
        assert_eq!(x_err(&s, json!(1.7e308)), "`x` must be at most 1e+308");
        let s = prop(json!({"type": "integer", "maximum": 10}));
        assert_eq!(x_err(&s, json!(1e308)), "`x` must be at most 10");
        assert_eq!(x_err(&s, json!(0.5)), "`x` must be of type integer");
    }

    #[test]
    fn multiple_of_integers_is_exact() {
        let s = prop(json!({"multipleOf": 3}));
        assert!(ok(&s, json!(9)));
        assert!(ok(&s, json!(-9)));
        assert!(ok(&s, json!(0)));
        assert!(ok(&s, json!(9.0)));
        assert_eq!(x_err(&s, json!(10)), "`x` must be a multiple of 3");
        assert_eq!(x_err(&s, json!(9.5)), "`x` must be a multiple of 3");
        // u64::MAX = 3 × 5 × 17 × 257 × 641 × 65537 × 6700417; as an f64 it would be 2^64.
        assert!(ok(&s, json!(u64::MAX)));
        assert_eq!(x_err(&s, json!(u64::MAX - 1)), "`x` must be a multiple of 3");
        let s = prop(json!({"multipleOf": 9_223_372_036_854_775_808_u64}));
        assert!(ok(&s, json!(i64::MIN)));
        assert_eq!(x_err(&s, json!(i64::MIN + 1)), "`x` must be a multiple of 9223372036854775808");
        let s = prop(json!({"multipleOf": u64::MAX}));
        assert!(ok(&s, json!(u64::MAX)));
        assert!(!ok(&s, json!(i64::MIN)));
        // Huge floats: integral, checked exactly, no panic.
        let s = prop(json!({"multipleOf": 2}));
        assert!(ok(&s, json!(1e308)));
        assert!(ok(&s, json!(1e20)));
        let s = prop(json!({"multipleOf": 1e300}));
        assert!(ok(&s, json!(0)));
        assert!(!ok(&s, json!(5)));
        assert!(ok(&s, json!(2e300)));
    }

    #[test]
    fn multiple_of_floats_tolerates_rounding() {
        let s = prop(json!({"multipleOf": 0.1}));
        assert!(ok(&s, json!(0.3)));
        assert!(ok(&s, json!(1.1)));
        assert!(ok(&s, json!(0.30000000000000004)));
        assert!(ok(&s, json!(7)));
        assert_eq!(x_err(&s, json!(0.35)), "`x` must be a multiple of 0.1");
        // The quotient overflows: rejected, not a panic.
        let s = prop(json!({"multipleOf": 1e-308}));
        assert!(!ok(&s, json!(1e308)));
        let s = prop(json!({"multipleOf": 2.5}));
        assert!(ok(&s, json!(7.5)));
        assert!(ok(&s, json!(-5)));
        assert!(!ok(&s, json!(7)));
        // u64::MAX is divisible by 5, so a multiple of 2.5.
        assert!(ok(&s, json!(u64::MAX)));
        assert!(ok(&s, json!(1e20)));
        assert!(ok(&s, json!(i64::MIN)));
    }

    #[test]
    fn multiple_of_must_be_positive() {
        for m in [json!(0), json!(-2), json!(-0.5), json!(0.0), json!("2")] {
            let e = x_err(&prop(json!({ "multipleOf": m })), json!(4));
            assert!(e.starts_with("the tool's schema for `x` is invalid: `multipleOf` must be"), "{e}");
        }
    }

    #[test]
    fn array_limits() {
        let s = prop(json!({"type": "array", "minItems": 1, "maxItems": 2, "uniqueItems": true}));
        assert!(ok(&s, json!([1, 2])));
        assert_eq!(x_err(&s, json!([])), "`x` must have at least 1 item");
        assert_eq!(x_err(&s, json!([1, 2, 3])), "`x` must have at most 2 items");
        assert_eq!(x_err(&s, json!([1, 1.0])), "`x` must not contain duplicates: items 0 and 1 are equal");
        assert_eq!(
            x_err(&s, json!([{"a": 1, "b": [2]}, {"b": [2.0], "a": 1}])),
            "`x` must not contain duplicates: items 0 and 1 are equal"
        );
        assert!(ok(&s, json!([{"a": 1}, {"a": "1"}])));
        assert!(ok(&s, json!([[1, 2], [2, 1]])));
        let unique = prop(json!({"uniqueItems": true}));
        let many: Vec<u32> = (0..50_000).collect();
        assert!(ok(&unique, json!(many)));
        // Tuples: `prefixItems`, with `items: false` closing them.
        let s = prop(json!({"prefixItems": [{"type": "integer"}, {"type": "string"}], "items": false}));
        assert!(ok(&s, json!([1, "a"])));
        assert!(ok(&s, json!([1])));
        assert_eq!(x_err(&s, json!([1, 2])), "`x[1]` must be of type string");
        assert_eq!(x_err(&s, json!([1, "a", 3])), "`x` must have at most 2 items");
        let old = prop(json!({"items": [{"type": "integer"}], "additionalItems": {"type": "string"}}));
        assert!(ok(&old, json!([1, "a", "b"])));
        assert_eq!(x_err(&old, json!([1, "a", 2])), "`x[2]` must be of type string");
    }

    #[test]
    fn object_limits_and_additional_properties() {
        let s = prop(json!({"type": "object", "minProperties": 1, "maxProperties": 2}));
        assert!(ok(&s, json!({"a": 1})));
        assert_eq!(x_err(&s, json!({})), "`x` must have at least 1 property");
        assert_eq!(x_err(&s, json!({"a": 1, "b": 2, "c": 3})), "`x` must have at most 2 properties");
        let map = prop(json!({"type": "object", "additionalProperties": {"type": "integer"}}));
        assert!(ok(&map, json!({"a": 1, "b": 2})));
        assert_eq!(x_err(&map, json!({"a": 1, "b": "2"})), "`x.b` must be of type integer");
        let open = prop(json!({"properties": {"a": {"type": "integer"}}, "additionalProperties": true}));
        assert!(ok(&open, json!({"a": 1, "b": 2})));
        let closed = prop(json!({"properties": {"a": {}}, "additionalProperties": false}));
        assert_eq!(x_err(&closed, json!({"a": 1, "b": 2})), "unknown argument `x.b`");
        let patterns = prop(json!({"properties": {"a": {}}, "patternProperties": {"^n_": {"type": "integer"}}}));
        assert!(ok(&patterns, json!({"a": 1, "n_1": 2})));
        assert_eq!(x_err(&patterns, json!({"n_1": "2"})), "`x.n_1` must be of type integer");
        assert_eq!(x_err(&patterns, json!({"b": 1})), "unknown argument `x.b`");
        let rest = prop(json!({"properties": {"a": {}}, "unevaluatedProperties": {"type": "string"}}));
        assert!(ok(&rest, json!({"a": 1, "b": "2"})));
        assert_eq!(x_err(&rest, json!({"b": 2})), "`x.b` must be of type string");
        let empty = empty_object_schema();
        assert_eq!(validate(&empty, &json!({})), Ok(()));
        assert_eq!(validate(&empty, &json!({"a": 1})).unwrap_err(), "unknown argument `a`");
    }

    #[test]
    fn types_enum_const() {
        let s = prop(json!({"type": ["string", "null"], "maxLength": 2}));
        assert!(ok(&s, json!(null)));
        assert!(ok(&s, json!("ab")));
        assert_eq!(x_err(&s, json!(1)), "`x` must be of type string or null");
        let s = prop(json!({"enum": [1, "a", [1, 2]]}));
        assert!(ok(&s, json!(1.0)));
        assert!(ok(&s, json!([1, 2.0])));
        assert_eq!(x_err(&s, json!(2)), r#"`x` must be one of 1, "a", [1,2]"#);
        let s = prop(json!({"const": {"a": 1}}));
        assert!(ok(&s, json!({"a": 1.0})));
        assert_eq!(x_err(&s, json!({"a": 2})), r#"`x` must be {"a":1}"#);
        assert_eq!(x_err(&prop(json!(false)), json!(1)), "`x` is not allowed here");
        assert!(ok(&prop(json!(true)), json!({"anything": [1]})));
        assert!(x_err(&prop(json!(5)), json!(1)).contains("a schema must be an object or a boolean"));
    }

    #[derive(schemars::JsonSchema, serde::Deserialize)]
    #[allow(dead_code)]
    struct Tree {
        children: Vec<Tree>,
    }

    #[test]
    fn refs_and_depth_limit() {
        let s = schema_for::<Tree>();
        assert_eq!(s["properties"]["children"]["items"]["$ref"], "#");
        let mut tree = json!({"children": []});
        for _ in 0..10 {
            tree = json!({ "children": [tree] });
        }
        assert_eq!(validate(&s, &tree), Ok(()));
        let mut deep = json!({"children": [{"children": [], "extra": 1}]});
        assert_eq!(validate(&s, &deep).unwrap_err(), "unknown argument `children[0].extra`");
        for _ in 0..100 {
            deep = json!({ "children": [deep] });
        }
        assert!(validate(&s, &deep).unwrap_err().ends_with("nests too deeply"));
        // Nested arrays through `$defs`.
        let s = json!({"type": "object", "properties": {"t": {"$ref": "#/$defs/T"}},
            "$defs": {"T": {"type": "array", "items": {"$ref": "#/$defs/T"}}}});
        let mut nested = json!([]);
        for _ in 0..1000 {
            nested = json!([nested]);
        }
        assert!(validate(&s, &json!({ "t": nested })).unwrap_err().ends_with("nests too deeply"));
        assert_eq!(validate(&s, &json!({"t": [[], [[]]]})), Ok(()));
        // A schema that refers to itself without consuming the value.
        let s = json!({"$ref": "#/$defs/A", "$defs": {"A": {"allOf": [{"$ref": "#/$defs/A"}]}}});
        assert!(validate(&s, &json!({})).unwrap_err().ends_with("nests too deeply"));
        let s = prop(json!({"$ref": "#/$defs/Missing"}));
        assert!(x_err(&s, json!(1)).contains("`$ref` `#/$defs/Missing` points to no definition"));
        // Percent- and pointer-encoded names.
        let s = json!({"properties": {"x": {"$ref": "#/$defs/A~1B%20C"}}, "$defs": {"A/B C": {"type": "string"}}});
        assert_eq!(x_err(&s, json!(1)), "`x` must be of type string");
        // The older `definitions`.
        let s = json!({"properties": {"x": {"$ref": "#/definitions/N"}}, "definitions": {"N": {"maximum": 1}}});
        assert_eq!(x_err(&s, json!(2)), "`x` must be at most 1");
    }
}
