//! The library's modules depend on each other in one direction, lowest
//! first (issue 13): the leaves `id`, `error`, `buf`, `stats`, `timer`,
//! `probe`, `faults` and `backend` (the OS readiness layer) → `net`
//! (sockets, knowing nothing of tasks) → `bus` (the task-facing bus types)
//! → `task` (`Task`, `Ctx`, `Action`, and the glue that turns net and bus
//! events into a task's input) → `worker` (groups, the loop, the hub between
//! workers) → `runtime` → `lib.rs` and `testing`. A module may use a module
//! of a lower layer, or of its own layer as long as no circle forms; it
//! names other modules, never the crate root's re-exports.
//!
//! What today's code still breaks is listed in `tests/layers.allow`, one
//! `from -> to` per line, and may only shrink. The test fails on a
//! back-edge, a circle or a crate-root import not in the list, and on a
//! listed one that is gone (so that the list is kept true).

use std::collections::BTreeSet;
use std::path::Path;

/// The layer of each module of `sansio/src`, lowest first.
fn layer(module: &str) -> Option<usize> {
    Some(match module {
        "id" | "error" | "buf" | "stats" | "log" | "metrics" | "timer" | "probe" | "faults"
        | "backend" => 0,
        "net" => 1,
        "bus" => 2,
        "task" => 3,
        "worker" => 4,
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
/// is `crate root (Name)` for an import of a crate-root re-export), and
/// every circle of imports among modules (`circle: a -> b -> a`).
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
    let mut edges: BTreeSet<(String, String)> = BTreeSet::new();
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
                if layer(&to).is_some() && from != "lib" {
                    edges.insert((from.clone(), to.clone()));
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
    for circle in circles(&edges) {
        found.insert(format!("circle: {}", circle.join(" -> ")));
    }
    found
}

/// The circles among `edges`, each as the modules on it from its smallest
/// name back to that name (so that each is listed once).
fn circles(edges: &BTreeSet<(String, String)>) -> BTreeSet<Vec<String>> {
    let mut found = BTreeSet::new();
    // Depth-first from every module, along paths that never go below the
    // start in name order: each circle is found from its smallest member.
    for (start, _) in edges {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, path)) = stack.pop() {
            for (_, next) in edges.iter().filter(|(from, _)| *from == at) {
                if next == start {
                    let mut circle = path.clone();
                    circle.push(start.clone());
                    found.insert(circle);
                } else if next > start && !path.contains(next) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
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
        "new imports against the layering (lowest first: id/error/buf/stats/timer/backend → net → \
         bus → task → worker → runtime → lib), or circles; import from a lower layer, or move the \
         type to the module that owns it:\n{new:#?}"
    );
    assert!(
        gone.is_empty(),
        "these are fixed: take them out of tests/layers.allow:\n{gone:#?}"
    );
}

#[test]
fn a_circle_is_found_once_whatever_its_layers() {
    let edges: BTreeSet<(String, String)> = [("b", "c"), ("c", "a"), ("a", "b"), ("d", "a")]
        .into_iter()
        .map(|(from, to)| (from.to_owned(), to.to_owned()))
        .collect();
    let expected: BTreeSet<Vec<String>> = [vec!["a", "b", "c", "a"]]
        .into_iter()
        .map(|circle| circle.into_iter().map(str::to_owned).collect())
        .collect();
    assert_eq!(circles(&edges), expected);
    let acyclic: BTreeSet<(String, String)> = [("a".to_owned(), "b".to_owned())].into();
    assert!(circles(&acyclic).is_empty());
}

/// The worker loop makes no socket call and names no kind of socket: all
/// its I/O goes through the driver (`net/driver.rs`).
#[test]
fn the_worker_makes_no_socket_calls() {
    let worker = Path::new(env!("CARGO_MANIFEST_DIR")).join("sansio/src/worker");
    let forbidden = [
        "recvmmsg", "sendmmsg", "recvmsg", "sendmsg", ".accept(", ".read(", ".write(", "libc::",
        "net.udp.", "net.tcp.", "net.tun.", "Source::",
    ];
    let mut found = Vec::new();
    let mut files = Vec::new();
    let mut dirs = vec![worker];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("sansio/src/worker") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    // `worker/group/actions.rs` and any later subdirectory are the worker too.
    assert!(files.len() > 6, "found only {files:?}");
    for path in files {
        let text = std::fs::read_to_string(&path).expect("a source file");
        for (number, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for call in forbidden.iter().filter(|call| line.contains(*call)) {
                found.push(format!("{}:{}: {call}", path.display(), number + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "the worker does I/O itself; go through the driver (`Net::begin_io`, `next_io`, \
         `flush`, `expire`):\n{found:#?}"
    );
}
