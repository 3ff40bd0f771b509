"""Refuse answers that would make a repository that cannot build, lint or deploy.

Each rule below exists because something downstream rejects the value: Kubernetes names
(DNS-1123 labels), Python packages and entry points (identifiers), buf lint (a versioned
lower_snake package and a PascalCase message) and Kafka (topic characters).
"""

import keyword
import re
import sys

ANSWERS = {
    "connector_name": {{ cookiecutter.connector_name | tojson }},
    "topics": {{ cookiecutter.topics | tojson }},
    "writer": {{ cookiecutter.writer | tojson }},
    "transform_name": {{ cookiecutter.transform_name | tojson }},
    "protobuf_message": {{ cookiecutter.protobuf_message | tojson }},
}

RULES = {
    "connector_name": (
        r"[a-z]([a-z0-9-]{0,50}[a-z0-9])?",
        "lowercase letters, digits and '-', starting with a letter, at most 52 characters",
    ),
    "transform_name": (r"[a-z_][a-z0-9_]{0,99}", "a lowercase Python identifier"),
    "protobuf_message": (
        r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\.v[0-9]+((alpha|beta)[0-9]*)?\.[A-Z][A-Za-z0-9]*",
        "package.vN.Message: a lower_snake package ending in a version, then a PascalCase name",
    ),
}
TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
PACKAGE = {{ cookiecutter.__package | tojson }}
# Top-level names already taken where the package is installed beside the runtime.
TAKEN_PACKAGES = {"connectors", "readers", "writers", "transforms", "templates", "harness", "tests"}
# Names transform.py defines or imports: a function of the same name would shadow them.
TAKEN_IN_MODULE = {"transform", "entry_key", "annotations", "Any", "Put", "Delete",
                   "TransformContext", "KEY_PREFIX"}


def problems() -> list[str]:
    found = []
    for name, (pattern, expected) in RULES.items():
        if not re.fullmatch(pattern, ANSWERS[name]):
            found.append(f"{name}={ANSWERS[name]!r}: {expected}")
    if keyword.iskeyword(ANSWERS["transform_name"]) or ANSWERS["transform_name"] in TAKEN_IN_MODULE:
        found.append(f"transform_name={ANSWERS['transform_name']!r}: a name that is not a "
                     "Python keyword nor one the transform module already uses")
    if keyword.iskeyword(PACKAGE) or PACKAGE in TAKEN_PACKAGES or PACKAGE in sys.stdlib_module_names:
        found.append(f"connector_name={ANSWERS['connector_name']!r}: a name whose Python package "
                     f"({PACKAGE!r}) is not a keyword, a standard module or one of the runtime's")
    topics = [t.strip() for t in ANSWERS["topics"].split(",")]
    if not all(topics) or not all(TOPIC.fullmatch(t) for t in topics):
        found.append(
            f"topics={ANSWERS['topics']!r}: comma-separated Kafka topic names "
            "(letters, digits, '.', '_', '-')"
        )
    elif len(set(topics)) != len(topics):
        found.append(f"topics={ANSWERS['topics']!r}: each topic once")
    if ANSWERS["writer"] not in ("kv", "s3", "http", "kafka"):
        found.append(f"writer={ANSWERS['writer']!r}: one of kv, s3, http, kafka")
    return found


if __name__ == "__main__":
    bad = problems()
    for line in bad:
        print(f"invalid answer: {line}", file=sys.stderr)
    sys.exit(1 if bad else 0)
