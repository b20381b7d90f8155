#!/usr/bin/env python3
"""Validates OCSF events, one JSON object a line, with ocsf-emitter.

An implementation of OCSF 1.5.0 independent of ours: each line is read
into its `VulnerabilityFinding` model (the schema's types and required
attributes) and passed to its `validate` (class and category identity,
`type_uid`, the class and category names, `metadata.version`). Then the
rules its builders apply and `validate` leaves out: the names beside
`activity_id`, `severity_id` and `status_id` are the captions of its own
vocabularies, and a vulnerability has exactly one of `cve`, `cwe` or
`advisory`.

Usage: validate_ocsf.py FILE   (exit 1 naming the first bad line)
"""

import json
import sys

from ocsf_emitter import InvalidFindingError, VulnerabilityFindingAction, validate
from ocsf_emitter import defaults
from ocsf_emitter._models import VulnerabilityFinding
from pydantic import ValidationError


def caption(value):
    """`in_progress` -> `In Progress`: OCSF's caption of a vocabulary name."""
    return value.replace("_", " ").title()


SEVERITY_NAMES = {i: caption(s.value) for s, i in defaults._SEVERITY_TO_ID.items()}
STATUS_NAMES = {i: caption(s.value) for s, i in defaults._STATUS_TO_ID.items()}
ACTIVITY_NAMES = {a.value: caption(a.name.lower()) for a in VulnerabilityFindingAction}


def problems(event):
    """What the package's validation leaves out, checked on the raw event."""
    found = []
    for field, names in (
        ("activity", ACTIVITY_NAMES),
        ("severity", SEVERITY_NAMES),
        ("status", STATUS_NAMES),
    ):
        uid = event.get(f"{field}_id")
        name_field = "activity_name" if field == "activity" else field
        # 99 (Other) carries the source's own name.
        if uid is not None and uid != 99 and event.get(name_field) != names.get(uid):
            found.append(f"{name_field}: expected {names.get(uid)!r} for {field}_id {uid}, got {event.get(name_field)!r}")
    if event.get("type_name") != f"Vulnerability Finding: {event.get('activity_name')}":
        found.append(f"type_name: got {event.get('type_name')!r}")
    for i, vuln in enumerate(event.get("vulnerabilities") or []):
        ids = [k for k in ("cve", "cwe", "advisory") if vuln.get(k) is not None]
        if len(ids) != 1:
            found.append(f"vulnerabilities.{i}: exactly one of cve, cwe, advisory, got {ids}")
    return found


def main():
    path = sys.argv[1]
    count = 0
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                event = json.loads(line)
                validate(VulnerabilityFinding.model_validate(event))
            except (ValueError, ValidationError, InvalidFindingError) as err:
                print(f"line {number}: {err}", file=sys.stderr)
                return 1
            found = problems(event)
            if found:
                print(f"line {number}: " + "; ".join(found), file=sys.stderr)
                return 1
            count += 1
    print(f"{count} events valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
