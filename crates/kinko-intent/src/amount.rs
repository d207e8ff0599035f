//! Exact 256-bit amounts in base units.

use std::fmt;
use std::str::FromStr;

use ruint::aliases::U256;

/// Errors parsing an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AmountError {
    /// Not a canonical decimal integer (digits only, no sign, no leading zeros, at most 78 digits).
    #[error("invalid amount {0:?}: expected a decimal integer of base units")]
    Invalid(String),
    /// Larger than 2^256 − 1.
    #[error("amount {0:?} does not fit in 256 bits")]
    Overflow(String),
    /// A decimal amount had more fractional digits than the asset's decimals.
    #[error("amount {0:?} has more fractional digits than the asset's {1} decimals")]
    TooPrecise(String, u8),
}

/// An exact amount in an asset's smallest unit (wei, satoshi, lamport, token base unit).
/// Serialized as a canonical decimal string; no floats anywhere.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(U256);

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount(U256::ZERO);
    /// The largest amount, 2^256 − 1.
    pub const MAX: Amount = Amount(U256::MAX);

    /// From a `u64`.
    pub fn from_u64(v: u64) -> Self {
        Amount(U256::from(v))
    }
    /// From a `u128`.
    pub fn from_u128(v: u128) -> Self {
        Amount(U256::from(v))
    }
    /// From 32 big-endian bytes.
    pub fn from_be_bytes(b: [u8; 32]) -> Self {
        Amount(U256::from_be_bytes(b))
    }
    /// To 32 big-endian bytes.
    pub fn to_be_bytes(&self) -> [u8; 32] {
        self.0.to_be_bytes()
    }
    /// The value as a `u64`, if it fits.
    pub fn to_u64(&self) -> Option<u64> {
        u64::try_from(self.0).ok()
    }
    /// `self + rhs`, or `None` on overflow.
    pub fn checked_add(self, rhs: Amount) -> Option<Amount> {
        self.0.checked_add(rhs.0).map(Amount)
    }
    /// `self − rhs`, or `None` when `rhs > self`.
    pub fn checked_sub(self, rhs: Amount) -> Option<Amount> {
        self.0.checked_sub(rhs.0).map(Amount)
    }
    /// `self × rhs`, or `None` on overflow.
    pub fn checked_mul(self, rhs: Amount) -> Option<Amount> {
        self.0.checked_mul(rhs.0).map(Amount)
    }
    /// Whether the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    /// Renders with a decimal point: `1500000000000000000` with 18 decimals is `1.5`.
    pub fn format_units(&self, decimals: u8) -> String {
        let digits = self.0.to_string();
        let d = usize::from(decimals);
        if d == 0 {
            return digits;
        }
        let padded = if digits.len() <= d {
            format!("{}{}", "0".repeat(d - digits.len() + 1), digits)
        } else {
            digits
        };
        let (int, frac) = padded.split_at(padded.len() - d);
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            int.to_string()
        } else {
            format!("{int}.{frac}")
        }
    }

    /// Parses a human amount with up to `decimals` fractional digits (`"1.5"` → 1.5 × 10^decimals).
    /// Also accepts plain integers. Used by policy files and the CLI.
    pub fn parse_units(s: &str, decimals: u8) -> Result<Amount, AmountError> {
        let bad = || AmountError::Invalid(s.to_string());
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        if s.contains('.') && (frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit())) {
            return Err(bad());
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > usize::from(decimals) {
            return Err(AmountError::TooPrecise(s.to_string(), decimals));
        }
        let int = int.trim_start_matches('0');
        let mut digits = String::with_capacity(int.len() + usize::from(decimals));
        digits.push_str(int);
        digits.push_str(frac);
        digits.push_str(&"0".repeat(usize::from(decimals) - frac.len()));
        let digits = digits.trim_start_matches('0');
        if digits.is_empty() {
            return Ok(Amount::ZERO);
        }
        if digits.len() > 78 {
            return Err(AmountError::Overflow(s.to_string()));
        }
        U256::from_str_radix(digits, 10)
            .map(Amount)
            .map_err(|_| AmountError::Overflow(s.to_string()))
    }
}

impl From<U256> for Amount {
    fn from(v: U256) -> Self {
        Amount(v)
    }
}

impl From<Amount> for U256 {
    fn from(v: Amount) -> Self {
        v.0
    }
}

impl FromStr for Amount {
    type Err = AmountError;
    /// Parses the canonical decimal form: digits only, no leading zeros (except `"0"`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let canonical = !s.is_empty()
            && s.len() <= 78
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'));
        if !canonical {
            return Err(AmountError::Invalid(s.to_string()));
        }
        U256::from_str_radix(s, 10)
            .map(Amount)
            .map_err(|_| AmountError::Overflow(s.to_string()))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({})", self.0)
    }
}

impl serde::Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
