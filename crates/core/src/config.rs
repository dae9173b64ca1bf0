//! Reading configs: RON files with errors that name the file, line and column; dotted-path
//! overrides (`--set a.b.c=value`) with errors that name the path.
//!
//! Overrides work on the JSON form of an already typed config: the config is serialised to JSON,
//! the value at the dotted path is replaced, and the result is deserialised again, so every
//! override is checked exactly like the file itself. Enum variants are transparent in paths:
//! `schedule.peak` reaches the `peak` field whichever schedule variant is configured.

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::Path;

/// Parses RON text into `T`. `origin` names the source (a file path) in error messages, which read
/// `origin:line:column: message`.
///
/// Two RON extensions are on: `implicit_some` (write `weight_decay: 0.0` for an `Option` field) and
/// `unwrap_variant_newtypes` (write `ResNet(depths: ...)` for a newtype variant).
pub fn parse_ron<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T> {
    let options = ron::Options::default().with_default_extension(extensions());
    let mut de = ron::Deserializer::from_str_with_options(text, &options).map_err(|e| {
        anyhow!(
            "{origin}:{}:{}: {}",
            e.span.start.line,
            e.span.start.col,
            e.code
        )
    })?;
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let span = de.span_error(inner.clone()).span;
        let at = if path.is_empty() || path == "." {
            String::new()
        } else {
            format!(" (at `{path}`)")
        };
        anyhow!(
            "{origin}:{}:{}: {inner}{at}",
            span.start.line,
            span.start.col
        )
    })?;
    de.end()
        .map_err(|e| anyhow!("{origin}: trailing characters after the config: {e}"))?;
    Ok(value)
}

fn extensions() -> ron::extensions::Extensions {
    ron::extensions::Extensions::IMPLICIT_SOME
        | ron::extensions::Extensions::UNWRAP_VARIANT_NEWTYPES
}

/// Reads and parses a RON file (see [`parse_ron`]).
pub fn load_ron<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    parse_ron(&text, &path.display().to_string())
}

/// Pretty RON text of a config (used to record the resolved config of a run).
pub fn to_ron<T: Serialize>(value: &T) -> Result<String> {
    let pretty = ron::ser::PrettyConfig::new().extensions(extensions());
    Ok(ron::Options::default()
        .with_default_extension(extensions())
        .to_string_pretty(value, pretty)?)
}

/// Applies `path=value` overrides to a typed config. Values are JSON (`0.1`, `true`, `"text"`,
/// `[1,2]`); a value that is not valid JSON is taken as a string. Unknown paths and ill-typed values
/// are errors naming the path.
pub fn apply_overrides<T: Serialize + DeserializeOwned>(config: &T, sets: &[String]) -> Result<T> {
    if sets.is_empty() {
        return Ok(serde_json::from_value(serde_json::to_value(config)?)?);
    }
    let mut json = serde_json::to_value(config)?;
    for set in sets {
        let (path, raw) = set
            .split_once('=')
            .ok_or_else(|| anyhow!("--set `{set}`: expected `path=value`"))?;
        let value = serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
        set_path(&mut json, path.trim(), value).with_context(|| format!("--set `{set}`"))?;
    }
    from_json_checked(json, "--set")
}

/// Deserialises a JSON value into `T`, naming the failing path in the error.
pub fn from_json_checked<T: DeserializeOwned>(json: Value, origin: &str) -> Result<T> {
    serde_path_to_error::deserialize(json).map_err(|e| {
        let path = e.path().to_string();
        anyhow!("{origin}: at `{path}`: {}", e.into_inner())
    })
}

/// Replaces the value at a dotted path. Single-key objects whose key starts with an upper-case
/// letter (an enum variant in serde's JSON form) are stepped through when the path does not name
/// the variant.
pub fn set_path(root: &mut Value, path: &str, value: Value) -> Result<()> {
    update_path(root, path, |_| Ok(value))
}

/// Replaces the value at a dotted path with `f(current value)` (see [`set_path`] for the path
/// rules).
pub fn update_path(
    root: &mut Value,
    path: &str,
    f: impl FnOnce(&Value) -> Result<Value>,
) -> Result<()> {
    if path.is_empty() {
        bail!("empty path");
    }
    let segments: Vec<&str> = path.split('.').collect();
    let mut node = root;
    for (i, segment) in segments.iter().enumerate() {
        node = step_into_variant(node, segment);
        let last = i + 1 == segments.len();
        let walked = segments[..i].join(".");
        node = match node {
            Value::Object(map) => {
                if last {
                    if !map.contains_key(*segment) {
                        bail!(
                            "unknown field `{segment}` at `{walked}`; known fields: {}",
                            map.keys().cloned().collect::<Vec<_>>().join(", ")
                        );
                    }
                    let slot = map.get_mut(*segment).expect("checked above");
                    *slot = f(slot)?;
                    return Ok(());
                }
                map.get_mut(*segment)
                    .ok_or_else(|| anyhow!("unknown field `{segment}` at `{walked}`"))?
            }
            Value::Array(items) => {
                let index: usize = segment.parse().map_err(|_| {
                    anyhow!("`{walked}` is a list: expected an index, got `{segment}`")
                })?;
                let len = items.len();
                let slot = items.get_mut(index).ok_or_else(|| {
                    anyhow!("index {index} out of range at `{walked}` (length {len})")
                })?;
                if last {
                    *slot = f(slot)?;
                    return Ok(());
                }
                slot
            }
            other => bail!("`{walked}` is `{other}`, which has no field `{segment}`"),
        };
    }
    unreachable!("the loop returns at the last segment")
}

fn step_into_variant<'a>(node: &'a mut Value, segment: &str) -> &'a mut Value {
    let is_variant = matches!(node, Value::Object(map)
        if map.len() == 1
            && !map.contains_key(segment)
            && map.keys().next().is_some_and(|k| k.starts_with(char::is_uppercase)));
    if is_variant && let Value::Object(map) = node {
        return map.values_mut().next().expect("one entry");
    }
    node
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory, then a rename,
/// so readers never see a half-written file and a crash never destroys an earlier version.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file_name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file path", path.display()))?
        .to_string_lossy();
    let tmp = dir.join(format!(".{file_name}.tmp{}", std::process::id()));
    {
        let mut file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot move into {}", path.display()))?;
    Ok(())
}

/// Deserialises a plugin's config section from its JSON value (RON's `config: ()` arrives as
/// null: the same as an empty struct, all defaults), naming the failing field after `prefix` in
/// the error (`model.config.hidden: invalid type ...`).
pub fn parse_section<T: DeserializeOwned>(value: &Value, prefix: &str) -> Result<T> {
    let empty = Value::Object(Default::default());
    let value = if value.is_null() { &empty } else { value };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let at = if path.is_empty() || path == "." {
            String::new()
        } else {
            format!(".{path}")
        };
        anyhow!("{prefix}{at}: {}", e.into_inner())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        a: f64,
        b: Vec<u32>,
    }
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    enum Shape {
        Circle { radius: f64 },
        Square { side: f64 },
    }
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        inner: Inner,
        shape: Shape,
    }

    const GOOD: &str = "(inner: (a: 1.5, b: [1, 2]), shape: Circle(radius: 2.0))";

    #[test]
    fn parses_ron_with_enums() {
        let v: Outer = parse_ron(GOOD, "x.ron").unwrap();
        assert_eq!(v.shape, Shape::Circle { radius: 2.0 });
    }

    #[test]
    fn unknown_field_names_file_line_column() {
        let text = "(\n  inner: (a: 1.5, b: [1], c: 3),\n  shape: Square(side: 1.0),\n)";
        let err = parse_ron::<Outer>(text, "cfg.ron").unwrap_err().to_string();
        assert!(err.starts_with("cfg.ron:2:"), "{err}");
        assert!(err.contains('c') && err.contains("inner"), "{err}");
    }

    #[test]
    fn syntax_error_names_position() {
        let err = parse_ron::<Outer>("(inner: (a: 1.5, b: [1,]), shape: ", "bad.ron")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("bad.ron:1:"), "{err}");
    }

    #[test]
    fn ron_round_trip_with_extensions() {
        let v: Outer = parse_ron(GOOD, "x.ron").unwrap();
        let text = to_ron(&v).unwrap();
        assert_eq!(parse_ron::<Outer>(&text, "round-trip").unwrap(), v);
    }

    #[test]
    fn overrides_step_through_variants() {
        let v: Outer = parse_ron(GOOD, "x.ron").unwrap();
        let v = apply_overrides(&v, &["shape.radius=3.25".into(), "inner.b.1=7".into()]).unwrap();
        assert_eq!(v.shape, Shape::Circle { radius: 3.25 });
        assert_eq!(v.inner.b, vec![1, 7]);
    }

    #[test]
    fn override_errors_name_the_path() {
        let v: Outer = parse_ron(GOOD, "x.ron").unwrap();
        let err = apply_overrides(&v, &["inner.zz=1".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("unknown field `zz`"), "{err:#}");
        let err = apply_overrides(&v, &["inner.a=\"high\"".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("inner.a"), "{err:#}");
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = std::env::temp_dir().join(format!("bb-atomic-{}", std::process::id()));
        let path = dir.join("f.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
