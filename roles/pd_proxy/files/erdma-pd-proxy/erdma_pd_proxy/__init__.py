# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""erdma.pd PD proxy: one OpenAI-compatible endpoint in front of prefill and decode vLLM engines.

Each completion is sent first to a prefill engine with ``max_tokens: 1`` (the engine computes the
prompt's KV cache and its connector stores or offers it), then to a decode engine with the client's
request, which loads that KV instead of recomputing it. ``kv_transfer_params`` returned by the prefill
engine (P2P connectors) are handed to the decode request; store-based connectors return none and the
proxy never waits for a signal that they do not send.

Modules: ``config`` (options, validation), ``backends`` (pools and health), ``metrics``
(prometheus_client), ``exchange`` (one client request: input checks, ids, auth), ``app`` (the
aiohttp application), ``cli`` (the ``pd-proxy`` command).
"""

__version__ = "0.2.0"
