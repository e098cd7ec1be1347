//! Stripe's list pagination: newest first, `limit` (1–100, default 10),
//! cursors `starting_after` / `ending_before` (object ids), and the
//! `created` filter (`created=T` or `created[gt|gte|lt|lte]=T`).

use serde_json::{json, Value};

use crate::error::FakeError;
use crate::params::{Field, Params};

pub(crate) struct ListQuery<'a> {
    limit: usize,
    starting_after: Option<&'a str>,
    ending_before: Option<&'a str>,
    pub created: Created,
}

/// Bounds on `created`, all inclusive once parsed (`gt` is `gte + 1`).
#[derive(Default)]
pub(crate) struct Created {
    from: Option<i64>,
    to: Option<i64>,
}

impl Created {
    pub(crate) fn contains(&self, t: i64) -> bool {
        let after_from = !matches!(self.from, Some(from) if t < from);
        let before_to = !matches!(self.to, Some(to) if t > to);
        after_from && before_to
    }

    fn parse(field: Field<'_>) -> Result<Created, FakeError> {
        if !field.is_present() {
            return Ok(Created::default());
        }
        // `created=T`: exactly T.
        if let Ok(Some(t)) = field.int() {
            return Ok(Created {
                from: Some(t),
                to: Some(t),
            });
        }
        let bound = |op: &str| field.key(op).int();
        let (gt, gte, lt, lte) = (bound("gt")?, bound("gte")?, bound("lt")?, bound("lte")?);
        if gt.is_none() && gte.is_none() && lt.is_none() && lte.is_none() {
            return Err(FakeError::invalid(
                "Invalid created: must be an integer or a hash with gt, gte, lt or lte",
                field.name(),
            ));
        }
        let from = [gt.map(|t| t.saturating_add(1)), gte]
            .into_iter()
            .flatten()
            .max();
        let to = [lt.map(|t| t.saturating_sub(1)), lte]
            .into_iter()
            .flatten()
            .min();
        Ok(Created { from, to })
    }
}

impl<'a> ListQuery<'a> {
    pub(crate) fn parse(p: &'a Params) -> Result<Self, FakeError> {
        let limit =
            match p.int("limit")? {
                None => 10,
                Some(n @ 1..=100) => n as usize,
                Some(_) => return Err(FakeError::invalid(
                    "This value must be greater than or equal to 1 and less than or equal to 100.",
                    "limit",
                )),
            };
        let starting_after = p.str("starting_after")?;
        let ending_before = p.str("ending_before")?;
        if starting_after.is_some() && ending_before.is_some() {
            return Err(FakeError::state(
                "You may only specify one of these parameters: ending_before, starting_after.",
            ));
        }
        Ok(ListQuery {
            limit,
            starting_after,
            ending_before,
            created: Created::parse(p.field("created"))?,
        })
    }

    /// One page of `all` (oldest first, as the store keeps them): the
    /// items `keep` accepts, newest first, rendered by `render`. `kind`
    /// names the objects in a bad cursor's message (`checkout.session`).
    pub(crate) fn page<T>(
        &self,
        all: &[T],
        id: impl Fn(&T) -> &str,
        keep: impl Fn(&T) -> bool,
        render: impl Fn(&T) -> Value,
        kind: &str,
        url: &str,
    ) -> Result<Value, FakeError> {
        let newest: Vec<&T> = all.iter().rev().collect();
        let position = |cursor: &str, param: &str| {
            newest
                .iter()
                .position(|item| id(item) == cursor)
                .ok_or_else(|| FakeError::no_such_param(kind, cursor, param))
        };
        let (data, has_more) = if let Some(cursor) = self.ending_before {
            // The `limit` items just before the cursor (newer ones), still
            // newest first.
            let end = position(cursor, "ending_before")?;
            let kept: Vec<&T> = newest[..end].iter().copied().filter(|i| keep(i)).collect();
            let start = kept.len().saturating_sub(self.limit);
            (kept[start..].to_vec(), start > 0)
        } else {
            let start = match self.starting_after {
                Some(cursor) => position(cursor, "starting_after")? + 1,
                None => 0,
            };
            let mut kept = newest[start..].iter().copied().filter(|i| keep(i));
            let data: Vec<&T> = kept.by_ref().take(self.limit).collect();
            (data, kept.next().is_some())
        };
        Ok(json!({
            "object": "list",
            "data": data.into_iter().map(render).collect::<Vec<_>>(),
            "has_more": has_more,
            "url": url,
        }))
    }
}

/// A filter that applies only when given: `value` must then equal it.
pub(crate) fn wanted(filter: Option<&str>, value: Option<&str>) -> bool {
    filter.is_none() || filter == value
}
