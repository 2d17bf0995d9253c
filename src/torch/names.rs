//! Names in the emitted Python: the class, one local variable per value, the model file's line
//! of each block, and the attribute names PyTorch keeps for itself.

use std::collections::{HashMap, HashSet};

use crate::graph::{Graph, Op};
use crate::model::Model;

/// The model file's line of each block, for the comment above its layers and its forward lines.
pub struct BlockLines {
    file: String,
    lines: HashMap<String, (usize, String)>,
}

impl BlockLines {
    pub fn of(model: &Model) -> BlockLines {
        let src = &model.source;
        let line_at = |offset: usize| {
            let start = src[..offset].rfind('\n').map_or(0, |i| i + 1);
            let end = src[offset..].find('\n').map_or(src.len(), |i| offset + i);
            (src[..offset].matches('\n').count() + 1, src[start..end].trim().to_string())
        };
        let mut lines = HashMap::new();
        if let (Some(file), _) = crate::dsl::parse(src) {
            for b in &file.blocks {
                lines.insert(b.name.clone(), line_at(b.name_span.start));
            }
            if let Some(t) = &file.time {
                let text = format!("[time] dim = {}, hidden = {}", t.dim.value, t.hidden.value);
                lines.insert("time".to_string(), (line_at(t.span.start).0, text));
            }
        }
        let file = model.path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        BlockLines { file, lines }
    }

    /// `enc1 = { op = "resblock", ... }  (unet.toml:25)`, or the block's name alone.
    pub fn comment(&self, block: &str) -> String {
        match self.lines.get(block) {
            Some((line, text)) => format!("{text}  ({}:{line})", self.file),
            None => block.to_string(),
        }
    }
}

/// `text` as a Python string literal (a JSON string is one).
pub fn py(text: &str) -> String {
    serde_json::to_string(text).expect("strings serialise")
}

/// The class name: `[model] name` (else the file's stem) in CamelCase, `mini-unet` -> `MiniUnet`.
pub fn class_name(model: &Model) -> String {
    let stem = model.path.file_stem().map(|s| s.to_string_lossy().into_owned());
    let base = model.name.clone().or(stem).unwrap_or_default();
    let camel: String = base
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w[..1].to_uppercase() + &w[1..])
        .collect();
    match camel.chars().next() {
        Some(c) if c.is_ascii_alphabetic() && reserved(&camel).is_none() && camel != "Model" => camel,
        _ => format!("Net{camel}"),
    }
}

/// One local variable per node: `x`, `t`, `y` for the inputs, a block's name for the value it
/// hands on (its last node), `<block>_<step>` for the steps inside it; never a Python keyword
/// or a name the file itself uses.
pub fn value_names(graph: &Graph) -> Vec<String> {
    let mut used: HashSet<String> =
        ["self", "torch", "nn", "F", "math", "timestep_embedding", "attention"].map(String::from).into();
    let mut names = Vec::with_capacity(graph.nodes.len());
    for (id, node) in graph.nodes.iter().enumerate() {
        let fixed = match node.op {
            Op::Input(_) => Some("x"),
            Op::Timestep(_) => Some("t"),
            Op::Label(_) => Some("y"),
            _ => None,
        };
        let name = match fixed {
            Some(f) => f.to_string(),
            None => {
                let last_of_block = graph.nodes.get(id + 1).is_none_or(|next| next.block != node.block);
                let base = if last_of_block { node.block.clone() } else { node.name.replace('.', "_") };
                let mut name = base;
                while used.contains(&name)
                    || KEYWORDS.contains(&name.as_str())
                    || name == "x"
                    || name == "t"
                    || name == "y"
                {
                    name.push('_');
                }
                name
            }
        };
        used.insert(name.clone());
        names.push(name);
    }
    names
}

const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue", "def",
    "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import", "in", "is",
    "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while", "with", "yield",
];

/// `nn.Module`'s own attributes (PyTorch 2.x) and the emitted class's: a layer of that name
/// would clash with them.
const MODULE_ATTRIBUTES: &[&str] = &[
    "T_destination",
    "add_module",
    "apply",
    "bfloat16",
    "buffers",
    "call_super_init",
    "children",
    "compile",
    "cpu",
    "cuda",
    "double",
    "dump_patches",
    "eval",
    "extra_repr",
    "float",
    "forward",
    "get_buffer",
    "get_extra_state",
    "get_parameter",
    "get_submodule",
    "half",
    "ipu",
    "load_state_dict",
    "modules",
    "mtia",
    "named_buffers",
    "named_children",
    "named_modules",
    "named_parameters",
    "parameters",
    "register_backward_hook",
    "register_buffer",
    "register_forward_hook",
    "register_forward_pre_hook",
    "register_full_backward_hook",
    "register_full_backward_pre_hook",
    "register_load_state_dict_post_hook",
    "register_load_state_dict_pre_hook",
    "register_module",
    "register_parameter",
    "register_state_dict_post_hook",
    "register_state_dict_pre_hook",
    "requires_grad_",
    "reset_parameters",
    "set_extra_state",
    "set_submodule",
    "share_memory",
    "state_dict",
    "to",
    "to_empty",
    "train",
    "training",
    "type",
    "xpu",
    "zero_grad",
];

/// Why `name` cannot be an attribute of a module, or None when it can.
pub fn reserved(name: &str) -> Option<&'static str> {
    if KEYWORDS.contains(&name) {
        Some("a Python keyword")
    } else if MODULE_ATTRIBUTES.contains(&name) {
        Some("an attribute every torch.nn.Module has")
    } else {
        None
    }
}
