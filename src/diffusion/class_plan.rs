//! Which classes a conditional sampling run draws, and how strongly it follows them: the policy
//! behind `mdc sample --class/--guidance`, independent of where the model comes from.

use super::{ClassGuidance, DEFAULT_GUIDANCE};

/// A `--class` or `--guidance` that does not fit the model: the message says what would.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ClassPlanError(pub String);

/// Which classes to draw and at what guidance, for a model with `classes` (None: unconditional)
/// whose classes are called `names` (may be empty); `model` names it in messages. Returns the
/// guidance and the grid's columns (one row per class when several are drawn; 0: a near-square
/// grid).
pub fn class_plan(
    class: Option<&str>,
    guidance: Option<f32>,
    count: usize,
    classes: Option<usize>,
    names: &[String],
    model: &str,
) -> Result<(Option<ClassGuidance>, usize), ClassPlanError> {
    let Some(classes) = classes else {
        if let Some(c) = class {
            return Err(ClassPlanError(format!(
                "--class {c}: {model} is not class-conditional (its model file has no [condition]); sample it without --class"
            )));
        }
        if guidance.is_some() {
            return Err(ClassPlanError(format!(
                "--guidance: {model} is not class-conditional (its model file has no [condition]); guidance needs a model trained with labels"
            )));
        }
        return Ok((None, 0));
    };
    // Names that are just the numbers (MNIST's "0".."9") add nothing to a message.
    let numbered = names.iter().enumerate().all(|(k, n)| *n == k.to_string());
    let names: &[String] = if numbered { &[] } else { names };
    let name_of = |k: usize| names.get(k).cloned().unwrap_or_else(|| k.to_string());
    let wanted: Vec<u32> = match class.unwrap_or("all").trim() {
        "all" => (0..classes as u32).collect(),
        list => list
            .split(',')
            .map(|item| {
                let item = item.trim();
                let by_name = names.iter().position(|n| n == item);
                let by_number = item.parse::<usize>().ok().filter(|&k| k < classes);
                by_name.or(by_number).map(|k| k as u32).ok_or_else(|| {
                    let known = if names.is_empty() {
                        format!("0 to {}", classes - 1)
                    } else {
                        format!(
                            "0 to {} or one of {}",
                            classes - 1,
                            (0..classes).map(name_of).collect::<Vec<_>>().join(", ")
                        )
                    };
                    ClassPlanError(format!(
                        "--class {list}: `{item}` is not a class of {model}: expected {known}, or `all`"
                    ))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let scale = guidance.unwrap_or(DEFAULT_GUIDANCE);
    let null = classes as u32;
    if scale == 0.0 {
        // Unconditional: the labels are not read, so -n is exactly what is drawn.
        return Ok((Some(ClassGuidance { labels: vec![null; count], null, scale }), 0));
    }
    let per_class = count.div_ceil(wanted.len());
    let columns = if wanted.len() > 1 { per_class } else { 0 };
    Ok((Some(ClassGuidance::rows(&wanted, per_class, null, scale)), columns))
}

/// What a conditional run draws, in words: "class cat, dog, guidance 6".
pub fn describe_plan(g: &ClassGuidance, names: &[String]) -> String {
    if g.scale == 0.0 {
        return "unconditional (guidance 0)".to_string();
    }
    let mut classes: Vec<u32> = g.labels.clone();
    classes.dedup();
    let name = |k: u32| names.get(k as usize).cloned().unwrap_or_else(|| k.to_string());
    let shown: Vec<String> = classes.iter().take(12).map(|&k| name(k)).collect();
    let more = if classes.len() > 12 { ", ..." } else { "" };
    format!("class {}{more}, guidance {}", shown.join(", "), g.scale)
}

/// A classifier-free guidance scale S as a command line gives it: 0 (unconditional) to 100.
pub fn parse_guidance_scale(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && (0.0..=100.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("expected a scale from 0 to 100, found {v}")),
        Err(_) => Err(format!("expected a number (e.g. 3), found {s:?}")),
    }
}
