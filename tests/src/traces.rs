//! The captures of real clients under `shared/traces/` (format: `shared/traces/README.md`):
//! where they are, and their messages as they were on the wire.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The trace folder: `$PRESENCE_TRACES_DIR`, else `shared/traces` next to the workspace.
/// Panics, saying so, when it is missing.
pub fn traces_dir() -> PathBuf {
    let dir = std::env::var_os("PRESENCE_TRACES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/traces"))
        });
    assert!(
        dir.is_dir(),
        "trace directory {} is missing: these tests need the captures of shared/traces/ \
         (or set PRESENCE_TRACES_DIR to a copy)",
        dir.display()
    );
    dir
}

/// The bytes of a file; panics naming it.
pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every capture file (`*.txt` of the trace folder), sorted; panics when there is none.
pub fn capture_files() -> Vec<PathBuf> {
    let dir = traces_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.txt capture in {}", dir.display());
    files
}

/// One captured message.
pub struct Captured {
    /// `file.txt#n`, for messages.
    pub name: String,
    /// The sender, from the marker.
    pub src: SocketAddr,
    /// Sent by the client (`client -> server` in the marker).
    pub to_server: bool,
    /// The start line given in the marker.
    pub start_line: String,
    /// The exact wire bytes (a compressed body is taken from `bin/`).
    pub wire: Vec<u8>,
    /// The file of `bin/` the raw body came from (Content-Encoding: deflate), if any.
    pub bin: Option<String>,
}

/// Every message of the capture `file` of the trace folder.
pub fn load(file: &str) -> Vec<Captured> {
    read_capture(&traces_dir().join(file))
}

/// Every message of one capture file, checking the format as it goes (markers, separator
/// lines, the size of the `bin/` files).
pub fn read_capture(file: &Path) -> Vec<Captured> {
    let data = read(file);
    let dir = file.parent().unwrap_or(Path::new("."));
    let file_name = file.file_name().unwrap().to_string_lossy().into_owned();
    let lines: Vec<&[u8]> = data.split_inclusive(|&b| b == b'\n').collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if !line_is_message_marker(line) {
            // Comments before the first message.
            assert!(
                !line.starts_with(b"#####"),
                "{file_name}: unexpected marker {}",
                String::from_utf8_lossy(line)
            );
            i += 1;
            continue;
        }
        let marker = String::from_utf8_lossy(line).trim_end().to_string();
        let n: String = marker[6..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let name = format!("{file_name}#{n}");
        let start_line = marker
            .split_once(" | ")
            .map(|(_, s)| s.to_string())
            .unwrap_or_else(|| panic!("{file_name}: no start line in marker {marker}"));
        let fields: Vec<&str> = marker.split_whitespace().collect();
        let src = fields
            .get(3)
            .and_then(|f| f.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no source address in marker {marker}"));
        let to_server = marker.contains("client -> server");
        i += 1;
        let mut text = Vec::new();
        while i < lines.len() && !lines[i].starts_with(b"#####") {
            text.extend_from_slice(lines[i]);
            i += 1;
        }
        let mut bin = None;
        if i < lines.len() && lines[i].starts_with(b"##### [") {
            // A compressed body replaced by notes: the head ends with its blank line and the raw
            // body is in bin/.
            assert!(
                text.ends_with(b"\r\n\r\n"),
                "{name}: head before the body notes"
            );
            let mut declared_len = None;
            while i < lines.len() && !(line_is_message_marker(lines[i])) {
                let note = String::from_utf8_lossy(lines[i]);
                if let Some(rest) = note.strip_prefix("##### [raw body bytes saved as ") {
                    bin = Some(rest.trim_end().trim_end_matches(']').to_string());
                }
                if let Some(rest) = note.strip_prefix("##### [binary body, ") {
                    declared_len = rest.split(' ').next().and_then(|n| n.parse::<usize>().ok());
                }
                i += 1;
            }
            let bin_file = bin
                .as_deref()
                .unwrap_or_else(|| panic!("{name}: no `raw body bytes saved as` note"));
            let body = std::fs::read(dir.join("bin").join(bin_file))
                .unwrap_or_else(|e| panic!("{name}: bin/{bin_file}: {e}"));
            assert_eq!(
                Some(body.len()),
                declared_len,
                "{name}: size of bin/{bin_file}"
            );
            text.extend_from_slice(&body);
        } else {
            // The exact wire bytes, then one LF separating them from the next marker.
            assert_eq!(text.pop(), Some(b'\n'), "{name}: separator line");
        }
        out.push(Captured {
            name,
            src,
            to_server,
            start_line,
            wire: text,
            bin,
        });
    }
    out
}

fn line_is_message_marker(line: &[u8]) -> bool {
    line.starts_with(b"##### ") && line.get(6).is_some_and(u8::is_ascii_digit)
}
