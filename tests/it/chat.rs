//! Multi-turn chat on the fixture model: later turns run only the new tokens yet generate what a fresh run of the
//! whole conversation generates; the oldest turns give way when the context fills; bad messages are refused.

use crate::common::*;
use bitnet_burn::text::chat::{Chat, ChatError, ChatTemplate, Message};
use bitnet_burn::text::generate::{generate_ids, GenerateOptions};
use bitnet_burn::text::tokenizer::Tokenizer;
use bitnet_burn::{load, BitNet};
use bitnet_gguf::GgufFile;
use burn::backend::NdArray;

type B = NdArray;

fn fixture(test: &str) -> Option<(BitNet<B>, Tokenizer, ChatTemplate)> {
    let dir = fixtures_or_skip(test)?;
    let path = fixture_gguf(&dir, "i2_s");
    let tok = Tokenizer::from_gguf(&GgufFile::open(&path).unwrap()).unwrap();
    let template = ChatTemplate::from_gguf(&GgufFile::open(&path).unwrap(), &tok).unwrap();
    Some((
        load::<B>(&path, &Default::default()).unwrap(),
        tok,
        template,
    ))
}

fn opts(n: usize) -> GenerateOptions {
    GenerateOptions {
        max_new_tokens: n,
        ..Default::default()
    }
}

#[test]
fn the_files_template_is_used_and_the_builtin_format_is_bitnet_2b4ts() {
    let Some((_, tok, file_template)) =
        fixture("the_files_template_is_used_and_the_builtin_format_is_bitnet_2b4ts")
    else {
        return;
    };
    assert!(
        file_template.origin().ends_with("tokenizer.chat_template"),
        "{}",
        file_template.origin()
    );
    // The fixture carries the tiny-random BitNet template (user turns end in `BITNETAssistant: ` + EOS).
    assert_eq!(
        file_template
            .render(&[Message::new("user", "Hi")], true)
            .unwrap(),
        "<|begin_of_text|>Human: Hi\n\nBITNETAssistant: <|end_of_text|>"
    );
    let template = ChatTemplate::bitnet(&tok).unwrap();
    let text = template
        .render(
            &[
                Message::new("system", "Be brief."),
                Message::new("user", " Hi "),
                Message::new("assistant", "Hello"),
                Message::new("user", "Bye"),
            ],
            true,
        )
        .unwrap();
    // transformers' BitNet template: `{role|capitalize}: {content|trim}<|eot_id|>` after BOS, then `Assistant: `.
    assert_eq!(
        text,
        "<|begin_of_text|>System: Be brief.<|eot_id|>User: Hi<|eot_id|>Assistant: Hello<|eot_id|>User: Bye<|eot_id|>Assistant: "
    );
    assert_eq!(tok.encode(&text, false).unwrap()[0], tok.bos_id().unwrap());
}

#[test]
fn later_turns_reuse_the_cache_and_match_a_fresh_run() {
    let Some((model, tok, template)) = fixture("later_turns_reuse_the_cache_and_match_a_fresh_run")
    else {
        return;
    };
    let mut cache = model.new_cache(1, 256);
    let mut chat = Chat::new(template.clone(), None);
    let first = chat
        .send(&model, &tok, &mut cache, "Hello there", &opts(6), |_| {})
        .unwrap();
    let second = chat
        .send(&model, &tok, &mut cache, "And then?", &opts(6), |_| {})
        .unwrap();
    assert_eq!(chat.messages().len(), 4);
    assert_eq!(chat.messages()[1].content, first.text);

    let full = template.render(&chat.messages()[..3], true).unwrap();
    let ids = tok.encode(&full, false).unwrap();
    assert!(
        second.timings.prompt_tokens < ids.len() - first.timings.prompt_tokens / 2,
        "turn 2 ran {} of {} tokens",
        second.timings.prompt_tokens,
        ids.len()
    );
    let mut fresh = model.new_cache(1, 256);
    let again = generate_ids(&model, &tok, &mut fresh, ids, &opts(6), |_| {}).unwrap();
    assert_eq!(
        second.ids, again.ids,
        "cached turn = whole conversation from scratch"
    );
}

#[test]
fn oldest_turns_give_way_when_the_context_fills() {
    let Some((model, tok, template)) = fixture("oldest_turns_give_way_when_the_context_fills")
    else {
        return;
    };
    let mut cache = model.new_cache(1, 64);
    let mut chat = Chat::new(template, Some("Sys".into()));
    for i in 0..8 {
        chat.send(
            &model,
            &tok,
            &mut cache,
            &format!("message number {i}"),
            &opts(8),
            |_| {},
        )
        .unwrap_or_else(|e| panic!("turn {i}: {e}"));
        assert!(cache.len() <= 64);
    }
    let m = chat.messages();
    assert!(m.len() < 17, "{} messages kept", m.len());
    assert_eq!(m[0].role, "system", "the system message stays");
    assert_eq!(m[m.len() - 2].content, "message number 7");
}

#[test]
fn bad_messages_are_refused_and_the_chat_goes_on() {
    let Some((model, tok, template)) = fixture("bad_messages_are_refused_and_the_chat_goes_on")
    else {
        return;
    };
    let mut cache = model.new_cache(1, 64);
    let mut chat = Chat::new(template, None);
    assert!(matches!(
        chat.send(&model, &tok, &mut cache, "  ", &opts(4), |_| {}),
        Err(ChatError::EmptyMessage)
    ));
    let long = "word ".repeat(100);
    let err = chat
        .send(&model, &tok, &mut cache, &long, &opts(4), |_| {})
        .unwrap_err();
    assert!(matches!(err, ChatError::TooLong { limit: 64, .. }), "{err}");
    assert!(chat.messages().is_empty(), "a refused message is not kept");
    chat.send(&model, &tok, &mut cache, "short", &opts(4), |_| {})
        .unwrap();
    assert_eq!(chat.messages().len(), 2);
}
