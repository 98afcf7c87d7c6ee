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

/// The offset arithmetic of a page read from a result made of parts queried one after
/// another (e.g. runs with a value, then NaN, then missing, for an order_by one metric).
/// Ask [`PartWindow::next`] for each part's LIMIT/OFFSET, report what it returned, and
/// stop when it answers `None`.
#[derive(Debug, Clone, Copy)]
pub struct PartWindow {
    /// Rows still wanted (the page plus one to detect a next page).
    want: u64,
    /// Rows still to skip before the page starts.
    skip: u64,
}

impl PartWindow {
    /// A window for `max_results` rows (plus one) from `offset`.
    pub fn new(offset: u64, max_results: u64) -> Self {
        Self {
            want: max_results.saturating_add(1),
            skip: offset,
        }
    }

    /// LIMIT and OFFSET for the next part, or `None` once the page is full.
    pub fn next(&self) -> Option<(i64, i64)> {
        (self.want > 0).then(|| {
            (
                i64::try_from(self.want).unwrap_or(i64::MAX),
                i64::try_from(self.skip).unwrap_or(i64::MAX),
            )
        })
    }

    /// Records how many rows the part returned. `true` means it returned none while rows
    /// were still to be skipped: the caller must count the part and call
    /// [`PartWindow::skip_part`], because the page starts beyond it.
    pub fn took(&mut self, rows: usize) -> bool {
        if rows == 0 {
            return self.skip > 0;
        }
        self.want = self.want.saturating_sub(rows as u64);
        self.skip = 0;
        false
    }

    /// Skips a whole part of `len` rows.
    pub fn skip_part(&mut self, len: u64) {
        self.skip = self.skip.saturating_sub(len);
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

    /// Reads a page of `max` from `offset` out of parts of the given lengths, the way a
    /// store drives the window, and returns (part, index in part) of each row read.
    fn read(offset: u64, max: u64, parts: &[u64]) -> Vec<(usize, u64)> {
        let mut w = PartWindow::new(offset, max);
        let mut rows = Vec::new();
        for (i, &len) in parts.iter().enumerate() {
            let Some((limit, off)) = w.next() else { break };
            let (limit, off) = (limit as u64, off as u64);
            let got: Vec<(usize, u64)> = (off..len).take(limit as usize).map(|j| (i, j)).collect();
            if w.took(got.len()) {
                w.skip_part(len);
            }
            rows.extend(got);
        }
        rows
    }

    #[test]
    fn part_window_matches_one_concatenated_result() {
        let parts = [4, 0, 3, 5];
        let all: Vec<(usize, u64)> = parts
            .iter()
            .enumerate()
            .flat_map(|(i, &len)| (0..len).map(move |j| (i, j)))
            .collect();
        for offset in 0..14 {
            for max in 1..6 {
                let want: Vec<_> = all.iter().copied().skip(offset).take(max + 1).collect();
                assert_eq!(
                    read(offset as u64, max as u64, &parts),
                    want,
                    "offset {offset} max {max}"
                );
            }
        }
    }
}
