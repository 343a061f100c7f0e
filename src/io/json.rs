//! Minimal JSON: a writer for summaries (non-finite numbers become `null`) and a strict parser
//! for the headers of files we read (safetensors).

use crate::error::{Error, Result};

/// A JSON value.
#[derive(Clone, Debug)]
pub enum Json {
    /// `null`.
    Null,
    /// `true`/`false`.
    Bool(bool),
    /// A number (NaN and ±∞ are written as `null`).
    Num(f64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Json>),
    /// An object with keys in insertion order.
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// An object from (key, value) pairs.
    pub fn obj<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Json)>) -> Json {
        Json::Obj(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Pretty-printed text with two-space indentation and a final newline.
    pub fn pretty(&self) -> String {
        let mut s = String::new();
        self.write(&mut s, 0);
        s.push('\n');
        s
    }

    fn write(&self, s: &mut String, indent: usize) {
        let pad = |n: usize| "  ".repeat(n);
        match self {
            Json::Null => s.push_str("null"),
            Json::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
            // Integers as integers (strict readers such as safetensors need them), else the
            // shortest text that reads back to the same double.
            Json::Num(x) if x.is_finite() && x.fract() == 0.0 && x.abs() < 9.0e15 => {
                s.push_str(&format!("{x:.0}"))
            }
            Json::Num(x) if x.is_finite() => s.push_str(&format!("{x:?}")),
            Json::Num(_) => s.push_str("null"),
            Json::Str(t) => write_string(s, t),
            Json::Arr(items) if items.is_empty() => s.push_str("[]"),
            Json::Arr(items) => {
                s.push('[');
                for (i, v) in items.iter().enumerate() {
                    s.push_str(if i == 0 { "\n" } else { ",\n" });
                    s.push_str(&pad(indent + 1));
                    v.write(s, indent + 1);
                }
                s.push('\n');
                s.push_str(&pad(indent));
                s.push(']');
            }
            Json::Obj(items) if items.is_empty() => s.push_str("{}"),
            Json::Obj(items) => {
                s.push('{');
                for (i, (k, v)) in items.iter().enumerate() {
                    s.push_str(if i == 0 { "\n" } else { ",\n" });
                    s.push_str(&pad(indent + 1));
                    write_string(s, k);
                    s.push_str(": ");
                    v.write(s, indent + 1);
                }
                s.push('\n');
                s.push_str(&pad(indent));
                s.push('}');
            }
        }
    }
}

fn write_string(s: &mut String, t: &str) {
    s.push('"');
    for ch in t.chars() {
        match ch {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
}

impl Json {
    /// Parses a complete JSON text.
    pub fn parse(text: &str) -> Result<Json> {
        let mut p = Parser {
            s: text.as_bytes(),
            at: 0,
            depth: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.at != p.s.len() {
            return Err(p.err("trailing characters"));
        }
        Ok(v)
    }

    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Typed members of a record read from `file`: every missing or malformed member is an error
/// naming the file and the member (`file: missing or bad "key"`).
pub struct Fields<'a> {
    json: &'a Json,
    file: &'a str,
}

impl<'a> Fields<'a> {
    /// The members of `json`, read from `file`.
    pub fn new(json: &'a Json, file: &'a str) -> Self {
        Fields { json, file }
    }

    /// The error naming member `key`.
    pub fn bad(&self, key: &str) -> Error {
        Error::InvalidInput(format!("{}: missing or bad \"{key}\"", self.file))
    }

    /// The member `key`, if present.
    pub fn get(&self, key: &str) -> Option<&'a Json> {
        self.json.get(key)
    }

    /// A finite number.
    pub fn num(&self, key: &str) -> Result<f64> {
        match self.json.get(key) {
            Some(Json::Num(v)) if v.is_finite() => Ok(*v),
            _ => Err(self.bad(key)),
        }
    }

    /// A count: a non-negative integer below 10¹⁵.
    pub fn count(&self, key: &str) -> Result<usize> {
        let v = self.num(key)?;
        (v >= 0.0 && v.fract() == 0.0 && v < 1e15)
            .then_some(v as usize)
            .ok_or_else(|| self.bad(key))
    }

    /// A flag that files written before it existed lack: absent means `default`; anything but
    /// `true` or `false` is an error.
    pub fn flag_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.json.get(key) {
            None => Ok(default),
            Some(Json::Bool(b)) => Ok(*b),
            Some(_) => Err(self.bad(key)),
        }
    }

    /// A 64-bit integer stored as a decimal string (seeds, step counts: beyond f64's 2⁵³).
    pub fn big(&self, key: &str) -> Result<u64> {
        match self.json.get(key) {
            Some(Json::Str(v)) => v.parse().map_err(|_| self.bad(key)),
            _ => Err(self.bad(key)),
        }
    }

    /// Checks that member "format" is `format`.
    pub fn format(&self, format: &str) -> Result<()> {
        match self.json.get("format") {
            Some(Json::Str(f)) if f == format => Ok(()),
            _ => Err(self.bad("format")),
        }
    }
}

/// Deepest nesting of arrays and objects accepted: recursion deeper than this on hostile input
/// would overflow the stack (an abort, not an error).
const MAX_DEPTH: usize = 128;

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> Error {
        Error::InvalidInput(format!("JSON: {what} at byte {}", self.at))
    }
    fn ws(&mut self) {
        while self.at < self.s.len() && self.s[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }
    fn eat(&mut self, c: u8) -> Result<()> {
        self.ws();
        if self.s.get(self.at) == Some(&c) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected '{}'", c as char)))
        }
    }
    fn value(&mut self) -> Result<Json> {
        self.ws();
        match self.s.get(self.at) {
            Some(b'{' | b'[') if self.depth >= MAX_DEPTH => {
                Err(self.err(&format!("nesting deeper than {MAX_DEPTH}")))
            }
            Some(b'{') => self.nested(Self::object),
            Some(b'[') => self.nested(Self::array),
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.literal("true", Json::Bool(true)),
            Some(b'f') => self.literal("false", Json::Bool(false)),
            Some(b'n') => self.literal("null", Json::Null),
            Some(_) => self.number(),
            None => Err(self.err("unexpected end")),
        }
    }
    fn nested(&mut self, f: fn(&mut Self) -> Result<Json>) -> Result<Json> {
        self.depth += 1;
        let v = f(self);
        self.depth -= 1;
        v
    }
    fn literal(&mut self, word: &str, v: Json) -> Result<Json> {
        if self.s[self.at..].starts_with(word.as_bytes()) {
            self.at += word.len();
            Ok(v)
        } else {
            Err(self.err("bad literal"))
        }
    }
    fn number(&mut self) -> Result<Json> {
        let start = self.at;
        while self.at < self.s.len()
            && matches!(
                self.s[self.at],
                b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'
            )
        {
            self.at += 1;
        }
        std::str::from_utf8(&self.s[start..self.at])
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            .map(Json::Num)
            .ok_or_else(|| self.err("bad number"))
    }
    fn string(&mut self) -> Result<String> {
        self.eat(b'"')?;
        let mut out = String::new();
        loop {
            let c = *self
                .s
                .get(self.at)
                .ok_or_else(|| self.err("unterminated string"))?;
            self.at += 1;
            match c {
                b'"' => return Ok(out),
                b'\\' => {
                    let e = *self.s.get(self.at).ok_or_else(|| self.err("bad escape"))?;
                    self.at += 1;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e as char),
                        b'n' => out.push('\n'),
                        b't' => out.push('\t'),
                        b'r' => out.push('\r'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'u' => {
                            let hex = self
                                .s
                                .get(self.at..self.at + 4)
                                .ok_or_else(|| self.err("bad escape"))?;
                            let code =
                                u32::from_str_radix(std::str::from_utf8(hex).unwrap_or("x"), 16)
                                    .map_err(|_| self.err("bad escape"))?;
                            out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                            self.at += 4;
                        }
                        _ => return Err(self.err("bad escape")),
                    }
                }
                _ => {
                    // Copy one UTF-8 sequence.
                    let start = self.at - 1;
                    while self.at < self.s.len() && (self.s[self.at] & 0xC0) == 0x80 {
                        self.at += 1;
                    }
                    out.push_str(
                        std::str::from_utf8(&self.s[start..self.at])
                            .map_err(|_| self.err("bad UTF-8"))?,
                    );
                }
            }
        }
    }
    fn array(&mut self) -> Result<Json> {
        self.eat(b'[')?;
        let mut items = Vec::new();
        self.ws();
        if self.s.get(self.at) == Some(&b']') {
            self.at += 1;
            return Ok(Json::Arr(items));
        }
        loop {
            items.push(self.value()?);
            self.ws();
            match self.s.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(Json::Arr(items));
                }
                _ => return Err(self.err("expected ',' or ']'")),
            }
        }
    }
    fn object(&mut self) -> Result<Json> {
        self.eat(b'{')?;
        let mut items = Vec::new();
        self.ws();
        if self.s.get(self.at) == Some(&b'}') {
            self.at += 1;
            return Ok(Json::Obj(items));
        }
        loop {
            self.ws();
            let k = self.string()?;
            self.eat(b':')?;
            items.push((k, self.value()?));
            self.ws();
            match self.s.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(Json::Obj(items));
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }
}
