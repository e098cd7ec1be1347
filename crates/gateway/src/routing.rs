//! Routing: a model name becomes the model's specification and the provider
//! that serves it — if the caller's key may use it.

use std::sync::Arc;

use crate::auth::Principal;
use crate::config::ModelSpec;
use crate::error::ApiError;
use crate::providers::{Provider, Target};
use crate::state::App;

/// Where a request for one model goes.
pub struct Route {
    pub model: Arc<ModelSpec>,
    pub provider: Arc<Provider>,
}

impl Route {
    /// What the provider's adapter builds its call for.
    pub fn target(&self) -> Target<'_> {
        Target {
            model: &self.model,
            provider: &self.provider,
        }
    }
}

pub fn route(app: &App, principal: &Principal, model: &str) -> Result<Route, ApiError> {
    let spec = app
        .model(model)
        .cloned()
        .ok_or_else(|| ApiError::ModelNotFound(model.to_string()))?;
    principal.check_model(model)?;
    let provider = app
        .providers
        .get(&spec.provider)
        .cloned()
        .ok_or(ApiError::Internal)?;
    Ok(Route {
        model: spec,
        provider,
    })
}
