# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pd-proxy command: load and check the configuration, serve until SIGTERM.

    pd-proxy --prefill http://10.0.0.1:8100 --decode http://10.0.0.2:8200 --port 9000
    pd-proxy --config /etc/pd-proxy/config.json [--check-config]
"""
import asyncio
import logging
import signal
import sys

from aiohttp import web

from erdma_pd_proxy.app import Proxy
from erdma_pd_proxy.config import API_KEY_ENV, load_config

LOG = logging.getLogger("pd_proxy")


async def serve(config):
    """Run until SIGTERM/SIGINT; client disconnects cancel their handler (and so their backend requests)."""
    # keepalive_timeout also closes a connection whose request headers do not arrive in time (slow clients).
    runner = web.AppRunner(Proxy(config).app(), handler_cancellation=True, access_log=None,
                           keepalive_timeout=config["client_timeout"])
    await runner.setup()
    site = web.TCPSite(runner, config["host"], config["port"])
    await site.start()
    LOG.info("PD proxy on http://%s:%s, prefill %s, decode %s, policy %s, API key %s", config["host"],
             config["port"], config["prefill"], config["decode"], config["policy"],
             "required" if config["api_key"] else "not set")
    if not config["api_key"]:
        LOG.warning("%s is not set: any client that reaches %s:%s can use the engines", API_KEY_ENV,
                    config["host"], config["port"])
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
        LOG.info("stopping")
    finally:
        await runner.cleanup()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    config = load_config(argv)
    if "--check-config" in argv:
        print(f"pd_proxy: configuration OK: {len(config['prefill'])} prefill, {len(config['decode'])} decode "
              f"backend(s), listening on {config['host']}:{config['port']}")
        return 0
    logging.basicConfig(level=config["log_level"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(config))
    return 0
