//! Stored record types of the three resources and how API-named fields merge into them.

use serde_json::{Map, Value};

use super::refdata;

/// A Firstline phone number as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Phone {
    pub id: i64,
    pub contact_id: i64,
    pub type_: i64,
    pub number: String,
    pub extension: Option<String>,
    pub description: Option<String>,
    pub profile_id: i64,
    pub phone_contact_id: i64,
}

/// A Firstline contact address as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Address {
    pub id: i64,
    pub contact_id: i64,
    pub type_: i64,
    pub address: String,
    pub country_id: Option<i64>,
    pub state_id: Option<i64>,
    pub city_id: Option<i64>,
    pub description: Option<String>,
    pub profile_id: i64,
}

/// A Plusofon smart number as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Smart {
    pub id: i64,
    pub user_id: i64,
    pub phone_a: String,
    pub phone_b: String,
    pub phone_x: String,
    pub description: Option<String>,
    pub created_at: String,
}

/// Common behaviour the generic store needs from a record.
pub(crate) trait Record: Clone {
    fn id(&self) -> i64;
    /// Whether the record's `field` equals the query-string `value` (exact match).
    fn field_eq(&self, field: &str, value: &str) -> bool;
}

fn int_eq(v: i64, s: &str) -> bool {
    s.trim().parse::<i64>().is_ok_and(|x| x == v)
}

fn opt_int_eq(v: Option<i64>, s: &str) -> bool {
    v.is_some_and(|v| int_eq(v, s))
}

fn opt_str_eq(v: &Option<String>, s: &str) -> bool {
    v.as_deref() == Some(s)
}

impl Record for Phone {
    fn id(&self) -> i64 {
        self.id
    }
    fn field_eq(&self, field: &str, value: &str) -> bool {
        match field {
            "contact_id" => int_eq(self.contact_id, value),
            "type" => int_eq(self.type_, value),
            "number" => self.number == value,
            "extension" => opt_str_eq(&self.extension, value),
            "description" => opt_str_eq(&self.description, value),
            _ => true,
        }
    }
}

impl Record for Address {
    fn id(&self) -> i64 {
        self.id
    }
    fn field_eq(&self, field: &str, value: &str) -> bool {
        match field {
            "contact_id" => int_eq(self.contact_id, value),
            "type" => int_eq(self.type_, value),
            "address" => self.address == value,
            "country_id" => opt_int_eq(self.country_id, value),
            "state_id" => opt_int_eq(self.state_id, value),
            "city_id" => opt_int_eq(self.city_id, value),
            "description" => opt_str_eq(&self.description, value),
            _ => true,
        }
    }
}

impl Record for Smart {
    fn id(&self) -> i64 {
        self.id
    }
    fn field_eq(&self, field: &str, value: &str) -> bool {
        match field {
            "user_id" => int_eq(self.user_id, value),
            _ => true,
        }
    }
}

/// Lenient integer reading: JSON integers, integral floats and numeric strings.
pub(crate) fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Lenient string reading: strings as is, numbers and booleans in their JSON spelling.
pub(crate) fn str_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn field<'a>(f: &'a Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| f.get(*n))
}

impl Phone {
    /// A record with every field empty, before server fields are assigned.
    pub(crate) fn blank() -> Phone {
        Phone {
            id: 0,
            contact_id: 0,
            type_: 0,
            number: String::new(),
            extension: None,
            description: None,
            profile_id: -30,
            phone_contact_id: 0,
        }
    }

    /// Merges API-named fields; a new contact_id moves profile_id along unless one is given.
    pub(crate) fn apply(&mut self, f: &Map<String, Value>) {
        if let Some(v) = f.get("contact_id").and_then(int_of) {
            self.contact_id = v;
            self.profile_id = v - 30;
        }
        if let Some(v) = f.get("type").and_then(int_of) {
            self.type_ = v;
        }
        if let Some(v) = f.get("number").and_then(str_of) {
            self.number = v;
        }
        if let Some(v) = f.get("extension") {
            self.extension = str_of(v);
        }
        if let Some(v) = f.get("description") {
            self.description = str_of(v);
        }
        if let Some(v) = f.get("profile_id").and_then(int_of) {
            self.profile_id = v;
        }
        if let Some(v) = f.get("phone_contact_id").and_then(int_of) {
            self.phone_contact_id = v;
        }
    }
}

impl Address {
    pub(crate) fn blank() -> Address {
        Address {
            id: 0,
            contact_id: 0,
            type_: 0,
            address: String::new(),
            country_id: None,
            state_id: None,
            city_id: None,
            description: None,
            profile_id: -30,
        }
    }

    /// Merges API-named fields; empty strings clear the optional geography ids.
    pub(crate) fn apply(&mut self, f: &Map<String, Value>) {
        if let Some(v) = f.get("contact_id").and_then(int_of) {
            self.contact_id = v;
            self.profile_id = v - 30;
        }
        if let Some(v) = f.get("type").and_then(int_of) {
            self.type_ = v;
        }
        if let Some(v) = f.get("address").and_then(str_of) {
            self.address = v;
        }
        if let Some(v) = f.get("country_id") {
            self.country_id = int_of(v);
        }
        if let Some(v) = f.get("state_id") {
            self.state_id = int_of(v);
        }
        if let Some(v) = f.get("city_id") {
            self.city_id = int_of(v);
        }
        if let Some(v) = f.get("description") {
            self.description = str_of(v);
        }
        if let Some(v) = f.get("profile_id").and_then(int_of) {
            self.profile_id = v;
        }
    }
}

impl Smart {
    pub(crate) fn blank() -> Smart {
        Smart {
            id: 0,
            user_id: 0,
            phone_a: String::new(),
            phone_b: String::new(),
            phone_x: String::new(),
            description: None,
            created_at: String::new(),
        }
    }

    /// Merges fields named as listed (phoneB) or as posted (phone_b); a new user brings its phoneA.
    pub(crate) fn apply(&mut self, f: &Map<String, Value>) {
        if let Some(v) = f.get("user_id").and_then(int_of) {
            self.user_id = v;
            if let Some(p) = refdata::user_phone(v) {
                self.phone_a = p.to_string();
            }
        }
        if let Some(v) = field(f, &["phoneA", "phone_a"]).and_then(str_of) {
            self.phone_a = v;
        }
        if let Some(v) = field(f, &["phoneB", "phone_b"]).and_then(str_of) {
            self.phone_b = v;
        }
        if let Some(v) = field(f, &["phoneX", "phone_x"]).and_then(str_of) {
            self.phone_x = v;
        }
        if let Some(v) = f.get("description") {
            self.description = str_of(v);
        }
        if let Some(v) = f.get("created_at").and_then(str_of) {
            self.created_at = v;
        }
    }
}
