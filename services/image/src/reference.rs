//! Image references: `[domain/]path[:tag][@digest]`, as the docker CLI writes them.
//!
//! Berth stores and shows references in Docker's *familiar* form: Docker Hub's
//! `docker.io/library/busybox:latest` is `busybox:latest`, `docker.io/me/app` is
//! `me/app`, and everything with another domain keeps it (`127.0.0.1:5000/app:v1`).

use berth_core::{Error, Result};

/// The tag a reference gets when it names none.
pub const DEFAULT_TAG: &str = "latest";

/// A parsed, normalized reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Familiar repository name, e.g. `busybox` or `127.0.0.1:5000/team/app`.
    pub name: String,
    /// Tag, if the reference named one.
    pub tag: Option<String>,
    /// Digest (`sha256:...`), if the reference named one.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalizes a reference; fails on anything dockerd would refuse.
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |why: &str| Error::invalid(format!("invalid reference format: {input:?}: {why}"));
        if input.is_empty() || input.len() > 255 + 128 + 72 {
            return Err(invalid("length"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                if !is_valid_digest(d) {
                    return Err(invalid("bad digest"));
                }
                (r, Some(d.to_string()))
            }
            None => (input, None),
        };
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&rest[..at], Some(rest[at + 1..].to_string()))
            }
            None => (rest, None),
        };
        if let Some(t) = &tag
            && !is_valid_tag(t)
        {
            return Err(invalid("bad tag"));
        }
        if name.is_empty() || name.len() > 255 {
            return Err(invalid("bad name"));
        }
        let mut components: Vec<&str> = name.split('/').collect();
        let domain = if components.len() > 1 && is_domain(components[0]) { Some(components.remove(0)) } else { None };
        if components.is_empty() || !components.iter().all(|c| is_valid_path_component(c)) {
            return Err(invalid("repository name must be lowercase alphanumerics separated by '.', '_', '__' or '-'"));
        }
        let domain = domain.map(|d| d.to_string());
        let path = components.join("/");
        let familiar = match domain.as_deref() {
            None | Some("docker.io") | Some("index.docker.io") => {
                path.strip_prefix("library/").filter(|p| !p.contains('/')).unwrap_or(&path).to_string()
            }
            Some(d) => format!("{d}/{path}"),
        };
        Ok(Reference { name: familiar, tag, digest })
    }

    /// `name:tag`, with the default tag when none was given.
    pub fn tagged(&self) -> String {
        format!("{}:{}", self.name, self.tag.as_deref().unwrap_or(DEFAULT_TAG))
    }

    /// The fully qualified name (`docker.io/library/busybox`), as OCI annotations want it.
    pub fn qualified_name(&self) -> String {
        let first = self.name.split('/').next().unwrap_or("");
        if self.name.contains('/') && is_domain(first) {
            self.name.clone()
        } else if self.name.contains('/') {
            format!("docker.io/{}", self.name)
        } else {
            format!("docker.io/library/{}", self.name)
        }
    }
}

/// Whether `s` is `sha256:` plus 64 lowercase hex characters.
pub fn is_valid_digest(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

fn is_domain(c: &str) -> bool {
    c == "localhost" || c.contains('.') || c.contains(':') || c.chars().any(|ch| ch.is_ascii_uppercase())
}

fn is_valid_tag(t: &str) -> bool {
    let bytes = t.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn is_valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or any number of "-".
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// Matches `name` against a shell-style pattern (`*`, `?`, `[...]` not supported);
/// `*` does not cross `/`, as Go's `path.Match` which dockerd uses.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some((b'*', rest)) => {
                let mut i = 0;
                loop {
                    if go(rest, &n[i..]) {
                        return true;
                    }
                    if i == n.len() || n[i] == b'/' {
                        return false;
                    }
                    i += 1;
                }
            }
            Some((b'?', rest)) => !n.is_empty() && n[0] != b'/' && go(rest, &n[1..]),
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        // Robustness (issue 13): any text a client sends as an image name is
        // parsed or refused, never a panic; what parses is bounded and clean.
        #[test]
        fn any_text_is_parsed_or_refused(s in "\\PC{0,300}") {
            let _ = Reference::parse(&s);
        }

        #[test]
        fn reference_shaped_text_is_parsed_or_refused(s in "[a-zA-Z0-9./:@_+-]{0,200}") {
            if let Ok(r) = Reference::parse(&s) {
                proptest::prop_assert!(!r.name.is_empty());
            }
        }
    }

    fn tagged(s: &str) -> String {
        Reference::parse(s).map(|r| r.tagged()).unwrap_or_else(|e| format!("ERR {e}"))
    }

    #[test]
    fn familiarizes_docker_hub_names() {
        assert_eq!(tagged("busybox"), "busybox:latest");
        assert_eq!(tagged("library/busybox:1.36"), "busybox:1.36");
        assert_eq!(tagged("docker.io/library/busybox:1"), "busybox:1");
        assert_eq!(tagged("docker.io/me/app"), "me/app:latest");
        assert_eq!(tagged("127.0.0.1:5000/team/app:v1"), "127.0.0.1:5000/team/app:v1");
        assert_eq!(tagged("localhost/app"), "localhost/app:latest");
    }

    #[test]
    fn qualifies_names() {
        assert_eq!(
            Reference::parse("busybox").map(|r| r.qualified_name()).ok().as_deref(),
            Some("docker.io/library/busybox")
        );
        assert_eq!(Reference::parse("me/app").map(|r| r.qualified_name()).ok().as_deref(), Some("docker.io/me/app"));
        assert_eq!(Reference::parse("reg.io/app").map(|r| r.qualified_name()).ok().as_deref(), Some("reg.io/app"));
    }

    #[test]
    fn rejects_bad_references() {
        for bad in ["", "Busybox", "a//b", "a:", "a:-x", "-a", "a b", "a@sha256:12", "a..b", "a/"] {
            assert!(Reference::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn keeps_digest() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("busybox@{d}")).expect("parse");
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.tag, None);
    }

    #[test]
    fn separators() {
        assert!(is_valid_path_component("a__b"));
        assert!(is_valid_path_component("a---b"));
        assert!(!is_valid_path_component("a___b"));
        assert!(!is_valid_path_component("a._b"));
    }

    #[test]
    fn globs_like_go_path_match() {
        assert!(glob_match("busy*", "busybox"));
        assert!(glob_match("busybox:*", "busybox:latest"));
        assert!(!glob_match("*", "team/app"));
        assert!(glob_match("*/*", "team/app"));
        assert!(glob_match("b?sybox", "busybox"));
        assert!(!glob_match("busy", "busybox"));
    }
}
