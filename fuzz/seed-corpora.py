#!/usr/bin/env python3
"""Seeds fuzz/corpus/<target>/ from the captured traces (../shared/traces/*.txt, seen from the
repository root; pass another folder as the first argument). Idempotent: files are named by content."""
import hashlib, pathlib, re, sys

root = pathlib.Path(__file__).resolve().parent
traces = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else root.parent.parent / "shared" / "traces"
corpus = root / "corpus"

def put(target, data):
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)

messages = []
for f in sorted(traces.glob("*.txt")):
    raw = f.read_bytes()
    for chunk in re.split(rb"(?m)^##### \d+ [^\n]*\n", raw)[1:]:
        msg = re.split(rb"(?m)^#####", chunk)[0]
        if b"\r\n\r\n" in msg:
            messages.append(msg)

for m in messages:
    put("sip_message", m)
    put("sip_framer", b"\x07" + m)
    head, _, body = m.partition(b"\r\n\r\n")
    if body.lstrip().startswith(b"<?xml") and b"<presence" in body:
        put("pidf", body)
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() in (b"from", b"to", b"contact", b"via", b"record-route", b"route", b"f", b"t", b"m", b"v"):
            put("sip_headers", value.strip())
        for uri in re.findall(rb"<(sips?:[^>]+)>", value):
            put("sip_uri", uri)
    first = head.split(b"\r\n")[0].split(b" ")
    if len(first) == 3 and first[1].startswith(b"sip"):
        put("sip_uri", first[1])
# The server target: op 0 opens a connection, op 1 sends <len> bytes on it.
for m in messages:
    if m.startswith((b"PUBLISH", b"SUBSCRIBE")):
        data = bytearray(b"\x00\x01")
        for i in range(0, len(m), 255):
            part = m[i:i + 255]
            data += b"\x01\x00" + bytes([len(part)]) + part
        put("server", bytes(data))
print(f"{len(messages)} messages seeded into {corpus}")
