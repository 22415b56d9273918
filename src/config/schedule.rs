//! Schedules: six-field cron with seconds, or an ordinary five-field crontab line. Both
//! number the days of the week as crontab does (0 and 7 Sunday, 1 Monday; names MON..SUN),
//! so a six-field line and its five-field equivalent fire at the same instants; the cron
//! crate counts 1-7 from Sunday, so the field is translated.

use std::str::FromStr;

/// When a schedule fires. Crontab runs a line whose day-of-month and day-of-week are both
/// restricted on either day (`0 9 1 * 1`: the 1st, and every Monday); the cron crate wants
/// both, so such a line is kept as two schedules whose times are merged.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    parts: Vec<cron::Schedule>,
}

impl Schedule {
    /// The times strictly after `t`, in `t`'s zone, in order.
    pub fn after<'a, Z: chrono::TimeZone + 'a>(
        &'a self,
        t: &chrono::DateTime<Z>,
    ) -> impl Iterator<Item = chrono::DateTime<Z>> + 'a {
        let mut streams: Vec<_> = self.parts.iter().map(|p| p.after(t).peekable()).collect();
        std::iter::from_fn(move || {
            let next = streams.iter_mut().filter_map(|s| s.peek().cloned()).min()?;
            for s in streams.iter_mut() {
                while s.peek() == Some(&next) {
                    s.next();
                }
            }
            Some(next)
        })
    }

    /// The times from now on, in `zone`.
    pub fn upcoming<'a, Z: chrono::TimeZone + 'a>(
        &'a self,
        zone: Z,
    ) -> impl Iterator<Item = chrono::DateTime<Z>> + 'a {
        let now = chrono::Utc::now().with_timezone(&zone);
        self.after(&now)
    }
}

/// Parses a cron schedule with seconds (six or seven fields, the seventh a year) or an
/// ordinary five-field crontab line, which runs at second 0.
pub fn parse_schedule(s: &str) -> Result<Schedule, String> {
    let mut fields: Vec<String> = s.split_whitespace().map(str::to_string).collect();
    if fields.len() == 5 {
        fields.insert(0, "0".into());
    }
    if let Some(dow) = fields.get_mut(5) {
        *dow = crontab_day_of_week(dow).ok_or_else(|| format!("{s:?}: bad day-of-week field"))?;
    }
    let parse = |fields: &[String]| {
        cron::Schedule::from_str(&fields.join(" ")).map_err(|e| {
            format!(
                "{s:?} is not a valid cron schedule: {}",
                cron_problem(&e.to_string())
            )
        })
    };
    let restricted = |f: Option<&String>| f.is_some_and(|f| f != "*" && f != "?");
    let parts = if restricted(fields.get(3)) && restricted(fields.get(5)) {
        // Either day, as crontab reads it.
        let (mut by_date, mut by_weekday) = (fields.clone(), fields.clone());
        by_date[5] = "*".into();
        by_weekday[3] = "*".into();
        vec![parse(&by_date)?, parse(&by_weekday)?]
    } else {
        vec![parse(&fields)?]
    };
    Ok(Schedule { parts })
}

/// Crontab numbers days 0-7 from Sunday (0 and 7 both Sunday); the cron crate numbers
/// them 1-7 from Sunday. Names and `*` mean the same in both.
fn crontab_day_of_week(field: &str) -> Option<String> {
    let day = |d: &str| -> Option<u32> {
        match d.parse::<u32>() {
            Ok(n) if n <= 7 => Some(n % 7 + 1),
            Ok(_) => None,
            Err(_) => Some(0),
        }
    };
    let mut out = Vec::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, st)) => (r, Some(st)),
            None => (item, None),
        };
        let step = step.map(|st| format!("/{st}")).unwrap_or_default();
        let converted = match range.split_once('-') {
            _ if range == "*" || range.chars().any(|c| c.is_ascii_alphabetic()) => format!("{range}{step}"),
            Some((a, b)) => {
                let (from, to) = (day(a)?, day(b)?);
                // `5-7` (Fri-Sun) ends on Sunday, which the cron crate numbers first.
                if b.trim() == "7" && from > 1 {
                    format!("{from}-7{step},1")
                } else if b.trim() == "7" {
                    format!("1-7{step}")
                } else {
                    format!("{from}-{to}{step}")
                }
            }
            None => format!("{}{step}", day(range)?),
        };
        out.push(converted);
    }
    Some(out.join(","))
}

/// The cron crate's message, shortly: without the echoed expression, and with its bound
/// said as it is meant ("Hours must be less than 23" means 23 is the largest allowed).
fn cron_problem(message: &str) -> String {
    let last = message.lines().last().unwrap_or(message).trim();
    last.replace("must be less than", "must be at most")
        .trim_end_matches('.')
        .replace(". (", " (")
        .trim_end_matches(')')
        .replace(" (", ", ")
}
