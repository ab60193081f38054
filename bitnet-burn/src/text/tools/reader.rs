//! A reply written under [`super::Tools::format`], read as it is written, so a stream can send its answer and its
//! calls (a name, then the arguments piece by piece) before the reply is whole: one pass over the text, a JSON
//! lexer that knows where in the reply it is.

use super::{ToolCall, ToolReply};

/// What newly read text adds to a reply.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyPart {
    /// More of the answer: a text answer's characters (escapes decoded), another answer's JSON as written.
    Answer(String),
    /// Call `index` begins: its function's name is whole.
    Call {
        /// The call's place in the reply.
        index: usize,
        /// The function called.
        name: String,
    },
    /// More of call `index`'s arguments (JSON, as written).
    Arguments {
        /// The call's place in the reply.
        index: usize,
        /// The arguments' next characters.
        text: String,
    },
}

/// A reply under [`super::Tools::format`] read piece by piece ([`ReplyReader::push`]); what it says so far is
/// [`ReplyReader::reply`].
#[derive(Debug, Clone, Default)]
pub struct ReplyReader {
    /// All text read.
    text: String,
    /// Open containers, outermost first.
    stack: Vec<Container>,
    lex: Lex,
    /// What the value being read is to the reply, and how many containers were open where it started.
    role: Option<(Role, usize)>,
    /// A key or a function name being decoded.
    key: String,
    name: String,
    /// A `\u` escape's high surrogate, waiting for its low half.
    high: Option<u32>,
    /// The answer so far, once one has started.
    answer: Option<String>,
    /// The calls whose names are whole, with their arguments so far.
    calls: Vec<ToolCall>,
    /// The text left JSON: the reply is the text as it is.
    broken: bool,
}

/// An open object (with the key whose value is read) or array (with the index of the item read).
#[derive(Debug, Clone)]
enum Container {
    Object(Option<String>),
    Array(usize),
}

/// The values of the reply that are read out: the answer (a string, decoded, or other JSON as written), a call's
/// function name and its arguments.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    TextAnswer,
    RawAnswer,
    Name(usize),
    Arguments(usize),
}

/// Where the lexer is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum Lex {
    /// A value may start (or, in an empty array, the array end).
    #[default]
    Value,
    /// In an object: a key or the object's end.
    Key,
    /// After a key.
    Colon,
    /// In a string (a key's when `key`); `escape` after a backslash, `unicode` in a `\u` escape (its code so far
    /// and the digits read).
    Str {
        key: bool,
        escape: bool,
        unicode: Option<(u32, u8)>,
    },
    /// In a number or a literal.
    Scalar,
    /// After a value: a comma or the container's end.
    After,
    /// The reply's object has ended: what follows is not read.
    Done,
}

impl ReplyReader {
    /// Reads the next piece of the reply; returns what it adds (consecutive pieces of one kind joined).
    pub fn push(&mut self, text: &str) -> Vec<ReplyPart> {
        self.text.push_str(text);
        let mut parts = Vec::new();
        for c in text.chars() {
            if self.broken || !self.step(c, &mut parts) {
                self.broken = true;
                break;
            }
        }
        parts
    }

    /// What the reply read so far says: its calls once a function name is whole (arguments as written, cut
    /// short if the reply was), else its answer once one has started (a text answer decoded), else (or when
    /// the text is not the JSON of a reply) the text as it is.
    pub fn reply(&self) -> ToolReply {
        match (&self.answer, self.calls.is_empty()) {
            _ if self.broken => ToolReply::Content(self.text.clone()),
            (_, false) => ToolReply::Calls(self.calls.clone()),
            (Some(answer), true) => ToolReply::Content(answer.clone()),
            (None, true) => ToolReply::Content(self.text.clone()),
        }
    }

    /// The answer so far, once one has started.
    pub fn answer(&self) -> Option<&str> {
        self.answer.as_deref()
    }

    /// Takes one character; `false` where the text stops being JSON.
    fn step(&mut self, c: char, out: &mut Vec<ReplyPart>) -> bool {
        match self.lex {
            Lex::Done => true,
            Lex::Str {
                key,
                escape,
                unicode,
            } => {
                self.raw(c, out);
                self.string(c, key, escape, unicode, out)
            }
            Lex::Scalar if c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-') => {
                self.raw(c, out);
                true
            }
            Lex::Scalar => {
                self.end_value(out);
                self.lex = Lex::After;
                self.step(c, out)
            }
            _ if matches!(c, ' ' | '\t' | '\n' | '\r') => {
                self.raw(c, out);
                true
            }
            Lex::Value => match c {
                ']' if matches!(self.stack.last(), Some(Container::Array(_))) => self.close(c, out),
                '{' | '[' => {
                    self.begin_value(c);
                    self.raw(c, out);
                    let (container, lex) = match c {
                        '{' => (Container::Object(None), Lex::Key),
                        _ => (Container::Array(0), Lex::Value),
                    };
                    self.stack.push(container);
                    self.lex = lex;
                    true
                }
                '"' => {
                    self.begin_value(c);
                    self.raw(c, out);
                    self.lex = Lex::Str {
                        key: false,
                        escape: false,
                        unicode: None,
                    };
                    true
                }
                '-' | '0'..='9' | 't' | 'f' | 'n' => {
                    self.begin_value(c);
                    self.raw(c, out);
                    self.lex = Lex::Scalar;
                    true
                }
                _ => false,
            },
            Lex::Key => match c {
                '"' => {
                    self.raw(c, out);
                    self.key.clear();
                    self.lex = Lex::Str {
                        key: true,
                        escape: false,
                        unicode: None,
                    };
                    true
                }
                '}' => self.close(c, out),
                _ => false,
            },
            Lex::Colon if c == ':' => {
                self.raw(c, out);
                self.lex = Lex::Value;
                true
            }
            Lex::Colon => false,
            Lex::After => match (c, self.stack.last_mut()) {
                (',', Some(Container::Object(_))) => {
                    self.raw(c, out);
                    self.lex = Lex::Key;
                    true
                }
                (',', Some(Container::Array(i))) => {
                    *i += 1;
                    self.raw(c, out);
                    self.lex = Lex::Value;
                    true
                }
                ('}', Some(Container::Object(_))) | (']', Some(Container::Array(_))) => {
                    self.close(c, out)
                }
                _ => false,
            },
        }
    }

    /// A string's next character after its opening quote.
    fn string(
        &mut self,
        c: char,
        key: bool,
        escape: bool,
        unicode: Option<(u32, u8)>,
        out: &mut Vec<ReplyPart>,
    ) -> bool {
        let same = |escape, unicode| Lex::Str {
            key,
            escape,
            unicode,
        };
        if let Some((code, digits)) = unicode {
            let Some(d) = c.to_digit(16) else {
                return false;
            };
            let code = code << 4 | d;
            if digits < 3 {
                self.lex = same(false, Some((code, digits + 1)));
                return true;
            }
            self.lex = same(false, None);
            let decoded = match (self.high.take(), code) {
                (None, 0xd800..=0xdbff) => {
                    self.high = Some(code);
                    return true;
                }
                (Some(high), 0xdc00..=0xdfff) => {
                    char::from_u32(0x10000 + ((high - 0xd800) << 10) + (code - 0xdc00))
                }
                (None, code) => char::from_u32(code),
                (Some(_), _) => None,
            };
            return decoded.is_some_and(|d| self.decoded(d, key, out));
        }
        if escape {
            let decoded = match c {
                'u' => {
                    self.lex = same(false, Some((0, 0)));
                    return true;
                }
                '"' | '\\' | '/' => c,
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                'b' => '\u{8}',
                'f' => '\u{c}',
                _ => return false,
            };
            self.lex = same(false, None);
            return self.decoded(decoded, key, out);
        }
        match c {
            '\\' => {
                self.lex = same(true, None);
                true
            }
            '"' if key => {
                if let Some(Container::Object(k)) = self.stack.last_mut() {
                    *k = Some(std::mem::take(&mut self.key));
                }
                self.lex = Lex::Colon;
                true
            }
            '"' => {
                self.end_value(out);
                self.lex = Lex::After;
                true
            }
            c => self.decoded(c, key, out),
        }
    }

    /// A string's next character, decoded: a key's, a function name's or a text answer's.
    fn decoded(&mut self, c: char, key: bool, out: &mut Vec<ReplyPart>) -> bool {
        if self.high.is_some() {
            // a high surrogate not followed by a low one
            return false;
        }
        match (key, self.role) {
            (true, _) => self.key.push(c),
            (false, Some((Role::Name(_), _))) => self.name.push(c),
            (false, Some((Role::TextAnswer, depth))) if depth == self.stack.len() => {
                self.answer.get_or_insert_default().push(c);
                emit(out, ReplyPart::Answer(c.into()));
            }
            _ => {}
        }
        true
    }

    /// A value starts with `c`: the role it has in the reply, if any and none is open.
    fn begin_value(&mut self, c: char) {
        if self.role.is_some() {
            return;
        }
        fn key(f: &Container) -> Option<&str> {
            match f {
                Container::Object(Some(k)) => Some(k.as_str()),
                _ => None,
            }
        }
        let field = |call: &Container, i: usize| match key(call) {
            Some("name") if c == '"' => Some(Role::Name(i)),
            Some("arguments") => Some(Role::Arguments(i)),
            _ => None,
        };
        let role = match self.stack.as_slice() {
            [top] if key(top) == Some("response") => Some(match c {
                '"' => Role::TextAnswer,
                _ => Role::RawAnswer,
            }),
            [top, call] if key(top) == Some("tool_call") => field(call, 0),
            [top, Container::Array(i), call] if key(top) == Some("tool_calls") => field(call, *i),
            _ => None,
        };
        if let Some(role) = role {
            if matches!(role, Role::TextAnswer | Role::RawAnswer) {
                self.answer.get_or_insert_default();
            }
            self.role = Some((role, self.stack.len()));
        }
    }

    /// A value has ended: a function name read whole makes a call.
    fn end_value(&mut self, out: &mut Vec<ReplyPart>) {
        let Some((role, depth)) = self.role else {
            return;
        };
        if depth != self.stack.len() {
            return;
        }
        self.role = None;
        if let Role::Name(_) = role {
            let name = std::mem::take(&mut self.name);
            let index = self.calls.len();
            out.push(ReplyPart::Call {
                index,
                name: name.clone(),
            });
            self.calls.push(ToolCall {
                name,
                arguments: String::new(),
            });
        }
    }

    /// Closes the innermost container with `c`.
    fn close(&mut self, c: char, out: &mut Vec<ReplyPart>) -> bool {
        self.raw(c, out);
        self.stack.pop();
        self.end_value(out);
        self.lex = match self.stack.is_empty() {
            true => Lex::Done,
            false => Lex::After,
        };
        true
    }

    /// `c` as written, where it belongs to an answer or arguments passed on as written.
    fn raw(&mut self, c: char, out: &mut Vec<ReplyPart>) {
        match self.role {
            Some((Role::RawAnswer, _)) => {
                self.answer.get_or_insert_default().push(c);
                emit(out, ReplyPart::Answer(c.into()));
            }
            Some((Role::Arguments(i), _)) => {
                if let Some(call) = self.calls.get_mut(i) {
                    call.arguments.push(c);
                    emit(
                        out,
                        ReplyPart::Arguments {
                            index: i,
                            text: c.into(),
                        },
                    );
                }
            }
            _ => {}
        }
    }
}

/// Adds `part` to `out`, joined to the last part where they are of one kind.
fn emit(out: &mut Vec<ReplyPart>, part: ReplyPart) {
    match (out.last_mut(), part) {
        (Some(ReplyPart::Answer(text)), ReplyPart::Answer(more)) => text.push_str(&more),
        (
            Some(ReplyPart::Arguments { index, text }),
            ReplyPart::Arguments {
                index: i,
                text: more,
            },
        ) if *index == i => text.push_str(&more),
        (_, part) => out.push(part),
    }
}
