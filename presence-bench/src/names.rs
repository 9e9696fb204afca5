//! Names the tool gives to users, lists, dialogs and transactions, and reading them back from what
//! the server sends. Every name carries the run id, so runs against a long-running server do not
//! collide and what belongs to another run is recognised.

/// The text in a PIDF `<note>` that identifies a PUBLISH: `pbseq=<seq>`. `=` never occurs in the
/// names below, so only notes match.
pub const NOTE_MARK: &[u8] = b"pbseq=";

/// Naming scheme of one run.
#[derive(Debug, Clone)]
pub struct Names {
    pub run: String,
    pub domain: String,
    /// `<prefix><run>-`: users are this + a 1-based, zero-padded number.
    user_stem: Vec<u8>,
    /// `<prefix><run>-list-`.
    list_stem: Vec<u8>,
    /// `<prefix><run>-d`: Call-IDs of subscription dialogs (+ dialog number).
    dialog_call_id: Vec<u8>,
    /// `<prefix><run>-`: every Call-ID of this run starts with it.
    call_id_stem: Vec<u8>,
    /// `z9hG4bK-<run>-`: branches (+ transaction number).
    branch: Vec<u8>,
}

impl Names {
    pub fn new(prefix: &str, run: &str, domain: &str) -> Names {
        let stem = format!("{prefix}{run}-");
        Names {
            run: run.to_owned(),
            domain: domain.to_owned(),
            user_stem: stem.clone().into_bytes(),
            list_stem: format!("{stem}list-").into_bytes(),
            dialog_call_id: format!("{stem}d").into_bytes(),
            call_id_stem: stem.into_bytes(),
            branch: format!("z9hG4bK-{run}-").into_bytes(),
        }
    }

    /// The user part of user `idx` (0-based): `bench-<run>-00001` for 0.
    pub fn write_user(&self, out: &mut Vec<u8>, idx: u32) {
        out.extend_from_slice(&self.user_stem);
        write_padded(out, u64::from(idx) + 1, 5);
    }

    /// `sip:<user>@<domain>`.
    pub fn write_user_uri(&self, out: &mut Vec<u8>, idx: u32) {
        out.extend_from_slice(b"sip:");
        self.write_user(out, idx);
        out.push(b'@');
        out.extend_from_slice(self.domain.as_bytes());
    }

    /// `sip:<prefix><run>-list-0001@<domain>` for list 0.
    pub fn write_list_uri(&self, out: &mut Vec<u8>, list: u32) {
        out.extend_from_slice(b"sip:");
        out.extend_from_slice(&self.list_stem);
        write_padded(out, u64::from(list) + 1, 4);
        out.push(b'@');
        out.extend_from_slice(self.domain.as_bytes());
    }

    /// The user index named by a URI (`sip:bench-<run>-00012@…` gives 11), if it is one of ours.
    pub fn user_from_uri(&self, uri: &[u8]) -> Option<u32> {
        let at = memchr::memmem::find(uri, &self.user_stem)?;
        let rest = uri.get(at + self.user_stem.len()..)?;
        let (n, used) = leading_number(rest)?;
        if rest.get(used) != Some(&b'@') || n == 0 {
            return None;
        }
        u32::try_from(n - 1).ok()
    }

    /// Call-ID of dialog `id`.
    pub fn write_dialog_call_id(&self, out: &mut Vec<u8>, id: u64) {
        out.extend_from_slice(&self.dialog_call_id);
        write_uint(out, id);
    }

    /// Call-ID of the publications of user `idx`.
    pub fn write_publish_call_id(&self, out: &mut Vec<u8>, idx: u32) {
        out.extend_from_slice(&self.call_id_stem);
        out.push(b'p');
        write_uint(out, u64::from(idx));
    }

    /// The dialog number of one of our dialog Call-IDs.
    pub fn dialog_from_call_id(&self, call_id: &[u8]) -> Option<u64> {
        let rest = call_id.strip_prefix(self.dialog_call_id.as_slice())?;
        match leading_number(rest)? {
            (n, used) if used == rest.len() => Some(n),
            _ => None,
        }
    }

    /// Whether a Call-ID was made by this run.
    pub fn is_ours(&self, call_id: &[u8]) -> bool {
        call_id.starts_with(&self.call_id_stem)
    }

    /// `z9hG4bK-<run>-<txn>`.
    pub fn write_branch(&self, out: &mut Vec<u8>, txn: u64) {
        out.extend_from_slice(&self.branch);
        write_uint(out, txn);
    }

    /// The transaction number in the `branch` of a Via value we wrote.
    pub fn txn_from_via(&self, via: &[u8]) -> Option<u64> {
        let at = memchr::memmem::find(via, b"branch=")?;
        let rest = via.get(at + 7..)?.strip_prefix(self.branch.as_slice())?;
        leading_number(rest).map(|(n, _)| n)
    }
}

/// The largest `pbseq=N` in a body (a document may merge several publications); None if there
/// is none.
pub fn max_seq(body: &[u8]) -> Option<u64> {
    let finder = memchr::memmem::Finder::new(NOTE_MARK);
    let mut best = None;
    for at in finder.find_iter(body) {
        if let Some((n, _)) = body.get(at + NOTE_MARK.len()..).and_then(leading_number) {
            best = Some(best.map_or(n, |b: u64| b.max(n)));
        }
    }
    best
}

/// Decimal digits at the start of `s`: the value and how many bytes they took.
fn leading_number(s: &[u8]) -> Option<(u64, usize)> {
    let len = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if len == 0 || len > 19 {
        return None;
    }
    let n = s
        .get(..len)?
        .iter()
        .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    Some((n, len))
}

/// Appends a decimal integer.
pub fn write_uint(out: &mut Vec<u8>, n: u64) {
    let mut b = itoa::Buffer::new();
    out.extend_from_slice(b.format(n).as_bytes());
}

/// Appends a decimal integer padded with zeros to `width` digits.
fn write_padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut b = itoa::Buffer::new();
    let s = b.format(n);
    for _ in s.len()..width {
        out.push(b'0');
    }
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let n = Names::new("bench-", "r1", "example.org");
        let mut out = Vec::new();
        n.write_user_uri(&mut out, 11);
        assert_eq!(out, b"sip:bench-r1-00012@example.org");
        assert_eq!(n.user_from_uri(&out), Some(11));
        assert_eq!(n.user_from_uri(b"sip:bench-r2-00012@example.org"), None);
        assert_eq!(n.user_from_uri(b"sip:bench-r1-list-0001@example.org"), None);
        out.clear();
        n.write_list_uri(&mut out, 0);
        assert_eq!(out, b"sip:bench-r1-list-0001@example.org");
        out.clear();
        n.write_dialog_call_id(&mut out, 42);
        assert_eq!(n.dialog_from_call_id(&out), Some(42));
        assert!(n.is_ours(&out));
        assert_eq!(n.dialog_from_call_id(b"bench-r1-d42x"), None);
        out.clear();
        n.write_publish_call_id(&mut out, 3);
        assert!(n.is_ours(&out));
        assert_eq!(n.dialog_from_call_id(&out), None);
        out.clear();
        out.extend_from_slice(b"SIP/2.0/TCP 127.0.0.1:4000;branch=");
        n.write_branch(&mut out, 77);
        out.extend_from_slice(b";rport=4000;received=127.0.0.1");
        assert_eq!(n.txn_from_via(&out), Some(77));
        assert_eq!(n.txn_from_via(b"SIP/2.0/TCP h;branch=z9hG4bK-zz-1"), None);
    }

    #[test]
    fn seq_in_bodies() {
        assert_eq!(max_seq(b"<note>pbseq=12</note>"), Some(12));
        assert_eq!(
            max_seq(b"<note>pbseq=12</note><note>pbseq=7</note>"),
            Some(12)
        );
        assert_eq!(max_seq(b"<note>No presence</note>"), None);
        assert_eq!(max_seq(b"pbseq=</note>"), None);
    }
}
