//! Business rules: pure functions of the request and the configuration.

use crate::config::RulesSettings;
use ledgerline_contracts::events::TransactionRequested;
use std::collections::{HashMap, HashSet};

/// Why a request was rejected by a rule (the `reason_code` of the decision).
pub mod reason {
    /// The merchant is suspended.
    pub const MERCHANT_SUSPENDED: &str = "MERCHANT_SUSPENDED";
    /// The account may not transact.
    pub const ACCOUNT_BLOCKED: &str = "ACCOUNT_BLOCKED";
    /// The currency is not accepted for this merchant.
    pub const CURRENCY_NOT_ALLOWED: &str = "CURRENCY_NOT_ALLOWED";
    /// The amount exceeds the merchant's per-transaction limit.
    pub const AMOUNT_OVER_LIMIT: &str = "AMOUNT_OVER_LIMIT";
    /// Same idempotency key, different request body (design §3).
    pub const IDEMPOTENCY_CONFLICT: &str = "IDEMPOTENCY_CONFLICT";
}

#[derive(Debug)]
struct Effective {
    amount_max_minor: Option<i64>,
    currencies: Option<HashSet<String>>,
    suspended: bool,
}

/// The rules, indexed for per-request lookups.
#[derive(Debug)]
pub struct Rules {
    default: Effective,
    merchants: HashMap<String, Effective>,
    blocked: HashSet<String>,
}

fn currency_set(list: &[String]) -> Option<HashSet<String>> {
    (!list.is_empty()).then(|| list.iter().cloned().collect())
}

impl Rules {
    /// Indexes validated settings.
    pub fn new(settings: &RulesSettings) -> Self {
        let default = Effective {
            amount_max_minor: settings.amount_max_minor,
            currencies: currency_set(&settings.currencies_allowed),
            suspended: false,
        };
        let merchants = settings
            .merchants
            .iter()
            .map(|m| {
                let e = Effective {
                    amount_max_minor: m.amount_max_minor.or(settings.amount_max_minor),
                    currencies: match &m.currencies_allowed {
                        Some(list) => currency_set(list),
                        None => currency_set(&settings.currencies_allowed),
                    },
                    suspended: m.suspended,
                };
                (m.id.clone(), e)
            })
            .collect();
        Self {
            default,
            merchants,
            blocked: settings.accounts_blocked.iter().cloned().collect(),
        }
    }

    /// `None` when every rule passes, else the first failing rule's reason code.
    pub fn check(&self, request: &TransactionRequested) -> Option<&'static str> {
        let rules = self
            .merchants
            .get(request.merchant_id.as_str())
            .unwrap_or(&self.default);
        if rules.suspended {
            return Some(reason::MERCHANT_SUSPENDED);
        }
        if self.blocked.contains(request.account_id.as_str()) {
            return Some(reason::ACCOUNT_BLOCKED);
        }
        if rules
            .currencies
            .as_ref()
            .is_some_and(|c| !c.contains(request.currency.code()))
        {
            return Some(reason::CURRENCY_NOT_ALLOWED);
        }
        if rules
            .amount_max_minor
            .is_some_and(|max| request.amount_minor > max)
        {
            return Some(reason::AMOUNT_OVER_LIMIT);
        }
        None
    }
}
