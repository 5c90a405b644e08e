# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The proxy's options: defaults, then a JSON config file, then the command line, then secrets from the
environment (never from the world-readable config file or the command line)."""
import argparse
import json
import os
import sys

DEFAULTS = {
    "host": "127.0.0.1",
    "port": 9000,
    "prefill": [],
    "decode": [],
    "policy": "least_inflight",
    "health_interval": 5.0,
    "health_timeout": 2.0,
    "connect_timeout": 5.0,
    "prefill_timeout": 300.0,
    "decode_timeout": 3600.0,
    "decode_idle_timeout": 300.0,
    "client_timeout": 60.0,
    "prefill_attempts": 2,
    "max_body_bytes": 8 * 1024 * 1024,
    "max_concurrent_requests": 256,
    "prefill_kv_transfer_params": {},
    "require_api_key": False,
    "log_level": "INFO",
}
POLICIES = ("least_inflight", "round_robin")
SECONDS = ("health_interval", "health_timeout", "connect_timeout", "prefill_timeout", "decode_timeout",
           "decode_idle_timeout", "client_timeout")
COUNTS = ("prefill_attempts", "max_body_bytes", "max_concurrent_requests")
# Secrets come from the environment only (systemd reads them from a root-only EnvironmentFile=).
API_KEY_ENV = "PD_PROXY_API_KEY"
ENGINE_API_KEY_ENV = "PD_PROXY_ENGINE_API_KEY"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="pd-proxy", description="erdma.pd PD proxy (prefill then decode).",
        epilog=f"Secrets from the environment: {API_KEY_ENV} (clients must send it as 'Authorization: Bearer "
               f"KEY'), {ENGINE_API_KEY_ENV} (sent to the engines; defaults to {API_KEY_ENV}).")
    parser.add_argument("--config", help="JSON file with any of the options below (command line wins)")
    parser.add_argument("--host", help=f"address to bind (default {DEFAULTS['host']})")
    parser.add_argument("--port", type=int, help=f"port to bind (default {DEFAULTS['port']})")
    parser.add_argument("--prefill", action="append", help="prefill engine base URL (repeat for several)")
    parser.add_argument("--decode", action="append", help="decode engine base URL (repeat for several)")
    parser.add_argument("--policy", choices=POLICIES, help="how a backend is chosen")
    for name in SECONDS:
        parser.add_argument("--" + name.replace("_", "-"), type=float, dest=name, help="seconds")
    parser.add_argument("--prefill-attempts", type=int, help="prefill backends tried per request")
    parser.add_argument("--max-body-bytes", type=int, help="largest request body accepted")
    parser.add_argument("--max-concurrent-requests", type=int,
                        help="completions handled at once; more are answered 503 at once")
    parser.add_argument("--prefill-kv-transfer-params", type=json.loads,
                        help='JSON object sent as kv_transfer_params to prefill (P2P connectors), e.g. '
                             '\'{"do_remote_decode": true}\'')
    parser.add_argument("--require-api-key", action="store_true", default=None,
                        help=f"refuse to start unless {API_KEY_ENV} is set")
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    return parser.parse_args(argv)


def load_config(argv, environ=None):
    """Defaults, then the config file, then the command line; exits with a message when invalid.

    With --check-config only the file and the command line are checked: the secrets are in the
    service's environment, which a check of a new config file (Ansible's validate) does not have."""
    environ = os.environ if environ is None else environ
    args = parse_args(argv)
    config = dict(DEFAULTS)
    if args.config:
        try:
            with open(args.config, encoding="utf-8") as handle:
                from_file = json.load(handle)
        except (OSError, ValueError) as exc:
            sys.exit(f"pd_proxy: cannot read config {args.config}: {exc}")
        if not isinstance(from_file, dict):
            sys.exit(f"pd_proxy: {args.config} must hold a JSON object")
        # Keys that start with "_" are comments (JSON has none), e.g. the "Ansible managed" line.
        from_file = {k: v for k, v in from_file.items() if not k.startswith("_")}
        unknown = sorted(set(from_file) - set(DEFAULTS))
        if unknown:
            sys.exit(f"pd_proxy: unknown option(s) in {args.config}: {', '.join(unknown)}")
        config.update(from_file)
    config.update({k: v for k, v in vars(args).items() if v is not None and k in DEFAULTS})
    config["api_key"] = environ.get(API_KEY_ENV, "")
    config["engine_api_key"] = environ.get(ENGINE_API_KEY_ENV, "") or config["api_key"]
    problems = validate(config, check_secrets=not args.check_config)
    if problems:
        sys.exit("pd_proxy: invalid configuration: " + "; ".join(problems))
    return config


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate(config, check_secrets=True):
    """Every problem of the configuration, each naming the option; secrets are never quoted."""
    problems = []
    for role in ("prefill", "decode"):
        urls = config[role]
        if not urls or not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in urls):
            problems.append(f"'{role}' needs at least one http(s):// URL (got {urls!r})")
    if config["policy"] not in POLICIES:
        problems.append(f"'policy' must be one of {', '.join(POLICIES)}")
    if not isinstance(config["prefill_kv_transfer_params"], dict):
        problems.append("'prefill_kv_transfer_params' must be a JSON object")
    for key in SECONDS + COUNTS:
        if not _is_number(config[key]) or config[key] <= 0:
            problems.append(f"'{key}' must be a positive number")
    for key in COUNTS:
        if _is_number(config[key]) and config[key] != int(config[key]):
            problems.append(f"'{key}' must be a whole number")
    if not isinstance(config["require_api_key"], bool):
        problems.append("'require_api_key' must be true or false")
    for key, env in (("api_key", API_KEY_ENV), ("engine_api_key", ENGINE_API_KEY_ENV)):
        secret = config.get(key, "")
        if secret and not (secret.isascii() and secret.isprintable() and " " not in secret):
            problems.append(f"{env} must be printable ASCII without spaces (the value is not shown)")
    if check_secrets and config["require_api_key"] and not config.get("api_key"):
        problems.append(f"'require_api_key' is set but {API_KEY_ENV} is empty or missing from the environment")
    return problems
