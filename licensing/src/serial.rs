//! Serial numbers: 95 random bits and one check character in Crockford
//! base32, shown as five groups of four (`CG56-GDGD-ZXVK-F7CR-0Q2B`).
//!
//! A serial is only a lookup handle for the issuer; it proves nothing by
//! itself. The check character lets the SDK refuse a typo before anything
//! is sent or written: it is the value of the serial read as a polynomial
//! over GF(32) (a Damm-style check with the quasigroup `x*y = 2x + y`). Every
//! position has a distinct power of the field generator as its weight and
//! that generator has order 31 > 20, so every single-character substitution
//! and every swap of two different characters (adjacent or not) changes the
//! check.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Crockford's base32 alphabet: no I, L, O, U.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Random symbols; 19 * 5 = 95 bits of entropy.
const DATA_SYMBOLS: usize = 19;
const SYMBOLS: usize = DATA_SYMBOLS + 1;
const GROUP: usize = 4;

/// A well-formed serial (its check character matches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial([u8; SYMBOLS]);

/// Why a typed serial was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SerialError {
    #[error(
        "serial has {found} characters, expected {SYMBOLS} (five groups of four, like CG56-GDGD-ZXVK-F7CR-0Q2B)"
    )]
    Length { found: usize },
    #[error(
        "serial: {ch:?} at character {position} cannot appear in a serial (digits and letters except U)"
    )]
    Character { ch: char, position: usize },
    #[error("serial check character does not match: a character is mistyped or two are swapped")]
    Check,
}

impl Serial {
    /// A serial from 12 random bytes (the first 95 bits are used).
    pub fn from_entropy(entropy: &[u8; 12]) -> Serial {
        let bits = u128::from_be_bytes(pad16(entropy));
        let mut symbols = [0u8; SYMBOLS];
        for (i, symbol) in symbols[..DATA_SYMBOLS].iter_mut().enumerate() {
            *symbol = ((bits >> (123 - 5 * i)) & 31) as u8;
        }
        symbols[DATA_SYMBOLS] = check_symbol(&symbols[..DATA_SYMBOLS]);
        Serial(symbols)
    }
}

fn pad16(bytes: &[u8; 12]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..12].copy_from_slice(bytes);
    out
}

/// Multiplication by the generator `x` in GF(2^5) modulo x^5 + x^2 + 1.
fn times_x(v: u8) -> u8 {
    let shifted = v << 1;
    if shifted & 32 != 0 {
        shifted ^ 0b10_0101
    } else {
        shifted
    }
}

/// The symbol that makes `fold(data + [check]) == 0`.
fn check_symbol(data: &[u8]) -> u8 {
    times_x(fold(data))
}

fn fold(symbols: &[u8]) -> u8 {
    symbols.iter().fold(0, |acc, &s| times_x(acc) ^ s)
}

/// The value of a typed character; Crockford's aliases (I, L -> 1, O -> 0)
/// and lower case are accepted because people copy serials by hand.
fn symbol_value(ch: char) -> Option<u8> {
    let ch = match ch.to_ascii_uppercase() {
        'I' | 'L' => '1',
        'O' => '0',
        other => other,
    };
    ALPHABET
        .iter()
        .position(|&a| char::from(a) == ch)
        .map(|v| v as u8)
}

impl FromStr for Serial {
    type Err = SerialError;

    /// Parses a typed serial; hyphens and spaces anywhere are ignored.
    fn from_str(text: &str) -> Result<Serial, SerialError> {
        let typed: Vec<char> = text.chars().filter(|c| !matches!(c, '-' | ' ')).collect();
        if typed.len() != SYMBOLS {
            return Err(SerialError::Length { found: typed.len() });
        }
        let mut symbols = [0u8; SYMBOLS];
        for (i, (&ch, symbol)) in typed.iter().zip(&mut symbols).enumerate() {
            *symbol = symbol_value(ch).ok_or(SerialError::Character {
                ch,
                position: i + 1,
            })?;
        }
        if check_symbol(&symbols[..DATA_SYMBOLS]) != symbols[DATA_SYMBOLS] {
            return Err(SerialError::Check);
        }
        Ok(Serial(symbols))
    }
}

impl fmt::Display for Serial {
    /// The canonical form: upper case, groups of four joined by hyphens.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &symbol) in self.0.iter().enumerate() {
            if i > 0 && i % GROUP == 0 {
                f.write_str("-")?;
            }
            write!(f, "{}", char::from(ALPHABET[usize::from(symbol)]))?;
        }
        Ok(())
    }
}

impl Serialize for Serial {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Serial {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Serial, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_shown_to_users_is_a_valid_serial() {
        let example: Serial = "CG56-GDGD-ZXVK-F7CR-0Q2B".parse().unwrap();
        assert_eq!(example.to_string(), "CG56-GDGD-ZXVK-F7CR-0Q2B");
    }

    fn sample(seed: u8) -> Serial {
        let mut entropy = [0u8; 12];
        for (i, b) in entropy.iter_mut().enumerate() {
            *b = seed
                .wrapping_mul(31)
                .wrapping_add((i as u8).wrapping_mul(97));
        }
        Serial::from_entropy(&entropy)
    }

    fn compact(serial: Serial) -> Vec<char> {
        serial.to_string().chars().filter(|&c| c != '-').collect()
    }

    #[test]
    fn round_trips_in_groups_of_four() {
        let serial = sample(7);
        let text = serial.to_string();
        assert_eq!(text.len(), 24);
        assert!(text.split('-').all(|g| g.len() == 4), "{text}");
        assert_eq!(text.parse::<Serial>(), Ok(serial));
    }

    #[test]
    fn accepts_lower_case_aliases_and_spaces() {
        let serial: Serial = "0000-0000-0000-0000-0000".parse().unwrap();
        assert_eq!("oooo-oooo-oooo-oooo-oooo".parse::<Serial>(), Ok(serial));
        let mut aliased = 0;
        for seed in 0..64 {
            let canonical = sample(seed).to_string();
            let text = canonical
                .to_lowercase()
                .replacen('1', "l", 1)
                .replace('1', "I")
                .replace('0', "o");
            aliased += usize::from(text != canonical.to_lowercase());
            assert_eq!(text.parse::<Serial>(), Ok(sample(seed)), "{text}");
        }
        assert!(aliased > 10, "too few samples hold a 0 or a 1");
    }

    #[test]
    fn every_single_substitution_is_caught() {
        for seed in 0..8 {
            let chars = compact(sample(seed));
            for position in 0..SYMBOLS {
                for &other in ALPHABET {
                    let mut typo = chars.clone();
                    if typo[position] == char::from(other) {
                        continue;
                    }
                    typo[position] = char::from(other);
                    let text: String = typo.into_iter().collect();
                    assert_eq!(text.parse::<Serial>(), Err(SerialError::Check), "{text}");
                }
            }
        }
    }

    #[test]
    fn every_swap_of_two_different_characters_is_caught() {
        for seed in 0..32 {
            let chars = compact(sample(seed));
            for i in 0..SYMBOLS {
                for j in i + 1..SYMBOLS {
                    if chars[i] == chars[j] {
                        continue;
                    }
                    let mut swapped = chars.clone();
                    swapped.swap(i, j);
                    let text: String = swapped.into_iter().collect();
                    assert_eq!(text.parse::<Serial>(), Err(SerialError::Check), "{text}");
                }
            }
        }
    }

    #[test]
    fn malformed_input_is_named() {
        assert_eq!(
            "ABCD-EFGH".parse::<Serial>(),
            Err(SerialError::Length { found: 8 })
        );
        let mut text = sample(1).to_string();
        text.replace_range(5..6, "U");
        let err = text.parse::<Serial>().unwrap_err();
        assert_eq!(
            err,
            SerialError::Character {
                ch: 'U',
                position: 5
            }
        );
        assert!(err.to_string().contains("'U' at character 5"), "{err}");
    }

    #[test]
    fn serde_uses_the_canonical_text() {
        let serial = sample(9);
        let json = serde_json::to_string(&serial).unwrap();
        assert_eq!(json, format!("\"{serial}\""));
        assert_eq!(serde_json::from_str::<Serial>(&json).unwrap(), serial);
        assert!(serde_json::from_str::<Serial>("\"ABCD\"").is_err());
    }
}
