//! The merchants' signing keys, looked up by (merchant, key id).

use crate::config::MerchantSettings;
use ledgerline_contracts::ids::{KeyId, MerchantId};
use ledgerline_contracts::signing::KeyLookup;
use std::collections::HashMap;

/// Secrets by merchant and key id. Built once at start-up from validated settings.
#[derive(Default)]
pub struct KeyRing {
    keys: HashMap<(String, String), Vec<u8>>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl KeyRing {
    /// Builds the ring from the merchants' settings.
    pub fn from_settings(merchants: &[MerchantSettings]) -> Self {
        let keys = merchants
            .iter()
            .flat_map(|m| {
                m.keys.iter().map(move |k| {
                    (
                        (m.id.clone(), k.key_id.clone()),
                        k.secret.expose().as_bytes().to_vec(),
                    )
                })
            })
            .collect();
        Self { keys }
    }
}

impl KeyLookup for KeyRing {
    fn secret(&self, merchant: &MerchantId, key_id: &KeyId) -> Option<&[u8]> {
        self.keys
            .get(&(merchant.as_str().to_string(), key_id.as_str().to_string()))
            .map(Vec::as_slice)
    }
}
