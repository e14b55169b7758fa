//! A database cluster started by one of the project's scripts (`scripts/cluster/pg-standby`,
//! `scripts/cluster/galera`) in a directory of its own, stopped when dropped: what the
//! failover and Galera tests share, and the ports those scripts pick, for other servers the
//! tests start themselves.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A free port on 127.0.0.1 for a server a test starts later, or stops and starts again on
/// the same port: one below the kernel's ephemeral range, chosen by `scripts/cluster/free-ports`
/// (its doc says why a port-0 port can be taken in between).
pub fn free_port() -> u16 {
    let script = script("free-ports");
    let out = Command::new(&script).arg("1").output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// `scripts/cluster/<name>` in this checkout.
fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scripts/cluster")
        .join(name)
}

/// A running cluster.
pub struct Cluster {
    script: PathBuf,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts the cluster of `scripts/cluster/<name>` and answers it with the URLs the script
    /// printed, one a line; `None` (the test skips) when `possible` says this machine cannot
    /// run it, which fails the test instead when CI is set.
    pub fn start(name: &str, possible: bool, needs: &str) -> Option<(Cluster, Vec<String>)> {
        if !possible {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but this machine cannot run scripts/cluster/{name}: it needs {needs}"
            );
            eprintln!("note: skipping: scripts/cluster/{name} needs {needs}");
            return None;
        }
        let cluster = Cluster {
            script: script(name),
            dir: tempfile::tempdir().unwrap(),
        };
        let urls = cluster.run(&["start"]).lines().map(str::to_owned).collect();
        Some((cluster, urls))
    }

    /// Runs `<script> <args[0]> <dir> <args[1..]>`, which must succeed; answers its output.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new(&self.script)
            .arg(args[0])
            .arg(self.dir.path())
            .args(&args[1..])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} {args:?}: {}",
            self.script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The server pid of node `n` (1, 2, …) as the script's `pids` prints them.
    pub fn pid(&self, n: usize) -> i32 {
        self.run(&["pids"])
            .lines()
            .nth(n - 1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

/// Whether the tests run as `user` or root (the scripts run the servers as their own users).
pub fn running_as(user: &str) -> bool {
    Command::new("id")
        .arg("-un")
        .output()
        .map(|o| {
            let me = String::from_utf8_lossy(&o.stdout).trim().to_owned();
            me == "root" || me == user
        })
        .unwrap_or(false)
}
