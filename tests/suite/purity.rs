//! Keeps the functional core pure: the policy, routes, auth, analysis, answer and pipeline modules must not do I/O or
//! read a clock. Fails on any use of tokio, hyper, the file system, sockets, the environment or the clock.

use std::path::{Path, PathBuf};

const PURE: &[&str] = &[
    "src/analysis",
    "src/policy",
    "src/routes",
    "src/auth",
    "src/answer.rs",
    "src/pipeline.rs",
];

/// `std::net::IpAddr` and friends are plain values and allowed; sockets are not.
const FORBIDDEN: &[&str] = &[
    "tokio::",
    "hyper::",
    "hyper_util::",
    "std::fs",
    "std::net::Tcp",
    "std::net::Udp",
    "std::env",
    "std::process",
    "SystemTime::now",
    "Instant::now",
    "thread::sleep",
    "rand::",
];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            rust_files(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|ext| ext == "rs") {
        out.push(path.to_path_buf());
    }
}

#[test]
fn the_core_modules_do_no_io_and_read_no_clock() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for module in PURE {
        rust_files(&root.join(module), &mut files);
    }
    assert!(
        files.len() >= 8,
        "expected the pure modules' sources, found {files:?}"
    );
    let mut violations = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        // Unit tests may use anything.
        let code = text.split("#[cfg(test)]").next().unwrap_or(&text);
        for (number, line) in code.lines().enumerate() {
            for forbidden in FORBIDDEN {
                if line.contains(forbidden) {
                    violations.push(format!("{}:{}: {forbidden}", file.display(), number + 1));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "I/O or clock in the pure core:\n{}",
        violations.join("\n")
    );
}

/// The model: the types the gateway runs on, and their constructors. They depend on nothing that builds,
/// serves or watches them: the config side compiles into them, never the other way round.
const MODEL: &[&str] = &[
    "src/analysis",
    "src/policy",
    "src/routes",
    "src/auth",
    "src/snapshot.rs",
    "src/settings.rs",
];

/// The modules the model must not use (`crate::config`, …).
const OUTER: &[&str] = &["config", "proxy", "reload", "metrics", "admin"];

/// The module path of a source file: `src/routes/table.rs` → `[routes, table]`, `src/policy/mod.rs` →
/// `[policy]`.
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(root.join("src")).unwrap_or(file);
    let mut module: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if module
        .last()
        .is_some_and(|last| last == "mod" || last == "lib")
    {
        module.pop();
    }
    module
}

/// `text` with comments and the contents of string and character literals blanked out (a doc line that
/// names `crate::config` is not a use of it; line numbers are kept).
fn code_only(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            i += end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(rest.len(), |end| end + 2);
            out.extend(rest[..end].chars().filter(|&c| c == '\n'));
            i += end;
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].chars().take_while(|&c| c == '#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = &rest[2 + hashes..];
            let end = body
                .find(&close)
                .map_or(rest.len(), |end| 2 + hashes + end + close.len());
            out.extend(rest[..end].chars().filter(|&c| c == '\n'));
            out.push_str("\"\"");
            i += end;
        } else if let Some(body) = rest.strip_prefix('"') {
            let mut end = rest.len();
            let mut chars = body.char_indices();
            while let Some((at, c)) = chars.next() {
                if c == '\\' {
                    chars.next();
                } else if c == '"' {
                    end = at + 2;
                    break;
                }
            }
            out.extend(rest[..end].chars().filter(|&c| c == '\n'));
            out.push_str("\"\"");
            i += end;
        } else if let Some(body) = rest.strip_prefix('\'') {
            // A character literal ('x', '\n', '\'', '\u{..}') is blanked; a lifetime ('a) is code.
            let mut chars = body.chars();
            let literal = match (chars.next(), chars.next()) {
                (Some('\\'), _) => rest
                    .get(3..)
                    .and_then(|tail| tail.find('\''))
                    .map(|end| end + 4),
                (Some(c), Some('\'')) => Some(c.len_utf8() + 2),
                _ => None,
            };
            match literal {
                Some(end) => {
                    out.push_str("' '");
                    i += end;
                }
                None => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Every path a `use` tree names: `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e` (`self` in a group
/// names the group's prefix; `as` renames are dropped).
fn expand_use_tree(tree: &str) -> Vec<String> {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree).replace(' ', "");
        return vec![path];
    };
    let prefix = tree[..open].trim().trim_end_matches("::").replace(' ', "");
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    // Split the group at its top-level commas.
    let mut items = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (at, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    let mut paths = Vec::new();
    for item in items
        .into_iter()
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        for path in expand_use_tree(item) {
            let joined = match (prefix.as_str(), path.as_str()) {
                ("", path) => path.to_string(),
                (prefix, "self") => prefix.to_string(),
                (prefix, path) => format!("{prefix}::{path}"),
            };
            paths.push(joined);
        }
    }
    paths
}

/// Where a path leads from `module`, as a path from the crate root: `None` for a path that does not start
/// at the crate (`std::…`, another crate, a name in scope).
fn resolve(path: &str, module: &[String]) -> Option<Vec<String>> {
    let segments: Vec<&str> = path
        .trim_start_matches("::")
        .split("::")
        .map(str::trim)
        .collect();
    let mut resolved: Vec<String> = match segments.first() {
        Some(&"crate") => Vec::new(),
        Some(&"super") | Some(&"self") => module.to_vec(),
        _ => return None,
    };
    let mut segments = segments.iter().peekable();
    if segments.peek() == Some(&&"crate") {
        segments.next();
    }
    for segment in segments {
        match *segment {
            "super" => {
                resolved.pop();
            }
            "self" => {}
            name => resolved.push(name.to_string()),
        }
    }
    Some(resolved)
}

/// Every path the code of `text` names, with its line: each path of each `use` (grouped, multi-line,
/// `pub use`, inside a function), and each `crate::…`, `super::…` or `self::…` path written in the code.
fn named_paths(text: &str) -> Vec<(usize, String)> {
    let code = code_only(text);
    let line_of = |at: usize| code[..at].matches('\n').count() + 1;
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut paths = Vec::new();
    let mut uses = Vec::new();
    // `use` declarations.
    let mut from = 0;
    while let Some(found) = code[from..].find("use") {
        let at = from + found;
        from = at + 3;
        let before = code[..at].chars().next_back();
        let after = code[at + 3..].chars().next();
        if before.is_some_and(is_ident) || !after.is_some_and(char::is_whitespace) {
            continue;
        }
        let Some(end) = code[at..].find(';') else {
            continue;
        };
        let tree = &code[at + 3..at + end];
        for path in expand_use_tree(tree) {
            paths.push((line_of(at), path));
        }
        uses.push(at..at + end);
    }
    // Paths written in the code (outside `use`): `crate::config::X`, `super::super::config::X`.
    for root in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(found) = code[from..].find(root) {
            let at = from + found;
            from = at + root.len();
            if code[..at]
                .chars()
                .next_back()
                .is_some_and(|c| is_ident(c) || c == ':')
                || uses.iter().any(|range| range.contains(&at))
            {
                continue;
            }
            let path: String = code[at..]
                .chars()
                .take_while(|&c| is_ident(c) || c == ':')
                .collect();
            paths.push((line_of(at), path.trim_end_matches(':').to_string()));
        }
    }
    paths
}

/// Every use of an outer module by a model file under `root`, as `file:line: path`.
fn model_violations(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    // `src/settings.rs` is newer than the rule: a checkout from before it has none.
    for module in MODEL.iter().map(|module| root.join(module)) {
        if module.exists() {
            rust_files(&module, &mut files);
        }
    }
    assert!(
        files.len() >= 10,
        "expected the model's sources under {}, found {files:?}",
        root.display()
    );
    let mut violations = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let module = module_of(root, file);
        for (line, path) in named_paths(&text) {
            let Some(resolved) = resolve(&path, &module) else {
                continue;
            };
            if resolved
                .first()
                .is_some_and(|first| OUTER.contains(&first.as_str()))
            {
                violations.push(format!("{}:{line}: {path}", file.display()));
            }
        }
    }
    violations
}

/// The model (policy, routes, auth, the snapshot and its settings) uses none of config, proxy, reload,
/// metrics or admin: they depend on it, never it on them. `PERMGATE_PURITY_ROOT` checks another checkout
/// instead (this test fails on the tree before the compilers moved to `config`).
#[test]
fn the_model_uses_no_config_proxy_reload_metrics_or_admin() {
    let root = std::env::var_os("PERMGATE_PURITY_ROOT")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let violations = model_violations(&root);
    assert!(
        violations.is_empty(),
        "the model uses an outer module:\n{}",
        violations.join("\n")
    );
}

/// The forms a use can take are all seen: grouped over lines, renamed, nested, `super::super` escapes,
/// paths written in the code; comments and strings are not uses.
#[test]
fn every_form_of_a_use_is_seen() {
    let text = r#"//! Names crate::config in a doc line: not a use.
use crate::{
    config::{self, ConfigError as E},
    policy::KeySet,
};
use super::super::proxy::Thing;
pub(crate) use crate::metrics;
fn f() -> crate::admin::Status {
    let _ = "crate::reload::x";
    use crate :: reload :: {watch};
    super::super::config::load::unix_now()
}
"#;
    let module = vec!["routes".to_string(), "table".to_string()];
    let found: Vec<String> = named_paths(text)
        .into_iter()
        .filter_map(|(line, path)| {
            let resolved = resolve(&path, &module)?;
            OUTER
                .contains(&resolved.first()?.as_str())
                .then(|| format!("{line}:{}", resolved.join("::")))
        })
        .collect();
    assert_eq!(
        found,
        [
            "2:config",
            "2:config::ConfigError",
            "6:proxy::Thing",
            "7:metrics",
            "10:reload::watch",
            "8:admin::Status",
            "11:config::load::unix_now",
        ]
    );
}
