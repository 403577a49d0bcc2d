//! `--expires 2027-12-31`: a license stays valid through that whole UTC day.

use semiclass_manifest::checkpoint::rfc3339_utc;

use crate::error::IssuerError;

/// Unix seconds of the end of `date` (`YYYY-MM-DD`, UTC), i.e. the start
/// of the next day.
pub fn end_of_day(date: &str) -> Result<u64, IssuerError> {
    let bad = || IssuerError::BadDate {
        text: date.to_string(),
    };
    let parts: Vec<&str> = date.trim().split('-').collect();
    let [y, m, d] = parts[..] else {
        return Err(bad());
    };
    let number = |s: &str, len: usize| (s.len() == len).then(|| s.parse::<u64>().ok()).flatten();
    let (y, m, d) = (
        number(y, 4).ok_or_else(bad)?,
        number(m, 2).ok_or_else(bad)?,
        number(d, 2).ok_or_else(bad)?,
    );
    if y < 1970 || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let start = days_from_civil(y, m, d) * 86_400;
    // 2027-02-30 would land in March: the round trip finds such dates.
    if !rfc3339_utc(start).starts_with(date.trim()) {
        return Err(bad());
    }
    Ok(start + 86_400)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`, the inverse of the manifest's `civil_from_days`).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_ends_at_the_next_midnight_utc() {
        assert_eq!(end_of_day("1970-01-01").unwrap(), 86_400);
        // `date -u -d 2000-03-01 +%s` = 951868800
        assert_eq!(end_of_day("2000-02-29").unwrap(), 951_868_800);
        assert_eq!(
            rfc3339_utc(end_of_day("2027-12-31").unwrap()),
            "2028-01-01T00:00:00Z"
        );
    }

    #[test]
    fn impossible_dates_are_refused() {
        for bad in [
            "2027-02-30",
            "2027-13-01",
            "2027-1-1",
            "27-01-01",
            "2027/01/01",
            "1969-12-31",
            "tomorrow",
        ] {
            assert!(
                matches!(end_of_day(bad), Err(IssuerError::BadDate { .. })),
                "{bad}"
            );
        }
    }
}
