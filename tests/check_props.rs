//! Generated U-Nets (depth, widths, groups, input sizes, optional attention) written as TOML
//! text all check clean, and their parameter counts equal a closed-form count written here
//! independently of the graph builder.

use std::fmt::Write as _;
use std::path::Path;

use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Spec {
    in_channels: usize,
    height: usize,
    width: usize,
    /// c[0] (init) .. c[depth] (deepest level).
    channels: Vec<usize>,
    groups: usize,
    time_dim: usize,
    time_hidden: usize,
    /// Attention heads at the lowest resolution (after the last encoder block and in the middle).
    heads: Option<usize>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (1usize..=4, prop::sample::select(vec![1usize, 2, 4, 8]))
        .prop_flat_map(|(depth, groups)| {
            (
                Just(depth),
                Just(groups),
                1usize..=4,
                1usize..=4,
                1usize..=4,
                prop::collection::vec(1usize..=6, depth + 1),
                (1usize..=16).prop_map(|d| 2 * d),
                1usize..=48,
                any::<bool>(),
            )
        })
        .prop_map(|(depth, groups, in_channels, kh, kw, mults, time_dim, time_hidden, attention)| {
            let factor = 1 << (depth - 1);
            Spec {
                in_channels,
                height: factor * kh,
                width: factor * kw,
                channels: mults.iter().map(|m| m * groups).collect(),
                groups,
                time_dim,
                time_hidden,
                heads: attention.then_some(groups),
            }
        })
}

/// The model file for `s`, written as a person would.
fn to_toml(s: &Spec) -> String {
    let depth = s.channels.len() - 1;
    let mut t = String::new();
    let list: Vec<String> = s.channels.iter().map(|c| c.to_string()).collect();
    let _ = writeln!(t, "[model]\noutput = \"out\"\n");
    let _ = writeln!(t, "[vars]\nchannels = [{}]\ngroups = {}\n", list.join(", "), s.groups);
    let _ =
        writeln!(t, "[input]\nchannels = {}\nheight = {}\nwidth = {}\n", s.in_channels, s.height, s.width);
    let _ = writeln!(t, "[time]\ndim = {}\nhidden = {}\n", s.time_dim, s.time_hidden);
    t.push_str("[blocks]\n");
    let _ = writeln!(
        t,
        "init = {{ op = \"conv\", in = \"x\", channels = \"channels[0]\", kernel = 3, padding = 1 }}"
    );
    let mut prev = "init".to_string();
    for i in 1..=depth {
        let _ =
            writeln!(t, "enc{i} = {{ op = \"resblock\", in = \"{prev}\", channels = \"channels[{i}]\" }}");
        prev = format!("enc{i}");
        if i < depth {
            let _ = writeln!(t, "down{i} = {{ op = \"downsample\", in = \"{prev}\" }}");
            prev = format!("down{i}");
        }
    }
    let mut skip_deepest = format!("enc{depth}");
    if let Some(h) = s.heads {
        let _ = writeln!(t, "attn = {{ op = \"attention\", in = \"{prev}\", heads = {h} }}");
        prev = "attn".into();
        skip_deepest = "attn".into();
    }
    let _ = writeln!(t, "mid1 = {{ op = \"resblock\", in = \"{prev}\", channels = \"channels[{depth}]\" }}");
    prev = "mid1".into();
    if let Some(h) = s.heads {
        let _ = writeln!(t, "mid_attn = {{ op = \"attention\", in = \"mid1\", heads = {h} }}");
        prev = "mid_attn".into();
    }
    let _ = writeln!(t, "mid2 = {{ op = \"resblock\", in = \"{prev}\", channels = \"channels[{depth}]\" }}");
    prev = "mid2".into();
    for i in (1..=depth).rev() {
        let skip = if i == depth { skip_deepest.clone() } else { format!("enc{i}") };
        let _ = writeln!(t, "cat{i} = {{ op = \"concat\", in = [\"{prev}\", \"{skip}\"] }}");
        let _ = writeln!(
            t,
            "dec{i} = {{ op = \"resblock\", in = \"cat{i}\", channels = \"channels[{}]\" }}",
            i - 1
        );
        prev = format!("dec{i}");
        if i > 1 {
            let _ = writeln!(t, "up{i} = {{ op = \"upsample\", in = \"{prev}\" }}");
            prev = format!("up{i}");
        }
    }
    let _ = writeln!(t, "out_norm = {{ op = \"group_norm\", in = \"{prev}\" }}");
    let _ = writeln!(t, "out_silu = {{ op = \"silu\", in = \"out_norm\" }}");
    let _ = writeln!(t, "out = {{ op = \"conv\", in = \"out_silu\", channels = \"input.channels\", kernel = 3, padding = 1 }}");
    t
}

// PyTorch's parameter counts: Conv2d and Linear with bias, GroupNorm affine.
fn conv(i: usize, o: usize, k: usize) -> usize {
    o * i * k * k + o
}
fn linear(i: usize, o: usize) -> usize {
    i * o + o
}
fn group_norm(c: usize) -> usize {
    2 * c
}
fn resblock(i: usize, o: usize, t: usize) -> usize {
    let skip = if i == o { 0 } else { conv(i, o, 1) };
    conv(i, o, 3) + group_norm(o) + linear(t, o) + conv(o, o, 3) + group_norm(o) + skip
}
fn attention(c: usize) -> usize {
    group_norm(c) + conv(c, 3 * c, 1) + conv(c, c, 1)
}

fn closed_form_params(s: &Spec) -> usize {
    let c = &s.channels;
    let depth = c.len() - 1;
    let t = s.time_hidden;
    let mut n = linear(s.time_dim, t) + linear(t, t) + conv(s.in_channels, c[0], 3);
    n += (1..=depth).map(|i| resblock(c[i - 1], c[i], t)).sum::<usize>();
    n += (1..depth).map(|i| conv(c[i], c[i], 3)).sum::<usize>();
    n += 2 * resblock(c[depth], c[depth], t);
    if s.heads.is_some() {
        n += 2 * attention(c[depth]);
    }
    let mut prev = c[depth];
    for i in (1..=depth).rev() {
        n += resblock(prev + c[i], c[i - 1], t);
        if i > 1 {
            n += conv(c[i - 1], c[i - 1], 3);
        }
        prev = c[i - 1];
    }
    n + group_norm(c[0]) + conv(c[0], s.in_channels, 3)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn generated_unets_check_clean_with_closed_form_param_counts(s in spec()) {
        let text = to_toml(&s);
        let m = match mdc::model::from_bytes(Path::new("generated.toml"), text.as_bytes()) {
            Ok(m) => m,
            Err(e) => panic!("generated model failed to check:\n{text}\n{e}"),
        };
        prop_assert!(m.warnings.is_empty(), "{}", m.warnings_report().render());
        prop_assert_eq!(m.graph.param_count(), closed_form_params(&s), "{}", text);
        prop_assert_eq!(m.graph.output_shape(), m.graph.input_shape());
        let table_params: usize = m.table.iter().map(|r| r.params).sum();
        prop_assert_eq!(table_params, m.graph.param_count());
    }
}

#[test]
fn closed_form_agrees_with_the_published_counts() {
    let grey = Spec {
        in_channels: 1,
        height: 28,
        width: 28,
        channels: vec![32, 64, 128, 128],
        groups: 8,
        time_dim: 32,
        time_hidden: 128,
        heads: None,
    };
    assert_eq!(closed_form_params(&grey), 2_396_321);
    assert_eq!(closed_form_params(&Spec { in_channels: 3, height: 32, width: 32, ..grey }), 2_397_475);
}
