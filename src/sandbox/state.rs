//! The sandbox's data store: the records of each resource, kept in listing order.

use std::collections::{HashMap, VecDeque};

use rand::rngs::StdRng;
use serde_json::{Map, Value};

use super::records::{Address, Phone, Record, Smart};
use super::refdata;
use super::seed;

/// One of the three emulated upstream resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    PhoneNumbers,
    Addresses,
    SmartNumbers,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 3] = [Kind::PhoneNumbers, Kind::Addresses, Kind::SmartNumbers];

    pub fn name(&self) -> &'static str {
        match self {
            Kind::PhoneNumbers => "phone_numbers",
            Kind::Addresses => "addresses",
            Kind::SmartNumbers => "smart_numbers",
        }
    }

    /// Path of the resource's collection on its server.
    pub(crate) fn base_path(&self) -> &'static str {
        match self {
            Kind::PhoneNumbers => "/api/v1/phone-number",
            Kind::Addresses => "/api/v1/address",
            Kind::SmartNumbers => "/api/v1/smart-numbers",
        }
    }

    /// The kind a request path belongs to (collection or one of its members).
    pub(crate) fn from_path(path: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| {
            path.strip_prefix(k.base_path())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    /// Query parameters the list endpoint filters on (exact match).
    pub(crate) fn filter_fields(&self) -> &'static [&'static str] {
        match self {
            Kind::PhoneNumbers => &["contact_id", "type", "number", "extension", "description"],
            Kind::Addresses => &[
                "contact_id",
                "type",
                "address",
                "country_id",
                "state_id",
                "city_id",
                "description",
            ],
            Kind::SmartNumbers => &["user_id"],
        }
    }
}

/// Exact-match filters taken from a list request's query string.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter(Vec<(&'static str, String)>, Vec<i64>);

impl Filter {
    /// Keeps the kind's filter parameters; empty values count as absent (as Laravel treats them).
    pub(crate) fn from_pairs(kind: Kind, pairs: &[(String, String)]) -> Filter {
        let mut out = Vec::new();
        for field in kind.filter_fields() {
            if let Some((_, v)) = pairs.iter().find(|(k, v)| k == field && !v.is_empty()) {
                out.push((*field, v.clone()));
            }
        }
        Filter(out, Vec::new())
    }

    /// Leaves these records out of the listing (created too recently to be indexed).
    pub(crate) fn hiding(mut self, ids: Vec<i64>) -> Filter {
        self.1 = ids;
        self
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty() && self.1.is_empty()
    }

    fn matches<R: Record>(&self, r: &R) -> bool {
        self.0.iter().all(|(f, v)| r.field_eq(f, v)) && !self.1.contains(&r.id())
    }

    /// The filter as record fields, so records created to appear in a filtered listing match it.
    pub(crate) fn as_fields(&self) -> Map<String, Value> {
        self.0
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::String(v.clone())))
            .collect()
    }
}

/// Records of one kind in listing order.
///
/// Each record gets a sequence number that increases along the listing (appends take
/// ever larger ones, front inserts ever smaller ones), so a record's position is found by
/// binary search and unfiltered pages are O(page) slices even with millions of rows.
pub(crate) struct Table<R> {
    order: VecDeque<(i64, i64)>,
    map: HashMap<i64, (i64, R)>,
    next_id: i64,
    front_seq: i64,
    back_seq: i64,
}

impl<R: Record> Table<R> {
    /// Pre-sizing with `capacity` avoids rehashing while a million seeded rows go in.
    pub(crate) fn with_capacity(first_id: i64, capacity: usize) -> Self {
        Table {
            order: VecDeque::with_capacity(capacity),
            map: HashMap::with_capacity(capacity),
            next_id: first_id,
            front_seq: -1,
            back_seq: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// Allocates the next id; ids are never reused, even after `clear`.
    pub(crate) fn alloc_id(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Lets the next id jump ahead, which gives seeded data realistic gaps.
    pub(crate) fn skip_ids(&mut self, n: i64) {
        self.next_id += n;
    }

    pub(crate) fn push_back(&mut self, r: R) {
        let seq = self.back_seq;
        self.back_seq += 1;
        self.order.push_back((seq, r.id()));
        self.map.insert(r.id(), (seq, r));
    }

    pub(crate) fn push_front(&mut self, r: R) {
        let seq = self.front_seq;
        self.front_seq -= 1;
        self.order.push_front((seq, r.id()));
        self.map.insert(r.id(), (seq, r));
    }

    pub(crate) fn get(&self, id: i64) -> Option<&R> {
        self.map.get(&id).map(|(_, r)| r)
    }

    pub(crate) fn get_mut(&mut self, id: i64) -> Option<&mut R> {
        self.map.get_mut(&id).map(|(_, r)| r)
    }

    pub(crate) fn remove(&mut self, id: i64) -> Option<R> {
        let (seq, r) = self.map.remove(&id)?;
        if let Ok(pos) = self.order.binary_search_by_key(&seq, |e| e.0) {
            self.order.remove(pos);
        }
        Some(r)
    }

    pub(crate) fn clear(&mut self) {
        self.order.clear();
        self.map.clear();
    }

    /// Ids in listing order.
    pub(crate) fn ids(&self) -> Vec<i64> {
        self.order.iter().map(|(_, id)| *id).collect()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &R> + '_ {
        self.order
            .iter()
            .filter_map(|(_, id)| self.map.get(id).map(|(_, r)| r))
    }

    /// Total matching records and the `limit` of them starting at `offset`.
    pub(crate) fn page(&self, filter: &Filter, offset: usize, limit: usize) -> (usize, Vec<R>) {
        if filter.is_empty() {
            let len = self.order.len();
            let start = offset.min(len);
            let end = offset.saturating_add(limit).min(len);
            let rows = self
                .order
                .range(start..end)
                .filter_map(|(_, id)| self.get(*id).cloned())
                .collect();
            return (len, rows);
        }
        let mut total = 0;
        let mut rows = Vec::new();
        for r in self.iter().filter(|r| filter.matches(*r)) {
            if total >= offset && rows.len() < limit {
                rows.push(r.clone());
            }
            total += 1;
        }
        (total, rows)
    }

    /// Ids of the first `limit` records matching the filter, in listing order.
    fn first_ids(&self, filter: &Filter, limit: usize) -> Vec<i64> {
        self.iter()
            .filter(|r| filter.matches(*r))
            .take(limit)
            .map(Record::id)
            .collect()
    }
}

/// Everything the sandbox stores.
pub(crate) struct Records {
    pub phones: Table<Phone>,
    pub addresses: Table<Address>,
    pub smarts: Table<Smart>,
    pub next_phone_contact_id: i64,
    /// Next free smart number, as an offset from `refdata::PHONE_X_BASE`.
    pub next_phone_x: i64,
    /// Drives records invented by the ShiftPages fault, so those are deterministic too.
    pub rng: StdRng,
}

fn now_string() -> String {
    chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string()
}

impl Records {
    pub(crate) fn count(&self, kind: Kind) -> usize {
        match kind {
            Kind::PhoneNumbers => self.phones.len(),
            Kind::Addresses => self.addresses.len(),
            Kind::SmartNumbers => self.smarts.len(),
        }
    }

    pub(crate) fn ids(&self, kind: Kind) -> Vec<i64> {
        match kind {
            Kind::PhoneNumbers => self.phones.ids(),
            Kind::Addresses => self.addresses.ids(),
            Kind::SmartNumbers => self.smarts.ids(),
        }
    }

    pub(crate) fn contains(&self, kind: Kind, id: i64) -> bool {
        match kind {
            Kind::PhoneNumbers => self.phones.get(id).is_some(),
            Kind::Addresses => self.addresses.get(id).is_some(),
            Kind::SmartNumbers => self.smarts.get(id).is_some(),
        }
    }

    /// Gives a record its server-assigned fields, then merges the caller's fields.
    fn fresh_phone(&mut self, mut p: Phone, f: &Map<String, Value>) -> Phone {
        p.id = self.phones.alloc_id();
        p.phone_contact_id = self.next_phone_contact_id;
        self.next_phone_contact_id += 1;
        p.apply(f);
        p
    }

    fn fresh_address(&mut self, mut a: Address, f: &Map<String, Value>) -> Address {
        a.id = self.addresses.alloc_id();
        a.apply(f);
        a
    }

    fn fresh_smart(&mut self, mut s: Smart, f: &Map<String, Value>) -> Smart {
        s.id = self.smarts.alloc_id();
        s.phone_x = (refdata::PHONE_X_BASE + self.next_phone_x).to_string();
        self.next_phone_x += 1;
        s.created_at = now_string();
        s.apply(f);
        s
    }

    /// Creates a record from API-named fields (server fields assigned), appended to the listing.
    pub(crate) fn insert(&mut self, kind: Kind, f: &Map<String, Value>) -> i64 {
        match kind {
            Kind::PhoneNumbers => {
                let r = self.fresh_phone(Phone::blank(), f);
                let id = r.id;
                self.phones.push_back(r);
                id
            }
            Kind::Addresses => {
                let r = self.fresh_address(Address::blank(), f);
                let id = r.id;
                self.addresses.push_back(r);
                id
            }
            Kind::SmartNumbers => {
                let r = self.fresh_smart(Smart::blank(), f);
                let id = r.id;
                self.smarts.push_back(r);
                id
            }
        }
    }

    pub(crate) fn update(&mut self, kind: Kind, id: i64, f: &Map<String, Value>) -> bool {
        match kind {
            Kind::PhoneNumbers => self.phones.get_mut(id).map(|r| r.apply(f)).is_some(),
            Kind::Addresses => self.addresses.get_mut(id).map(|r| r.apply(f)).is_some(),
            Kind::SmartNumbers => self.smarts.get_mut(id).map(|r| r.apply(f)).is_some(),
        }
    }

    pub(crate) fn delete(&mut self, kind: Kind, id: i64) -> bool {
        match kind {
            Kind::PhoneNumbers => self.phones.remove(id).is_some(),
            Kind::Addresses => self.addresses.remove(id).is_some(),
            Kind::SmartNumbers => self.smarts.remove(id).is_some(),
        }
    }

    pub(crate) fn clear(&mut self, kind: Kind) {
        match kind {
            Kind::PhoneNumbers => self.phones.clear(),
            Kind::Addresses => self.addresses.clear(),
            Kind::SmartNumbers => self.smarts.clear(),
        }
    }

    /// The ShiftPages fault: deletes up to `delete` records among the first `earlier` of the
    /// (filtered) listing, then puts `insert` new records matching the filter at its front.
    pub(crate) fn shift_pages(
        &mut self,
        kind: Kind,
        filter: &Filter,
        earlier: usize,
        delete: usize,
        insert: usize,
    ) {
        let n = delete.min(earlier);
        let doomed = match kind {
            Kind::PhoneNumbers => self.phones.first_ids(filter, n),
            Kind::Addresses => self.addresses.first_ids(filter, n),
            Kind::SmartNumbers => self.smarts.first_ids(filter, n),
        };
        for id in doomed {
            self.delete(kind, id);
        }
        let forced = filter.as_fields();
        for _ in 0..insert {
            match kind {
                Kind::PhoneNumbers => {
                    let base = seed::phone(&mut self.rng);
                    let r = self.fresh_phone(base, &forced);
                    self.phones.push_front(r);
                }
                Kind::Addresses => {
                    let base = seed::address(&mut self.rng);
                    let r = self.fresh_address(base, &forced);
                    self.addresses.push_front(r);
                }
                Kind::SmartNumbers => {
                    let base = seed::smart(&mut self.rng);
                    let r = self.fresh_smart(base, &forced);
                    self.smarts.push_front(r);
                }
            }
        }
    }
}
