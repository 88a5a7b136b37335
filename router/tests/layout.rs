//! The shape of `router/src/`, kept true as it grows: no file imports another that imports it
//! back (through any chain), and no source file grows past a size a reader can hold.
#![allow(clippy::unwrap_used, clippy::panic, reason = "test")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Longest source file accepted (lines, tests included).
const MAX_LINES: usize = 800;

/// Module path (`gateway::chat`) → source text without comments and without its tests.
fn modules() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let lines = text.lines().count();
            assert!(
                lines <= MAX_LINES,
                "{} has {lines} lines (at most {MAX_LINES}): split it along its seams",
                path.display()
            );
            let code = text
                .split("#[cfg(test)]\nmod tests")
                .next()
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            out.insert(parts.join("::"), code);
        }
    }
    out
}

/// The longest module path that `path` (`a::b::C`) starts with.
fn resolve(mods: &BTreeMap<String, String>, path: &str) -> Option<String> {
    let mut parts: Vec<&str> = path.split("::").collect();
    while !parts.is_empty() {
        let candidate = parts.join("::");
        if mods.contains_key(&candidate) {
            return Some(candidate);
        }
        parts.pop();
    }
    None
}

/// Every `crate::…` path in `code`, with `crate::a::{b, c::d}` expanded.
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let base = &rest[..end];
        if rest[end..].starts_with('{') {
            let close = rest[end..].find('}').map_or(rest.len(), |c| end + c);
            for item in rest[end + 1..close].split(',') {
                let item = item.split(" as ").next().unwrap_or_default().trim();
                if !item.is_empty() {
                    out.push(format!("{base}{item}"));
                }
            }
        } else {
            out.push(base.trim_end_matches(':').to_owned());
        }
    }
    out
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    let mods = modules();
    let graph: BTreeMap<&String, BTreeSet<String>> = mods
        .iter()
        .map(|(m, code)| {
            let deps = crate_paths(code)
                .iter()
                .filter_map(|p| resolve(&mods, p))
                .filter(|d| d != m)
                .collect();
            (m, deps)
        })
        .collect();
    // A cycle through `m` exists when `m` is reachable from one of its own dependencies.
    for (m, deps) in &graph {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<(String, Vec<String>)> = deps
            .iter()
            .map(|d| (d.clone(), vec![(*m).clone(), d.clone()]))
            .collect();
        while let Some((at, trail)) = todo.pop() {
            if &at == *m {
                panic!("import cycle: {}", trail.join(" → "));
            }
            if !seen.insert(at.clone()) {
                continue;
            }
            for next in graph.get(&at).into_iter().flatten() {
                let mut t = trail.clone();
                t.push(next.clone());
                todo.push((next.clone(), t));
            }
        }
    }
    assert!(
        graph.len() > 30,
        "the walk found only {} modules",
        graph.len()
    );
}

/// The checker sees a cycle when there is one (so its silence means something).
#[test]
fn the_checker_finds_a_planted_cycle() {
    let mut mods = BTreeMap::new();
    mods.insert("a".to_owned(), "use crate::b::X;".to_owned());
    mods.insert("b".to_owned(), "fn f() { crate::c::g() }".to_owned());
    mods.insert("c".to_owned(), "use crate::{a::Y, d};".to_owned());
    let edges: Vec<(String, Vec<String>)> = mods
        .iter()
        .map(|(m, c)| {
            let deps = crate_paths(c)
                .iter()
                .filter_map(|p| resolve(&mods, p))
                .collect();
            (m.clone(), deps)
        })
        .collect();
    assert_eq!(edges[0].1, ["b"]);
    assert_eq!(edges[1].1, ["c"]);
    assert_eq!(edges[2].1, ["a"]);
}
