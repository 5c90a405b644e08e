#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: rendered_file
short_description: Write a file whose content the controller rendered, in one round trip
version_added: 0.1.0
description:
  - Compares a file with the wanted content, mode and owner, and writes it only when they differ, through a
    temporary file in the same directory (already with its final mode and owner) and a rename.
  - The content is rendered on the controller, usually with C(lookup('ansible.builtin.template', ...)), and
    arrives as a module argument. An unchanged file costs one remote call, where M(ansible.builtin.template)
    and M(ansible.builtin.copy) cost three (a temporary directory, a stat, its removal); the roles of this
    collection use it for their unit, environment and configuration files, which is most of an idempotent
    re-run.
  - For a file that holds secrets, give O(secret_content) instead of O(content). Its value is never logged
    or returned, and the diff says only that the content changed.
author:
  - erdma.pd maintainers (@erdma-pd)
options:
  path:
    description: Absolute path of the file.
    type: path
    required: true
  content:
    description: The file's content. Exactly one of O(content) and O(secret_content).
    type: str
  secret_content:
    description: The content of a file that holds secrets; never logged, returned or shown in a diff.
    type: str
  mode:
    description: Octal permission bits, as a string (V('0644')).
    type: raw
    required: true
  owner:
    description:
      - The owner; must exist on the host.
      - Without it a new file belongs to the user the module runs as and an existing one keeps its owner
        (a report on the control node, written by whoever runs Ansible).
    type: str
  group:
    description: The group; must exist on the host. Without it, as O(owner) says.
    type: str
  validate:
    description:
      - A command that checks the new content before it replaces the file, with C(%s) for the file to check
        (a temporary file in the same directory). A non-zero exit refuses the content, fails the task and
        leaves the file as it was.
      - Not run in check mode, nor when only the mode or the owner differ.
    type: str
  parent_mode:
    description:
      - Create the file's directory with these permission bits when it is missing (owned by the user the
        module runs as). Without it, a missing directory is an error.
    type: raw
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - A file that exists but is not a regular file (a link, a directory) is refused, never replaced.
  - Unlike M(ansible.builtin.template) it keeps no backup, and sets no SELinux context (a new file gets its
    directory's default; the hosts this collection targets, Ubuntu and Debian, do not use SELinux).
"""

EXAMPLES = r"""
- name: Write the systemd unit of the Mooncake master
  erdma.pd.rendered_file:
    path: /etc/systemd/system/mooncake-master.service
    content: "{{ lookup('ansible.builtin.template', 'service.j2') }}"
    mode: "0644"
  notify: Restart the master

- name: Write a root-only environment file that holds an API key
  erdma.pd.rendered_file:
    path: /etc/erdma-pd/pd-proxy.env
    secret_content: "PD_PROXY_API_KEY={{ pd_proxy_api_key }}\n"
    mode: "0600"
    parent_mode: "0755"

- name: Write nftables rules that nft accepts, or leave the old ones
  erdma.pd.rendered_file:
    path: /etc/nftables.d/mooncake.nft
    content: "{{ lookup('ansible.builtin.template', 'mooncake-firewall.nft.j2') }}"
    mode: "0644"
    validate: /usr/sbin/nft --check --file %s
"""

RETURN = r"""
path:
  description: The file.
  returned: always
  type: str
  sample: /etc/systemd/system/mooncake-master.service
changes:
  description:
    - What differed and was (or in check mode would be) put right; empty when the file was already as wanted.
    - V(create) a new file; V(content), V(mode), V(owner) an existing one.
  returned: always
  type: list
  elements: str
  sample: [content]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.erdma.pd.plugins.module_utils.rendered_file import FileError, apply


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            content=dict(type="str"),
            secret_content=dict(type="str", no_log=True),
            mode=dict(type="raw", required=True),
            owner=dict(type="str"),
            group=dict(type="str"),
            validate=dict(type="str"),
            parent_mode=dict(type="raw"),
        ),
        required_one_of=[("content", "secret_content")],
        mutually_exclusive=[("content", "secret_content")],
        supports_check_mode=True,
    )
    try:
        result = apply(module.params, module.check_mode, run=module.run_command)
    except (FileError, OSError) as exc:
        module.fail_json(msg="%s: %s" % (module.params["path"], exc))
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
