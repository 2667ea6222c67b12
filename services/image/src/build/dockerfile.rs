//! A Dockerfile, read as the classic builder reads it. `parse-dockerfile`
//! splits the text into instructions (parser directives, line continuations,
//! JSON arrays, flags, here-documents); this module turns them into
//! [`Instruction`]s with their words, and [`Lexer`] does dockerd's word
//! processing where dockerd does it (quotes, escapes, `$VAR`, `${VAR}`,
//! `${VAR:-word}`, `${VAR:+word}`), with the build's variables.

use berth_core::{Error, Result};

/// A command in shell form (run by the stage's SHELL) or exec form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Shell(String),
    Exec(Vec<String>),
}

/// A flag (`--from=base`), its value unprocessed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub name: String,
    pub value: Option<String>,
}

/// One instruction, with its original text for `Step N/M : ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The instruction as written (continuations folded), for the progress stream.
    pub text: String,
    pub instruction: Instruction,
}

/// An instruction's words, unprocessed (variables are expanded when the step runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    From { image: String, name: Option<String>, flags: Vec<Flag> },
    Arg(String),
    Run { command: Command, flags: Vec<Flag> },
    Cmd(Command),
    Entrypoint(Command),
    Env(String),
    Label(String),
    Expose(Vec<String>),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    Stopsignal(String),
    Shell(Vec<String>),
    Maintainer(String),
    Healthcheck { command: Option<Command>, flags: Vec<Flag> },
    Copy { sources: Vec<String>, dest: String, flags: Vec<Flag>, add: bool },
    Onbuild(String),
}

/// A parsed Dockerfile: its escape character and steps.
#[derive(Debug)]
pub struct Dockerfile {
    pub escape: char,
    pub steps: Vec<Step>,
}

/// Removes line continuations from a shell-form command as dockerd does: the
/// escape character and its newline go, and so do comment lines inside.
fn unfold(raw: &str, escape: char) -> String {
    let mut out = String::new();
    for (i, line) in raw.split('\n').enumerate() {
        if i > 0 && line.trim_start().starts_with('#') {
            continue;
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        match line.strip_suffix(escape) {
            Some(rest) => out.push_str(rest),
            None => out.push_str(line),
        }
    }
    out
}

fn command(c: &parse_dockerfile::Command<'_>, escape: char) -> Command {
    match c {
        parse_dockerfile::Command::Exec(words) => {
            Command::Exec(words.value.iter().map(|w| w.value.to_string()).collect())
        }
        parse_dockerfile::Command::Shell(s) => Command::Shell(unfold(s.value, escape)),
        #[allow(unreachable_patterns)]
        _ => Command::Shell(String::new()),
    }
}

fn flags<'a, 'b: 'a>(f: impl IntoIterator<Item = &'a parse_dockerfile::Flag<'b>>) -> Vec<Flag> {
    f.into_iter()
        .map(|f| Flag { name: f.name.value.to_string(), value: f.value.as_ref().map(|v| v.value.to_string()) })
        .collect()
}

fn convert(i: &parse_dockerfile::Instruction<'_>, escape: char, text: &str) -> Result<Instruction> {
    use parse_dockerfile::Instruction as P;
    Ok(match i {
        P::From(f) => Instruction::From {
            image: f.image.value.to_string(),
            name: f.as_.as_ref().map(|(_, n)| n.value.to_string()),
            flags: flags(&f.options),
        },
        P::Arg(a) => Instruction::Arg(a.arguments.value.to_string()),
        P::Run(r) => {
            if !r.here_docs.is_empty() {
                return Err(Error::invalid("here-documents need BuildKit; the classic builder does not run them"));
            }
            Instruction::Run { command: command(&r.arguments, escape), flags: flags(&r.options) }
        }
        P::Cmd(c) => Instruction::Cmd(command(&c.arguments, escape)),
        P::Entrypoint(e) => Instruction::Entrypoint(command(&e.arguments, escape)),
        P::Env(e) => Instruction::Env(e.arguments.value.to_string()),
        P::Label(l) => Instruction::Label(l.arguments.value.to_string()),
        P::Expose(e) => Instruction::Expose(e.arguments.iter().map(|a| a.value.to_string()).collect()),
        P::Volume(v) => Instruction::Volume(match &v.arguments {
            parse_dockerfile::JsonOrStringArray::Json(a) => a.value.iter().map(|w| w.value.to_string()).collect(),
            parse_dockerfile::JsonOrStringArray::String(a) => a.iter().map(|w| w.value.to_string()).collect(),
        }),
        P::User(u) => Instruction::User(u.arguments.value.to_string()),
        P::Workdir(w) => Instruction::Workdir(w.arguments.value.to_string()),
        P::Stopsignal(s) => Instruction::Stopsignal(s.arguments.value.to_string()),
        P::Shell(s) => Instruction::Shell(s.arguments.iter().map(|w| w.value.to_string()).collect()),
        P::Maintainer(m) => Instruction::Maintainer(m.name.value.to_string()),
        P::Healthcheck(h) => Instruction::Healthcheck {
            command: match &h.arguments {
                parse_dockerfile::HealthcheckArguments::Cmd { arguments, .. } => Some(command(arguments, escape)),
                _ => None,
            },
            flags: flags(&h.options),
        },
        P::Copy(c) => copy(&c.src, &c.dest, flags(&c.options), false)?,
        P::Add(a) => copy(&a.src, &a.dest, flags(&a.options), true)?,
        P::Onbuild(_) => {
            // The trigger, as written after the keyword.
            let rest = text.trim_start();
            let rest = rest.get("ONBUILD".len()..).unwrap_or("").trim_start();
            Instruction::Onbuild(rest.to_string())
        }
        _ => {
            return Err(Error::invalid(format!(
                "unknown instruction: {}",
                text.split_whitespace().next().unwrap_or("")
            )));
        }
    })
}

fn copy(
    src: &[parse_dockerfile::Source<'_>],
    dest: &parse_dockerfile::UnescapedString<'_>,
    flags: Vec<Flag>,
    add: bool,
) -> Result<Instruction> {
    let mut sources = Vec::new();
    for s in src {
        match s {
            parse_dockerfile::Source::Path(p) => sources.push(p.value.to_string()),
            _ => return Err(Error::invalid("here-documents need BuildKit; the classic builder does not copy them")),
        }
    }
    Ok(Instruction::Copy { sources, dest: dest.value.to_string(), flags, add })
}

/// Parses a Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile> {
    let parsed = parse_dockerfile::parse(text).map_err(|e| Error::invalid(format!("dockerfile parse error: {e}")))?;
    let escape = parsed.parser_directives.escape.as_ref().map(|d| d.value.value).unwrap_or('\\');
    let mut steps = Vec::new();
    let mut bounds: Vec<usize> = Vec::new();
    for i in &parsed.instructions {
        bounds.push(span_start(i));
    }
    for (n, i) in parsed.instructions.iter().enumerate() {
        let start = bounds[n];
        let end = bounds.get(n + 1).copied().unwrap_or(text.len());
        let raw = text.get(start..end).unwrap_or("");
        let text = fold_text(raw, escape);
        steps.push(Step { instruction: convert(i, escape, &text)?, text });
    }
    if !steps.iter().any(|s| matches!(s.instruction, Instruction::From { .. })) {
        return Err(Error::invalid("dockerfile parse error: no build stage in current context"));
    }
    if let Some(first) = steps.iter().find(|s| !matches!(s.instruction, Instruction::Arg(_)))
        && !matches!(first.instruction, Instruction::From { .. })
    {
        return Err(Error::invalid("Please provide a source image with `from` prior to commit"));
    }
    Ok(Dockerfile { escape, steps })
}

/// Where an instruction starts in the text (its keyword).
fn span_start(i: &parse_dockerfile::Instruction<'_>) -> usize {
    use parse_dockerfile::Instruction as P;
    let k = match i {
        P::Add(x) => &x.add,
        P::Arg(x) => &x.arg,
        P::Cmd(x) => &x.cmd,
        P::Copy(x) => &x.copy,
        P::Entrypoint(x) => &x.entrypoint,
        P::Env(x) => &x.env,
        P::Expose(x) => &x.expose,
        P::From(x) => &x.from,
        P::Healthcheck(x) => &x.healthcheck,
        P::Label(x) => &x.label,
        P::Maintainer(x) => &x.maintainer,
        P::Onbuild(x) => &x.onbuild,
        P::Run(x) => &x.run,
        P::Shell(x) => &x.shell,
        P::Stopsignal(x) => &x.stopsignal,
        P::User(x) => &x.user,
        P::Volume(x) => &x.volume,
        P::Workdir(x) => &x.workdir,
        _ => return 0,
    };
    k.span.start
}

/// An instruction's text on one line, trailing comments and blank lines dropped.
fn fold_text(raw: &str, escape: char) -> String {
    let mut lines: Vec<&str> = raw.split('\n').collect();
    // The text runs to the next instruction: drop what follows the last
    // line of this one (comments, blank lines).
    let (mut keep, mut continued) = (1, false);
    for (i, l) in lines.iter().enumerate() {
        if i > 0 && !continued {
            break;
        }
        keep = i + 1;
        // A comment line inside a continuation neither ends nor adds to it.
        if i > 0 && l.trim_start().starts_with('#') {
            continue;
        }
        continued = l.trim_end().ends_with(escape);
    }
    lines.truncate(keep);
    unfold(&lines.join("\n"), escape).trim().to_string()
}

/// dockerd's word processing, with the build's variables.
pub struct Lexer<'a> {
    pub escape: char,
    pub vars: &'a [(String, String)],
}

impl Lexer<'_> {
    fn var(&self, name: &str) -> Option<&str> {
        self.vars.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// One word: quotes removed, escapes and variables processed.
    pub fn word(&self, s: &str) -> Result<String> {
        Ok(self.process(s, false)?.join(""))
    }

    /// Words split at unquoted whitespace.
    pub fn words(&self, s: &str) -> Result<Vec<String>> {
        self.process(s, true)
    }

    fn process(&self, s: &str, split: bool) -> Result<Vec<String>> {
        let chars: Vec<char> = s.chars().collect();
        let mut words = Vec::new();
        let mut cur = String::new();
        let mut in_word = false;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == self.escape {
                if let Some(&n) = chars.get(i + 1) {
                    cur.push(n);
                    i += 2;
                } else {
                    cur.push(c);
                    i += 1;
                }
                in_word = true;
                continue;
            }
            match c {
                '\'' => {
                    i += 1;
                    while i < chars.len() && chars[i] != '\'' {
                        cur.push(chars[i]);
                        i += 1;
                    }
                    if i >= chars.len() {
                        return Err(Error::invalid(format!(
                            "unexpected end of statement while looking for matching single-quote in {s}"
                        )));
                    }
                    i += 1;
                    in_word = true;
                }
                '"' => {
                    i += 1;
                    loop {
                        let Some(&d) = chars.get(i) else {
                            return Err(Error::invalid(format!(
                                "unexpected end of statement while looking for matching double-quote in {s}"
                            )));
                        };
                        if d == '"' {
                            i += 1;
                            break;
                        }
                        if d == self.escape && matches!(chars.get(i + 1), Some('"' | '$') | Some('\\')) {
                            cur.push(chars[i + 1]);
                            i += 2;
                        } else if d == '$' {
                            i = self.dollar(&chars, i, &mut cur)?;
                        } else {
                            cur.push(d);
                            i += 1;
                        }
                    }
                    in_word = true;
                }
                '$' => {
                    i = self.dollar(&chars, i, &mut cur)?;
                    in_word = true;
                }
                c if split && c.is_whitespace() => {
                    if in_word {
                        words.push(std::mem::take(&mut cur));
                        in_word = false;
                    }
                    i += 1;
                }
                c => {
                    cur.push(c);
                    in_word = true;
                    i += 1;
                }
            }
        }
        if in_word || !split {
            words.push(cur);
        }
        Ok(words)
    }

    /// Expands the variable at `chars[i]` (a `$`) into `out`; the index after it.
    fn dollar(&self, chars: &[char], i: usize, out: &mut String) -> Result<usize> {
        let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
        match chars.get(i + 1) {
            Some('{') => {
                let close = chars[i + 2..]
                    .iter()
                    .position(|c| *c == '}')
                    .map(|p| p + i + 2)
                    .ok_or_else(|| Error::invalid("missing '}' in a variable"))?;
                let inner: String = chars[i + 2..close].iter().collect();
                let (name, op, word) = match inner.find([':', '-', '+']) {
                    Some(p) => {
                        let (name, rest) = inner.split_at(p);
                        let (op, word) = if let Some(w) = rest.strip_prefix(":-") {
                            (":-", w)
                        } else if let Some(w) = rest.strip_prefix(":+") {
                            (":+", w)
                        } else if let Some(w) = rest.strip_prefix('-') {
                            ("-", w)
                        } else if let Some(w) = rest.strip_prefix('+') {
                            ("+", w)
                        } else {
                            return Err(Error::invalid(format!("unsupported modifier in ${{{inner}}}")));
                        };
                        (name.to_string(), op, word.to_string())
                    }
                    None => (inner.clone(), "", String::new()),
                };
                let value = self.var(&name);
                let word = || self.word(&word);
                match op {
                    "" => out.push_str(value.unwrap_or("")),
                    ":-" => match value.filter(|v| !v.is_empty()) {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&word()?),
                    },
                    "-" => match value {
                        Some(v) => out.push_str(v),
                        None => out.push_str(&word()?),
                    },
                    ":+" => {
                        if value.is_some_and(|v| !v.is_empty()) {
                            out.push_str(&word()?);
                        }
                    }
                    _ => {
                        if value.is_some() {
                            out.push_str(&word()?);
                        }
                    }
                }
                Ok(close + 1)
            }
            Some(&c) if is_name(c) => {
                let mut j = i + 1;
                while j < chars.len() && is_name(chars[j]) {
                    j += 1;
                }
                let name: String = chars[i + 1..j].iter().collect();
                out.push_str(self.var(&name).unwrap_or(""));
                Ok(j)
            }
            _ => {
                out.push('$');
                Ok(i + 1)
            }
        }
    }

    /// `K=V K2="v 2"` (or the legacy `K V w`) as pairs, as ENV and LABEL take them.
    pub fn pairs(&self, s: &str) -> Result<Vec<(String, String)>> {
        let words = self.words(s)?;
        if !words.is_empty() && !words[0].contains('=') {
            // Legacy form: the first word is the key, the rest the value.
            let mut parts = s.trim().splitn(2, char::is_whitespace);
            let key = self.word(parts.next().unwrap_or(""))?;
            let value = self.word(parts.next().unwrap_or("").trim())?;
            return Ok(vec![(key, value)]);
        }
        words
            .into_iter()
            .map(|w| match w.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => Err(Error::invalid(format!(
                    "Syntax error - can't find = in \"{w}\". Must be of the form: name=value"
                ))),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_and_their_words() {
        let d = parse(
            "# escape=\\\nARG V=1\nFROM busybox:${V} AS base\n# a comment\nRUN echo a \\\n   # inside\n   b && \\\n  echo c\n\nCOPY --chown=1:2 a b /dst/\nCMD [\"sh\", \"-c\", \"echo\"]\nONBUILD RUN echo later\n",
        )
        .expect("parse");
        assert_eq!(d.escape, '\\');
        let texts: Vec<&str> = d.steps.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts[2], "RUN echo a    b &&   echo c");
        assert_eq!(texts[1], "FROM busybox:${V} AS base");
        assert!(
            matches!(&d.steps[2].instruction, Instruction::Run { command: Command::Shell(c), .. } if c == "echo a    b &&   echo c")
        );
        let Instruction::Copy { sources, dest, flags, add } = &d.steps[3].instruction else { panic!("copy") };
        assert_eq!(
            (sources.as_slice(), dest.as_str(), *add),
            (&["a".to_string(), "b".to_string()][..], "/dst/", false)
        );
        assert_eq!(flags[0], Flag { name: "chown".into(), value: Some("1:2".into()) });
        assert_eq!(
            d.steps[4].instruction,
            Instruction::Cmd(Command::Exec(vec!["sh".into(), "-c".into(), "echo".into()]))
        );
        assert_eq!(d.steps[5].instruction, Instruction::Onbuild("RUN echo later".into()));
        assert!(parse("RUN true\n").is_err(), "no FROM");
    }

    #[test]
    fn words_as_dockerd_processes_them() {
        let vars = vec![("A".to_string(), "x".to_string()), ("E".to_string(), String::new())];
        let l = Lexer { escape: '\\', vars: &vars };
        assert_eq!(l.word("$A/${A}/${B:-d}/${A:+set}/${B:+no}/${E:-empty}/${E-kept}").expect("w"), "x/x/d/set//empty/");
        assert_eq!(l.word("'$A' \"$A\" \\$A").expect("w"), "$A x $A");
        assert_eq!(l.words("one \"two words\" three\\ four").expect("w"), ["one", "two words", "three four"]);
        assert_eq!(
            l.pairs("K=1 L=\"two words\" M=$A").expect("pairs"),
            [("K".into(), "1".into()), ("L".into(), "two words".into()), ("M".into(), "x".into())]
        );
        assert_eq!(l.pairs("LEGACY some value").expect("legacy"), [("LEGACY".into(), "some value".into())]);
        assert!(l.word("\"open").is_err());
    }
}
