//! The per-block summary `mdc check` prints: output shape, parameters, FLOPs and activation
//! memory of each user block (the sums over the primitive nodes it expanded into).

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::graph::Graph;

/// One user block (or `x`, `t`, `time`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockRow {
    pub block: String,
    /// The op kind as written in the file (`resblock`), or `input` / `timestep` / `time_mlp`.
    pub op: String,
    /// Output shape per image, batch left out: [C, H, W].
    pub shape: Vec<usize>,
    pub params: usize,
    /// Forward FLOPs per image (a multiply-add counts 2).
    pub flops: u64,
    /// Bytes of every activation the block computes (all its nodes' outputs, f32), per image.
    pub activation_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Totals {
    pub params: usize,
    pub flops: u64,
    pub activation_bytes: u64,
}

/// Groups the graph's nodes by block, in the order blocks first appear.
pub fn block_table(graph: &Graph, kinds: &HashMap<String, &'static str>) -> Vec<BlockRow> {
    let mut rows: Vec<BlockRow> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for node in &graph.nodes {
        let i = *index.entry(node.block.as_str()).or_insert_with(|| {
            rows.push(BlockRow {
                block: node.block.clone(),
                op: kinds.get(&node.block).copied().unwrap_or(node.op.kind()).to_string(),
                shape: Vec::new(),
                params: 0,
                flops: 0,
                activation_bytes: 0,
            });
            rows.len() - 1
        });
        let row = &mut rows[i];
        // A block's nodes are added in order and its last node is its output.
        row.shape = node.shape.0.clone();
        row.params += node.op.param_count();
        row.flops += graph.node_flops(node);
        row.activation_bytes += 4 * node.shape.numel() as u64;
    }
    rows
}

pub fn totals(rows: &[BlockRow]) -> Totals {
    Totals {
        params: rows.iter().map(|r| r.params).sum(),
        flops: rows.iter().map(|r| r.flops).sum(),
        activation_bytes: rows.iter().map(|r| r.activation_bytes).sum(),
    }
}

/// `[N, 64, 28, 28]`
pub fn shape_text(shape: &[usize]) -> String {
    let mut s = String::from("[N");
    for d in shape {
        let _ = write!(s, ", {d}");
    }
    s.push(']');
    s
}

/// The table as text, with a totals line and a footnote on what is counted.
pub fn render(rows: &[BlockRow]) -> String {
    let headers = ["block", "op", "output", "params", "FLOPs", "activations"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.block.clone(),
                r.op.clone(),
                shape_text(&r.shape),
                group_digits(r.params as u64),
                si(r.flops as f64),
                bytes(r.activation_bytes),
            ]
        })
        .collect();
    let t = totals(rows);
    let total = [
        "total".to_string(),
        String::new(),
        String::new(),
        group_digits(t.params as u64),
        si(t.flops as f64),
        bytes(t.activation_bytes),
    ];
    let mut width = headers.map(str::len);
    for row in cells.iter().chain(std::iter::once(&total)) {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cols: [&str; 6]| -> String {
        let mut s = String::new();
        for (i, (c, w)) in cols.iter().zip(width).enumerate() {
            if i < 3 {
                let _ = write!(s, "{c:<w$}  ");
            } else {
                let _ = write!(s, "{c:>w$}  ");
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers);
    let rule: usize = width.iter().sum::<usize>() + 2 * (width.len() - 1);
    out.push_str(&"-".repeat(rule));
    out.push('\n');
    for row in &cells {
        out.push_str(&line(row.each_ref().map(String::as_str)));
    }
    out.push_str(&"-".repeat(rule));
    out.push('\n');
    out.push_str(&line(total.each_ref().map(String::as_str)));
    out.push_str(
        "FLOPs: forward, per image, a multiply-add counts 2. activations: f32 bytes of every value the\n\
         block computes (the sum of its primitive nodes' outputs), per image.\n",
    );
    out
}

/// 2396321 -> "2,396,321"
pub fn group_digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// 1234567 -> "1.23 M"
fn si(x: f64) -> String {
    scaled(x, 1000.0, &["", "k", "M", "G", "T", "P"], 2)
}

/// 3136 -> "3.1 KiB"
fn bytes(n: u64) -> String {
    scaled(n as f64, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB"], 1)
}

/// `x` in the largest unit (each `base` times the previous) that keeps it >= 1; whole numbers
/// in the first unit.
fn scaled(mut x: f64, base: f64, units: &[&str], decimals: usize) -> String {
    let mut u = 0;
    while x >= base && u + 1 < units.len() {
        x /= base;
        u += 1;
    }
    let unit = units[u];
    let sep = if unit.is_empty() { "" } else { " " };
    if u == 0 {
        format!("{x:.0}{sep}{unit}")
    } else {
        format!("{x:.decimals$} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        assert_eq!(group_digits(2_396_321), "2,396,321");
        assert_eq!(group_digits(999), "999");
        assert_eq!(si(1_234_567.0), "1.23 M");
        assert_eq!(bytes(3136), "3.1 KiB");
    }
}
