//! Keeps ARCHITECTURE.md true about the tables: every column of the raw table and of
//! the cold path's tables is documented there.

#[test]
fn architecture_documents_every_raw_column() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let missing: Vec<&str> = kvlake_schemas::raw::COLUMNS
        .iter()
        .map(|c| c.name)
        .filter(|name| !doc.contains(&format!("| `{name}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "columns missing from ARCHITECTURE.md: {missing:?}"
    );
}

#[test]
fn architecture_documents_every_cold_path_column() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let doc = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let missing: Vec<String> = kvlake_coldpath::TABLES
        .iter()
        .flat_map(|t| {
            t.columns
                .iter()
                .map(move |c| format!("{}.{}", t.name, c.name))
        })
        .filter(|name| !doc.contains(&format!("| `{name}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "cold-path columns missing from ARCHITECTURE.md: {missing:?}"
    );
}
