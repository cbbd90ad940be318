#!/usr/bin/python3
"""schema_check.py - validates documents against one of the JSON Schemas in schemas/.

usage: schema_check.py SCHEMA FILE...

A FILE is YAML (.yaml, .yml), JSON (.json), or a feed (.jsonl: one entry a line, blank
and '#' lines skipped), whose lines are checked by their "envelope" or "fields" object as
they go on the wire (non-string field values become compact JSON text, as the feed tool
sends them). YAML is read the way the daemon reads it: YAML 1.2 core types (`on`, `yes`
and `no` are strings, dates are not converted), and a plain scalar that a ',' cut short
inside { } or [ ] while a '(' was open, as in `{type: numeric(12,2)}`, is read again up
to the balancing ')' (projector/model does the same). Prints every error as
"FILE[:LINE]: PATH: MESSAGE" and exits 1 if there is any, 2 on usage errors.
"""
import json
import re
import sys

import jsonschema
import yaml


class Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with the YAML 1.2 core schema's implicit types only."""


Yaml12Loader.yaml_implicit_resolvers = {}
for _tag, _regex, _first in [
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", list("~nN") + [""]),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$",
     list("-+0123456789")),
    ("tag:yaml.org,2002:float",
     r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
     r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", list("-+.0123456789")),
]:
    Yaml12Loader.add_implicit_resolver(_tag, re.compile(_regex), _first)


def _construct_int(loader, node):
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    return int(text, 0 if text.startswith("0x") else 10)


Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def balanced_end(text, start):
    """Index just past the ')' that balances the text from start, or None (projector/model/loader.c)."""
    depth, quoted = 0, False
    for i in range(start, len(text)):
        c = text[i]
        if quoted:
            quoted = c != "'"
        elif c == "'":
            quoted = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        elif c in "}]\n" or depth < 0:
            return None
    return None


def rejoin(node, text):
    """The end index of node's intended text when a ',' cut it short, else None."""
    if not isinstance(node, yaml.ScalarNode) or node.style is not None:
        return None
    if node.value.count("(") <= node.value.count(")"):
        return None
    end = node.end_mark.index
    while end < len(text) and text[end] in " \t":
        end += 1
    if end >= len(text) or text[end] != ",":
        return None
    full = balanced_end(text, node.start_mark.index)
    if full is None:
        return None
    node.value = text[node.start_mark.index:full]
    return full


def repair_flow(node, text):
    """Rejoins cut scalars of every flow collection under node, dropping what they swallowed."""
    if isinstance(node, yaml.MappingNode):
        pairs, skip_to = [], -1
        for key, value in node.value:
            if key.start_mark.index < skip_to:
                continue
            if node.flow_style:
                skip_to = max(rejoin(key, text) or -1, rejoin(value, text) or -1)
            repair_flow(value, text)
            pairs.append((key, value))
        node.value = pairs
    elif isinstance(node, yaml.SequenceNode):
        items, skip_to = [], -1
        for item in node.value:
            if item.start_mark.index < skip_to:
                continue
            if node.flow_style:
                skip_to = rejoin(item, text) or -1
            repair_flow(item, text)
            items.append(item)
        node.value = items


def check_duplicates(node):
    """Raises ValueError for a mapping that repeats a key (the daemon rejects those)."""
    if isinstance(node, yaml.MappingNode):
        seen = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise ValueError("line %d: duplicate key \"%s\": first given at line %d"
                                     % (key.start_mark.line + 1, key.value, seen[key.value]))
                seen[key.value] = key.start_mark.line + 1
            check_duplicates(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            check_duplicates(item)


def load_yaml(text):
    loader = Yaml12Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        repair_flow(node, text)
        check_duplicates(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def wire_fields(fields):
    """The fields as XADD sends them: strings as they are, anything else as compact JSON."""
    if not isinstance(fields, dict):
        return fields
    return {k: v if isinstance(v, str) else json.dumps(v, separators=(",", ":"),
                                                       ensure_ascii=False)
            for k, v in fields.items()}


def feed_documents(path, text):
    """Yields (label, document) for each entry line of a .jsonl feed."""
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        label = "%s:%d" % (path, lineno)
        try:
            entry = json.loads(line)
        except ValueError as e:
            yield label, None, "invalid JSON: %s" % e
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("stream"), str):
            yield label, None, "expected an object with a string \"stream\""
        elif ("envelope" in entry) == ("fields" in entry):
            yield label, None, "expected exactly one of \"envelope\" and \"fields\""
        elif "envelope" in entry:
            yield label, entry["envelope"], None
        else:
            yield label, wire_fields(entry["fields"]), None


def documents(path):
    """Yields (label, document, load_error) for every document the file holds."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        yield path, None, "cannot read file: %s" % e.strerror
        return
    if path.endswith(".jsonl"):
        yield from feed_documents(path, text)
        return
    try:
        if path.endswith(".json"):
            yield path, json.loads(text), None
        else:
            yield path, load_yaml(text), None
    except (ValueError, yaml.YAMLError) as e:
        yield path, None, "cannot parse: %s" % str(e).replace("\n", " ")


def error_path(error):
    return "$" + "".join("[%d]" % p if isinstance(p, int) else ".%s" % p
                         for p in error.absolute_path)


def deepest(error):
    """For oneOf/anyOf, an error of the branch that came closest (fewest errors, then the
    deepest one) says more than "is not valid under any of the given schemas"."""
    if not error.context:
        return error
    branches = {}
    for e in error.context:
        branches.setdefault(e.relative_schema_path[0], []).append(e)

    def rank(errors):
        best = max((deepest(e) for e in errors),
                   key=lambda e: (len(e.absolute_path), e.validator != "type"))
        return (-len(errors), len(best.absolute_path), best.validator != "type"), best

    return max((rank(errors) for errors in branches.values()), key=lambda r: r[0])[1]


def check(validator, path):
    """Prints every problem of one file; returns how many there were."""
    problems = 0
    for label, doc, load_error in documents(path):
        if load_error is not None:
            print("%s: %s" % (label, load_error))
            problems += 1
            continue
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
            detail = deepest(error)
            print("%s: %s: %s" % (label, error_path(detail), detail.message))
            problems += 1
    return problems


def main(argv):
    if argv[1:2] in (["-h"], ["--help"]):
        print(__doc__.strip())
        return 0
    if len(argv) < 3:
        print("usage: schema_check.py SCHEMA FILE...", file=sys.stderr)
        return 2
    try:
        with open(argv[1], encoding="utf-8") as f:
            schema = json.load(f)
        jsonschema.Draft202012Validator.check_schema(schema)
    except (OSError, ValueError, jsonschema.SchemaError) as e:
        print("%s: invalid schema: %s" % (argv[1], e), file=sys.stderr)
        return 2
    validator = jsonschema.Draft202012Validator(schema)
    problems = sum(check(validator, path) for path in argv[2:])
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
