#!/usr/bin/python3
"""Checks that the commands in README.md and docs/*.md run as typed.

Every fenced shell block (```sh, ```bash, ```shell, ```console) is read for
invocations of rectifier-server, rectifier-client, rectifier-perf and
rectifier-engine, bare (the installed name) or by path. For each one:

  (a) the binary exists: a path must be the build tree's (build/server/...,
      build/tools/<tool>/...; build/ stands for --build), or an installed
      .../bin/<name>; a bare name maps to the build tree's binary;
  (b) every -f / --flag it passes is in that binary's --help. For a tool with
      subcommands (rectifier-client) the flags after the subcommand are
      checked against `TOOL SUBCOMMAND --help` plus the global options (the
      client lets global options follow the command), those before it
      against the global --help.

Placeholders (MODEL, FILE, ...) are positional values and need no care;
synopsis blocks are understood too: [optional] brackets, `a | b`
alternatives inside brackets, and indented lines that continue the tool
named on the line above (or in a comment line just above), whose first word
may be a subcommand. Variables assigned in a block (E=build/...; $E ...) are
expanded. A tool named as an argument of another command (cp, ldd, a cmake
--target) is not an invocation: only its path is checked.

Usage: check_doc_commands.py --build BUILD_DIR [--root REPO] [-v] [FILE.md ...]
Exit 0 when every command checks, 1 with one line per problem otherwise.
"""
import argparse
import glob
import os
import re
import subprocess
import sys

# Where each tool lives in the build tree (CMake: server/, tools/<tool>/).
TOOLS = {
    "rectifier-server": "server/rectifier-server",
    "rectifier-client": "tools/client/rectifier-client",
    "rectifier-perf": "tools/perf/rectifier-perf",
    "rectifier-engine": "tools/engine/rectifier-engine",
}
SHELL_LANGS = {"sh", "bash", "shell", "console"}
# Commands that run the next word as a command (their own -flags and numbers
# are skipped): `/usr/bin/time -v build/...`, `sudo rectifier-server ...`.
WRAPPERS = {"sudo", "env", "exec", "time", "nohup", "nice", "timeout", "taskset",
            "numactl", "valgrind", "strace", "gdb", "perf"}
TOKEN_RE = re.compile(r"\$\(|&&|\|\||[;|&()<>`\[\]]|(?:[^\s;|&()<>`\[\]$]|\$(?!\())+")
FLAG_RE = re.compile(r"^(--?[A-Za-z][\w-]*)(=.*)?$")
ASSIGN_RE = re.compile(r"^([A-Za-z_]\w*)=(.*)$")
SEPARATORS = {"&&", "||", ";", "&", "(", ")", "$(", "`", ">", "<"}


def fenced_blocks(path):
    """Yields (first line number, lang, body lines) for each fenced block."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2).lower()
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        yield i + 2, lang, lines[i + 1:j]
        i = j + 1


def logical_lines(start, lang, body):
    """Yields (line number, text, indented) with backslash continuations joined,
    prompts stripped (console: only `$ ` lines are commands); None for a
    line that is not a command (output, blank), which ends a synopsis."""
    pending, pending_no, indented = None, 0, False
    for k, raw in enumerate(body):
        no = start + k
        if pending is None:
            line = raw
            if lang == "console":
                m = re.match(r"^\s*\$ (.*)$", raw)
                if not m:
                    yield no, None, False
                    continue
                line = m.group(1)
            pending_no, indented = no, bool(re.match(r"^\s", line))
            pending = line
        else:
            pending += " " + raw.strip()
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        yield pending_no, pending, indented
        pending = None
    if pending is not None:
        yield pending_no, pending, indented


def strip_comment(line):
    """Drops a `# comment` (a # at a word start, outside quotes)."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i], line[i + 1:]
    return line, None


def segments(line):
    """Splits a line into simple commands (lists of words). Quotes are
    dropped, so `sh -c '...'` bodies are read as words too. A | inside
    [brackets] is a synopsis alternative, not a pipe."""
    line = line.replace("'", " ").replace('"', " ")
    line = re.sub(r"(?<=[\w.])\|(?=[\w.])", ",", line)  # FILE.npy|FILE.pb
    out, cur, depth = [], [], 0
    for tok in TOKEN_RE.findall(line):
        if tok == "[":
            depth += 1
        elif tok == "]":
            depth = max(0, depth - 1)
        elif tok == "|" and depth > 0:
            continue
        elif tok in SEPARATORS or tok == "|":
            out.append(cur)
            cur = []
        elif tok not in ("...",):
            cur.append(tok)
    out.append(cur)
    return [s for s in out if s]


def tool_of(word):
    name = word.rstrip("/").rsplit("/", 1)[-1]
    return name if name in TOOLS else None


class Help:
    """Flags each tool's --help lists (run once per tool and subcommand)."""

    def __init__(self, build):
        self.build = build
        self.cache = {}

    def binary(self, tool):
        return os.path.join(self.build, TOOLS[tool])

    def get(self, tool, sub=None):
        key = (tool, sub)
        if key not in self.cache:
            cmd = [self.binary(tool)] + ([sub] if sub else []) + ["--help"]
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
                text, ok = p.stdout + p.stderr, p.returncode == 0
            except OSError as e:
                text, ok = str(e), False
            except subprocess.TimeoutExpired:
                text, ok = "timed out", False
            self.cache[key] = parse_help(text) if ok else None
        return self.cache[key]


def parse_help(text):
    """CLI11 help: option lines `  -b,--batch INT  ...` under Options:,
    subcommand lines `  name  description` under Subcommands:. Returns
    {flags: {name: takes_value}, subcommands: set}."""
    flags, subs, section = {}, set(), None
    for line in text.splitlines():
        if re.match(r"^\S.*:\s*$", line):
            section = line.strip().rstrip(":").lower()
            continue
        m = re.match(r"^  (\S+)(?:\s+(\S+))?", line)
        if not m:
            continue
        if section == "options":
            # A negated flag reads `--realtime,--no-realtime{false}`.
            names = [re.sub(r"\{[^}]*\}$", "", n) for n in m.group(1).split(",")
                     if n.startswith("-")]
            value = bool(m.group(2)) and re.match(r"^[A-Z]+\b", m.group(2)) is not None
            for n in names:
                flags[n] = value
        elif section == "subcommands":
            subs.add(m.group(1))
    return {"flags": flags, "subcommands": subs}


class Checker:
    def __init__(self, build, root, verbose=False):
        self.build, self.root, self.verbose = build, root, verbose
        self.help = Help(build)
        self.problems = []
        self.invocations = 0

    def problem(self, where, msg):
        self.problems.append(f"{where}: {msg}")

    def check_path(self, where, word, tool):
        """(a): a path to a tool must be the build tree's or an installed bin/."""
        if "/" not in word:
            return
        rel = TOOLS[tool]
        if word == "build/" + rel:
            return
        if re.search(r"(^|/)bin/" + re.escape(tool) + "$", word):
            return  # installed (make install, /usr/local/bin, the image)
        if re.match(r"^\$\{?\w+\}?/" + re.escape(rel) + "$", word) or \
           re.match(r"^\$\(\w+\)/" + re.escape(rel) + "$", word):
            return  # $(BUILD_DIR)/server/rectifier-server
        self.problem(where, f"{word}: no such binary; the build tree has build/{rel} "
                            f"(installed: {tool})")

    def check_flags(self, where, tool, args, sub=None):
        """(b): args are the words after the tool (or a synopsis line
        continuing it, then sub is the subcommand the line above named).
        Returns the subcommand in effect at the end."""
        if self.verbose:
            print(f"{where}: {tool}{' ' + sub if sub else ''} {' '.join(args)}")
        glob_help = self.help.get(tool)
        if glob_help is None:
            self.problem(where, f"{tool} --help failed ({self.help.binary(tool)})")
            return None
        sub_help, i = (self.help.get(tool, sub) if sub else None), 0
        while i < len(args):
            w = args[i]
            m = FLAG_RE.match(w)
            if m:
                name = m.group(1)
                if sub_help is not None:
                    known = name in sub_help["flags"] or name in glob_help["flags"]
                    if not known:
                        self.problem(where, f"{tool} {sub}: unknown flag {name} "
                                            f"(not in `{tool} {sub} --help` nor `{tool} --help`)")
                elif name not in glob_help["flags"]:
                    self.problem(where, f"{tool}: unknown flag {name} (not in `{tool} --help`)")
                elif glob_help["flags"][name] and m.group(2) is None and sub is None:
                    i += 1  # its value, which could look like a subcommand
            elif sub is None and w in glob_help["subcommands"]:
                sub = w
                sub_help = self.help.get(tool, sub)
                if sub_help is None:
                    self.problem(where, f"{tool} {sub} --help failed")
                    return None
            i += 1
        return sub

    def check_file(self, path):
        rel = os.path.relpath(path, self.root)
        for start, lang, body in fenced_blocks(path):
            if lang not in SHELL_LANGS:
                continue
            variables, context = {}, []
            for no, text, indented in logical_lines(start, lang, body):
                where = f"{rel}:{no}"
                if text is None or not text.strip():
                    context = []
                    continue
                code, comment = strip_comment(text)
                if not code.strip():
                    named = [(t, None) for t in TOOLS
                             if re.search(r"\b" + t + r"\b", comment or "")]
                    if named:
                        context = named
                    continue
                code = self.expand(code, variables)
                found = self.check_line(where, code, variables)
                if found:
                    context = found
                elif indented and context:
                    # A synopsis line: `  detect MODEL [--draw DIR]` goes on
                    # with the tool above (a subcommand carries to the next).
                    context = [(tool, self.continued(where, tool, sub, code))
                               for tool, sub in context]
                else:
                    context = []

    def continued(self, where, tool, sub, code):
        subs = (self.help.get(tool) or {}).get("subcommands", set())
        for k, seg in enumerate(segments(code)):
            if k > 0 and seg[0] not in subs:
                continue  # `load MODEL | unload MODEL`: alternatives, else a pipe
            sub = self.check_flags(where, tool, seg, None if seg[0] in subs else sub)
        return sub

    @staticmethod
    def expand(code, variables):
        for name, value in variables.items():
            code = re.sub(r"\$\{" + name + r"\}|\$" + name + r"\b", lambda _: value, code)
        return code

    def check_line(self, where, code, variables):
        """Records VAR=value assignments, checks each tool invocation;
        returns the tools invoked."""
        for m in re.finditer(r"(?:^|[;\s])([A-Za-z_]\w*)=(\"[^\"]*\"|'[^']*'|[^\s;]*)", code):
            variables[m.group(1)] = m.group(2).strip("\"'")
        found = []
        for seg in segments(code):
            at_command, wrapped = True, False
            for k, w in enumerate(seg):
                a = ASSIGN_RE.match(w)
                tool = tool_of(a.group(2) if a else w)
                if tool:
                    self.check_path(where, a.group(2) if a else w, tool)
                if not at_command:
                    if w == "--":
                        at_command = True  # kubectl exec POD -- rectifier-client ...
                    continue
                if a:
                    continue
                if tool:
                    self.invocations += 1
                    found.append((tool, self.check_flags(where, tool, seg[k + 1:])))
                    break
                if os.path.basename(w) in WRAPPERS:
                    wrapped = True
                    continue
                if wrapped and (w.startswith("-") or w.replace(".", "").isdigit()):
                    continue
                at_command = False
        return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True, help="build tree with the tools")
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), "..", ".."),
                    help="repository root (default: this script's ../..)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print each command checked")
    ap.add_argument("files", nargs="*", help="Markdown files (default README.md docs/*.md)")
    args = ap.parse_args()
    root = os.path.abspath(args.root)
    files = args.files or [os.path.join(root, "README.md")] + sorted(
        glob.glob(os.path.join(root, "docs", "*.md")))
    checker = Checker(os.path.abspath(args.build), root, args.verbose)
    for tool in TOOLS:
        b = checker.help.binary(tool)
        if not os.access(b, os.X_OK):
            checker.problem(b, f"{tool} is not built")
    if checker.problems:
        print("\n".join(checker.problems))
        return 1
    for path in files:
        checker.check_file(path)
    for p in checker.problems:
        print(p)
    print(f"docs_commands: {checker.invocations} invocations in {len(files)} files, "
          f"{len(checker.problems)} problems")
    return 1 if checker.problems else 0


if __name__ == "__main__":
    sys.exit(main())
