//! What the local server's test binaries share: the server binary started on a free port, ready once it
//! says it is serving.

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};

/// A running local server; killed on drop.
pub struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The server binary, to be given its arguments and environment.
pub fn command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_local-server"))
}

/// Starts `command` on a free port and waits for its `serving http://…` line: the process,
/// `http://127.0.0.1:<port>`, and the rest of its stdout (which the caller must keep reading).
pub fn launch(mut command: Command) -> (Child, String, Lines<BufReader<ChildStdout>>) {
    let mut child = command
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start local-server");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let port = loop {
        let line = lines
            .next()
            .expect("local-server exited before it was ready")
            .expect("stdout");
        if let Some(addr) = line.strip_prefix("serving http://") {
            break addr.split(['/', ':']).nth(1).expect("a port").to_owned();
        }
    };
    (child, format!("http://127.0.0.1:{port}"), lines)
}

/// Starts the server with `args`, its data in `data` (and no callback secret from the environment);
/// its stdout drained and dropped.
#[allow(dead_code)] // (serve.rs starts its own, keeping the output)
pub fn spawn(args: &[&str], data: &std::path::Path) -> (Spawned, String) {
    let mut server = command();
    server
        .args(args)
        .env("LOCAL_DATA_DIR", data)
        .env_remove("PAYMENT_CALLBACK_SECRETS");
    spawned(server)
}

/// Starts `command` as [`launch`] does, its stdout drained and dropped.
#[allow(dead_code)] // (not every test binary starts its servers this way)
pub fn spawned(command: Command) -> (Spawned, String) {
    let (child, base, lines) = launch(command);
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    (Spawned(child), base)
}

/// The URL, headers and body of a curl command printed by a signing helper.
#[allow(dead_code)]
pub fn parse_curl(curl: &str) -> (String, Vec<(String, String)>, String) {
    let quoted_after = |flag: &str| -> Vec<String> {
        curl.match_indices(flag)
            .map(|(at, _)| curl[at + flag.len()..].split('\'').next().unwrap().to_owned())
            .collect()
    };
    let url = curl
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    let headers = quoted_after("-H '")
        .into_iter()
        .map(|h| {
            let (name, value) = h.split_once(": ").unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect();
    let body = quoted_after("-d '").pop().unwrap();
    (url, headers, body)
}

/// Runs a signing helper with the given provider keys file; the curl command it printed.
#[allow(dead_code)]
pub fn helper(keys: &str, args: &[&str]) -> String {
    let out = command()
        .args(["--provider-keys", keys])
        .args(args)
        .output()
        .expect("run helper");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Loads a catalogue file into the store of the data folder `data` and exits (`--load-only`), as an
/// operator would; panics with the server's stderr if it refuses.
#[allow(dead_code)]
pub fn load_only(data: &std::path::Path, catalog: &std::path::Path) {
    let out = command()
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "--catalog",
            catalog.to_str().unwrap(),
            "--load-only",
        ])
        .output()
        .expect("run --load-only");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
