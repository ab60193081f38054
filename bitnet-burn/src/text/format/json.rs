//! A byte-at-a-time check that text is the start of one JSON object (RFC 8259, UTF-8), for JSON mode: the state
//! is a few bytes and `Copy`, so trying a token's bytes from it and dropping the result costs nothing to undo.
//! A [`Shape`] rides along and is asked at the points where a schema decides (a value's first byte, a key, the
//! bytes of a key or scalar, its end, a `,`, a close): [`Free`] allows everything (JSON mode), a schema's
//! shape ([`super::shaped::Shaped`]) only what the schema allows.

use std::fmt::Debug;

/// Deepest nesting of objects and arrays (one bit each in the stack; serde_json's limit is the same).
const MAX_DEPTH: u8 = 128;

/// Most spaces and tabs after a line break between tokens. JSON allows any whitespace, and a model that finds
/// it likely could write it until the token limit; as in llama.cpp's JSON grammar, whitespace between tokens
/// here is one space or tab, or a line break (`\n` or `\r\n`) and up to this many: enough to pretty-print.
const MAX_INDENT: u8 = 20;

/// Most ways one text is read at once (a union's alternatives, followed side by side until the text decides
/// between them); past this the later alternatives are dropped, so a text may be refused but never one allowed
/// that the shape does not.
pub const MOST_READINGS: usize = 64;

/// Where in the JSON text the next byte falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lex {
    /// Before the object (one byte of whitespace at most, then `{`).
    Start,
    /// A value is due (after `:`, or `,` in an array).
    Value,
    /// After `[`: a value or `]`.
    FirstItem,
    /// After `{`: a key or `}`.
    FirstKey,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a value: `,` or the close of its container.
    After,
    /// Inside a string (a key's when `key`).
    Str { key: bool },
    /// After a `\` in a string.
    Escape { key: bool },
    /// Inside `\uXXXX`: `left` hex digits to come, `code` so far; `low` when it must be a low surrogate.
    Hex {
        key: bool,
        left: u8,
        code: u16,
        low: bool,
    },
    /// After a high surrogate's escape: `\` of the low one is due.
    LowBackslash { key: bool },
    /// Then its `u`.
    LowU { key: bool },
    /// Inside a multi-byte UTF-8 character: `left` continuation bytes to come, the next in `lo..=hi`.
    Utf8 { key: bool, left: u8, lo: u8, hi: u8 },
    /// After a number's `-`.
    Minus,
    /// A number that is `0` so far (no more digits may follow).
    Zero,
    /// In a number's integer digits.
    Int,
    /// After its `.`.
    Dot,
    /// In its fraction digits.
    Frac,
    /// After its `e`.
    Exp,
    /// After the exponent's sign.
    ExpSign,
    /// In the exponent's digits.
    ExpInt,
    /// In `true`, `false` or `null`: the bytes still to come.
    Literal { rest: &'static [u8] },
    /// The object is closed: nothing may follow.
    Done,
}

/// What else the text must be, asked as [`Json`] reads it; each method says whether the text may go on.
pub trait Shape: Copy + Debug + Default + PartialEq {
    /// What the shape checks against (a compiled schema), passed to every call rather than held in the state.
    type Rules: Debug + Send + Sync;
    /// How many ways a value starting with `b` here may be read (a union's alternatives that can all start with
    /// it; at least 1): [`Shape::value`] is then called with each, on copies of the state.
    fn alternatives(&self, rules: &Self::Rules, b: u8) -> usize;
    /// A value starts with `b` (`{`, `[`, `"`, `-`, a digit, `t`, `f` or `n`), read the `alt`th way.
    fn value(&mut self, rules: &Self::Rules, b: u8, alt: usize) -> bool;
    /// A key starts (its opening quote).
    fn key(&mut self, rules: &Self::Rules) -> bool;
    /// A later byte of a key or scalar value (a string's closing quote included); `char_ends` when it completes
    /// one character of a string (a plain byte, an escape, a UTF-8 sequence).
    fn byte(&mut self, rules: &Self::Rules, b: u8, char_ends: bool) -> bool;
    /// The key or scalar value has ended.
    fn end(&mut self, rules: &Self::Rules) -> bool;
    /// A `,` in the innermost container: another member or item is to come.
    fn more(&mut self, rules: &Self::Rules) -> bool;
    /// The innermost container closes.
    fn close(&mut self, rules: &Self::Rules) -> bool;
}

/// No shape: any JSON object (JSON mode).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Free;

impl Shape for Free {
    type Rules = ();
    fn alternatives(&self, _: &(), _: u8) -> usize {
        1
    }
    fn value(&mut self, _: &(), _: u8, _: usize) -> bool {
        true
    }
    fn key(&mut self, _: &()) -> bool {
        true
    }
    fn byte(&mut self, _: &(), _: u8, _: bool) -> bool {
        true
    }
    fn end(&mut self, _: &()) -> bool {
        true
    }
    fn more(&mut self, _: &()) -> bool {
        true
    }
    fn close(&mut self, _: &()) -> bool {
        true
    }
}

/// How far a text has got as the start of one JSON object of shape `S`, read one way; [`Json::step`] takes its
/// next byte.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Json<S: Shape> {
    lex: Lex,
    /// Bit `i`: whether the container at depth `i` is an object (else an array).
    stack: u128,
    depth: u8,
    /// Spaces and tabs since the last token.
    space: u8,
    /// Whether the whitespace since the last token holds a line break (1: its `\r`, 2: all of it).
    line: u8,
    shape: S,
}

/// The start of any JSON object (JSON mode).
pub type JsonObject = Json<Free>;

impl<S: Shape> Default for Json<S> {
    fn default() -> Self {
        Self {
            lex: Lex::Start,
            stack: 0,
            depth: 0,
            space: 0,
            line: 0,
            shape: S::default(),
        }
    }
}

impl JsonObject {
    /// Takes the text's next byte: false (the state then meaningless) when no JSON object starts with the text.
    pub fn push(&mut self, b: u8) -> bool {
        self.push_alt(&(), b, 0)
    }
}

impl<S: Shape> Json<S> {
    /// Appends to `out` each state the text reaches with its next byte `b` from this one (none when no JSON
    /// object of the shape `rules` describe starts with it; several where a union's alternatives all may), but
    /// not one that `out[from..]` already holds, nor more than [`MOST_READINGS`] there.
    pub fn step(&self, rules: &S::Rules, b: u8, out: &mut Vec<Self>, from: usize) {
        for alt in 0..self.ways(rules, b) {
            let mut next = *self;
            if next.push_alt(rules, b, alt)
                && out.len() - from < MOST_READINGS
                && !out[from..].contains(&next)
            {
                out.push(next);
            }
        }
    }

    /// How many ways the text may be read with its next byte `b` (1 unless it starts a value of a union).
    #[inline]
    pub(super) fn ways(&self, rules: &S::Rules, b: u8) -> usize {
        match self.lex {
            Lex::Start | Lex::Value | Lex::FirstItem => self.shape.alternatives(rules, b),
            _ => 1,
        }
    }

    /// Takes the text's next byte, read the `alt`th way of [`Json::ways`]: false (the state then meaningless)
    /// when no JSON object of the shape `rules` describe starts with the text.
    #[inline]
    pub(super) fn push_alt(&mut self, rules: &S::Rules, b: u8, alt: usize) -> bool {
        // a string's printable ASCII (all but its quote and backslash, matched below): most bytes of most tokens,
        // when the vocabulary is checked inside a string
        if matches!(self.lex, Lex::Str { .. })
            && matches!(b, 0x20..=0x7f)
            && b != b'"'
            && b != b'\\'
        {
            return self.shape.byte(rules, b, true);
        }
        self.push_other(rules, b, alt)
    }

    /// [`Json::push_alt`] for any byte but a string's plain ones.
    fn push_other(&mut self, rules: &S::Rules, b: u8, alt: usize) -> bool {
        use Lex::*;
        let between = matches!(
            self.lex,
            Start | Value | FirstItem | FirstKey | Key | Colon | After
        );
        if between {
            let (space, line) = (self.space, self.line);
            if self.lex == Lex::Start && matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
                // one byte before the object: a SentencePiece word's space, or a line break
                self.space += 1;
                return self.space == 1 && matches!(b, b' ' | b'\n');
            }
            match b {
                b' ' | b'\t' if (line == 0 && space == 0) || (line == 2 && space < MAX_INDENT) => {
                    self.space += 1
                }
                b'\r' if line == 0 && space == 0 => self.line = 1,
                b'\n' if line < 2 && space == 0 => self.line = 2,
                b' ' | b'\t' | b'\r' | b'\n' => return false,
                _ if line == 1 => return false,
                _ => {}
            }
            if self.space != space || self.line != line {
                return true;
            }
        }
        self.space = 0;
        self.line = 0;
        let was = self.lex;
        self.lex = match (self.lex, b) {
            (Start, b'{') | (Value | FirstItem, b'{') => return self.open(rules, true, b, alt),
            (Value | FirstItem, b'[') => return self.open(rules, false, b, alt),
            (FirstItem, b']') => return self.close(rules, false),
            (FirstKey, b'}') => return self.close(rules, true),
            (After, b'}') if self.in_object() => return self.close(rules, true),
            (After, b']') if !self.in_object() => return self.close(rules, false),
            (After, b',') if self.in_object() => Key,
            (After, b',') => Value,
            (Colon, b':') => Value,
            (FirstKey | Key, b'"') => Str { key: true },
            (Value | FirstItem, b'"') => Str { key: false },
            (Value | FirstItem, b'-') => Minus,
            (Value | FirstItem | Minus, b'0') => Zero,
            (Value | FirstItem | Minus, b'1'..=b'9') | (Int, b'0'..=b'9') => Int,
            (Value | FirstItem, b't') => Literal { rest: b"rue" },
            (Value | FirstItem, b'f') => Literal { rest: b"alse" },
            (Value | FirstItem, b'n') => Literal { rest: b"ull" },
            (Literal { rest }, _) if rest[0] == b => match &rest[1..] {
                [] => After,
                rest => Literal { rest },
            },
            (Zero | Int, b'.') => Dot,
            (Dot | Frac, b'0'..=b'9') => Frac,
            (Zero | Int | Frac, b'e' | b'E') => Exp,
            (Exp, b'+' | b'-') => ExpSign,
            (Exp | ExpSign | ExpInt, b'0'..=b'9') => ExpInt,
            // a whole number ends at the first byte that cannot go on with it, which then counts after it
            (Zero | Int | Frac | ExpInt, _) => {
                self.lex = After;
                return self.shape.end(rules) && self.push_alt(rules, b, alt);
            }
            (Str { key }, b'"') if key => Colon,
            (Str { .. }, b'"') => After,
            (Str { key }, b'\\') => Escape { key },
            (Str { key }, 0xc2..=0xf4) => utf8_lead(key, b),
            (Utf8 { key, left, lo, hi }, _) if (lo..=hi).contains(&b) => match left {
                1 => Str { key },
                _ => Utf8 {
                    key,
                    left: left - 1,
                    lo: 0x80,
                    hi: 0xbf,
                },
            },
            (Escape { key }, b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Str { key },
            (Escape { key }, b'u') => Hex {
                key,
                left: 4,
                code: 0,
                low: false,
            },
            (LowBackslash { key }, b'\\') => LowU { key },
            (LowU { key }, b'u') => Hex {
                key,
                left: 4,
                code: 0,
                low: true,
            },
            (
                Hex {
                    key,
                    left,
                    code,
                    low,
                },
                _,
            ) if b.is_ascii_hexdigit() => {
                let code = code << 4 | (b as char).to_digit(16).unwrap_or(0) as u16;
                let left = left - 1;
                // the codes the escape can still end as: a low surrogate must be one, a first escape must not
                let (first, last) = (
                    code << (4 * left),
                    (code << (4 * left)) | ((1 << (4 * left)) - 1),
                );
                let low_only = (0xdc00..=0xdfff).contains(&first) && last <= 0xdfff;
                let some_low = last >= 0xdc00 && first <= 0xdfff;
                if (low && !some_low) || (!low && low_only) {
                    return false;
                }
                match (left, low, code) {
                    (1.., ..) => Hex {
                        key,
                        left,
                        code,
                        low,
                    },
                    (_, false, 0xd800..=0xdbff) => LowBackslash { key },
                    _ => Str { key },
                }
            }
            _ => return false,
        };
        match was {
            Value | FirstItem => self.shape.value(rules, b, alt),
            FirstKey | Key => self.shape.key(rules),
            After if b == b',' => self.shape.more(rules),
            Start | Colon | After | Done => true,
            // inside a key or scalar
            _ => {
                let char_ends = matches!(self.lex, Str { .. });
                self.shape.byte(rules, b, char_ends)
                    && (!matches!(self.lex, After | Colon) || self.shape.end(rules))
            }
        }
    }

    /// Whether the text is one whole JSON object.
    pub fn is_complete(&self) -> bool {
        self.lex == Lex::Done
    }

    fn in_object(&self) -> bool {
        self.depth > 0 && self.stack >> (self.depth - 1) & 1 == 1
    }

    fn open(&mut self, rules: &S::Rules, object: bool, b: u8, alt: usize) -> bool {
        if self.depth == MAX_DEPTH || !self.shape.value(rules, b, alt) {
            return false;
        }
        self.stack = self.stack & !(1 << self.depth) | u128::from(object) << self.depth;
        self.depth += 1;
        self.lex = if object {
            Lex::FirstKey
        } else {
            Lex::FirstItem
        };
        true
    }

    fn close(&mut self, rules: &S::Rules, object: bool) -> bool {
        debug_assert_eq!(self.in_object(), object);
        if !self.shape.close(rules) {
            return false;
        }
        self.depth -= 1;
        self.lex = if self.depth == 0 {
            Lex::Done
        } else {
            Lex::After
        };
        true
    }
}

/// Every way a text so far is read as the start of one JSON object of shape `S`: one, unless a union's
/// alternatives that all fit it are still open.
#[derive(Clone, Debug)]
pub struct Readings<S: Shape> {
    ways: Vec<Json<S>>,
    /// The next byte's readings, kept between calls.
    next: Vec<Json<S>>,
}

impl<S: Shape> Default for Readings<S> {
    fn default() -> Self {
        Self {
            ways: vec![Json::default()],
            next: Vec::new(),
        }
    }
}

impl<S: Shape> Readings<S> {
    /// Takes the text's next byte: false (and nothing moves) when no JSON object of the shape `rules` describe
    /// starts with the text.
    pub fn push_with(&mut self, rules: &S::Rules, b: u8) -> bool {
        self.next.clear();
        for way in &self.ways {
            way.step(rules, b, &mut self.next, 0);
        }
        let fits = !self.next.is_empty();
        if fits {
            std::mem::swap(&mut self.ways, &mut self.next);
        }
        fits
    }

    /// The readings, each a state to [`Json::step`] from.
    pub fn ways(&self) -> &[Json<S>] {
        &self.ways
    }

    /// Whether the text is one whole JSON object (read some way).
    pub fn is_complete(&self) -> bool {
        self.ways.iter().any(Json::is_complete)
    }
}

/// The state after a UTF-8 lead byte in a string: how many continuation bytes follow and the range of the first
/// (which rules out overlong forms, surrogates and code points past U+10FFFF).
fn utf8_lead(key: bool, b: u8) -> Lex {
    let (left, lo, hi) = match b {
        0xc2..=0xdf => (1, 0x80, 0xbf),
        0xe0 => (2, 0xa0, 0xbf),
        0xed => (2, 0x80, 0x9f),
        0xe1..=0xef => (2, 0x80, 0xbf),
        0xf0 => (3, 0x90, 0xbf),
        0xf4 => (3, 0x80, 0x8f),
        _ => (3, 0x80, 0xbf),
    };
    Lex::Utf8 { key, left, lo, hi }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::text::format::{Schema, Shaped};

    /// What the machine should say of `text`, from serde_json (the reference parser): `Some(complete)` when
    /// some JSON object text (no whitespace after it) starts with `text`, else `None`. serde_json reads a
    /// truncated text as an error at its end; whitespace between tokens is as the machine bounds it in these texts.
    fn oracle(text: &[u8]) -> Option<bool> {
        // nor does it check UTF-8 in a string it finds cut short; std's decoder does (an end cut inside a
        // character is no error there either)
        if std::str::from_utf8(text).is_err_and(|e| e.error_len().is_some()) {
            return None;
        }
        // serde_json reads a `\u` escape's four bytes before it looks at them, so to it a text cut inside one
        // ends early: such a text starts a JSON object when some hex digits complete the escape
        for r in 1..4.min(text.len() + 1) {
            let cut = text.len() - r;
            let backslashes = text[..cut.saturating_sub(1)]
                .iter()
                .rev()
                .take_while(|&&b| b == b'\\')
                .count();
            if text[..cut].ends_with(b"\\u") && backslashes % 2 == 1 {
                if !text[cut..].iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                // a digit of each class that decides what the code can be (0-7, 8-b, c, d, e-f)
                let any = (0..5usize.pow(4 - r as u32)).any(|n| {
                    let mut t = text.to_vec();
                    t.extend((0..4 - r).map(|i| b"08cde"[n / 5usize.pow(i as u32) % 5]));
                    verdict(&t).is_some()
                });
                return any.then_some(false);
            }
        }
        verdict(text)
    }

    /// Whether whitespace outside strings is as [`JsonObject`] bounds it (a space or line break before the object;
    /// between tokens a space or tab, or a line break and up to 20 spaces or tabs), a text cut short included.
    fn spaced_as_allowed(text: &[u8]) -> bool {
        let (mut in_string, mut escaped, mut run, mut start) = (false, false, Vec::new(), true);
        for (i, &b) in text.iter().chain([&b'x']).enumerate() {
            if in_string {
                (in_string, escaped) = (escaped || b != b'"', !escaped && b == b'\\');
                continue;
            }
            if i < text.len() && b" \t\r\n".contains(&b) {
                run.push(b);
                continue;
            }
            let indent = |r: &[u8]| r.len() <= 20 && r.iter().all(|b| b" \t".contains(b));
            let ok = match (start, &run[..]) {
                (true, r) => matches!(r, [] | [b' ' | b'\n']),
                // where the text ends, a run may be the `\r` of a `\r\n`
                (_, [b'\r']) => i == text.len(),
                (_, [] | [b' ' | b'\t']) => true,
                (_, [b'\n', rest @ ..]) | (_, [b'\r', b'\n', rest @ ..]) => indent(rest),
                _ => false,
            };
            if !ok {
                return false;
            }
            (in_string, start) = (b == b'"', false);
            run.clear();
        }
        true
    }

    fn verdict(text: &[u8]) -> Option<bool> {
        if !spaced_as_allowed(text) {
            return None;
        }
        let first = text.iter().find(|b| !b" \t\n\r".contains(b));
        if first.is_some_and(|&b| b != b'{') {
            return None;
        }
        match serde_json::from_slice::<serde_json::Value>(text) {
            Ok(v) => (v.is_object() && text.last() == Some(&b'}')).then_some(true),
            Err(e) if e.is_eof() => Some(false),
            Err(_) => None,
        }
    }

    fn machine(text: &[u8]) -> Option<bool> {
        let mut m = JsonObject::default();
        text.iter().all(|&b| m.push(b)).then(|| m.is_complete())
    }

    /// The same check through a schema's shape, under `{"type": "object"}` (any object).
    fn any_object(schema: &Schema, text: &[u8]) -> Option<bool> {
        let mut m = Readings::<Shaped>::default();
        text.iter()
            .all(|&b| m.push_with(schema, b))
            .then(|| m.is_complete())
    }

    fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
        &items[rng.next_u64() as usize % items.len()]
    }

    /// Whitespace: mostly as [`JsonObject`] allows it between tokens (a space or tab, or a line break and
    /// indentation), sometimes not.
    fn space(rng: &mut Rng, out: &mut Vec<u8>) {
        match rng.uniform() {
            x if x < 0.3 => {
                out.extend_from_slice(pick(rng, &["\n", "\r\n", "\r", " \n"]).as_bytes());
                while rng.uniform() < 0.75 {
                    out.push(*pick(rng, b" \t"));
                }
            }
            x if x < 0.6 => out.push(*pick(rng, b" \t\n")),
            _ => {}
        }
    }

    fn string(rng: &mut Rng, out: &mut Vec<u8>) {
        const PIECES: &[&str] = &[
            "a",
            "Z",
            " ",
            "é",
            "中",
            "😀",
            "\\n",
            "\\\"",
            "\\\\",
            "\\/",
            "\\u00e9",
            "\\uD83D\\uDE00",
            "\\ud800",
            "\\udc00x",
            "\\uZZ",
            "\\x",
        ];
        out.push(b'"');
        for _ in 0..rng.next_u64() % 5 {
            out.extend_from_slice(pick(rng, PIECES).as_bytes());
        }
        out.push(b'"');
    }

    fn value(rng: &mut Rng, depth: usize, out: &mut Vec<u8>) {
        const SCALARS: &[&str] = &[
            "0", "-0", "12", "-3.25", "1e5", "2E-3", "0.5e+7", "true", "false", "null", "01", "1.",
            "-", "-.5", ".5", "+1", "1e", "1.e5", "1e+", "tru", "nul", "nulll",
        ];
        space(rng, out);
        match rng.next_u64() % if depth < 4 { 5 } else { 3 } {
            0 => string(rng, out),
            1 | 2 => out.extend_from_slice(pick(rng, SCALARS).as_bytes()),
            3 => object(rng, depth + 1, out),
            _ => {
                out.push(b'[');
                for i in 0..rng.next_u64() % 4 {
                    if i > 0 {
                        out.push(b',');
                    }
                    value(rng, depth + 1, out);
                }
                space(rng, out);
                out.push(b']');
            }
        }
        space(rng, out);
    }

    fn object(rng: &mut Rng, depth: usize, out: &mut Vec<u8>) {
        out.push(b'{');
        for i in 0..rng.next_u64() % 4 {
            if i > 0 {
                out.push(b',');
            }
            space(rng, out);
            string(rng, out);
            space(rng, out);
            out.push(b':');
            value(rng, depth, out);
        }
        space(rng, out);
        out.push(b'}');
    }

    #[test]
    fn every_prefix_is_judged_as_serde_json_judges_it() {
        let mut rng = Rng::new(7);
        let bare = Schema::compile(&serde_json::json!({"type": "object"})).unwrap();
        let (mut whole, mut checked) = (0, 0);
        for case in 0..3000 {
            let mut text = Vec::new();
            space(&mut rng, &mut text);
            object(&mut rng, 0, &mut text);
            // some texts damaged at one byte, to reach the refusals
            if case % 2 == 1 {
                const DAMAGE: &[&[u8]] = &[
                    b"{",
                    b"}",
                    b"[",
                    b"]",
                    b"\"",
                    b":",
                    b",",
                    b".",
                    b"-",
                    b"+",
                    b"e",
                    b"0",
                    b"1",
                    b"t",
                    b"u",
                    b"\\",
                    b"\x01",
                    b"\x80",
                    b"\xff",
                    b"\xc3",
                    b"\xc0\x80",
                    b"\xe0\x80\x80",
                    b"\xe0\xa0\x80",
                    b"\xed\xa0\x80",
                    b"\xed\x9f\xbf",
                    b"\xf0\x8f\xbf\xbf",
                    b"\xf0\x90\x80\x80",
                    b"\xf4\x90\x80\x80",
                    b"\xf5\x80\x80\x80",
                ];
                // anywhere, or at the start of a string (where most bytes are allowed)
                let quotes: Vec<usize> = (0..text.len()).filter(|&i| text[i] == b'"').collect();
                let at = match rng.uniform() < 0.5 && !quotes.is_empty() {
                    true => pick(&mut rng, &quotes) + 1,
                    false => rng.next_u64() as usize % (text.len() + 1),
                };
                text.splice(at..at, pick(&mut rng, DAMAGE).iter().copied());
            }
            for end in 0..=text.len() {
                let prefix = &text[..end];
                assert_eq!(
                    machine(prefix),
                    oracle(prefix),
                    "{:?}",
                    String::from_utf8_lossy(prefix)
                );
                assert_eq!(any_object(&bare, prefix), machine(prefix));
                checked += 1;
            }
            whole += usize::from(machine(&text) == Some(true));
        }
        assert!(whole > 150 && checked > 100_000, "{whole} whole, {checked}");
    }

    #[test]
    fn nesting_and_whitespace_are_bounded() {
        let deep = |n: usize| {
            let mut t = vec![b'{'];
            t.extend(b"\"a\":{".repeat(n));
            t
        };
        assert_eq!(machine(&deep(127)), Some(false));
        assert_eq!(machine(&deep(128)), None, "129 levels");
        let indented = |line: &[u8], n: usize| [b"{\"a\":", line, &b" ".repeat(n), b"1}"].concat();
        assert_eq!(machine(&indented(b"\n", 20)), Some(true));
        assert_eq!(machine(&indented(b"\r\n", 20)), Some(true));
        assert_eq!(machine(&indented(b"", 1)), Some(true));
        assert_eq!(
            machine(&indented(b"", 2)),
            None,
            "two spaces without a line break"
        );
        assert_eq!(machine(&indented(b"\n", 21)), None, "21 spaces");
        assert_eq!(machine(&indented(b"\n\n", 0)), None, "two line breaks");
        assert_eq!(
            machine(&indented(b" \n", 0)),
            None,
            "a space before the break"
        );
        assert_eq!(machine(&indented(b"\r", 1)), None, "a lone \\r");
        assert_eq!(machine(b" {}"), Some(true));
        assert_eq!(machine(b"\n{}"), Some(true));
        assert_eq!(machine(b"\n\t{}"), None, "one byte before the object");
        assert_eq!(machine(b"{} "), None, "nothing after the object");
    }
}
