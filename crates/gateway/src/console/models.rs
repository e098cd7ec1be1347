//! The console's models page: the models the user's account may use, each
//! with its unit, its prices (USD) and the multiplier that applies to the
//! user (the model's times the group's) — what the model rates API says.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::session::Member;
use super::{language, page, Lang, Texts};
use crate::money::MeterUnit;
use crate::state::App;

struct ModelRow {
    name: String,
    unit: String,
    prices: String,
    multiplier: String,
}

#[derive(Template)]
#[template(path = "console/models.html")]
struct ModelsPage<'a> {
    t: &'a Texts,
    title: &'a str,
    user_name: Option<String>,
    is_admin: bool,
    csrf: String,
    models: Vec<ModelRow>,
}

pub async fn list(
    State(app): State<App>,
    headers: HeaderMap,
    Query(lang): Query<Lang>,
    Member(session): Member,
) -> Response {
    let (t, remember) = language(&headers, &lang);
    let catalog = app.catalog.load();
    let group = catalog.group_multiplier(&session.user.group_name);
    let mut models: Vec<ModelRow> = catalog
        .models
        .values()
        .map(|m| ModelRow {
            name: m.name.clone(),
            unit: m.unit.name().to_string(),
            prices: match m.unit {
                MeterUnit::Tokens => {
                    format!("{} / {} per 1M (in / out)", m.prices.input, m.prices.output)
                }
                MeterUnit::Characters => format!("{} per 1M", m.unit_price),
                MeterUnit::Minutes => format!("{} per minute", m.unit_price),
                unit => format!(
                    "{} per {}",
                    m.unit_price,
                    unit.counted().trim_end_matches('s')
                ),
            },
            multiplier: m.multiplier.times(&group).to_string(),
        })
        .collect();
    models.sort_by(|a, b| a.name.cmp(&b.name));
    let html = ModelsPage {
        t,
        title: t.models,
        user_name: Some(session.user.name.clone()),
        is_admin: session.is_admin,
        csrf: session.csrf_token.clone(),
        models,
    }
    .render();
    page(html, &remember.into_iter().collect::<Vec<_>>())
}
