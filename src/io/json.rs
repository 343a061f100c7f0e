//! A minimal JSON writer for summaries (non-finite numbers become `null`).

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
