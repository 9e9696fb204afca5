//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) and the saved crash regressions
//! (`fuzz/regressions/<target>/`) through the fuzz target bodies, so CI checks on stable, without
//! a fuzzer, that every input found so far still passes.

use std::path::PathBuf;

use presence_proto::fuzzing;

fn replay(target: &str, f: fn(&[u8])) {
    let fuzz = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz"));
    let mut count = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            f(&data);
            count += 1;
        }
    }
    assert!(
        count > 0,
        "no corpus for fuzz target {target}: run fuzz/seed-corpora.py"
    );
}

#[test]
fn sip_message() {
    replay("sip_message", fuzzing::sip_message);
}

#[test]
fn sip_framer() {
    replay("sip_framer", fuzzing::sip_framer);
}

#[test]
fn sip_uri() {
    replay("sip_uri", fuzzing::sip_uri);
}

#[test]
fn sip_headers() {
    replay("sip_headers", fuzzing::sip_headers);
}

#[test]
fn pidf() {
    replay("pidf", fuzzing::pidf);
}

#[test]
fn server() {
    replay("server", fuzzing::server);
}

#[test]
fn resource_lists() {
    replay("resource_lists", fuzzing::resource_lists);
}

#[test]
fn rlmi() {
    replay("rlmi", fuzzing::rlmi);
}

#[test]
fn multipart() {
    replay("multipart", fuzzing::multipart);
}

#[test]
fn inflate() {
    replay("inflate", fuzzing::inflate);
}

#[test]
fn cluster_store() {
    replay("cluster_store", fuzzing::cluster_store);
}
