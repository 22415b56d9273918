//! Plusofon smart numbers: listed as phoneA/phoneB/phoneX, created with `phone_b`; no
//! update endpoint, and a create answers only `{"success": true}`.

use super::{Column, ColumnType::*, JsonPath, Pagination, ResourceSpec, UpstreamName};

pub static SPEC: ResourceSpec = ResourceSpec {
    upstream: UpstreamName::Plusofon,
    table: "smart_numbers",
    base_table: "smart_numbers_base",
    path: "/api/v1/smart-numbers",
    pagination: Pagination::Flat,
    columns: &[
        Column::writable("user_id", Integer),
        Column::read_only("phone_a", Text).read_from(JsonPath::Key("phoneA")),
        Column {
            payload_key: "phone_b",
            ..Column::writable("phone_b", Text).read_from(JsonPath::Key("phoneB"))
        },
        Column::read_only("phone_x", Text).read_from(JsonPath::Key("phoneX")),
        Column::writable("description", Text),
        Column::read_only("created_at", Text),
    ],
    can_create: true,
    can_delete: true,
    can_update: false,
    create_returns_record: false,
    lookup_filters: &["user_id"],
};
