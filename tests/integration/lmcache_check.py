"""Load LMCache configuration files with LMCache's own loader; report what it warned about.

    <lmcache venv>/bin/python lmcache_check.py FILE...

Prints one JSON object per file: the typed values LMCache read and every warning it logged (LMCache
only warns about an unknown or misspelled key; the caller turns that into a failure).
"""
import json
import logging
import sys
import warnings

warnings.simplefilter("ignore")

from lmcache.v1.config import LMCacheEngineConfig  # noqa: E402


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.messages = []

    def emit(self, record):
        if record.levelno >= logging.WARNING:
            self.messages.append(record.getMessage())


def main():
    capture = Capture()
    # LMCache's loggers do not propagate: attach to each of them.
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if name.startswith("lmcache") and isinstance(logger, logging.Logger):
            logger.addHandler(capture)
    for path in sys.argv[1:]:
        capture.messages = []
        config = LMCacheEngineConfig.from_file(path)
        print(json.dumps({
            "file": path,
            "warnings": list(capture.messages),
            "chunk_size": config.chunk_size,
            "remote_url": config.remote_url,
            "remote_serde": config.remote_serde,
            "local_cpu": config.local_cpu,
            "max_local_cpu_size": config.max_local_cpu_size,
            "extra_config": config.extra_config,
        }))


if __name__ == "__main__":
    main()
