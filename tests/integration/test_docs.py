"""Docs that a test checks: every JSON example, trunkline command line and error listing in
README.md and docs/*.md goes through the real binary (`--check-config`, `trunkline route`), and
what the doc shows must be what the binary prints (temp paths mapped back to the doc's paths).

A fenced block says what it is with an HTML comment on the line before it (blank lines may
come between; the comment is invisible on GitHub):

  <!-- check: rules [NAME] -->        a whole rules.json; must pass --check-config; NAME: the
                                      file the doc's commands and configs know it as
  <!-- check: config [NAME] -->       a whole config.json; must pass --check-config with its
                                      "rules" file, which must be a NAME of this doc
  <!-- check: rules-fragment WHERE [into NAME] -->
                                      part of a rules file; WHERE says where it goes: `rules`
                                      (members of the top object, e.g. "agents": {...}), `routes`
                                      (route objects, comma-separated), `route` (members of one
                                      route), `match` (members of a route's match). Alone, it is
                                      wrapped into a rules file with the agents this doc defines
                                      (in `rules` blocks and fragments). With `into NAME`, the
                                      doc's fragments for NAME are put together, in doc order,
                                      into ONE file: {<rules members>, "routes": [<routes>]}
  <!-- check: config-fragment [sip|media] [DOCDIR=. ...] -->
                                      members of config.json's top object, or of its sip/media;
                                      DOCDIR=.: a directory of the deployment (where cdr.path
                                      writes, say) is the check's own directory
  <!-- check: transcript -->           a shell session, run in a directory holding the doc's
                                      NAMEd files: `$ ` lines are commands (only trunkline and
                                      `echo $?`, `\\` continues a line), the lines after one are its
                                      output (stdout then stderr); a line `...` stands for any
                                      number of lines
  <!-- check: errors -->               lines `FILE:LINE:COL: message`; ERROR_INPUTS below holds a
                                      bad file for each message, the test puts the value at fault
                                      at LINE:COL and compares what --check-config prints
  <!-- check: usage [DOCPATH=REPOPATH ...] -->
                                      synopsis lines: every --option must be in the binary's
                                      --help; a --check-config or route line whose files are all
                                      mapped to repo files is also run (brackets dropped) and
                                      must exit 0 (the daemon itself, --config, is not started)
  <!-- check: json -->  <!-- check: json-lines -->
                                      JSON the binary cannot show offline (agent protocol
                                      messages): it must parse, one value or one per line
  <!-- check: equals REPOPATH -->     JSON equal to that file (e.g. a unit test's expected output)
  <!-- check: excerpt REPOPATH -->    every line is a line of that file (`...` inside a line
                                      stands for any text)
  <!-- check: skip (why) -->

A ```json block, or a block with a `trunkline --...`/`trunkline route` line or a
`file.json:L:C:` line, without a marker fails the test: new examples cannot be forgotten.
Also checks deploy/config.example.json and deploy/rules.example.json.
Run: python3 tests/integration/test_docs.py build/trunkline"""
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile

from harness import run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = ["README.md"] + sorted("docs/" + f for f in os.listdir(os.path.join(ROOT, "docs"))
                              if f.endswith(".md"))
TMP = tempfile.mkdtemp(prefix="tl-docs-")

MARKER = re.compile(r"^\s*<!--\s*check:\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*(\S*)")
CMD_LINE = re.compile(r"^\s*(\$ )?trunkline (--|route\b)")
ERR_LINE = re.compile(r"^(?P<path>\S+\.json):(?P<line>\d+):(?P<col>\d+): (?P<msg>.*)$")

# For each error message a doc lists: which file it is in, and that file as text before the
# value at fault, the value, text after it, and where in the value the position points (0: its
# first character). The test puts the value at the line and column the doc shows.
AGENT = '{"agents": {"a": {"url": "ws://127.0.0.1/"}}, "routes": [{'
ERROR_INPUTS = {
    'unknown key "forwad"':
        ("rules", AGENT, '"forwad"', ': "sip:a@example.com"}]}', 0),
    '"port_min" must be an integer between 1024 and 65535':
        ("config", '{"rules": "rules.json", "media": {"port_min":', "80", "}}", 0),
    "duplicate object key near '\"rules\"'":  # Jansson's position: the key's last character
        ("config", '{"rules": "rules.json",', '"rules"', ': "rules.json"}', 6),
    'bad regular expression "+4930": Invalid preceding regular expression '
    '(a literal + is written "\\\\+" in JSON)':
        ("rules", AGENT + '"agent": "a", "match": {"from":', '"+4930"', "}}]}", 0),
    'regular expression "[a-z]{1,5000}" is too large: its repetition counts expand it past 1000 '
    'positions':
        ("rules", AGENT + '"agent": "a", "match": {"to":', '"[a-z]{1,5000}"', "}}]}", 0),
    'bad CIDR "10.1/8": expected an IPv4 or IPv6 address, optionally with /prefix':
        ("rules", AGENT + '"agent": "a", "match": {"source": [', '"10.1/8"', "]}}]}", 0),
    'unknown day "fry" (use mon, tue, wed, thu, fri, sat, sun)':
        ("rules", AGENT + '"agent": "a", "match": {"time": {"days": [', '"fry"', "]}}}]}", 0),
    'bad time "8:00": expected HH:MM, 00:00 to 23:59':
        ("rules", AGENT + '"agent": "a", "match": {"time": {"start":', '"8:00"', "}}}]}", 0),
    'unknown time zone "Europe/Londn" (not in /usr/share/zoneinfo)':
        ("rules", AGENT + '"agent": "a", "match": {"time": {"tz":', '"Europe/Londn"', "}}}]}", 0),
    'unknown key "form"':
        ("rules", AGENT + '"agent": "a", "match": {', '"form"', ': "^2001$"}}]}', 0),
    '"max_calls" must be a positive integer':
        ("rules", AGENT + '"agent": "a", "match": {"max_calls":', "0", "}}]}", 0),
    '"reject" must be an integer between 400 and 699':
        ("rules", AGENT + '"reject":', "302", "}]}", 0),
    '"forward" must be a sip:, sips: or tel: URI':
        ("rules", AGENT + '"forward":', '"http://pbx.example.com/"', "}]}", 0),
    '"forward_method" needs "forward" or "fallback"':
        ("rules", AGENT + '"agent": "a",', '"forward_method"', ': "refer"}]}', 0),
    '"fallback" only applies to a route with "agent"':
        ("rules", AGENT + '"reject": 486,', '"fallback"', ': "sip:a@example.com"}]}', 0),
    'unknown agent "recepionist"':
        ("rules", AGENT + '"agent":', '"recepionist"', "}]}", 0),
    'bad substitution in "${from": expected ${name} (write $$ for a literal $)':
        ("rules", AGENT + '"agent": "a", "params": {"caller":', '"${from"', "}}]}", 0),
}


class Block:
    def __init__(self, doc, line, lang, text, marker):
        self.doc, self.line, self.lang, self.text, self.marker = doc, line, lang, text, marker
        words = marker.split() if marker else []
        self.kind, self.args = (words[0], words[1:]) if words else (None, [])

    def where(self):
        return f"{self.doc}:{self.line}"


def parse_doc(rel):
    """The fenced blocks of a Markdown file, each with the marker before it, and misplaced
    markers as errors."""
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        lines = f.read().split("\n")
    blocks, errors, pending, i = [], [], None, 0
    while i < len(lines):
        m, fence = MARKER.match(lines[i]), FENCE.match(lines[i])
        if m:
            if pending:
                errors.append(f"{rel}:{pending[1]}: marker not followed by a code block")
            pending = (m.group(1), i + 1)
        elif fence:
            indent, ticks, lang = fence.groups()
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(ticks):
                j += 1
            body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip()
                    for ln in lines[i + 1:j]]
            blocks.append(Block(rel, i + 1, lang, "\n".join(body) + "\n",
                                pending[0] if pending else None))
            pending, i = None, j
        elif lines[i].strip() and pending:
            errors.append(f"{rel}:{pending[1]}: marker not followed by a code block")
            pending = None
        i += 1
    if pending:
        errors.append(f"{rel}:{pending[1]}: marker not followed by a code block")
    return blocks, errors


def needs_marker(b):
    return b.lang == "json" or any(CMD_LINE.match(ln) or ERR_LINE.match(ln)
                                   for ln in b.text.splitlines())


def trunkline(binary, args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "TZDIR"}
    p = subprocess.run([binary] + args, cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=20)
    return p.returncode, p.stdout, p.stderr


def workdir(files=None):
    d = tempfile.mkdtemp(dir=TMP)
    for name, text in (files or {}).items():
        with open(os.path.join(d, name), "w", encoding="utf-8") as f:
            f.write(text)
    return d


def check_config_ok(binary, files, config="config.json"):
    """--check-config in a fresh directory holding files; None if it passes, else why not."""
    d = workdir(files)
    rc, out, err = trunkline(binary, ["--check-config", config], d)
    if rc == 0 and not err and out.startswith(config + ": OK"):
        return None
    return f"--check-config exit {rc}: {(err + out).replace(d + '/', '').strip()}"


def check_rules_ok(binary, text):
    return check_config_ok(binary, {"rules.json": text, "config.json": '{"rules": "rules.json"}'})


def as_json(text, what):
    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError(f"{what} is not valid JSON: {e}")


class DocCheck:
    """Checks the blocks of one Markdown file; collects every problem instead of stopping."""

    def __init__(self, binary, rel):
        self.binary, self.rel = binary, rel
        self.blocks, self.errors = parse_doc(rel)
        self.files = {}     # NAME -> text of whole files the doc defines
        self.agents = {}    # the agents the doc defines, for wrapping fragments
        self.into = {}      # NAME -> ([rules-member fragment blocks], [routes fragment blocks])
        self.origin = {}    # NAME -> [(first line in the file, block)] for put-together files

    def where_in(self, name, why):
        """The doc line of the fragment an error in put-together file name points into."""
        m = re.search(re.escape(name) + r":(\d+):", why)
        line = int(m.group(1)) if m else 0
        at = [b for first, b in self.origin[name] if first <= line]
        return at[-1].where() if at else self.rel

    def fail(self, b, msg):
        self.errors.append(f"{b.where()}: {msg}")

    def collect(self):
        for b in self.blocks:
            if b.marker is None:
                if needs_marker(b):
                    self.fail(b, "block without a <!-- check: ... --> marker (see the top of "
                                 "tests/integration/test_docs.py)")
                continue
            try:
                self.collect_block(b)
            except ValueError as e:
                self.fail(b, str(e))
        for name, (members, routes) in self.into.items():
            text, self.origin[name] = "{", []
            for n, b in enumerate(members + routes):
                if n == len(members):
                    text += (",\n" if n else "") + '"routes": [\n'
                elif n:
                    text += ",\n"
                self.origin[name].append((text.count("\n") + 1, b))
                text += b.text.strip()
            self.files[name] = text + ("\n]" if routes else "") + "}\n"

    def collect_block(self, b):
        if b.kind in ("rules", "config") and len(b.args) > 1:
            raise ValueError(f"{b.kind}: at most one NAME")
        if b.kind == "rules":
            self.agents.update(as_json(b.text, "rules").get("agents", {}))
        elif b.kind == "rules-fragment":
            where, into = self.fragment_args(b)
            if where == "rules":
                self.agents.update(as_json("{" + b.text + "}", "{fragment}").get("agents", {}))
            if into:
                if where not in ("rules", "routes"):
                    raise ValueError("only `rules` and `routes` fragments go into a file")
                self.into.setdefault(into, ([], []))[where == "routes"].append(b)
        if b.kind in ("rules", "config") and b.args:
            if b.args[0] in self.files:
                raise ValueError(f"a second file named {b.args[0]}")
            self.files[b.args[0]] = b.text

    @staticmethod
    def fragment_args(b):
        a = b.args
        if not a or a[0] not in ("rules", "routes", "route", "match"):
            raise ValueError("rules-fragment needs rules, routes, route or match")
        if len(a) == 1:
            return a[0], None
        if len(a) == 3 and a[1] == "into":
            return a[0], a[2]
        raise ValueError("rules-fragment WHERE [into NAME]")

    def run(self):
        self.collect()
        for name in self.into:
            why = check_rules_ok(self.binary, self.files[name])
            if why:
                self.errors.append(f"{self.where_in(name, why)}: {name}, put together from its "
                                   f"fragments: {why}")
        for b in self.blocks:
            if b.marker is None:
                continue
            check = getattr(self, "check_" + b.kind.replace("-", "_"), None)
            if not check:
                self.fail(b, f"unknown marker kind {b.kind!r}")
                continue
            try:
                why = check(b)
            except (ValueError, OSError, subprocess.SubprocessError) as e:
                why = str(e)
            if why:
                self.fail(b, why)
        return self.errors

    def check_rules(self, b):
        return check_rules_ok(self.binary, b.text)

    def check_config(self, b):
        rules = as_json(b.text, "config").get("rules")
        if not isinstance(rules, str) or os.path.isabs(rules) or rules not in self.files:
            return f"config names rules file {rules!r}, which no `rules NAME` block defines"
        files = dict(self.files)
        name = b.args[0] if b.args else "config.json"
        files[name] = b.text
        return check_config_ok(self.binary, files, name)

    def first_agent(self):
        if not self.agents:
            raise ValueError("fragment needs an agent, and this doc defines none")
        return next(iter(self.agents))

    def check_rules_fragment(self, b):
        where, _ = self.fragment_args(b)
        agents = json.dumps(self.agents)
        if where == "rules":
            obj = as_json("{" + b.text + "}", "{fragment}")
            head = "" if "agents" in obj else '"agents": ' + agents + ",\n"
            text = "{" + head + b.text + "}"
        elif where == "routes":
            text = '{"agents": ' + agents + ', "routes": [\n' + b.text + "]}"
        elif where == "route":
            obj = as_json("{" + b.text + "}", "{fragment}")
            target = "" if {"agent", "forward", "reject"} & obj.keys() else \
                ', "agent": ' + json.dumps(self.first_agent())
            text = '{"agents": ' + agents + ', "routes": [{\n' + b.text + target + "}]}"
        else:
            text = ('{"agents": ' + agents + ', "routes": [{"agent": ' +
                    json.dumps(self.first_agent()) + ', "match": {\n' + b.text + "}}]}")
        return check_rules_ok(self.binary, text)

    def check_config_fragment(self, b):
        args = [a for a in b.args if not a.endswith("=.")]
        if len(args) > 1 or (args and args[0] not in ("sip", "media")):
            return "config-fragment [sip|media] [DOCDIR=. ...]"
        text = b.text
        for a in b.args:
            if a.endswith("=.") and a.startswith("/"):
                text = text.replace(a[:-2] + "/", "./")
        rules = '{"agents": {"a": {"url": "ws://127.0.0.1/"}}}'
        if args:
            config = '{"rules": "rules.json", "' + args[0] + '": {\n' + text + "}}"
        else:
            has_rules = "rules" in as_json("{" + text + "}", "{fragment}")
            config = "{" + ("" if has_rules else '"rules": "rules.json",\n') + text + "}"
        return check_config_ok(self.binary, {"rules.json": rules, "config.json": config})

    def check_json(self, b):
        as_json(b.text, "block")

    def check_json_lines(self, b):
        for n, ln in enumerate(b.text.splitlines()):
            if ln.strip():
                as_json(ln, f"line {n + 1}")

    def check_equals(self, b):
        if len(b.args) != 1:
            return "equals REPOPATH"
        with open(os.path.join(ROOT, b.args[0]), encoding="utf-8") as f:
            want = json.load(f)
        if as_json(b.text, "block") != want:
            return f"differs from {b.args[0]}: {json.dumps(want, sort_keys=True)}"

    def check_excerpt(self, b):
        if len(b.args) != 1:
            return "excerpt REPOPATH"
        with open(os.path.join(ROOT, b.args[0]), encoding="utf-8", newline="") as f:
            have = f.read().replace("\r\n", "\n").split("\n")
        for ln in b.text.splitlines():
            pat = re.compile(".*".join(map(re.escape, ln.split("..."))) + r"\Z")
            if not any(pat.match(h) for h in have):
                return f"{ln!r} is not a line of {b.args[0]}"

    def check_skip(self, b):
        if not re.fullmatch(r"skip \(.+\)", b.marker):
            return "skip needs a reason: <!-- check: skip (why) -->"

    def check_transcript(self, b):
        cmds = transcript_steps(b.text)
        if not any(c[0] == "trunkline" for c, _ in cmds):
            return "a transcript without a trunkline command"
        rc = None
        for argv, want in cmds:
            if argv == ["echo", "$?"]:
                got = f"{rc}\n"
            elif argv[0] == "trunkline":
                d = workdir(self.files)
                args, back = map_paths(argv[1:], d, self.files)
                rc, out, err = trunkline(self.binary, args, d)
                got = (out + err).replace(d + "/", back)
            else:
                return f"unsupported command in a transcript: {shlex.join(argv)}"
            if not output_matches(want, got):
                return (f"$ {shlex.join(argv)}\n--- the doc shows:\n{''.join(want)}"
                        f"--- trunkline printed (exit {rc}):\n{got}")

    def check_errors(self, b):
        problems = []
        for ln in b.text.splitlines():
            why = check_error_line(self.binary, ln)
            if why:
                problems.append(why)
        return "\n    ".join(problems) or None

    def check_usage(self, b):
        files = dict(a.split("=", 1) for a in b.args if "=" in a)
        if len(files) != len(b.args):
            return "usage [DOCPATH=REPOPATH ...]"
        help_main = trunkline(self.binary, ["--help"], ROOT)[1]
        help_route = trunkline(self.binary, ["route", "--help"], ROOT)[1]
        problems = []
        for line in joined_lines(b.text):
            words = shlex.split(line, comments=True)
            if not words or words[0] != "trunkline":
                continue
            route = words[1:2] == ["route"]
            helptext = help_route if route else help_main
            for w in words:
                opt = w.strip("[]().").split("=")[0]
                if opt.startswith("--") and not re.search(
                        r"(?<![\w-])" + re.escape(opt) + r"(?![\w-])", helptext):
                    problems.append(f"{opt} is not in `trunkline {'route ' * route}--help`")
            why = self.run_usage_line(words, files)
            if why:
                problems.append(why)
        return "\n    ".join(problems) or None

    def run_usage_line(self, words, files):
        if words[1:2] not in (["--check-config"], ["route"]):
            return None
        args = [w.strip("[]").removesuffix("]...") for w in words[1:]]
        if any(a.endswith(".json") and a not in files for a in args) or \
                not any(a.endswith(".json") for a in args):
            return None
        args = [os.path.join(ROOT, files[a]) if a in files else a for a in args]
        rc, out, err = trunkline(self.binary, args, TMP)
        if rc != 0 or err:
            return f"trunkline {shlex.join(args)}: exit {rc}: {err.strip()}"


def joined_lines(text):
    """Synopsis lines with their continuations (after `\\`, or indented) joined."""
    out = []
    for ln in text.splitlines():
        if out and (out[-1].endswith("\\") or ln[:1].isspace()):
            out[-1] = out[-1].removesuffix("\\") + " " + ln.strip()
        else:
            out.append(ln.rstrip())
    return out


def transcript_steps(text):
    """[(argv, [expected output lines])] of a `$ command` / output session."""
    steps, cont = [], False
    for ln in text.splitlines(keepends=True):
        if cont:
            steps[-1][0].append(ln)
        elif ln.startswith("$ "):
            steps.append(([ln[2:]], []))
        elif steps:
            steps[-1][1].append(ln if ln.endswith("\n") else ln + "\n")
        cont = ln.rstrip().endswith("\\") and bool(steps) and not steps[-1][1]
    return [(shlex.split("".join(cmd).replace("\\\n", " ")), want) for cmd, want in steps]


def map_paths(args, d, files):
    """Absolute paths to a file of the doc point into d; returns the args and what d stands for
    in the output."""
    out, back = [], ""
    for a in args:
        if os.path.isabs(a) and os.path.basename(a) in files:
            back = os.path.dirname(a) + "/"
            a = os.path.join(d, os.path.basename(a))
        out.append(a)
    return out, back


def output_matches(want, got):
    pat = "".join(r"(?:[^\n]*\n)*?" if ln == "...\n" else re.escape(ln) for ln in want)
    return re.fullmatch(pat, got if not got or got.endswith("\n") else got + "\n") is not None


def place(prefix, value, suffix, anchor, line, col):
    """prefix + value + suffix with whitespace added so that the character `anchor` of value
    is at line:col (both from 1), or None if it cannot be."""
    col -= anchor
    if line > 1:
        return prefix + "\n" * (line - 1) + " " * (col - 1) + value + suffix if col >= 1 else None
    pad = col - 1 - len(prefix)
    return prefix + " " * pad + value + suffix if pad >= 0 else None


def check_error_line(binary, ln):
    m = ERR_LINE.match(ln)
    if not m:
        return f"{ln!r} is not file:line:col: message"
    case = ERROR_INPUTS.get(m["msg"])
    if not case:
        return f"no input in ERROR_INPUTS (test_docs.py) for {m['msg']!r}"
    kind, prefix, value, suffix, anchor = case
    name, folder = os.path.basename(m["path"]), os.path.dirname(m["path"])
    if name != kind + ".json":
        return f"{ln!r}: this message comes from {kind}.json"
    bad = place(prefix, value, suffix, anchor, int(m["line"]), int(m["col"]))
    if bad is None:
        return f"{ln!r}: position {m['line']}:{m['col']} is impossible for this error"
    files = {"config.json": '{"rules": "rules.json"}',
             "rules.json": '{"agents": {"a": {"url": "ws://127.0.0.1/"}}}', name: bad}
    d = workdir(files)
    config = os.path.join(d, "config.json") if folder else "config.json"
    rc, out, err = trunkline(binary, ["--check-config", config], d)
    got = (out + err).replace(d + "/", folder + "/" if folder else "")
    if rc != 1 or got != ln + "\n":
        return f"the doc shows {ln!r}, trunkline printed (exit {rc}) {got!r}"
    return None


def doc_test(rel):
    def t(binary):
        errors = DocCheck(binary, rel).run()
        assert not errors, f"{len(errors)} problem(s):\n  " + "\n  ".join(errors)
    t.__name__ = "doc_" + rel.replace("/", "_").replace(".md", "")
    return t


def deploy_examples(binary):
    d = workdir()
    for name in ("config.example.json", "rules.example.json"):
        shutil.copy(os.path.join(ROOT, "deploy", name), d)
    rc, out, err = trunkline(binary, ["--check-config", "config.example.json"], d)
    assert rc == 0 and not err and "OK" in out, f"deploy/config.example.json: {err}{out}"
    with open(os.path.join(ROOT, "deploy", "rules.example.json"), encoding="utf-8") as f:
        why = check_rules_ok(binary, f.read())
    assert not why, f"deploy/rules.example.json: {why}"


SELF_TEST_DOC = """Text
```json
{"a": 1}
```
<!-- check: json -->
```json
{}
```
<!-- check: json -->
text
<!-- check: config-fragment sip -->
```json
"max_calls": 10, "session_expires": 600
```
<!-- check: config-fragment media -->
```json
"port_min": 80
```
<!-- check: skip -->
```
trunkline --check-config config.json
```
<!-- check: rules-fragment match -->
```json
"from": "^2001$"
```
<!-- check: transcript -->
```
$ trunkline --version
trunkline 0.0.0-not-this
```
"""


def conventions(binary):
    """The rules of the markers themselves, on a made-up doc: each line below is reported, and
    nothing else (the config-fragment sip block passes)."""
    path = os.path.join(workdir(), "x.md")
    with open(path, "w") as f:
        f.write(SELF_TEST_DOC)
    errors = DocCheck(binary, os.path.relpath(path, ROOT)).run()
    want = ["x.md:2: block without a <!-- check", "x.md:9: marker not followed by a code block",
            'x.md:16: --check-config exit 1: config.json:2:13: "port_min" must be',
            "x.md:20: skip needs a reason", "x.md:24: fragment needs an agent",
            "x.md:28: $ trunkline --version"]
    assert len(errors) == len(want) and all(any(w in e for e in errors) for w in want), \
        "\n".join(errors)


if __name__ == "__main__":
    try:
        run([doc_test(rel) for rel in DOCS] + [deploy_examples, conventions])
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
