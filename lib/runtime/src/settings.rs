//! Typed settings: defaults, then an optional TOML file, then `LEDGERLINE_…` environment
//! variables (nested keys separated by `__`, e.g. `LEDGERLINE_KAFKA__BROKERS`), then validation.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{de::DeserializeOwned, Serialize};
use std::collections::BTreeSet;
use std::path::Path;

/// Prefix of every environment variable the services read.
pub const ENV_PREFIX: &str = "LEDGERLINE_";
/// Environment variable naming an optional settings file.
pub const CONFIG_FILE_ENV: &str = "LEDGERLINE_CONFIG_FILE";

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A source could not be read or a value has the wrong type or an unknown key.
    #[error("invalid settings: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value is well-typed but breaks a rule (range, cross-field constraint).
    #[error("invalid settings: {0}")]
    Invalid(String),
}

/// Settings types check their own rules after loading (ranges, cross-field constraints).
pub trait Validate {
    /// Returns a message naming the offending key when a rule is broken.
    fn validate(&self) -> Result<(), String>;
}

/// Loads `T` from its defaults, the file named by `file` (or `LEDGERLINE_CONFIG_FILE`), and the
/// process environment, then validates it.
pub fn load<T>(file: Option<&Path>) -> Result<T, SettingsError>
where
    T: Serialize + DeserializeOwned + Default + Validate,
{
    let env_file = std::env::var_os(CONFIG_FILE_ENV).map(std::path::PathBuf::from);
    let file = file.map(Path::to_path_buf).or(env_file);
    load_from(file.as_deref(), Env::prefixed(ENV_PREFIX).split("__"))
}

/// [`load`] with an explicit environment provider: tests use it to avoid mutating the process
/// environment.
pub fn load_from<T>(file: Option<&Path>, env: Env) -> Result<T, SettingsError>
where
    T: Serialize + DeserializeOwned + Default + Validate,
{
    let defaults = Serialized::defaults(T::default());
    // Only variables naming a top-level key of `T` are read: the scripts use other
    // `LEDGERLINE_*` variables (tools and data directories), and `deny_unknown_fields` must
    // still reject typos inside a known section.
    let known = top_level_keys(&T::default());
    let env = env.filter(move |key| {
        let first = key.as_str().split('.').next().unwrap_or_default();
        known.contains(&first.to_ascii_lowercase())
    });
    let mut figment = Figment::from(defaults);
    if let Some(path) = file {
        figment = figment.merge(Toml::file_exact(path));
    }
    let settings: T = figment.merge(env).extract().map_err(Box::new)?;
    settings.validate().map_err(SettingsError::Invalid)?;
    Ok(settings)
}

fn top_level_keys<T: Serialize>(value: &T) -> BTreeSet<String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Object(map)) => map.keys().map(|k| k.to_ascii_lowercase()).collect(),
        _ => BTreeSet::new(),
    }
}

/// Every leaf setting of `T` as `(environment variable, default as JSON)`, e.g.
/// `("LEDGERLINE_KAFKA__BROKERS", "\"127.0.0.1:9092\"")`. Tests use it to keep
/// `docs/configuration.md` complete.
pub fn env_vars<T: Serialize + Default>() -> Vec<(String, String)> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match value {
            serde_json::Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    let name = if prefix.is_empty() {
                        format!("{ENV_PREFIX}{}", k.to_ascii_uppercase())
                    } else {
                        format!("{prefix}__{}", k.to_ascii_uppercase())
                    };
                    walk(&name, v, out);
                }
            }
            leaf => out.push((prefix.to_string(), leaf.to_string())),
        }
    }
    let mut out = Vec::new();
    if let Ok(value) = serde_json::to_value(T::default()) {
        walk("", &value, &mut out);
    }
    out
}

/// The environment variables of `T` that `doc` does not mention (as `` `NAME` ``): services'
/// tests assert this is empty for `docs/configuration.md`.
pub fn undocumented<T: Serialize + Default>(doc: &str) -> Vec<String> {
    env_vars::<T>()
        .into_iter()
        .map(|(var, _)| var)
        .filter(|var| !doc.contains(&format!("`{var}`")))
        .collect()
}

/// Handles the flags every service binary shares: `--print-settings` prints each setting's
/// environment variable and default, then exits. Returns the path given with `--config <file>`.
pub fn cli<T: Serialize + Default>(service: &str) -> Option<std::path::PathBuf> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--print-settings") {
        println!("# {service}: every setting, its environment variable and its default");
        for (var, default) in env_vars::<T>() {
            println!("{var}={default}");
        }
        std::process::exit(0);
    }
    args.iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1))
        .map(Into::into)
}

/// Fails with `name: message` unless `ok`.
pub fn ensure(ok: bool, name: &str, message: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("{name}: {message}"))
    }
}

#[cfg(test)]
// figment's test jail returns its own (large) error type; boxing it is not ours to change.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Demo {
        port: u16,
        inner: Inner,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        batch_size_max: usize,
    }

    impl Default for Demo {
        fn default() -> Self {
            Self {
                port: 8080,
                inner: Inner::default(),
            }
        }
    }

    impl Default for Inner {
        fn default() -> Self {
            Self {
                batch_size_max: 500,
            }
        }
    }

    impl Validate for Demo {
        fn validate(&self) -> Result<(), String> {
            ensure(
                self.inner.batch_size_max > 0,
                "inner.batch_size_max",
                "must be > 0",
            )
        }
    }

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct WithSecret {
        url: crate::secret::Secret<String>,
    }

    impl Default for WithSecret {
        fn default() -> Self {
            Self {
                url: crate::secret::Secret::new("redis://127.0.0.1:6379/0".into()),
            }
        }
    }

    impl Validate for WithSecret {
        fn validate(&self) -> Result<(), String> {
            Ok(())
        }
    }

    #[test]
    fn a_secret_left_at_its_default_keeps_its_value() {
        figment::Jail::expect_with(|_| {
            let s: WithSecret = load_from(None, Env::prefixed(ENV_PREFIX).split("__")).unwrap();
            assert_eq!(s.url.expose(), "redis://127.0.0.1:6379/0");
            Ok(())
        });
    }

    #[test]
    fn environment_overrides_defaults_and_ignores_unrelated_variables() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("LEDGERLINE_PORT", "9000");
            jail.set_env("LEDGERLINE_INNER__BATCH_SIZE_MAX", "7");
            jail.set_env("LEDGERLINE_TOOLS_DIR", "/somewhere");
            let s: Demo = load_from(None, Env::prefixed(ENV_PREFIX).split("__")).unwrap();
            assert_eq!(
                s,
                Demo {
                    port: 9000,
                    inner: Inner { batch_size_max: 7 }
                }
            );
            Ok(())
        });
    }

    #[test]
    fn file_values_sit_between_defaults_and_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("s.toml", "port = 1\n[inner]\nbatch_size_max = 3\n")?;
            jail.set_env("LEDGERLINE_PORT", "2");
            let s: Demo = load_from(
                Some(Path::new("s.toml")),
                Env::prefixed(ENV_PREFIX).split("__"),
            )
            .unwrap();
            assert_eq!(
                s,
                Demo {
                    port: 2,
                    inner: Inner { batch_size_max: 3 }
                }
            );
            Ok(())
        });
    }

    #[test]
    fn a_typo_inside_a_known_section_is_rejected() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("LEDGERLINE_INNER__BATCH_SIZE_MAXX", "7");
            let err = load_from::<Demo>(None, Env::prefixed(ENV_PREFIX).split("__")).unwrap_err();
            assert!(err.to_string().contains("batch_size_maxx"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_broken_rule_names_its_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("LEDGERLINE_INNER__BATCH_SIZE_MAX", "0");
            let err = load_from::<Demo>(None, Env::prefixed(ENV_PREFIX).split("__")).unwrap_err();
            assert!(err.to_string().contains("inner.batch_size_max"), "{err}");
            Ok(())
        });
    }
}
