//! The library's modules depend on each other in one direction, lowest
//! first (issue 13): `id`, `error`, `buf`, `stats`, `timer` (and `probe`,
//! `faults`) → `task`, `ctx` → `bus` → `net`, `backend` → `worker`,
//! `group` → `runtime` → `lib.rs`, `testing`. A module may use a module
//! of its own layer or a lower one, and names other modules, never the
//! crate root's re-exports.
//!
//! Today's code does not hold to it yet: what it breaks is listed in
//! `tests/layers.allow`, one `from -> to` per line, and may only shrink. The
//! test fails on a back-edge or a crate-root import not in the list, and on
//! a listed one that is gone (so that the list is kept true).

use std::collections::BTreeSet;
use std::path::Path;

/// The layer of each module of `sansio/src`, lowest first.
fn layer(module: &str) -> Option<usize> {
    Some(match module {
        "id" | "error" | "buf" | "stats" | "timer" | "probe" | "faults" => 0,
        "task" | "ctx" => 1,
        "bus" => 2,
        "net" | "backend" => 3,
        "worker" | "group" => 4,
        "runtime" => 5,
        "lib" | "testing" => 6,
        _ => return None,
    })
}

/// The first identifier at the start of `text`.
fn ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// What a `crate::…` path names first: for `crate::{a, b::c}`, `a` and
/// `b`.
fn targets(after: &str) -> Vec<String> {
    let Some(group) = after.strip_prefix('{') else {
        return vec![ident(after).to_owned()];
    };
    let mut depth = 0;
    let mut items = Vec::new();
    let mut start = 0;
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..at]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    items
        .into_iter()
        .map(|item| ident(item.trim()).to_owned())
        .filter(|name| !name.is_empty() && name != "self")
        .collect()
}

/// Every `from -> to` the library's code breaks the layering with (`to`
/// is `crate root (Name)` for an import of a crate-root re-export).
fn violations() -> BTreeSet<String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("sansio/src");
    let mut files = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("sansio/src") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    let mut found = BTreeSet::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under sansio/src");
        let from = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .map(|first| first.trim_end_matches(".rs").to_owned())
            .expect("a file name");
        let Some(from_layer) = layer(&from) else {
            panic!("sansio/src/{from} has no layer: add it to `layer` in tests/layers.rs");
        };
        let text = std::fs::read_to_string(&file).expect("a source file");
        // Joined, so that a `use crate::{…}` over several lines reads whole;
        // comments (doc links included) are left out.
        let code: String = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join(" ");
        for (at, _) in code.match_indices("crate::") {
            // `$crate::` in macros, and paths like `sansio_crate::`, are not ours.
            if code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            for to in targets(&code[at + "crate::".len()..]) {
                if to == from {
                    continue;
                }
                match layer(&to) {
                    Some(to_layer) if to_layer > from_layer => {
                        found.insert(format!("{from} -> {to}"));
                    }
                    Some(_) => {}
                    None if from == "lib" => {}
                    None => {
                        found.insert(format!("{from} -> crate root ({to})"));
                    }
                }
            }
        }
    }
    found
}

#[test]
fn modules_depend_downward_only() {
    let allowed_text = include_str!("layers.allow");
    let allowed: BTreeSet<String> = allowed_text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let found = violations();
    let new: Vec<_> = found.difference(&allowed).collect();
    let gone: Vec<_> = allowed.difference(&found).collect();
    assert!(
        new.is_empty(),
        "new imports against the layering (lowest first: id/error/buf/stats/timer → task → bus → \
         net → worker → runtime → lib); import from a lower layer, or move the type to the module \
         that owns it:\n{new:#?}"
    );
    assert!(
        gone.is_empty(),
        "these are fixed: take them out of tests/layers.allow:\n{gone:#?}"
    );
}
