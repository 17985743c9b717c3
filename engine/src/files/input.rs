//! Request files (§3.1): the `files` of chat, completion and workflow
//! requests and the values of `file` / `file-list` form variables, checked
//! against what the app or the variable accepts and turned into file values
//! (§3.2) for the run's log, its variable pool and its messages.
//!
//! `local_file` must name an upload of the same app. `remote_url` is asked
//! for its headers through the private-network guard (a refused or
//! unreachable URL fails the request), with a timeout, and is refused when
//! it announces more bytes than its category's limit.

use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::kinds::{self, Category};
use crate::app::{FormField, FormKind};
use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::workflow::net;

/// What an app (its `file_upload` feature) or a form variable accepts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UploadConfig {
    /// Allowed categories; empty allows any.
    pub types: Vec<String>,
    /// Extensions allowed for `custom` files, lower case with the dot.
    pub extensions: Vec<String>,
    /// Allowed transfer methods; empty allows any.
    pub methods: Vec<String>,
    /// Most files per request.
    pub number_limit: Option<usize>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.as_str().map(|s| s.trim().to_string())).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

fn count(v: Option<&Value>) -> Option<usize> {
    v.and_then(|n| n.as_u64().or_else(|| n.as_str()?.trim().parse().ok())).map(|n| n as usize)
}

fn dotted(exts: Vec<String>) -> Vec<String> {
    exts.into_iter().map(|e| format!(".{}", e.trim_start_matches('.').to_ascii_lowercase())).collect()
}

impl UploadConfig {
    /// An app's `file_upload` feature; `None` when uploads are off (request
    /// files are then ignored). The legacy `image` block alone allows images.
    pub fn from_feature(feature: Option<&Value>) -> Option<UploadConfig> {
        let f = feature.filter(|f| f.is_object())?;
        let on = |v: Option<&Value>| v.and_then(|e| e.get("enabled")).and_then(Value::as_bool).unwrap_or(false);
        let image = f.get("image");
        if f.get("enabled").and_then(Value::as_bool).unwrap_or(false) {
            return Some(UploadConfig {
                types: strings(f.get("allowed_file_types")),
                extensions: dotted(strings(f.get("allowed_file_extensions"))),
                methods: strings(f.get("allowed_file_upload_methods")),
                number_limit: count(f.get("number_limits")).or(Some(3)),
            });
        }
        if on(image) {
            let image = image.unwrap_or(&Value::Null);
            return Some(UploadConfig {
                types: vec!["image".into()],
                extensions: Vec::new(),
                methods: strings(image.get("transfer_methods")),
                number_limit: count(image.get("number_limits")).or(Some(3)),
            });
        }
        None
    }

    /// A `file` / `file-list` form variable's settings.
    pub fn from_variable(field: &FormField) -> UploadConfig {
        UploadConfig {
            types: strings(field.raw.get("allowed_file_types")),
            extensions: dotted(strings(field.raw.get("allowed_file_extensions"))),
            methods: strings(field.raw.get("allowed_file_upload_methods")),
            number_limit: match field.kind {
                FormKind::File => Some(1),
                _ => field.max_length.filter(|m| *m > 0).map(|m| m as usize),
            },
        }
    }
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidParam(msg.into())
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// A file value (§3.2).
#[allow(clippy::too_many_arguments)]
fn file_value(
    app_id: Uuid,
    kind: &str,
    method: &str,
    remote_url: Option<&str>,
    related_id: Option<Uuid>,
    filename: &str,
    extension: &str,
    mime_type: &str,
    size: i64,
    url: &str,
) -> Value {
    json!({
        "dify_model_identity": "__dify__file__",
        "id": null,
        "tenant_id": app_id.to_string(),
        "type": kind,
        "transfer_method": method,
        "remote_url": remote_url,
        "related_id": related_id.map(|r| r.to_string()),
        "filename": filename,
        "extension": if extension.is_empty() { String::new() } else { format!(".{extension}") },
        "mime_type": mime_type,
        "size": size,
        "url": url,
    })
}

impl Engine {
    /// Resolves a request's `files` list for an app or workflow whose
    /// `file_upload` is `config` (`None`: uploads are off, files ignored).
    pub(crate) async fn resolve_request_files(
        &self,
        app_id: Uuid,
        config: Option<&UploadConfig>,
        files: &Value,
        strict: bool,
    ) -> Result<Vec<Value>> {
        let Some(config) = config else { return Ok(Vec::new()) };
        let items = match files {
            Value::Null => return Ok(Vec::new()),
            Value::Array(items) => items,
            _ => return Err(invalid("files must be a list")),
        };
        if let Some(max) = config.number_limit {
            if items.len() > max {
                return Err(invalid(format!("Too many files: at most {max} may be sent, got {}", items.len())));
            }
        }
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(self.resolve_file(app_id, config, item, strict).await?);
        }
        Ok(out)
    }

    /// Resolves the values of the form's `file` and `file-list` variables in place.
    pub(crate) async fn resolve_file_inputs(
        &self,
        app_id: Uuid,
        form: &[FormField],
        inputs: &mut Map<String, Value>,
        strict: bool,
    ) -> Result<()> {
        for field in form.iter().filter(|f| matches!(f.kind, FormKind::File | FormKind::FileList)) {
            let Some(value) = inputs.get(&field.variable).filter(|v| !v.is_null()).cloned() else { continue };
            let config = UploadConfig::from_variable(field);
            let resolved = match (&field.kind, &value) {
                (FormKind::File, v) => self.resolve_file(app_id, &config, v, strict).await,
                (_, Value::Array(items)) => {
                    let mut list = Vec::with_capacity(items.len());
                    for item in items {
                        list.push(self.resolve_file(app_id, &config, item, strict).await?);
                    }
                    Ok(Value::Array(list))
                }
                _ => Err(invalid(format!("{} in input form must be a list of files", field.variable))),
            }
            .map_err(|e| match e {
                EngineError::InvalidParam(m) => invalid(format!("{}: {m}", field.variable)),
                other => other,
            })?;
            inputs.insert(field.variable.clone(), resolved);
        }
        Ok(())
    }

    /// Resolves one InputFile against `config`.
    async fn resolve_file(&self, app_id: Uuid, config: &UploadConfig, item: &Value, strict: bool) -> Result<Value> {
        if !item.is_object() {
            return Err(invalid("a file must be an object with type and transfer_method"));
        }
        let declared = text(item, "type").ok_or_else(|| invalid("file type is required"))?;
        let kind = Category::parse(declared).ok_or_else(|| invalid(format!("Invalid file type: {declared}")))?;
        let method = text(item, "transfer_method").ok_or_else(|| invalid("transfer_method is required"))?;
        if !matches!(method, "local_file" | "remote_url") {
            return Err(invalid(format!("Invalid transfer method: {method}")));
        }
        if !config.methods.is_empty() && !config.methods.iter().any(|m| m == method) {
            return Err(invalid(format!("File upload method {method} is not allowed")));
        }
        if kind != Category::Custom && !config.types.is_empty() && !config.types.iter().any(|t| t == declared) {
            return Err(invalid(format!("File type {declared} is not allowed")));
        }
        let settings = &self.inner.files;
        let value = if method == "local_file" {
            let id = text(item, "upload_file_id")
                .or_else(|| text(item, "related_id"))
                .ok_or_else(|| invalid("upload_file_id is required for a local_file"))?;
            let row = Uuid::parse_str(id)
                .ok()
                .map(|id| self.app_file(app_id, id))
                .transpose()?
                .flatten()
                .ok_or_else(|| invalid(format!("Invalid upload file: {id}")))?;
            file_value(
                app_id,
                declared,
                method,
                None,
                Some(row.id),
                &row.name,
                &row.extension,
                &row.mime_type,
                row.size as i64,
                &self.file_url(row.id),
            )
        } else {
            let url = text(item, "url")
                .or_else(|| text(item, "remote_url"))
                .ok_or_else(|| invalid("url is required for a remote_url file"))?;
            let info = net::probe(url, &self.inner.workflow_settings, settings.remote_timeout)
                .await
                .map_err(|e| invalid(format!("Invalid file url: {e}")))?;
            let name = info.filename.clone().unwrap_or_default();
            let mut extension = kinds::extension_of(&name);
            let mime = kinds::mime_for_extension(&extension)
                .map(str::to_string)
                .or_else(|| info.mime_type.as_deref().map(kinds::essence))
                .unwrap_or_default();
            if extension.is_empty() {
                extension = kinds::extension_for_mime(&mime).unwrap_or("bin").to_string();
            }
            let limit = settings.limit(kinds::category(&extension, &mime));
            if let Some(size) = info.size.filter(|s| *s > limit) {
                // A request file that breaks a rule is invalid_param (§3.1), as every other check here.
                return Err(invalid(format!(
                    "Invalid file url: the remote file is {size} bytes; the limit is {limit}"
                )));
            }
            let filename = if name.is_empty() { format!("{}.{extension}", Uuid::new_v4()) } else { name };
            let size = info.size.map(|s| s as i64).unwrap_or(-1);
            file_value(app_id, declared, method, Some(url), None, &filename, &extension, &mime, size, url)
        };
        let extension = value["extension"].as_str().unwrap_or("").to_ascii_lowercase();
        if kind == Category::Custom && !config.extensions.contains(&extension) {
            return Err(invalid(format!("File extension {extension:?} is not allowed")));
        }
        if strict && kind != Category::Custom {
            let detected = kinds::category(&extension, value["mime_type"].as_str().unwrap_or(""));
            if detected != kind {
                return Err(invalid("Detected file type does not match the specified type. Please verify the file."));
            }
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs() {
        let off = json!({"enabled": false, "image": {"enabled": false}});
        assert_eq!(UploadConfig::from_feature(Some(&off)), None);
        assert_eq!(UploadConfig::from_feature(None), None);
        let on = json!({"enabled": true, "allowed_file_types": ["document", "image"], "allowed_file_extensions": ["PDF", ".Md"],
            "allowed_file_upload_methods": ["local_file"], "number_limits": 2});
        let c = UploadConfig::from_feature(Some(&on)).unwrap();
        assert_eq!(c.types, vec!["document", "image"]);
        assert_eq!(c.extensions, vec![".pdf", ".md"]);
        assert_eq!(c.number_limit, Some(2));
        let legacy = json!({"image": {"enabled": true, "number_limits": 4, "transfer_methods": ["remote_url"]}});
        let c = UploadConfig::from_feature(Some(&legacy)).unwrap();
        assert_eq!(
            (c.types, c.methods, c.number_limit),
            (vec!["image".to_string()], vec!["remote_url".to_string()], Some(4))
        );
    }
}
