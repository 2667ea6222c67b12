//! `.dockerignore`: which context paths a build leaves out. dockerd's rules:
//! one pattern a line (comments and blank lines skipped), cleaned, matched
//! with Go's `filepath.Match` plus `**` (any number of directories); a pattern
//! that matches a directory leaves out all below it; `!pattern` takes a path
//! back in; the last pattern that matches decides.

/// The patterns of a `.dockerignore`.
#[derive(Debug, Default, Clone)]
pub struct Ignore {
    patterns: Vec<(bool, Vec<String>)>,
}

fn clean(p: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_string()),
        }
    }
    out
}

impl Ignore {
    /// Reads a `.dockerignore`.
    pub fn parse(text: &str) -> Ignore {
        let mut patterns = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pat) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let segs = clean(pat);
            if !segs.is_empty() {
                patterns.push((exception, segs));
            }
        }
        Ignore { patterns }
    }

    /// Whether `path` (relative to the context, `/`-separated) is left out.
    pub fn excludes(&self, path: &str) -> bool {
        let segs = clean(path);
        let mut excluded = false;
        for (exception, pat) in &self.patterns {
            // A pattern matches the path or one of its parent directories.
            let hit = (1..=segs.len()).any(|n| match_segs(pat, &segs[..n]));
            if hit {
                excluded = !exception;
            }
        }
        excluded
    }

    /// Whether an exception could take back something under the directory
    /// `dir` (so a walk must not skip the excluded directory whole).
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|(e, _)| *e)
    }
}

fn match_segs(pat: &[String], path: &[String]) -> bool {
    match pat.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => (0..=path.len()).any(|skip| match_segs(rest, &path[skip..])),
        Some((first, rest)) => match path.split_first() {
            Some((p, prest)) => glob(first.as_bytes(), p.as_bytes()) && match_segs(rest, prest),
            None => false,
        },
    }
}

/// Go's `filepath.Match` on one path segment: `*`, `?`, `[...]` (with `^`
/// or `!` negation and ranges), `\` escapes.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| glob(&p[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && glob(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(&c) = s.first() else { return false };
            let mut i = 1;
            let negate = matches!(p.get(i), Some(b'^' | b'!'));
            if negate {
                i += 1;
            }
            let mut matched = false;
            let mut first = true;
            while i < p.len() && (p[i] != b']' || first) {
                first = false;
                let lo = p[i];
                if p.get(i + 1) == Some(&b'-') && p.get(i + 2).is_some_and(|b| *b != b']') {
                    let hi = p[i + 2];
                    matched |= lo <= c && c <= hi;
                    i += 3;
                } else {
                    matched |= lo == c;
                    i += 1;
                }
            }
            if i >= p.len() {
                return false;
            }
            matched != negate && glob(&p[i + 1..], &s[1..])
        }
        Some(b'\\') if p.len() > 1 => s.first() == Some(&p[1]) && glob(&p[2..], &s[1..]),
        Some(&c) => s.first() == Some(&c) && glob(&p[1..], &s[1..]),
    }
}

/// Whether `name` matches the glob `pattern` (one segment), for COPY's wildcards.
pub fn matches(pattern: &str, name: &str) -> bool {
    glob(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_rules() {
        let i = Ignore::parse("# comment\n\n*.log\nbuild/\n!build/keep.txt\n**/secret*\n/docs/*.md\ntmp?\n[ab].txt\n");
        assert!(i.excludes("app.log") && !i.excludes("dir/app.log"), "* does not cross directories");
        assert!(i.excludes("build/out.o") && i.excludes("build"), "a directory and all below it");
        assert!(!i.excludes("build/keep.txt"), "an exception takes it back");
        assert!(i.excludes("a/b/secret.key") && i.excludes("secret"), "** spans directories");
        assert!(i.excludes("docs/readme.md") && !i.excludes("docs/sub/readme.md"));
        assert!(i.excludes("tmp1") && !i.excludes("tmp12"));
        assert!(i.excludes("a.txt") && !i.excludes("c.txt"));
        assert!(!i.excludes("src/main.rs"));
        assert!(i.has_exceptions());
        assert!(matches("*.txt", "a.txt") && !matches("*.txt", "a.txt.bak") && matches("[!x]?", "ab"));
    }
}
