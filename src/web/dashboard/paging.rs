//! Page numbers for dashboard lists.

/// Where a list page is, and the links around it.
pub struct Paging {
    pub page: i64,
    pub pages: i64,
    pub total: i64,
    pub first_item: i64,
    pub last_item: i64,
    /// The query string without `page`, to build links from.
    pub base: String,
}

impl Paging {
    pub fn new(page: i64, per_page: i64, total: i64, base: String) -> Self {
        let pages = last_page(total, per_page);
        let page = page.clamp(1, pages);
        let first_item = if total == 0 {
            0
        } else {
            (page - 1) * per_page + 1
        };
        Paging {
            page,
            pages,
            total,
            first_item,
            last_item: (page * per_page).min(total),
            base,
        }
    }
    pub fn has_prev(&self) -> bool {
        self.page > 1
    }
    pub fn has_next(&self) -> bool {
        self.page < self.pages
    }
    pub fn link(&self, page: i64) -> String {
        if self.base.is_empty() {
            format!("?page={page}")
        } else {
            format!("?{}&page={page}", self.base)
        }
    }
    pub fn prev_link(&self) -> String {
        self.link(self.page - 1)
    }
    pub fn next_link(&self) -> String {
        self.link(self.page + 1)
    }
}

/// The number of the last page of `total` items, at least 1.
pub fn last_page(total: i64, per_page: i64) -> i64 {
    ((total + per_page - 1) / per_page).max(1)
}

/// Loads page `page` with `load`; a page past the end loads the last page
/// instead, so a stale link never shows an empty list of existing items.
pub fn load_clamped<T, E>(
    page: i64,
    per_page: i64,
    mut load: impl FnMut(i64) -> Result<(Vec<T>, i64), E>,
) -> Result<(Vec<T>, i64), E> {
    let (items, total) = load(page)?;
    let last = last_page(total, per_page);
    if page > last {
        return load(last);
    }
    Ok((items, total))
}

/// A page number from a query string: 1 when absent or nonsense.
pub fn page_param(raw: Option<&str>) -> i64 {
    raw.and_then(|p| p.parse::<i64>().ok())
        .filter(|p| *p >= 1 && *p < 1_000_000)
        .unwrap_or(1)
}

/// Builds `a=1&b=2` from pairs, leaving out empty values.
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if !v.is_empty() {
            s.append_pair(k, v);
        }
    }
    s.finish()
}
