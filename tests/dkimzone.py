"""DKIM checks against the DNS file the opendkim role writes (no real DNS in the lab):
shared by molecule/mail and the stack test."""
import re

import dkim


def zone_records(zone_file):
    """{owner name: TXT text} from a generated DNS file (the strings of a record joined)."""
    records = {}
    for line in zone_file.read_text().splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        owner, _ttl, _cls, rtype, rest = line.split(None, 4)
        assert rtype == "TXT", line
        records[owner.rstrip(".").lower()] = "".join(re.findall(r'"([^"]*)"', rest))
    return records


def verify_dkim(raw, zone_file):
    """(verified?, the verifier): the signature checked against the DNS file, 2048+ bits required."""
    def lookup(name, timeout=5):
        key = (name.decode() if isinstance(name, bytes) else name).rstrip(".").lower()
        value = zone_records(zone_file).get(key)
        return value.encode() if value is not None else None

    signer = dkim.DKIM(raw, minkey=2048)
    try:
        ok = signer.verify(dnsfunc=lookup)
    except dkim.ValidationError:
        ok = False
    return ok, signer
