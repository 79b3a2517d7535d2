//! README.md's walkthrough, run as a newcomer pastes it: every `sh` block, in order, in one bash session
//! against a fresh local server (started as the README's quick start says, on a free port and a fresh
//! data folder), and each answer shown after a block must match what the server answered. An example that
//! drifts from the server fails this test. Blocks marked `bash` are not run (starting the server, running
//! the tests, deploying); the list of those is pinned below, so a new example cannot dodge the test.
//!
//! Matching: a `json` block is a sequence of answers, each a status line and a JSON body; an object with
//! a `"..."` key may have more fields than it shows (without it, exactly the fields shown), a string
//! ending in `...` matches any string starting so (`"..."` alone matches any value), arrays match element
//! by element. A `text` block matches line by line, a line ending in `...` by its prefix.

use std::process::Command;

mod common;

use serde_json::Value;

/// The README's `bash` blocks, which the test does not run, by their first line.
const NOT_RUN: &[&str] = &[
    "cargo run -p local-server -- --expiry-interval 5   # the API on http://127.0.0.1:3000 (Ctrl-C stops it)",
    "scripts/package.sh && source .venv/bin/activate   # cargo-lambda and Zig from PyPI; no Docker",
];

/// Where the README's steps end in the session's output.
const END: &str = "@@README-STEP-END@@";

struct Block {
    lang: String,
    text: String,
    line: usize,
}

/// The fenced code blocks of a markdown text, with their info strings and first lines.
fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in markdown.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(lang)) => {
                open = Some(Block {
                    lang: lang.trim().to_owned(),
                    text: String::new(),
                    line: i + 1,
                })
            }
            (Some(_), Some("")) => out.extend(open.take()),
            (Some(block), _) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

/// A step: the commands, and the answers shown after them (if any).
struct Step<'a> {
    commands: &'a Block,
    shown: Option<&'a Block>,
}

fn steps(blocks: &[Block]) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        if block.lang == "sh" {
            let shown = blocks
                .get(i + 1)
                .filter(|next| next.lang == "json" || next.lang == "text");
            steps.push(Step { commands: block, shown });
        }
    }
    steps
}

/// Whether `actual` matches `expected` under the README's abbreviations; the first difference otherwise.
fn matches(expected: &Value, actual: &Value, at: &str) -> Result<(), String> {
    match (expected, actual) {
        (Value::String(e), _) if e == "..." => Ok(()),
        (Value::String(e), Value::String(a)) if e.ends_with("...") => a
            .starts_with(e.trim_end_matches("..."))
            .then_some(())
            .ok_or_else(|| format!("{at}: {a:?} does not start with {:?}", e.trim_end_matches("..."))),
        (Value::Object(e), Value::Object(a)) => {
            let open = e.contains_key("...");
            for (key, value) in e.iter().filter(|(k, _)| *k != "...") {
                let got = a.get(key).ok_or_else(|| format!("{at}.{key}: missing"))?;
                matches(value, got, &format!("{at}.{key}"))?;
            }
            if !open {
                if let Some(extra) = a.keys().find(|k| !e.contains_key(*k)) {
                    return Err(format!("{at}.{extra}: not shown (add it, or \"...\": \"...\")"));
                }
            }
            Ok(())
        }
        (Value::Array(e), Value::Array(a)) => {
            if e.len() != a.len() {
                return Err(format!("{at}: {} elements shown, {} answered", e.len(), a.len()));
            }
            e.iter()
                .zip(a)
                .enumerate()
                .try_for_each(|(i, (e, a))| matches(e, a, &format!("{at}[{i}]")))
        }
        _ if expected == actual => Ok(()),
        _ => Err(format!("{at}: shown {expected}, answered {actual}")),
    }
}

/// The answers of a `json` block or of a step's output: each a status line and the JSON after it.
fn answers(text: &str) -> Result<Vec<(String, Value)>, String> {
    let mut out = Vec::new();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty()).peekable();
    while let Some(status) = lines.next() {
        let mut body = String::new();
        while let Some(line) = lines.peek() {
            let is_status = line.len() == 3 && line.bytes().all(|b| b.is_ascii_digit());
            if is_status {
                break;
            }
            body.push_str(lines.next().unwrap_or_default());
            body.push('\n');
        }
        let value = serde_json::from_str(&body).map_err(|e| format!("not JSON after {status}: {e}: {body}"))?;
        out.push((status.to_owned(), value));
    }
    Ok(out)
}

fn check(step: &Step, output: &str) -> Result<(), String> {
    let Some(shown) = step.shown else {
        return Ok(());
    };
    if shown.lang == "text" {
        let (e, a): (Vec<&str>, Vec<&str>) = (
            shown.text.lines().collect(),
            output.lines().filter(|l| !l.is_empty()).collect(),
        );
        if e.len() != a.len() {
            return Err(format!("{} lines shown, {} printed", e.len(), a.len()));
        }
        for (e, a) in e.iter().zip(&a) {
            let ok = match e.strip_suffix("...") {
                Some(prefix) => a.starts_with(prefix),
                None => e == a,
            };
            if !ok {
                return Err(format!("shown {e:?}, printed {a:?}"));
            }
        }
        return Ok(());
    }
    let (expected, actual) = (answers(&shown.text)?, answers(output)?);
    if expected.len() != actual.len() {
        return Err(format!("{} answers shown, {} printed", expected.len(), actual.len()));
    }
    for (i, ((es, ev), (as_, av))) in expected.iter().zip(&actual).enumerate() {
        if es != as_ {
            return Err(format!("answer {}: status {es} shown, {as_} answered: {av}", i + 1));
        }
        matches(ev, av, &format!("answer {}", i + 1)).map_err(|e| format!("{e}\n  answered: {av}"))?;
    }
    Ok(())
}

/// The README's server, on a free port with a fresh data folder; its port once it is ready.
fn start(data: &std::path::Path) -> (common::Spawned, String) {
    let (server, base) = common::spawn(&["--expiry-interval", "5"], data);
    let port = base.rsplit(':').next().expect("a port").to_owned();
    (server, port)
}

#[test]
fn the_readme_walkthrough_runs_as_shown() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let readme_blocks = blocks(&readme);

    // Every block either runs or is one of the pinned few that cannot (and docs show no runnable ones).
    let not_run: Vec<&str> = readme_blocks
        .iter()
        .filter(|b| b.lang == "bash")
        .map(|b| b.text.lines().next().unwrap_or(""))
        .collect();
    assert_eq!(
        not_run, NOT_RUN,
        "README's bash blocks (not run) changed: run them as sh, or pin them here"
    );
    for doc in std::fs::read_dir(root.join("docs")).expect("docs/") {
        let path = doc.expect("entry").path();
        if path.extension().is_none_or(|e| e != "md") {
            continue; // (the README's screenshot)
        }
        let text = std::fs::read_to_string(&path).expect("doc");
        assert!(
            blocks(&text).iter().all(|b| b.lang != "sh"),
            "{}: only README's walkthrough runs; show commands as bash",
            path.display()
        );
    }
    assert!(
        readme.contains("cargo run -p local-server -- --expiry-interval 5"),
        "the server this test starts is the one README starts"
    );
    let steps = steps(&readme_blocks);
    assert!(steps.len() >= 10, "the walkthrough has {} steps", steps.len());

    let data = tempfile::tempdir().expect("data folder");
    let (_server, port) = start(data.path());
    // One session, as a newcomer's terminal: README's port is the server's; `cargo run -q -p
    // local-server --` is this build of the binary, with the same data folder.
    let mut script = format!(
        "cargo() {{ if [ \"$1 $2 $3 $4 $5\" = 'run -q -p local-server --' ]; then shift 5; \"{bin}\" \"$@\"; \
         else echo \"unexpected: cargo $*\" >&2; return 1; fi; }}\ncd '{root}'\n",
        bin = env!("CARGO_BIN_EXE_local-server"),
        root = root.display()
    );
    for step in &steps {
        script.push_str(
            &step
                .commands
                .text
                .replace("127.0.0.1:3000", &format!("127.0.0.1:{port}")),
        );
        script.push_str(&format!("printf '\\n%s\\n' '{END}'\n"));
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("LOCAL_DATA_DIR", data.path())
        .env("PORT", &port)
        .env_remove("SHOPPER")
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let outputs: Vec<&str> = stdout.split(&format!("\n{END}\n")).collect();
    assert_eq!(
        outputs.len(),
        steps.len() + 1,
        "every step ran\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut failures = Vec::new();
    for (step, output) in steps.iter().zip(&outputs) {
        if let Err(why) = check(step, output) {
            failures.push(format!(
                "README.md line {} (step at line {}): {why}\n  printed:\n{output}",
                step.shown.map_or(0, |s| s.line),
                step.commands.line
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} README steps differ from the server:\n{}\nstderr: {}",
        failures.len(),
        steps.len(),
        failures.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("README walkthrough: {} steps ran and matched", steps.len());
}

#[test]
fn the_matcher_honours_the_readme_abbreviations() {
    let actual: Value = serde_json::json!({"order": {"id": "ord_1", "status": "paid", "version": 2}});
    let ok = |shown: &str| matches(&serde_json::from_str(shown).unwrap(), &actual, "");
    assert!(ok(r#"{"order": {"id": "ord_...", "status": "paid", "...": "..."}}"#).is_ok());
    assert!(ok(r#"{"order": {"id": "ord_1", "status": "paid", "version": 2}}"#).is_ok());
    assert!(
        ok(r#"{"order": {"id": "ord_1", "status": "paid"}}"#).is_err(),
        "a field left out silently"
    );
    assert!(ok(r#"{"order": {"id": "pay_...", "...": "..."}}"#).is_err());
    assert!(ok(r#"{"order": {"status": "pending", "...": "..."}}"#).is_err());
    assert!(ok(r#"{"order": "..."}"#).is_ok());
    assert!(ok(r#"{"order": {"missing": 1, "...": "..."}}"#).is_err());
}
