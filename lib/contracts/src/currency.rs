//! ISO-4217 currencies with their minor-unit exponents (design §6).
//!
//! The table is ISO 4217 "List One": every active alphabetic code whose minor unit is defined.
//! Codes whose minor unit is "N.A." (precious metals such as XAU, bond-market units, SDR, XTS,
//! XXX) are deliberately absent: an amount in them has no decimal scale, so it cannot be a
//! `Money`. Codes in an official transition (ANG → XCG, BGN → EUR, SLL → SLE, CUC) stay listed
//! so merchants are not cut off mid-migration; codes already withdrawn (HRK, ZWL) are not.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::money::MoneyError;

/// An ISO-4217 currency: its alphabetic code and the exponent of its minor unit
/// (EUR has 2: one euro is 100 cents; JPY has 0; BHD has 3).
///
/// Only [`Currency::parse`] and the constants build one, so it always comes from the table.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    minor_units: u8,
}

impl Currency {
    /// Euro (exponent 2).
    pub const EUR: Currency = Currency {
        code: "EUR",
        minor_units: 2,
    };
    /// US dollar (exponent 2).
    pub const USD: Currency = Currency {
        code: "USD",
        minor_units: 2,
    };
    /// Pound sterling (exponent 2).
    pub const GBP: Currency = Currency {
        code: "GBP",
        minor_units: 2,
    };
    /// Yen (exponent 0).
    pub const JPY: Currency = Currency {
        code: "JPY",
        minor_units: 0,
    };
    /// Bahraini dinar (exponent 3).
    pub const BHD: Currency = Currency {
        code: "BHD",
        minor_units: 3,
    };
    /// Unidad de Fomento (exponent 4).
    pub const CLF: Currency = Currency {
        code: "CLF",
        minor_units: 4,
    };

    /// Looks up an alphabetic code. It must be exactly three uppercase ASCII letters and listed;
    /// lowercase (`"eur"`) is refused rather than folded so that one currency has one spelling
    /// everywhere in the pipeline.
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_uppercase) {
            return Err(MoneyError::UnknownCurrency);
        }
        TABLE
            .binary_search_by(|(listed, _)| listed.cmp(&code))
            .ok()
            .and_then(|index| TABLE.get(index))
            .map(|&(code, minor_units)| Currency { code, minor_units })
            .ok_or(MoneyError::UnknownCurrency)
    }

    /// The alphabetic code, e.g. `"EUR"`.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The minor-unit exponent: how many decimal places an amount in this currency may have.
    pub fn minor_units(&self) -> u8 {
        self.minor_units
    }

    /// Every currency this crate accepts, in code order.
    pub fn all() -> impl Iterator<Item = Currency> {
        TABLE
            .iter()
            .map(|&(code, minor_units)| Currency { code, minor_units })
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({}/{})", self.code, self.minor_units)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl std::str::FromStr for Currency {
    type Err = MoneyError;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Currency::parse(code)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Currency::parse(&code).map_err(|_| {
            serde::de::Error::custom(format_args!(
                "unknown currency code {:?}",
                code.chars().take(8).collect::<String>()
            ))
        })
    }
}

/// ISO 4217 List One, sorted by code (binary-searched; a test keeps it sorted).
const TABLE: &[(&str, u8)] = &[
    ("AED", 2), // UAE Dirham
    ("AFN", 2), // Afghani
    ("ALL", 2), // Lek
    ("AMD", 2), // Armenian Dram
    ("ANG", 2), // Netherlands Antillean Guilder
    ("AOA", 2), // Kwanza
    ("ARS", 2), // Argentine Peso
    ("AUD", 2), // Australian Dollar
    ("AWG", 2), // Aruban Florin
    ("AZN", 2), // Azerbaijan Manat
    ("BAM", 2), // Convertible Mark
    ("BBD", 2), // Barbados Dollar
    ("BDT", 2), // Taka
    ("BGN", 2), // Bulgarian Lev
    ("BHD", 3), // Bahraini Dinar
    ("BIF", 0), // Burundi Franc
    ("BMD", 2), // Bermudian Dollar
    ("BND", 2), // Brunei Dollar
    ("BOB", 2), // Boliviano
    ("BOV", 2), // Mvdol
    ("BRL", 2), // Brazilian Real
    ("BSD", 2), // Bahamian Dollar
    ("BTN", 2), // Ngultrum
    ("BWP", 2), // Pula
    ("BYN", 2), // Belarusian Ruble
    ("BZD", 2), // Belize Dollar
    ("CAD", 2), // Canadian Dollar
    ("CDF", 2), // Congolese Franc
    ("CHE", 2), // WIR Euro
    ("CHF", 2), // Swiss Franc
    ("CHW", 2), // WIR Franc
    ("CLF", 4), // Unidad de Fomento
    ("CLP", 0), // Chilean Peso
    ("CNY", 2), // Yuan Renminbi
    ("COP", 2), // Colombian Peso
    ("COU", 2), // Unidad de Valor Real
    ("CRC", 2), // Costa Rican Colon
    ("CUC", 2), // Peso Convertible
    ("CUP", 2), // Cuban Peso
    ("CVE", 2), // Cabo Verde Escudo
    ("CZK", 2), // Czech Koruna
    ("DJF", 0), // Djibouti Franc
    ("DKK", 2), // Danish Krone
    ("DOP", 2), // Dominican Peso
    ("DZD", 2), // Algerian Dinar
    ("EGP", 2), // Egyptian Pound
    ("ERN", 2), // Nakfa
    ("ETB", 2), // Ethiopian Birr
    ("EUR", 2), // Euro
    ("FJD", 2), // Fiji Dollar
    ("FKP", 2), // Falkland Islands Pound
    ("GBP", 2), // Pound Sterling
    ("GEL", 2), // Lari
    ("GHS", 2), // Ghana Cedi
    ("GIP", 2), // Gibraltar Pound
    ("GMD", 2), // Dalasi
    ("GNF", 0), // Guinean Franc
    ("GTQ", 2), // Quetzal
    ("GYD", 2), // Guyana Dollar
    ("HKD", 2), // Hong Kong Dollar
    ("HNL", 2), // Lempira
    ("HTG", 2), // Gourde
    ("HUF", 2), // Forint
    ("IDR", 2), // Rupiah
    ("ILS", 2), // New Israeli Sheqel
    ("INR", 2), // Indian Rupee
    ("IQD", 3), // Iraqi Dinar
    ("IRR", 2), // Iranian Rial
    ("ISK", 0), // Iceland Krona
    ("JMD", 2), // Jamaican Dollar
    ("JOD", 3), // Jordanian Dinar
    ("JPY", 0), // Yen
    ("KES", 2), // Kenyan Shilling
    ("KGS", 2), // Som
    ("KHR", 2), // Riel
    ("KMF", 0), // Comorian Franc
    ("KPW", 2), // North Korean Won
    ("KRW", 0), // Won
    ("KWD", 3), // Kuwaiti Dinar
    ("KYD", 2), // Cayman Islands Dollar
    ("KZT", 2), // Tenge
    ("LAK", 2), // Lao Kip
    ("LBP", 2), // Lebanese Pound
    ("LKR", 2), // Sri Lanka Rupee
    ("LRD", 2), // Liberian Dollar
    ("LSL", 2), // Loti
    ("LYD", 3), // Libyan Dinar
    ("MAD", 2), // Moroccan Dirham
    ("MDL", 2), // Moldovan Leu
    ("MGA", 2), // Malagasy Ariary
    ("MKD", 2), // Denar
    ("MMK", 2), // Kyat
    ("MNT", 2), // Tugrik
    ("MOP", 2), // Pataca
    ("MRU", 2), // Ouguiya
    ("MUR", 2), // Mauritius Rupee
    ("MVR", 2), // Rufiyaa
    ("MWK", 2), // Malawi Kwacha
    ("MXN", 2), // Mexican Peso
    ("MXV", 2), // Mexican Unidad de Inversion
    ("MYR", 2), // Malaysian Ringgit
    ("MZN", 2), // Mozambique Metical
    ("NAD", 2), // Namibia Dollar
    ("NGN", 2), // Naira
    ("NIO", 2), // Cordoba Oro
    ("NOK", 2), // Norwegian Krone
    ("NPR", 2), // Nepalese Rupee
    ("NZD", 2), // New Zealand Dollar
    ("OMR", 3), // Rial Omani
    ("PAB", 2), // Balboa
    ("PEN", 2), // Sol
    ("PGK", 2), // Kina
    ("PHP", 2), // Philippine Peso
    ("PKR", 2), // Pakistan Rupee
    ("PLN", 2), // Zloty
    ("PYG", 0), // Guarani
    ("QAR", 2), // Qatari Rial
    ("RON", 2), // Romanian Leu
    ("RSD", 2), // Serbian Dinar
    ("RUB", 2), // Russian Ruble
    ("RWF", 0), // Rwanda Franc
    ("SAR", 2), // Saudi Riyal
    ("SBD", 2), // Solomon Islands Dollar
    ("SCR", 2), // Seychelles Rupee
    ("SDG", 2), // Sudanese Pound
    ("SEK", 2), // Swedish Krona
    ("SGD", 2), // Singapore Dollar
    ("SHP", 2), // Saint Helena Pound
    ("SLE", 2), // Leone
    ("SLL", 2), // Leone (old)
    ("SOS", 2), // Somali Shilling
    ("SRD", 2), // Surinam Dollar
    ("SSP", 2), // South Sudanese Pound
    ("STN", 2), // Dobra
    ("SVC", 2), // El Salvador Colon
    ("SYP", 2), // Syrian Pound
    ("SZL", 2), // Lilangeni
    ("THB", 2), // Baht
    ("TJS", 2), // Somoni
    ("TMT", 2), // Turkmenistan New Manat
    ("TND", 3), // Tunisian Dinar
    ("TOP", 2), // Pa'anga
    ("TRY", 2), // Turkish Lira
    ("TTD", 2), // Trinidad and Tobago Dollar
    ("TWD", 2), // New Taiwan Dollar
    ("TZS", 2), // Tanzanian Shilling
    ("UAH", 2), // Hryvnia
    ("UGX", 0), // Uganda Shilling
    ("USD", 2), // US Dollar
    ("USN", 2), // US Dollar (Next day)
    ("UYI", 0), // Uruguay Peso en Unidades Indexadas
    ("UYU", 2), // Peso Uruguayo
    ("UYW", 4), // Unidad Previsional
    ("UZS", 2), // Uzbekistan Sum
    ("VED", 2), // Bolivar Soberano (digital)
    ("VES", 2), // Bolivar Soberano
    ("VND", 0), // Dong
    ("VUV", 0), // Vatu
    ("WST", 2), // Tala
    ("XAF", 0), // CFA Franc BEAC
    ("XCD", 2), // East Caribbean Dollar
    ("XCG", 2), // Caribbean Guilder
    ("XOF", 0), // CFA Franc BCEAO
    ("XPF", 0), // CFP Franc
    ("YER", 2), // Yemeni Rial
    ("ZAR", 2), // Rand
    ("ZMW", 2), // Zambian Kwacha
    ("ZWG", 2), // Zimbabwe Gold
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_and_well_formed() {
        // Binary search needs strict order; parse needs every code to be 3 uppercase letters.
        for pair in TABLE.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{} !< {}", pair[0].0, pair[1].0);
        }
        for (code, minor_units) in TABLE {
            assert!(code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()));
            assert!(*minor_units <= 4, "{code}");
        }
        assert!(TABLE.len() >= 150);
    }

    #[test]
    fn exponents_match_iso_4217() {
        // The exponent decides how many decimals a merchant may send; a wrong one mis-scales money.
        let expected = [
            ("JPY", 0),
            ("KRW", 0),
            ("ISK", 0),
            ("CLP", 0),
            ("VND", 0),
            ("XAF", 0),
            ("UGX", 0),
            ("EUR", 2),
            ("USD", 2),
            ("GBP", 2),
            ("CHF", 2),
            ("BHD", 3),
            ("KWD", 3),
            ("JOD", 3),
            ("OMR", 3),
            ("TND", 3),
            ("LYD", 3),
            ("IQD", 3),
            ("CLF", 4),
            ("UYW", 4),
        ];
        for (code, minor_units) in expected {
            assert_eq!(
                Currency::parse(code).map(|c| c.minor_units()),
                Ok(minor_units),
                "{code}"
            );
        }
    }

    #[test]
    fn constants_agree_with_the_table() {
        for constant in [
            Currency::EUR,
            Currency::USD,
            Currency::GBP,
            Currency::JPY,
            Currency::BHD,
            Currency::CLF,
        ] {
            assert_eq!(Currency::parse(constant.code()), Ok(constant));
        }
    }

    #[test]
    fn codes_without_a_minor_unit_are_unknown() {
        for code in [
            "XAU", "XAG", "XPT", "XPD", "XDR", "XTS", "XXX", "XSU", "XUA", "HRK",
        ] {
            assert_eq!(
                Currency::parse(code),
                Err(MoneyError::UnknownCurrency),
                "{code}"
            );
        }
    }

    #[test]
    fn malformed_codes_are_unknown() {
        for code in ["", "eur", "Eur", "EU", "EURO", " EUR", "EUR ", "E1R", "ÉUR"] {
            assert_eq!(
                Currency::parse(code),
                Err(MoneyError::UnknownCurrency),
                "{code:?}"
            );
        }
    }

    #[test]
    fn currency_serializes_as_its_plain_code() {
        assert_eq!(
            serde_json::to_string(&Currency::EUR).ok().as_deref(),
            Some("\"EUR\"")
        );
        let parsed: Result<Currency, _> = serde_json::from_str("\"KWD\"");
        assert_eq!(parsed.map(|c| c.minor_units()).ok(), Some(3));
        assert!(serde_json::from_str::<Currency>("\"XAU\"").is_err());
        assert!(serde_json::from_str::<Currency>("978").is_err());
    }

    #[test]
    fn display_is_the_code() {
        assert_eq!(Currency::JPY.to_string(), "JPY");
    }
}
