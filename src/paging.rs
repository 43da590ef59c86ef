//! Cursor pagination of lists: `limit` objects before or after an object id,
//! newest or oldest first. Ids are ULIDs, which sort by creation, so walking
//! `after` visits every object once even while new ones are added.

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Cursor {
    pub limit: i64,
    pub before: Option<String>,
    pub after: Option<String>,
    pub descending: bool,
}

impl Cursor {
    /// The first `limit` objects, newest first.
    pub fn first(limit: i64) -> Self {
        Cursor {
            limit,
            before: None,
            after: None,
            descending: true,
        }
    }

    /// A cursor from the parameters of a list request (`limit`, `before`,
    /// `after`, `order`), each checked, with `default_limit` when absent.
    pub fn parse(
        limit: Option<&str>,
        before: Option<&str>,
        after: Option<&str>,
        order: Option<&str>,
        default_limit: i64,
    ) -> Result<Cursor> {
        let limit = match limit.map(str::trim) {
            None | Some("") => default_limit,
            Some(raw) => raw
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| Error::invalid("limit", "limit is a whole number from 1 to 100."))?,
        };
        let descending = match order.map(str::trim) {
            None | Some("") | Some("desc") => true,
            Some("asc") => false,
            Some(_) => return Err(Error::invalid("order", "order is asc or desc.")),
        };
        let clean = |v: Option<&str>| v.map(str::trim).filter(|s| !s.is_empty()).map(String::from);
        let (before, after) = (clean(before), clean(after));
        if before.is_some() && after.is_some() {
            return Err(Error::invalid("before", "Give before or after, not both."));
        }
        Ok(Cursor {
            limit,
            before,
            after,
            descending,
        })
    }

    /// True when the rows must be read in the opposite order and reversed
    /// (paging backwards with `before`).
    pub fn backwards(&self) -> bool {
        self.before.is_some()
    }

    /// Whether the query should sort its ids descending.
    pub fn sorts_descending(&self) -> bool {
        self.descending != self.backwards()
    }

    /// The page of `items` (in any order) this cursor selects, by the same
    /// rules as [`paginate!`] applies to a query: for lists kept in memory.
    pub fn page_of<T>(&self, mut items: Vec<T>, id: impl Fn(&T) -> &str) -> Page<T> {
        items.retain(|item| {
            let item_id = id(item);
            let after_ok = self.after.as_deref().is_none_or(|after| {
                if self.descending {
                    item_id < after
                } else {
                    item_id > after
                }
            });
            let before_ok = self.before.as_deref().is_none_or(|before| {
                if self.descending {
                    item_id > before
                } else {
                    item_id < before
                }
            });
            after_ok && before_ok
        });
        if self.sorts_descending() {
            items.sort_unstable_by(|a, b| id(b).cmp(id(a)));
        } else {
            items.sort_unstable_by(|a, b| id(a).cmp(id(b)));
        }
        items.truncate(self.limit as usize + 1);
        self.finish(items, |item| id(item).to_string())
    }

    /// Turns `limit + 1` rows read in query order into a page.
    pub fn finish<T>(&self, mut rows: Vec<T>, id: impl Fn(&T) -> String) -> Page<T> {
        let more = rows.len() as i64 > self.limit;
        rows.truncate(self.limit as usize);
        if self.backwards() {
            rows.reverse();
        }
        let (first, last) = (rows.first().map(&id), rows.last().map(&id));
        let (before, after) = if self.backwards() {
            (first.filter(|_| more), last)
        } else {
            (
                first.filter(|_| self.after.is_some()),
                last.filter(|_| more),
            )
        };
        Page {
            data: rows,
            before,
            after,
        }
    }
}

/// One page and the cursors around it: give `after` (or `before`) back to
/// read the next (or previous) page.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            data: self.data.into_iter().map(f).collect(),
            before: self.before,
            after: self.after,
        }
    }
}

/// Applies a cursor to a boxed diesel query over `$id`, loads `limit + 1`
/// rows and returns the `Page`.
#[macro_export]
macro_rules! paginate {
    ($query:expr, $id:expr, $cursor:expr, $conn:expr, $select:ty, $id_of:expr) => {{
        let cursor: &$crate::paging::Cursor = $cursor;
        let mut query = $query;
        if let Some(after) = &cursor.after {
            query = if cursor.descending {
                query.filter($id.lt(after.clone()))
            } else {
                query.filter($id.gt(after.clone()))
            };
        }
        if let Some(before) = &cursor.before {
            query = if cursor.descending {
                query.filter($id.gt(before.clone()))
            } else {
                query.filter($id.lt(before.clone()))
            };
        }
        query = if cursor.sorts_descending() {
            query.order($id.desc())
        } else {
            query.order($id.asc())
        };
        let rows: Vec<$select> = query
            .limit(cursor.limit + 1)
            .select(<$select>::as_select())
            .load($conn)?;
        cursor.finish(rows, $id_of)
    }};
}
