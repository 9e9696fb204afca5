//! The readiness notification of systemd's `Type=notify` services (`sd_notify(3)`), without
//! libsystemd: one datagram to the Unix socket named by `$NOTIFY_SOCKET` (a path, or an abstract
//! name when it starts with `@`). Without `$NOTIFY_SOCKET` (not run by systemd, or
//! `Type=simple`) nothing is sent.

use std::ffi::OsStr;
use std::io;
use std::os::unix::net::UnixDatagram;

/// Tells systemd that the server is up (its listeners are bound). Failures are logged, never
/// fatal: a service manager that does not listen must not stop the server.
pub fn notify_ready() {
    if let Some(socket) = std::env::var_os("NOTIFY_SOCKET") {
        match notify_to(&socket, "READY=1\n") {
            Ok(()) => tracing::debug!("readiness sent to the service manager"),
            Err(e) => tracing::warn!(
                "cannot notify the service manager on {}: {e}",
                socket.to_string_lossy()
            ),
        }
    }
}

/// Sends `state` (e.g. `READY=1`) to the notification socket `socket`.
pub fn notify_to(socket: &OsStr, state: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = socket.as_encoded_bytes();
    match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(state.as_bytes(), &addr)?;
        }
        None if bytes.starts_with(b"/") => {
            sock.send_to(state.as_bytes(), socket)?;
        }
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "NOTIFY_SOCKET is neither a path nor an abstract socket name",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_one_datagram() {
        let dir = std::env::temp_dir().join(format!("presence-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        notify_to(path.as_os_str(), "READY=1\n").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");

        let name = format!("presence-notify-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let abstract_listener = UnixDatagram::bind_addr(&addr).unwrap();
        notify_to(OsStr::new(&format!("@{name}")), "READY=1\n").unwrap();
        let n = abstract_listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");

        assert!(notify_to(OsStr::new("relative"), "READY=1\n").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
