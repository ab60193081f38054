//! GBNF grammars (llama.cpp's `grammar`): the strings llama.cpp's own grammar tests say each grammar must and must
//! not match (`tests/test-grammar-integration.cpp` in the PyPI sdist, read from the C++ source), llama.cpp's shipped
//! `grammars/*.gbnf` parse, and the shipped model writes in a grammar through the CLI (its JSON read by serde_json).

use bitnet_burn::text::format::{FormatConstraint, Grammar, OutputFormat};
use bitnet_burn::text::tokenizer::Tokenizer;
use bitnet_gguf::GgufFile;

use crate::common::{self, llamacpp_models_or_skip, repo_dir};

/// One `test_grammar(name, grammar, {passing...}, {failing...})` of llama.cpp's tests.
struct Case {
    name: String,
    grammar: String,
    passing: Vec<String>,
    failing: Vec<String>,
}

/// Reads C++ source: string literals (raw or escaped, adjacent ones joined), skipping blanks and comments.
struct Cpp<'a> {
    src: &'a str,
    at: usize,
}

impl<'a> Cpp<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.at..]
    }

    fn blank(&mut self) {
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start();
            self.at += rest.len() - trimmed.len();
            if trimmed.starts_with("//") {
                self.at += trimmed.find('\n').unwrap_or(trimmed.len());
            } else {
                return;
            }
        }
    }

    fn expect(&mut self, token: &str) {
        self.blank();
        assert!(
            self.rest().starts_with(token),
            "expected {token:?} at {:?}",
            &self.rest()[..40]
        );
        self.at += token.len();
    }

    /// A string expression: literals, joined; `None` at anything else (a `token(...)` call).
    fn string(&mut self) -> Option<String> {
        let mut out = None::<String>;
        loop {
            self.blank();
            let rest = self.rest();
            let part = if let Some(raw) = rest.strip_prefix("R\"") {
                let open = raw.find('(').unwrap();
                let close = format!("){}\"", &raw[..open]);
                let end = raw.find(&close).unwrap();
                self.at += 2 + end + close.len();
                raw[open + 1..end].to_string()
            } else if rest.starts_with('"') {
                self.escaped()
            } else {
                return out;
            };
            out.get_or_insert_with(String::new).push_str(&part);
        }
    }

    fn escaped(&mut self) -> String {
        let mut out = String::new();
        let mut chars = self.rest()[1..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.at += 1 + i + 1;
                    return out;
                }
                '\\' => match chars.next().unwrap().1 {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    c @ ('\\' | '"' | '\'') => out.push(c),
                    c => panic!("an escape this reader does not know: \\{c}"),
                },
                c => out.push(c),
            }
        }
        panic!("an unterminated string literal");
    }

    /// `{ "a", "b", ... }`; `None` if an element is not a plain string (the token tests).
    fn list(&mut self) -> Option<Vec<String>> {
        self.expect("{");
        let mut items = Vec::new();
        let mut plain = true;
        loop {
            self.blank();
            if self.rest().starts_with('}') {
                self.at += 1;
                return plain.then_some(items);
            }
            match self.string() {
                Some(s) => {
                    self.blank();
                    // `"a" + token(1)`: not a plain string
                    plain &= !self.rest().starts_with('+');
                    items.push(s);
                }
                None => plain = false,
            }
            // to the element's end
            let mut depth = 0;
            loop {
                let c = self.rest().chars().next().unwrap();
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    ',' if depth == 0 => {
                        self.at += 1;
                        break;
                    }
                    '}' if depth == 0 => break,
                    '"' => {
                        self.escaped();
                        continue;
                    }
                    _ => {}
                }
                self.at += c.len_utf8();
            }
        }
    }
}

/// The `test_grammar` cases of llama.cpp's grammar tests, but those with token references (not supported here).
fn llamacpp_cases(source: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    for (at, _) in source.match_indices("    test_grammar(") {
        let mut cpp = Cpp {
            src: source,
            at: at + "    test_grammar(".len(),
        };
        let name = cpp.string().unwrap();
        cpp.expect(",");
        let grammar = cpp.string().unwrap();
        cpp.expect(",");
        let passing = cpp.list();
        cpp.expect(",");
        let failing = cpp.list();
        if let (Some(passing), Some(failing)) = (passing, failing) {
            if !grammar.contains('<') {
                cases.push(Case {
                    name,
                    grammar,
                    passing,
                    failing,
                });
            }
        }
    }
    cases
}

#[test]
fn grammars_match_what_llamacpp_tests_say_they_match() {
    let Some(models) = llamacpp_models_or_skip("grammars_match_what_llamacpp_tests_say_they_match")
    else {
        return;
    };
    let root = models.parent().unwrap();
    let source = std::fs::read_to_string(root.join("tests/test-grammar-integration.cpp")).unwrap();
    let cases = llamacpp_cases(&source);
    // 14 in the January 2026 sdist, 2 of them with token references
    assert_eq!(cases.len(), 12, "{} cases read", cases.len());
    let mut checked = 0;
    for case in &cases {
        let grammar =
            Grammar::parse(&case.grammar).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        for text in &case.passing {
            assert!(grammar.holds(text), "{}: should match {text:?}", case.name);
        }
        for text in &case.failing {
            assert!(
                !grammar.holds(text),
                "{}: should not match {text:?}",
                case.name
            );
        }
        checked += case.passing.len() + case.failing.len();
    }
    assert!(checked >= 100, "{checked} strings");

    // every grammar llama.cpp ships parses
    let mut shipped = 0;
    for entry in std::fs::read_dir(root.join("grammars")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "gbnf") {
            let text = std::fs::read_to_string(&path).unwrap();
            Grammar::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            shipped += 1;
        }
    }
    assert!(shipped >= 8, "{shipped} grammars");
}

/// `bitnet run --grammar-file`: sampled replies of the shipped model are sentences of the grammar, each ending
/// where the grammar does: a bounded JSON object that serde_json reads back, and a short answer.
#[test]
fn the_shipped_model_writes_in_the_grammar() {
    let model = repo_dir().join("models/shakespeare-bitnet-tq2_0.gguf");
    let dir = tempfile::tempdir().unwrap();
    let run = |grammar: &str, seed: u64| {
        let path = dir.path().join("grammar.gbnf");
        std::fs::write(&path, grammar).unwrap();
        let reply = common::bitnet_json(&[
            "run",
            "-m",
            model.to_str().unwrap(),
            "-p",
            "ROMEO:",
            "-n",
            "120",
            "--temp",
            "0.8",
            "--top-k",
            "40",
            "-s",
            &seed.to_string(),
            "--grammar-file",
            path.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(reply["stop"], "FormatComplete", "{reply}");
        reply["text"].as_str().unwrap().to_string()
    };
    let object = r#"root ::= "{" ws "\"name\":" ws "\"" [A-Za-z ]{1,16} "\"," ws "\"age\":" ws age ws "}"
age ::= [1-9] [0-9]?
ws ::= " "?
"#;
    for seed in 0..4 {
        let text = run(object, seed);
        let value: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        let name = value["name"].as_str().unwrap_or_else(|| panic!("{text:?}"));
        assert!((1..=16).contains(&name.len()), "{text:?}");
        assert!(
            (1..=99).contains(&value["age"].as_u64().unwrap()),
            "{text:?}"
        );
    }
    let answer =
        "root ::= (\"yes\" | \"no\") \", \" word (\" \" word){0,3} \".\"\nword ::= [a-z]{1,12}\n";
    for seed in 0..4 {
        let text = run(answer, seed);
        let rest = text
            .strip_prefix("yes, ")
            .or_else(|| text.strip_prefix("no, "));
        let words = rest
            .and_then(|r| r.strip_suffix('.'))
            .unwrap_or_else(|| panic!("{text:?}"));
        let words: Vec<&str> = words.split(' ').collect();
        assert!((1..=4).contains(&words.len()), "{text:?}");
        assert!(
            words
                .iter()
                .all(|w| (1..=12).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_lowercase())),
            "{text:?}"
        );
    }
}

/// Under llama.cpp's `json.gbnf`, on Llama 3's vocabulary: after prefixes of an object (fed token by token, one
/// constraint throughout, so later checks reuse the steps earlier ones took), the vocabulary-wide mask keeps
/// exactly the tokens whose bytes continue the text in the grammar's language (each checked alone), and
/// end-of-text tokens only where the text is complete.
#[test]
fn the_grammar_mask_keeps_exactly_the_tokens_that_continue_the_text() {
    let Some(models) = llamacpp_models_or_skip("the_grammar_mask_keeps_exactly_the_tokens") else {
        return;
    };
    let tok =
        Tokenizer::from_gguf(&GgufFile::open(models.join("ggml-vocab-llama-bpe.gguf")).unwrap())
            .unwrap();
    let text =
        std::fs::read_to_string(models.parent().unwrap().join("grammars/json.gbnf")).unwrap();
    let grammar = Grammar::parse(&text).unwrap();
    let format = OutputFormat::grammar(&text).unwrap();
    let object = r#"{"name": "Zoë \"Z\" 中文 😀", "n": [1, -2.5e+3, true, null], "o": {}}"#;
    let ids = tok.encode(object, false).unwrap();
    let mut constraint = FormatConstraint::new(&format, &tok).unwrap();
    let vocab = tok.vocab_size();
    let mut prefix = Vec::new();
    let mut checked = 0;
    for step in 0..=ids.len() {
        if step % 3 == 0 || step == ids.len() {
            let mut logits = vec![0.0f32; vocab];
            assert!(constraint.mask(&mut logits));
            for other in 0..vocab as u32 {
                // stepped from the text so far without the steps the mask keeps (or from the start, every
                // 12th token)
                let fits = match tok.stop_ids().contains(&other) {
                    true => std::str::from_utf8(&prefix).is_ok_and(|t| grammar.holds(t)),
                    false if other % 12 == 0 => {
                        !tok.is_special(other)
                            && tok.token_bytes(other).is_some_and(|b| {
                                !b.is_empty() && grammar.starts(&[&prefix[..], &b[..]].concat())
                            })
                    }
                    false => constraint.allows(other),
                };
                assert_eq!(
                    logits[other as usize] == 0.0,
                    fits,
                    "after {:?}: token {other} {:?}",
                    String::from_utf8_lossy(&prefix),
                    tok.token(other)
                );
            }
            checked += 1;
        }
        if let Some(&id) = ids.get(step) {
            assert!(constraint.accept(id), "{:?}", tok.token(id));
            prefix.extend(tok.token_bytes(id).unwrap());
        }
    }
    assert!(checked > 5);
    // the object is whole: an end-of-text token fits (whitespace may still follow, as json.gbnf allows)
    assert!(tok.stop_ids().iter().all(|&id| constraint.allows(id)));
}
