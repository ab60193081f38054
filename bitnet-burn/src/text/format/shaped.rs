//! A compiled [`Schema`] followed as JSON text is read ([`super::json::Json`] asks at each point where the
//! schema decides): the node of every open container, the property whose value is due, and the keys or exact
//! values the text being written can still become. About a hundred bytes and `Copy`, like the JSON state.

use regex_automata::dfa::Automaton;
use regex_automata::util::primitives::StateID;

use super::json::Shape;
use super::schema::{kind, Node, Pattern, Property, Schema, NUMBER};

/// Most containers of the schema's shape open at once (containers inside a free value are only counted).
const MOST_FRAMES: usize = 16;

/// An open container of the schema's shape.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Frame {
    /// Its node (an object or array shape).
    node: u16,
    /// An object's next property that may come (the one before it is the last key read, whose value is due);
    /// an array's items so far.
    next: u16,
}

/// What the key or scalar being written is checked against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Scalar {
    /// Anything JSON allows.
    #[default]
    Free,
    /// A number without fraction or exponent, within the node's range if it has one.
    Integer(u16),
    /// A string of as many characters as the node's length allows, matching its pattern.
    Text(u16),
    /// One of a node's literals.
    Literal(u16),
    /// One of the innermost object's keys.
    Key,
}

/// The state of a text against a [`Schema`] (one reading of it, where the schema has unions).
#[derive(Clone, Copy, Debug, Default)]
pub struct Shaped {
    frames: [Frame; MOST_FRAMES],
    depth: u8,
    /// Containers open inside a value the schema leaves free.
    free: u8,
    scalar: Scalar,
    /// The literals or keys the text can still be (bit `i`: the `i`th), and the bytes of it read so far; for
    /// `Text` the characters so far, for `Integer` its magnitude and digits so far.
    alive: u64,
    at: u16,
    /// Whether the integer being read is negative.
    negative: bool,
    /// A `Text` string's pattern search: its DFA state, whether a match was found, whether a `\` was just read.
    pattern: StateID,
    matched: bool,
    escape: bool,
}

/// Equal when the same text can follow: frames above the open ones are leftovers.
impl PartialEq for Shaped {
    fn eq(&self, other: &Self) -> bool {
        let depth = usize::from(self.depth);
        self.depth == other.depth
            && self.free == other.free
            && self.scalar == other.scalar
            && (self.alive, self.at, self.negative) == (other.alive, other.at, other.negative)
            && (self.pattern, self.matched, self.escape)
                == (other.pattern, other.matched, other.escape)
            && self.frames[..depth] == other.frames[..depth]
    }
}

impl Shaped {
    fn top(&mut self) -> &mut Frame {
        &mut self.frames[usize::from(self.depth) - 1]
    }

    /// The node of the value due: the root's, the innermost array's items' or the value of the key just read.
    fn due(&self, rules: &Schema) -> usize {
        match self.depth {
            0 => 0,
            depth => {
                let frame = self.frames[usize::from(depth) - 1];
                match &rules.nodes[usize::from(frame.node)].array {
                    Some(items) => items.node,
                    None => object(rules, frame.node)[usize::from(frame.next) - 1].node,
                }
            }
        }
    }

    /// The properties the next key may name, as bits: from the next one up to the first required one (the
    /// optional ones before it may be left out).
    fn keys(&mut self, rules: &Schema) -> u64 {
        let frame = *self.top();
        let props = object(rules, frame.node);
        let from = usize::from(frame.next);
        let to = props[from..]
            .iter()
            .position(|p| p.required)
            .map_or(props.len(), |i| from + i + 1);
        (from..to).fold(0, |bits, i| bits | 1 << i)
    }

    /// Candidate `i`'s text: the innermost object's `i`th key, or the literal node's `i`th value.
    fn text<'a>(&self, rules: &'a Schema, i: usize) -> &'a [u8] {
        match self.scalar {
            Scalar::Literal(node) => &rules.nodes[usize::from(node)].literals[i],
            _ => &object(rules, self.frames[usize::from(self.depth) - 1].node)[i].key,
        }
    }

    /// The candidates still alive.
    fn alive(&self) -> impl Iterator<Item = usize> {
        let mut bits = self.alive;
        std::iter::from_fn(move || {
            let i = bits.trailing_zeros() as usize;
            bits &= bits.wrapping_sub(1);
            (i < 64).then_some(i)
        })
    }

    /// Keeps the candidates whose byte `at` is `b`.
    fn narrow(&mut self, rules: &Schema, b: u8) -> bool {
        for i in self.alive() {
            if self.text(rules, i).get(usize::from(self.at)) != Some(&b) {
                self.alive &= !(1 << i);
            }
        }
        self.at = self.at.saturating_add(1);
        self.alive != 0
    }

    /// Takes an integer's next digit: whether some integer in the node's range starts with the digits so far.
    fn digit(&mut self, n: &Node, b: u8) -> bool {
        self.alive = self
            .alive
            .saturating_mul(10)
            .saturating_add(u64::from(b - b'0'));
        self.at = self.at.saturating_add(1);
        let Some((lo, hi)) = n.range else {
            return true;
        };
        // the integers that start with these digits: `m` itself (a leading 0 takes no more), then every
        // `m · 10^k ..= (m + 1) · 10^k − 1` for k digits more, until they pass every i64
        let (m, lo, hi) = (i128::from(self.alive), i128::from(lo), i128::from(hi));
        let mut scale = 1i128;
        while m * scale <= i128::from(i64::MAX) + 1 {
            let (a, b) = (m * scale, (m + 1) * scale - 1);
            let (a, b) = if self.negative { (-b, -a) } else { (a, b) };
            if a <= hi && b >= lo {
                return true;
            }
            if m == 0 {
                break;
            }
            scale *= 10;
        }
        false
    }

    /// Takes a string's next byte (its closing quote included) into the search for its pattern: whether a match
    /// was found or may still be. An escape counts as the byte it stands for, and starts only where one of them
    /// may come next; `\u` escapes are refused (the character itself may be written).
    fn search(&mut self, p: &Pattern, b: u8) -> bool {
        /// What the escapes other than `\u` stand for.
        const ESCAPED: [u8; 8] = [b'"', b'\\', b'/', b'\n', b'\t', b'\r', 0x08, 0x0c];
        let alive =
            |s| p.dfa.is_match_state(s) || !(p.dfa.is_dead_state(s) || p.dfa.is_quit_state(s));
        let byte = match (self.escape, b) {
            (false, b'"') => return true,
            (false, b'\\') => {
                self.escape = true;
                return self.matched
                    || ESCAPED
                        .iter()
                        .any(|&e| alive(p.dfa.next_state(self.pattern, e)));
            }
            (false, b) => b,
            (true, e) => {
                self.escape = false;
                match e {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'u' => return false,
                    other => other,
                }
            }
        };
        if self.matched {
            return true;
        }
        self.pattern = p.dfa.next_state(self.pattern, byte);
        self.matched = p.dfa.is_match_state(self.pattern);
        alive(self.pattern)
    }

    /// The integer read, its sign applied.
    fn integer(&self) -> i64 {
        let m = i64::try_from(self.alive).unwrap_or(i64::MAX);
        if self.negative {
            -m
        } else {
            m
        }
    }

    /// The candidate read whole, if one is.
    fn whole(&self, rules: &Schema) -> Option<usize> {
        self.alive()
            .find(|&i| self.text(rules, i).len() == usize::from(self.at))
    }
}

/// An object node's properties.
fn object(rules: &Schema, node: u16) -> &[Property] {
    rules.nodes[usize::from(node)]
        .object
        .as_deref()
        .unwrap_or(&[])
}

impl Shape for Shaped {
    type Rules = Schema;

    fn alternatives(&self, rules: &Schema, b: u8) -> usize {
        match self.free {
            0 => rules.choices(self.due(rules), b).len().max(1),
            _ => 1,
        }
    }

    fn value(&mut self, rules: &Schema, b: u8, alt: usize) -> bool {
        self.scalar = Scalar::Free;
        if self.free > 0 {
            if matches!(b, b'{' | b'[') {
                self.free += 1;
            }
            return true;
        }
        let Some(&node) = rules.choices(self.due(rules), b).get(alt) else {
            return false;
        };
        if self.depth > 0 {
            let frame = self.top();
            if let Some(items) = &rules.nodes[usize::from(frame.node)].array {
                frame.next = frame.next.saturating_add(1);
                if u32::from(frame.next) > items.max {
                    return false;
                }
            }
        }
        let node = usize::from(node);
        let n: &Node = &rules.nodes[node];
        if n.types & kind(b) != 0 {
            (self.alive, self.at) = (0, 0);
            match b {
                b'{' | b'[' => self.free = 1,
                b'"' if n.length.is_some() || n.pattern.is_some() => {
                    self.scalar = Scalar::Text(node as u16);
                    if let Some(p) = &n.pattern {
                        self.pattern = p.start;
                    }
                }
                b'-' | b'0'..=b'9' if n.types & NUMBER == 0 => {
                    self.scalar = Scalar::Integer(node as u16);
                    self.negative = b == b'-';
                    // `-` alone: a negative integer or -0 may follow
                    return match b {
                        b'-' => n.range.is_none_or(|(lo, _)| lo <= 0),
                        digit => self.digit(n, digit),
                    };
                }
                _ => {}
            }
            return true;
        }
        if matches!(b, b'{' | b'[') {
            if usize::from(self.depth) == MOST_FRAMES {
                return false;
            }
            self.depth += 1;
            *self.top() = Frame {
                node: node as u16,
                next: 0,
            };
            return true;
        }
        self.scalar = Scalar::Literal(node as u16);
        self.alive = u64::MAX >> (64 - n.literals.len());
        self.at = 0;
        self.narrow(rules, b)
    }

    fn key(&mut self, rules: &Schema) -> bool {
        self.scalar = Scalar::Free;
        if self.free > 0 {
            return true;
        }
        self.alive = self.keys(rules);
        self.scalar = Scalar::Key;
        self.at = 0;
        self.narrow(rules, b'"')
    }

    #[inline]
    fn byte(&mut self, rules: &Schema, b: u8, char_ends: bool) -> bool {
        match self.scalar {
            Scalar::Free => true,
            Scalar::Integer(node) => match b {
                b'0'..=b'9' => self.digit(&rules.nodes[usize::from(node)], b),
                _ => !matches!(b, b'.' | b'e' | b'E'),
            },
            Scalar::Text(node) => {
                self.alive += u64::from(char_ends);
                let n = &rules.nodes[usize::from(node)];
                n.length
                    .is_none_or(|(_, most)| self.alive <= u64::from(most))
                    && n.pattern.as_ref().is_none_or(|p| self.search(p, b))
            }
            Scalar::Literal(_) | Scalar::Key => self.narrow(rules, b),
        }
    }

    fn end(&mut self, rules: &Schema) -> bool {
        let ends = match self.scalar {
            Scalar::Free => true,
            Scalar::Integer(node) => rules.nodes[usize::from(node)]
                .range
                .is_none_or(|(lo, hi)| (lo..=hi).contains(&self.integer())),
            Scalar::Text(node) => {
                let n = &rules.nodes[usize::from(node)];
                n.length
                    .is_none_or(|(least, _)| self.alive >= u64::from(least))
                    && n.pattern.as_ref().is_none_or(|p| {
                        self.matched || p.dfa.is_match_state(p.dfa.next_eoi_state(self.pattern))
                    })
            }
            Scalar::Literal(_) => self.whole(rules).is_some(),
            Scalar::Key => self
                .whole(rules)
                .map(|i| self.top().next = i as u16 + 1)
                .is_some(),
        };
        // nothing of the scalar stays: readings that differed only inside it are now one
        (self.scalar, self.alive, self.at, self.negative) = (Scalar::Free, 0, 0, false);
        (self.pattern, self.matched, self.escape) = Default::default();
        ends
    }

    fn more(&mut self, rules: &Schema) -> bool {
        if self.free > 0 {
            return true;
        }
        let frame = *self.top();
        match &rules.nodes[usize::from(frame.node)].array {
            Some(items) => u32::from(frame.next) < items.max,
            None => usize::from(frame.next) < object(rules, frame.node).len(),
        }
    }

    fn close(&mut self, rules: &Schema) -> bool {
        if self.free > 0 {
            self.free -= 1;
            return true;
        }
        let frame = *self.top();
        let closes = match &rules.nodes[usize::from(frame.node)].array {
            Some(items) => u32::from(frame.next) >= items.min,
            None => !object(rules, frame.node)[usize::from(frame.next)..]
                .iter()
                .any(|p| p.required),
        };
        self.depth -= u8::from(closes);
        closes
    }
}

/// `Some(complete)` when `text` is the start of an object `schema` allows, `None` when it is not.
#[cfg(test)]
pub(super) fn verdict(schema: &Schema, text: &str) -> Option<bool> {
    let mut state = super::json::Readings::<Shaped>::default();
    text.bytes()
        .all(|b| state.push_with(schema, b))
        .then(|| state.is_complete())
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::text::format::json::{Readings, MOST_READINGS};
    use crate::text::format::schema::MOST_ALTERNATIVES;

    /// OpenAI's strict schema of a pydantic model (what `openai`'s `to_strict_json_schema` writes), with an
    /// optional property and item bounds added.
    fn character() -> Schema {
        Schema::compile(&json!({
            "$defs": {"Friend": {"type": "object", "properties": {"name": {"type": "string"}},
                                 "required": ["name"], "additionalProperties": false}},
            "type": "object",
            "title": "Character",
            "properties": {
                "name": {"type": "string", "title": "Name"},
                "motto": {"type": "string"},
                "age": {"type": "integer"},
                "mood": {"type": "string", "enum": ["merry", "sad"]},
                "friends": {"type": "array", "items": {"$ref": "#/$defs/Friend"}, "minItems": 1, "maxItems": 3},
                "title": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "height": {"type": "number"},
                "alive": {"type": "boolean"}
            },
            "required": ["name", "age", "mood", "friends", "title", "height", "alive"],
            "additionalProperties": false
        }))
        .unwrap()
    }

    fn romeo() -> Value {
        json!({"name": "Romeo \"R\" Montague 😀", "motto": "love", "age": 17, "mood": "merry",
               "friends": [{"name": "Mercutio"}, {"name": "Benvolio"}], "title": null, "height": 1.75e0,
               "alive": true})
    }

    #[test]
    fn objects_the_schema_allows_are_read_whole_and_every_prefix_is_a_start() {
        let schema = character();
        let mut without_motto = romeo();
        without_motto.as_object_mut().unwrap().shift_remove("motto");
        let mut titled = romeo();
        titled["title"] = json!("Lord");
        titled["age"] = json!(-0);
        titled["height"] = json!(-2);
        for value in [romeo(), without_motto, titled] {
            for text in [
                value.to_string(),
                serde_json::to_string_pretty(&value).unwrap(),
            ] {
                assert_eq!(verdict(&schema, &text), Some(true), "{text}");
                for cut in (0..text.len()).filter(|&i| text.is_char_boundary(i)) {
                    assert_eq!(
                        verdict(&schema, &text[..cut]),
                        Some(false),
                        "{}",
                        &text[..cut]
                    );
                }
            }
        }
    }

    #[test]
    fn what_the_schema_forbids_is_refused() {
        let schema = character();
        let changed = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
            let mut v = romeo();
            f(v.as_object_mut().unwrap());
            v.to_string()
        };
        let cases = [
            (
                "a fraction for an integer",
                changed(&|o| drop(o.insert("age".into(), json!(17.5)))),
            ),
            (
                "an exponent for an integer",
                changed(&|o| drop(o.insert("age".into(), json!(1e30)))),
            ),
            (
                "a string for an integer",
                changed(&|o| drop(o.insert("age".into(), json!("17")))),
            ),
            (
                "a value outside the enum",
                changed(&|o| drop(o.insert("mood".into(), json!("angry")))),
            ),
            (
                "an enum value's prefix",
                changed(&|o| drop(o.insert("mood".into(), json!("sa")))),
            ),
            (
                "a number where anyOf allows a string or null",
                changed(&|o| drop(o.insert("title".into(), json!(3)))),
            ),
            (
                "a string for a boolean",
                changed(&|o| drop(o.insert("alive".into(), json!("yes")))),
            ),
            (
                "four items of at most three",
                changed(&|o| {
                    drop(o.insert(
                        "friends".into(),
                        json!([{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d"}]),
                    ))
                }),
            ),
            (
                "no items of at least one",
                changed(&|o| drop(o.insert("friends".into(), json!([])))),
            ),
            (
                "an item with a key its schema lacks",
                changed(&|o| drop(o.insert("friends".into(), json!([{"name": "a", "age": 3}])))),
            ),
            (
                "a required property left out",
                changed(&|o| drop(o.shift_remove("alive"))),
            ),
            (
                "a property the schema lacks",
                changed(&|o| drop(o.insert("zz".into(), json!(1)))),
            ),
        ];
        for (what, text) in cases {
            assert_eq!(verdict(&schema, &text), None, "{what}: {text}");
        }
        assert_eq!(
            verdict(&schema, r#"{"age": 17"#),
            None,
            "out of the schema's order"
        );
        assert_eq!(
            verdict(&schema, r#"{"name": "R", "name""#),
            None,
            "a key twice"
        );
        assert_eq!(verdict(&schema, "[]"), None, "an array at the root");
    }

    #[test]
    fn recursion_free_values_literals_and_bare_objects() {
        let tree = Schema::compile(&json!({
            "$defs": {"Node": {"type": "object", "properties": {
                "v": {"enum": [1, 12, "a", null, true]},
                "kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}}}, "required": ["v", "kids"]}},
            "$ref": "#/$defs/Node"
        }))
        .unwrap();
        let deep = r#"{"v": 12, "kids": [{"v": "a", "kids": [{"v": null, "kids": []}]}, {"v": 1, "kids": []}]}"#;
        assert_eq!(verdict(&tree, deep), Some(true));
        for bad in [
            r#"{"v": 2"#,
            r#"{"v": 123"#,
            r#"{"v": "b""#,
            r#"{"v": false"#,
            r#"{"v": 1.0"#,
        ] {
            assert_eq!(verdict(&tree, bad), None, "{bad}");
        }
        let free = Schema::compile(
            &json!({"type": "object", "properties": {"any": {}}, "required": ["any"]}),
        )
        .unwrap();
        let any = r#"{"any": [1, {"x": [true, {"y": "z"}]}, "s", null, -2.5e3]}"#;
        assert_eq!(verdict(&free, any), Some(true));
        assert_eq!(verdict(&free, r#"{}"#), None, "the required property");
        let bare = Schema::compile(&json!({"type": "object"})).unwrap();
        assert_eq!(
            verdict(&bare, r#"{"k": [1, {"deep": {}}], "z": "q"}"#),
            Some(true)
        );
        assert_eq!(verdict(&bare, r#"{"k": 1,}"#), None, "still JSON");
    }

    #[test]
    fn strings_are_held_to_their_length_in_characters_and_integers_to_their_range() {
        let schema = Schema::compile(&json!({"type": "object", "properties": {
            "code": {"type": "string", "minLength": 2, "maxLength": 3},
            "n": {"type": ["integer", "null"], "minimum": -12, "exclusiveMaximum": 100}},
            "required": ["code", "n"]}))
        .unwrap();
        let text = |code: &str, n: &str| format!(r#"{{"code": {code}, "n": {n}}}"#);
        // characters, not bytes: an escape, a two-byte and a four-byte character, an escaped surrogate pair
        for code in [
            r#""ab""#,
            r#""é😀""#,
            r#""\n\u00e9\ud83d\ude00""#,
            r#""abc""#,
        ] {
            assert_eq!(verdict(&schema, &text(code, "5")), Some(true), "{code}");
        }
        for code in [
            r#""a""#,
            r#""""#,
            r#""abcd""#,
            r#""é😀xy""#,
            r#""\t\t\t\t""#,
        ] {
            assert_eq!(verdict(&schema, &text(code, "5")), None, "{code}");
        }
        for n in ["-12", "-1", "0", "-0", "7", "99", "null"] {
            assert_eq!(verdict(&schema, &text(r#""ab""#, n)), Some(true), "{n}");
        }
        for n in ["-13", "-120", "100", "1000", "1.5", "1e1", "-"] {
            assert_eq!(verdict(&schema, &text(r#""ab""#, n)), None, "{n}");
        }
        // refused at the first digit no integer in range starts with
        assert_eq!(verdict(&schema, r#"{"code": "ab", "n": -1"#), Some(false));
        assert_eq!(verdict(&schema, r#"{"code": "ab", "n": 10"#), Some(false));
        assert_eq!(
            verdict(&schema, r#"{"code": "ab", "n": 100"#),
            None,
            "100 and past it"
        );
        assert_eq!(
            verdict(&schema, r#"{"code": "ab", "n": -13"#),
            None,
            "-13 and below it"
        );
        let positive = Schema::compile(
            &json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}),
        )
        .unwrap();
        assert_eq!(
            verdict(&positive, r#"{"n": -"#),
            None,
            "no negative integer, nor -0, is 1 or more"
        );
        assert_eq!(verdict(&positive, r#"{"n": 0"#), None);
        assert_eq!(
            verdict(&positive, r#"{"n": 9223372036854775807}"#),
            Some(true),
            "bounded below only"
        );
    }

    #[test]
    fn strings_are_held_to_their_pattern() {
        let schema = Schema::compile(
            &json!({"type": "object", "required": ["code", "any", "line"], "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{2}-\\d{2}$"},
            "any": {"type": "string", "pattern": "ab+c", "maxLength": 8},
            "line": {"type": "string", "pattern": "^a\\n\"b$"}}}),
        )
        .unwrap();
        let ok = r#"{"code": "AB-12", "any": "xabbcé", "line": "a\n\"b"}"#;
        assert_eq!(verdict(&schema, ok), Some(true));
        for cut in (0..ok.len()).filter(|&i| ok.is_char_boundary(i)) {
            assert_eq!(verdict(&schema, &ok[..cut]), Some(false), "{}", &ok[..cut]);
        }
        for (start, wrong) in [
            (r#"{"code": "A"#, "b"),
            (r#"{"code": "AB-"#, "x"),
            (r#"{"code": "AB-12"#, "3"),
            (r#"{"code": "AB-1"#, "\""),
            // a match anywhere is enough, but one is needed before the string ends
            (r#"{"code": "AB-12", "any": "xyz"#, "\""),
            // no \u escapes in a string with a pattern: the character itself is written
            (r#"{"code": "AB-12", "any": "ab"#, "\\u"),
            // nor an escape where no escaped character fits (a digit comes next)
            (r#"{"code": "AB-1"#, "\\"),
        ] {
            assert_eq!(verdict(&schema, start), Some(false), "{start}");
            assert_eq!(
                verdict(&schema, &format!("{start}{wrong}")),
                None,
                "{start}{wrong}"
            );
        }
        // a match ends the search: what follows it is free, up to the length
        assert_eq!(
            verdict(&schema, r#"{"code": "AB-12", "any": "abc-+*"#),
            Some(false)
        );
        assert_eq!(
            verdict(&schema, r#"{"code": "AB-12", "any": "abc-+*!?#"#),
            None
        );
    }

    #[test]
    fn alternatives_through_refs_are_settled_once() {
        // 2^40 paths from d0 to the integer: a search per value's first byte would never end
        let mut defs: serde_json::Map<String, Value> = (0..40)
            .map(|i| {
                let next = json!({"$ref": format!("#/$defs/d{}", i + 1)});
                (format!("d{i}"), json!({"anyOf": [next, next]}))
            })
            .collect();
        defs.insert("d40".into(), json!({"type": "integer"}));
        // and a loop of alternatives that reaches a value only through its other member
        defs.insert(
            "lp".into(),
            json!({"anyOf": [{"$ref": "#/$defs/lp"}, {"type": "string"}]}),
        );
        let schema = Schema::compile(&json!({"type": "object", "$defs": defs,
            "properties": {"x": {"$ref": "#/$defs/d0"}, "y": {"$ref": "#/$defs/lp"}}, "required": ["x", "y"]}))
        .unwrap();
        assert_eq!(verdict(&schema, r#"{"x": 5, "y": "s"}"#), Some(true));
        assert_eq!(verdict(&schema, r#"{"x": "5""#), None);
        assert_eq!(verdict(&schema, r#"{"x": 5, "y": 1"#), None);
    }

    /// Every prefix of `text` a start, `text` whole, and at most `most` readings open at any point.
    fn allowed(schema: &Schema, text: &str, most: usize) {
        let mut state = Readings::<Shaped>::default();
        for (i, b) in text.bytes().enumerate() {
            assert!(!state.is_complete(), "{}", &text[..i]);
            assert!(state.push_with(schema, b), "{} refused", &text[..=i]);
            assert!(
                state.ways().len() <= most,
                "{} ways after {}",
                state.ways().len(),
                &text[..=i]
            );
        }
        assert!(state.is_complete(), "{text}");
    }

    #[test]
    fn every_alternative_of_a_union_can_be_written() {
        // pydantic's `Union[Cat, Dog]` and a discriminated one: objects that part at a key, or at a value
        let pet = |tag: &str, key: &str, kind: &str| {
            json!({"type": "object", "additionalProperties": false, "required": ["kind", "name", key],
                   "properties": {"kind": {"const": tag}, "name": {"type": "string"}, key: {"type": kind}}})
        };
        let schema = Schema::compile(&json!({"type": "object", "required": ["pets", "best"],
            "$defs": {"Cat": pet("cat", "meows", "integer"), "Dog": pet("dog", "barks", "boolean"),
                      "Pet": {"anyOf": [{"$ref": "#/$defs/Cat"}, {"$ref": "#/$defs/Dog"}]}},
            "properties": {
                "pets": {"type": "array", "items": {"$ref": "#/$defs/Pet"}},
                "best": {"anyOf": [{"$ref": "#/$defs/Pet"}, {"type": "integer", "maximum": 5},
                                   {"type": "integer", "minimum": 100, "maximum": 200}, {"type": "null"}]}}}))
        .unwrap();
        let cat = r#"{"kind": "cat", "name": "Tom", "meows": 3}"#;
        let dog = r#"{"kind": "dog", "name": "Rex", "barks": true}"#;
        for best in [cat, dog, "-7", "5", "100", "150", "null"] {
            let text = format!(r#"{{"pets": [{dog}, {cat}, {dog}], "best": {best}}}"#);
            allowed(&schema, &text, 2);
        }
        // each reading checks its own alternative to the end
        for (start, wrong) in [
            (r#"{"pets": [{"kind": "cat", "name": "Tom", ""#, "b"),
            (r#"{"pets": [{"kind": "dog", "name": "Rex", "barks": "#, "3"),
            (r#"{"pets": [{"kind": "c"#, "o"),
            (r#"{"pets": [], "best": 5"#, "0"),
            (r#"{"pets": [], "best": "#, "6"),
            (r#"{"pets": [], "best": 10"#, "}"),
        ] {
            assert_eq!(verdict(&schema, start), Some(false), "{start}");
            assert_eq!(
                verdict(&schema, &format!("{start}{wrong}")),
                None,
                "{start}{wrong}"
            );
        }
    }

    #[test]
    fn readings_that_meet_again_are_one_and_their_number_is_bounded() {
        // a literal and a free value part at `t` and meet at the end of `true`: one reading per item, not 2^n
        let items = Schema::compile(
            &json!({"type": "object", "properties": {"a": {"type": "array",
            "items": {"anyOf": [{"enum": [true, 7]}, {}, {"type": "string", "maxLength": 3}]}}}}),
        )
        .unwrap();
        let text = format!(r#"{{"a": [{}"x"]}}"#, "true, 7, \"ab\", ".repeat(40));
        allowed(&items, &text, 3);
        // alternatives that never part: 2^12 ways to read the text, the first MOST_READINGS followed
        let mut defs: serde_json::Map<String, Value> = (0..12)
            .map(|i| {
                let inner = json!({"type": "object", "properties": {"v": {"$ref": format!("#/$defs/d{}", i + 1)}},
                                   "required": ["v"]});
                (format!("d{i}"), json!({"anyOf": [inner, inner]}))
            })
            .collect();
        defs.insert("d12".into(), json!({"type": "integer"}));
        let nested = Schema::compile(&json!({"$defs": defs, "$ref": "#/$defs/d0"})).unwrap();
        let text = format!("{}1{}", r#"{"v": "#.repeat(12), "}".repeat(12));
        allowed(&nested, &text, MOST_READINGS);
        // too many alternatives starting alike are refused when compiled
        let many: Vec<Value> = (0..=MOST_ALTERNATIVES)
            .map(|i| json!({"type": "object", "properties": {"k": {"const": i}}}))
            .collect();
        let refused = Schema::compile(&json!({"anyOf": many})).unwrap_err();
        assert!(
            refused.message.contains("more than 64 alternatives"),
            "{refused}"
        );
    }

    #[test]
    fn schemas_outside_the_subset_are_refused_by_name() {
        let refused = |schema: Value, words: &[&str]| {
            let e = Schema::compile(&schema).unwrap_err().to_string();
            for w in words {
                assert!(e.contains(w), "{e:?} lacks {w:?}");
            }
        };
        refused(
            json!({"type": "object", "properties": {"s": {"type": "array", "uniqueItems": true}}}),
            &["uniqueItems", "#/properties/s"],
        );
        refused(
            json!({"type": "object", "properties": {"s": {"type": "string", "pattern": "(a"}}}),
            &["pattern \"(a\"", "#/properties/s"],
        );
        refused(
            json!({"type": "object", "properties": {"s": {"enum": ["a"], "pattern": "a"}}}),
            &["pattern beside enum"],
        );
        refused(
            json!({"type": "object", "properties": {"s": {"type": "string", "pattern": "(?=a)b"}}}),
            &["look-around"],
        );
        refused(
            json!({"type": "object", "properties": {"s": {"type": "string", "pattern": "(a|b)*a(a|b){24}"}}}),
            &["size limit"],
        );
        refused(
            json!({"type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}}),
            &["multipleOf"],
        );
        refused(
            json!({"type": "object", "properties": {"x": {"type": "number", "minimum": 0}}}),
            &["minimum on a number"],
        );
        refused(
            json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 3, "maximum": 2.5}}}),
            &["no integer"],
        );
        refused(
            json!({"type": "object", "properties": {"s": {"enum": ["a"], "maxLength": 2}}}),
            &["maxLength beside enum"],
        );
        refused(json!({"type": "string"}), &["root", "object"]);
        refused(
            json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/Missing"}}}),
            &["#/$defs/Missing"],
        );
        refused(
            json!({"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}}),
            &["local"],
        );
        refused(
            json!({"type": "object", "properties": {"a": {"type": "array", "minItems": 3, "maxItems": 2}}}),
            &["minItems"],
        );
        refused(
            json!({"type": "object", "properties": {"a": {"type": "strin"}}}),
            &["type"],
        );
        refused(
            json!({"type": "object", "properties": {"a": {"enum": [1], "type": "string"}}}),
            &["enum"],
        );
        refused(
            json!({"type": "object", "properties": {"a": {"allOf": [{}, {}]}}}),
            &["allOf"],
        );
        let chain: serde_json::Map<String, Value> = (0..1000)
            .map(|i| {
                (
                    format!("d{i}"),
                    json!({"$ref": format!("#/$defs/d{}", i + 1)}),
                )
            })
            .collect();
        refused(
            json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/d0"}}, "$defs": chain}),
            &["deeper than 128"],
        );
        refused(
            json!({"type": "object", "properties": {"a": false}}),
            &["false"],
        );
    }
}
