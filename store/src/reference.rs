//! Image names: `[registry[:port]/][user/]repo[:tag]`, with `latest` as the default tag.
//!
//! The grammar is docker's distribution/reference (reference.go): path components are
//! lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`; the first component is a
//! registry when it holds a `.` or a `:`, or is `localhost`; a tag is `[A-Za-z0-9_][A-Za-z0-9_.-]`
//! of at most 128 characters; the whole name is at most 255 characters. Names are stored as
//! given (no implicit `docker.io/library/`), because strata has no registry; lookups of a short
//! name also try `localhost/` and `docker.io/library/`, as podman resolves local short names.

use std::fmt;

use crate::error::{Error, Result};

/// The tag a name gets when it has none.
pub const DEFAULT_TAG: &str = "latest";

/// A parsed image name. Always has a tag.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name {
    registry: Option<String>,
    path: String,
    tag: String,
}

impl Name {
    /// Parses `[registry[:port]/][user/]repo[:tag]`.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why| Error::InvalidName {
            name: s.to_owned(),
            why,
        };
        if s.is_empty() {
            return Err(bad("the name is empty"));
        }
        if s.contains('@') {
            return Err(bad(
                "digest references (@sha256:...) are not supported here",
            ));
        }
        // The tag is after the last ':' that follows the last '/' (a ':' before the last '/'
        // is a registry port).
        let slash = s.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match s[slash..].rfind(':') {
            Some(i) => (&s[..slash + i], Some(&s[slash + i + 1..])),
            None => (s, None),
        };
        let tag = match tag {
            Some(t) => {
                if !valid_tag(t) {
                    return Err(bad(
                        "a tag is 1-128 of [A-Za-z0-9_.-] and cannot start with . or -",
                    ));
                }
                t.to_owned()
            }
            None => DEFAULT_TAG.to_owned(),
        };
        if repo.is_empty() {
            return Err(bad("the repository is empty"));
        }
        if repo.len() > 255 {
            return Err(bad("the repository is longer than 255 characters"));
        }
        let mut comps: Vec<&str> = repo.split('/').collect();
        let registry = if comps.len() > 1
            && (comps[0].contains('.') || comps[0].contains(':') || comps[0] == "localhost")
        {
            let r = comps.remove(0);
            if !valid_registry(r) {
                return Err(bad("the registry must be host[:port]"));
            }
            Some(r.to_owned())
        } else {
            None
        };
        for c in &comps {
            if c.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(bad("the repository must be lowercase"));
            }
            if !valid_component(c) {
                return Err(bad(
                    "repository components are [a-z0-9] separated by '.', '_', '__' or '-'",
                ));
            }
        }
        Ok(Name {
            registry,
            path: comps.join("/"),
            tag,
        })
    }

    /// `[registry/]user/repo`, without the tag.
    pub fn repository(&self) -> String {
        match &self.registry {
            Some(r) => format!("{r}/{}", self.path),
            None => self.path.clone(),
        }
    }

    /// The tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The same repository with another tag.
    pub fn with_tag(&self, tag: &str) -> Result<Self> {
        Name::parse(&format!("{}:{tag}", self.repository()))
    }

    /// The names a lookup of this one tries, most specific first: the name itself, then, for a
    /// name without a registry, `localhost/NAME`, `docker.io/NAME` and `docker.io/library/NAME`.
    pub fn candidates(&self) -> Vec<Name> {
        let mut v = vec![self.clone()];
        if self.registry.is_none() {
            let mut push = |registry: &str, path: String| {
                v.push(Name {
                    registry: Some(registry.to_owned()),
                    path,
                    tag: self.tag.clone(),
                })
            };
            push("localhost", self.path.clone());
            push("docker.io", self.path.clone());
            if !self.path.contains('/') {
                push("docker.io", format!("library/{}", self.path));
            }
        }
        v
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repository(), self.tag)
    }
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"_.-".contains(&c))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__' or any number of '-'.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &b[start..i];
        let ok = sep == b"." || sep == b"_" || sep == b"__" || sep.iter().all(|&x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `host[:port]`, host being dot-separated `[A-Za-z0-9-]` labels (or a bracketed IPv6).
fn valid_registry(r: &str) -> bool {
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || r.starts_with('[') => (h, Some(p)),
        _ => (r, None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if host.starts_with('[') {
        return host.ends_with(']') && host.len() > 2;
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> (Option<String>, String, String) {
        let x = Name::parse(s).unwrap();
        (x.registry.clone(), x.path.clone(), x.tag.clone())
    }

    #[test]
    fn parses_the_forms_docker_accepts() {
        let none = None::<String>;
        assert_eq!(
            n("busybox"),
            (none.clone(), "busybox".into(), "latest".into())
        );
        assert_eq!(
            n("user/app:1.0"),
            (none.clone(), "user/app".into(), "1.0".into())
        );
        assert_eq!(
            n("localhost/bb-test:2"),
            (Some("localhost".into()), "bb-test".into(), "2".into())
        );
        assert_eq!(
            n("reg.example.com:5000/team/app"),
            (
                Some("reg.example.com:5000".into()),
                "team/app".into(),
                "latest".into()
            )
        );
        assert_eq!(
            n("localhost:5000/a__b.c-d---e:v_1.2-x"),
            (
                Some("localhost:5000".into()),
                "a__b.c-d---e".into(),
                "v_1.2-x".into()
            )
        );
        assert_eq!(Name::parse("app").unwrap().to_string(), "app:latest");
        assert_eq!(
            Name::parse("localhost/bb-test:2").unwrap().repository(),
            "localhost/bb-test"
        );
    }

    #[test]
    fn refuses_invalid_names_with_the_rule() {
        let long_tag = format!("app:{}", "t".repeat(129));
        for bad in [
            "",
            ":tag",
            "App",
            "user/App:1",
            "app:",
            "app:.x",
            "app:-x",
            "a//b",
            "/app",
            "app/",
            "a___b",
            "a..b",
            "-app",
            "app-",
            "app@sha256:00",
            "reg:port/app",
            "app:t:t",
            "ex ample",
            long_tag.as_str(),
        ] {
            let e = Name::parse(bad).unwrap_err();
            assert!(e.to_string().contains("invalid image name"), "{bad}: {e}");
        }
        assert!(Name::parse(&format!("app:{}", "t".repeat(128))).is_ok());
    }

    #[test]
    fn short_names_also_try_localhost_and_docker_io() {
        let c: Vec<String> = Name::parse("bb-test:2")
            .unwrap()
            .candidates()
            .iter()
            .map(|x| x.to_string())
            .collect();
        assert_eq!(
            c,
            [
                "bb-test:2",
                "localhost/bb-test:2",
                "docker.io/bb-test:2",
                "docker.io/library/bb-test:2"
            ]
        );
        assert_eq!(Name::parse("localhost/x").unwrap().candidates().len(), 1);
    }
}
