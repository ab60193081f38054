//! A text answer read while it is written, so a stream can send it before the reply is whole.

/// The text answer a reply so far is writing, when it starts `{"response": "` (any JSON whitespace between): the
/// string's characters so far with its escapes decoded, an escape cut short left out; `None` for a call, another
/// kind of answer, or too little text to tell. What a stream can send before the reply is whole.
pub fn answer_so_far(text: &str) -> Option<String> {
    let rest = text.trim_start_matches(json_space).strip_prefix('{')?;
    let rest = rest
        .trim_start_matches(json_space)
        .strip_prefix("\"response\"")?;
    let rest = rest.trim_start_matches(json_space).strip_prefix(':')?;
    let rest = rest.trim_start_matches(json_space).strip_prefix('"')?;
    let mut answer = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        let c = match c {
            '"' => break,
            '\\' => match unescape(&mut chars) {
                Some(c) => c,
                None => break,
            },
            c => c,
        };
        answer.push(c);
    }
    Some(answer)
}

/// The character of a JSON string escape after its `\`; `None` when it is cut short. (Under the reply's format a
/// high surrogate's escape is always followed by a low one's.)
fn unescape(chars: &mut std::str::Chars) -> Option<char> {
    Some(match chars.next()? {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'u' => {
            let code = hex4(chars)?;
            if (0xd800..0xdc00).contains(&code) {
                if (chars.next()?, chars.next()?) != ('\\', 'u') {
                    return None;
                }
                let low = hex4(chars)? & 0x3ff;
                char::from_u32(0x10000 + ((code - 0xd800) << 10) + low)?
            } else {
                char::from_u32(code)?
            }
        }
        other => other,
    })
}

/// Whitespace between JSON tokens.
fn json_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// The code of a `\u` escape's 4 hex digits; `None` when they are cut short.
fn hex4(chars: &mut std::str::Chars) -> Option<u32> {
    (0..4).try_fold(0, |code, _| Some(code << 4 | chars.next()?.to_digit(16)?))
}
