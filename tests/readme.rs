//! The README stays true where a test can tell: every file the feature
//! table names as "Tested by" exists (and a ticked row names one), and the
//! count of compile-fail and pass cases it gives for `tests/ui/` is the
//! count on disk, every case directory being one `tests/ui.rs` runs.

use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> String {
    std::fs::read_to_string(root().join("README.md")).unwrap()
}

/// The rows of the feature table: (ticked, feature, tested by).
fn feature_rows(readme: &str) -> Vec<(bool, String, String)> {
    let start = readme.find("## Features").expect("a Features section");
    readme[start..]
        .lines()
        .skip_while(|line| !line.starts_with("| ----"))
        .skip(1)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split(" | ").collect();
            let ticked = line.starts_with("| [x]");
            let feature = cells.get(2).copied().unwrap_or("").to_owned();
            let tested = cells
                .get(3)
                .copied()
                .unwrap_or("")
                .trim_end_matches(" |")
                .to_owned();
            (ticked, feature, tested)
        })
        .collect()
}

/// The paths in backticks of `text`, with `{a,b}` expanded.
fn paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (index, span) in text.split('`').enumerate() {
        let looks_like_path = [
            "tests/",
            "sansio/",
            "src/",
            "fuzz/",
            "examples/",
            "benches/",
        ]
        .iter()
        .any(|prefix| span.starts_with(prefix));
        if index % 2 == 0 || !looks_like_path {
            continue;
        }
        match (span.find('{'), span.find('}')) {
            (Some(open), Some(close)) if open < close => {
                for alternative in span[open + 1..close].split(',') {
                    found.push(format!(
                        "{}{alternative}{}",
                        &span[..open],
                        &span[close + 1..]
                    ));
                }
            }
            _ => found.push(span.to_owned()),
        }
    }
    found
}

/// Whether `pattern` (a path, possibly with one `*` in its file name)
/// names something on disk.
fn exists(pattern: &str) -> bool {
    let path = root().join(pattern);
    let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
        return path.exists();
    };
    let Some((before, after)) = name.split_once('*') else {
        return path.exists();
    };
    let Ok(entries) = std::fs::read_dir(path.parent().unwrap()) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        name.starts_with(before)
            && name.ends_with(after)
            && name.len() >= before.len() + after.len()
    })
}

#[test]
fn every_file_the_feature_table_names_exists_and_every_ticked_row_names_one() {
    let readme = readme();
    let rows = feature_rows(&readme);
    assert!(
        rows.len() > 30,
        "the table was not found whole: {} rows",
        rows.len()
    );
    let mut missing = Vec::new();
    for (ticked, feature, tested) in &rows {
        let named = paths(tested);
        if *ticked {
            assert!(
                !named.is_empty(),
                "a ticked row names no test: {feature} | {tested}"
            );
        }
        for path in named {
            if !exists(&path) {
                missing.push(format!("{path} (row: {feature})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the feature table names missing files:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_ui_case_counts_in_the_readme_are_the_counts_on_disk() {
    let ui = std::fs::read_to_string(root().join("tests/ui.rs")).unwrap();
    let count = |dir: &Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "rs"))
            .count()
    };
    let mut fail = 0;
    for entry in std::fs::read_dir(root().join("tests/ui"))
        .unwrap()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.path().is_dir() || name == "pass" {
            continue;
        }
        assert!(
            ui.contains(&format!("\"{name}\"")),
            "tests/ui/{name}/ is not in tests/ui.rs's list: its cases never run"
        );
        fail += count(&entry.path());
    }
    let pass = count(&root().join("tests/ui/pass"));
    let readme = readme();
    let claim = format!("`tests/ui/` ({fail} fail, {pass} pass cases)");
    assert!(
        readme.contains(&claim),
        "the README should say {claim}; it says {:?}",
        readme
            .lines()
            .find(|line| line.contains("`tests/ui/` ("))
            .unwrap_or("nothing")
    );
}

#[test]
fn the_path_reader_expands_braces_and_globs() {
    assert_eq!(
        paths("`sansio/src/net/{sys,udp}.rs` and `tests/task_*.rs`, not `Ctx`"),
        [
            "sansio/src/net/sys.rs",
            "sansio/src/net/udp.rs",
            "tests/task_*.rs"
        ]
    );
    assert!(exists("tests/task_*.rs"));
    assert!(!exists("tests/no_such_*.rs"));
    assert!(!exists("tests/no_such_file.rs"));
}
