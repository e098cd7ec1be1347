//! `/v1/customers`: create and retrieve.

use serde_json::Value;

use crate::error::FakeError;
use crate::objects::{new_id, now, Customer};
use crate::params::Params;
use crate::state::Store;

pub(super) fn create(store: &mut Store, p: &Params) -> Result<Value, FakeError> {
    let customer = Customer {
        id: new_id("cus_", 14),
        created: now(),
        email: p.str("email")?.map(str::to_string),
        name: p.str("name")?.map(str::to_string),
        description: p.str("description")?.map(str::to_string),
        metadata: p.metadata("metadata")?,
    };
    let json = customer.to_json();
    store.customers.push(customer);
    Ok(json)
}

pub(super) fn retrieve(store: &Store, id: &str) -> Result<Value, FakeError> {
    store
        .customer(id)
        .map(Customer::to_json)
        .ok_or_else(|| FakeError::no_such("customer", id))
}
