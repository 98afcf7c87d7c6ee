//! Artifact paths arrive in URLs and JSON bodies and become file paths and object keys.
//! Whatever the bytes, a path that parses must stay inside the store: relative, no `.` or
//! `..` segment, no empty segment, no backslash or control character; and parsing what
//! it prints gives it back.

#![no_main]

use cairn_artifacts::ArtifactPath;
use libfuzzer_sys::fuzz_target;

fn check(p: &ArtifactPath) {
    let s = p.as_str();
    assert!(!s.starts_with('/'), "absolute: {s:?}");
    assert!(!s.ends_with('/'), "trailing slash: {s:?}");
    assert!(!s.contains('\\') && !s.chars().any(char::is_control), "unsafe char: {s:?}");
    if !p.is_root() {
        for seg in s.split('/') {
            assert!(!seg.is_empty() && seg != "." && seg != "..", "bad segment in {s:?}");
        }
    }
    let again = ArtifactPath::parse_decoded(s).expect("a parsed path must parse again");
    assert_eq!(&again, p, "round trip changed {s:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for parsed in [ArtifactPath::parse(text), ArtifactPath::parse_decoded(text)] {
        if let Ok(p) = parsed {
            check(&p);
            // Joining two safe paths, and stripping a prefix, keep the invariants.
            if let Some((a, b)) = text.split_once('|') {
                if let (Ok(a), Ok(b)) = (ArtifactPath::parse_decoded(a), ArtifactPath::parse_decoded(b)) {
                    let joined = a.join(&b);
                    check(&joined);
                    let stripped = joined.strip_prefix(&a).expect("a join starts with its base");
                    check(&stripped);
                }
            }
        }
    }
});
