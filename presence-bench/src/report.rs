//! The report: named figures grouped in sections, printed as a human summary and as one JSON
//! object (keys in the order they were added; written by hand, no serde).

use std::fmt::Write as _;

use crate::stats::Histogram;

#[derive(Debug, Clone)]
pub enum Value {
    Int(u64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
    /// A JSON object of counts (e.g. errors by status).
    Counts(Vec<(String, u64)>),
}

#[derive(Debug, Clone)]
struct Field {
    key: String,
    label: String,
    value: Value,
    unit: &'static str,
}

#[derive(Debug, Clone)]
struct Section {
    title: String,
    fields: Vec<Field>,
}

/// The figures of one run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    sections: Vec<Section>,
}

impl Report {
    pub fn new() -> Report {
        Report::default()
    }

    /// Starts a section of the human summary.
    pub fn section(&mut self, title: &str) {
        self.sections.push(Section {
            title: title.to_owned(),
            fields: Vec::new(),
        });
    }

    fn push(&mut self, key: &str, label: &str, value: Value, unit: &'static str) {
        if self.sections.is_empty() {
            self.section("");
        }
        if let Some(s) = self.sections.last_mut() {
            s.fields.push(Field {
                key: key.to_owned(),
                label: label.to_owned(),
                value,
                unit,
            });
        }
    }

    pub fn int(&mut self, key: &str, label: &str, v: u64) {
        self.push(key, label, Value::Int(v), "");
    }

    /// An integer with a unit; None is JSON null.
    pub fn opt_int(&mut self, key: &str, label: &str, v: Option<u64>, unit: &'static str) {
        self.push(key, label, v.map_or(Value::Null, Value::Int), unit);
    }

    pub fn str(&mut self, key: &str, label: &str, v: &str) {
        self.push(key, label, Value::Str(v.to_owned()), "");
    }

    pub fn bool(&mut self, key: &str, label: &str, v: bool) {
        self.push(key, label, Value::Bool(v), "");
    }

    /// A float with a unit; None is JSON null (and "-" for humans).
    pub fn float(&mut self, key: &str, label: &str, v: Option<f64>, unit: &'static str) {
        let value = match v {
            Some(x) if x.is_finite() => Value::Float(x),
            _ => Value::Null,
        };
        self.push(key, label, value, unit);
    }

    pub fn counts(&mut self, key: &str, label: &str, v: Vec<(String, u64)>) {
        self.push(key, label, Value::Counts(v), "");
    }

    /// `<prefix>_p50_ms`, `_p90_ms`, `_p99_ms`, `_max_ms`, `_mean_ms` and `<prefix>_samples`
    /// of a latency histogram, on one human line.
    pub fn latency(&mut self, prefix: &str, label: &str, h: &Histogram) {
        let ms = |us: Option<u64>| us.map(|u| u as f64 / 1000.0);
        let figures = [
            ("p50", ms(h.quantile_us(0.50))),
            ("p90", ms(h.quantile_us(0.90))),
            ("p99", ms(h.quantile_us(0.99))),
            ("max", ms(h.max_us())),
            ("mean", h.mean_us().map(|u| u / 1000.0)),
        ];
        for (name, v) in figures {
            self.float(&format!("{prefix}_{name}_ms"), "", v, "ms");
        }
        self.int(&format!("{prefix}_samples"), "", h.count());
        if let Some(s) = self.sections.last_mut() {
            // The six fields above are printed as one line, under the first one's label.
            let n = s.fields.len();
            if let Some(f) = s.fields.get_mut(n - 6) {
                f.label = label.to_owned();
            }
        }
    }

    /// The human summary.
    pub fn human(&self) -> String {
        let mut out = String::new();
        for s in &self.sections {
            if !s.title.is_empty() {
                let _ = writeln!(out, "{}", s.title);
            }
            let mut i = 0;
            while let Some(f) = s.fields.get(i) {
                if f.key.ends_with("_p50_ms") && f.label.is_empty() {
                    i += 1;
                    continue;
                }
                if f.key.ends_with("_p50_ms") {
                    // A latency group: p50 p90 p99 max mean samples.
                    let get = |j: usize| s.fields.get(i + j).map(|f| &f.value);
                    let ms = |v: Option<&Value>| match v {
                        Some(Value::Float(x)) => format!("{x:.2}"),
                        _ => "-".to_owned(),
                    };
                    let samples = match get(5) {
                        Some(Value::Int(n)) => *n,
                        _ => 0,
                    };
                    let _ = writeln!(
                        out,
                        "  {:<42} p50 {} / p90 {} / p99 {} / max {} ms (mean {}, {} samples)",
                        f.label,
                        ms(get(0)),
                        ms(get(1)),
                        ms(get(2)),
                        ms(get(3)),
                        ms(get(4)),
                        samples
                    );
                    i += 6;
                    continue;
                }
                if !f.label.is_empty() {
                    let _ = writeln!(out, "  {:<42} {}", f.label, human_value(&f.value, f.unit));
                }
                i += 1;
            }
        }
        out
    }

    /// The JSON object, on one line.
    pub fn json(&self) -> String {
        let mut out = String::from("{");
        let mut first = true;
        for f in self.sections.iter().flat_map(|s| &s.fields) {
            if !first {
                out.push(',');
            }
            first = false;
            json_string(&mut out, &f.key);
            out.push(':');
            json_value(&mut out, &f.value);
        }
        out.push('}');
        out
    }
}

fn human_value(v: &Value, unit: &str) -> String {
    let s = match v {
        Value::Int(n) => n.to_string(),
        Value::Float(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Value::Float(x) if x.abs() >= 1.0 => format!("{x:.2}"),
        Value::Float(x) => format!("{x:.3}"),
        Value::Str(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Null => return "-".to_owned(),
        Value::Counts(c) if c.is_empty() => return "none".to_owned(),
        Value::Counts(c) => c
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    if unit.is_empty() {
        s
    } else {
        format!("{s} {unit}")
    }
}

fn json_value(out: &mut String, v: &Value) {
    match v {
        Value::Int(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Float(x) => {
            // Three decimals are plenty for ms, seconds and rates.
            let _ = write!(out, "{}", (x * 1000.0).round() / 1000.0);
        }
        Value::Str(s) => json_string(out, s),
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Null => out.push_str("null"),
        Value::Counts(c) => {
            out.push('{');
            for (i, (k, n)) in c.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json_string(out, k);
                let _ = write!(out, ":{n}");
            }
            out.push('}');
        }
    }
}

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_human() {
        let mut r = Report::new();
        r.section("Run");
        r.str("scenario", "scenario", "fan\"out");
        r.int("users", "users", 50);
        r.float("rate", "rate", Some(12.3456), "/s");
        r.float("nothing", "nothing", None, "ms");
        r.bool("ok", "ok", true);
        r.counts("errors", "errors", vec![("PUBLISH 412".into(), 2)]);
        let mut h = Histogram::new();
        h.record_us(1500);
        r.latency("latency", "PUBLISH->NOTIFY", &h);
        let j = r.json();
        assert!(
            j.starts_with("{\"scenario\":\"fan\\\"out\",\"users\":50,\"rate\":12.346,"),
            "{j}"
        );
        assert!(j.contains("\"nothing\":null"), "{j}");
        assert!(j.contains("\"errors\":{\"PUBLISH 412\":2}"), "{j}");
        assert!(j.contains("\"latency_p50_ms\":1.5,"), "{j}");
        assert!(j.contains("\"latency_samples\":1}"), "{j}");
        let h = r.human();
        assert!(h.contains("PUBLISH->NOTIFY"), "{h}");
        assert!(h.contains("p50 1.50 / p90 1.50"), "{h}");
        let line = |label: &str| {
            h.lines()
                .find(|l| l.trim_start().starts_with(label))
                .map(|l| l.split_at(45).1.to_owned())
        };
        assert_eq!(line("rate").as_deref(), Some("12.35 /s"), "{h}");
        assert_eq!(line("errors").as_deref(), Some("PUBLISH 412: 2"), "{h}");
        assert_eq!(line("nothing").as_deref(), Some("-"), "{h}");
    }
}
