//! Deterministic, realistic seed data: Taiwanese phones and addresses, Russian smart numbers.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

use super::records::{Address, Phone, Smart};
use super::refdata;
use super::state::{Records, Table};

/// Customer (contact) ids live in this range, like the document's 1935038 and 1938277.
const CONTACTS: std::ops::Range<i64> = 1_930_000..1_990_000;

const PHONE_DESCRIPTIONS: &[&str] = &[
    "公司總機",
    "住家電話",
    "私人手機",
    "公司傳真",
    "備用號碼",
    "請於上班時間聯絡",
    "晚上七點後再撥",
    "秘書代接",
    "緊急聯絡人",
    "老家電話",
];

const ADDRESS_DESCRIPTIONS: &[&str] = &[
    "公司地址",
    "帳單寄送地址",
    "老家",
    "請勿寄送平信",
    "收件人：王小明",
    "管理室代收",
    "週末不在家",
];

const SMART_DESCRIPTIONS: &[&str] = &[
    "тестовый умный номер",
    "Отдел продаж",
    "Бухгалтерия",
    "Служба поддержки",
    "Курьерская доставка",
    "Объявление на Авито",
    "Горячая линия",
    "Менеджер Иван",
    "Склад",
    "Реклама в Яндекс.Директ",
];

fn digits(rng: &mut StdRng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

fn pick<'a>(rng: &mut StdRng, items: &'a [&'a str]) -> &'a str {
    items.choose(rng).copied().unwrap_or_default()
}

fn mobile(rng: &mut StdRng) -> String {
    let rest = digits(rng, 8);
    if rng.random_bool(0.8) {
        format!("09{rest}")
    } else {
        format!("09{}-{}-{}", &rest[..2], &rest[2..5], &rest[5..])
    }
}

fn landline(rng: &mut StdRng) -> String {
    // Taipei (02) and Taichung (04) have 8-digit local numbers, the others 7.
    let area = pick(rng, &["02", "02", "02", "03", "04", "05", "06", "07", "08"]);
    let (head, tail) = if matches!(area, "02" | "04") {
        (
            format!("{}{}", rng.random_range(2..10u8), digits(rng, 3)),
            digits(rng, 4),
        )
    } else {
        (
            format!("{}{}", rng.random_range(2..10u8), digits(rng, 2)),
            digits(rng, 4),
        )
    };
    match rng.random_range(0..4u8) {
        0 => format!("({area}){head}-{tail}"),
        1 => format!("{area}{head}{tail}"),
        _ => format!("{area}-{head}-{tail}"),
    }
}

/// A random phone number record (ids not assigned).
pub(crate) fn phone(rng: &mut StdRng) -> Phone {
    let type_ = rng.random_range(0..5i64);
    let number = match type_ {
        2 => mobile(rng),
        4 if rng.random_bool(0.5) => mobile(rng),
        _ => landline(rng),
    };
    let extension = (type_ == 1 && rng.random_bool(0.5)).then(|| {
        let n = rng.random_range(2..5usize);
        digits(rng, n)
    });
    let description = rng
        .random_bool(0.35)
        .then(|| pick(rng, PHONE_DESCRIPTIONS).to_string());
    let contact_id = rng.random_range(CONTACTS);
    Phone {
        contact_id,
        type_,
        number,
        extension,
        description,
        profile_id: contact_id - 30,
        ..Phone::blank()
    }
}

/// A random Taiwanese address record (id not assigned).
pub(crate) fn address(rng: &mut StdRng) -> Address {
    let type_ = rng.random_range(0..6i64);
    let contact_id = rng.random_range(CONTACTS);
    let description = rng
        .random_bool(0.2)
        .then(|| pick(rng, ADDRESS_DESCRIPTIONS).to_string());
    let Some(city) = refdata::CITIES.choose(rng).copied() else {
        return Address::blank();
    };
    let state_name = refdata::state_by_id(city.state_id).map_or("", |s| s.name);
    let street = pick(rng, refdata::streets(city.state_id));
    let mut line = String::new();
    if rng.random_bool(0.25) {
        line.push_str(&format!("{}巷", rng.random_range(1..200u32)));
        if rng.random_bool(0.4) {
            line.push_str(&format!("{}弄", rng.random_range(1..30u32)));
        }
    }
    line.push_str(&format!("{}號", rng.random_range(1..400u32)));
    if rng.random_bool(0.6) {
        line.push_str(&format!("{}樓", rng.random_range(2..25u32)));
        if rng.random_bool(0.2) {
            line.push_str(pick(rng, &["之一", "之二", "之三"]));
        }
    }
    let roll = rng.random_range(0..100u8);
    let (address, geo) = if roll < 5 {
        // Some contacts only gave a street; the clerk left the geography empty.
        (format!("{street}{line}"), false)
    } else if roll < 20 {
        (format!("{street}{line}"), true)
    } else {
        (format!("{state_name}{}{street}{line}", city.name), true)
    };
    Address {
        contact_id,
        type_,
        address,
        country_id: geo.then_some(refdata::COUNTRY_ID),
        state_id: geo.then_some(city.state_id),
        city_id: geo.then_some(city.id),
        description,
        profile_id: contact_id - 30,
        ..Address::blank()
    }
}

/// A random smart number (id, phoneX and created_at not assigned).
pub(crate) fn smart(rng: &mut StdRng) -> Smart {
    let (user_id, phone_a) = refdata::USERS.choose(rng).copied().unwrap_or((40, "79991230046"));
    let phone_b = match rng.random_range(0..10u8) {
        0..=5 => format!("7999{}", digits(rng, 7)),
        6 => format!("7916{}", digits(rng, 7)),
        7 => format!("7495{}", digits(rng, 7)),
        8 => format!("374{}", digits(rng, 8)),
        _ => format!("995{}", digits(rng, 9)),
    };
    let description = rng.random_bool(0.9).then(|| {
        let d = pick(rng, SMART_DESCRIPTIONS);
        if rng.random_bool(0.2) {
            format!("{d}{}", rng.random_range(2..10u8))
        } else {
            d.to_string()
        }
    });
    Smart {
        user_id,
        phone_a: phone_a.to_string(),
        phone_b,
        description,
        ..Smart::blank()
    }
}

/// Seconds of 2022-01-01T00:00:00Z and the length of 2022..=2024.
const CREATED_START: i64 = 1_640_995_200;
const CREATED_SPAN: i64 = 94_694_400;

/// `YYYY-MM-DD HH:MM:SS` of a Unix time; hand-rolled because chrono's formatter dominated
/// the time to seed a million rows.
fn timestamp(secs: i64) -> String {
    use chrono::{Datelike, Timelike};
    let Some(d) = chrono::DateTime::from_timestamp(secs, 0) else {
        return String::new();
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        d.year(),
        d.month(),
        d.day(),
        d.hour(),
        d.minute(),
        d.second()
    )
}

fn seed_phones(seed: u64, records: usize) -> (Table<Phone>, i64) {
    let mut phones = Table::with_capacity(0, records);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x7068_6f6e_6573);
    phones.skip_ids(2_400 + rng.random_range(0..100));
    let mut phone_contact_id = 100 + rng.random_range(0..50);
    for _ in 0..records {
        let mut p = phone(&mut rng);
        p.id = phones.alloc_id();
        p.phone_contact_id = phone_contact_id;
        phones.push_back(p);
        phones.skip_ids(rng.random_range(0..3));
        phone_contact_id += rng.random_range(1..3);
    }
    (phones, phone_contact_id)
}

fn seed_addresses(seed: u64, records: usize) -> Table<Address> {
    let mut addresses = Table::with_capacity(0, records);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6164_6472_6573);
    addresses.skip_ids(2_600 + rng.random_range(0..100));
    for _ in 0..records {
        let mut a = address(&mut rng);
        a.id = addresses.alloc_id();
        addresses.push_back(a);
        addresses.skip_ids(rng.random_range(0..3));
    }
    addresses
}

fn seed_smarts(seed: u64, records: usize) -> (Table<Smart>, i64) {
    let mut smarts = Table::with_capacity(0, records);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x736d_6172_7473);
    smarts.skip_ids(1_000 + rng.random_range(0..100));
    let mut phone_x = 5_000 + rng.random_range(0..500);
    // Creation times walk forward so the whole seed spans 2022-2024 whatever its size.
    let max_step = (CREATED_SPAN * 19 / 10 / records.max(1) as i64).max(1);
    let mut created = CREATED_START + rng.random_range(0..86_400);
    for _ in 0..records {
        let mut s = smart(&mut rng);
        s.id = smarts.alloc_id();
        s.phone_x = (refdata::PHONE_X_BASE + phone_x).to_string();
        s.created_at = timestamp(created);
        smarts.push_back(s);
        smarts.skip_ids(rng.random_range(0..3));
        phone_x += rng.random_range(1..5);
        created += rng.random_range(1..=max_step);
    }
    (smarts, phone_x)
}

/// The sandbox's initial data. Each kind draws from its own random stream (so `records`
/// for one kind never changes another's data) and is built on its own thread.
pub(crate) fn seeded_state(seed: u64, records: usize) -> Records {
    let ((phones, next_phone_contact_id), addresses, (smarts, next_phone_x)) = std::thread::scope(|s| {
        let p = s.spawn(|| seed_phones(seed, records));
        let a = s.spawn(|| seed_addresses(seed, records));
        let m = seed_smarts(seed, records);
        // A seeding thread can only fail by panicking; re-raise it on this thread.
        let p = p.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        let a = a.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        (p, a, m)
    });
    Records {
        phones,
        addresses,
        smarts,
        next_phone_contact_id,
        next_phone_x,
        rng: StdRng::seed_from_u64(seed ^ 0x7368_6966_7473),
    }
}
