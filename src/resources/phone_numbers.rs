//! Firstline phone numbers: `phone_contact.contact_id` maps to `contact_id`; `profile_id`
//! is assigned upstream.

use super::{Column, ColumnType::*, JsonPath, Pagination, ResourceSpec, UpstreamName};

pub static SPEC: ResourceSpec = ResourceSpec {
    upstream: UpstreamName::Firstline,
    table: "phone_numbers",
    base_table: "phone_numbers_base",
    path: "/api/v1/phone-number",
    pagination: Pagination::Laravel,
    columns: &[
        Column::writable("contact_id", Integer)
            .read_from(JsonPath::Nested(&["phone_contact", "contact_id"]))
            .required_on_update(),
        Column::writable("type", Integer),
        Column::writable("number", Text),
        Column::writable("extension", Text),
        Column::writable("description", Text),
        Column::read_only("profile_id", Integer),
    ],
    can_create: true,
    can_delete: true,
    can_update: true,
    create_returns_record: true,
    lookup_filters: &["contact_id", "number"],
};
