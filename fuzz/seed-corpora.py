#!/usr/bin/env python3
"""Seeds fuzz/corpus/<target>/ from the captured traces (../shared/traces/*.txt, seen from the
repository root; pass another folder as the first argument). Idempotent: files are named by content."""
import hashlib, pathlib, re, sys, zlib

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
# List targets: resource-lists bodies (plain, and the deflated ones of bin/), the multipart
# NOTIFY bodies (they start with their delimiter line, from which the multipart target derives
# the boundary), their RLMI parts, and compressed forms of all of these for the inflate target.
def put_inflate(data):
    put("inflate", zlib.compress(data, 6))
    raw = zlib.compressobj(6, zlib.DEFLATED, -15)
    put("inflate", raw.compress(data) + raw.flush())

lists, multiparts = [], []
for f in sorted((traces / "bin").glob("*.bin")):
    raw = f.read_bytes()
    put("inflate", raw)
    try:
        lists.append(zlib.decompress(raw))
    except zlib.error:
        pass
for m in messages:
    head, _, body = m.partition(b"\r\n\r\n")
    ct = re.search(rb"(?im)^(?:content-type|c)\s*:\s*([^\r\n]*)", head)
    ct = ct.group(1) if ct else b""
    if b"resource-lists+xml" in ct.lower() and body.strip():
        lists.append(body)
    b = re.search(rb"(?i)boundary=\"?([^\";\r\n]+)", ct)
    if ct.lower().startswith(b"multipart/") and b:
        multiparts.append((b.group(1), body))
# Two bodies the way our server writes them (bare cids, `----------` boundaries, one with an
# empty full-state list), by hand.
def server_notify(boundary, rlmi, pidfs):
    out = b""
    for cid, ctype, content in [(b"r00t1d@example.org", b'application/rlmi+xml;charset="UTF-8"', rlmi)] + pidfs:
        out += b"--" + boundary + b"\r\nContent-Transfer-Encoding: binary\r\nContent-ID: " + cid
        out += b"\r\nContent-Type: " + ctype + b"\r\n\r\n" + content + b"\r\n"
    return out + b"--" + boundary + b"--\r\n"
rlmi_head = b'<?xml version="1.0" encoding="UTF-8"?>\n<list xmlns="urn:ietf:params:xml:ns:rlmi" uri="sip:rls@example.org" '
multiparts.append((b"----------Zx81kQ", server_notify(b"----------Zx81kQ",
    rlmi_head + b'version="0" fullState="true">\n<resource uri="sip:+33612345678@example.org;user=phone"><name>Zo\xc3\xab &amp; co</name><instance id="1" state="active" cid="a1b2c3d@example.org"/></resource>\n<resource uri="sip:dave@example.org"></resource>\n</list>',
    [(b"a1b2c3d@example.org", b'application/pidf+xml;charset="UTF-8"',
      b'<?xml version="1.0" encoding="UTF-8"?>\n<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:+33612345678@example.org;user=phone"><tuple id="t1"><status><basic>open</basic></status></tuple></presence>')])))
multiparts.append((b"----------e3", server_notify(b"----------e3", rlmi_head + b'version="4" fullState="false">\n</list>', [])))
for boundary, body in multiparts:
    put("multipart", body)
    put_inflate(body)
    for part in body.split(b"--" + boundary)[1:]:
        _, sep, content = part.partition(b"\r\n\r\n")
        if sep and b"rlmi" in part.split(b"\r\n\r\n")[0].lower():
            put("rlmi", content[:-2] if content.endswith(b"\r\n") else content)
for body in lists:
    put("resource_lists", body)
    put_inflate(body)
for header in [b"deflate", b"gzip;q=1.0, deflate;q=0.5, *;q=0", b"*;q=0.001", b"deflate;q=0.000"]:
    put("inflate", header)
print(f"{len(messages)} messages, {len(lists)} resource lists, {len(multiparts)} multipart bodies seeded into {corpus}")

# The cluster_store target: a stored publication (P2 and the former P1), a stored dialog record
# (single and list) and a dialog-taken message, separated by '|'.
fixed = (b"Max-Forwards: 70\r\nFrom: <sip:alice@d>;tag=t1\r\nTo: <sip:bob@d>;tag=f1\r\n"
         b"Call-ID: c1\r\nContact: <sip:127.0.0.1:5065;transport=tcp>\r\nEvent: presence\r\n")
single = (b"D1\nn1\nc1\nt1\nf1\n7\nbob@d\nalice@d\nsip:alice@d\nsip:bob@127.0.0.1:40000\n"
          b"127.0.0.1\n40000\n010\n1003\n-\n" + fixed)
listed = (b"D1\nn1\nc1\nt1\nf1\n7\nbob@d\n\n\nsip:bob@127.0.0.1:40000\n127.0.0.1\n40000\n"
          b"010\n1003\nL\nsip:friends@d\nd\n1\nb0und\n1002\n2\nsip:alice@d\nalice@d\n-\n"
          b"sip:carol@d\ncarol@d\n+Carol\n" + fixed)
pidfs = [m.partition(b"\r\n\r\n")[2] for m in messages if m.startswith(b"PUBLISH")]
pidfs = [p for p in pidfs if b"<presence" in p][:4] or [b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:alice@d\"/>"]
for i, p in enumerate(pidfs):
    for payload in (b"P2\nn1\ninst1\nsip:alice@d\n" + p, b"P1\nn1\nsip:alice@d\n" + p):
        for record in (single, listed):
            for taken in (b"c1\nt1\nn2", b"T"):
                put("cluster_store", payload.replace(b"|", b"") + b"|" + record + b"|" + taken)
