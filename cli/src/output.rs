//! Output helpers shared by the listing verbs: docker-style tables, sizes and JSON lines.

use std::io::{self, Write};

/// Prints rows under a header, columns padded to their widest cell plus 3 spaces, as docker's
/// tabwriter does.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut w = vec![0; header.len()];
    for (i, h) in header.iter().enumerate() {
        w[i] = h.chars().count();
    }
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = io::stdout().lock();
    let line = |out: &mut io::StdoutLock<'_>, cells: Vec<&str>| -> io::Result<()> {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(w[i] - c.chars().count() + 3));
            }
        }
        writeln!(out, "{}", s.trim_end())
    };
    line(&mut out, header.to_vec())?;
    for r in rows {
        line(&mut out, r.iter().map(String::as_str).collect())?;
    }
    Ok(())
}

/// Prints one JSON object per line (docker's `--format json`).
pub fn json_lines(items: &[serde_json::Value]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    for v in items {
        writeln!(out, "{v}")?;
    }
    Ok(())
}

/// A size in decimal units with 3 significant digits, as docker prints it (go-units
/// HumanSizeWithPrecision): `2.14MB`, `330B`.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    let s = format!(
        "{v:.*}",
        if v >= 100.0 {
            0
        } else if v >= 10.0 {
            1
        } else {
            2
        }
    );
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    };
    format!("{s}{}", UNITS[i])
}

/// Cuts `s` to `n` characters with an ellipsis, as docker's `--no-trunc`-less columns.
pub fn trunc(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_as_docker_prints_them() {
        assert_eq!(human_size(330), "330B");
        assert_eq!(human_size(2_146_816), "2.15MB");
        assert_eq!(human_size(6_656), "6.66kB");
        assert_eq!(human_size(1_000_000), "1MB");
        assert_eq!(human_size(123_456_789), "123MB");
    }
}
