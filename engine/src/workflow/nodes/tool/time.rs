//! `time.current_time`: the time now in a `timezone` (IANA name, default
//! UTC), formatted with a strftime `format` (default `%Y-%m-%d %H:%M:%S`).

use serde_json::{Map, Value};

pub fn current_time(args: &Map<String, Value>) -> Result<String, String> {
    let text = |k: &str| args.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    let zone = text("timezone").unwrap_or("UTC");
    let format = text("format").unwrap_or("%Y-%m-%d %H:%M:%S");
    let now = jiff::Timestamp::now().in_tz(zone).map_err(|_| format!("Invalid timezone type: {zone}"))?;
    jiff::fmt::strtime::format(format, &now).map_err(|e| format!("Invalid time format {format:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_in_a_zone() {
        let mut args = Map::new();
        args.insert("timezone".into(), json!("Asia/Shanghai"));
        args.insert("format".into(), json!("%Y|%z"));
        let out = current_time(&args).unwrap();
        assert!(out.ends_with("|+0800"), "{out}");
        args.insert("timezone".into(), json!("Mars/Olympus"));
        assert!(current_time(&args).unwrap_err().contains("Mars/Olympus"));
        assert_eq!(current_time(&Map::new()).unwrap().len(), 19);
    }
}
