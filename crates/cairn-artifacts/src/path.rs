//! Artifact paths that are safe by construction.
//!
//! MLflow has shipped more than fifteen path-traversal CVEs, each a new spelling of "leave
//! the artifact root": `..`, absolute paths, percent- and double-encoded dots, `#`
//! fragments, backslashes, `file://` URIs. An [`ArtifactPath`] can only be built by
//! [`ArtifactPath::parse`], which decodes once and refuses every one of those spellings,
//! so code holding one never needs to re-check. Symlinks are the storage layer's concern
//! (`repo.rs`), since only the disk knows them.

use std::fmt;

use percent_encoding::percent_decode_str;

/// Longest accepted path, in bytes (PATH_MAX on Linux).
const MAX_PATH_BYTES: usize = 4096;
/// Longest accepted path segment, in bytes (NAME_MAX on Linux and S3-safe).
const MAX_SEGMENT_BYTES: usize = 255;

/// Why a path was refused. Every variant is answered 400 `INVALID_PARAMETER_VALUE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `..` or `.` segment, after decoding.
    #[error("Invalid path '{0}': '..' and '.' segments are not allowed")]
    Traversal(String),
    /// Starts with `/`, a drive letter or a URI scheme (`file:`).
    #[error("Invalid path '{0}': absolute paths and URIs are not allowed")]
    Absolute(String),
    /// A backslash, `#`, NUL or other control character.
    #[error("Invalid path '{0}': backslashes, '#' and control characters are not allowed")]
    IllegalCharacter(String),
    /// Still percent-encoded after one decoding.
    #[error("Invalid path '{0}': double-encoded characters are not allowed")]
    DoubleEncoded(String),
    /// Empty segment (`a//b`), invalid UTF-8 or over the length limits.
    #[error("Invalid path '{0}': {1}")]
    Malformed(String, &'static str),
}

/// A relative artifact path: `/`-separated, non-empty segments, none of them `.`/`..`, no
/// backslash, `#` or control characters, not absolute. The empty path is the root.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ArtifactPath(String);

impl ArtifactPath {
    /// The root of the artifact store.
    pub fn root() -> Self {
        Self(String::new())
    }

    /// Parses a path as it arrives in a URL: percent-decoded exactly once, then checked.
    /// One trailing `/` is ignored (`dir/` names `dir`).
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        let shown = printable(raw);
        let decoded = percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| PathError::Malformed(shown.clone(), "not valid UTF-8"))?;
        if has_percent_escape(&decoded) {
            return Err(PathError::DoubleEncoded(shown));
        }
        Self::check(&decoded, shown)
    }

    /// Checks a path that is already decoded (e.g. from a JSON body or a stored URI).
    pub fn parse_decoded(path: &str) -> Result<Self, PathError> {
        Self::check(path, printable(path))
    }

    /// The checks on a decoded `path`; errors name it as `shown` (as the client sent it).
    fn check(path: &str, shown: String) -> Result<Self, PathError> {
        if path.len() > MAX_PATH_BYTES {
            return Err(PathError::Malformed(shown, "path too long"));
        }
        if path
            .chars()
            .any(|c| c == '\\' || c == '#' || c.is_control())
        {
            return Err(PathError::IllegalCharacter(shown));
        }
        if path.starts_with('/') || looks_like_scheme_or_drive(path) {
            return Err(PathError::Absolute(shown));
        }
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        if trimmed.is_empty() {
            return Ok(Self::root());
        }
        for segment in trimmed.split('/') {
            match segment {
                "" => return Err(PathError::Malformed(shown, "empty path segment")),
                "." | ".." => return Err(PathError::Traversal(shown)),
                s if s.len() > MAX_SEGMENT_BYTES => {
                    return Err(PathError::Malformed(shown, "path segment too long"))
                }
                _ => {}
            }
        }
        Ok(Self(trimmed.to_string()))
    }

    /// The path as text (`""` for the root).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// `self/child`, where `child` is another safe path.
    pub fn join(&self, child: &ArtifactPath) -> ArtifactPath {
        match (self.is_root(), child.is_root()) {
            (true, _) => child.clone(),
            (_, true) => self.clone(),
            _ => Self(format!("{}/{}", self.0, child.0)),
        }
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }

    /// The last segment (`""` for the root).
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }

    /// `self` relative to `base`, if `self` is `base` or under it.
    pub fn strip_prefix(&self, base: &ArtifactPath) -> Option<ArtifactPath> {
        if base.is_root() {
            return Some(self.clone());
        }
        if self.0 == base.0 {
            return Some(Self::root());
        }
        self.0
            .strip_prefix(&base.0)
            .and_then(|rest| rest.strip_prefix('/'))
            .map(|rest| Self(rest.to_string()))
    }
}

impl fmt::Display for ArtifactPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `s` still holds a `%XX` escape: decoding once more would change it.
fn has_percent_escape(s: &str) -> bool {
    s.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

/// `C:`, `C:/x`, `file:/x`, `s3://b`: a first segment ending in ':' names a drive or a
/// URI scheme, never a relative file.
fn looks_like_scheme_or_drive(path: &str) -> bool {
    let first = path.split('/').next().unwrap_or("");
    first.ends_with(':')
}

/// The path for an error message: control characters escaped, length capped.
fn printable(raw: &str) -> String {
    let mut out: String = raw
        .chars()
        .take(300)
        .flat_map(char::escape_default)
        .collect();
    if raw.chars().count() > 300 {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_kept() {
        for p in [
            "1/abc/artifacts/model/MLmodel",
            "a b/ünïcode ✓.txt",
            "100%.txt",
            "dir/",
            "x..y/..z/.hidden",
        ] {
            let parsed = ArtifactPath::parse(p).unwrap();
            assert_eq!(parsed.as_str(), p.strip_suffix('/').unwrap_or(p));
        }
        assert_eq!(
            ArtifactPath::parse("a%20b/c%2Bd").unwrap().as_str(),
            "a b/c+d"
        );
        assert!(ArtifactPath::parse("").unwrap().is_root());
    }

    #[test]
    fn every_traversal_spelling_is_refused() {
        let cases = [
            ("..", "Traversal"),
            ("../etc/passwd", "Traversal"),
            ("a/../../b", "Traversal"),
            ("a/./b", "Traversal"),
            ("%2e%2e/secret", "Traversal"),
            ("%2E%2E%2Fsecret", "Traversal"),
            ("a/%2e%2e", "Traversal"),
            ("%252e%252e/secret", "DoubleEncoded"),
            ("a%252Fb", "DoubleEncoded"),
            ("/etc/passwd", "Absolute"),
            ("%2Fetc%2Fpasswd", "Absolute"),
            ("file:///etc/passwd", "Absolute"),
            ("file:/etc/passwd", "Absolute"),
            ("C:/Windows/win.ini", "Absolute"),
            ("s3://bucket/key", "Absolute"),
            ("a\\..\\b", "IllegalCharacter"),
            ("..%5c..%5cwin.ini", "IllegalCharacter"),
            ("a#/../b", "IllegalCharacter"),
            ("a%23b", "IllegalCharacter"),
            ("a%00b", "IllegalCharacter"),
            ("a\nb", "IllegalCharacter"),
            ("a//b", "Malformed"),
            ("%ff%fe", "Malformed"),
        ];
        for (raw, kind) in cases {
            let err = ArtifactPath::parse(raw).unwrap_err();
            let got = format!("{err:?}");
            assert!(got.starts_with(kind), "{raw:?}: expected {kind}, got {got}");
        }
        let long = "a".repeat(256);
        assert!(ArtifactPath::parse(&long).is_err());
    }

    #[test]
    fn join_and_strip_prefix_round_trip() {
        let base = ArtifactPath::parse("1/r/artifacts").unwrap();
        let child = ArtifactPath::parse("model/MLmodel").unwrap();
        let full = base.join(&child);
        assert_eq!(full.as_str(), "1/r/artifacts/model/MLmodel");
        assert_eq!(full.strip_prefix(&base), Some(child));
        assert_eq!(full.file_name(), "MLmodel");
        let sibling = ArtifactPath::parse("1/r/artifactsX/f").unwrap();
        assert_eq!(sibling.strip_prefix(&base), None);
        assert_eq!(base.join(&ArtifactPath::root()), base);
    }
}
