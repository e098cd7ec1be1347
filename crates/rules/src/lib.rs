//! Override rules: what a user or the operator asks the gateway to change in
//! requests before they are routed and forwarded. Pure code, no I/O: rules
//! are parsed and checked ([`rule`]), compiled once when saved (paths
//! parsed, expressions built by a linear-time engine), and run on a request's
//! JSON body ([`engine`]).

pub mod action;
pub mod condition;
pub mod engine;
pub mod path;
pub mod rule;

pub use action::Action;
pub use condition::{Condition, Mode, Request, ValueTest};
pub use engine::{apply, sort, HeaderChange, Outcome};
pub use path::Path;
pub use rule::{Compiled, Restrictions, Rule, RuleError};
