//! MLflow search filters and order_by clauses arrive from users typing into a search box
//! (and from anyone who can reach the API). Whatever the bytes, the parser must answer
//! with a tree or an error: no panic, no unbounded recursion, the same answer twice.

#![no_main]

use cairn_core::search::{parse_filter, parse_order_by, SearchKind};
use libfuzzer_sys::fuzz_target;

const KINDS: [SearchKind; 5] = [
    SearchKind::Runs,
    SearchKind::Experiments,
    SearchKind::LoggedModels,
    SearchKind::RegisteredModels,
    SearchKind::ModelVersions,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let kind = KINDS[usize::from(selector) % KINDS.len()];
    let first = parse_filter(kind, text);
    let again = parse_filter(kind, text);
    assert_eq!(format!("{first:?}"), format!("{again:?}"), "parse is not deterministic");
    if let Err(e) = &first {
        // Errors echo a bounded part of the input, never all of a huge filter.
        assert!(e.to_string().len() < 2_000, "error message too long: {}", e.to_string().len());
    }
    let clauses: Vec<String> = text.split('\n').map(str::to_string).collect();
    let _ = parse_order_by(kind, &clauses);
});
