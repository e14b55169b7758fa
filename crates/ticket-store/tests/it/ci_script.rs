//! `.ci/run`, the script CI runs, sets `CI` itself: the PostgreSQL and MariaDB tests skip with a
//! note when their server is missing unless `CI` is set (`ticket_store::scratch`), so a CI
//! system that forgot to set it would pass with those tests never run.
//!
//! The script is run for real, with every program it calls (`cargo`, `bash`, the database
//! tools) replaced by a stub on `PATH` that records its arguments and the `CI` it sees.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// The programs `.ci/run` starts, besides shell built-ins and coreutils.
const STUBBED: &[&str] = &[
    "cargo",
    "rustc",
    "bash",
    "pg_isready",
    "pg_ctlcluster",
    "mariadb-admin",
    "start-stop-daemon",
    "nats-server",
    "apt-get",
    "chromium",
    "chromedriver",
    "fc-list",
    "rsync",
];

#[test]
fn the_ci_script_sets_ci_for_every_command_it_runs_even_when_the_caller_did_not() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let stubs = tempfile::tempdir().unwrap();
    let log = stubs.path().join("calls.log");
    for name in STUBBED {
        let path = stubs.path().join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nprintf '%s %s CI=%s\\n' '{name}' \"$*\" \"${{CI-unset}}\" >> \"$STUB_LOG\"\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // The script by /bin/bash itself, so that only the `bash` it starts is the stub.
    let out = Command::new("/bin/bash")
        .arg(root.join(".ci/run"))
        .env_clear()
        .env(
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", stubs.path().display()),
        )
        .env("HOME", stubs.path())
        .env("STUB_LOG", &log)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(
        calls
            .lines()
            .any(|l| l.starts_with("cargo test --workspace")),
        "the script runs README's test command: {calls}"
    );
    for call in calls.lines() {
        assert!(call.ends_with(" CI=1"), "{call}\nall calls:\n{calls}");
    }
}
