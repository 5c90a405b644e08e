# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Write one file whose content the controller rendered, in one round trip.

ansible.builtin.template and copy cost three remote calls even when nothing changes (a temporary
directory, a stat, its removal), which is most of an idempotent re-run on many hosts. Here the content
arrives as a module argument: the file is compared, and written only when its content, mode or owner
differ. Writing goes through a temporary file in the same directory and a rename, so that a reader (systemd,
an engine) never sees half a file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import grp
import os
import pwd
import stat
import tempfile

# What a diff shows instead of a secret file's content.
SECRET_MARK = "(secret content: not shown)\n"


class FileError(Exception):
    """A request that cannot be carried out (message for the user)."""


def parse_mode(mode):
    """'0600' or 384 -> 384; only octal permission bits, as a unit file or an env file needs."""
    text = str(mode).strip()
    if isinstance(mode, int) and not isinstance(mode, bool):
        value = mode
    elif text.isdigit() and all(ch in "01234567" for ch in text):
        value = int(text, 8)
    else:
        raise FileError("mode %r is not an octal mode such as '0644'" % (mode,))
    if value > 0o7777:
        raise FileError("mode %r is out of range" % (mode,))
    return value


def ids_of(owner, group):
    """(uid, gid) of OWNER and GROUP; None for one not given (a new file gets the module's own, an existing
    file keeps its own)."""
    uid = gid = None
    if owner is not None:
        try:
            uid = pwd.getpwnam(owner).pw_uid
        except KeyError:
            raise FileError("owner %r does not exist on this host" % (owner,))
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise FileError("group %r does not exist on this host" % (group,))
    return uid, gid


def read_current(path):
    """(content, mode, uid, gid) of the file at PATH, or None when there is none."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        raise FileError("%s exists and is not a regular file" % path)
    with open(path, "rb") as handle:
        content = handle.read()
    return content, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid


def plan(path, content, mode, uid, gid):
    """What differs between the file and the wanted one: a list of 'content', 'mode', 'owner' (empty: none),
    or ['create'] when there is no file."""
    current = read_current(path)
    if current is None:
        return ["create"]
    old_content, old_mode, old_uid, old_gid = current
    changes = []
    if old_content != content:
        changes.append("content")
    if old_mode != mode:
        changes.append("mode")
    if (uid is not None and old_uid != uid) or (gid is not None and old_gid != gid):
        changes.append("owner")
    return changes


def write_atomically(path, content, mode, uid, gid, validate=None):
    """Write CONTENT to a temporary file beside PATH with its final mode and owner, then rename it over PATH:
    a secret file is never readable by others, not even for a moment. VALIDATE(temporary path) may refuse
    the new content (FileError) before it replaces anything."""
    directory = os.path.dirname(path) or "."
    handle, temporary = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)
    try:
        os.fchmod(handle, mode)
        os.fchown(handle, -1 if uid is None else uid, -1 if gid is None else gid)
        with os.fdopen(handle, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        if validate is not None:
            validate(temporary)
        os.rename(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def fix_attributes(path, mode, uid, gid):
    os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    os.chmod(path, mode)


def ensure_parent(path, parent_mode, check_mode):
    """Create the directory of PATH (root-owned, PARENT_MODE) when it is missing; whether it was missing."""
    directory = os.path.dirname(path)
    if os.path.isdir(directory):
        return False
    if parent_mode is None:
        raise FileError("the directory %s does not exist (give parent_mode to create it)" % directory)
    if not check_mode:
        os.makedirs(directory, parse_mode(parent_mode))
        os.chmod(directory, parse_mode(parent_mode))
    return True


def diff_of(path, before, after, secret):
    if secret:
        return {"before_header": path, "after_header": path,
                "before": SECRET_MARK if before else "", "after": SECRET_MARK}
    return {"before_header": path, "after_header": path,
            "before": before.decode("utf-8", "replace"), "after": after.decode("utf-8", "replace")}


def validator(command, run):
    """A VALIDATE for write_atomically from a command with %s (the file to check) and a runner
    run(command) -> (rc, stdout, stderr); None without a command."""
    if not command:
        return None
    if "%s" not in command:
        raise FileError("validate %r must contain %%s (the file to check)" % (command,))

    def check(temporary):
        rc, out, err = run(command % temporary)
        if rc != 0:
            raise FileError("validate (%s) refused the new content, which was not written: %s"
                            % (command, (err or out).strip()))
    return check


def apply(params, check_mode, run=None):
    """Bring the file to the wanted state; the module's result (changed, changes, diff). RUN runs the
    validate command (AnsibleModule.run_command in the module)."""
    path = params["path"]
    if not os.path.isabs(path):
        raise FileError("path %r must be absolute" % (path,))
    secret = params.get("secret_content") is not None
    text = params["secret_content"] if secret else params.get("content")
    if text is None:
        raise FileError("give content or secret_content")
    content = text.encode("utf-8")
    mode = parse_mode(params["mode"])
    uid, gid = ids_of(params.get("owner"), params.get("group"))
    validate = validator(params.get("validate"), run)
    created_parent = ensure_parent(path, params.get("parent_mode"), check_mode)
    changes = ["create"] if created_parent else plan(path, content, mode, uid, gid)
    result = {"changed": bool(changes), "path": path, "changes": changes}
    if not changes:
        return result
    before = b"" if "create" in changes else read_current(path)[0]
    result["diff"] = diff_of(path, before, content, secret)
    if check_mode:
        return result
    if changes in (["mode"], ["owner"], ["mode", "owner"]):
        fix_attributes(path, mode, uid, gid)
    else:
        write_atomically(path, content, mode, uid, gid, validate)
    return result
