//! Firstline contact addresses; `profile_id` is assigned upstream.

use super::{Column, ColumnType::*, Pagination, ResourceSpec, UpstreamName};

pub static SPEC: ResourceSpec = ResourceSpec {
    upstream: UpstreamName::Firstline,
    table: "addresses",
    base_table: "addresses_base",
    path: "/api/v1/address",
    pagination: Pagination::Laravel,
    columns: &[
        Column::writable("contact_id", Integer),
        Column::writable("type", Integer),
        Column::writable("address", Text),
        Column::writable("country_id", Integer),
        Column::writable("state_id", Integer),
        Column::writable("city_id", Integer),
        Column::writable("description", Text),
        Column::read_only("profile_id", Integer),
    ],
    can_create: true,
    can_delete: true,
    can_update: true,
    create_returns_record: true,
    lookup_filters: &["contact_id", "address"],
};
