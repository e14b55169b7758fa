//! Bounded admin answers: one page builder for every list the admin API returns (the audit
//! trail, anomalies, an order's events).
//!
//! The lists grow without bound — every attempt at the gateway leaves an audit entry, and one
//! entry carries its request's sanitized parameters, up to about the body limit — so an answer
//! built from "everything that matches, up to `limit`" could be gigabytes, and the server would
//! hold it all at once. Every page is therefore bounded twice:
//!
//! - at most [`MAX_LIMIT`] entries (a larger `limit` is clamped, as `/admin/audit` always did);
//! - at most [`MAX_ANSWER_BYTES`] of JSON: entries are rendered one by one and the page stops
//!   before the one that would cross the budget (it always holds at least one, so a walker
//!   moves on even past an entry larger than the budget).
//!
//! The store is read in chunks of at most [`CHUNK`] rows, and once entries have been seen the
//! next chunk is sized to what the byte budget can still take, so memory stays near the
//! budget too. A page that stopped early — at its limit or at the budget — carries `next`, the
//! cursor of its last entry, for the caller to continue from; `next` is `null` only when the
//! store had nothing more (one row past the limit is read to know).

use std::future::Future;

use serde::Serialize;

/// Entries a page holds when the request names no `limit`.
pub const DEFAULT_LIMIT: usize = 100;

/// Entries a page holds at most, whatever `limit` asks.
pub const MAX_LIMIT: usize = 1000;

/// Bytes of JSON one admin answer carries at most (but for a single entry larger than that,
/// which is sent alone). Far above what an operator reads at once, far below what would
/// strain the server or its client.
pub const MAX_ANSWER_BYTES: usize = 8 << 20;

/// Rows read from the store at a time.
pub const CHUNK: usize = 100;

/// What a list answer spends outside its entries: the braces, the list's name and brackets,
/// and `"next"` with a 20-digit cursor.
const LIST_OVERHEAD: usize = 64;

/// The page size a request asks for: [`DEFAULT_LIMIT`] when it names none, otherwise clamped
/// to `1..=MAX_LIMIT`. A 0 becomes 1, so a walker following `next` always moves on.
pub fn limit(asked: Option<u32>) -> usize {
    asked.map_or(DEFAULT_LIMIT, |n| {
        usize::try_from(n).map_or(MAX_LIMIT, |n| n.clamp(1, MAX_LIMIT))
    })
}

/// The length of `value` as compact JSON, counted without building the text.
pub fn json_len(value: &impl Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serializing an admin answer fails only when the writer does, and this one never does
    // (they hold no map with non-string keys, the other way serde_json can fail).
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        Err(_) => usize::MAX,
    }
}

/// The bytes an answer may still spend on entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    left: usize,
}

impl Budget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        Self { left: bytes }
    }

    /// The budget of a list answer: [`MAX_ANSWER_BYTES`] less what surrounds its entries.
    pub fn for_list() -> Self {
        Self::new(MAX_ANSWER_BYTES - LIST_OVERHEAD)
    }

    /// What is left.
    pub fn left(&self) -> usize {
        self.left
    }

    /// Spends what `entry` takes in a JSON list (itself and a separating comma) and says
    /// whether it fits. The first entry of a list always fits, and then leaves nothing when
    /// it is larger than the budget.
    pub fn take(&mut self, entry: &impl Serialize, first: bool) -> bool {
        let cost = json_len(entry).saturating_add(1);
        if cost <= self.left {
            self.left -= cost;
            true
        } else if first {
            self.left = 0;
            true
        } else {
            false
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<E> {
    /// The entries, rendered, in the store's order.
    pub entries: Vec<E>,
    /// The cursor of the last entry when more may follow it, `None` when the list ends here.
    pub next: Option<i64>,
}

/// Builds one page of at most `limit` entries within `budget`, starting after `from`.
///
/// `read(from, n)` reads at most `n` rows following the cursor `from` (`None`: from the
/// start), in the list's order; `cursor` is a row's cursor (what the next read starts after)
/// and `render` the entry the answer shows for it. An error of `read` is the page's error.
pub async fn page<T, A, E, R, Fut>(
    limit: usize,
    mut budget: Budget,
    from: Option<i64>,
    mut read: R,
    cursor: impl Fn(&T) -> i64,
    render: impl Fn(&T) -> A,
) -> Result<Page<A>, E>
where
    A: Serialize,
    R: FnMut(Option<i64>, u32) -> Fut,
    Fut: Future<Output = Result<Vec<T>, E>>,
{
    let mut entries: Vec<A> = Vec::new();
    let mut last = from;
    let mut seen_rows = 0_usize;
    let mut seen_bytes = 0_usize;
    loop {
        // One row past the limit, to know whether the list goes on.
        let mut want = (limit + 1 - entries.len()).min(CHUNK);
        if let Some(average) = seen_bytes.checked_div(seen_rows) {
            // Rows beyond what the budget can take would be read only to be dropped: read
            // about as many as fit, and one more to learn whether the page stops here.
            want = want.min(budget.left() / average.max(1) + 1);
        }
        let want = want.max(1);
        let rows = read(last, u32::try_from(want).unwrap_or(u32::MAX)).await?;
        let ended = rows.len() < want;
        for row in &rows {
            if entries.len() == limit {
                return Ok(Page {
                    entries,
                    next: last,
                });
            }
            let entry = render(row);
            seen_rows += 1;
            seen_bytes = seen_bytes.saturating_add(json_len(&entry));
            if !budget.take(&entry, entries.is_empty()) {
                return Ok(Page {
                    entries,
                    next: last,
                });
            }
            entries.push(entry);
            last = Some(cursor(row));
        }
        if ended {
            return Ok(Page {
                entries,
                next: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::cell::RefCell;

    use serde_json::{json, Value};

    use super::*;

    /// A list of `n` entries with cursors 1..=n, each `size` bytes of JSON, read through
    /// `page`; returns the page and the `(from, n)` of every read.
    async fn paged(
        n: i64,
        size: usize,
        limit: usize,
        budget: usize,
        from: Option<i64>,
    ) -> (Page<Value>, Vec<(Option<i64>, u32)>) {
        let reads = RefCell::new(Vec::new());
        let page = page(
            limit,
            Budget::new(budget),
            from,
            |after: Option<i64>, want: u32| {
                reads.borrow_mut().push((after, want));
                let start = after.unwrap_or(0) + 1;
                let end = (start + i64::from(want)).min(n + 1);
                async move { Ok::<_, ()>((start..end).collect::<Vec<i64>>()) }
            },
            |row| *row,
            // `"xxx…"`: the quotes count, so `size` bytes in all.
            |_| json!("x".repeat(size - 2)),
        )
        .await
        .unwrap();
        (page, reads.into_inner())
    }

    /// The page's entry count, asserting each is `size` bytes of JSON.
    fn sized(page: &Page<Value>, size: usize) -> usize {
        assert!(page.entries.iter().all(|e| json_len(e) == size));
        page.entries.len()
    }

    #[tokio::test]
    async fn a_page_stops_at_its_limit_and_names_the_next_cursor_only_when_more_follow() {
        let (p, reads) = paged(250, 10, 7, usize::MAX, None).await;
        assert_eq!((sized(&p, 10), p.next), (7, Some(7)));
        assert_eq!(reads, [(None, 8)], "the limit and one more, in one read");
        let (p, _) = paged(250, 10, 7, usize::MAX, Some(245)).await;
        assert_eq!((p.entries.len(), p.next), (5, None), "the last page");
        let (p, _) = paged(14, 10, 7, usize::MAX, Some(7)).await;
        assert_eq!(
            (p.entries.len(), p.next),
            (7, None),
            "a list ending exactly at the limit has no next page"
        );
        let (p, _) = paged(0, 10, 7, usize::MAX, None).await;
        assert_eq!((p.entries.len(), p.next), (0, None), "an empty list");
    }

    #[tokio::test]
    async fn the_store_is_read_in_chunks_of_at_most_chunk_rows() {
        let (p, reads) = paged(5000, 10, MAX_LIMIT, usize::MAX, None).await;
        assert_eq!((p.entries.len(), p.next), (MAX_LIMIT, Some(1000)));
        assert!(reads.iter().all(|(_, n)| *n as usize <= CHUNK), "{reads:?}");
        let read: u32 = reads.iter().map(|(_, n)| n).sum();
        assert_eq!(read, 1001, "the limit and one more, no more: {reads:?}");
        let froms: Vec<Option<i64>> = reads.iter().map(|(from, _)| *from).collect();
        assert_eq!(
            froms[..3],
            [None, Some(100), Some(200)],
            "each chunk follows the last"
        );
    }

    #[tokio::test]
    async fn a_page_stops_before_the_entry_that_would_cross_the_budget() {
        // 11 bytes an entry with its comma: 100 bytes take 9.
        let (p, reads) = paged(250, 10, 1000, 100, None).await;
        assert_eq!((sized(&p, 10), p.next), (9, Some(9)));
        let read: u32 = reads.iter().map(|(_, n)| n).sum();
        assert!(read <= 100, "at most one chunk read: {reads:?}");
        let (p, _) = paged(9, 10, 1000, 100, None).await;
        assert_eq!(
            (p.entries.len(), p.next),
            (9, None),
            "all that was left fit"
        );
        // Walking on from `next` reaches every entry once.
        let mut seen = Vec::new();
        let mut from = None;
        loop {
            let (p, _) = paged(50, 10, 1000, 100, from).await;
            seen.extend(from.unwrap_or(0) + 1..=from.unwrap_or(0) + p.entries.len() as i64);
            match p.next {
                Some(next) => from = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, (1..=50).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn an_entry_larger_than_the_budget_is_sent_alone() {
        let (p, _) = paged(3, 500, 100, 100, None).await;
        assert_eq!((p.entries.len(), p.next), (1, Some(1)));
        let (p, _) = paged(3, 500, 100, 100, Some(1)).await;
        assert_eq!(
            (p.entries.len(), p.next),
            (1, Some(2)),
            "and the walk moves on"
        );
    }

    #[tokio::test]
    async fn once_entries_are_seen_chunks_shrink_to_what_the_budget_can_take() {
        // 1,000-byte entries (1,001 with the comma). Nothing is known of the first chunk, so it
        // is read whole; with 5,500 bytes the page is full within it.
        let (p, reads) = paged(1000, 1000, 1000, 5500, None).await;
        assert_eq!((p.entries.len(), p.next), (5, Some(5)));
        assert_eq!(reads, [(None, 100)]);
        let (p, reads) = paged(1000, 1000, 1000, 250_000, None).await;
        assert_eq!((p.entries.len(), p.next), (249, Some(249)));
        assert_eq!(
            reads,
            [(None, 100), (Some(100), 100), (Some(200), 50)],
            "the third chunk is sized to the budget left (about 50 entries), plus one"
        );
    }

    #[test]
    fn limits_default_to_100_and_are_clamped_to_1_through_1000() {
        assert_eq!(limit(None), 100);
        assert_eq!(limit(Some(7)), 7);
        assert_eq!(limit(Some(0)), 1);
        assert_eq!(limit(Some(5000)), 1000);
        assert_eq!(limit(Some(u32::MAX)), 1000);
    }

    #[test]
    fn json_len_is_the_length_of_the_compact_text() {
        for v in [
            json!(null),
            json!({"a": [1, "é", {"b": null}]}),
            json!("x\"y\n"),
        ] {
            assert_eq!(json_len(&v), serde_json::to_vec(&v).unwrap().len(), "{v}");
        }
    }
}
