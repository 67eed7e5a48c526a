//! The unprivileged account the rootless tests run as, and running programs as it.

use std::fs;
use std::process::Command;

/// Name of the unprivileged account the rootless tests run as.
pub const UNPRIV_USER: &str = "strata-test";

/// uid and gid of [`UNPRIV_USER`], if it exists.
pub fn unpriv_ids() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == UNPRIV_USER)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// `setpriv` ready to run a program as `uid`:`gid` without supplementary groups (the plain
/// user of the rootless tests): add the program and its arguments.
pub fn unpriv_command(uid: u32, gid: u32) -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .arg("--clear-groups");
    c
}
