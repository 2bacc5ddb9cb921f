//! The module-layer check: `docs/ARCHITECTURE.md` lists, per crate, its modules in layers, and
//! a module may import only from the layers below it (or from its own submodules). This reads
//! every `crate::` and `super::` path in a crate's sources (comments, strings and `#[cfg(test)]`
//! items left out) and reports each upward or same-layer import, each import from a parent
//! module's namespace, each cycle, and each module the list is missing or names wrongly.
//!
//! The list is a fenced block with the info string `layers`:
//!
//! ```text
//! crate live_npc_client crates/live_npc_client/src
//! crate: session > token > http > tls, secret > protocol
//! session: task > transport > config
//! ```
//!
//! `crate NAME DIR` starts a crate; `extern: a, b` names root items that are other crates
//! re-exported (paths through them are not checked); each `PARENT: ...` line gives the children of `PARENT`
//! (`crate` for the crate root, else a module path such as `session`) from the top layer down,
//! layers separated by `>`, modules of one layer by `,`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path inside a crate (`[]` is the crate root).
type ModPath = Vec<String>;

/// One crate's layer list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateLayers {
    /// The crate's name.
    pub name: String,
    /// Its source directory, relative to the workspace root.
    pub dir: String,
    /// For each parent module (`""` for the root, else `a::b`), its children's layer numbers
    /// (0 = the bottom layer).
    pub parents: BTreeMap<String, BTreeMap<String, usize>>,
    /// Names at the crate root that are other crates (re-exported): paths through them are not
    /// this crate's imports.
    pub externs: BTreeSet<String>,
}

/// Reads every `layers` block of a Markdown text.
pub fn parse_layers(markdown: &str) -> Result<Vec<CrateLayers>, String> {
    let mut crates: Vec<CrateLayers> = Vec::new();
    let mut in_block = false;
    for (n, line) in markdown.lines().enumerate() {
        let trimmed = line.trim();
        if !in_block {
            in_block = trimmed == "```layers";
            continue;
        }
        if trimmed.starts_with("```") {
            in_block = false;
            continue;
        }
        if trimmed.is_empty() {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("crate ") {
            let mut words = rest.split_whitespace();
            let (Some(name), Some(dir), None) = (words.next(), words.next(), words.next()) else {
                return Err(format!("line {}: expected `crate NAME DIR`", n + 1));
            };
            crates.push(CrateLayers {
                name: name.into(),
                dir: dir.into(),
                parents: BTreeMap::new(),
                externs: BTreeSet::new(),
            });
            continue;
        }
        if let Some(list) = trimmed.strip_prefix("extern: ") {
            let Some(krate) = crates.last_mut() else {
                return Err(format!("line {}: an `extern` line before any `crate` line", n + 1));
            };
            krate.externs.extend(list.split(',').map(str::trim).filter(|m| !m.is_empty()).map(str::to_owned));
            continue;
        }
        // `parent: list`; the parent may be a path (`audio::capture: ...`).
        let Some((parent, list)) = trimmed.split_once(": ").filter(|(p, _)| !p.contains(' ')) else {
            return Err(format!("line {}: expected `PARENT: a > b, c`", n + 1));
        };
        let Some(krate) = crates.last_mut() else {
            return Err(format!("line {}: a layer line before any `crate` line", n + 1));
        };
        let parent = if parent == "crate" { String::new() } else { parent.to_owned() };
        let layers: Vec<&str> = list.split('>').collect();
        let mut children = BTreeMap::new();
        for (i, layer) in layers.iter().enumerate() {
            for module in layer.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                if children.insert(module.to_owned(), layers.len() - 1 - i).is_some() {
                    return Err(format!("line {}: `{module}` is listed twice", n + 1));
                }
            }
        }
        if krate.parents.insert(parent.clone(), children).is_some() {
            return Err(format!("line {}: the children of `{parent}` are listed twice", n + 1));
        }
    }
    Ok(crates)
}

/// Checks one crate's sources (`src`, its `src` directory) against its layer list. Returns every
/// violation found, each as one readable line.
pub fn check_crate(layers: &CrateLayers, src: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let files = match source_files(src) {
        Ok(f) => f,
        Err(e) => return vec![format!("{}: cannot read {}: {e}", layers.name, src.display())],
    };
    let modules: BTreeSet<ModPath> = files.iter().map(|(m, _)| m.clone()).collect();

    // Every module is listed under its parent, and every listed module exists.
    for m in modules.iter().filter(|m| !m.is_empty()) {
        let parent = m[..m.len() - 1].join("::");
        let listed = layers.parents.get(&parent).is_some_and(|c| c.contains_key(&m[m.len() - 1]));
        if !listed {
            problems.push(format!(
                "{}: module `{}` is not listed in the layers of `{}`",
                layers.name,
                m.join("::"),
                show(&parent)
            ));
        }
    }
    for (parent, children) in &layers.parents {
        for child in children.keys() {
            let path: ModPath =
                parent.split("::").filter(|s| !s.is_empty()).map(str::to_owned).chain([child.clone()]).collect();
            if !modules.contains(&path) {
                problems.push(format!("{}: `{}` is listed but there is no such module", layers.name, path.join("::")));
            }
        }
    }

    // Every import goes down.
    let mut edges: BTreeMap<(String, String, String), String> = BTreeMap::new();
    for (module, path) in &files {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        for (line, target) in imports(module, &text) {
            if target.first().is_some_and(|first| layers.externs.contains(first)) {
                continue;
            }
            let target = owning_module(&target, &modules);
            let at = format!("{}/{}:{line}", layers.dir, path.strip_prefix(src).unwrap_or(path).display());
            if &target == module || target.starts_with(module) {
                continue;
            }
            if module.starts_with(&target) {
                problems.push(format!(
                    "{at}: `{}` imports from its parent `{}`; import from the module that defines the item",
                    show_path(module),
                    show_path(&target)
                ));
                continue;
            }
            let common = module.iter().zip(&target).take_while(|(a, b)| a == b).count();
            let parent = module[..common].join("::");
            let (from, to) = (&module[common], &target[common]);
            let Some(children) = layers.parents.get(&parent) else { continue };
            let (Some(&lf), Some(&lt)) = (children.get(from), children.get(to)) else { continue };
            edges.entry((parent.clone(), from.clone(), to.clone())).or_insert_with(|| at.clone());
            if lt >= lf {
                let how = if lt == lf { "a module of its own layer" } else { "a higher layer" };
                problems.push(format!(
                    "{at}: `{}` imports `{}` from {how} (in `{}`: `{from}` is layer {lf}, `{to}` layer {lt})",
                    show_path(module),
                    show_path(&target),
                    show(&parent)
                ));
            }
        }
    }
    problems.extend(cycles(&layers.name, &edges));
    // One line per place, however many names it imports.
    let mut seen = BTreeSet::new();
    problems.retain(|p| seen.insert(p.clone()));
    problems
}

/// Checks every crate of a Markdown layer list; paths are relative to `root`.
pub fn check_all(markdown: &str, root: &Path) -> Vec<String> {
    match parse_layers(markdown) {
        Ok(crates) if crates.is_empty() => vec!["no `layers` block found".to_owned()],
        Ok(crates) => crates.iter().flat_map(|c| check_crate(c, &root.join(&c.dir))).collect(),
        Err(e) => vec![e],
    }
}

fn show(parent: &str) -> &str {
    if parent.is_empty() { "crate" } else { parent }
}

fn show_path(m: &[String]) -> String {
    if m.is_empty() { "crate".to_owned() } else { m.join("::") }
}

/// Cycles among sibling modules, one line each.
fn cycles(krate: &str, edges: &BTreeMap<(String, String, String), String>) -> Vec<String> {
    let mut graph: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for (parent, from, to) in edges.keys() {
        graph.entry((parent, from)).or_default().push(to);
    }
    let mut found = BTreeSet::new();
    for &(parent, start) in graph.keys() {
        // Depth-first from `start`, looking for a way back to it.
        let mut stack = vec![(start, vec![start])];
        let mut seen = BTreeSet::new();
        while let Some((node, trail)) = stack.pop() {
            for &next in graph.get(&(parent, node)).into_iter().flatten() {
                if next == start {
                    let mut cycle = trail.clone();
                    let min = cycle.iter().enumerate().min_by_key(|(_, m)| **m).map_or(0, |(i, _)| i);
                    cycle.rotate_left(min);
                    found.insert((parent, cycle));
                } else if seen.insert(next) {
                    let mut t = trail.clone();
                    t.push(next);
                    stack.push((next, t));
                }
            }
        }
    }
    found
        .into_iter()
        .map(|(parent, cycle)| {
            let prefix = if parent.is_empty() { String::new() } else { format!("{parent}::") };
            let names: Vec<String> = cycle.iter().chain(cycle.first()).map(|m| format!("{prefix}{m}")).collect();
            format!("{krate}: import cycle {}", names.join(" -> "))
        })
        .collect()
}

/// The `.rs` files of a crate's `src` directory and their module paths (`bin/` left out: each
/// program is a crate of its own).
fn source_files(src: &Path) -> std::io::Result<Vec<(ModPath, PathBuf)>> {
    let mut out = Vec::new();
    let mut dirs = vec![(src.to_path_buf(), ModPath::new())];
    while let Some((dir, prefix)) = dirs.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                if !(prefix.is_empty() && name == "bin") {
                    let mut p = prefix.clone();
                    p.push(name);
                    dirs.push((path, p));
                }
            } else if let Some(stem) = name.strip_suffix(".rs") {
                let mut m = prefix.clone();
                if !(stem == "mod" || (prefix.is_empty() && (stem == "lib" || stem == "main"))) {
                    m.push(stem.to_owned());
                }
                out.push((m, path));
            }
        }
    }
    Ok(out)
}

/// The module that owns `path`: its longest prefix that is a file module.
fn owning_module(path: &[String], modules: &BTreeSet<ModPath>) -> ModPath {
    (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| modules.contains(p)).unwrap_or_default()
}

/// Every `crate::`/`super::` path in a file's code (outside comments, strings and
/// `#[cfg(test)]` items), resolved to an absolute path, with its line number.
pub fn imports(module: &[String], text: &str) -> Vec<(usize, ModPath)> {
    let code = strip_comments_and_strings(text);
    let lines: Vec<&str> = code.lines().collect();
    // Per line: the inline-module stack, or `None` inside a test item.
    let mut context: Vec<Option<ModPath>> = Vec::with_capacity(lines.len());
    let mut stack: Vec<(String, usize)> = Vec::new();
    let mut skip_until: Option<String> = None;
    let mut cfg_test = false;
    for line in &lines {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if let Some(end) = &skip_until {
            context.push(None);
            if line.trim_end() == end || line.trim_end() == format!("{end};") {
                skip_until = None;
            }
            continue;
        }
        if trimmed.starts_with("#[cfg(") && trimmed.contains("test") {
            cfg_test = true;
            context.push(None);
            continue;
        }
        if cfg_test {
            context.push(None);
            if trimmed.starts_with("#[") || trimmed.is_empty() {
                continue;
            }
            cfg_test = false;
            if !(trimmed.ends_with(';') || trimmed.ends_with('}')) {
                skip_until = Some(format!("{}}}", " ".repeat(indent)));
            }
            continue;
        }
        if let Some((_, i)) = stack.last()
            && line.trim_end() == format!("{}}}", " ".repeat(*i))
        {
            stack.pop();
        }
        context.push(Some(stack.iter().map(|(n, _)| n.clone()).collect()));
        if let Some(name) = inline_mod(trimmed) {
            stack.push((name, indent));
        }
    }

    let mut line_starts = vec![0];
    line_starts.extend(code.match_indices('\n').map(|(i, _)| i + 1));
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    for keyword in ["crate::", "super::"] {
        for (pos, _) in code.match_indices(keyword) {
            let before = pos.checked_sub(1).map(|i| bytes[i]);
            if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b':') {
                continue;
            }
            let line = line_starts.partition_point(|&s| s <= pos) - 1;
            let Some(Some(inline)) = context.get(line) else { continue };
            let mut here: ModPath = module.to_vec();
            here.extend(inline.iter().cloned());
            for relative in parse_path(&code[pos..]) {
                let mut segs = relative.into_iter();
                let mut abs = match segs.next().as_deref() {
                    Some("crate") => ModPath::new(),
                    _ => {
                        let mut b = here.clone();
                        b.pop();
                        b
                    }
                };
                for s in segs {
                    match s.as_str() {
                        "super" => {
                            abs.pop();
                        }
                        "self" | "*" => {}
                        _ => abs.push(s),
                    }
                }
                out.push((line + 1, abs));
            }
        }
    }
    out
}

/// `mod name {` (any visibility) opening an inline module.
fn inline_mod(trimmed: &str) -> Option<String> {
    let rest = trimmed.strip_suffix('{')?.trim_end();
    let rest = match rest.strip_prefix("pub") {
        Some(r) if r.starts_with('(') => r.split_once(')')?.1.trim_start(),
        Some(r) => r.trim_start(),
        None => rest,
    };
    let name = rest.strip_prefix("mod ")?.trim();
    name.chars().all(|c| c.is_alphanumeric() || c == '_').then(|| name.to_owned())
}

/// The paths a `crate::...`/`super::...` expression or `use` tree names, expanded (`a::{b, c::d}`
/// gives `a::b` and `a::c::d`); `as` aliases dropped.
fn parse_path(text: &str) -> Vec<Vec<String>> {
    let mut chars = text.char_indices().peekable();
    let mut out = Vec::new();
    parse_tree(text, &mut chars, Vec::new(), &mut out);
    out
}

fn parse_tree(
    text: &str,
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    mut prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) {
    loop {
        while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek().copied() {
            Some((_, '{')) => {
                chars.next();
                loop {
                    parse_tree(text, chars, prefix.clone(), out);
                    while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                        chars.next();
                    }
                    match chars.next() {
                        Some((_, ',')) => {
                            while chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                                chars.next();
                            }
                            if chars.peek().is_some_and(|(_, c)| *c == '}') {
                                chars.next();
                                return;
                            }
                        }
                        _ => return,
                    }
                }
            }
            Some((_, '*')) => {
                chars.next();
                out.push(prefix);
                return;
            }
            Some((start, c)) if c.is_alphabetic() || c == '_' => {
                let mut end = start;
                while let Some(&(i, c)) = chars.peek() {
                    if c.is_alphanumeric() || c == '_' {
                        end = i + c.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                prefix.push(text[start..end].to_owned());
                if text[end..].starts_with("::") {
                    chars.next();
                    chars.next();
                    continue;
                }
                out.push(prefix);
                // Skip `as alias`, so that a group goes on after it.
                let rest = &text[end..];
                let ws = rest.len() - rest.trim_start().len();
                if let Some(alias) = rest[ws..].strip_prefix("as ") {
                    let skip = ws + 3 + (alias.len() - alias.trim_start().len());
                    let name = alias.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').count();
                    for _ in 0..skip + name {
                        chars.next();
                    }
                }
                return;
            }
            _ => {
                if !prefix.is_empty() {
                    out.push(prefix);
                }
                return;
            }
        }
    }
}

/// The text with comments removed and string and character literals emptied (line breaks
/// kept, so line numbers stay right).
pub fn strip_comments_and_strings(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let keep_newlines = |s: &str, out: &mut String| out.extend(s.chars().filter(|&c| c == '\n'));
    while i < b.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            i += end;
        } else if let Some(body) = rest.strip_prefix("/*") {
            let end = body.find("*/").map_or(rest.len(), |e| e + 4);
            keep_newlines(&rest[..end], &mut out);
            i += end;
        } else if let Some(len) = raw_string_len(rest) {
            out.push_str("\"\"");
            keep_newlines(&rest[..len], &mut out);
            i += len;
        } else if rest.starts_with('"') || rest.starts_with("b\"") {
            let open = if rest.starts_with('"') { 1 } else { 2 };
            let mut j = open;
            let rb = rest.as_bytes();
            while j < rb.len() && rb[j] != b'"' {
                j += if rb[j] == b'\\' { 2 } else { 1 };
            }
            let len = (j + 1).min(rest.len());
            out.push_str("\"\"");
            keep_newlines(&rest[..len], &mut out);
            i += len;
        } else if rest.starts_with('\'') {
            // A character literal (`'x'`, `'\n'`), else a lifetime or label.
            let mut it = rest.char_indices().skip(1);
            match (it.next(), it.next()) {
                (Some((_, '\\')), _) => {
                    let len = rest[2..].find('\'').map_or(rest.len(), |e| e + 3);
                    out.push_str("' '");
                    i += len;
                }
                (Some((_, c)), Some((k, '\''))) if c != '\'' => {
                    out.push_str("' '");
                    i += k + 1;
                }
                _ => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The length of a raw string literal (`r"..."`, `br#"..."#`) at the start of `s`.
fn raw_string_len(s: &str) -> Option<usize> {
    let body = s.strip_prefix("br").or_else(|| s.strip_prefix('r'))?;
    let hashes = body.len() - body.trim_start_matches('#').len();
    let body = body[hashes..].strip_prefix('"')?;
    let close = format!("\"{}", "#".repeat(hashes));
    let end = body.find(&close)?;
    Some(s.len() - body.len() + end + close.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempdir::Dir {
        let dir = tempdir::Dir::new();
        for (path, text) in files {
            let p = dir.0.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        dir
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let n = N.fetch_add(1, Ordering::Relaxed);
                let p = std::env::temp_dir().join(format!("live-npc-layers-{}-{n}", std::process::id()));
                let _ = std::fs::remove_dir_all(&p);
                std::fs::create_dir_all(&p).expect("temp dir");
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    const DOC: &str = "```layers\ncrate demo src\ncrate: top > mid, side > low\nlow: b > a\nlow::b: inner\n```\n";

    fn check(files: &[(&str, &str)]) -> Vec<String> {
        let dir = tree(files);
        let layers = parse_layers(DOC).expect("layers");
        check_crate(&layers[0], &dir.0)
    }

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("lib.rs", "mod top; mod mid; mod side; mod low;\nuse crate::top::X;\n"),
            ("top.rs", "use crate::mid::M;\nuse crate::{low::Y, side};\nfn f() { crate::low::b::g(); }\n"),
            ("mid.rs", "use crate::low::a::A; // crate::top::T in a comment\nconst S: &str = \"crate::top\";\n"),
            ("side.rs", "use super::low::L;\n"),
            ("low/mod.rs", "mod a; mod b; pub use a::A;\n"),
            ("low/a.rs", "pub struct A;\n#[cfg(test)]\nmod tests {\n    use crate::top::T;\n}\n"),
            ("low/b.rs", "mod inner;\nuse super::a::A;\nmod nested {\n    use super::super::a::A;\n}\n"),
            ("low/b/inner.rs", "use super::super::a::A;\n"),
        ]
    }

    #[test]
    fn downward_imports_pass() {
        assert_eq!(check(&good()), Vec::<String>::new());
    }

    #[test]
    fn an_upward_import_fails() {
        let mut files = good();
        files[5] = ("low/a.rs", "use crate::mid::M;\n");
        let problems = check(&files);
        assert!(
            problems.iter().any(|p| p.contains("low/a.rs:1: `low::a` imports `mid` from a higher layer")),
            "{problems:?}"
        );
        assert!(problems.iter().any(|p| p.contains("import cycle low -> mid -> low")), "{problems:?}");
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn a_same_layer_import_and_a_cycle_fail() {
        let mut files = good();
        files[2] = ("mid.rs", "use crate::side::S;\n");
        files[3] = ("side.rs", "use crate::mid::{self, M};\n");
        let problems = check(&files);
        assert!(
            problems.iter().any(|p| p.contains("`mid` imports `side` from a module of its own layer")),
            "{problems:?}"
        );
        assert!(problems.iter().any(|p| p.contains("import cycle mid -> side -> mid")), "{problems:?}");
    }

    #[test]
    fn a_sibling_cycle_inside_a_module_fails() {
        let mut files = good();
        files[5] = ("low/a.rs", "use super::b::B;\n");
        let problems = check(&files);
        assert!(problems.iter().any(|p| p.contains("import cycle low::a -> low::b -> low::a")), "{problems:?}");
    }

    #[test]
    fn an_import_from_the_parent_namespace_fails() {
        let mut files = good();
        files[6] = ("low/b.rs", "use super::A;\n");
        let problems = check(&files);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("`low::b` imports from its parent `low`"), "{problems:?}");
    }

    #[test]
    fn an_unlisted_or_missing_module_fails() {
        let mut files = good();
        files.push(("extra.rs", ""));
        files.retain(|(p, _)| *p != "side.rs");
        let problems = check(&files);
        assert!(problems.iter().any(|p| p.contains("module `extra` is not listed")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("`side` is listed but there is no such module")), "{problems:?}");
    }

    #[test]
    fn multi_line_use_groups_are_read() {
        let found =
            imports(&["top".to_owned()], "use crate::{\n    low::b::{self, G},\n    mid::M as N,\n    side,\n};\n");
        let paths: Vec<String> = found.iter().map(|(_, p)| p.join("::")).collect();
        assert_eq!(paths, ["low::b", "low::b::G", "mid::M", "side"]);
        assert_eq!(found[2].0, 1);
    }

    #[test]
    fn comments_strings_and_chars_are_not_code() {
        let code = strip_comments_and_strings(
            "let c = '\"'; let s = r#\"crate::x\"#; // crate::y\nlet t = \"a\\\"crate::z\"; x::<'a>()",
        );
        assert!(!code.contains("crate::"), "{code}");
        assert_eq!(code.lines().count(), 2);
    }

    #[test]
    fn paths_through_re_exported_crates_are_not_this_crates_imports() {
        let doc = "```layers\ncrate demo src\nextern: proto\ncrate: top > low\n```\n";
        let dir = tree(&[("lib.rs", "pub use other::proto;\n"), ("top.rs", ""), ("low.rs", "use crate::proto::X;\n")]);
        let layers = parse_layers(doc).expect("layers");
        assert_eq!(check_crate(&layers[0], &dir.0), Vec::<String>::new());
        let strict = parse_layers("```layers\ncrate demo src\ncrate: top > low\n```\n").expect("layers");
        let problems = check_crate(&strict[0], &dir.0);
        assert!(problems.iter().any(|p| p.contains("imports from its parent `crate`")), "{problems:?}");
    }

    #[test]
    fn malformed_lists_are_errors() {
        assert!(parse_layers("```layers\ncrate: a > b\n```").is_err());
        assert!(parse_layers("```layers\ncrate x src\ncrate: a > a\n```").is_err());
        assert!(check_all("no block here", Path::new(".")).len() == 1);
    }

    /// The workspace itself: every crate keeps its documented layers.
    #[test]
    fn the_workspace_keeps_its_documented_layers() {
        let root = crate::workspace_root();
        let doc = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md")).expect("docs/ARCHITECTURE.md");
        let crates = parse_layers(&doc).expect("layer list");
        let names: Vec<&str> = crates.iter().map(|c| c.name.as_str()).collect();
        for name in ["live_npc_client", "live_npc_sim", "bevy_live_npc"] {
            assert!(names.contains(&name), "{name} is not in the list: {names:?}");
        }
        let problems = check_all(&doc, &root);
        assert!(problems.is_empty(), "layer violations:\n{}", problems.join("\n"));
    }
}
