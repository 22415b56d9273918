//! Laravel-style request validation for Firstline's create and update bodies.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use super::refdata;

/// Laravel's `errors` object: field -> messages, in rule order.
#[derive(Debug, Default)]
pub(crate) struct ErrorBag(Vec<(String, Vec<String>)>);

impl ErrorBag {
    pub(crate) fn add(&mut self, field: &str, message: String) {
        match self.0.iter_mut().find(|(f, _)| f == field) {
            Some((_, msgs)) => msgs.push(message),
            None => self.0.push((field.to_string(), vec![message])),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for ErrorBag {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// When a field must be present.
#[derive(Clone, Copy, PartialEq)]
enum Presence {
    /// `required`: always.
    Always,
    /// `sometimes|required`: may be left out, but not sent empty.
    IfSent,
    /// `nullable`: may be left out or null.
    Optional,
}

#[derive(Clone, Copy)]
enum Ty {
    Int {
        range: Option<(i64, i64)>,
        exists: Option<fn(i64) -> bool>,
    },
    Str {
        max: usize,
        format: Option<fn(&str) -> bool>,
    },
}

struct Rule {
    field: &'static str,
    presence: Presence,
    ty: Ty,
}

/// Create or update: updates relax most `required` rules.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Mode {
    Create,
    Update,
}

fn phone_number_format(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-' | '(' | ')'))
}

fn state_exists(id: i64) -> bool {
    refdata::state_by_id(id).is_some()
}

fn city_exists(id: i64) -> bool {
    refdata::city_by_id(id).is_some()
}

/// Laravel's `required`: missing, null, blank strings and empty arrays all fail.
fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    }
}

/// Laravel's `integer` (FILTER_VALIDATE_INT): integers and integer strings.
fn strict_int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn check(body: &Map<String, Value>, rules: &[Rule]) -> Result<(), ErrorBag> {
    let mut errors = ErrorBag::default();
    for rule in rules {
        let attr = rule.field.replace('_', " ");
        let value = body.get(rule.field);
        let required = match rule.presence {
            Presence::Always => true,
            Presence::IfSent => value.is_some(),
            Presence::Optional => false,
        };
        if is_empty(value) {
            if required {
                errors.add(rule.field, format!("The {attr} field is required."));
            }
            // Absent, null or blank optional values skip the remaining rules, as in Laravel.
            continue;
        }
        let Some(value) = value else { continue };
        match rule.ty {
            Ty::Int { range, exists } => match strict_int(value) {
                None => errors.add(rule.field, format!("The {attr} must be an integer.")),
                Some(n) => {
                    let in_range = range.is_none_or(|(lo, hi)| (lo..=hi).contains(&n));
                    if !in_range || exists.is_some_and(|f| !f(n)) {
                        errors.add(rule.field, format!("The selected {attr} is invalid."));
                    }
                }
            },
            Ty::Str { max, format } => match value.as_str() {
                None => errors.add(rule.field, format!("The {attr} must be a string.")),
                Some(s) => {
                    if s.chars().count() > max {
                        errors.add(
                            rule.field,
                            format!("The {attr} must not be greater than {max} characters."),
                        );
                    } else if format.is_some_and(|f| !f(s)) {
                        errors.add(rule.field, format!("The {attr} format is invalid."));
                    }
                }
            },
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

const fn int(range: Option<(i64, i64)>, exists: Option<fn(i64) -> bool>) -> Ty {
    Ty::Int { range, exists }
}

const fn string(max: usize, format: Option<fn(&str) -> bool>) -> Ty {
    Ty::Str { max, format }
}

/// Phone number rules; the document makes contact_id required on update too.
pub(crate) fn phone(body: &Map<String, Value>, mode: Mode) -> Result<(), ErrorBag> {
    let main = if mode == Mode::Create {
        Presence::Always
    } else {
        Presence::IfSent
    };
    check(
        body,
        &[
            Rule {
                field: "contact_id",
                presence: Presence::Always,
                ty: int(None, None),
            },
            Rule {
                field: "type",
                presence: main,
                ty: int(Some((0, 4)), None),
            },
            Rule {
                field: "number",
                presence: main,
                ty: string(20, Some(phone_number_format)),
            },
            Rule {
                field: "extension",
                presence: Presence::Optional,
                ty: string(usize::MAX, None),
            },
            Rule {
                field: "description",
                presence: Presence::Optional,
                ty: string(255, None),
            },
        ],
    )
}

/// Address rules; every field is optional on update.
pub(crate) fn address(body: &Map<String, Value>, mode: Mode) -> Result<(), ErrorBag> {
    let main = if mode == Mode::Create {
        Presence::Always
    } else {
        Presence::IfSent
    };
    let geo = |field, exists| Rule {
        field,
        presence: Presence::Optional,
        ty: int(None, Some(exists)),
    };
    check(
        body,
        &[
            Rule {
                field: "contact_id",
                presence: main,
                ty: int(None, None),
            },
            Rule {
                field: "type",
                presence: main,
                ty: int(Some((0, 5)), None),
            },
            Rule {
                field: "address",
                presence: main,
                ty: string(255, None),
            },
            geo("country_id", refdata::country_exists),
            geo("state_id", state_exists),
            geo("city_id", city_exists),
            Rule {
                field: "description",
                presence: Presence::Optional,
                ty: string(255, None),
            },
        ],
    )
}
