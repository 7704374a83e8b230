//! The crate reads top-down: `src/lib.rs` lists its modules from the top
//! layer to the bottom one, and a module may import only modules listed
//! below it. The compiler accepts import cycles, so this test is what
//! keeps them out.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The modules in the order of the module docs' `- [`name`]` lines.
fn documented_order(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|l| l.strip_prefix("//! - [`"))
        .filter_map(|l| l.split_once("`]"))
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Every `.rs` file of top-level module `name`: `name.rs` and `name/**`.
fn files_of(name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let file = src().join(format!("{name}.rs"));
    if file.exists() {
        out.push(file);
    }
    let mut dirs = vec![src().join(name)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out
}

/// Top-level modules a file names through `crate::name` or `crate::{a, b}`
/// (for a group, only the first name of each of its top-level paths).
fn crate_imports(text: &str, modules: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        let firsts = match rest.strip_prefix('{') {
            Some(group) => group_heads(group),
            None => vec![leading_ident(rest)],
        };
        out.extend(
            firsts
                .into_iter()
                .filter(|w| modules.iter().any(|m| m == w))
                .map(str::to_string),
        );
    }
    out
}

fn leading_ident(s: &str) -> &str {
    let s = s.trim_start();
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first name of each comma-separated path in `a::{x, y}, b}`, up to
/// the brace that closes the group.
fn group_heads(group: &str) -> Vec<&str> {
    let (mut depth, mut start, mut heads) = (0usize, 0usize, Vec::new());
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                heads.push(leading_ident(&group[start..i]));
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                heads.push(leading_ident(&group[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    heads
}

#[test]
fn modules_import_only_modules_listed_below_them() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let order = documented_order(&lib);
    let declared: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';').to_string())
        .collect();
    assert_eq!(
        order.iter().cloned().collect::<BTreeSet<_>>(),
        declared,
        "lib.rs's module list and its `pub mod`s differ"
    );
    let mut wrong = Vec::new();
    for (level, module) in order.iter().enumerate() {
        for file in files_of(module) {
            let text = std::fs::read_to_string(&file).unwrap();
            for import in crate_imports(&text, &order) {
                let below = order.iter().position(|m| *m == import).unwrap() > level;
                if import != *module && !below {
                    wrong.push(format!("{} imports {import}", file.display()));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "upward imports:\n{}", wrong.join("\n"));
}

#[test]
fn the_import_scan_sees_groups_and_paths() {
    let modules: Vec<String> = ["client", "stats", "run"].map(String::from).to_vec();
    let text = "use crate::{client::{A, run}, stats::Sample};\nlet x = crate::run::run;";
    let got: Vec<String> = crate_imports(text, &modules).into_iter().collect();
    assert_eq!(got, ["client", "run", "stats"]);
    let text = "use crate::{client::{A, B}, stats::Sample};";
    let got: Vec<String> = crate_imports(text, &modules).into_iter().collect();
    assert_eq!(got, ["client", "stats"], "`run` only inside a path");
}
