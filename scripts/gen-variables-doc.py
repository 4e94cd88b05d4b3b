"""Generate docs/variables.md from every role's meta/argument_specs.yml.

Usage: python scripts/gen-variables-doc.py [--check]
With --check, exit 1 when docs/variables.md is not up to date.
"""

import argparse
import os
import sys

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
OUT = os.path.join(ROOT, "docs", "variables.md")


def cell(value):
    text = " ".join(str(value).split())
    return text.replace("|", "\\|")


def fmt_default(spec):
    if "default" not in spec:
        return "(required)" if spec.get("required") else ""
    value = spec["default"]
    if isinstance(value, str):
        value = value.strip()
        if len(value) > 60:
            value = value[:57] + "..."
        return "`%s`" % value if value else '`""`'
    if value is None:
        return "`null`"
    text = yaml.safe_dump(value, default_flow_style=True, width=10000).strip()
    if text.endswith("..."):
        text = text[:-3].strip()
    if len(text) > 60:
        text = text[:57] + "..."
    return "`%s`" % text


def fmt_type(spec):
    kind = spec.get("type", "str")
    if kind == "list" and spec.get("elements"):
        kind = "list of %s" % spec["elements"]
    if spec.get("choices"):
        kind += ": " + ", ".join("`%s`" % c for c in spec["choices"])
    return kind


def describe(spec):
    desc = spec.get("description", "")
    if isinstance(desc, list):
        desc = " ".join(desc)
    return cell(desc)


def render():
    lines = [
        "# Variables reference",
        "",
        "Generated from each role's `meta/argument_specs.yml` by `scripts/gen-variables-doc.py`;",
        "do not edit by hand. The argument specs are the contract: Ansible rejects a wrong type or",
        "an unknown choice before the role changes anything.",
        "",
    ]
    roles_dir = os.path.join(ROOT, "roles")
    for role in sorted(os.listdir(roles_dir)):
        path = os.path.join(roles_dir, role, "meta", "argument_specs.yml")
        if not os.path.isfile(path):
            continue
        with open(path) as handle:
            specs = (yaml.safe_load(handle) or {}).get("argument_specs", {})
        lines.append("## %s" % role)
        lines.append("")
        for entry in sorted(specs, key=lambda name: (name != "main", name)):
            spec = specs[entry] or {}
            title = "`gaudi.vllm_lmcache.%s`" % role
            if entry != "main":
                title += " (`tasks_from: %s`)" % entry
            lines.append("### %s" % title)
            lines.append("")
            if spec.get("short_description"):
                lines.append(cell(spec["short_description"]))
                lines.append("")
            options = spec.get("options") or {}
            if not options:
                lines.append("No options.")
                lines.append("")
                continue
            lines.append("| Variable | Type | Default | Description |")
            lines.append("| --- | --- | --- | --- |")
            for name in sorted(options):
                opt = options[name] or {}
                lines.append("| `%s` | %s | %s | %s |" % (name, fmt_type(opt), fmt_default(opt), describe(opt)))
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--check", action="store_true", help="fail when the file is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = open(OUT).read() if os.path.exists(OUT) else ""
        if current != text:
            sys.stderr.write("docs/variables.md is out of date: run python scripts/gen-variables-doc.py\n")
            return 1
        return 0
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as handle:
        handle.write(text)
    print("wrote %s" % os.path.relpath(OUT, ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
