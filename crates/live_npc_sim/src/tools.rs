//! How the simulated model decides to call a declared function, and with which arguments.
//!
//! Matching: a function is called when every word of its name (split at `_ - . :` and at
//! camelCase humps) occurs in the user's text, in order, case-insensitively, with other words
//! allowed in between (`open_gate` matches "please open the north gate"). A text word also
//! matches the name word with a plural `s` (`gates`).
//!
//! Arguments come from the declaration's parameter schema (`parameters`, `OpenAPI` subset with
//! upper-case types, or `parametersJsonSchema`), for each top-level property in this order:
//! 1. an `enum` value named in the text;
//! 2. `key=value` (or `key: value`) in the text, or a quoted word (`'sword'`, `"sword"`) for
//!    string properties, assigned in order;
//! 3. for numbers, the digits in the text (`give me 3 apples` → 3), assigned in order;
//! 4. the schema's `default`;
//! 5. for a required string property, a word from the text: the word next to the property's
//!    own name ("the north gate" → `gate: "north"`), else the first meaningful word between
//!    or after the function-name words ("open the north gate" → "north").
//!
//! Values are coerced to the property's type (`INTEGER`, `NUMBER`, `BOOLEAN`, `STRING`);
//! a value that does not fit the type is left out. Nested objects and arrays are not filled.

use serde_json::{Map, Number, Value};

use live_npc_client::protocol::FunctionDeclaration;

/// Words never taken as an argument value.
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "please", "me", "my", "for", "to", "of", "and", "or", "you", "your", "i", "it", "can", "could",
    "would", "will", "us", "we", "our", "this", "that", "these", "those", "some", "now", "then", "just", "kindly",
    "up", "on", "in", "at", "with", "is", "are", "be", "do",
];

/// Splits a function name into lower-case words at `_ - . :` and camelCase humps.
///
/// ```
/// use live_npc_sim::tools::name_words;
/// assert_eq!(name_words("openGate"), ["open", "gate"]);
/// assert_eq!(name_words("give_item.v2"), ["give", "item", "v2"]);
/// assert_eq!(name_words("HTTPRequest"), ["httprequest"]);
/// ```
pub fn name_words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if matches!(c, '_' | '-' | '.' | ':' | ' ') {
            push_word(&mut words, &mut current);
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower {
            push_word(&mut words, &mut current);
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        current.extend(c.to_lowercase());
    }
    push_word(&mut words, &mut current);
    words
}

fn push_word(words: &mut Vec<String>, current: &mut String) {
    if !current.is_empty() {
        words.push(std::mem::take(current));
    }
}

/// A word of the user's text with its position in the original string.
#[derive(Clone, Debug, PartialEq)]
struct Word<'a> {
    /// As written.
    text: &'a str,
    /// Lower case.
    lower: String,
}

/// Splits text into words (letters, digits, apostrophes, `=` kept out).
fn words(text: &str) -> Vec<Word<'_>> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .map(|w| Word { text: w, lower: w.to_lowercase() })
        .collect()
}

fn word_matches(text_word: &str, name_word: &str) -> bool {
    text_word == name_word || text_word.strip_suffix('s') == Some(name_word)
}

/// The positions in `text_words` of the function's name words, if all occur in order.
fn match_positions(name: &[String], text_words: &[Word<'_>]) -> Option<Vec<usize>> {
    if name.is_empty() {
        return None;
    }
    let mut positions = Vec::with_capacity(name.len());
    let mut from = 0;
    for nw in name {
        let i = (from..text_words.len()).find(|&i| word_matches(&text_words[i].lower, nw))?;
        positions.push(i);
        from = i + 1;
    }
    Some(positions)
}

/// Whether the user's `text` calls the function `name` (every name word, in order).
///
/// ```
/// use live_npc_sim::tools::text_matches;
/// assert!(text_matches("open_gate", "Please open the north gate"));
/// assert!(!text_matches("open_gate", "the gate is open"));
/// ```
pub fn text_matches(name: &str, text: &str) -> bool {
    match_positions(&name_words(name), &words(text)).is_some()
}

/// A call the model decided to make.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedCall {
    /// The function's name.
    pub name: String,
    /// Its arguments.
    pub args: Map<String, Value>,
}

/// The calls the user's `text` triggers among `decls`, in declaration order.
pub fn plan_calls<'d>(decls: impl IntoIterator<Item = &'d FunctionDeclaration>, text: &str) -> Vec<PlannedCall> {
    let text_words = words(text);
    decls
        .into_iter()
        .filter_map(|decl| {
            let positions = match_positions(&name_words(&decl.name), &text_words)?;
            let args = extract_args(decl.parameter_schema(), text, &text_words, &positions);
            Some(PlannedCall { name: decl.name.clone(), args })
        })
        .collect()
}

/// The JSON type of a schema (`"STRING"` and `"string"` alike; the first non-null of a list).
fn schema_type(schema: &Value) -> Option<String> {
    match schema.get("type")? {
        Value::String(t) => Some(t.to_ascii_lowercase()),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).map(str::to_ascii_lowercase).find(|t| t != "null"),
        _ => None,
    }
}

/// What the text offers as argument values, consumed as properties take them.
struct Sources<'t> {
    pairs: Vec<(String, String)>,
    quoted: Vec<String>,
    numbers: Vec<String>,
    words: &'t [Word<'t>],
    name_positions: &'t [usize],
}

fn extract_args(
    schema: Option<&Value>,
    text: &str,
    text_words: &[Word<'_>],
    positions: &[usize],
) -> Map<String, Value> {
    let mut args = Map::new();
    let Some(props) = schema.and_then(|s| s.get("properties")).and_then(Value::as_object) else {
        return args;
    };
    let required: Vec<&str> = schema
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut src = Sources {
        pairs: key_values(text),
        quoted: quoted(text),
        numbers: text_words
            .iter()
            .filter(|w| w.text.chars().all(|c| c.is_ascii_digit()))
            .map(|w| w.text.to_owned())
            .collect(),
        words: text_words,
        name_positions: positions,
    };
    for (key, prop) in props {
        let ty = schema_type(prop).unwrap_or_else(|| "string".to_owned());
        if matches!(ty.as_str(), "object" | "array") {
            continue;
        }
        let is_required = required.contains(&key.as_str());
        if let Some(v) = property_value(key, prop, &ty, is_required, &mut src) {
            args.insert(key.clone(), v);
        }
    }
    args
}

fn property_value(key: &str, prop: &Value, ty: &str, required: bool, src: &mut Sources<'_>) -> Option<Value> {
    if let Some(v) = enum_value(prop, src.words) {
        return Some(v);
    }
    let key_lower = key.to_lowercase();
    if let Some(i) = src.pairs.iter().position(|(k, _)| *k == key_lower) {
        let (_, v) = src.pairs.remove(i);
        if let Some(v) = coerce(&v, ty) {
            return Some(v);
        }
    }
    if ty == "string" && !src.quoted.is_empty() {
        return Some(Value::String(src.quoted.remove(0)));
    }
    if matches!(ty, "integer" | "number") && !src.numbers.is_empty() {
        let n = src.numbers.remove(0);
        if let Some(v) = coerce(&n, ty) {
            return Some(v);
        }
    }
    if let Some(d) = prop.get("default") {
        return Some(d.clone());
    }
    if required && ty == "string" {
        return word_near(&key_lower, src).map(Value::String);
    }
    None
}

/// An enum value of the property that the text names (as a word sequence, any case).
fn enum_value(prop: &Value, text_words: &[Word<'_>]) -> Option<Value> {
    let values = prop.get("enum")?.as_array()?;
    values.iter().find_map(|v| {
        let s = v.as_str()?;
        let wanted: Vec<String> = words(s).into_iter().map(|w| w.lower).collect();
        let found = !wanted.is_empty()
            && text_words.windows(wanted.len()).any(|win| win.iter().zip(&wanted).all(|(a, b)| a.lower == *b));
        found.then(|| v.clone())
    })
}

/// `key=value` and `key: value` pairs (keys lower-cased; values unquoted).
fn key_values(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b != b'=' && b != b':' {
            continue;
        }
        let key: String = text[..i]
            .chars()
            .rev()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect::<String>()
            .chars()
            .rev()
            .collect();
        let rest = text[i + 1..].trim_start();
        let value = match rest.chars().next() {
            Some(q @ ('\'' | '"')) => rest[1..].split(q).next().unwrap_or(""),
            _ => rest
                .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
                .next()
                .unwrap_or("")
                .trim_end_matches(['.', '!', '?']),
        };
        if !key.is_empty() && !value.is_empty() {
            out.push((key.to_lowercase(), value.to_owned()));
        }
    }
    out
}

/// Single- or double-quoted words (`'sword'`); apostrophes inside words (`don't`) are not quotes.
fn quoted(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (start, c) = chars[i];
        let opens = matches!(c, '\'' | '"' | '“' | '‘')
            && (i == 0 || !chars[i - 1].1.is_alphanumeric())
            && chars.get(i + 1).is_some_and(|(_, n)| n.is_alphanumeric());
        if opens {
            let close = match c {
                '“' => '”',
                '‘' => '’',
                other => other,
            };
            let body_start = start + c.len_utf8();
            let end = chars[i + 1..].iter().position(|&(j, d)| {
                d == close && text[j + d.len_utf8()..].chars().next().is_none_or(|n| !n.is_alphanumeric())
            });
            if let Some(offset) = end {
                let (j, _) = chars[i + 1 + offset];
                let body = text[body_start..j].trim();
                if !body.is_empty() && !body.contains('=') {
                    out.push(body.to_owned());
                }
                i += offset + 2;
                continue;
            }
        }
        i += 1;
    }
    out
}

fn coerce(text: &str, ty: &str) -> Option<Value> {
    match ty {
        "integer" => text.parse::<i64>().ok().map(Value::from),
        "number" => text.parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number),
        "boolean" => match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Some(Value::Bool(true)),
            "false" | "no" | "off" | "0" => Some(Value::Bool(false)),
            _ => None,
        },
        _ => Some(Value::String(text.to_owned())),
    }
}

fn is_candidate(w: &Word<'_>, src: &Sources<'_>, i: usize) -> bool {
    !STOPWORDS.contains(&w.lower.as_str()) && !src.name_positions.contains(&i)
}

/// A meaningful word for a required string property (see the module docs, rule 5).
fn word_near(key: &str, src: &Sources<'_>) -> Option<String> {
    let ws = src.words;
    let key_word = name_words(key);
    let key_pos =
        ws.iter().enumerate().rev().find(|(_, w)| key_word.iter().any(|k| word_matches(&w.lower, k))).map(|(i, _)| i);
    if let Some(k) = key_pos {
        let before = (k.saturating_sub(2)..k).rev().find(|&i| is_candidate(&ws[i], src, i) && i != k);
        let after = || (k + 1..ws.len()).find(|&i| is_candidate(&ws[i], src, i));
        if let Some(i) = before.or_else(after) {
            return Some(ws[i].text.to_owned());
        }
    }
    let first = *src.name_positions.first()?;
    (first + 1..ws.len()).find(|&i| is_candidate(&ws[i], src, i) && Some(i) != key_pos).map(|i| ws[i].text.to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn decl(name: &str, params: Value) -> FunctionDeclaration {
        FunctionDeclaration { name: name.into(), parameters: Some(params), ..Default::default() }
    }

    #[test]
    fn names_split() {
        assert_eq!(name_words("open_gate"), ["open", "gate"]);
        assert_eq!(name_words("turn-on.lights"), ["turn", "on", "lights"]);
        assert_eq!(name_words("giveItemNow"), ["give", "item", "now"]);
    }

    #[test]
    fn matching_in_order() {
        assert!(text_matches("open_gate", "please open the north gate"));
        assert!(text_matches("openGate", "OPEN THE GATES!"));
        assert!(!text_matches("open_gate", "gate open"));
        assert!(!text_matches("open_gate", "reopen the gate"));
    }

    #[test]
    fn gate_from_text() {
        let d = decl(
            "open_gate",
            json!({"type": "OBJECT", "properties": {"gate": {"type": "STRING"}}, "required": ["gate"]}),
        );
        let calls = plan_calls([&d], "Could you please open the north gate for me?");
        assert_eq!(
            calls,
            [PlannedCall {
                name: "open_gate".into(),
                args: json!({"gate": "north"}).as_object().cloned().unwrap_or_default()
            }]
        );
    }

    #[test]
    fn enums_pairs_quotes_numbers_defaults() {
        let d = FunctionDeclaration {
            name: "give_item".into(),
            parameters_json_schema: Some(json!({
                "type": "object",
                "properties": {
                    "item": {"type": "string"},
                    "count": {"type": "integer"},
                    "quality": {"type": "string", "enum": ["common", "rare"]},
                    "wrapped": {"type": "boolean", "default": false},
                    "note": {"type": "string"}
                },
                "required": ["item"]
            })),
            ..Default::default()
        };
        let calls = plan_calls([&d], "give me 2 rare items, 'sword' note=urgent");
        let want = json!({"item": "sword", "count": 2, "quality": "rare", "wrapped": false, "note": "urgent"});
        assert_eq!(Value::Object(calls[0].args.clone()), want);
        let calls = plan_calls([&d], "please give the item shield to me");
        assert_eq!(Value::Object(calls[0].args.clone()), json!({"item": "shield", "wrapped": false}));
    }

    #[test]
    fn no_schema_no_args() {
        let d = FunctionDeclaration { name: "ring_bell".into(), ..Default::default() };
        let calls = plan_calls([&d], "ring the bell");
        assert_eq!(calls.len(), 1);
        assert!(calls[0].args.is_empty());
    }

    #[test]
    fn quotes_skip_apostrophes() {
        assert_eq!(quoted("don't give me 'sword' or \"axe\""), ["sword", "axe"]);
        assert_eq!(key_values("gate=north, count: 3"), [("gate".into(), "north".into()), ("count".into(), "3".into())]);
    }
}
