# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Safe rendering of inventory values into systemd unit files and environment files.

A unit file is parsed line by line: a value holding a newline would start a new directive (for
example a second ExecStart= that runs as root). Every value is therefore checked for control
characters first, then escaped for the place it goes to:

- ExecStart= arguments (systemd.service "COMMAND LINES"): each argv element is double-quoted unless
  it is plainly safe; inside quotes backslash and double quote are escaped; "%" becomes "%%"
  (specifiers) and "$" becomes "$$" (variable expansion); a lone ";" becomes "\\;".
- Plain settings (Description=, User=, WorkingDirectory=): "%" becomes "%%".
- Environment files (EnvironmentFile=, parsed by systemd's env-file reader): KEY="value" with
  backslash, double quote, dollar and backtick escaped, so no expansion can happen whichever
  systemd version reads it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# C0 controls, DEL and the C1 range: none of them belongs in a unit file.
_CONTROL = re.compile(u"[\x00-\x1f\x7f-\x9f]")
_PLAIN_ARG = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class UnitValueError(ValueError):
    """A value that must not reach a unit file; the message names the variable."""


def _text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return u"%s" % (value,)


def check_value(value, variable):
    """Return the value as text, refusing control characters (newline, CR, tab, NUL, ESC ...)."""
    text = _text(value)
    found = _CONTROL.search(text)
    if found:
        raise UnitValueError(
            "%s holds the control character %r at position %d: systemd units and environment files "
            "take one line per setting, so it could add a directive. Remove it from the inventory value."
            % (variable, found.group(0), found.start()))
    return text


def escape_specifiers(value, variable):
    """A single-line setting without specifier expansion (Description=, User=, paths)."""
    return check_value(value, variable).replace("%", "%%")


def quote_argument(value, variable):
    """One argv element for ExecStart=, taken literally by systemd."""
    text = check_value(value, variable)
    if text == ";":
        return "\\;"
    text = text.replace("%", "%%").replace("$", "$$")
    if _PLAIN_ARG.match(text):
        return text
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


def exec_start(argv, variable):
    """The ExecStart= value for an argv list; the program must be an absolute path."""
    if isinstance(argv, (str, bytes)) or not argv:
        raise UnitValueError("%s must be a non-empty list of arguments (program first), got %r"
                             % (variable, argv))
    program = check_value(argv[0], "%s[0]" % variable)
    if not program.startswith("/"):
        raise UnitValueError("%s[0] must be the program's absolute path, got %r" % (variable, program))
    return " ".join(quote_argument(arg, "%s[%d]" % (variable, index)) for index, arg in enumerate(argv))


def path_list(paths, variable):
    """A space-separated list of absolute paths (ReadWritePaths=), each quoted where needed."""
    words = []
    for index, path in enumerate(paths or []):
        name = "%s[%d]" % (variable, index)
        text = escape_specifiers(path, name)
        if not text.startswith("/"):
            raise UnitValueError("%s must be an absolute path, got %r" % (name, text))
        words.append(text if _PLAIN_ARG.match(text)
                     else '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"'))
    return " ".join(words)


def environment_file(environment, variable):
    """The text of an EnvironmentFile= file: one KEY="value" line per variable, sorted."""
    lines = []
    for key in sorted(environment or {}):
        name = check_value(key, "%s (a key)" % variable)
        if not _ENV_KEY.match(name):
            raise UnitValueError("%s: %r is not a valid environment variable name (letters, digits, _; "
                                 "not starting with a digit)" % (variable, name))
        value = environment[key]
        text = check_value("" if value is None else value, "%s.%s" % (variable, name))
        escaped = re.sub(r'(["\\$`])', r"\\\1", text)
        lines.append('%s="%s"\n' % (name, escaped))
    return "".join(lines)


def environment_problems(environment, variable):
    """What environment_file() would refuse, as messages that name keys but never show a value."""
    problems = []
    for key in sorted(environment or {}, key=str):
        try:
            environment_file({key: environment[key]}, variable)
        except UnitValueError as exc:
            problems.append(str(exc))
    return problems


def parse_environment_file(text):
    """Read back what environment_file() writes (for tests and for the module's key listing)."""
    result = {}
    for line in text.splitlines():
        match = re.match(r'^([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"$', line)
        if not match:
            raise UnitValueError("not a line of an erdma.pd environment file: %r" % line)
        result[match.group(1)] = re.sub(r"\\(.)", r"\1", match.group(2))
    return result
