//! Opaque page tokens shared by every paginated search.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::{CoreError, CoreResult};

/// One page of results plus the token for the next page, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items on this page.
    pub items: Vec<T>,
    /// Token for the next page; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// Encodes an offset as an opaque token. The "cairn1:" prefix lets us change the
/// scheme later (e.g. to keyset tokens) while still rejecting foreign tokens.
pub fn encode_offset(offset: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("cairn1:{offset}"))
}

/// Decodes a token produced by [`encode_offset`]; empty means the first page.
pub fn decode_offset(token: Option<&str>) -> CoreResult<u64> {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(0);
    };
    let bad = || CoreError::invalid(format!("Invalid page token '{token}'"));
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    // Offsets beyond i64 range could overflow when advanced or handed to SQL.
    text.strip_prefix("cairn1:")
        .and_then(|n| n.parse::<u64>().ok())
        .filter(|n| *n <= i64::MAX as u64 / 2)
        .ok_or_else(bad)
}

/// Builds a page from `limit + 1` fetched rows: the extra row only proves there is more.
pub fn page_from_overfetch<T>(mut rows: Vec<T>, offset: u64, limit: u64) -> Page<T> {
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    Page {
        next_page_token: more.then(|| encode_offset(offset.saturating_add(limit))),
        items: rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        assert_eq!(decode_offset(Some(&encode_offset(1234))).ok(), Some(1234));
        assert_eq!(decode_offset(None).ok(), Some(0));
        assert_eq!(decode_offset(Some("")).ok(), Some(0));
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode_offset(Some("not a token!")).is_err());
        let foreign = URL_SAFE_NO_PAD.encode("{\"offset\": 3}");
        assert!(decode_offset(Some(&foreign)).is_err());
        let huge = URL_SAFE_NO_PAD.encode(format!("cairn1:{}", u64::MAX));
        assert!(decode_offset(Some(&huge)).is_err());
    }

    #[test]
    fn overfetch_sets_token_only_when_more() {
        let p = page_from_overfetch(vec![1, 2, 3], 0, 2);
        assert_eq!(p.items, vec![1, 2]);
        assert!(p.next_page_token.is_some());
        let p = page_from_overfetch(vec![1, 2], 0, 2);
        assert!(p.next_page_token.is_none());
    }
}
