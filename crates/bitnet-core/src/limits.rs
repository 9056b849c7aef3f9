//! Checks of numeric settings whose message names the flag, its value and the allowed range.

/// `Err("{flag} is {value}; it must be at least {min}")` for the first `(flag, value, min)` below
/// its minimum.
pub fn at_least(checks: &[(&str, u64, u64)]) -> Result<(), String> {
    match checks.iter().find(|(_, value, min)| value < min) {
        Some((flag, value, min)) => Err(format!("{flag} is {value}; it must be at least {min}")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_the_first_flag_below_its_minimum() {
        assert_eq!(super::at_least(&[("--a", 1, 1), ("--b", 5, 2)]), Ok(()));
        assert_eq!(
            super::at_least(&[("--a", 1, 1), ("--b", 0, 1), ("--c", 0, 2)]),
            Err("--b is 0; it must be at least 1".into())
        );
    }
}
