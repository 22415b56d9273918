//! Fixed reference data of the emulated upstreams: Firstline's geography and Plusofon's users.

/// A Firstline "state" (a Taiwanese city or county, 城市).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StateRow {
    pub id: i64,
    pub name: &'static str,
}

/// A Firstline "city" (a district, 區域) with its postal code.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CityRow {
    pub id: i64,
    pub state_id: i64,
    pub name: &'static str,
    pub zipcode: &'static str,
}

/// The only country the emulated Firstline knows.
pub(crate) const COUNTRY_ID: i64 = 1;
pub(crate) const COUNTRY_NAME: &str = "台灣";

/// States; ids 1 (台北市) and 2 (基隆市) match the API document's examples.
pub(crate) const STATES: &[StateRow] = &[
    StateRow {
        id: 1,
        name: "台北市",
    },
    StateRow {
        id: 2,
        name: "基隆市",
    },
    StateRow {
        id: 3,
        name: "新北市",
    },
    StateRow {
        id: 4,
        name: "桃園市",
    },
    StateRow {
        id: 5,
        name: "台中市",
    },
    StateRow {
        id: 6,
        name: "台南市",
    },
    StateRow {
        id: 7,
        name: "高雄市",
    },
];

const fn city(id: i64, state_id: i64, name: &'static str, zipcode: &'static str) -> CityRow {
    CityRow {
        id,
        state_id,
        name,
        zipcode,
    }
}

/// Districts; city 1 is 基隆市仁愛區 (zipcode 200) as in the document's search example.
/// Ids are dense from 1 so `city_by_id` can index directly.
pub(crate) const CITIES: &[CityRow] = &[
    city(1, 2, "仁愛區", "200"),
    city(2, 2, "信義區", "201"),
    city(3, 2, "中正區", "202"),
    city(4, 2, "中山區", "203"),
    city(5, 2, "安樂區", "204"),
    city(6, 2, "暖暖區", "205"),
    city(7, 2, "七堵區", "206"),
    city(8, 1, "中正區", "100"),
    city(9, 1, "大同區", "103"),
    city(10, 1, "中山區", "104"),
    city(11, 1, "松山區", "105"),
    city(12, 1, "大安區", "106"),
    city(13, 1, "萬華區", "108"),
    city(14, 1, "信義區", "110"),
    city(15, 1, "士林區", "111"),
    city(16, 1, "北投區", "112"),
    city(17, 1, "內湖區", "114"),
    city(18, 1, "南港區", "115"),
    city(19, 1, "文山區", "116"),
    city(20, 3, "板橋區", "220"),
    city(21, 3, "三重區", "241"),
    city(22, 3, "中和區", "235"),
    city(23, 3, "永和區", "234"),
    city(24, 3, "新莊區", "242"),
    city(25, 3, "新店區", "231"),
    city(26, 3, "淡水區", "251"),
    city(27, 4, "桃園區", "330"),
    city(28, 4, "中壢區", "320"),
    city(29, 4, "平鎮區", "324"),
    city(30, 5, "中區", "400"),
    city(31, 5, "東區", "401"),
    city(32, 5, "西區", "403"),
    city(33, 5, "北區", "404"),
    city(34, 5, "北屯區", "406"),
    city(35, 5, "西屯區", "407"),
    city(36, 5, "南屯區", "408"),
    city(37, 6, "中西區", "700"),
    city(38, 6, "東區", "701"),
    city(39, 6, "安平區", "708"),
    city(40, 7, "新興區", "800"),
    city(41, 7, "前金區", "801"),
    city(42, 7, "苓雅區", "802"),
    city(43, 7, "鼓山區", "804"),
    city(44, 7, "三民區", "807"),
    city(45, 7, "左營區", "813"),
    city(46, 7, "前鎮區", "806"),
];

/// Street names used when seeding addresses, per state id.
pub(crate) fn streets(state_id: i64) -> &'static [&'static str] {
    match state_id {
        1 => &[
            "松仁路",
            "信義路五段",
            "忠孝東路四段",
            "仁愛路三段",
            "敦化南路一段",
            "南京東路三段",
            "羅斯福路四段",
            "中山北路二段",
            "民生東路五段",
            "內湖路一段",
        ],
        2 => &["愛一路", "愛二路", "仁二路", "信一路", "中正路", "安樂路二段"],
        3 => &["文化路一段", "中山路二段", "重新路四段", "中正路", "北新路三段"],
        4 => &["中正路", "中山東路", "環北路", "民族路"],
        5 => &[
            "台灣大道三段",
            "文心路二段",
            "公益路",
            "五權西路一段",
            "崇德路二段",
        ],
        6 => &["民生路二段", "中華東路一段", "安平路", "府前路一段"],
        _ => &["中山一路", "五福三路", "博愛二路", "中華五路", "自由一路"],
    }
}

pub(crate) fn state_by_id(id: i64) -> Option<&'static StateRow> {
    STATES.iter().find(|s| s.id == id)
}

pub(crate) fn city_by_id(id: i64) -> Option<&'static CityRow> {
    let idx = usize::try_from(id.checked_sub(1)?).ok()?;
    CITIES.get(idx).filter(|c| c.id == id)
}

pub(crate) fn country_exists(id: i64) -> bool {
    id == COUNTRY_ID
}

/// Address type keys (`enum_type`) for types 0..=5, with Laravel-enum style descriptions.
pub(crate) fn address_type(t: i64) -> Option<(&'static str, &'static str)> {
    Some(match t {
        0 => ("HOME", "home address"),
        1 => ("MAILING", "mail address"),
        2 => ("BILLING", "billing address"),
        3 => ("DELIVERY", "delivery address"),
        4 => ("RESIDENCE", "residence address"),
        5 => ("OTHER", "other address"),
        _ => return None,
    })
}

/// Plusofon users of the sandbox account, each with its fixed outgoing number (phoneA).
/// User 40's number is the one shown in the API document.
pub(crate) const USERS: &[(i64, &str)] = &[
    (12, "79991230018"),
    (15, "79991230025"),
    (40, "79991230046"),
    (41, "79991230051"),
    (42, "79991230063"),
    (43, "79991230077"),
];

pub(crate) fn user_phone(user_id: i64) -> Option<&'static str> {
    USERS.iter().find(|(id, _)| *id == user_id).map(|(_, p)| *p)
}

/// First number of the smart-number pool; phoneX values are `PHONE_X_BASE + n`.
pub(crate) const PHONE_X_BASE: i64 = 79_770_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn city_ids_are_dense_and_states_exist() {
        for (i, c) in CITIES.iter().enumerate() {
            assert_eq!(c.id, i as i64 + 1);
            assert!(state_by_id(c.state_id).is_some());
            assert!(city_by_id(c.id).is_some());
        }
        assert!(city_by_id(0).is_none());
        assert!(city_by_id(CITIES.len() as i64 + 1).is_none());
    }
}
