//! No input makes the checker panic: mutated and truncated versions of the shipped model files
//! (byte flips, line deletions and duplications, truncations, value swaps, odd numbers) either
//! check clean or fail with diagnostics that each point at a line of the file.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use mdc::base::rng::Rng;
use mdc::model::{self, ModelError};

const MODELS: [&str; 4] =
    ["models/unet.toml", "models/unet-rgb32.toml", "models/unet-attn.toml", "tests/fixtures/small.toml"];

/// Bytes that are likely to break TOML or the model in interesting ways.
const INTERESTING: &[u8] = b"[]{}=\",.#\n 0123456789-_xabz\t'\\\xff\xc3";

const NUMBERS: [&str; 10] =
    ["0", "-1", "1", "3", "7", "1000000", "99999999999999999999", "1.5", "65537", "16385"];

fn mutate(rng: &mut Rng, src: &[u8]) -> Vec<u8> {
    let mut out = src.to_vec();
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        if out.is_empty() {
            break;
        }
        match rng.below(7) {
            // flip a byte
            0 => {
                let i = rng.below(out.len());
                out[i] = if rng.below(2) == 0 {
                    INTERESTING[rng.below(INTERESTING.len())]
                } else {
                    rng.next_u64() as u8
                };
            }
            // delete a line
            1 => {
                let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
                let drop = rng.below(lines.len());
                out = lines
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| i != drop)
                    .map(|(_, l)| *l)
                    .collect::<Vec<_>>()
                    .join(&b'\n');
            }
            // duplicate a line
            2 => {
                let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
                let dup = rng.below(lines.len());
                let mut v: Vec<&[u8]> = lines.clone();
                v.insert(dup, lines[dup]);
                out = v.join(&b'\n');
            }
            // truncate
            3 => {
                let at = rng.below(out.len() + 1);
                out.truncate(at);
            }
            // swap two quoted strings (block names, ops, references)
            4 => {
                let text = String::from_utf8_lossy(&out).into_owned();
                let quoted: Vec<(usize, usize)> = quoted_spans(&text);
                if quoted.len() >= 2 {
                    let a = quoted[rng.below(quoted.len())];
                    let b = quoted[rng.below(quoted.len())];
                    let (first, second) = if a.0 <= b.0 { (a, b) } else { (b, a) };
                    if first.1 <= second.0 {
                        let s = format!(
                            "{}{}{}{}{}",
                            &text[..first.0],
                            &text[second.0..second.1],
                            &text[first.1..second.0],
                            &text[first.0..first.1],
                            &text[second.1..]
                        );
                        out = s.into_bytes();
                    }
                }
            }
            // replace a number with an odd one
            5 => {
                let text = String::from_utf8_lossy(&out).into_owned();
                let digits: Vec<usize> = text
                    .char_indices()
                    .filter(|&(i, c)| {
                        c.is_ascii_digit() && (i == 0 || !text.as_bytes()[i - 1].is_ascii_digit())
                    })
                    .map(|(i, _)| i)
                    .collect();
                if !digits.is_empty() {
                    let start = digits[rng.below(digits.len())];
                    let end = start + text[start..].chars().take_while(|c| c.is_ascii_digit()).count();
                    let n = NUMBERS[rng.below(NUMBERS.len())];
                    out = format!("{}{n}{}", &text[..start], &text[end..]).into_bytes();
                }
            }
            // swap two lines
            _ => {
                let mut lines: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
                let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                lines.swap(a, b);
                out = lines.join(&b'\n');
            }
        }
    }
    out
}

fn quoted_spans(text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        if c == '"' {
            match start.take() {
                Some(s) => spans.push((s, i + 1)),
                None => start = Some(i),
            }
        } else if c == '\n' {
            start = None;
        }
    }
    spans
}

#[test]
fn mutated_model_files_never_panic_and_every_error_has_a_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut rng = Rng::new(0x6d6463);
    let (mut clean, mut failed) = (0, 0);
    for case in 0..4000 {
        let file = MODELS[case % MODELS.len()];
        let src = std::fs::read(root.join(file)).unwrap();
        let bytes = mutate(&mut rng, &src);
        let result = catch_unwind(AssertUnwindSafe(|| {
            let r = model::from_bytes(Path::new(file), &bytes);
            // Rendering must not panic either.
            let text = match &r {
                Err(e) => e.to_string(),
                Ok(m) => m.warnings_report().render(),
            };
            (r, text)
        }));
        let (result, text) = match result {
            Ok(r) => r,
            Err(_) => panic!(
                "case {case}: checking a mutation of {file} panicked; input:\n{}",
                String::from_utf8_lossy(&bytes)
            ),
        };
        match result {
            Ok(m) => {
                clean += 1;
                assert_eq!(m.graph.output_shape(), m.graph.input_shape(), "case {case}");
            }
            Err(ModelError::Invalid { report }) => {
                failed += 1;
                assert!(report.has_errors(), "case {case}: invalid without errors");
                let lines = report.source.lines().count().max(1);
                for d in report.located() {
                    assert!(
                        d.line >= 1 && d.line <= lines + 1,
                        "case {case}: line {} of {lines}:\n{text}",
                        d.line
                    );
                }
                let shown = text.lines().filter(|l| l.trim_start().starts_with("--> ")).count();
                assert_eq!(
                    shown,
                    report.diagnostics.len(),
                    "case {case}: every diagnostic shows a location:\n{text}"
                );
            }
            Err(e @ ModelError::Io { .. }) => panic!("case {case}: unexpected I/O error {e}"),
        }
    }
    // The mutations must exercise both outcomes, or the test proves little.
    assert!(clean > 100 && failed > 1000, "clean {clean}, failed {failed}");
}
