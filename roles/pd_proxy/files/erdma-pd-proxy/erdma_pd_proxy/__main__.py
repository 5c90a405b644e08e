# Copyright: (c) 2026, erdma.pd maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""python -m erdma_pd_proxy: the same as the pd-proxy command."""
import sys

from erdma_pd_proxy.cli import main

sys.exit(main())
