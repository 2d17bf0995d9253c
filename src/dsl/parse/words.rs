//! How messages write TOML values and lists of names: leaf helpers every part of the parser uses.

use toml::de::DeValue;

/// How a message names a TOML value: `the string "x"`, `the integer 3`, `a table`.
pub(super) fn describe(v: &DeValue<'_>) -> String {
    match v {
        DeValue::String(s) => format!("the string \"{s}\""),
        DeValue::Integer(i) => format!("the integer {}", i.as_str()),
        DeValue::Float(f) => format!("the float {}", f.as_str()),
        DeValue::Boolean(b) => format!("the boolean {b}"),
        other => format!("a {}", other.type_str()),
    }
}

/// `` `a`, `b` or `c` ``
pub(super) fn list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => format!("`{one}`"),
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(|i| format!("`{i}`")).collect();
            format!("{} or `{last}`", init.join(", "))
        }
    }
}
