//! JSON schemas for tool arguments: derived with schemars, checked before a tool runs.

use serde_json::{Map, Value};

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

/// Checks `args` against `schema`: types, required and unknown properties, `enum`,
/// `minimum`, `maximum`. Returns a message for the model on the first problem.
pub fn validate(schema: &Value, args: &Value) -> Result<(), String> {
    let defs = schema.get("$defs").or_else(|| schema.get("definitions"));
    check(schema, args, defs, "", 0)
}

fn resolve<'a>(schema: &'a Value, defs: Option<&'a Value>) -> &'a Value {
    let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
        return schema;
    };
    let name = reference.rsplit('/').next().unwrap_or(reference);
    defs.and_then(|d| d.get(name)).unwrap_or(schema)
}

fn at(path: &str) -> String {
    if path.is_empty() { "arguments".to_owned() } else { format!("`{path}`") }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
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

fn check(schema: &Value, v: &Value, defs: Option<&Value>, path: &str, depth: usize) -> Result<(), String> {
    if depth > 32 {
        return Err(format!("{} nests too deeply", at(path)));
    }
    let schema = resolve(schema, defs);
    if let Some(any_of) = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Value::as_array) {
        return if any_of.iter().any(|s| check(s, v, defs, path, depth + 1).is_ok()) {
            Ok(())
        } else {
            Err(format!("{} does not match any allowed form", at(path)))
        };
    }
    match schema.get("type") {
        Some(Value::String(ty)) if !type_matches(ty, v) => {
            return Err(format!("{} must be of type {ty}", at(path)));
        }
        Some(Value::Array(types)) if !types.iter().filter_map(Value::as_str).any(|t| type_matches(t, v)) => {
            return Err(format!("{} has the wrong type", at(path)));
        }
        _ => {}
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        return Err(format!("{} must be one of {}", at(path), list.join(", ")));
    }
    if let Some(c) = schema.get("const")
        && c != v
    {
        return Err(format!("{} must be {c}", at(path)));
    }
    if let Some(x) = v.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && x < min
        {
            return Err(format!("{} must be at least {min}", at(path)));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && x > max
        {
            return Err(format!("{} must be at most {max}", at(path)));
        }
    }
    if let (Some(obj), Some(props)) = (v.as_object(), schema.get("properties").and_then(Value::as_object)) {
        check_object(schema, obj, props, defs, path, depth)?;
    }
    if let (Some(items), Some(item_schema)) = (v.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(item_schema, item, defs, &format!("{path}[{i}]"), depth + 1)?;
        }
    }
    Ok(())
}

fn check_object(
    schema: &Value,
    obj: &Map<String, Value>,
    props: &Map<String, Value>,
    defs: Option<&Value>,
    path: &str,
    depth: usize,
) -> Result<(), String> {
    for key in obj.keys() {
        if !props.contains_key(key) {
            return Err(format!("unknown argument `{}`", join(path, key)));
        }
    }
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for key in required.iter().filter_map(Value::as_str) {
            if !obj.contains_key(key) {
                return Err(format!("missing argument `{}`", join(path, key)));
            }
        }
    }
    for (key, value) in obj {
        if let Some(prop) = props.get(key) {
            check(prop, value, defs, &join(path, key), depth + 1)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn derived_schema_validates() {
        let s = schema_for::<GiveItem>();
        assert_eq!(s["type"], "object");
        assert!(validate(&s, &json!({"item": "sword"})).is_ok());
        assert!(validate(&s, &json!({"item": "sword", "count": 3, "quality": "rare"})).is_ok());
        assert_eq!(validate(&s, &json!({"count": 3})).unwrap_err(), "missing argument `item`");
        assert_eq!(validate(&s, &json!({"item": "x", "colour": 1})).unwrap_err(), "unknown argument `colour`");
        assert_eq!(validate(&s, &json!({"item": "x", "count": 0})).unwrap_err(), "`count` must be at least 1");
        assert_eq!(validate(&s, &json!({"item": "x", "count": 100})).unwrap_err(), "`count` must be at most 99");
        assert!(validate(&s, &json!({"item": "x", "quality": "epic"})).is_err());
        assert_eq!(validate(&s, &json!({"item": 5})).unwrap_err(), "`item` must be of type string");
        assert!(validate(&s, &json!([1])).is_err());
    }
}
