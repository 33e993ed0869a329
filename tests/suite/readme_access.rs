//! The README's "Who can do what" examples are real: each `$ permgate access …` command in a `console` block
//! of that section is run on the shipped config and must print exactly the lines shown under it (a `…` line in
//! the README stands for lines left out, and is skipped with what it stands for).

use std::path::Path;
use std::process::Command;

/// (arguments after `permgate`, the output lines shown) of every `$ permgate access` command in the section.
fn examples() -> Vec<(Vec<String>, Vec<String>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let start = readme.find("\n## Who can do what").expect("the section");
    let end = readme[start + 1..]
        .find("\n## ")
        .map_or(readme.len(), |end| start + 1 + end);
    let section = &readme[start..end];
    let mut out = Vec::new();
    for block in section.split("```console\n").skip(1) {
        let block = block.split("```").next().unwrap();
        let mut current: Option<(Vec<String>, Vec<String>)> = None;
        for line in block.lines() {
            if let Some(command) = line.strip_prefix("$ permgate ") {
                if let Some(done) = current.take() {
                    out.push(done);
                }
                // Only commands that run on the shipped config as they stand.
                if command.starts_with("access explain") || command.starts_with("access who-can") {
                    current = Some((
                        command.split_whitespace().map(str::to_string).collect(),
                        Vec::new(),
                    ));
                }
            } else if line.starts_with("$ ") {
                if let Some(done) = current.take() {
                    out.push(done);
                }
            } else if let Some((_, lines)) = current.as_mut() {
                lines.push(line.to_string());
            }
        }
        if let Some(done) = current.take() {
            out.push(done);
        }
    }
    out
}

#[test]
fn the_readme_access_examples_print_what_the_readme_shows() {
    let examples = examples();
    assert!(examples.len() >= 3, "{examples:?}");
    for (args, shown) in examples {
        let output = Command::new(env!("CARGO_BIN_EXE_permgate"))
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let printed = String::from_utf8(output.stdout).unwrap();
        let printed: Vec<&str> = printed.lines().collect();
        // The blank line that separates one command's output from the next command is not output.
        let mut shown: Vec<&str> = shown.iter().map(String::as_str).collect();
        while shown.last() == Some(&"") {
            shown.pop();
        }
        let whole = !shown.iter().any(|line| line.trim() == "…");
        assert!(!shown.is_empty(), "{args:?} shows no output");
        // Every shown line is printed, in order; `…` lines skip what they stand for.
        let mut at = 0;
        for line in shown {
            if line.trim() == "…" {
                continue;
            }
            let found = printed[at..]
                .iter()
                .position(|printed| *printed == line)
                .unwrap_or_else(|| {
                    panic!(
                        "{args:?}: {line:?} is not printed (after line {at}):\n{}",
                        printed.join("\n")
                    )
                });
            at += found + 1;
        }
        if whole {
            assert_eq!(
                at,
                printed.len(),
                "{args:?}: the README leaves out printed lines"
            );
        }
    }
}
