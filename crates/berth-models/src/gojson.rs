//! Go's `encoding/json` words for a syntax error (`invalid character 'i'
//! looking for beginning of object key string`, `unexpected end of JSON
//! input`), which dockerd answers bad JSON bodies with and clients match on.
//! A small scanner that follows Go's states far enough to find the first
//! error as Go reports it.

/// How Go quotes a byte in these messages (`quoteChar`).
fn quote(c: u8) -> String {
    match c {
        b'\'' => "'\\''".into(),
        b'"' => "'\"'".into(),
        b'\n' => "'\\n'".into(),
        b'\r' => "'\\r'".into(),
        b'\t' => "'\\t'".into(),
        0x20..=0x7e => format!("'{}'", c as char),
        _ => format!("'\\x{c:02x}'"),
    }
}

enum Frame {
    Object,
    Array,
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

type Step = Result<(), String>;

const EOF: &str = "unexpected end of JSON input";

impl Scan<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn string(&mut self) -> Step {
        self.i += 1; // the opening quote
        loop {
            let c = self.peek().ok_or(EOF)?;
            self.i += 1;
            match c {
                b'"' => return Ok(()),
                b'\\' => {
                    let e = self.peek().ok_or(EOF)?;
                    self.i += 1;
                    match e {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            for _ in 0..4 {
                                let h = self.peek().ok_or(EOF)?;
                                if !h.is_ascii_hexdigit() {
                                    return Err(format!(
                                        "invalid character {} in \\u hexadecimal character escape",
                                        quote(h)
                                    ));
                                }
                                self.i += 1;
                            }
                        }
                        other => return Err(format!("invalid character {} in string escape code", quote(other))),
                    }
                }
                c if c < 0x20 => return Err(format!("invalid character {} in string literal", quote(c))),
                _ => {}
            }
        }
    }

    fn literal(&mut self, word: &str) -> Step {
        for want in word.bytes() {
            let c = self.peek().ok_or(EOF)?;
            if c != want {
                return Err(format!("invalid character {} in literal {word} (expecting {})", quote(c), quote(want)));
            }
            self.i += 1;
        }
        Ok(())
    }

    fn number(&mut self) -> Step {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let c = self.peek().ok_or(EOF)?;
        if !c.is_ascii_digit() {
            return Err(format!("invalid character {} in numeric literal", quote(c)));
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-')) {
            self.i += 1;
        }
        Ok(())
    }

    /// The first syntax error, if any.
    fn run(&mut self) -> Step {
        let mut stack: Vec<Frame> = Vec::new();
        // Looking for a value (true) or for what follows one (false).
        let mut want_value = true;
        loop {
            self.ws();
            if want_value {
                let c = self.peek().ok_or(EOF)?;
                match c {
                    b'{' => {
                        self.i += 1;
                        self.ws();
                        match self.peek().ok_or(EOF)? {
                            b'}' => {
                                self.i += 1;
                                want_value = false;
                                continue;
                            }
                            b'"' => {}
                            other => {
                                return Err(format!(
                                    "invalid character {} looking for beginning of object key string",
                                    quote(other)
                                ));
                            }
                        }
                        self.key()?;
                        stack.push(Frame::Object);
                        continue;
                    }
                    b'[' => {
                        self.i += 1;
                        self.ws();
                        if self.peek().ok_or(EOF)? == b']' {
                            self.i += 1;
                            want_value = false;
                        } else {
                            stack.push(Frame::Array);
                        }
                        continue;
                    }
                    b'"' => self.string()?,
                    b't' => self.literal("true")?,
                    b'f' => self.literal("false")?,
                    b'n' => self.literal("null")?,
                    b'-' | b'0'..=b'9' => self.number()?,
                    other => return Err(format!("invalid character {} looking for beginning of value", quote(other))),
                }
                want_value = false;
                continue;
            }
            match stack.last() {
                None => {
                    return match self.peek() {
                        None => Ok(()),
                        Some(c) => Err(format!("invalid character {} after top-level value", quote(c))),
                    };
                }
                Some(Frame::Object) => match self.peek().ok_or(EOF)? {
                    b',' => {
                        self.i += 1;
                        self.ws();
                        match self.peek().ok_or(EOF)? {
                            b'"' => self.key()?,
                            other => {
                                return Err(format!(
                                    "invalid character {} looking for beginning of object key string",
                                    quote(other)
                                ));
                            }
                        }
                        want_value = true;
                    }
                    b'}' => {
                        self.i += 1;
                        stack.pop();
                    }
                    other => return Err(format!("invalid character {} after object key:value pair", quote(other))),
                },
                Some(Frame::Array) => match self.peek().ok_or(EOF)? {
                    b',' => {
                        self.i += 1;
                        want_value = true;
                    }
                    b']' => {
                        self.i += 1;
                        stack.pop();
                    }
                    other => return Err(format!("invalid character {} after array element", quote(other))),
                },
            }
        }
    }

    /// An object key and its colon; leaves the scanner before the value.
    fn key(&mut self) -> Step {
        self.string()?;
        self.ws();
        match self.peek().ok_or(EOF)? {
            b':' => {
                self.i += 1;
                Ok(())
            }
            other => Err(format!("invalid character {} after object key", quote(other))),
        }
    }
}

/// Go's message for the first syntax error in `b`, or `None` if it is valid JSON syntax.
pub fn syntax_error(b: &[u8]) -> Option<String> {
    Scan { b, i: 0 }.run().err()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_says_it_so() {
        let e = |s: &str| syntax_error(s.as_bytes());
        assert_eq!(e(r#"{"Image":"busybox","Cmd":["sh"]}"#), None);
        assert_eq!(e(" [1, -2.5e3, true, null, {}, []] "), None);
        assert_eq!(e("{invalid}").as_deref(), Some("invalid character 'i' looking for beginning of object key string"));
        assert_eq!(e("{\"a\" 1}").as_deref(), Some("invalid character '1' after object key"));
        assert_eq!(e("{\"a\":1 \"b\":2}").as_deref(), Some("invalid character '\"' after object key:value pair"));
        assert_eq!(e("[1 2]").as_deref(), Some("invalid character '2' after array element"));
        assert_eq!(e("{\"a\":}").as_deref(), Some("invalid character '}' looking for beginning of value"));
        assert_eq!(
            e("{\"a\":1,}").as_deref(),
            Some("invalid character '}' looking for beginning of object key string")
        );
        assert_eq!(e("{\"a\":tru}").as_deref(), Some("invalid character '}' in literal true (expecting 'e')"));
        assert_eq!(e("{} x").as_deref(), Some("invalid character 'x' after top-level value"));
        assert_eq!(e("{\"a\":\"x\ny\"}").as_deref(), Some("invalid character '\\n' in string literal"));
        assert_eq!(e("{\"a\":[1,").as_deref(), Some("unexpected end of JSON input"));
        assert_eq!(e("").as_deref(), Some("unexpected end of JSON input"));
        assert_eq!(e("{\"a\":{\"b\":[{\"c\":1}]}}"), None);
    }
}
