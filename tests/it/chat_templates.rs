//! Chat templates rendered by `bitnet_burn::text::chat` against llama.cpp's reference suite (`tests/test-chat-template.cpp`
//! in the llama.cpp sources: each case's template, BOS/EOS and the text its Jinja path renders for a six-message
//! conversation), plus the built-in BitNet 2B-4T format.

use crate::common;

use bitnet_burn::text::chat::{ChatTemplate, Message};

/// One `TestCase` of test-chat-template.cpp.
#[derive(Debug, Default)]
struct Case {
    name: String,
    template: String,
    expected: String,
    expected_jinja: String,
    bos: String,
    eos: String,
    jinja: bool,
    extra: bool,
}

/// Reads consecutive C string literals (`"..." "..."`, `u8"..."`, `U8C("...")`) at the start of `s`.
fn c_strings(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == '(') {
            chars.next();
        }
        let rest: String = chars.clone().take(4).collect();
        if rest.starts_with("U8C") || rest.starts_with("u8\"") {
            chars.next();
            chars.next();
            if rest.starts_with("U8C") {
                chars.next();
            }
            continue;
        }
        if chars.peek() != Some(&'"') {
            return out;
        }
        chars.next();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some(other) => out.push(other),
                    None => return out,
                },
                c => out.push(c),
            }
        }
        while chars.peek() == Some(&')') {
            chars.next();
        }
    }
}

fn cases(source: &str) -> Vec<Case> {
    let start = source.find("std::vector<TestCase> test_cases").unwrap();
    let end = start + source[start..].find("\n    };").unwrap();
    let mut cases: Vec<Case> = Vec::new();
    for part in source[start..end].split("/* .").skip(1) {
        let Some((field, value)) = part.split_once(" */") else {
            continue;
        };
        let field = field.trim_end_matches('=');
        let value = value.trim_start();
        if field == "name" {
            cases.push(Case {
                jinja: true,
                ..Default::default()
            });
        }
        let case = cases.last_mut().unwrap();
        match field {
            "name" => case.name = c_strings(value),
            "template_str" => case.template = c_strings(value),
            "expected_output" => case.expected = c_strings(value),
            "expected_output_jinja" => case.expected_jinja = c_strings(value),
            "bos_token" => case.bos = c_strings(value),
            "eos_token" => case.eos = c_strings(value),
            "supported_with_jinja" => case.jinja = value.starts_with("true"),
            "extra_conversation" => case.extra = true,
            other => panic!("unknown field {other}"),
        }
    }
    cases
}

fn conversation() -> Vec<Message> {
    [
        ("system", "You are a helpful assistant"),
        ("user", "Hello"),
        ("assistant", "Hi there"),
        ("user", "Who are you"),
        ("assistant", "   I am an assistant   "),
        ("user", "Another question"),
    ]
    .iter()
    .map(|(r, c)| Message::new(r, *c))
    .collect()
}

#[test]
fn llamacpp_chat_template_suite() {
    let Some(models) = common::llamacpp_models_or_skip("llamacpp_chat_template_suite") else {
        return;
    };
    let dir = models.join("..");
    let source = std::fs::read_to_string(dir.join("tests/test-chat-template.cpp")).unwrap();
    let all = cases(&source);
    assert!(all.len() > 30, "{} cases parsed", all.len());
    let mut wrong = Vec::new();
    let mut checked = 0;
    for case in all.iter().filter(|c| c.jinja && !c.extra) {
        let expected = if case.expected_jinja.is_empty() {
            &case.expected
        } else {
            &case.expected_jinja
        };
        let t = ChatTemplate::with_tokens(&case.template, &case.name, &case.bos, &case.eos);
        let got = t.and_then(|t| t.render(&conversation(), true));
        checked += 1;
        match got {
            Ok(text) if text.replace("\r\n", "\n") == *expected => {}
            Ok(text) => wrong.push(format!(
                "{}:\n  expected {expected:?}\n  got      {text:?}",
                case.name
            )),
            Err(e) => wrong.push(format!("{}: {e}", case.name)),
        }
    }
    assert!(checked > 30, "only {checked} cases apply");
    assert!(
        wrong.is_empty(),
        "{} of {checked} differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
