//! JSON shapes of the records, field order as in the API documents.
//!
//! Structs (not `serde_json::Value` maps, which sort keys) keep the documented key order.

use serde::Serialize;
use serde_json::Value;

use super::records::{Address, Phone, Smart};
use super::refdata;
use super::state::{Filter, Kind};
use super::Shared;

#[derive(Serialize)]
pub(crate) struct PhoneContactOut {
    id: i64,
    contact_id: i64,
    phone_number_id: i64,
    is_visible: bool,
}

#[derive(Serialize)]
pub(crate) struct PhoneOut<'a> {
    id: i64,
    #[serde(rename = "type")]
    type_: i64,
    extension: Option<&'a str>,
    number: &'a str,
    description: Option<&'a str>,
    profile_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_contact: Option<PhoneContactOut>,
}

/// A phone number; `with_contact` for search and GET, without for create/update answers.
pub(crate) fn phone(p: &Phone, with_contact: bool) -> PhoneOut<'_> {
    PhoneOut {
        id: p.id,
        type_: p.type_,
        extension: p.extension.as_deref(),
        number: &p.number,
        description: p.description.as_deref(),
        profile_id: p.profile_id,
        phone_contact: with_contact.then_some(PhoneContactOut {
            id: p.phone_contact_id,
            contact_id: p.contact_id,
            phone_number_id: p.id,
            is_visible: true,
        }),
    }
}

#[derive(Serialize)]
pub(crate) struct EnumTypeOut {
    key: &'static str,
    value: i64,
    description: &'static str,
}

#[derive(Serialize)]
pub(crate) struct StateOut {
    id: i64,
    country_id: i64,
    name: &'static str,
}

#[derive(Serialize)]
pub(crate) struct CountryOut {
    id: i64,
    name: &'static str,
    abbrev: Option<&'static str>,
}

#[derive(Serialize)]
pub(crate) struct CityOut {
    id: i64,
    state_id: i64,
    name: &'static str,
    zipcode: &'static str,
}

#[derive(Serialize)]
pub(crate) struct AddressOut<'a> {
    id: i64,
    #[serde(rename = "type")]
    type_: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    enum_type: Option<EnumTypeOut>,
    address: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    contact_id: Option<i64>,
    profile_id: i64,
    state: Option<StateOut>,
    state_id: Option<i64>,
    country: Option<CountryOut>,
    country_id: Option<i64>,
    city: Option<CityOut>,
    city_id: Option<i64>,
    description: Option<&'a str>,
}

/// An address; `search` adds `enum_type` and `contact_id` as the search endpoint does.
pub(crate) fn address(a: &Address, search: bool) -> AddressOut<'_> {
    let enum_type = search.then(|| {
        // Only reachable through SandboxControl (no validation) with a type outside 0..=5.
        let (key, description) = refdata::address_type(a.type_).unwrap_or(("UNKNOWN", ""));
        EnumTypeOut {
            key,
            value: a.type_,
            description,
        }
    });
    AddressOut {
        id: a.id,
        type_: a.type_,
        enum_type,
        address: &a.address,
        contact_id: search.then_some(a.contact_id),
        profile_id: a.profile_id,
        state: a.state_id.and_then(refdata::state_by_id).map(|s| StateOut {
            id: s.id,
            country_id: refdata::COUNTRY_ID,
            name: s.name,
        }),
        state_id: a.state_id,
        country: a
            .country_id
            .filter(|c| refdata::country_exists(*c))
            .map(|id| CountryOut {
                id,
                name: refdata::COUNTRY_NAME,
                abbrev: None,
            }),
        country_id: a.country_id,
        city: a.city_id.and_then(refdata::city_by_id).map(|c| CityOut {
            id: c.id,
            state_id: c.state_id,
            name: c.name,
            zipcode: c.zipcode,
        }),
        city_id: a.city_id,
        description: a.description.as_deref(),
    }
}

#[derive(Serialize)]
pub(crate) struct SmartOut<'a> {
    id: i64,
    user_id: i64,
    #[serde(rename = "phoneA")]
    phone_a: &'a str,
    #[serde(rename = "phoneB")]
    phone_b: &'a str,
    #[serde(rename = "phoneX")]
    phone_x: &'a str,
    description: Option<&'a str>,
    created_at: &'a str,
}

pub(crate) fn smart(s: &Smart) -> SmartOut<'_> {
    SmartOut {
        id: s.id,
        user_id: s.user_id,
        phone_a: &s.phone_a,
        phone_b: &s.phone_b,
        phone_x: &s.phone_x,
        description: s.description.as_deref(),
        created_at: &s.created_at,
    }
}

fn to_value<T: Serialize>(v: T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

// The functions below copy records out under the lock and render after releasing it, so
// rendering a million rows for `SandboxControl` does not stall the servers.

/// A record of `kind` as its list endpoint renders it, for `SandboxControl`.
pub(crate) fn listed(shared: &Shared, kind: Kind, id: i64) -> Option<Value> {
    match kind {
        Kind::PhoneNumbers => {
            let row = shared.state().phones.get(id).cloned();
            row.map(|p| to_value(phone(&p, true)))
        }
        Kind::Addresses => {
            let row = shared.state().addresses.get(id).cloned();
            row.map(|a| to_value(address(&a, true)))
        }
        Kind::SmartNumbers => {
            let row = shared.state().smarts.get(id).cloned();
            row.map(|s| to_value(smart(&s)))
        }
    }
}

/// `limit` records of `kind` from listing position `offset` (`usize::MAX` = all), as the
/// list endpoint renders them.
pub(crate) fn listed_range(shared: &Shared, kind: Kind, offset: usize, limit: usize) -> Vec<Value> {
    let all = Filter::default();
    match kind {
        Kind::PhoneNumbers => {
            let (_, rows) = shared.state().phones.page(&all, offset, limit);
            rows.iter().map(|p| to_value(phone(p, true))).collect()
        }
        Kind::Addresses => {
            let (_, rows) = shared.state().addresses.page(&all, offset, limit);
            rows.iter().map(|a| to_value(address(a, true))).collect()
        }
        Kind::SmartNumbers => {
            let (_, rows) = shared.state().smarts.page(&all, offset, limit);
            rows.iter().map(|s| to_value(smart(s))).collect()
        }
    }
}
