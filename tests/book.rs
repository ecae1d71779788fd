//! The book in `docs/` includes its code excerpts from the source with mdBook's
//! `{{#include path:anchor}}`. This test fails when an included file or anchor disappears, so the
//! book cannot silently lose an excerpt when the code moves (`mdbook build` in CI renders it;
//! this catches a broken include even where mdbook is not installed).

use std::fs;
use std::path::Path;

#[test]
fn every_include_resolves() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src");
    let mut includes = 0;
    let mut broken = Vec::new();
    for entry in fs::read_dir(&src).unwrap() {
        let chapter = entry.unwrap().path();
        if chapter.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let text = fs::read_to_string(&chapter).unwrap();
        for (at, _) in text.match_indices("{{#include ") {
            let rest = &text[at + "{{#include ".len()..];
            let spec = &rest[..rest.find("}}").expect("closed include")];
            let (file, anchor) = match spec.rsplit_once(':') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (spec, None),
            };
            includes += 1;
            let name = chapter.file_name().unwrap().to_string_lossy();
            let Ok(code) = fs::read_to_string(src.join(file)) else {
                broken.push(format!("{name}: no file {file}"));
                continue;
            };
            if let Some(anchor) = anchor {
                // As mdBook reads them: `// ANCHOR: name` in code, `<!-- ANCHOR: name -->` in
                // Markdown; the name ends at a word boundary.
                let marks = |tag: &str| {
                    let mark = format!("{tag}: {anchor}");
                    code.lines().position(|l| {
                        l.split_once(&mark).is_some_and(|(_, rest)| {
                            !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_')
                        })
                    })
                };
                let (start, end) = (marks("ANCHOR"), marks("ANCHOR_END"));
                match (start, end) {
                    (Some(start), Some(end)) if end > start + 1 => {}
                    _ => broken.push(format!("{name}: no anchor {anchor} in {file}")),
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    assert!(includes >= 15, "only {includes} includes");
}

#[test]
fn chapters_are_listed_and_images_exist() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/src");
    let summary = fs::read_to_string(src.join("SUMMARY.md")).unwrap();
    for (at, _) in summary.match_indices("](") {
        let rest = &summary[at + 2..];
        let file = &rest[..rest.find(')').unwrap()];
        let text = fs::read_to_string(src.join(file)).unwrap_or_else(|_| panic!("{file}"));
        for (at, _) in text.match_indices("](img/") {
            let rest = &text[at + 2..];
            let image = &rest[..rest.find(')').unwrap()];
            assert!(src.join(image).is_file(), "{file}: missing {image}");
        }
    }
}
