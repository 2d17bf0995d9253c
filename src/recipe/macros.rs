//! The `settings!` macro: the one table of training settings (src/recipe/settings.rs) becomes
//! the [`TrainConfig`](super::TrainConfig) struct, its defaults, [`SETTINGS`](super::SETTINGS) and
//! the per-setting parsing, range checks and printing.

/// Declares every training setting once: the [`TrainConfig`] field, its default, its limits,
/// whether a resumed run may change it, whether it has a command-line flag, one line of docs,
/// (optionally) the `legacy` value a checkpoint from before the setting existed meant, and
/// (optionally) how `mdc train` shows its value. Parsing (`[train]`, `--set`, the flags),
/// range checks, did-you-mean, the printed settings and the table in docs/train.md all read the result.
macro_rules! settings {
    ($(
        $name:ident : $ty:ty {
            default: $default:expr,
            limits: $limits:expr,
            on_resume: $resume:ident,
            flag: $flag:expr,
            doc: $doc:literal
            $(, legacy: $legacy:expr)?
            $(, show: $show:expr)? $(,)?
        }
    )*) => {
        /// The training recipe; see [`SETTINGS`] for each field's meaning and limits.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        // A checkpoint's recipe lacking a key was written before that setting existed: it gets
        // the setting's `legacy` value (what such runs did), else its default.
        #[serde(deny_unknown_fields, default = "TrainConfig::legacy")]
        pub struct TrainConfig {
            $(#[doc = $doc] pub $name: $ty,)*
        }

        impl Default for TrainConfig {
            fn default() -> Self {
                TrainConfig { $($name: $default,)* }
            }
        }

        impl TrainConfig {
            /// The defaults, except that each setting with a `legacy` value has that: what a
            /// checkpoint's recipe meant for the settings it lacks.
            pub fn legacy() -> Self {
                #[allow(unused_mut)]
                let mut c = TrainConfig::default();
                $($(c.$name = $legacy;)?)*
                c
            }
        }

        /// Every setting `[train]`, `--set` and the flags accept, in the order `mdc train` prints them.
        pub const SETTINGS: &[Setting] = &[$(
            Setting {
                name: stringify!($name),
                type_name: <$ty as SettingValue>::TYPE,
                limits: $limits,
                on_resume: OnResume::$resume,
                flag: $flag,
                doc: $doc,
            },
        )*];

        impl TrainConfig {
            /// Sets the setting `name` (one of [`SETTINGS`]) from a TOML value; the error is
            /// "expected ..., found ...".
            pub(super) fn set_value(&mut self, name: &str, v: &toml::Value) -> Result<(), String> {
                match name {
                    $(stringify!($name) => self.$name = <$ty as SettingValue>::from_toml(v, &$limits)?,)*
                    _ => unreachable!("`{name}` is not a setting"),
                }
                Ok(())
            }

            /// Checks every setting against its limits, for recipes from any source, checkpoint
            /// metadata included (values outside them would exhaust memory or divide by zero).
            pub fn check_ranges(&self) -> Result<(), String> {
                $(self.$name.check(&$limits).map_err(|e| format!("`{}`: {e}", stringify!($name)))?;)*
                Ok(())
            }

            /// The value of setting `name` as written in a model file (`auto` for an unset option).
            pub fn value_text(&self, name: &str) -> String {
                match name {
                    $(stringify!($name) => self.$name.show(),)*
                    _ => String::new(),
                }
            }

            /// The value of setting `name` as `mdc train` prints it.
            pub fn show(&self, name: &str) -> String {
                match name {
                    $(stringify!($name) => settings!(@show self, $name $(, $show)?),)*
                    _ => String::new(),
                }
            }
        }
    };
    (@show $self:ident, $name:ident) => { $self.$name.show() };
    (@show $self:ident, $name:ident, $show:expr) => { ($show)($self) };
}
