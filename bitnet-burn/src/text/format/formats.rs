//! JSON Schema's string `format`s as the patterns a generated string is held to: each allows only strings of that
//! format (a subset of it where the whole would not fit a small DFA: an e-mail address's plain local part, IPv6
//! without an embedded IPv4), so what pydantic and the standard parsers read back is always valid. Unknown formats
//! stay annotations.

/// Two digits of an hour, minute or second.
const HOUR: &str = "(?:[01][0-9]|2[0-3])";
const SIXTY: &str = "[0-5][0-9]";
/// A hostname label (RFC 1123), at most 32 characters.
const LABEL: &str = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?";
/// A host's last label, starting with a letter (URL parsers read a numeric one as an IPv4 address).
const TOP: &str = "[A-Za-z](?:[A-Za-z0-9-]{0,30}[A-Za-z0-9])?";
/// Top-level domains that e-mail addresses cannot use (RFC 6761 special-use names; email-validator, pydantic's
/// `EmailStr`, refuses them).
const SPECIAL_USE: [&str; 6] = ["arpa", "invalid", "local", "localhost", "onion", "test"];
/// An IPv4 address's number (0-255, no leading zero).
const OCTET: &str = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
/// Four hex digits at most (an IPv6 group).
const GROUP: &str = "[0-9A-Fa-f]{1,4}";

/// The anchored regex (Rust `regex` syntax) a string of format `name` matches; `None` for a format not checked.
pub(super) fn format(name: &str) -> Option<String> {
    let regex = match name {
        "date" => date(),
        "time" => time(),
        "date-time" => format!("{}T{}", date(), time()),
        "duration" => duration(),
        "uuid" => {
            "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}".into()
        }
        "ipv4" => format!("(?:{OCTET}\\.){{3}}{OCTET}"),
        "ipv6" => ipv6(),
        // RFC 1123; 7 labels of 32 characters stay within its 253 in all
        "hostname" => format!("{LABEL}(?:\\.{LABEL}){{0,6}}"),
        // a dot-atom local part of the plainest characters, a domain whose top level is letters but not a
        // special-use name
        "email" => format!(
            "[A-Za-z0-9_+-]{{1,32}}(?:\\.[A-Za-z0-9_+-]{{1,16}})?@(?:{LABEL}\\.){{1,4}}{}",
            letters_except(&SPECIAL_USE, 0)
        ),
        // an absolute URI with an authority: scheme, host name, port, path, query and fragment of unreserved
        // characters and sub-delimiters (no percent escapes)
        "uri" => {
            let port = "(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])";
            let chars = "[A-Za-z0-9._~!$&'()*+,;=:@-]";
            format!(
                "[A-Za-z][A-Za-z0-9+.-]{{0,15}}://(?:{LABEL}\\.)*{TOP}(?::{port})?\
                 (?:/{chars}*)*(?:\\?(?:{chars}|[/?])*)?(?:#(?:{chars}|[/?])*)?"
            )
        }
        _ => return None,
    };
    Some(format!("^(?:{regex})$"))
}

/// RFC 3339 `full-date` (year 0001 on): days that each month has, February 29 in leap years only.
fn date() -> String {
    let year = "(?:[0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)";
    let month_day = "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])\
        |(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))";
    // divisible by 4 and not by 100, or by 400
    let leap = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)";
    format!("(?:{year}-{month_day}|{leap}-02-29)")
}

/// RFC 3339 `full-time`: seconds to at most 6 decimals (what Python keeps) and an offset.
fn time() -> String {
    format!("{HOUR}:{SIXTY}:{SIXTY}(?:\\.[0-9]{{1,6}})?(?:Z|[+-]{HOUR}:{SIXTY})")
}

/// ISO 8601 duration (`P1DT2H30M`, or weeks alone: `P2W`): at least one part, each in its place, numbers of at
/// most 6 digits (a million years still fits Python's `timedelta`).
fn duration() -> String {
    let n = "[0-9]{1,6}";
    let then =
        |parts: &[&str]| -> String { parts.iter().map(|p| format!("(?:{n}{p})?")).collect() };
    let date = format!("(?:{n}Y{}|{n}M{}|{n}D)", then(&["M", "D"]), then(&["D"]));
    let seconds = format!("{n}(?:\\.[0-9]{{1,6}})?S");
    let time = format!("T(?:{n}H(?:{n}M)?(?:{seconds})?|{n}M(?:{seconds})?|{seconds})");
    format!("P(?:{date}(?:{time})?|{time}|{n}W)")
}

/// Letters, 2 to 24 of them, that are not (in any case) one of `words` (lower case): each branch either leaves
/// the words' trie by a letter none continues with, or follows one of their letters; `depth` letters are behind.
fn letters_except(words: &[&str], depth: usize) -> String {
    let (least, most) = (2usize.saturating_sub(depth), 24 - depth);
    let mut firsts: Vec<char> = words.iter().filter_map(|w| w.chars().next()).collect();
    firsts.sort_unstable();
    firsts.dedup();
    let mut branches = Vec::new();
    if least == 0 && !words.contains(&"") {
        branches.push(String::new());
    }
    if most > 0 {
        let other = match firsts.is_empty() {
            true => "[A-Za-z]".to_string(),
            false => {
                let both: String = firsts
                    .iter()
                    .flat_map(|c| [*c, c.to_ascii_uppercase()])
                    .collect();
                format!("[A-Za-z--[{both}]]")
            }
        };
        branches.push(format!(
            "{other}[A-Za-z]{{{},{}}}",
            least.saturating_sub(1),
            most - 1
        ));
        for c in firsts {
            let rest: Vec<&str> = words.iter().filter_map(|w| w.strip_prefix(c)).collect();
            let upper = c.to_ascii_uppercase();
            branches.push(format!("[{c}{upper}]{}", letters_except(&rest, depth + 1)));
        }
    }
    format!("(?:{})", branches.join("|"))
}

/// IPv6 in hex groups, `::` standing for one or more zero groups.
fn ipv6() -> String {
    let mut forms = vec![
        format!("(?:{GROUP}:){{7}}{GROUP}"),
        format!("(?:{GROUP}:){{1,7}}:"),
    ];
    for before in 1..=6 {
        let after = 7 - before;
        forms.push(format!(
            "(?:{GROUP}:){{1,{before}}}(?::{GROUP}){{1,{after}}}"
        ));
    }
    forms.push(format!(":(?::{GROUP}){{1,7}}"));
    forms.push("::".into());
    forms.join("|")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::text::format::schema::Schema;
    use crate::text::format::shaped::verdict;

    /// Whether a string of `format` may be exactly `s`.
    fn holds(format: &str) -> impl Fn(&str) -> bool {
        let schema = Schema::compile(&json!({"type": "object", "required": ["v"],
            "properties": {"v": {"type": "string", "format": format}}}))
        .unwrap();
        move |s| {
            let text = format!("{{\"v\": {}}}", serde_json::to_string(s).unwrap());
            verdict(&schema, &text) == Some(true)
        }
    }

    fn check(format: &str, valid: &[&str], invalid: &[&str]) {
        let holds = holds(format);
        for s in valid {
            assert!(holds(s), "{format}: {s:?} refused");
        }
        for s in invalid {
            assert!(!holds(s), "{format}: {s:?} allowed");
        }
    }

    #[test]
    fn dates_are_days_of_the_calendar() {
        let date = holds("date");
        let leap =
            |y: u32| y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400));
        for year in [
            0, 1, 4, 100, 200, 400, 1600, 1900, 2000, 2023, 2024, 2100, 9996, 9999,
        ] {
            for month in 0..=13 {
                for day in 0..=32 {
                    let days = match month {
                        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
                        4 | 6 | 9 | 11 => 30,
                        2 if leap(year) => 29,
                        2 => 28,
                        _ => 0,
                    };
                    let text = format!("{year:04}-{month:02}-{day:02}");
                    assert_eq!(date(&text), year > 0 && (1..=days).contains(&day), "{text}");
                }
            }
        }
        check(
            "date",
            &[],
            &["2024-1-01", "24-01-01", "2024-01-01T", "2024/01/01", ""],
        );
    }

    #[test]
    fn times_and_date_times_are_rfc_3339() {
        let times = [
            "00:00:00Z",
            "23:59:59.999999+14:00",
            "12:30:00-05:30",
            "07:08:09.5Z",
        ];
        let not_times = [
            "24:00:00Z",
            "12:60:00Z",
            "12:00:60Z",
            "12:00:00",
            "12:00:00.1234567Z",
            "12:00Z",
            "12:00:00+24:00",
        ];
        check("time", &times, &not_times);
        check(
            "date-time",
            &["2024-02-29T12:00:00Z", "0001-01-01T00:00:00.000001+00:00"],
            &[
                "2023-02-29T12:00:00Z",
                "2024-01-01 12:00:00Z",
                "2024-01-01T12:00:00",
                "2024-01-01",
            ],
        );
        check(
            "duration",
            &[
                "P1D",
                "PT1H",
                "P1Y2M3DT4H5M6.5S",
                "P2W",
                "PT0S",
                "P1M",
                "PT30M",
                "P1YT1S",
            ],
            &[
                "P",
                "PT",
                "P1H",
                "P1DT",
                "P1W2D",
                "P1M1Y",
                "1D",
                "P1234567D",
                "PT1.5H",
            ],
        );
    }

    #[test]
    fn identifiers_addresses_and_names() {
        check(
            "uuid",
            &[
                "123e4567-e89b-12d3-a456-426614174000",
                "00000000-0000-0000-0000-00000000000A",
            ],
            &[
                "123e4567-e89b-12d3-a456-42661417400",
                "123e4567-e89b-12d3-a456-42661417400g",
                "123e4567e89b12d3a456426614174000",
            ],
        );
        check(
            "ipv4",
            &["0.0.0.0", "255.255.255.255", "192.168.1.10"],
            &["256.0.0.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", "1.2.3.4 "],
        );
        check(
            "ipv6",
            &[
                "::",
                "::1",
                "1::",
                "2001:db8::8a2e:370:7334",
                "1:2:3:4:5:6:7:8",
                "1:2:3:4:5:6:7::",
                "::2:3:4:5:6:7:8",
                "fe80::1:2",
            ],
            &[
                "1:2:3:4:5:6:7:8:9",
                "1::2::3",
                ":1",
                "12345::",
                "1:2:3:4:5:6:7:8::",
                "1:2:3:4:5:6:7",
                "::g",
            ],
        );
        let label = "a".repeat(32);
        let seven = [label.as_str(); 7].join(".");
        check(
            "hostname",
            &["a", "example.com", "a-b.c", "xn--bcher-kva.example", &seven],
            &[
                "-a",
                "a-",
                "a..b",
                "a_b",
                ".a",
                &format!("{seven}.a"),
                &format!("{label}a.com"),
            ],
        );
    }

    #[test]
    fn emails_and_uris() {
        check(
            "email",
            &[
                "a@example.com",
                "john.smith@mail.co.uk",
                "a_b+c@a-b.io",
                "x@a.tests",
                "x@a.localhosts",
                "x@a.Loca",
                "x@1a.com",
            ],
            // special-use top levels (any case), no dot after the @, digits in the top level, empty atoms
            &[
                "x@a.test",
                "x@a.TEST",
                "x@a.localhost",
                "x@a.Onion",
                "x@b.arpa",
                "a@b",
                "a@b.c1",
                "a..b@c.com",
                ".a@c.com",
                "@c.com",
                "a@.com",
            ],
        );
        check(
            "uri",
            &[
                "https://example.com",
                "http://localhost:8080/a/b?x=1&y=2#top",
                "ftp://a.b.c/x/",
                "urn+x://h/(a)*;b=c",
            ],
            &[
                "example.com",
                "http://a.1",
                "http://a:99999",
                "http://a b",
                "http://exa%20mple.com",
                "http:///x",
                "1http://a",
            ],
        );
    }

    #[test]
    fn unknown_formats_annotate_and_a_pattern_beside_one_is_followed() {
        check("password", &["anything at all", ""], &[]);
        let schema = Schema::compile(&json!({"type": "object", "required": ["v"],
            "properties": {"v": {"type": "string", "format": "date", "pattern": "^x$"}}}))
        .unwrap();
        assert_eq!(verdict(&schema, r#"{"v": "x"}"#), Some(true));
        assert_eq!(verdict(&schema, r#"{"v": "2"#), None);
        // a length holds beside a format
        let short = json!({"type": "object", "properties": {"v": {"type": "string", "format": "hostname", "maxLength": 3}}});
        let short = Schema::compile(&short).unwrap();
        assert_eq!(verdict(&short, r#"{"v": "abc"}"#), Some(true));
        assert_eq!(verdict(&short, r#"{"v": "abcd"#), None);
    }
}
