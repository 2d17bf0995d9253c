//! Did-you-mean: the name a misspelt one most likely meant (block fields, ops, sections,
//! `[vars]` names, `[train]` settings).

/// The closest candidate to `word`, if it is close enough to be a likely typo: at most a third
/// of the word's length in edits (optimal string alignment, so a swapped pair is one edit), and
/// never `word` itself.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1) + 1;
    candidates
        .into_iter()
        .filter(|&c| c != word)
        .map(|c| (strsim::osa_distance(word, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// `did you mean `x`?` as a help line, or None.
pub fn suggestion<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    did_you_mean(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("kernal", ["kernel", "stride", "padding"]), Some("kernel"));
        assert_eq!(did_you_mean("resblok", ["resblock", "conv"]), Some("resblock"));
        assert_eq!(did_you_mean("chanenls", ["channels", "groups"]), Some("channels"));
        assert_eq!(did_you_mean("zzzzzz", ["kernel", "stride"]), None);
        assert_eq!(did_you_mean("init", ["init", "x"]), None, "never the word itself");
        assert_eq!(suggestion("kernal", ["kernel"]).as_deref(), Some("did you mean `kernel`?"));
    }
}
