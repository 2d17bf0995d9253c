//! The guide's generated tables: the block ops in docs/model-file.md (from `dsl::schema::OPS`) and
//! the `[train]` settings in docs/train.md (from `train::SETTINGS`). This keeps them in step with
//! the schemas; `MDC_UPDATE_DOCS=1 cargo test --test tests docs_tables` rewrites them in place.

use std::path::Path;

/// Replaces the text between `<!-- begin NAME -->` and `<!-- end NAME -->` in `page` by `table`.
fn with_table(page: &str, file: &str, name: &str, table: &str) -> String {
    let (begin, end) = (format!("<!-- begin {name} -->\n"), format!("<!-- end {name} -->"));
    let start = page.find(&begin).unwrap_or_else(|| panic!("{file} lacks {begin:?}")) + begin.len();
    let stop = start + page[start..].find(&end).unwrap_or_else(|| panic!("{file} lacks {end:?}"));
    let mut updated = page.to_string();
    updated.replace_range(start..stop, table);
    updated
}

#[test]
fn docs_tables_come_from_the_schemas() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let update = std::env::var_os("MDC_UPDATE_DOCS").is_some();
    for (file, name, table) in [
        ("docs/model-file.md", "block-ops", mdc::dsl::schema::ops_markdown()),
        ("docs/train.md", "train-settings", mdc::recipe::settings_markdown()),
    ] {
        let path = root.join(file);
        let page = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        let updated = with_table(&page, file, name, &table);
        if update {
            std::fs::write(&path, &updated).unwrap();
        } else {
            assert!(
                page == updated,
                "{file}'s generated table `{name}` is stale; run `MDC_UPDATE_DOCS=1 cargo test --test tests docs_tables`"
            );
        }
    }
}
